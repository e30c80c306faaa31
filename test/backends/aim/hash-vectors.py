"""Regenerate hash-vectors.json (not run by CI; needs only Python 3's standard library).

Computes Aim 3.x's hash_auto independently of trackspec: blake2b from hashlib, the numeric hash
from CPython's own float hash (Aim's C copy differs only in not remapping -1 to -2).
Usage: python3 test/backends/aim/hash-vectors.py > test/backends/aim/hash-vectors.json
"""
import hashlib
import json
import math
import struct


def i64(v):
    return struct.pack('<q', v)


def d64(b):
    return struct.unpack('<q', b)[0]


def salted(data, s):
    return d64(hashlib.blake2b(data, digest_size=8, salt=i64(s)).digest())


SALT_UNIFORM, SALT_ARRAY, SALT_OBJECT, SALT_STR, SALT_BYTES = (
    -7494597716789683807, 2965039128708897743, -2435585119574290752, 7540324813251503183, -6836296829636613855)


def numeric(v):
    v = float(v)
    if v == -1.0:
        return -1  # CPython remaps -1 to -2 for its error code; Aim's copy does not
    h = hash(v)
    return h


def hash_number(v):
    return salted(i64(numeric(v)), SALT_UNIFORM)


def hash_auto(o):
    if o is None:
        return 1393794177995070132
    if isinstance(o, bool):
        return hash_number(1 if o else 0)
    if isinstance(o, (int, float)):
        return hash_number(o)
    if isinstance(o, str):
        return salted(o.encode('utf-8'), SALT_STR)
    if isinstance(o, (list, tuple)):
        return salted(b''.join(i64(hash_auto(x)) for x in o), SALT_ARRAY)
    if isinstance(o, dict):
        items = sorted(o.items(), key=lambda kv: hash_auto(kv[0]))
        return salted(b''.join(i64(hash_auto(list(kv))) for kv in items), SALT_OBJECT)
    raise TypeError(type(o))


numbers = [0, 1, 2, 3, 7, 42, 999, 1000, 65535, 1 << 20, 123456789, 2 ** 31, 2 ** 53 - 1, -1, -2, -1000,
           0.5, -0.5, 0.1, 1.5, 3.141592653589793, 1e-300, 5e-324, 1e300, -2.5e-7, 1e22, 2.0 ** 70]
specials = {'inf': math.inf, '-inf': -math.inf, 'nan': math.nan}
values = [None, True, False, '', 'loss', 'train/acc', 'ünïcødé ✓', [], [1, 'a', None], {}, {'subset': 'train'},
          {'subset': 'val', 'fold': 3, 'tags': ['a', 'b'], 'nested': {'x': 1.5}}]
out = {
    'numbers': [{'value': v, 'numeric': str(numeric(v)), 'hash': str(hash_auto(v))} for v in numbers],
    'specials': [{'value': k, 'numeric': str(0 if k == 'nan' else (314159 if k == 'inf' else -314159)),
                  'hash': str(salted(i64(0 if k == 'nan' else (314159 if k == 'inf' else -314159)), SALT_UNIFORM))}
                 for k in specials],
    'values': [{'value': v, 'hash': str(hash_auto(v))} for v in values],
}
print(json.dumps(out, indent=1, ensure_ascii=False))

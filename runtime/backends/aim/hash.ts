/**
 * Aim 3.x's deterministic hash (`aim/storage/hashing`): the signed 64-bit `hash_auto` Aim uses for
 * context ids (`Context.idx` = hash of the context dict) and for the keys of version-2 metric series
 * (`seqs/v2/chunks/<run>/<ctx>/<name>/val/<hash_auto(step)>`).
 *
 * - None: a fixed constant. bool: as the number 0/1. Numbers (int or float alike): CPython's numeric
 *   hash of the double (mod 2^61-1, without CPython's -1 → -2 remap; ±inf → ±314159, NaN → 0), then
 *   "uniformed" with blake2b-64 over its int64 little-endian bytes, salted.
 * - str: blake2b-64 of the UTF-8 bytes; bytes: blake2b-64 of the bytes (different salts).
 * - arrays: blake2b-64 over the concatenated int64 LE hashes of the items.
 * - dicts: items sorted by the hash of their key; blake2b-64 over the hashes of the `(key, value)`
 *   pairs (each hashed as an array).
 * Salts are int64 LE, zero-padded to blake2b's 16 bytes (as Python's hashlib does).
 *
 * Checked against vectors computed with Python's hashlib and CPython's float hash (test/backends/aim).
 */
import { blake2b } from '@noble/hashes/blake2.js';
import { AimFloat } from './encoding.js';

const P = (1n << 61n) - 1n;
const HASH_BITS = 61;
const HASH_INF = 314159n;
const U64 = (1n << 64n) - 1n;
const HASH_NONE = 1393794177995070132n;

function salt(v: bigint): Uint8Array {
  const out = new Uint8Array(16);
  new DataView(out.buffer).setBigInt64(0, v, true);
  return out;
}

const SALT_UNIFORM = salt(-7494597716789683807n);
const SALT_ARRAY = salt(2965039128708897743n);
const SALT_OBJECT = salt(-2435585119574290752n);
const SALT_STR = salt(7540324813251503183n);
const SALT_BYTES = salt(-6836296829636613855n);

function digest(data: Uint8Array, s: Uint8Array): bigint {
  const d = blake2b(data, { dkLen: 8, salt: s });
  return new DataView(d.buffer, d.byteOffset, 8).getBigInt64(0, true);
}

function int64Le(v: bigint): Uint8Array {
  const out = new Uint8Array(8);
  new DataView(out.buffer).setBigInt64(0, v, true);
  return out;
}

/** frexp: v = m * 2^e with 0.5 <= |m| < 1 (v finite, non-zero). */
function frexp(v: number): [number, number] {
  const dv = new DataView(new ArrayBuffer(8));
  dv.setFloat64(0, v);
  let exp = (dv.getUint16(0) >>> 4) & 0x7ff;
  let x = v;
  let bias = 0;
  if (exp === 0) {
    // subnormal: scale into the normal range first
    x = v * 2 ** 64;
    dv.setFloat64(0, x);
    exp = (dv.getUint16(0) >>> 4) & 0x7ff;
    bias = -64;
  }
  const e = exp - 1022;
  // set the exponent field to 1022 (so |m| is in [0.5, 1))
  dv.setFloat64(0, x);
  dv.setUint16(0, (dv.getUint16(0) & 0x800f) | (1022 << 4));
  return [dv.getFloat64(0), e + bias];
}

/** CPython's `_Py_HashDouble` as Aim's `le_Py_HashDouble` (no -1 remap), as a signed 64-bit value. */
export function numericHash(v: number): bigint {
  if (!Number.isFinite(v)) {
    if (Number.isNaN(v)) return 0n;
    return v > 0 ? HASH_INF : -HASH_INF;
  }
  if (v === 0) return 0n;
  let [m, e] = frexp(v);
  let sign = 1n;
  if (m < 0) {
    sign = -1n;
    m = -m;
  }
  let x = 0n;
  while (m) {
    x = ((x << 28n) & P) | (x >> BigInt(HASH_BITS - 28));
    m *= 268435456.0;
    e -= 28;
    const y = Math.trunc(m);
    m -= y;
    x += BigInt(y);
    if (x >= P) x -= P;
  }
  e = e >= 0 ? e % HASH_BITS : HASH_BITS - 1 - ((-1 - e) % HASH_BITS);
  x = ((x << BigInt(e)) & P) | (x >> BigInt(HASH_BITS - e));
  x = (x * sign) & U64;
  return BigInt.asIntN(64, x);
}

const uniformCache = new Map<number, bigint>();

/** `hash_number`: numeric hash, uniformed. Cached for small integers (steps). */
export function hashNumber(v: number): bigint {
  const small = Number.isInteger(v) && v >= 0 && v < 1 << 20;
  if (small) {
    const hit = uniformCache.get(v);
    if (hit !== undefined) return hit;
  }
  const h = digest(int64Le(numericHash(v)), SALT_UNIFORM);
  if (small) {
    if (uniformCache.size >= 4096) uniformCache.clear();
    uniformCache.set(v, h);
  }
  return h;
}

const utf8 = new TextEncoder();

/** Aim's `hash_auto` for JSON-like values (null, boolean, number, AimFloat, string, Uint8Array, arrays, plain objects). */
export function hashAuto(v: unknown): bigint {
  if (v === null || v === undefined) return HASH_NONE;
  switch (typeof v) {
    case 'boolean':
      return hashNumber(v ? 1 : 0);
    case 'number':
      return hashNumber(v);
    case 'bigint':
      return hashNumber(Number(v));
    case 'string':
      return digest(utf8.encode(v), SALT_STR);
    case 'object':
      break;
    default:
      throw new TypeError(`Aim cannot hash a ${typeof v}`);
  }
  if (v instanceof Uint8Array) return digest(v, SALT_BYTES);
  if (v instanceof AimFloat) return hashNumber(v.value);
  if (Array.isArray(v)) return hashArray(v.map(hashAuto));
  const entries = Object.entries(v as Record<string, unknown>).filter(([, x]) => x !== undefined);
  const keyed = entries.map(([k, x]) => ({ kh: hashAuto(k), h: hashArray([hashAuto(k), hashAuto(x)]) }));
  keyed.sort((a, b) => (a.kh < b.kh ? -1 : a.kh > b.kh ? 1 : 0));
  return concatDigest(keyed.map((e) => e.h), SALT_OBJECT);
}

function hashArray(hashes: readonly bigint[]): bigint {
  return concatDigest(hashes, SALT_ARRAY);
}

function concatDigest(hashes: readonly bigint[], s: Uint8Array): bigint {
  const buf = new Uint8Array(8 * hashes.length);
  const dv = new DataView(buf.buffer);
  hashes.forEach((h, i) => dv.setBigInt64(8 * i, h, true));
  return digest(buf, s);
}

// Aim 3.x key/value encoding and message packing.
import { describe, expect, it } from 'vitest';
import {
  AimCustomObject,
  SENTINEL,
  decodePath,
  decodeValue,
  encodePath,
  encodeValue,
  flattenTree,
  pack,
  packTree,
  unflattenTree,
  unpack,
  unpackTree,
  type AimPathElement,
  type AimValue,
} from '../../../runtime/backends/aim/encoding.js';

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
const u8 = (...xs: number[]): Uint8Array => Uint8Array.from(xs);
const utf8 = (s: string): number[] => [...Buffer.from(s, 'utf8')];
const f64le = (n: number): number[] => {
  const b = Buffer.alloc(8);
  b.writeDoubleLE(n);
  return [...b];
};
const cmpBytes = (a: Uint8Array, b: Uint8Array): number => Buffer.compare(Buffer.from(a), Buffer.from(b));

describe('paths', () => {
  it('encodes the reference example ("traces", 3) exactly', () => {
    const expected = u8(...utf8('traces'), 0xfe, 0xfe, 0, 0, 0, 0, 0, 0, 0, 3, 0xfe);
    expect(hex(encodePath(['traces', 3]))).toBe(hex(expected));
    expect(decodePath(expected)).toEqual(['traces', 3]);
    expect(SENTINEL).toBe(0xfe);
  });

  it('encodes the empty path as no bytes', () => {
    expect(encodePath([]).length).toBe(0);
    expect(decodePath(new Uint8Array(0))).toEqual([]);
  });

  it('encodes ints as FE + int64 big-endian two\'s complement + FE', () => {
    expect(hex(encodePath([0]))).toBe('fe0000000000000000fe');
    expect(hex(encodePath([-1]))).toBe('fefffffffffffffffffe');
    expect(hex(encodePath([256]))).toBe('fe0000000000000100fe');
    expect(hex(encodePath([Number.MAX_SAFE_INTEGER]))).toBe('fe001fffffffffffff' + 'fe');
    expect(hex(encodePath([Number.MIN_SAFE_INTEGER]))).toBe('feffe0000000000001fe');
    expect(hex(encodePath([-0]))).toBe(hex(encodePath([0])));
  });

  it('round-trips ints incl. negatives, 0, ±max safe and values whose payload contains 0xFE', () => {
    const ints = [0, 1, -1, 2, -2, 3, 127, 128, 253, 254, 255, -254, -255, 256, 0xfe00, 0xfefe, -0xfefe, 0xfefefefe, 2 ** 31, -(2 ** 31), 2 ** 32, 0x1e_fefe_fefe_fefe, -0x1e_fefe_fefe_fefe, Number.MAX_SAFE_INTEGER, Number.MIN_SAFE_INTEGER, -Number.MAX_SAFE_INTEGER + 1];
    for (const n of ints) {
      const path: AimPathElement[] = ['a', n, 'b', n, n];
      expect(decodePath(encodePath(path))).toEqual(path);
    }
    // 254 and -2 put FE bytes inside the 8-byte payload; the decoder must not split there.
    const p254 = encodePath([254]);
    expect(hex(p254)).toBe('fe00000000000000fefe');
    expect(decodePath(p254)).toEqual([254]);
    const pm2 = encodePath([-2, 'x']);
    expect(hex(pm2)).toBe('fefffffffffffffffefe' + '78fe');
    expect(decodePath(pm2)).toEqual([-2, 'x']);
    expect(decodePath(encodePath([-2, -2, 254, 'é', 254]))).toEqual([-2, -2, 254, 'é', 254]);
  });

  it('orders ints as Aim does: numerically within each sign, negatives after non-negatives', () => {
    const nonNeg = [0, 1, 2, 249, 254, 255, 256, 1000, 65535, 2 ** 40, Number.MAX_SAFE_INTEGER];
    const neg = [Number.MIN_SAFE_INTEGER, -(2 ** 40), -1000, -256, -255, -254, -2, -1];
    const sortedAsBytes = (xs: number[]): number[] =>
      xs.map((n) => ({ n, b: encodePath(['k', n, 'z']) })).sort((a, b) => cmpBytes(a.b, b.b)).map((x) => x.n);
    expect(sortedAsBytes([...nonNeg].reverse())).toEqual(nonNeg);
    expect(sortedAsBytes([...neg].reverse())).toEqual(neg);
    expect(sortedAsBytes([...neg, ...nonNeg])).toEqual([...nonNeg, ...neg]);
  });

  it('encodes Unicode strings as UTF-8; 0xFE/0xFF never appear in them', () => {
    const strs = ['traces', 'é', 'ключ', '日本語', '🎉 party', 'a/b c', '\u0000', 'ÿþ', '\uFEFF', '\u{10FFFF}'];
    for (const s of strs) {
      const enc = encodePath([s]);
      expect(hex(enc)).toBe(hex(u8(...utf8(s), 0xfe)));
      expect(enc.subarray(0, -1).includes(0xfe)).toBe(false);
      expect(enc.subarray(0, -1).includes(0xff)).toBe(false);
      expect(decodePath(enc)).toEqual([s]);
    }
    expect(decodePath(encodePath(strs))).toEqual(strs);
    // every code point from U+0000 to U+FFFF (minus surrogates) and a spread of astral ones
    let all = '';
    for (let cp = 0; cp <= 0x10ffff; cp += cp < 0xffff ? 1 : 997) if (cp < 0xd800 || cp > 0xdfff) all += String.fromCodePoint(cp);
    const enc = utf8(all);
    expect(enc.includes(0xfe) || enc.includes(0xff)).toBe(false);
  });

  it('rejects empty strings, non-safe ints, non-integers and lone surrogates', () => {
    expect(() => encodePath([''])).toThrow(TypeError);
    expect(() => encodePath(['a', ''])).toThrow(TypeError);
    expect(() => encodePath([1.5])).toThrow(RangeError);
    expect(() => encodePath([NaN])).toThrow(RangeError);
    expect(() => encodePath([2 ** 53])).toThrow(RangeError);
    expect(() => encodePath(['\uD800'])).toThrow(TypeError);
    expect(() => encodePath([{} as unknown as string])).toThrow(TypeError);
  });

  it('throws on malformed input', () => {
    expect(() => decodePath(u8(0x61))).toThrow(/not terminated/); // string without sentinel
    expect(() => decodePath(u8(0xfe, 0, 0, 0))).toThrow(/truncated/);
    expect(() => decodePath(u8(0xfe, 0, 0, 0, 0, 0, 0, 0, 1))).toThrow(/truncated/);
    expect(() => decodePath(u8(0xfe, 0, 0, 0, 0, 0, 0, 0, 1, 0x61))).toThrow(/sentinel/);
    expect(() => decodePath(u8(0xc3, 0xfe))).toThrow(/UTF-8/); // truncated multibyte sequence
    expect(() => decodePath(u8(0xff, 0xfe))).toThrow(/UTF-8/);
    // int64 outside the safe range comes back as a bigint (Aim's hash keys use the full range)
    expect(decodePath(u8(0xfe, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe))).toEqual([2n ** 63n - 1n]);
    expect(encodePath([-(2n ** 63n)])).toEqual(u8(0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0xfe));
    expect(() => encodePath([2n ** 63n])).toThrow(/int64 range/);
  });
});

describe('values', () => {
  it('encodes every type byte exactly', () => {
    const cases: Array<[AimValue, number[], { float?: boolean }?]> = [
      [null, [0]],
      [true, [1, 1]],
      [false, [1, 0]],
      [5, [2, 5, 0, 0, 0, 0, 0, 0, 0]],
      [-1, [2, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]],
      [0x0102030405, [2, 5, 4, 3, 2, 1, 0, 0, 0]],
      [1.5, [3, ...f64le(1.5)]],
      [5, [3, ...f64le(5)], { float: true }],
      ['é', [4, 0xc3, 0xa9]],
      ['', [4]],
      [u8(0, 0xfe, 0xff), [5, 0, 0xfe, 0xff]],
      [new Uint8Array(0), [5]],
      [{ array: true }, [6]],
      [{ object: true }, [7]],
      [{ custom: 'aim.resource' }, [15, ...utf8('aim.resource')]],
    ];
    for (const [v, bytes, opts] of cases) {
      expect(hex(encodeValue(v, opts)), JSON.stringify(v)).toBe(hex(u8(...bytes)));
      const back = decodeValue(u8(...bytes));
      expect(back).toEqual(v);
    }
    expect(hex(encodeValue(1.5))).toBe('03000000000000f83f');
  });

  it('encodes ints at the safe limits and sends unsafe integers, NaN and ±Inf as floats', () => {
    for (const n of [0, 1, -1, 254, -2, Number.MAX_SAFE_INTEGER, Number.MIN_SAFE_INTEGER]) {
      const enc = encodeValue(n);
      expect(enc[0]).toBe(2);
      expect(Buffer.from(enc).readBigInt64LE(1)).toBe(BigInt(n));
      expect(decodeValue(enc)).toBe(n);
    }
    for (const n of [NaN, Infinity, -Infinity, 2 ** 53, -(2 ** 60), 0.1, -1e-300, Number.MIN_VALUE, Number.MAX_VALUE]) {
      const enc = encodeValue(n);
      expect(enc[0]).toBe(3);
      expect(hex(enc.subarray(1))).toBe(hex(u8(...f64le(n))));
      expect(Object.is(decodeValue(enc), n)).toBe(true);
    }
    expect(Object.is(decodeValue(encodeValue(-0, { float: true })), -0)).toBe(true);
    expect(encodeValue(-0)[0]).toBe(2); // -0 is an integer: int 0
    expect(decodeValue(encodeValue(3, { float: true }))).toBe(3);
  });

  it('round-trips Unicode strings and bytes', () => {
    for (const s of ['', 'plain', 'é', 'ключ', '日本語', '🎉', 'a\u0000b', '\uFEFF']) {
      expect(decodeValue(encodeValue(s))).toBe(s);
    }
    const all = Uint8Array.from({ length: 256 }, (_, i) => i);
    const enc = encodeValue(all);
    expect(enc.length).toBe(257);
    const back = decodeValue(enc);
    expect(back).toBeInstanceOf(Uint8Array);
    expect(hex(back as Uint8Array)).toBe(hex(all));
    enc[1] = 9; // decoded bytes must not alias the input
    expect((back as Uint8Array)[0]).toBe(0);
  });

  it('rejects malformed values', () => {
    expect(() => decodeValue(new Uint8Array(0))).toThrow(RangeError);
    expect(() => decodeValue(u8(0, 0))).toThrow(RangeError);
    expect(() => decodeValue(u8(1))).toThrow(RangeError);
    expect(() => decodeValue(u8(1, 2))).toThrow(RangeError);
    expect(() => decodeValue(u8(2, 1, 2, 3))).toThrow(RangeError);
    expect(() => decodeValue(u8(3, 1, 2, 3, 4, 5, 6, 7, 8, 9))).toThrow(RangeError);
    expect(() => decodeValue(u8(4, 0xff))).toThrow(TypeError);
    expect(() => decodeValue(u8(6, 0))).toThrow(RangeError);
    expect(() => decodeValue(u8(8))).toThrow(/unknown Aim value type/);
    expect(decodeValue(u8(2, 0, 0, 0, 0, 0, 0, 0, 0x80))).toBe(-(2n ** 63n)); // int64 min, as a bigint
    expect(encodeValue(-(2n ** 63n))).toEqual(u8(2, 0, 0, 0, 0, 0, 0, 0, 0x80));
    expect(() => encodeValue(2n ** 64n)).toThrow(/int64 range/);
    expect(() => encodeValue('\uDC00')).toThrow(TypeError);
    expect(() => encodeValue({} as unknown as AimValue)).toThrow(TypeError);
    expect(() => encodeValue(undefined as unknown as AimValue)).toThrow(TypeError);
  });
});

describe('flattenTree / unflattenTree', () => {
  const hparams = { hparams: { lr: 0.001, layers: [64, 32], opt: { name: 'adam' }, flag: true, none: null } };

  it('flattens nested dicts/lists with markers first, depth first in key order', () => {
    expect(flattenTree(['attrs'], hparams)).toEqual([
      [['attrs'], { object: true }],
      [['attrs', 'hparams'], { object: true }],
      [['attrs', 'hparams', 'lr'], 0.001],
      [['attrs', 'hparams', 'layers'], { array: true }],
      [['attrs', 'hparams', 'layers', 0], 64],
      [['attrs', 'hparams', 'layers', 1], 32],
      [['attrs', 'hparams', 'opt'], { object: true }],
      [['attrs', 'hparams', 'opt', 'name'], 'adam'],
      [['attrs', 'hparams', 'flag'], true],
      [['attrs', 'hparams', 'none'], null],
    ]);
    expect(unflattenTree(flattenTree([], hparams))).toEqual(hparams);
    expect(unflattenTree(flattenTree(['attrs'], hparams))).toEqual({ attrs: hparams });
  });

  it("supports Aim's own marker convention (object markers only for empty dicts)", () => {
    const v = { a: { b: 1, e: {} }, l: [] };
    expect(flattenTree([], v, { objectMarkers: 'empty' })).toEqual([
      [['a', 'b'], 1],
      [['a', 'e'], { object: true }],
      [['l'], { array: true }],
    ]);
    expect(unflattenTree(flattenTree([], v, { objectMarkers: 'empty' }))).toEqual(v);
    expect(unpackTree(packTree([], v, { objectMarkers: 'empty' }))).toEqual(v);
  });

  it('handles leaves, empty containers and the sorted key order of a store', () => {
    expect(flattenTree([], 3)).toEqual([[[], 3]]);
    expect(flattenTree(['x', 0], 'v')).toEqual([[['x', 0], 'v']]);
    expect(unflattenTree(flattenTree([], {}))).toEqual({});
    expect(unflattenTree(flattenTree([], []))).toEqual([]);
    expect(unflattenTree(flattenTree([], [[], {}, [[]]]))).toEqual([[], {}, [[]]]);
    expect(unflattenTree([])).toBeUndefined();
    // pairs sorted by encoded key (as read back from a store) still rebuild the tree
    const v = { b: [1, { c: 2 }], a: 'x', 'é': null };
    const sorted = flattenTree([], v)
      .map(([p, val]) => ({ k: encodePath(p), p, val }))
      .sort((x, y) => cmpBytes(x.k, y.k))
      .map((e) => [e.p, e.val] as const);
    expect(unflattenTree(sorted)).toEqual(v);
  });

  it('rebuilds like Aim: implicit object parents, gaps filled with null, later pairs override', () => {
    expect(unflattenTree([[['a', 'b'], 1], [['a', 'c'], 2]])).toEqual({ a: { b: 1, c: 2 } });
    expect(unflattenTree([[[], { array: true }], [[2], 'x']])).toEqual([null, null, 'x']);
    expect(unflattenTree([[['k'], 1], [['k'], { object: true }], [['k', 'z'], 2]])).toEqual({ k: { z: 2 } });
    expect(unflattenTree([[[], { object: true }], [[7], 'int key']])).toEqual({ 7: 'int key' });
    expect(() => unflattenTree([[[], { array: true }], [['s'], 1]])).toThrow(TypeError);
    expect(() => unflattenTree([[[], { array: true }], [[-1], 1]])).toThrow(TypeError);
    expect(() => unflattenTree([[['k'], 1], [['k', 'z'], 2]])).toThrow(/non-container/);
    const proto = unflattenTree([[['__proto__'], { object: true }], [['__proto__', 'polluted'], 1]]) as Record<string, unknown>;
    expect(Object.getPrototypeOf(proto)).toBe(Object.prototype);
    expect(Object.keys(proto)).toEqual(['__proto__']);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });

  it('round-trips custom objects', () => {
    const v = { img: new AimCustomObject('aim.image', { caption: 'c', size: [2, 3] }) };
    const flat = flattenTree([], v);
    expect(flat[1]).toEqual([['img'], { custom: 'aim.image' }]);
    const back = unpackTree(packTree([], v)) as { img: AimCustomObject };
    expect(back.img).toBeInstanceOf(AimCustomObject);
    expect(back.img.name).toBe('aim.image');
    expect(back.img.storage).toEqual({ caption: 'c', size: [2, 3] });
  });

  it('applies JSON conventions for undefined and rejects what Aim cannot store', () => {
    expect(unflattenTree(flattenTree([], { a: undefined, b: [undefined, 1] }))).toEqual({ b: [null, 1] });
    // eslint-disable-next-line no-sparse-arrays
    expect(unflattenTree(flattenTree([], [, 2]))).toEqual([null, 2]);
    expect(flattenTree([], 5n)).toEqual([[[], 5]]);
    expect(flattenTree([], 2n ** 60n)).toEqual([[[], 2n ** 60n]]);
    expect(() => flattenTree([], 2n ** 63n)).toThrow(RangeError);
    expect(() => flattenTree([], { '': 1 })).toThrow(TypeError);
    expect(() => flattenTree([''], 1)).toThrow(TypeError);
    expect(() => flattenTree([], { f: () => 1 })).toThrow(TypeError);
    expect(() => flattenTree([], Symbol('s'))).toThrow(TypeError);
    expect(() => flattenTree([], new Date())).toThrow(/Date/);
    expect(() => flattenTree([], new Map())).toThrow(/Map/);
    expect(() => flattenTree([], undefined)).toThrow(TypeError);
    const cyc: Record<string, unknown> = {};
    cyc.self = cyc;
    expect(() => flattenTree([], cyc)).toThrow(/cyclic/);
    const shared = { x: 1 };
    expect(unflattenTree(flattenTree([], { a: shared, b: shared }))).toEqual({ a: { x: 1 }, b: { x: 1 } });
  });
});

describe('pack / unpack', () => {
  it('lays out uint32 LE key length, key, is_blob, uint32 LE value length, value', () => {
    const packed = pack([
      { key: u8(0x61, 0xfe), value: u8(2, 5, 0, 0, 0, 0, 0, 0, 0) },
      { key: u8(), value: u8(7), isBlob: true },
    ]);
    expect(hex(packed)).toBe('02000000' + '61fe' + '00' + '09000000' + '020500000000000000' + '00000000' + '01' + '01000000' + '07');
    expect(unpack(packed)).toEqual([
      { key: u8(0x61, 0xfe), value: u8(2, 5, 0, 0, 0, 0, 0, 0, 0), isBlob: false },
      { key: u8(), value: u8(7), isBlob: true },
    ]);
    expect(pack([]).length).toBe(0);
    expect(unpack(new Uint8Array(0))).toEqual([]);
  });

  it('round-trips large entries and works on a subarray view', () => {
    const big = Uint8Array.from({ length: 70_000 }, (_, i) => (i * 31) & 0xff);
    const packed = pack([{ key: encodePath(['blob', 1]), value: encodeValue(big), isBlob: true }]);
    const framed = new Uint8Array(packed.length + 6);
    framed.set(packed, 3);
    const [e] = unpack(framed.subarray(3, 3 + packed.length));
    expect(e.isBlob).toBe(true);
    expect(decodePath(e.key)).toEqual(['blob', 1]);
    expect(hex(decodeValue(e.value) as Uint8Array)).toBe(hex(big));
  });

  it('throws on every truncation and on a bad is_blob flag', () => {
    const packed = pack([
      { key: encodePath(['a', 1]), value: encodeValue('hello') },
      { key: encodePath(['b']), value: encodeValue(1.5), isBlob: true },
    ]);
    const boundaries = new Set([0, 4 + 12 + 1 + 4 + 6]);
    for (let n = 1; n < packed.length; n++) {
      if (boundaries.has(n)) {
        expect(unpack(packed.subarray(0, n)).length).toBe(1);
      } else {
        expect(() => unpack(packed.subarray(0, n)), `length ${n}`).toThrow(/truncated/);
      }
    }
    const bad = packed.slice();
    bad[4 + 12] = 2;
    expect(() => unpack(bad)).toThrow(/is_blob/);
    expect(() => unpack(u8(0xff, 0xff, 0xff, 0xff))).toThrow(/truncated/);
  });
});

describe('packTree / unpackTree (property style)', () => {
  // mulberry32
  const rng = (seed: number) => () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = seed;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };

  const genTree = (r: () => number): unknown => {
    const pick = <T,>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)];
    const str = (): string => {
      const alphabet = ['a', 'b', 'z', '_', ' ', '/', '.', 'é', 'ß', 'ключ', '日', '🎉', '\u0000', '\uFEFF', '1', '__proto__'];
      let s = '';
      const n = 1 + Math.floor(r() * 4);
      for (let i = 0; i < n; i++) s += pick(alphabet);
      return s;
    };
    const leaf = (): unknown => {
      switch (Math.floor(r() * 9)) {
        case 0:
          return null;
        case 1:
          return r() < 0.5;
        case 2:
          return Math.floor((r() - 0.5) * 2 ** 20);
        case 3:
          return pick([0, -1, 254, -2, 0xfefe, Number.MAX_SAFE_INTEGER, Number.MIN_SAFE_INTEGER]);
        case 4:
          return (r() - 0.5) * 10 ** Math.floor(r() * 40 - 20);
        case 5:
          return pick([NaN, Infinity, -Infinity, 0.5, -1e-300]);
        case 6:
          return Uint8Array.from({ length: Math.floor(r() * 6) }, () => pick([0, 1, 0xfe, 0xff, 0x7f]));
        case 7:
          return r() < 0.1 ? '' : str();
        default:
          return str();
      }
    };
    const node = (depth: number): unknown => {
      const k = r();
      if (depth > 4 || k < 0.45) return leaf();
      const n = Math.floor(r() * 5);
      if (k < 0.7) return Array.from({ length: n }, () => node(depth + 1));
      const o: Record<string, unknown> = {};
      for (let i = 0; i < n; i++) Object.defineProperty(o, str(), { value: node(depth + 1), enumerable: true, writable: true, configurable: true });
      return o;
    };
    return node(0);
  };

  it('round-trips 500 random trees under random prefixes', () => {
    const r = rng(0xa1b2c3);
    for (let i = 0; i < 500; i++) {
      const tree = genTree(r);
      const prefix: AimPathElement[] = Array.from({ length: Math.floor(r() * 3) }, () => (r() < 0.5 ? 'p' + Math.floor(r() * 9) : Math.floor((r() - 0.3) * 300)));
      const packed = packTree(prefix, tree);
      let expected: unknown = tree;
      for (let j = prefix.length - 1; j >= 0; j--) expected = { [String(prefix[j])]: expected };
      expect(unpackTree(packed), `tree #${i}`).toEqual(expected);
      // byte-level idempotence: decoding and re-encoding each entry reproduces the same bytes
      const entries = unpack(packed);
      const again = pack(entries.map((e) => {
        const v = decodeValue(e.value);
        return { key: encodePath(decodePath(e.key)), value: encodeValue(v, { float: e.value[0] === 3 }), isBlob: e.isBlob };
      }));
      expect(hex(again)).toBe(hex(packed));
      // and the flattened form matches the decoded entries one for one
      expect(entries.map((e) => [decodePath(e.key), decodeValue(e.value)])).toEqual(flattenTree(prefix, tree));
    }
  });
});

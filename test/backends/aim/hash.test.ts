import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { hashAuto, numericHash } from '../../../runtime/backends/aim/hash.js';
import { AimFloat } from '../../../runtime/backends/aim/encoding.js';

// Vectors computed by test/backends/aim/hash-vectors.py with Python's hashlib and CPython's float hash.
const vectors = JSON.parse(readFileSync(new URL('./hash-vectors.json', import.meta.url), 'utf8')) as {
  numbers: { value: number; numeric: string; hash: string }[];
  specials: { value: string; numeric: string; hash: string }[];
  values: { value: unknown; hash: string }[];
};

describe('Aim hash_auto', () => {
  it('matches CPython\'s numeric hash (without the -1 remap) for ints, fractions, subnormals and huge values', () => {
    for (const v of vectors.numbers) expect([v.value, numericHash(v.value).toString()]).toEqual([v.value, v.numeric]);
  });

  it('hashes numbers (steps) exactly as Aim, incl. negatives and non-integers', () => {
    for (const v of vectors.numbers) expect([v.value, hashAuto(v.value).toString()]).toEqual([v.value, v.hash]);
  });

  it('hashes ±inf and NaN as Aim', () => {
    const js: Record<string, number> = { inf: Infinity, '-inf': -Infinity, nan: NaN };
    for (const v of vectors.specials) {
      expect(numericHash(js[v.value]!).toString()).toBe(v.numeric);
      expect(hashAuto(js[v.value]).toString()).toBe(v.hash);
    }
  });

  it('hashes None, bools, strings, arrays and dicts (contexts) as Aim, independent of key order', () => {
    for (const v of vectors.values) expect([v.value, hashAuto(v.value).toString()]).toEqual([v.value, v.hash]);
    expect(hashAuto({ b: 1, a: 2 })).toBe(hashAuto({ a: 2, b: 1 }));
    expect(hashAuto(true)).toBe(hashAuto(1));
    expect(hashAuto(2)).toBe(hashAuto(2.0));
    expect(hashAuto(new AimFloat(0.5))).toBe(hashAuto(0.5));
    expect(hashAuto({ x: new AimFloat(3) })).toBe(hashAuto({ x: 3 }));
  });

  it('rejects what Aim cannot hash', () => {
    expect(() => hashAuto(() => 1)).toThrow(TypeError);
  });
});

// The runtime's stand-ins for ajv's runtime helpers agree with ajv's own on the values validators meet.
import { createRequire } from 'node:module';
import { describe, expect, it } from 'vitest';
import { deepEqual, ucs2length } from '../../runtime/core/validation.js';

const require = createRequire(import.meta.url);
const ajvUcs2length = (require('ajv/dist/runtime/ucs2length') as { default: (s: string) => number }).default;
const ajvEqual = (require('ajv/dist/runtime/equal') as { default: (a: unknown, b: unknown) => boolean }).default;

describe('validator runtime helpers', () => {
  it('ucs2length counts code points as ajv does (a surrogate pair is one, a lone surrogate is one)', () => {
    const samples = ['', 'abc', 'é', '日本語', '😀', 'a😀b', '\ud83d', '\ude00', '\ud83d\ud83d\ude00', '🏳️‍🌈', 'x'.repeat(1000)];
    for (const s of samples) expect(ucs2length(s), JSON.stringify(s)).toBe(ajvUcs2length(s));
  });

  it('deepEqual agrees with ajv on JSON values', () => {
    const values: unknown[] = [null, 0, -0, 1, NaN, 'a', '', true, false, [], [1], [1, 2], [2, 1], {}, { a: 1 }, { a: 1, b: 2 }, { b: 2, a: 1 }, { a: [1, { b: null }] }, { a: [1, { b: 0 }] }, [[]], [{}], { a: undefined }, { b: undefined }];
    for (const a of values) for (const b of values) expect(deepEqual(a, b), `${JSON.stringify(a)} vs ${JSON.stringify(b)}`).toBe(ajvEqual(a, b));
  });
});

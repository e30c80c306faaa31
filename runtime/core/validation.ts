/**
 * What a precompiled validator is, seen from the SDK. The generator compiles the spec's schemas
 * with ajv into standalone code (`generated/validators.gen.js`); that code needs two small helpers
 * at run time, provided here so that logging runs never installs ajv itself.
 */

/** One problem a validator reports (the shape of ajv's `ErrorObject`). */
export interface ErrorObject {
  keyword: string;
  instancePath: string;
  schemaPath: string;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  params: Record<string, any>;
  propertyName?: string;
  message?: string;
  schema?: unknown;
  parentSchema?: Record<string, unknown>;
  data?: unknown;
}

/** A precompiled validator: a type guard that leaves its problems in `errors`. */
export interface ValidateFunction<T = unknown> {
  (data: unknown): data is T;
  errors?: ErrorObject[] | null;
}

/**
 * Length of a string in code points, as JSON Schema's `minLength`/`maxLength` count it (a surrogate
 * pair is one character). ajv's standalone code calls it as `ucs2length`.
 */
export function ucs2length(s: string): number {
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    n++;
    const c = s.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length && (s.charCodeAt(i + 1) & 0xfc00) === 0xdc00) i++;
  }
  return n;
}

/** Structural equality of JSON values (`enum`, `const`, `uniqueItems`); NaN equals NaN. */
export function deepEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (a !== null && b !== null && typeof a === 'object' && typeof b === 'object') {
    if (Array.isArray(a) !== Array.isArray(b) || Object.getPrototypeOf(a) !== Object.getPrototypeOf(b)) return false;
    if (Array.isArray(a)) {
      const bb = b as unknown[];
      if (a.length !== bb.length) return false;
      for (let i = 0; i < a.length; i++) if (!deepEqual(a[i], bb[i])) return false;
      return true;
    }
    const ao = a as Record<string, unknown>;
    const bo = b as Record<string, unknown>;
    const keys = Object.keys(ao);
    if (keys.length !== Object.keys(bo).length) return false;
    for (const k of keys) if (!Object.prototype.hasOwnProperty.call(bo, k) || !deepEqual(ao[k], bo[k])) return false;
    return true;
  }
  return a !== a && b !== b;
}

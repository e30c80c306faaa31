/**
 * Aim 3.x key/value encoding and message packing (the bytes of Aim's remote-tracking protocol).
 *
 * Paths (keys): every element is followed by the sentinel byte 0xFE. String elements are their UTF-8
 * bytes (non-empty; 0xFE never occurs in UTF-8, so strings are unambiguous). Integer elements are
 * 0xFE + signed int64 big-endian (two's complement, as Python's `struct.pack('>q')`), then the
 * sentinel. Consequence for ordering: non-negative integers sort numerically as bytes, negative
 * integers sort numerically among themselves, but every negative sorts *after* every non-negative.
 *
 * Values: one type byte + payload (0 None, 1 bool, 2 int64 LE, 3 float64 LE, 4 UTF-8 string,
 * 5 bytes, 6 array marker, 7 object marker, 15 custom object with its UTF-8 Aim type name).
 *
 * Packing: for each entry, uint32 LE key length, key, 1 byte is_blob, uint32 LE value length, value.
 */

import { isPlainObject } from '../../core/values.js';

/** A path element: a non-empty string, or an int64 (a safe-integer number, or a bigint for the full range). */
export type AimPathElement = string | number | bigint;

/** Path sentinel; also the prefix of an integer path element. */
export const SENTINEL = 0xfe;

export type AimValue =
  | null
  | boolean
  | number
  | bigint
  | string
  | Uint8Array
  | AimFloat
  | AimBlob
  | { array: true }
  | { object: true }
  | { custom: string };

export const TYPE_NONE = 0;
export const TYPE_BOOL = 1;
export const TYPE_INT = 2;
export const TYPE_FLOAT = 3;
export const TYPE_STRING = 4;
export const TYPE_BYTES = 5;
export const TYPE_ARRAY = 6;
export const TYPE_OBJECT = 7;
export const TYPE_CUSTOM = 15;

/** A number that must be sent as a float64 even when it is integral (Python `float`). */
export class AimFloat {
  constructor(readonly value: number) {}
}

/**
 * A value Aim stores as a BLOB (e.g. `aim.Text`'s `data`): encoded as the inner value, packed with
 * the `is_blob` flag set.
 */
export class AimBlob {
  constructor(readonly value: string | Uint8Array) {}
}

/** A custom Aim object (type byte 15) with its child entries, as produced by unflattenTree and accepted by flattenTree. */
export class AimCustomObject {
  constructor(
    readonly name: string,
    readonly storage: Record<string, unknown> = {},
  ) {}
}

const utf8 = new TextEncoder();
const utf8Strict = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
const LONE_SURROGATE = /\p{Cs}/u;

function encodeUtf8(s: string, what: string): Uint8Array {
  if (LONE_SURROGATE.test(s)) throw new TypeError(`${what} contains a lone surrogate and cannot be encoded as UTF-8`);
  return utf8.encode(s);
}

function decodeUtf8(bytes: Uint8Array, what: string): string {
  try {
    return utf8Strict.decode(bytes);
  } catch {
    throw new TypeError(`${what} is not valid UTF-8`);
  }
}

function checkSafeInt(n: number, what: string): void {
  if (!Number.isSafeInteger(n)) throw new RangeError(`${what} must be a safe integer, got ${String(n)}`);
}

const INT64_MIN = -(1n << 63n);
const INT64_MAX = (1n << 63n) - 1n;

/** An int64 as a number when it is a safe integer, else as a bigint. */
function int64ToJs(v: bigint): number | bigint {
  if (v < BigInt(Number.MIN_SAFE_INTEGER) || v > BigInt(Number.MAX_SAFE_INTEGER)) return v;
  return Number(v);
}

function checkInt64(v: bigint, what: string): void {
  if (v < INT64_MIN || v > INT64_MAX) throw new RangeError(`${what} ${v.toString()} is outside the int64 range`);
}

function view(bytes: Uint8Array): DataView {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

function concat(parts: readonly Uint8Array[]): Uint8Array {
  let n = 0;
  for (const p of parts) n += p.length;
  const out = new Uint8Array(n);
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

function describePath(path: readonly AimPathElement[]): string {
  return JSON.stringify(path, (_k, v: unknown) => (typeof v === 'bigint' ? `${v.toString()}n` : v));
}

// ---------------------------------------------------------------------------------------------
// Paths

/** One path element's bytes WITHOUT its trailing sentinel. */
export function encodeElement(el: AimPathElement): Uint8Array {
  if (typeof el === 'string') {
    if (el.length === 0) throw new TypeError('Aim path elements must not be empty strings');
    return encodeUtf8(el, 'Aim path element');
  }
  if (typeof el === 'number' || typeof el === 'bigint') {
    if (typeof el === 'number') checkSafeInt(el, 'Aim integer path element');
    else checkInt64(el, 'Aim integer path element');
    const out = new Uint8Array(9);
    out[0] = SENTINEL;
    view(out).setBigInt64(1, BigInt(el), false);
    return out;
  }
  throw new TypeError(`Aim path elements must be strings or integers, got ${typeof el}`);
}

export function encodePath(path: readonly AimPathElement[]): Uint8Array {
  const parts: Uint8Array[] = [];
  const sentinel = Uint8Array.of(SENTINEL);
  for (const el of path) {
    parts.push(encodeElement(el), sentinel);
  }
  return concat(parts);
}

export function decodePath(bytes: Uint8Array): AimPathElement[] {
  const path: AimPathElement[] = [];
  const dv = view(bytes);
  let i = 0;
  while (i < bytes.length) {
    if (bytes[i] === SENTINEL) {
      // Integer element: FE + 8 bytes (may themselves contain FE) + FE.
      if (i + 10 > bytes.length) throw new RangeError(`truncated integer element in Aim path at offset ${i}`);
      if (bytes[i + 9] !== SENTINEL) throw new RangeError(`integer element in Aim path at offset ${i} is not followed by the sentinel`);
      path.push(int64ToJs(dv.getBigInt64(i + 1, false)));
      i += 10;
    } else {
      const end = bytes.indexOf(SENTINEL, i);
      if (end < 0) throw new RangeError(`Aim path element at offset ${i} is not terminated by the sentinel`);
      path.push(decodeUtf8(bytes.subarray(i, end), 'Aim path element'));
      i = end + 1;
    }
  }
  return path;
}

// ---------------------------------------------------------------------------------------------
// Values

function withType(type: number, payload?: Uint8Array): Uint8Array {
  const out = new Uint8Array(1 + (payload?.length ?? 0));
  out[0] = type;
  if (payload) out.set(payload, 1);
  return out;
}

function encodeFloat(n: number): Uint8Array {
  const out = new Uint8Array(9);
  out[0] = TYPE_FLOAT;
  view(out).setFloat64(1, n, true);
  return out;
}

/** Encode one value: type byte + payload. Integers (safe) become int64 unless `opts.float`; anything else numeric is a float64. */
export function encodeValue(v: AimValue, opts?: { float?: boolean }): Uint8Array {
  if (v === null) return withType(TYPE_NONE);
  switch (typeof v) {
    case 'boolean':
      return Uint8Array.of(TYPE_BOOL, v ? 1 : 0);
    case 'number': {
      if (!opts?.float && Number.isSafeInteger(v)) {
        const out = new Uint8Array(9);
        out[0] = TYPE_INT;
        view(out).setBigInt64(1, BigInt(v), true);
        return out;
      }
      return encodeFloat(v);
    }
    case 'bigint': {
      checkInt64(v, 'Aim int value');
      const out = new Uint8Array(9);
      out[0] = TYPE_INT;
      view(out).setBigInt64(1, v, true);
      return out;
    }
    case 'string':
      return withType(TYPE_STRING, encodeUtf8(v, 'Aim string value'));
    case 'object': {
      if (v instanceof Uint8Array) return withType(TYPE_BYTES, v);
      if (v instanceof AimFloat) return encodeFloat(v.value);
      if (v instanceof AimBlob) return typeof v.value === 'string' ? withType(TYPE_STRING, encodeUtf8(v.value, 'Aim string value')) : withType(TYPE_BYTES, v.value);
      if ('array' in v && v.array === true) return withType(TYPE_ARRAY);
      if ('object' in v && v.object === true) return withType(TYPE_OBJECT);
      if ('custom' in v && typeof v.custom === 'string') return withType(TYPE_CUSTOM, encodeUtf8(v.custom, 'Aim custom object name'));
      break;
    }
    default:
      break;
  }
  throw new TypeError(`cannot encode ${typeof v} as an Aim value`);
}

function expectLength(bytes: Uint8Array, n: number, what: string): void {
  if (bytes.length !== n) throw new RangeError(`Aim ${what} value must be ${n} bytes long, got ${bytes.length}`);
}

export function decodeValue(bytes: Uint8Array): AimValue {
  if (bytes.length === 0) throw new RangeError('empty Aim value (missing type byte)');
  const type = bytes[0];
  const payload = bytes.subarray(1);
  switch (type) {
    case TYPE_NONE:
      expectLength(bytes, 1, 'None');
      return null;
    case TYPE_BOOL:
      expectLength(bytes, 2, 'bool');
      if (payload[0] > 1) throw new RangeError(`Aim bool payload must be 0 or 1, got ${payload[0]}`);
      return payload[0] === 1;
    case TYPE_INT:
      expectLength(bytes, 9, 'int');
      return int64ToJs(view(payload).getBigInt64(0, true));
    case TYPE_FLOAT:
      expectLength(bytes, 9, 'float');
      return view(payload).getFloat64(0, true);
    case TYPE_STRING:
      return decodeUtf8(payload, 'Aim string value');
    case TYPE_BYTES:
      return payload.slice();
    case TYPE_ARRAY:
      expectLength(bytes, 1, 'array marker');
      return { array: true };
    case TYPE_OBJECT:
      expectLength(bytes, 1, 'object marker');
      return { object: true };
    case TYPE_CUSTOM:
      return { custom: decodeUtf8(payload, 'Aim custom object name') };
    default:
      throw new RangeError(`unknown Aim value type byte ${type}`);
  }
}

// ---------------------------------------------------------------------------------------------
// Trees

export interface FlattenOptions {
  /**
   * 'always' (default): every dict gets an object-marker entry at its own path.
   * 'empty': only empty dicts get one, as Aim's own `treeutils.unfold_tree` does (arrays and custom
   * objects always get their marker). Both decode to the same tree.
   */
  objectMarkers?: 'always' | 'empty';
}

/**
 * Flatten a JS value into Aim's (path, value) pairs: containers get a marker entry at their own path,
 * then children (object keys as string elements, array indices as int elements), depth first in
 * key order. JSON conventions for `undefined`: omitted as an object member, `null` as an array
 * element. int64 bigints become ints; `AimFloat` forces a float; `AimBlob` is packed as a blob. Throws TypeError on cycles, empty keys, functions,
 * symbols and non-plain objects (Date, Map, class instances other than AimCustomObject, ...).
 */
export function flattenTree(prefix: readonly AimPathElement[], value: unknown, opts?: FlattenOptions): Array<[AimPathElement[], AimValue]> {
  for (const el of prefix) encodeElement(el); // validate early
  const allMarkers = (opts?.objectMarkers ?? 'always') === 'always';
  const out: Array<[AimPathElement[], AimValue]> = [];
  const ancestors = new Set<object>();

  const visit = (path: AimPathElement[], v: unknown): void => {
    switch (typeof v) {
      case 'boolean':
      case 'number':
      case 'string':
        out.push([path, v]);
        return;
      case 'bigint':
        checkInt64(v, `bigint at ${describePath(path)}`);
        out.push([path, int64ToJs(v)]);
        return;
      case 'object':
        break;
      default:
        throw new TypeError(`cannot store a ${typeof v} in Aim (at ${describePath(path)})`);
    }
    if (v === null) {
      out.push([path, null]);
      return;
    }
    if (v instanceof Uint8Array || v instanceof AimFloat || v instanceof AimBlob) {
      out.push([path, v]);
      return;
    }
    if (ancestors.has(v)) throw new TypeError(`cyclic value at ${describePath(path)}`);
    ancestors.add(v);
    if (Array.isArray(v)) {
      out.push([path, { array: true }]);
      for (let i = 0; i < v.length; i++) {
        const item: unknown = v[i];
        visit([...path, i], item === undefined ? null : item);
      }
    } else if (v instanceof AimCustomObject) {
      out.push([path, { custom: v.name }]);
      visitMembers(path, v.storage);
    } else if (isPlainObject(v)) {
      const keys = Object.keys(v).filter((k) => v[k] !== undefined);
      if (allMarkers || keys.length === 0) out.push([path, { object: true }]);
      visitMembers(path, v);
    } else {
      throw new TypeError(`cannot store a ${v.constructor?.name ?? 'non-plain object'} in Aim (at ${describePath(path)})`);
    }
    ancestors.delete(v);
  };

  const visitMembers = (path: AimPathElement[], obj: Record<string, unknown>): void => {
    for (const key of Object.keys(obj)) {
      const child = obj[key];
      if (child === undefined) continue;
      if (key.length === 0) throw new TypeError(`empty key under ${describePath(path)}: Aim path elements must not be empty strings`);
      visit([...path, key], child);
    }
  };

  visit([...prefix], value);
  return out;
}

function toNode(v: AimValue): unknown {
  if (v instanceof AimFloat || v instanceof AimBlob) return v.value;
  if (v !== null && typeof v === 'object' && !(v instanceof Uint8Array)) {
    if ('array' in v) return [];
    if ('object' in v) return {};
    return new AimCustomObject(v.custom);
  }
  return v;
}

function isContainer(v: unknown): v is unknown[] | Record<string, unknown> | AimCustomObject {
  return v !== null && typeof v === 'object' && !(v instanceof Uint8Array) && !(v instanceof AimFloat) && !(v instanceof AimBlob);
}

function setMember(container: unknown[] | Record<string, unknown> | AimCustomObject, key: AimPathElement, node: unknown, path: readonly AimPathElement[]): void {
  if (Array.isArray(container)) {
    if (typeof key !== 'number' || key < 0) throw new TypeError(`array element key ${String(key)} at ${describePath(path)} must be a non-negative integer`);
    while (container.length < key) container.push(null); // as Aim: gaps become None
    container[key] = node;
    return;
  }
  const target = container instanceof AimCustomObject ? container.storage : container;
  Object.defineProperty(target, String(key), { value: node, enumerable: true, writable: true, configurable: true });
}

function getMember(container: unknown[] | Record<string, unknown> | AimCustomObject, key: AimPathElement): unknown {
  if (Array.isArray(container)) return typeof key === 'number' ? container[key] : undefined;
  const target = container instanceof AimCustomObject ? container.storage : container;
  return Object.prototype.hasOwnProperty.call(target, String(key)) ? target[String(key)] : undefined;
}

/**
 * Rebuild a JS value from (path, value) pairs (inverse of flattenTree for plain data). Pairs are
 * applied in order: a pair replaces whatever is at its path (a marker starts a fresh container);
 * missing parents are created as objects (as Aim's decoder inserts object markers), so pairs under
 * a non-empty prefix come back nested under that prefix. Integer keys under an object become
 * string properties. Array gaps are filled with null. Returns undefined for no pairs.
 * `keepTyped`: AimFloat and AimBlob values stay wrapped (to tell floats and blobs apart).
 */
export function unflattenTree(pairs: ReadonlyArray<readonly [readonly AimPathElement[], AimValue]>, opts?: { keepTyped?: boolean }): unknown {
  let root: unknown = undefined;
  const keep = opts?.keepTyped === true;
  for (const [path, value] of pairs) {
    const node = keep && (value instanceof AimFloat || value instanceof AimBlob) ? value : toNode(value);
    if (path.length === 0) {
      root = node;
      continue;
    }
    if (root === undefined) root = {};
    if (!isContainer(root)) throw new TypeError(`entry at ${describePath(path)} lies under a non-container value`);
    let cur: unknown[] | Record<string, unknown> | AimCustomObject = root;
    for (let i = 0; i < path.length - 1; i++) {
      let next = getMember(cur, path[i]);
      if (next === undefined) {
        next = {};
        setMember(cur, path[i], next, path.slice(0, i + 1));
      } else if (!isContainer(next)) {
        throw new TypeError(`entry at ${describePath(path)} lies under a non-container value`);
      }
      cur = next as unknown[] | Record<string, unknown> | AimCustomObject;
    }
    setMember(cur, path[path.length - 1], node, path);
  }
  return root;
}

// ---------------------------------------------------------------------------------------------
// Packing (aim/ext/transport/message_utils.py)

export interface PackedEntry {
  key: Uint8Array;
  value: Uint8Array;
  isBlob?: boolean;
}

export function pack(entries: ReadonlyArray<PackedEntry>): Uint8Array {
  let size = 0;
  for (const e of entries) {
    if (e.key.length > 0xffffffff || e.value.length > 0xffffffff) throw new RangeError('Aim packed key/value longer than 2^32-1 bytes');
    size += 9 + e.key.length + e.value.length;
  }
  const out = new Uint8Array(size);
  const dv = view(out);
  let o = 0;
  for (const e of entries) {
    dv.setUint32(o, e.key.length, true);
    out.set(e.key, o + 4);
    o += 4 + e.key.length;
    out[o] = e.isBlob ? 1 : 0;
    dv.setUint32(o + 1, e.value.length, true);
    out.set(e.value, o + 5);
    o += 5 + e.value.length;
  }
  return out;
}

export function unpack(bytes: Uint8Array): Array<{ key: Uint8Array; value: Uint8Array; isBlob: boolean }> {
  const dv = view(bytes);
  const out: Array<{ key: Uint8Array; value: Uint8Array; isBlob: boolean }> = [];
  let o = 0;
  const need = (n: number, what: string): void => {
    if (o + n > bytes.length) throw new RangeError(`truncated Aim packed message: ${what} at offset ${o} needs ${n} bytes, ${bytes.length - o} left`);
  };
  while (o < bytes.length) {
    need(4, 'key length');
    const keyLen = dv.getUint32(o, true);
    o += 4;
    need(keyLen, 'key');
    const key = bytes.slice(o, o + keyLen);
    o += keyLen;
    need(1, 'is_blob flag');
    const flag = bytes[o];
    if (flag > 1) throw new RangeError(`Aim packed is_blob flag must be 0 or 1, got ${flag} at offset ${o}`);
    o += 1;
    need(4, 'value length');
    const valueLen = dv.getUint32(o, true);
    o += 4;
    need(valueLen, 'value');
    const value = bytes.slice(o, o + valueLen);
    o += valueLen;
    out.push({ key, value, isBlob: flag === 1 });
  }
  return out;
}

/** Convenience: flatten + encode + pack a JS tree. */
export function packTree(prefix: readonly AimPathElement[], value: unknown, opts?: FlattenOptions): Uint8Array {
  return pack(encodeTree(prefix, value, opts));
}

/** flatten + encode (Aim's `treeutils.encode_tree`): packed-entry form, blobs flagged. */
export function encodeTree(prefix: readonly AimPathElement[], value: unknown, opts?: FlattenOptions): PackedEntry[] {
  return flattenTree(prefix, value, opts).map(([p, v]) => ({ key: encodePath(p), value: encodeValue(v), isBlob: v instanceof AimBlob }));
}

/** Convenience: unpack + decode + unflatten. */
export function unpackTree(bytes: Uint8Array): unknown {
  return unflattenTree(unpack(bytes).map((e) => [decodePath(e.key), decodeValue(e.value)] as const));
}

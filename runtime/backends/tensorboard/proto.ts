/**
 * Minimal hand-written protobuf wire encoding/decoding for the tfevents subset
 * (see `tensorboard.proto` next to this file). The scalar hot path does not use `ProtoWriter`
 * (it writes straight into the record buffer, see `summary-writer.ts`); this module serves the cold
 * paths (text, images, hparams, file header) and the reader.
 */

export const WIRE_VARINT = 0;
export const WIRE_FIXED64 = 1;
export const WIRE_LEN = 2;
export const WIRE_FIXED32 = 5;

const textEncoder = new TextEncoder();
const textDecoder = new TextDecoder('utf-8', { fatal: false });

export function utf8(s: string): Uint8Array {
  return textEncoder.encode(s);
}

export function fromUtf8(b: Uint8Array): string {
  return textDecoder.decode(b);
}

/** Bytes needed for the varint of a non-negative integer < 2^53. */
export function varintSize(n: number): number {
  if (n < 0x80) return 1;
  if (n < 0x4000) return 2;
  if (n < 0x200000) return 3;
  if (n < 0x10000000) return 4;
  let size = 4;
  n = Math.floor(n / 0x10000000);
  while (n > 0) {
    size++;
    n = Math.floor(n / 0x80);
  }
  return size;
}

/** Growable protobuf writer for cold paths. Fields are always written (no default elision). */
export class ProtoWriter {
  private buf: Uint8Array;
  private view: DataView;
  private pos = 0;

  constructor(initial = 64) {
    this.buf = new Uint8Array(initial);
    this.view = new DataView(this.buf.buffer);
  }

  private ensure(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.pos + n) size *= 2;
    const next = new Uint8Array(size);
    next.set(this.buf.subarray(0, this.pos));
    this.buf = next;
    this.view = new DataView(next.buffer);
  }

  /** Raw varint of an integer (negative values use the 10-byte two's-complement int64 form). */
  varint(n: number | bigint): this {
    if (typeof n === 'bigint' || n < 0 || n > Number.MAX_SAFE_INTEGER) {
      let v = BigInt.asUintN(64, BigInt(n));
      this.ensure(10);
      while (v >= 0x80n) {
        this.buf[this.pos++] = Number(v & 0x7fn) | 0x80;
        v >>= 7n;
      }
      this.buf[this.pos++] = Number(v);
      return this;
    }
    this.ensure(10);
    while (n >= 0x80) {
      this.buf[this.pos++] = (n % 0x80) | 0x80;
      n = Math.floor(n / 0x80);
    }
    this.buf[this.pos++] = n;
    return this;
  }

  tag(field: number, wire: number): this {
    return this.varint(field * 8 + wire);
  }

  uint(field: number, n: number | bigint): this {
    return this.tag(field, WIRE_VARINT).varint(n);
  }

  bool(field: number, b: boolean): this {
    return this.uint(field, b ? 1 : 0);
  }

  double(field: number, v: number): this {
    this.tag(field, WIRE_FIXED64);
    this.ensure(8);
    this.view.setFloat64(this.pos, v, true);
    this.pos += 8;
    return this;
  }

  float(field: number, v: number): this {
    this.tag(field, WIRE_FIXED32);
    this.ensure(4);
    this.view.setFloat32(this.pos, v, true);
    this.pos += 4;
    return this;
  }

  bytes(field: number, data: Uint8Array): this {
    this.tag(field, WIRE_LEN).varint(data.length);
    this.ensure(data.length);
    this.buf.set(data, this.pos);
    this.pos += data.length;
    return this;
  }

  string(field: number, s: string): this {
    return this.bytes(field, utf8(s));
  }

  /** Length-delimited sub-message built by `build`. */
  message(field: number, build: (w: ProtoWriter) => void): this {
    const sub = new ProtoWriter();
    build(sub);
    return this.bytes(field, sub.finish());
  }

  /** Packed repeated float. */
  packedFloats(field: number, values: readonly number[]): this {
    this.tag(field, WIRE_LEN).varint(values.length * 4);
    this.ensure(values.length * 4);
    for (const v of values) {
      this.view.setFloat32(this.pos, v, true);
      this.pos += 4;
    }
    return this;
  }

  get length(): number {
    return this.pos;
  }

  finish(): Uint8Array {
    return this.buf.slice(0, this.pos);
  }
}

export class ProtoDecodeError extends Error {}

/** A field as seen by `ProtoReader.fields()`. */
export interface RawField {
  field: number;
  wire: number;
  /** For varint: the value (number when safe, else bigint). */
  varint?: number | bigint;
  /** For fixed64/fixed32: the raw 8/4 bytes. For LEN: the payload. */
  bytes?: Uint8Array;
}

/** Strict protobuf reader: throws `ProtoDecodeError` on truncation or unknown wire types. */
export class ProtoReader {
  pos = 0;
  private readonly view: DataView;
  constructor(readonly buf: Uint8Array) {
    this.view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  }

  get done(): boolean {
    return this.pos >= this.buf.length;
  }

  varint(): number | bigint {
    let result = 0;
    let mult = 1;
    for (let i = 0; i < 10; i++) {
      if (this.pos >= this.buf.length) throw new ProtoDecodeError('truncated varint');
      const b = this.buf[this.pos++]!;
      if (i >= 7) {
        // Beyond 49 bits: redo in bigint for exactness.
        return this.bigVarintFrom(this.pos - i - 1);
      }
      result += (b & 0x7f) * mult;
      mult *= 0x80;
      if (b < 0x80) return result;
    }
    throw new ProtoDecodeError('varint too long');
  }

  private bigVarintFrom(start: number): bigint {
    this.pos = start;
    let result = 0n;
    let shift = 0n;
    for (let i = 0; i < 10; i++) {
      if (this.pos >= this.buf.length) throw new ProtoDecodeError('truncated varint');
      const b = this.buf[this.pos++]!;
      result |= BigInt(b & 0x7f) << shift;
      shift += 7n;
      if (b < 0x80) return result;
    }
    throw new ProtoDecodeError('varint too long');
  }

  /** varint as a JS number (int64 semantics: values ≥ 2^63 become negative). */
  int64(): number {
    const v = this.varint();
    if (typeof v === 'number') return v;
    return Number(BigInt.asIntN(64, v));
  }

  private take(n: number): Uint8Array {
    if (n < 0 || this.pos + n > this.buf.length) throw new ProtoDecodeError('truncated field');
    const out = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return out;
  }

  double(): number {
    const at = this.pos;
    this.take(8);
    return this.view.getFloat64(at, true);
  }

  float(): number {
    const at = this.pos;
    this.take(4);
    return this.view.getFloat32(at, true);
  }

  lenDelimited(): Uint8Array {
    const n = this.varint();
    if (typeof n !== 'number') throw new ProtoDecodeError('length too large');
    return this.take(n);
  }

  /** Read a tag; returns [field, wire]. */
  tag(): [number, number] {
    const t = this.varint();
    if (typeof t !== 'number') throw new ProtoDecodeError('bad tag');
    const field = Math.floor(t / 8);
    const wire = t % 8;
    if (field === 0) throw new ProtoDecodeError('field number 0');
    return [field, wire];
  }

  skip(wire: number): void {
    switch (wire) {
      case WIRE_VARINT:
        this.varint();
        return;
      case WIRE_FIXED64:
        this.take(8);
        return;
      case WIRE_LEN:
        this.lenDelimited();
        return;
      case WIRE_FIXED32:
        this.take(4);
        return;
      default:
        throw new ProtoDecodeError(`unsupported wire type ${wire}`);
    }
  }

  /** Iterate over fields, calling `onField`; the callback must consume the field or call skip. */
  each(onField: (field: number, wire: number) => void): void {
    while (!this.done) {
      const [field, wire] = this.tag();
      const before = this.pos;
      onField(field, wire);
      if (this.pos === before) this.skip(wire);
    }
  }
}

/** Decode packed (or a single unpacked) fixed32 floats. */
export function readPackedFloats(r: ProtoReader, wire: number, out: number[]): void {
  if (wire === WIRE_FIXED32) {
    out.push(r.float());
    return;
  }
  const sub = new ProtoReader(r.lenDelimited());
  while (!sub.done) out.push(sub.float());
}

export function readPackedDoubles(r: ProtoReader, wire: number, out: number[]): void {
  if (wire === WIRE_FIXED64) {
    out.push(r.double());
    return;
  }
  const sub = new ProtoReader(r.lenDelimited());
  while (!sub.done) out.push(sub.double());
}

export function readPackedVarints(r: ProtoReader, wire: number, out: number[]): void {
  if (wire === WIRE_VARINT) {
    out.push(r.int64());
    return;
  }
  const sub = new ProtoReader(r.lenDelimited());
  while (!sub.done) out.push(sub.int64());
}

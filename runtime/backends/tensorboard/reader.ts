/**
 * Reading tfevents files back: TFRecord framing with both masked CRC-32C checks, then a strict
 * protobuf decode of each `tensorboard.Event`.
 *
 * Reading stops at the first problem (like TensorBoard): a partial record at the end of the file
 * (`truncated`), a bad length CRC (`length-crc`), a bad payload CRC (`data-crc`) or an undecodable
 * payload (`decode`). Every complete record before it is returned, and the problem is reported in
 * `ReadResult.error` with its byte offset.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { crc32c, maskCrc } from './crc.js';
import {
  ProtoDecodeError,
  ProtoReader,
  WIRE_FIXED32,
  fromUtf8,
  readPackedDoubles,
  readPackedFloats,
  readPackedVarints,
} from './proto.js';

export interface TfRecord {
  /** Byte offset of the record in the file. */
  offset: number;
  payload: Uint8Array;
}

export type ReadErrorKind = 'truncated' | 'length-crc' | 'data-crc' | 'decode';

export interface ReadError {
  kind: ReadErrorKind;
  /** Byte offset of the record that could not be read. */
  offset: number;
  message: string;
}

export interface RecordsResult {
  records: TfRecord[];
  /** Bytes covered by the complete, valid records. */
  validBytes: number;
  error?: ReadError;
}

/** Split TFRecord framing, verifying both CRCs. Payloads are views into `data`. */
export function readRecords(data: Uint8Array): RecordsResult {
  const records: TfRecord[] = [];
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  let pos = 0;
  while (pos < data.length) {
    if (pos + 12 > data.length) {
      return { records, validBytes: pos, error: { kind: 'truncated', offset: pos, message: `truncated record header at byte ${pos}` } };
    }
    const lo = view.getUint32(pos, true);
    const hi = view.getUint32(pos + 4, true);
    const lenCrc = view.getUint32(pos + 8, true);
    if (maskCrc(crc32c(data.subarray(pos, pos + 8))) !== lenCrc) {
      return { records, validBytes: pos, error: { kind: 'length-crc', offset: pos, message: `failed header crc32 check at byte ${pos}` } };
    }
    const len = hi * 0x100000000 + lo;
    if (pos + 12 + len + 4 > data.length) {
      return { records, validBytes: pos, error: { kind: 'truncated', offset: pos, message: `truncated record at byte ${pos} (${len}-byte payload)` } };
    }
    const payload = data.subarray(pos + 12, pos + 12 + len);
    if (maskCrc(crc32c(payload)) !== view.getUint32(pos + 12 + len, true)) {
      return { records, validBytes: pos, error: { kind: 'data-crc', offset: pos, message: `failed event crc32 check at byte ${pos}` } };
    }
    records.push({ offset: pos, payload });
    pos += 16 + len;
  }
  return { records, validBytes: pos };
}

export interface DecodedTensor {
  dtype: number;
  /** Dimension sizes; `[]` for rank 0. */
  shape: number[];
  tensorContent?: Uint8Array;
  floatVal: number[];
  doubleVal: number[];
  intVal: number[];
  int64Val: number[];
  boolVal: boolean[];
  stringVal: Uint8Array[];
}

export interface DecodedMetadata {
  pluginName?: string;
  pluginContent?: Uint8Array;
  displayName?: string;
  summaryDescription?: string;
  dataClass?: number;
}

export interface DecodedImage {
  height: number;
  width: number;
  colorspace: number;
  encodedImage: Uint8Array;
}

export interface DecodedValue {
  tag: string;
  simpleValue?: number;
  metadata?: DecodedMetadata;
  tensor?: DecodedTensor;
  image?: DecodedImage;
}

export interface DecodedEvent {
  /** Byte offset of the record in the file. */
  offset: number;
  wallTime: number;
  step: number;
  fileVersion?: string;
  summary?: DecodedValue[];
  sessionLog?: { status: number; checkpointPath?: string; msg?: string };
  sourceMetadata?: { writer: string };
}

export interface ReadResult {
  events: DecodedEvent[];
  validBytes: number;
  error?: ReadError;
}

function decodeTensor(b: Uint8Array): DecodedTensor {
  const t: DecodedTensor = { dtype: 0, shape: [], floatVal: [], doubleVal: [], intVal: [], int64Val: [], boolVal: [], stringVal: [] };
  const r = new ProtoReader(b);
  r.each((f, wire) => {
    switch (f) {
      case 1:
        t.dtype = r.int64();
        break;
      case 2: {
        const s = new ProtoReader(r.lenDelimited());
        s.each((sf) => {
          if (sf === 2) {
            const d = new ProtoReader(s.lenDelimited());
            let size = 0;
            d.each((df) => {
              if (df === 1) size = d.int64();
            });
            t.shape.push(size);
          }
        });
        break;
      }
      case 4:
        t.tensorContent = r.lenDelimited();
        break;
      case 5:
        readPackedFloats(r, wire, t.floatVal);
        break;
      case 6:
        readPackedDoubles(r, wire, t.doubleVal);
        break;
      case 7:
        readPackedVarints(r, wire, t.intVal);
        break;
      case 8:
        t.stringVal.push(r.lenDelimited());
        break;
      case 10:
        readPackedVarints(r, wire, t.int64Val);
        break;
      case 11: {
        const tmp: number[] = [];
        readPackedVarints(r, wire, tmp);
        for (const x of tmp) t.boolVal.push(x !== 0);
        break;
      }
    }
  });
  return t;
}

function decodeMetadata(b: Uint8Array): DecodedMetadata {
  const m: DecodedMetadata = {};
  const r = new ProtoReader(b);
  r.each((f) => {
    if (f === 1) {
      const p = new ProtoReader(r.lenDelimited());
      p.each((pf) => {
        if (pf === 1) m.pluginName = fromUtf8(p.lenDelimited());
        else if (pf === 2) m.pluginContent = p.lenDelimited();
      });
      m.pluginName ??= '';
      m.pluginContent ??= new Uint8Array(0);
    } else if (f === 2) m.displayName = fromUtf8(r.lenDelimited());
    else if (f === 3) m.summaryDescription = fromUtf8(r.lenDelimited());
    else if (f === 4) m.dataClass = r.int64();
  });
  return m;
}

function decodeValue(b: Uint8Array): DecodedValue {
  const v: DecodedValue = { tag: '' };
  const r = new ProtoReader(b);
  r.each((f, wire) => {
    if (f === 1) v.tag = fromUtf8(r.lenDelimited());
    else if (f === 2 && wire === WIRE_FIXED32) v.simpleValue = r.float();
    else if (f === 4) {
      const img: DecodedImage = { height: 0, width: 0, colorspace: 0, encodedImage: new Uint8Array(0) };
      const i = new ProtoReader(r.lenDelimited());
      i.each((imf) => {
        if (imf === 1) img.height = i.int64();
        else if (imf === 2) img.width = i.int64();
        else if (imf === 3) img.colorspace = i.int64();
        else if (imf === 4) img.encodedImage = i.lenDelimited();
      });
      v.image = img;
    } else if (f === 8) v.tensor = decodeTensor(r.lenDelimited());
    else if (f === 9) v.metadata = decodeMetadata(r.lenDelimited());
  });
  return v;
}

/** Decode one serialized `tensorboard.Event`. Throws `ProtoDecodeError` on malformed bytes. */
export function decodeEvent(payload: Uint8Array, offset = 0): DecodedEvent {
  const e: DecodedEvent = { offset, wallTime: 0, step: 0 };
  const r = new ProtoReader(payload);
  r.each((f) => {
    switch (f) {
      case 1:
        e.wallTime = r.double();
        break;
      case 2:
        e.step = r.int64();
        break;
      case 3:
        e.fileVersion = fromUtf8(r.lenDelimited());
        break;
      case 5: {
        const values: DecodedValue[] = [];
        const s = new ProtoReader(r.lenDelimited());
        s.each((sf) => {
          if (sf === 1) values.push(decodeValue(s.lenDelimited()));
        });
        e.summary = values;
        break;
      }
      case 7: {
        const log: NonNullable<DecodedEvent['sessionLog']> = { status: 0 };
        const s = new ProtoReader(r.lenDelimited());
        s.each((sf) => {
          if (sf === 1) log.status = s.int64();
          else if (sf === 2) log.checkpointPath = fromUtf8(s.lenDelimited());
          else if (sf === 3) log.msg = fromUtf8(s.lenDelimited());
        });
        e.sessionLog = log;
        break;
      }
      case 10: {
        const s = new ProtoReader(r.lenDelimited());
        const meta = { writer: '' };
        s.each((sf) => {
          if (sf === 1) meta.writer = fromUtf8(s.lenDelimited());
        });
        e.sourceMetadata = meta;
        break;
      }
    }
  });
  return e;
}

/** Decode the records and events in `data` (the bytes of a tfevents file). */
export function decodeEvents(data: Uint8Array): ReadResult {
  const { records, validBytes, error } = readRecords(data);
  const events: DecodedEvent[] = [];
  for (const rec of records) {
    try {
      events.push(decodeEvent(rec.payload, rec.offset));
    } catch (err) {
      if (!(err instanceof ProtoDecodeError)) throw err;
      return { events, validBytes: rec.offset, error: { kind: 'decode', offset: rec.offset, message: `undecodable event at byte ${rec.offset}: ${err.message}` } };
    }
  }
  return error ? { events, validBytes, error } : { events, validBytes };
}

/** Read and decode a tfevents file. */
export async function readEvents(file: string): Promise<ReadResult> {
  return decodeEvents(await fs.promises.readFile(file));
}

/** Synchronous `readEvents`. */
export function readEventsSync(file: string): ReadResult {
  return decodeEvents(fs.readFileSync(file));
}

/** Event files (basename contains `tfevents`) directly in `dir`, sorted by name (load order). */
export function listEventFiles(dir: string): string[] {
  return fs
    .readdirSync(dir)
    .filter((n) => n.includes('tfevents'))
    .sort()
    .map((n) => path.join(dir, n));
}

/** Scalar value of a summary value: `simple_value`, or a rank-0 float tensor's value. */
export function scalarOf(v: DecodedValue): number | undefined {
  if (v.simpleValue !== undefined) return v.simpleValue;
  const t = v.tensor;
  if (t && t.shape.length === 0) {
    if (t.floatVal.length === 1) return t.floatVal[0];
    if (t.doubleVal.length === 1) return t.doubleVal[0];
  }
  return undefined;
}

/** Text of a text-plugin value (first string). */
export function textOf(v: DecodedValue): string | undefined {
  const s = v.tensor?.stringVal[0];
  return s === undefined ? undefined : fromUtf8(s);
}

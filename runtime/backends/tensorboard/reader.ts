/**
 * Reading tfevents files back: TFRecord framing with both masked CRC-32C checks, then a strict
 * protobuf decode of each `tensorboard.Event`.
 *
 * Reading stops at the first problem (like TensorBoard): a partial record at the end of the file
 * (`truncated`), a bad length CRC (`length-crc`), a bad payload CRC (`data-crc`) or an undecodable
 * payload (`decode`). Every complete record before it is returned, and the problem is reported in
 * `ReadResult.error` with its byte offset.
 *
 * `readEventStream` / `readEventStreamSync` read the file in chunks, one event per `next()`, through
 * the same framing (`RecordScanner`) and decoder; `readEvents` / `readEventsSync` collect them. The
 * streams end normally at a torn tail (`stream.error`) and throw `EventFileError` at any other damage.
 */
import { constants as bufferConstants } from 'node:buffer';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { BackendError, ConfigError } from '../../core/errors.js';
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

/** Framing bytes around a payload: length (8), length CRC (4), data CRC (4). */
const RECORD_OVERHEAD = 16;
const HEADER_BYTES = 12;

/**
 * TFRecord framing over a window of a file: `buf[pos, end)` holds the bytes from file offset
 * `base + pos` on. The one implementation of record splitting and both CRC checks; the in-memory
 * readers feed it the whole file, the streams feed it chunk by chunk.
 */
class RecordScanner {
  buf: Uint8Array;
  private view: DataView;
  /** Index in `buf` of the next record. */
  pos = 0;
  /** Index in `buf` just past the bytes read so far. */
  end: number;
  /** File offset of `buf[0]`. */
  base = 0;
  /** When `next()` found an incomplete record: the bytes it needs from `pos` (its full size once the header is in). */
  need = 0;
  /** Payload length of the record at `pos`, once its header has been checked (-1 before). */
  private pendingLen = -1;
  /** File offset of the record `next()` returned last. */
  recordOffset = 0;
  /** The first problem found (set once; no record is returned after it). */
  problem: ReadError | undefined;
  /** `buf` was allocated here (not the caller's bytes), so it may be overwritten. */
  private owned = false;

  constructor(buf: Uint8Array, end = buf.length) {
    this.buf = buf;
    this.view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
    this.end = end;
  }

  /** File offset of the next unread record (= bytes covered by valid records so far). */
  get offset(): number {
    return this.base + this.pos;
  }

  /** The next complete, CRC-checked payload (a view into `buf`), or undefined: see `need`/`problem`. */
  next(): Uint8Array | undefined {
    if (this.problem) return undefined;
    const pos = this.pos;
    const avail = this.end - pos;
    if (avail < HEADER_BYTES) {
      this.need = HEADER_BYTES;
      this.pendingLen = -1;
      return undefined;
    }
    const view = this.view;
    const lo = view.getUint32(pos, true);
    const hi = view.getUint32(pos + 4, true);
    if (maskCrc(crc32c(this.buf.subarray(pos, pos + 8))) !== view.getUint32(pos + 8, true)) {
      const at = this.base + pos;
      this.problem = { kind: 'length-crc', offset: at, message: `failed header crc32 check at byte ${at}` };
      return undefined;
    }
    const len = hi * 0x100000000 + lo;
    if (avail < RECORD_OVERHEAD + len) {
      this.need = RECORD_OVERHEAD + len;
      this.pendingLen = len;
      return undefined;
    }
    const payload = this.buf.subarray(pos + HEADER_BYTES, pos + HEADER_BYTES + len);
    if (maskCrc(crc32c(payload)) !== view.getUint32(pos + HEADER_BYTES + len, true)) {
      const at = this.base + pos;
      this.problem = { kind: 'data-crc', offset: at, message: `failed event crc32 check at byte ${at}` };
      return undefined;
    }
    this.recordOffset = this.base + pos;
    this.pos = pos + RECORD_OVERHEAD + len;
    this.need = 0;
    return payload;
  }

  /** Move back to the record at file offset `offset` (one `next()` returned, then found undecodable). */
  rewindTo(offset: number): void {
    this.pos = offset - this.base;
  }

  /**
   * The input ends at file offset `size` (default: the end of the window): a partial record left
   * over is a torn tail.
   */
  endOfInput(size = this.base + this.end): void {
    const at = this.offset;
    if (this.problem || at >= size) return;
    this.problem =
      this.pendingLen < 0 || size - at < HEADER_BYTES
        ? { kind: 'truncated', offset: at, message: `truncated record header at byte ${at}` }
        : { kind: 'truncated', offset: at, message: `truncated record at byte ${at} (${this.pendingLen}-byte payload)` };
  }

  /**
   * Where the next read goes: `[end, buf.length)` of the current buffer when the missing bytes fit
   * there; else the unread rest moves to the front of a buffer of `max(chunkSize, need)` bytes: the
   * current one when it has that size (payloads returned earlier are then overwritten: callers
   * decode them before reading on), or a new one (grown for a large record, back to `chunkSize` after).
   * Reusing one buffer keeps memory flat: a new 1 MiB buffer per chunk would pile up outside the
   * heap until a full GC (about 64 MB of them).
   */
  readTarget(chunkSize: number): void {
    const rest = this.end - this.pos;
    const missing = this.need > rest ? this.need - rest : 1;
    if (this.buf.length - this.end >= missing) return;
    const size = Math.max(chunkSize, this.need);
    if (size > MAX_RECORD_BUFFER) {
      const at = this.offset;
      this.problem = {
        kind: 'decode',
        offset: at,
        message: `record at byte ${at} claims ${this.pendingLen} payload bytes, more than one buffer can hold`,
      };
      return;
    }
    if (this.owned && this.buf.length >= size && (this.buf.length === chunkSize || size > chunkSize)) {
      this.buf.copyWithin(0, this.pos, this.end);
    } else {
      // A plain Uint8Array (not a Buffer): its subarray() is several times cheaper, once per record.
      const next = new Uint8Array(size);
      next.set(this.buf.subarray(this.pos, this.end), 0);
      this.buf = next;
      this.view = new DataView(next.buffer, next.byteOffset, next.byteLength);
      this.owned = true;
    }
    this.base += this.pos;
    this.end = rest;
    this.pos = 0;
  }

  /** Bytes the file must hold for the record at `pos` to be complete (known once its header is read). */
  get neededFileSize(): number {
    return this.offset + this.need;
  }
}

const MAX_RECORD_BUFFER = Math.min(bufferConstants.MAX_LENGTH, 2 ** 32);

/** Split TFRecord framing, verifying both CRCs. Payloads are views into `data`. */
export function readRecords(data: Uint8Array): RecordsResult {
  const records: TfRecord[] = [];
  const s = new RecordScanner(data);
  for (let payload = s.next(); payload; payload = s.next()) records.push({ offset: s.recordOffset, payload });
  s.endOfInput();
  return s.problem ? { records, validBytes: s.offset, error: s.problem } : { records, validBytes: s.offset };
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
        t.tensorContent = r.lenDelimited().slice();
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
        t.stringVal.push(r.lenDelimited().slice());
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
        else if (pf === 2) m.pluginContent = p.lenDelimited().slice();
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
        else if (imf === 4) img.encodedImage = i.lenDelimited().slice();
      });
      v.image = img;
    } else if (f === 8) v.tensor = decodeTensor(r.lenDelimited());
    else if (f === 9) v.metadata = decodeMetadata(r.lenDelimited());
  });
  return v;
}

/**
 * Decode one serialized `tensorboard.Event`. Throws `ProtoDecodeError` on malformed bytes. The
 * event owns its bytes fields (copies, not views into `payload`), so the streams can reuse their
 * read buffer and an event kept does not pin the chunk or file it came from.
 */
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

/**
 * The next event in the scanner's window, or undefined (see the scanner's `need` / `problem`):
 * framing and CRCs by the scanner, then the one decoder; an undecodable payload becomes the problem.
 */
function nextEvent(s: RecordScanner): DecodedEvent | undefined {
  const payload = s.next();
  if (payload === undefined) return undefined;
  try {
    return decodeEvent(payload, s.recordOffset);
  } catch (err) {
    if (!(err instanceof ProtoDecodeError)) throw err;
    const at = s.recordOffset;
    s.rewindTo(at);
    s.problem = { kind: 'decode', offset: at, message: `undecodable event at byte ${at}: ${err.message}` };
    return undefined;
  }
}

function resultOf(events: DecodedEvent[], validBytes: number, error: ReadError | undefined): ReadResult {
  return error ? { events, validBytes, error } : { events, validBytes };
}

/** Decode the records and events in `data` (the bytes of a tfevents file). */
export function decodeEvents(data: Uint8Array): ReadResult {
  const s = new RecordScanner(data);
  const events: DecodedEvent[] = [];
  for (let e = nextEvent(s); e !== undefined; e = nextEvent(s)) events.push(e);
  s.endOfInput();
  return resultOf(events, s.offset, s.problem);
}

/**
 * A damaged record that is not a torn tail at the physical end of the file: a bad length or data
 * CRC, or a payload that is not an Event. Thrown by the event streams after every event before it.
 */
export class EventFileError extends BackendError {
  readonly file: string;
  readonly kind: ReadErrorKind;
  /** Byte offset of the damaged record (= bytes of valid records before it). */
  readonly offset: number;
  /** The same problem as `readEvents()` reports it in `ReadResult.error`. */
  readonly readError: ReadError;
  constructor(file: string, error: ReadError) {
    super(
      'tensorboard',
      `${file}: ${error.message}: the record is damaged (it is not a torn record at the end of the file); ` +
        `the events before byte ${error.offset} are intact, and readEvents() returns them with this error in ReadResult.error`,
      { code: error.kind },
    );
    this.file = file;
    this.kind = error.kind;
    this.offset = error.offset;
    this.readError = error;
  }
}

export interface EventStreamOptions {
  /**
   * Bytes read from the file at a time (default 1 MiB). A record larger than this is still read
   * whole, into a buffer of its own size: memory stays bounded by max(chunkSize, largest record).
   */
  chunkSize?: number;
}

const DEFAULT_CHUNK = 1 << 20;

function chunkSizeOf(options: EventStreamOptions | undefined): number {
  const n = options?.chunkSize ?? DEFAULT_CHUNK;
  if (!Number.isSafeInteger(n) || n < 1) {
    throw new ConfigError(`readEventStream: chunkSize must be a positive integer number of bytes (got ${String(n)}); omit it for the default ${DEFAULT_CHUNK}`, {
      option: 'chunkSize',
    });
  }
  return n;
}

const DONE: IteratorReturnResult<undefined> = Object.freeze({ done: true, value: undefined });

/**
 * The state both streams share: the scanner over the current window. Events are decoded one at a
 * time as they are asked for, so at most one chunk of bytes and the caller's current event are held.
 * The async and sync streams differ only in how they read and stat the file.
 */
abstract class EventStreamBase {
  readonly file: string;
  protected readonly chunkSize: number;
  protected readonly scanner = new RecordScanner(new Uint8Array(0));
  protected eof = false;
  protected finished = false;

  constructor(file: string, options?: EventStreamOptions) {
    this.file = file;
    this.chunkSize = chunkSizeOf(options);
  }

  /** Bytes covered by the complete, valid records read so far (all of them once the stream has ended). */
  get validBytes(): number {
    return this.scanner.offset;
  }

  /**
   * Set once the stream has ended at a torn last record (kind `truncated`: the file ends inside a
   * record, as a crash mid-write leaves it); `ReadResult.error` of `readEvents()`. Damage anywhere
   * else is not reported here: the stream throws an `EventFileError` instead.
   */
  get error(): ReadError | undefined {
    return this.finished ? this.scanner.problem : undefined;
  }

  /** The next event if the window holds it. */
  protected take(): DecodedEvent | undefined {
    return this.finished ? undefined : nextEvent(this.scanner);
  }

  /**
   * After `take()` found no event: 'done' at the end (a torn tail included), 'read' when
   * `scanner.buf[end..]` is to be filled from the file, 'stat' when the file size must be checked
   * first (`sizeIs()`). Throws `EventFileError` at damage.
   */
  protected plan(): 'read' | 'stat' | 'done' {
    const s = this.scanner;
    if (s.problem) {
      this.finished = true;
      if (s.problem.kind === 'truncated') return 'done';
      throw new EventFileError(this.file, s.problem);
    }
    if (this.eof) {
      s.endOfInput(); // nothing left, or a torn tail
      this.finished = true;
      return 'done';
    }
    // A buffer larger than a chunk is allocated only for a record the file really holds.
    if (s.need > this.chunkSize && !this.sizeChecked) return 'stat';
    this.sizeChecked = false;
    s.readTarget(this.chunkSize);
    return s.problem ? this.plan() : 'read';
  }

  private sizeChecked = false;

  /** The file's current size, for a 'stat' plan: a record reaching past it is a torn tail. */
  protected sizeIs(size: number): void {
    if (this.scanner.neededFileSize > size) {
      this.scanner.endOfInput(size);
      this.eof = true;
    } else this.sizeChecked = true;
  }

  /** `n` bytes were read into `scanner.buf[end..]` (0: end of file). */
  protected didRead(n: number): void {
    if (n === 0) this.eof = true;
    else this.scanner.end += n;
  }
}

/**
 * Async iterator over the events of a tfevents file, reading it in chunks (see `readEventStream`).
 * Single use. The file is opened on the first `next()` and closed at the end, on an error, and
 * when the loop is left early (`break`, `return`, a throw: `return()` closes it).
 */
export class EventStream extends EventStreamBase implements AsyncIterableIterator<DecodedEvent> {
  private fh: fs.promises.FileHandle | undefined;
  private pending: Promise<unknown> | undefined;

  [Symbol.asyncIterator](): this {
    return this;
  }

  next(): Promise<IteratorResult<DecodedEvent>> {
    // One refill at a time: a concurrent caller waits for it, then takes the next event.
    if (this.pending) return this.pending.then(() => this.next());
    const value = this.take();
    if (value !== undefined) return Promise.resolve({ done: false, value });
    if (this.finished) return Promise.resolve(DONE);
    const p = this.refill();
    this.pending = p;
    return p.finally(() => {
      if (this.pending === p) this.pending = undefined;
    });
  }

  private async refill(): Promise<IteratorResult<DecodedEvent>> {
    try {
      for (;;) {
        const step = this.plan();
        if (step === 'done') {
          await this.close();
          return DONE;
        }
        this.fh ??= await fs.promises.open(this.file, 'r');
        if (step === 'stat') {
          this.sizeIs((await this.fh.stat()).size);
          continue;
        }
        const s = this.scanner;
        const { bytesRead } = await this.fh.read(s.buf, s.end, s.buf.length - s.end, s.base + s.end);
        this.didRead(bytesRead);
        const value = this.take();
        if (value !== undefined) return { done: false, value };
      }
    } catch (err) {
      this.finished = true;
      await this.close();
      throw err;
    }
  }

  /** Leave early: closes the file. */
  async return(): Promise<IteratorResult<DecodedEvent>> {
    this.finished = true;
    await this.pending?.catch(() => undefined);
    await this.close();
    return DONE;
  }

  private async close(): Promise<void> {
    const fh = this.fh;
    this.fh = undefined;
    await fh?.close();
  }
}

/** Synchronous `EventStream` (reads with `fs.readSync`); `for (const ev of readEventStreamSync(file))`. */
export class EventStreamSync extends EventStreamBase implements IterableIterator<DecodedEvent> {
  private fd: number | undefined;

  [Symbol.iterator](): this {
    return this;
  }

  next(): IteratorResult<DecodedEvent> {
    try {
      for (;;) {
        const value = this.take();
        if (value !== undefined) return { done: false, value };
        if (this.finished) return DONE;
        const step = this.plan();
        if (step === 'done') {
          this.close();
          return DONE;
        }
        this.fd ??= fs.openSync(this.file, 'r');
        if (step === 'stat') {
          this.sizeIs(fs.fstatSync(this.fd).size);
          continue;
        }
        const s = this.scanner;
        this.didRead(fs.readSync(this.fd, s.buf, s.end, s.buf.length - s.end, s.base + s.end));
      }
    } catch (err) {
      this.finished = true;
      this.close();
      throw err;
    }
  }

  /** Leave early: closes the file. */
  return(): IteratorResult<DecodedEvent> {
    this.finished = true;
    this.close();
    return DONE;
  }

  private close(): void {
    const fd = this.fd;
    this.fd = undefined;
    if (fd !== undefined) fs.closeSync(fd);
  }
}

/**
 * Stream the events of a tfevents file: `for await (const ev of readEventStream(file)) …`.
 *
 * Reads `chunkSize` bytes at a time (default 1 MiB), so memory stays bounded by one chunk (or the
 * largest record) whatever the file size. Both CRCs are verified. At the end, `stream.validBytes`
 * and `stream.error` say what `readEvents()` would: a torn last record (the file ends inside it)
 * ends the loop normally with `error.kind === 'truncated'`. A damaged record anywhere else throws
 * an `EventFileError` naming the file and its byte offset, after every event before it.
 */
export function readEventStream(file: string, options?: EventStreamOptions): EventStream {
  return new EventStream(file, options);
}

/** Synchronous `readEventStream` (reads with `fs.readSync` in chunks). */
export function readEventStreamSync(file: string, options?: EventStreamOptions): EventStreamSync {
  return new EventStreamSync(file, options);
}

function collect(events: DecodedEvent[], err: unknown): ReadResult {
  if (err instanceof EventFileError) return resultOf(events, err.offset, err.readError);
  throw err;
}

/**
 * Read and decode a whole tfevents file (built on `readEventStream`; every event is kept in memory,
 * so stream large files instead). Reading stops at the first problem, returned in `error`.
 */
export async function readEvents(file: string, options?: EventStreamOptions): Promise<ReadResult> {
  const stream = readEventStream(file, options);
  const events: DecodedEvent[] = [];
  try {
    for await (const e of stream) events.push(e);
  } catch (err) {
    return collect(events, err);
  }
  return resultOf(events, stream.validBytes, stream.error);
}

/** Synchronous `readEvents` (built on `readEventStreamSync`). */
export function readEventsSync(file: string, options?: EventStreamOptions): ReadResult {
  const stream = readEventStreamSync(file, options);
  const events: DecodedEvent[] = [];
  try {
    for (const e of stream) events.push(e);
  } catch (err) {
    return collect(events, err);
  }
  return resultOf(events, stream.validBytes, stream.error);
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

/**
 * One append-only tfevents file: TFRecord framing, in-memory buffering and synchronous writes.
 *
 * Records are encoded into one reusable, growable `Buffer`. The 12-byte record header (uint64
 * length + masked CRC of the length) is reserved when a record starts; both CRCs are computed when
 * the buffer is written ("sealed"), so encoding a record costs no checksum work on the caller's
 * thread. The buffer is written with `fs.writeSync` (whole records only) when it passes
 * `bufferBytes`, on `flushSync()` (explicit flush, periodic timer, process exit) and on close.
 *
 * Failure model: the file on disk is always a prefix of the record stream. If a write fails (even
 * after a partial write), the unwritten rest stays in memory, the error is remembered and reported
 * by the next `flushSync()`. A write that failed part-way (a full disk) is cut back to the last
 * whole record, and the next flush writes the rest again, so the file holds whole records only
 * and nothing already on disk is ever corrupted. While the file keeps failing the
 * buffer may grow to `MAX_FAILED_BUFFER_BYTES`; beyond that new records are dropped (counted in
 * `droppedRecords`) instead of growing memory without bound.
 */
import * as fs from 'node:fs';
import { crc32c, maskCrc } from './crc.js';

const HEADER = 12;
const FOOTER = 4;
/** While writes fail, keep at most this many bytes in memory; later records are dropped. */
export const MAX_FAILED_BUFFER_BYTES = 64 * 1024 * 1024;

/** Masked CRCs of the 8-byte little-endian length, cached per length (lengths repeat a lot). */
const lengthCrcCache = new Map<number, number>();
const lengthScratch = Buffer.alloc(8);

function maskedLengthCrc(len: number): number {
  let c = lengthCrcCache.get(len);
  if (c === undefined) {
    lengthScratch.writeUInt32LE(len % 0x100000000, 0);
    lengthScratch.writeUInt32LE(Math.floor(len / 0x100000000), 4);
    c = maskCrc(crc32c(lengthScratch));
    if (lengthCrcCache.size > 65536) lengthCrcCache.clear();
    lengthCrcCache.set(len, c);
  }
  return c;
}

export class RecordFile {
  /** Encoding target; public for the hot-path encoders in this folder (treat as internal). */
  buf: Buffer;
  /** DataView over `buf` (rebuilt when the buffer grows). */
  view: DataView;
  /** Bytes used in `buf`. */
  used = 0;

  private fd: number;
  private readonly bufferBytes: number;
  /** Start offsets (in `buf`) of records whose CRCs are not computed yet. */
  private unsealed: Uint32Array = new Uint32Array(1024);
  private unsealedCount = 0;
  /** Bytes at the start of `buf` already on disk (after a partial write that then failed). */
  private writtenPrefix = 0;
  private pendingError: unknown = undefined;
  private openRecordStart = -1;
  /** Total bytes written to the file. */
  bytesOnDisk = 0;
  /** Records dropped because writes kept failing and the buffer was full. */
  droppedRecords = 0;
  closed = false;

  constructor(
    readonly path: string,
    fd: number,
    options: { bufferBytes: number },
  ) {
    this.fd = fd;
    this.bufferBytes = Math.max(4096, options.bufferBytes);
    this.buf = Buffer.allocUnsafe(Math.min(this.bufferBytes * 2, 1 << 22) + 256);
    this.view = new DataView(this.buf.buffer, this.buf.byteOffset, this.buf.byteLength);
  }

  /** Make room for `n` more bytes in `buf`. */
  ensure(n: number): void {
    const need = this.used + n;
    if (need <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < need) size *= 2;
    const next = Buffer.allocUnsafe(size);
    this.buf.copy(next, 0, 0, this.used);
    this.buf = next;
    this.view = new DataView(next.buffer, next.byteOffset, next.byteLength);
  }

  /** Start a record: reserves the header; returns the offset where the payload starts. */
  beginRecord(payloadHint = 64): number {
    if (this.closed) throw new Error(`tfevents file ${this.path} is closed`);
    this.ensure(HEADER + payloadHint + FOOTER);
    this.openRecordStart = this.used;
    this.used += HEADER;
    return this.used;
  }

  /** Finish the record opened by `beginRecord` (payload bytes are `buf[start+12 .. used)`). */
  endRecord(): void {
    const start = this.openRecordStart;
    this.openRecordStart = -1;
    const len = this.used - start - HEADER;
    this.ensure(FOOTER);
    this.buf.writeUInt32LE(len, start);
    this.buf.writeUInt32LE(0, start + 4);
    this.used += FOOTER;
    if (this.unsealedCount === this.unsealed.length) {
      const next = new Uint32Array(this.unsealed.length * 2);
      next.set(this.unsealed);
      this.unsealed = next;
    }
    this.unsealed[this.unsealedCount++] = start;
    if (this.used >= this.bufferBytes) {
      if (this.pendingError !== undefined && this.used > MAX_FAILED_BUFFER_BYTES) {
        // Failing file and full buffer: drop this record rather than grow without bound.
        this.used = start;
        this.unsealedCount--;
        this.droppedRecords++;
        return;
      }
      this.flushSync(false);
    }
  }

  /** Abandon the record opened by `beginRecord` (encoding failed). */
  abortRecord(): void {
    if (this.openRecordStart >= 0) this.used = this.openRecordStart;
    this.openRecordStart = -1;
  }

  /** Append a complete record with the given payload. */
  writeRecord(payload: Uint8Array): void {
    const at = this.beginRecord(payload.length);
    this.buf.set(payload, at);
    this.used += payload.length;
    this.endRecord();
  }

  private seal(): void {
    const buf = this.buf;
    for (let i = 0; i < this.unsealedCount; i++) {
      const start = this.unsealed[i]!;
      const len = buf.readUInt32LE(start);
      buf.writeUInt32LE(maskedLengthCrc(len), start + 8);
      const payloadEnd = start + HEADER + len;
      buf.writeUInt32LE(maskCrc(crc32c(buf.subarray(start + HEADER, payloadEnd))), payloadEnd);
    }
    this.unsealedCount = 0;
  }

  /**
   * Write everything buffered. With `throwOnError` (default) a failure is thrown; otherwise it is
   * remembered (see `lastError`). Either way the unwritten bytes stay buffered for a retry.
   */
  flushSync(throwOnError = true): void {
    if (this.openRecordStart >= 0) throw new Error('flushSync() inside an open record');
    if (this.closed) return;
    this.seal();
    while (this.writtenPrefix < this.used) {
      let n: number;
      try {
        n = fs.writeSync(this.fd, this.buf, this.writtenPrefix, this.used - this.writtenPrefix);
      } catch (err) {
        this.pendingError = err;
        if (this.writtenPrefix > 0) {
          // Part of the buffer landed (e.g. the disk filled up mid-write): cut the file back to the
          // buffer's start, a record boundary, so the file holds whole records only; the retry
          // writes the whole buffer again.
          try {
            fs.ftruncateSync(this.fd, this.bytesOnDisk - this.writtenPrefix);
            this.bytesOnDisk -= this.writtenPrefix;
            this.writtenPrefix = 0;
          } catch {
            // keep the torn tail; the retry continues from the exact byte where the file stopped
          }
        }
        if (throwOnError) throw err;
        return;
      }
      this.writtenPrefix += n;
      this.bytesOnDisk += n;
    }
    this.used = 0;
    this.writtenPrefix = 0;
    this.pendingError = undefined;
    // Give back memory after a burst (a large image, a failing period).
    if (this.buf.length > Math.max(4 * this.bufferBytes, 1 << 22)) {
      this.buf = Buffer.allocUnsafe(Math.min(this.bufferBytes * 2, 1 << 22) + 256);
      this.view = new DataView(this.buf.buffer, this.buf.byteOffset, this.buf.byteLength);
    }
  }

  /** The last write error (cleared by a later successful flush). */
  get lastError(): unknown {
    return this.pendingError;
  }

  /** Bytes buffered and not yet on disk. */
  get pendingBytes(): number {
    return this.used - this.writtenPrefix;
  }

  /** fdatasync (async). */
  sync(): Promise<void> {
    const fd = this.fd;
    return new Promise((resolve, reject) => fs.fdatasync(fd, (err) => (err ? reject(err) : resolve())));
  }

  /** Flush, fsync and close. Throws on write failure (the fd stays open for a retry then). */
  async close(): Promise<void> {
    if (this.closed) return;
    this.flushSync(true);
    await this.sync();
    this.closed = true;
    await new Promise<void>((resolve, reject) => fs.close(this.fd, (err) => (err ? reject(err) : resolve())));
  }
}

/**
 * The framing of W&B's offline `.wandb` transaction logs: a 7-byte file header followed by the
 * LevelDB log format.
 *
 * - File header: ASCII `:W&B`, uint16 LE magic 0xBEE1, uint8 version 0.
 * - The file is a sequence of 32 KiB blocks counted from the start of the file (so the first block
 *   has 7 bytes fewer for chunks). A chunk never crosses a block boundary; fewer than 7 bytes left
 *   in a block are zero-filled. With exactly 7 bytes left a record starts with an empty FIRST chunk
 *   (as W&B's `datastore.py` and LevelDB do).
 * - Chunk = uint32 LE CRC-32 (IEEE) over the type byte followed by the payload, uint16 LE payload
 *   length, uint8 type (1 FULL, 2 FIRST, 3 MIDDLE, 4 LAST), payload.
 *
 * The writer frames records in memory and writes whole records only, so a crash leaves a file whose
 * readable prefix is every record written before it.
 */
import { closeSync, fsync, fsyncSync, openSync, writeSync } from 'node:fs';
import { crc32 } from '../../io/crc.js';

export const BLOCK_SIZE = 32768;
export const CHUNK_HEADER_SIZE = 7;
export const FILE_HEADER_SIZE = 7;
export const FILE_MAGIC = 0xbee1;
export const FILE_VERSION = 0;

export const CHUNK_FULL = 1;
export const CHUNK_FIRST = 2;
export const CHUNK_MIDDLE = 3;
export const CHUNK_LAST = 4;

/** The 7-byte file header: `:W&B`, `E1 BE`, `00`. */
export function fileHeader(): Uint8Array {
  return Uint8Array.of(0x3a, 0x57, 0x26, 0x42, FILE_MAGIC & 0xff, FILE_MAGIC >>> 8, FILE_VERSION);
}

/** Buffered data above which `append` writes to the file (without fsync) on its own. */
const AUTO_WRITE_BYTES = 1 << 20;

function chunkCrc(type: number, payload: Uint8Array): number {
  return crc32(payload, crc32(Uint8Array.of(type)));
}

/**
 * Writes a new transaction log. Records are framed into an in-memory buffer by `append` and written
 * by `flush`/`flushSync` (and by `append` itself once more than 1 MiB is buffered).
 */
export class TransactionLogWriter {
  readonly path: string;
  #fd: number | undefined;
  /** Offset inside the current block of the next byte appended (after the buffered data). */
  #blockOffset = FILE_HEADER_SIZE;
  #pending: Uint8Array[] = [];
  #pendingBytes = 0;

  private constructor(path: string, fd: number) {
    this.path = path;
    this.#fd = fd;
  }

  /** Create `path` (it must not exist) and write the file header to it. */
  static open(path: string): TransactionLogWriter {
    const fd = openSync(path, 'wx');
    const writer = new TransactionLogWriter(path, fd);
    writer.#pending.push(fileHeader());
    writer.#pendingBytes = FILE_HEADER_SIZE;
    try {
      writer.#write();
    } catch (e) {
      closeSync(fd);
      throw e;
    }
    return writer;
  }

  /** Bytes framed but not yet written to the file. */
  get bufferedBytes(): number {
    return this.#pendingBytes;
  }

  get closed(): boolean {
    return this.#fd === undefined;
  }

  /** Frame `payload` as one record (FULL, or FIRST/MIDDLE…/LAST across block boundaries). */
  append(payload: Uint8Array): void {
    if (this.#fd === undefined) throw new Error(`transaction log ${this.path} is closed`);
    let pos = 0;
    let left = payload.length;
    let first = true;
    do {
      const blockLeft = BLOCK_SIZE - this.#blockOffset;
      if (blockLeft < CHUNK_HEADER_SIZE) {
        if (blockLeft > 0) this.#push(new Uint8Array(blockLeft));
        this.#blockOffset = 0;
      }
      const room = BLOCK_SIZE - this.#blockOffset - CHUNK_HEADER_SIZE;
      const n = Math.min(left, room);
      const last = n === left;
      const type = first ? (last ? CHUNK_FULL : CHUNK_FIRST) : last ? CHUNK_LAST : CHUNK_MIDDLE;
      const part = payload.subarray(pos, pos + n);
      const header = new Uint8Array(CHUNK_HEADER_SIZE);
      const view = new DataView(header.buffer);
      view.setUint32(0, chunkCrc(type, part), true);
      view.setUint16(4, n, true);
      header[6] = type;
      this.#push(header);
      if (n > 0) this.#push(part.slice());
      this.#blockOffset += CHUNK_HEADER_SIZE + n;
      pos += n;
      left -= n;
      first = false;
    } while (left > 0);
    if (this.#pendingBytes > AUTO_WRITE_BYTES) this.#write();
  }

  /** Write everything buffered and fsync. */
  flushSync(): void {
    if (this.#fd === undefined) return;
    this.#write();
    fsyncSync(this.#fd);
  }

  /** Write everything buffered (synchronously, so writes stay in order) and fsync (asynchronously). */
  async flush(): Promise<void> {
    if (this.#fd === undefined) return;
    this.#write();
    const fd = this.#fd;
    await new Promise<void>((resolve, reject) => fsync(fd, (err) => (err ? reject(err) : resolve())));
  }

  async close(): Promise<void> {
    if (this.#fd === undefined) return;
    await this.flush();
    this.closeSync();
  }

  closeSync(): void {
    if (this.#fd === undefined) return;
    const fd = this.#fd;
    try {
      this.flushSync();
    } finally {
      this.#fd = undefined;
      this.#pending = [];
      this.#pendingBytes = 0;
      closeSync(fd);
    }
  }

  #push(bytes: Uint8Array): void {
    this.#pending.push(bytes);
    this.#pendingBytes += bytes.length;
  }

  /** Write the buffered bytes (whole records only), in one write where possible. */
  #write(): void {
    if (this.#pendingBytes === 0 || this.#fd === undefined) return;
    const data = this.#pending.length === 1 ? this.#pending[0] : Buffer.concat(this.#pending, this.#pendingBytes);
    this.#pending = [];
    this.#pendingBytes = 0;
    let off = 0;
    while (off < data.length) off += writeSync(this.#fd, data, off, data.length - off);
  }
}

export type TransactionLogErrorKind = 'header' | 'checksum' | 'truncated' | 'padding' | 'sequence';

export interface TransactionLogError {
  /** File offset of the problem: the chunk header (or padding byte) where reading stopped; 0 for `header`. */
  offset: number;
  kind: TransactionLogErrorKind;
  message: string;
}

export interface TransactionLog {
  /** Every complete, intact record in file order (past damage in the middle of the file, too). */
  records: Uint8Array[];
  /** File offset of the first chunk of each record (parallel to `records`). */
  offsets: number[];
  /**
   * Damage in the middle of the file: each range `[offset, to)` was skipped (its records are lost),
   * and intact records follow it. Reading resynchronises as W&B's own reader (LevelDB's
   * `Recover`): the rest of the damaged block is dropped and reading resumes at the next FULL or
   * FIRST chunk.
   */
  damaged: (TransactionLogError & { to: number })[];
  /** Why reading stopped before the physical end (a bad file header, or a torn tail after a crash). */
  error?: TransactionLogError;
}

function allZero(bytes: Uint8Array, from: number, to: number): boolean {
  for (let i = from; i < to; i++) if (bytes[i] !== 0) return false;
  return true;
}

/**
 * Parse a whole transaction log. A problem (checksum mismatch, bad length, non-zero block padding,
 * chunk types out of sequence) followed later by an intact record is damage in the middle of the
 * file: it is reported in `damaged` with its byte range and reading goes on from the next block,
 * as W&B's Go reader does. Only a problem after which nothing intact follows (a truncated chunk,
 * a zero-filled or garbled tail) is `error`. FULL records are views into `bytes`.
 */
export function readTransactionLog(bytes: Uint8Array): TransactionLog {
  const records: Uint8Array[] = [];
  const offsets: number[] = [];
  const damaged: (TransactionLogError & { to: number })[] = [];
  const expected = fileHeader();
  if (bytes.length < FILE_HEADER_SIZE || !expected.every((b, i) => bytes[i] === b)) {
    const got = Buffer.from(bytes.subarray(0, FILE_HEADER_SIZE)).toString('hex');
    const message =
      bytes.length >= 6 && expected.subarray(0, 6).every((b, i) => bytes[i] === b)
        ? `unsupported .wandb version ${bytes[6]} (expected ${FILE_VERSION})`
        : `not a .wandb file: header ${got || '(empty)'} (expected ${Buffer.from(expected).toString('hex')})`;
    return { records, offsets, damaged, error: { offset: 0, kind: 'header', message } };
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let pos = FILE_HEADER_SIZE;
  /** Chunks of the record being assembled (after a FIRST), with the offset of its first chunk. */
  let parts: Uint8Array[] | undefined;
  let recordStart = 0;
  /** A problem seen and not yet followed by an intact record. */
  let pending: TransactionLogError | undefined;
  const done = (): TransactionLog => (pending ? { records, offsets, damaged, error: pending } : { records, offsets, damaged });
  /** Note a problem at `offset`; with `skipBlock`, drop the rest of the block (LevelDB's Recover). */
  const problem = (offset: number, kind: TransactionLogErrorKind, message: string, skipBlock: boolean): void => {
    // The damage starts where the unfinished record started, if any (its chunks are lost too).
    const from = parts ? recordStart : offset;
    pending ??= { offset: from, kind, message };
    parts = undefined;
    if (skipBlock) pos = (Math.floor(offset / BLOCK_SIZE) + 1) * BLOCK_SIZE;
  };
  const recordFound = (start: number): void => {
    if (pending) {
      damaged.push({ ...pending, to: start });
      pending = undefined;
    }
  };

  for (;;) {
    let blockEnd = (Math.floor(pos / BLOCK_SIZE) + 1) * BLOCK_SIZE;
    if (blockEnd - pos < CHUNK_HEADER_SIZE) {
      const end = Math.min(blockEnd, bytes.length);
      let badPad = -1;
      for (let i = pos; i < end; i++) {
        if (bytes[i] !== 0) {
          badPad = i;
          break;
        }
      }
      if (badPad >= 0) problem(badPad, 'padding', `non-zero block padding byte at offset ${badPad}`, false);
      pos = blockEnd;
      blockEnd += BLOCK_SIZE;
    }
    if (pos >= bytes.length) {
      if (parts) problem(bytes.length, 'truncated', `file ends inside the record starting at offset ${recordStart}`, false);
      return done();
    }
    if (bytes.length - pos < CHUNK_HEADER_SIZE) {
      problem(pos, 'truncated', `file ends inside the chunk header at offset ${pos}`, false);
      return done();
    }
    const crc = view.getUint32(pos, true);
    const length = view.getUint16(pos + 4, true);
    const type = bytes[pos + 6]!;
    const dataStart = pos + CHUNK_HEADER_SIZE;
    const dataEnd = dataStart + length;
    if (dataEnd > blockEnd) {
      if (allZero(bytes, pos, bytes.length)) {
        problem(pos, 'truncated', `zero-filled tail from offset ${pos}`, false);
        return done();
      }
      problem(pos, 'checksum', `chunk at offset ${pos} claims ${length} bytes, crossing the block boundary at ${blockEnd}`, true);
      continue;
    }
    if (dataEnd > bytes.length) {
      problem(pos, 'truncated', `file ends inside the chunk at offset ${pos} (${length} payload bytes, ${bytes.length - dataStart} present)`, false);
      return done();
    }
    const payload = bytes.subarray(dataStart, dataEnd);
    if (chunkCrc(type, payload) !== crc) {
      if (allZero(bytes, pos, bytes.length)) {
        problem(pos, 'truncated', `zero-filled tail from offset ${pos}`, false);
        return done();
      }
      problem(pos, 'checksum', `checksum mismatch in the chunk at offset ${pos}`, true);
      continue;
    }
    switch (type) {
      case CHUNK_FULL:
        if (parts) problem(pos, 'sequence', `FULL chunk at offset ${pos} inside the record starting at offset ${recordStart}`, false);
        recordFound(pos);
        records.push(payload);
        offsets.push(pos);
        break;
      case CHUNK_FIRST:
        if (parts) problem(pos, 'sequence', `FIRST chunk at offset ${pos} inside the record starting at offset ${recordStart}`, false);
        parts = [payload];
        recordStart = pos;
        break;
      case CHUNK_MIDDLE:
        if (!parts) {
          // After damage (recovering) these are the lost record's remains: skipped.
          if (!pending) problem(pos, 'sequence', `MIDDLE chunk at offset ${pos} without a FIRST chunk`, false);
          break;
        }
        parts.push(payload);
        break;
      case CHUNK_LAST:
        if (!parts) {
          if (!pending) problem(pos, 'sequence', `LAST chunk at offset ${pos} without a FIRST chunk`, false);
          break;
        }
        parts.push(payload);
        recordFound(recordStart);
        records.push(Buffer.concat(parts));
        offsets.push(recordStart);
        parts = undefined;
        break;
      default:
        problem(pos, 'sequence', `unknown chunk type ${type} at offset ${pos}`, false);
        break;
    }
    pos = dataEnd;
  }
}

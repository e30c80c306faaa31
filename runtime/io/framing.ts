/**
 * Record framing for trackspec's append-only files (the network backends' spool).
 *
 * A frame is `[length: u32 LE][crc: u32 LE][payload: length bytes]`, where `crc` is the CRC-32
 * (IEEE, from `runtime/io/crc.ts`) of the 4 length bytes followed by the payload, so a damaged length
 * is caught as surely as damaged data.
 *
 * `decodeFrames` (one buffer) stops at the first frame that is incomplete or fails its CRC.
 * `scanFrameFile` (a whole file) tells damage from a torn tail: a bad frame followed later by an
 * intact one is corruption in the middle of the file; reading resynchronises to the next intact
 * frame (found by length + CRC, byte by byte) and reports the skipped byte range. Only bad bytes
 * that run to the physical end of the file are a torn tail (a crash mid-append).
 */
import { crc32 } from './crc.js';

export const FRAME_HEADER_BYTES = 8;
/** Frames larger than this are treated as corruption (a garbage length), not allocated. */
export const MAX_FRAME_BYTES = 256 * 1024 * 1024;

function frameCrc(header: Buffer, payload: Uint8Array): number {
  return crc32(payload, crc32(header.subarray(0, 4)));
}

/** Encode payloads into one buffer of consecutive frames (one write). */
export function encodeFrames(payloads: readonly Uint8Array[]): Buffer {
  let total = 0;
  for (const p of payloads) {
    if (p.length > MAX_FRAME_BYTES) throw new RangeError(`frame payload of ${p.length} bytes exceeds ${MAX_FRAME_BYTES}`);
    total += FRAME_HEADER_BYTES + p.length;
  }
  const out = Buffer.allocUnsafe(total);
  let off = 0;
  for (const p of payloads) {
    const head = out.subarray(off, off + FRAME_HEADER_BYTES);
    head.writeUInt32LE(p.length, 0);
    head.writeUInt32LE(frameCrc(head, p), 4);
    out.set(p, off + FRAME_HEADER_BYTES);
    off += FRAME_HEADER_BYTES + p.length;
  }
  return out;
}

/** Encode one payload as a frame. */
export function encodeFrame(payload: Uint8Array): Buffer {
  return encodeFrames([payload]);
}

export type FrameProblem = 'incomplete' | 'crc' | 'too-large';

export interface DecodeResult {
  /** Payloads (views into the input buffer). */
  frames: Buffer[];
  /** Offset just past the last intact frame. */
  end: number;
  /** Why decoding stopped before the end of the buffer, if it did. */
  problem: FrameProblem | undefined;
}

/**
 * Decode consecutive frames from `buf` starting at `start`. With `final: false` (streaming), an
 * incomplete trailing frame is not a problem: `end` tells where to resume once more bytes arrive.
 */
export function decodeFrames(buf: Buffer, start = 0, final = true): DecodeResult {
  const frames: Buffer[] = [];
  let off = start;
  let problem: FrameProblem | undefined;
  while (off < buf.length) {
    if (buf.length - off < FRAME_HEADER_BYTES) {
      problem = 'incomplete';
      break;
    }
    const len = buf.readUInt32LE(off);
    if (len > MAX_FRAME_BYTES) {
      problem = 'too-large';
      break;
    }
    if (buf.length - off - FRAME_HEADER_BYTES < len) {
      problem = 'incomplete';
      break;
    }
    const head = buf.subarray(off, off + FRAME_HEADER_BYTES);
    const payload = buf.subarray(off + FRAME_HEADER_BYTES, off + FRAME_HEADER_BYTES + len);
    if (frameCrc(head, payload) !== buf.readUInt32LE(off + 4)) {
      problem = 'crc';
      break;
    }
    frames.push(payload);
    off += FRAME_HEADER_BYTES + len;
  }
  if (!final && problem === 'incomplete') problem = undefined;
  return { frames, end: off, problem };
}

// --- reading a framed file, resynchronising past damage ------------------------------------------

/** A damaged byte range `[from, to)`: bytes that are not intact frames, followed by an intact frame. */
export interface DamagedRange {
  from: number;
  to: number;
}

export interface FrameFileScan {
  size: number;
  /** Offset just past the last intact frame. */
  end: number;
  /** Ranges skipped in the middle of the file (intact frames follow each one). */
  damaged: DamagedRange[];
  /** Offset where unreadable bytes run to the physical end of the file (a crash mid-append), if any. */
  tornFrom: number | undefined;
}

/** Random-access reads (a `FileHandle`, or a buffer in tests). */
export interface FrameSource {
  size: number;
  read(position: number, length: number): Promise<Buffer>;
}

export function fileSource(fh: import('node:fs/promises').FileHandle, size: number): FrameSource {
  return {
    size,
    async read(position, length) {
      const b = Buffer.allocUnsafe(length);
      let got = 0;
      while (got < length) {
        const { bytesRead } = await fh.read(b, got, length - got, position + got);
        if (bytesRead === 0) break;
        got += bytesRead;
      }
      return got === length ? b : b.subarray(0, got);
    },
  };
}

export function bufferSource(buf: Buffer): FrameSource {
  return { size: buf.length, read: async (p, l) => buf.subarray(p, Math.min(buf.length, p + l)) };
}

const RESYNC_WINDOW = 64 * 1024;

/**
 * The offset of the next intact frame at or after `from`, or undefined. A candidate must have a
 * length that fits the file, pass `plausible` (on up to its first 16 payload bytes) and its CRC.
 */
export async function findNextFrame(src: FrameSource, from: number, plausible?: (head: Buffer) => boolean): Promise<number | undefined> {
  const size = src.size;
  for (let w = from; w + FRAME_HEADER_BYTES <= size; w += RESYNC_WINDOW) {
    const win = await src.read(w, Math.min(RESYNC_WINDOW + FRAME_HEADER_BYTES + 16, size - w));
    const last = Math.min(RESYNC_WINDOW, win.length - FRAME_HEADER_BYTES + 1);
    for (let q = 0; q < last; q++) {
      const len = win.readUInt32LE(q);
      if (len > MAX_FRAME_BYTES || w + q + FRAME_HEADER_BYTES + len > size) continue;
      const start = q + FRAME_HEADER_BYTES;
      if (plausible) {
        const peek = Math.min(len, 16);
        const head = start + peek <= win.length ? win.subarray(start, start + peek) : await src.read(w + start, peek);
        if (!plausible(head)) continue;
      }
      const payload = start + len <= win.length ? win.subarray(start, start + len) : await src.read(w + start, len);
      if (frameCrc(win.subarray(q, q + FRAME_HEADER_BYTES), payload) === win.readUInt32LE(q + 4)) return w + q;
    }
  }
  return undefined;
}

const SCAN_CHUNK = 4 * 1024 * 1024;

/**
 * Read every intact frame of a framed file in order, calling `onFrame(payload, offset, end)` (awaited).
 * A frame that is incomplete, too large or fails its CRC is **corruption** when an intact frame
 * follows it somewhere later in the file: reading resynchronises to that frame (the skipped bytes
 * are reported in `damaged`) and goes on. Only unreadable bytes that run to the physical end of
 * the file are a torn tail (`tornFrom`), the trace of a crash mid-append.
 */
export async function scanFrameFile(
  src: FrameSource,
  onFrame: (payload: Buffer, offset: number, end: number) => void | Promise<void>,
  options: { plausible?: (head: Buffer) => boolean; start?: number } = {},
): Promise<FrameFileScan> {
  const size = src.size;
  const damaged: DamagedRange[] = [];
  let tornFrom: number | undefined;
  let buf: Buffer = Buffer.alloc(0);
  let base = options.start ?? 0; // file offset of buf[0]
  let off = 0;
  let end = base;
  for (;;) {
    const avail = buf.length - off;
    const eof = base + buf.length >= size;
    let need = 0;
    let bad = false;
    if (avail < FRAME_HEADER_BYTES) {
      if (eof) {
        if (avail === 0) break;
        bad = true;
      } else need = FRAME_HEADER_BYTES - avail;
    } else {
      const len = buf.readUInt32LE(off);
      if (len > MAX_FRAME_BYTES) bad = true;
      else if (avail - FRAME_HEADER_BYTES < len) {
        if (eof) bad = true;
        else need = FRAME_HEADER_BYTES + len - avail;
      } else {
        const head = buf.subarray(off, off + FRAME_HEADER_BYTES);
        const payload = buf.subarray(off + FRAME_HEADER_BYTES, off + FRAME_HEADER_BYTES + len);
        if (frameCrc(head, payload) !== buf.readUInt32LE(off + 4)) bad = true;
        else {
          const at = base + off;
          off += FRAME_HEADER_BYTES + len;
          end = base + off;
          await onFrame(payload, at, end);
          continue;
        }
      }
    }
    if (bad) {
      const at = base + off;
      const next = await findNextFrame(src, at + 1, options.plausible);
      if (next === undefined) {
        tornFrom = at;
        break;
      }
      damaged.push({ from: at, to: next });
      buf = Buffer.alloc(0);
      base = next;
      off = 0;
      continue;
    }
    // Need more bytes: keep the unconsumed part, read at least what the frame needs.
    const rest = buf.subarray(off);
    const pos = base + buf.length;
    const more = await src.read(pos, Math.min(size - pos, Math.max(SCAN_CHUNK, need)));
    if (more.length === 0) {
      // the file shrank under us: treat the rest as torn
      tornFrom = base + off;
      break;
    }
    buf = rest.length ? Buffer.concat([rest, more]) : more;
    base += off;
    off = 0;
  }
  return { size, end, damaged, tornFrom };
}

/** "bytes 120–4,096 (3,976 bytes)" for messages. */
export function describeRanges(ranges: readonly DamagedRange[]): string {
  const n = (x: number) => x.toLocaleString('en-US');
  return ranges.map((r) => `bytes ${n(r.from)}–${n(r.to)} (${n(r.to - r.from)} bytes)`).join(', ');
}

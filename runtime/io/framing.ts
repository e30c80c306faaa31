/**
 * Record framing for trackspec's append-only files (the network backends' spool).
 *
 * A frame is `[length: u32 LE][crc: u32 LE][payload: length bytes]`, where `crc` is the CRC-32
 * (IEEE, from `runtime/io/crc.ts`) of the 4 length bytes followed by the payload, so a damaged length
 * is caught as surely as damaged data. A reader stops at the first frame that is incomplete or
 * fails its CRC: everything before it is intact, everything from it on is a "torn tail" (a crash
 * mid-append), reported with its offset, never decoded.
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

/**
 * The `%compressed.webp` thumbnail MLflow 2.12's `log_image(key=..., step=...)` stores next to each
 * image: the image scaled to fit 256 × 256 (`compress_image_size`), as WebP.
 *
 * The encoder writes lossless WebP (VP8L) in its simplest valid form: no transforms, no colour
 * cache, no backward references, and for each channel a prefix code that gives every byte value 8
 * bits (a constant alpha of 255 costs no bits). The file is about as large as the raw pixels, which
 * for a thumbnail of at most 256 × 256 is at most 256 KiB; every WebP decoder reads it.
 */
import type { ImageData } from '../../core/driver.js';

/** MLflow's COMPRESSED_IMAGE_SIZE. */
export const COMPRESSED_IMAGE_SIZE = 256;

/** Scale to fit `max` × `max` keeping the aspect ratio, as compress_image_size (box average). */
export function compressImageSize(image: ImageData, max = COMPRESSED_IMAGE_SIZE): ImageData {
  const { width, height, channels, data } = image;
  let w: number;
  let h: number;
  if (width > height) {
    w = max;
    h = Math.trunc(height * (w / width));
  } else {
    h = max;
    w = Math.trunc(width * (h / height));
  }
  w = Math.max(1, w);
  h = Math.max(1, h);
  const out = new Uint8Array(w * h * channels);
  for (let y = 0; y < h; y++) {
    const y0 = Math.floor((y * height) / h);
    const y1 = Math.max(y0 + 1, Math.floor(((y + 1) * height) / h));
    for (let x = 0; x < w; x++) {
      const x0 = Math.floor((x * width) / w);
      const x1 = Math.max(x0 + 1, Math.floor(((x + 1) * width) / w));
      const n = (y1 - y0) * (x1 - x0);
      for (let c = 0; c < channels; c++) {
        let sum = 0;
        for (let yy = y0; yy < y1; yy++) for (let xx = x0; xx < x1; xx++) sum += data[(yy * width + xx) * channels + c]!;
        out[(y * w + x) * channels + c] = Math.round(sum / n);
      }
    }
  }
  return { data: out, width: w, height: h, channels };
}

class BitWriter {
  #bytes: number[] = [];
  #acc = 0;
  #n = 0;
  write(value: number, bits: number): void {
    for (let i = 0; i < bits; i++) {
      this.#acc |= ((value >>> i) & 1) << this.#n;
      if (++this.#n === 8) {
        this.#bytes.push(this.#acc);
        this.#acc = 0;
        this.#n = 0;
      }
    }
  }
  finish(): Uint8Array {
    if (this.#n > 0) this.#bytes.push(this.#acc);
    return Uint8Array.from(this.#bytes);
  }
}

const REV8 = new Uint8Array(256);
for (let i = 0; i < 256; i++) {
  let r = 0;
  for (let b = 0; b < 8; b++) if (i & (1 << b)) r |= 1 << (7 - b);
  REV8[i] = r;
}

/** A normal prefix code: symbols 0..255 get 8 bits, symbols 256..alphabet-1 none. */
function writeFlat8(w: BitWriter, alphabet: number): void {
  w.write(0, 1); // normal code
  // Code-length code: lengths 0 and 8 used, 1 bit each. Order: 17, 18, 0, 1, 2, 3, 4, 5, 16, 6, 7, 8, ...
  w.write(12 - 4, 4);
  const lengths = [0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1];
  for (const l of lengths) w.write(l, 3);
  w.write(0, 1); // max_symbol = alphabet size
  // Canonical codes: symbol 0 → '0', symbol 8 → '1'.
  for (let s = 0; s < alphabet; s++) w.write(s < 256 ? 1 : 0, 1);
}

/** A simple prefix code with one 8-bit symbol (costs no bits per pixel). */
function writeSingle(w: BitWriter, symbol: number): void {
  w.write(1, 1); // simple code
  w.write(0, 1); // one symbol
  w.write(1, 1); // 8-bit symbol
  w.write(symbol, 8);
}

/** Encode an image (1–4 channels, HWC uint8) as lossless WebP. */
export function encodeWebpLossless(image: ImageData): Uint8Array {
  const { width, height, channels, data } = image;
  if (width > 16384 || height > 16384) throw new RangeError('WebP images are at most 16384 × 16384');
  const hasAlpha = channels === 2 || channels === 4;
  const w = new BitWriter();
  w.write(0x2f, 8); // VP8L signature
  w.write(width - 1, 14);
  w.write(height - 1, 14);
  w.write(hasAlpha ? 1 : 0, 1);
  w.write(0, 3); // version
  w.write(0, 1); // no transform
  w.write(0, 1); // no colour cache
  w.write(0, 1); // no meta prefix codes
  writeFlat8(w, 256 + 24); // green + length prefixes
  writeFlat8(w, 256); // red
  writeFlat8(w, 256); // blue
  if (hasAlpha) writeFlat8(w, 256);
  else writeSingle(w, 255);
  w.write(1, 1); // distance: simple code, one 1-bit symbol 0
  w.write(0, 1);
  w.write(0, 1);
  w.write(0, 1);
  const n = width * height;
  for (let i = 0; i < n; i++) {
    const o = i * channels;
    let r: number;
    let g: number;
    let b: number;
    let a = 255;
    if (channels <= 2) {
      r = g = b = data[o]!;
      if (channels === 2) a = data[o + 1]!;
    } else {
      r = data[o]!;
      g = data[o + 1]!;
      b = data[o + 2]!;
      if (channels === 4) a = data[o + 3]!;
    }
    w.write(REV8[g]!, 8);
    w.write(REV8[r]!, 8);
    w.write(REV8[b]!, 8);
    if (hasAlpha) w.write(REV8[a]!, 8);
  }
  const vp8l = w.finish();
  const pad = vp8l.length & 1;
  const out = new Uint8Array(20 + vp8l.length + pad);
  const view = new DataView(out.buffer);
  out.set([0x52, 0x49, 0x46, 0x46], 0); // RIFF
  view.setUint32(4, 12 + vp8l.length + pad, true);
  out.set([0x57, 0x45, 0x42, 0x50, 0x56, 0x50, 0x38, 0x4c], 8); // WEBPVP8L
  view.setUint32(16, vp8l.length, true);
  out.set(vp8l, 20);
  return out;
}

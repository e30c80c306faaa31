/** PNG encoding/decoding of `ImageData` (HWC, uint8) with `pngjs`, loaded on first use (TensorBoard and Aim images). */
import type { ImageData } from '../core/driver.js';
import { ValidationError } from '../core/errors.js';
import { lazy } from './lazy.js';

const pngjs = lazy<typeof import('pngjs')>('pngjs');
const pngClass = () => pngjs().PNG;

/** PNG colour type per channel count: grey, grey+alpha, RGB, RGBA. */
const COLOR_TYPE: Record<number, number> = { 1: 0, 2: 4, 3: 2, 4: 6 };

/** Throw a `ValidationError` unless `image` is a well-formed HWC uint8 image. */
/** Whether `image` is a valid image (checkImage() would not throw); allocates nothing, for hot paths. */
export function isValidImage(image: ImageData): boolean {
  if (image === null || typeof image !== 'object') return false;
  const { data, height, width, channels } = image;
  return data instanceof Uint8Array && Number.isInteger(height) && height >= 1 && Number.isInteger(width) && width >= 1 && channels in COLOR_TYPE && data.length === height * width * channels;
}

export function checkImage(image: ImageData, pointer = ''): void {
  if (isValidImage(image)) return;
  const problems: string[] = [];
  if (image === null || typeof image !== 'object') problems.push('not an object');
  else {
    const { data, height, width, channels } = image;
    if (!(data instanceof Uint8Array)) problems.push('data must be a Uint8Array');
    if (!Number.isInteger(height) || height < 1) problems.push('height must be a positive integer');
    if (!Number.isInteger(width) || width < 1) problems.push('width must be a positive integer');
    if (!(channels in COLOR_TYPE)) problems.push('channels must be 1, 2, 3 or 4');
    if (problems.length === 0 && data.length !== height * width * channels)
      problems.push(`data has ${data.length} bytes, expected height*width*channels = ${height * width * channels}`);
  }
  if (problems.length > 0) {
    throw new ValidationError(
      `invalid image${pointer ? ` at ${pointer}` : ''}: ${problems.join('; ')}`,
      problems.map((message) => ({ pointer, code: 'image', message })),
    );
  }
}

/** Encode an image as PNG (8-bit, colour type from the channel count). */
export function encodePng(image: ImageData): Buffer {
  checkImage(image);
  const colorType = COLOR_TYPE[image.channels]!;
  const PNG = pngClass();
  const encoder = new PNG({
    width: image.width,
    height: image.height,
    colorType: colorType as 0 | 2 | 4 | 6,
    inputColorType: colorType as 0 | 2 | 4 | 6,
    inputHasAlpha: image.channels === 2 || image.channels === 4,
    bitDepth: 8,
  });
  encoder.data = Buffer.from(image.data.buffer, image.data.byteOffset, image.data.byteLength);
  return PNG.sync.write(encoder, {
    colorType: colorType as 0 | 2 | 4 | 6,
    inputColorType: colorType as 0 | 2 | 4 | 6,
    inputHasAlpha: image.channels === 2 || image.channels === 4,
    bitDepth: 8,
  });
}

/** Decode a PNG to RGBA (`channels: 4`), whatever its colour type. */
export function decodePngRgba(png: Uint8Array): ImageData {
  const decoded = pngClass().sync.read(Buffer.from(png.buffer, png.byteOffset, png.byteLength));
  return { data: new Uint8Array(decoded.data), height: decoded.height, width: decoded.width, channels: 4 };
}

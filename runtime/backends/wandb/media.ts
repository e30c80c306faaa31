/**
 * W&B media values (`logImages`, `logTable`), as W&B's Python SDK writes them (v0.28.2):
 *
 * - a file per image / table under the run's files directory, named `<subdir>/<key>_<step>_<sha20><ext>`
 *   (`media/images/…png`, `media/table/…table.json`; key made upload-safe as `util.make_file_path_upload_safe`,
 *   step = the run's step counter when logged, sha20 = the first 20 hex digits of the file's sha256);
 * - the history value: `image-file` `{caption?, _type, sha256, size, path, format, width, height}`
 *   (`image.py` to_json), `images/separated` `{_type, width, height, format, count, filenames, captions?}` for a
 *   list (`seq_to_json`: width/height/format of the first image), `table-file`
 *   `{_type, sha256, size, path, ncols, nrows, log_mode: "IMMUTABLE"}` (`table.py` to_json);
 * - table JSON `{"columns": [...], "data": [[...]]}` with bare NaN/Infinity (`json_dump_safer`); an image
 *   in a cell is its `image-file` value, its PNG a run file of its own under `media/images/`.
 *
 * log*() only checks and copies its input: the PNG encoding, hashing and table JSON are done by
 * `MediaValue.resolve()`, which the driver runs in the background (or which JSON serialisation of the
 * row forces, through `toJSON`).
 */
import type { ImageData, TableData } from '../../core/driver.js';
import { ValidationError } from '../../core/errors.js';
import { checkImage, encodePng, isValidImage } from '../../io/image.js';
import { lazy } from '../../io/lazy.js';
import { pathNameProblem } from '../../io/safe-path.js';
import { toValueJson } from './offline.js';
import { encodeInWorker, type Encoded } from './encode-pool.js';

const crypto = lazy<typeof import('node:crypto')>('node:crypto');

/** A run file a media value produced: `path` relative to the run's files directory, `/`-separated. */
export interface MediaFile {
  path: string;
  /** The bytes, while held in memory (the driver may drop them once the file is on disk). */
  bytes: Buffer | undefined;
  sha256: string;
  size: number;
  /** The files directory the file was already written into (by the encoding worker), if any. */
  onDisk?: string;
}

/** W&B caps a list of images at 108 (`image.py` MAX_ITEMS); the SDK logs the first 108 with a warning. */
export const MAX_IMAGES = 108;
/** W&B writes at most this many table rows to the run file (`Table.MAX_ROWS`). */
export const MAX_TABLE_ROWS = 10_000;
/** Columns when a table gives none (`wandb.Table` default). */
export const DEFAULT_COLUMNS = ['Input', 'Output', 'Expected'];

/** W&B's `make_file_path_upload_safe` (POSIX): leading '/' removed, '.' and '..' parts become '_' and '__'. */
export function safeMediaKey(key: string): string {
  return key
    .replace(/^\/+/, '')
    .split('/')
    .map((p) => (p === '.' ? '_' : p === '..' ? '__' : p))
    .join('/');
}

/** A ValidationError unless `key` makes a usable media file name. */
const goodKeys = new Set<string>();

export function checkMediaKey(method: string, key: string): void {
  if (goodKeys.has(key)) return;
  const safe = safeMediaKey(key);
  const problem = pathNameProblem(`${safe}_0`);
  if (problem !== undefined || safe.split('/').some((p) => p === '')) {
    throw new ValidationError(`WandBTracker.${method}(): the key ${JSON.stringify(key)} cannot name a media file (${problem ?? 'it has an empty path segment'}); use a key like "samples/val"`, [
      { pointer: `/${key}`, code: 'key', message: problem ?? 'empty path segment' },
    ]);
  }  if (goodKeys.size < 10_000) goodKeys.add(key);
}

/** A history value whose content (file, hash) is computed later, once. JSON.stringify uses `toJSON`. */
export class MediaValue {
  readonly files: MediaFile[] = [];
  /** Bytes of the input copies held until resolve() (for the memory budget). */
  readonly rawBytes: number;
  /** The images to encode (PNG + sha256), in the worker when prepareAll() is used. */
  readonly images: ImageCopy[];
  #build: ((files: MediaFile[]) => Record<string, unknown>) | undefined;
  #value: Record<string, unknown> | undefined;
  #ready: Promise<void> | undefined;
  #settle: (() => void) | undefined;

  /** The key and step its files are named after (`<subdir>/<key>_<step>_<sha20><ext>`). */
  readonly key: string;
  readonly step: number;

  constructor(build: (files: MediaFile[]) => Record<string, unknown>, rawBytes: number, images: ImageCopy[], key: string, step: number) {
    this.#build = build;
    this.rawBytes = rawBytes;
    this.images = images;
    this.key = key;
    this.step = step;
  }

  /** Settles once the value is resolved. */
  get ready(): Promise<void> {
    if (this.#value !== undefined) return Promise.resolve();
    return (this.#ready ??= new Promise<void>((r) => (this.#settle = r)));
  }

  get resolved(): boolean {
    return this.#value !== undefined;
  }

  /** Encode (first call only) and return the history value. */
  resolve(): Record<string, unknown> {
    if (this.#value === undefined) {
      const build = this.#build!;
      this.#build = undefined;
      this.#value = build(this.files);
      this.#settle?.();
    }
    return this.#value;
  }

  toJSON(): Record<string, unknown> {
    return this.resolve();
  }
}

/**
 * Encode the images of `values` in the worker thread (one batch), then resolve each value (cheap
 * by then) and call `onDone(value)`. With `filesDir`, the worker also writes each PNG there under
 * its run-file path, so this thread does no file I/O for it. Without a worker, or for an image it
 * could not encode, the encoding happens here.
 */
export function prepareAll(values: readonly MediaValue[], onDone: (m: MediaValue) => void, filesDir?: string): void {
  const images: ImageCopy[] = [];
  const targets: ({ dir: string; name: string } | undefined)[] = [];
  const owner: number[] = [];
  const left: number[] = new Array(values.length);
  for (let v = 0; v < values.length; v++) {
    const m = values[v]!;
    const n = m.resolved ? 0 : m.images.length;
    left[v] = n;
    const target = n > 0 && filesDir !== undefined ? { dir: filesDir, name: `media/images/${safeMediaKey(m.key)}_${m.step}_` } : undefined;
    for (let i = 0; i < n; i++) {
      images.push(m.images[i]!);
      targets.push(target);
      owner.push(v);
    }
  }
  for (let v = 0; v < values.length; v++) {
    if (left[v] !== 0) continue;
    values[v]!.resolve();
    onDone(values[v]!);
  }
  if (images.length === 0) return;
  encodeInWorker(images, targets, (i, r) => {
    const img = images[i]!;
    if (r) {
      img.pre = r;
      releaseImage(img);
    }
    const v = owner[i]!;
    if (--left[v]! === 0) {
      values[v]!.resolve();
      onDone(values[v]!);
    }
  });
}

function fileOf(bytes: Buffer, subdir: string, key: string, step: number, ext: string, sha?: string): MediaFile {
  const sha256 = sha ?? crypto().createHash('sha256').update(bytes).digest('hex');
  return { path: `${subdir}/${safeMediaKey(key)}_${step}_${sha256.slice(0, 20)}${ext}`, bytes, sha256, size: bytes.length };
}

/**
 * Copies are carved out of 4 MiB slabs: one allocation per slab instead of one external
 * ArrayBuffer per image (which, with its page faults, costs more than the copy itself). Slabs are
 * SharedArrayBuffers, so the encoding worker reads the pixels where they are (no second copy on
 * this thread). A slab whose copies were all encoded is reused (a few are kept, their pages
 * already mapped); otherwise it is freed with its last copy.
 */
const SLAB_BYTES = 4 << 20;
const KEEP_SLABS = 4;

interface Slab {
  buf: Uint8Array;
  at: number;
  live: number;
}

const freeSlabs: Slab[] = [];
let slab: Slab | undefined;

type ImageCopy = ImageData & { slab?: Slab; pre?: Encoded };

function retire(s: Slab): void {
  if (s.live === 0 && s === slab) s.at = 0; // every copy in the current slab is encoded: start it over
  else if (s.live === 0 && freeSlabs.length < KEEP_SLABS) {
    s.at = 0;
    freeSlabs.push(s);
  }
}

/**
 * A private copy of an image (the caller may reuse its buffer after log*() returns). An invalid
 * image is a ValidationError at `/<path>` or `/<path>/<index>` (the pointer is built only then).
 */
export function copyImage(image: ImageData, path: string, index = -1): ImageData {
  if (!isValidImage(image)) checkImage(image, index < 0 ? `/${path}` : `/${path}/${index}`);
  const src = image.data;
  const n = src.length;
  if (n > SLAB_BYTES >> 3) {
    const data = new Uint8Array(new SharedArrayBuffer(n));
    data.set(src);
    return { data, height: image.height, width: image.width, channels: image.channels };
  }
  if (!slab || slab.at + n > SLAB_BYTES) {
    const old = slab;
    slab = freeSlabs.pop() ?? { buf: new Uint8Array(new SharedArrayBuffer(SLAB_BYTES)), at: 0, live: 0 };
    if (old) retire(old);
  }
  const s = slab;
  const data = new Uint8Array(s.buf.buffer, s.at, n);
  data.set(src);
  s.at += (n + 7) & ~7;
  s.live++;
  const copy: ImageCopy = { data, height: image.height, width: image.width, channels: image.channels, slab: s };
  return copy;
}

/** The copy is encoded: its slab space may be reused. */
function releaseImage(img: ImageCopy): void {
  const s = img.slab;
  if (!s) return;
  img.slab = undefined;
  img.data = EMPTY;
  s.live--;
  retire(s);
}

const EMPTY = new Uint8Array(0);

/** The `image-file` value of one image; its PNG is pushed to `files`. */
function imageFile(files: MediaFile[], img: ImageCopy, key: string, step: number, caption: string | undefined): Record<string, unknown> {
  const pre = img.pre;
  img.pre = undefined;
  const f = pre ? fileOf(pre.png, 'media/images', key, step, '.png', pre.sha256) : fileOf(encodePng(img), 'media/images', key, step, '.png');
  if (pre?.onDisk !== undefined) f.onDisk = pre.onDisk;
  releaseImage(img);
  files.push(f);
  const v: Record<string, unknown> = {};
  if (caption !== undefined) v.caption = caption;
  v._type = 'image-file';
  v.sha256 = f.sha256;
  v.size = f.size;
  v.path = f.path;
  v.format = 'png';
  v.width = img.width;
  v.height = img.height;
  return v;
}

/** One image → `image-file`; a list → `images/separated` (images already copied and checked). */
export function imagesValue(key: string, step: number, images: ImageData[], single: boolean, captions: (string | undefined)[]): MediaValue {
  let raw = 0;
  for (const i of images) raw += i.data.length;
  return new MediaValue((files) => {
    if (single) return imageFile(files, images[0]!, key, step, captions[0]);
    const each = images.map((img, i) => imageFile(files, img, key, step, captions[i]));
    const v: Record<string, unknown> = { _type: 'images/separated', width: images[0]!.width, height: images[0]!.height, format: 'png', count: images.length };
    v.filenames = each.map((e) => e.path);
    // Captions only when the first image has one (media.py captions()).
    if (captions[0] !== undefined) v.captions = captions.map((c) => c ?? null);
    return v;
  }, raw, images, key, step);
}

type Cell = number | string | boolean | null | ImageData;

const isImageLike = (v: unknown): v is ImageData => v !== null && typeof v === 'object' && (v as { data?: unknown }).data instanceof Uint8Array;

/**
 * Check and copy a table: columns are strings, every row an array as long as the columns, every
 * cell a number, string, boolean, null or image. A ValidationError names the row and column.
 */
export function copyTable(name: string, table: TableData): { columns: string[]; data: Cell[][]; raw: number } {
  const fail = (pointer: string, message: string): never => {
    throw new ValidationError(`WandBTracker.logTable(): table ${JSON.stringify(name)}: ${message}`, [{ pointer, code: 'table', message }]);
  };
  if (table === null || typeof table !== 'object') fail('', 'the table must be an object {columns, data}');
  const columns = table.columns ?? DEFAULT_COLUMNS;
  if (!Array.isArray(columns)) fail('/columns', 'columns must be an array of strings');
  columns.forEach((c, j) => {
    if (typeof c !== 'string') fail(`/columns/${j}`, `column ${j} is ${c === null ? 'null' : typeof c}; column names must be strings`);
  });
  const rows = table.data ?? [];
  if (!Array.isArray(rows)) fail('/data', 'data must be an array of rows');
  let raw = 0;
  const data: Cell[][] = new Array(rows.length);
  for (let i = 0; i < rows.length; i++) {
    const row = rows[i];
    if (!Array.isArray(row)) {
      fail(`/data/${i}`, `row ${i} is not an array`);
      continue;
    }
    if (row.length !== columns.length) fail(`/data/${i}`, `row ${i} has ${row.length} cells but there are ${columns.length} columns (${columns.join(', ')}); every row needs one cell per column`);
    const out: Cell[] = new Array(row.length);
    for (let j = 0; j < row.length; j++) {
      const v: unknown = row[j];
      if (v === null || typeof v === 'number' || typeof v === 'string' || typeof v === 'boolean') out[j] = v;
      else if (isImageLike(v)) {
        const c = copyImage(v, `data/${i}`, j);
        raw += c.data.length;
        out[j] = c;
      } else {
        const what = v === undefined ? 'undefined' : Array.isArray(v) ? 'an array' : typeof v === 'object' ? 'an object' : `a ${typeof v}`;
        fail(`/data/${i}/${j}`, `row ${i}, column ${j} (${JSON.stringify(columns[j])}) is ${what}; cells may be numbers, strings, booleans, null or images`);
      }
    }
    data[i] = out;
  }
  return { columns: [...columns], data, raw };
}

/** The `table-file` value of a checked table; its JSON (and the PNG of any image cell) are pushed to `files`. */
export function tableValue(key: string, step: number, table: { columns: string[]; data: Cell[][]; raw: number }): MediaValue {
  return new MediaValue((files) => {
    const rows = table.data.length > MAX_TABLE_ROWS ? table.data.slice(0, MAX_TABLE_ROWS) : table.data;
    const data = rows.map((row) => row.map((c) => (c !== null && typeof c === 'object' ? imageFile(files, c, key, step, undefined) : c)));
    const f = fileOf(Buffer.from(toValueJson({ columns: table.columns, data }), 'utf8'), 'media/table', key, step, '.table.json');
    files.push(f);
    return { _type: 'table-file', sha256: f.sha256, size: f.size, path: f.path, ncols: table.columns.length, nrows: table.data.length, log_mode: 'IMMUTABLE' };
  }, table.raw + table.data.length * table.columns.length * 8, table.data.flatMap((row) => row.filter((c): c is ImageData => c !== null && typeof c === 'object')), key, step);
}

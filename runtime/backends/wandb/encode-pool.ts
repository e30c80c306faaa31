/**
 * PNG encoding + sha256 of logged images in a worker thread, so that neither the encoding nor its
 * garbage (zlib state, filter buffers) lands on the thread that calls log*(). The worker runs the
 * same pngjs encoder with the same options as `runtime/io/image.ts` (identical bytes), loaded from
 * the path this package resolves. The worker is referenced only while jobs are outstanding. If it
 * cannot start or dies, callers get `undefined` and encode on their own thread. It runs at the lowest
 * CPU priority (nice 19; on Linux that is per thread), so the thread that logs has priority over it.
 */
import { createRequire } from 'node:module';
import type { Worker as WorkerType } from 'node:worker_threads';
import type { ImageData } from '../../core/driver.js';
import { lazy } from '../../io/lazy.js';

const workerThreads = lazy<typeof import('node:worker_threads')>('node:worker_threads');

const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const { PNG } = require(workerData.pngjs);
const { createHash } = require('node:crypto');
const { mkdirSync, writeFileSync } = require('node:fs');
const made = new Set();
// Lowest CPU priority. On Linux a nice value belongs to one thread, so this thread only; elsewhere it
// would lower the whole process, so it is left alone.
if (process.platform === 'linux') try { require('node:os').setPriority(19); } catch {}
const COLOR_TYPE = { 1: 0, 2: 4, 3: 2, 4: 6 };
// A batch: meta holds 6 numbers per image (width, height, channels, buffer index, offset, length),
// targets (optional, per image) a {dir, name} to write the PNG to as <dir>/<name><sha256[:20]>.png.
// The reply lists, in order, each PNG (transferred), its sha256 and whether it was written.
parentPort.on('message', (msg) => {
  const { meta, bufs, targets } = msg;
  const pngs = [];
  const shas = [];
  const written = [];
  for (let k = 0; k < meta.length; k += 6) {
    const ct = COLOR_TYPE[meta[k + 2]];
    const alpha = meta[k + 2] === 2 || meta[k + 2] === 4;
    const opts = { width: meta[k], height: meta[k + 1], colorType: ct, inputColorType: ct, inputHasAlpha: alpha, bitDepth: 8 };
    const png = PNG.sync.write({ width: meta[k], height: meta[k + 1], data: Buffer.from(bufs[meta[k + 3]], meta[k + 4], meta[k + 5]) }, opts);
    const sha = createHash('sha256').update(png).digest('hex');
    const t = targets[k / 6];
    let ok = false;
    if (t) {
      // Written here, off the logging thread; on any error the caller writes it instead.
      try {
        const full = t.dir + '/' + t.name + sha.slice(0, 20) + '.png';
        const parent = full.slice(0, full.lastIndexOf('/'));
        if (!made.has(parent)) {
          mkdirSync(parent, { recursive: true });
          made.add(parent);
        }
        writeFileSync(full, png);
        ok = true;
      } catch {}
    }
    pngs.push(png.buffer.slice(png.byteOffset, png.byteOffset + png.length));
    shas.push(sha);
    written.push(ok);
  }
  parentPort.postMessage({ id: msg.id, pngs, shas, written }, pngs);
});
`;

export interface Encoded {
  png: Buffer;
  sha256: string;
  /** The directory the worker wrote the PNG into (as asked by its target), if it did. */
  onDisk?: string;
}

/** Where the worker writes an encoded PNG: `<dir>/<name><sha256[:20]>.png`. */
export interface EncodeTarget {
  dir: string;
  name: string;
}

type Done = (i: number, r: Encoded | undefined) => void;

let worker: WorkerType | undefined;
let broken = false;
let nextId = 1;
/** Outstanding batches: their callback, image count and targets. */
const waiting = new Map<number, { done: Done; n: number; targets: readonly (EncodeTarget | undefined)[] }>();

/** Set to false to encode on the calling thread (tests, or when worker threads are unwanted). */
export const ENCODE_POOL = { enabled: true };

function failAll(): void {
  broken = true;
  worker = undefined;
  const list = [...waiting.values()];
  waiting.clear();
  for (const b of list) for (let i = 0; i < b.n; i++) b.done(i, undefined);
}

function start(): WorkerType | undefined {
  if (worker || broken) return worker;
  try {
    const pngjs = createRequire(import.meta.url).resolve('pngjs');
    const w = new (workerThreads().Worker)(WORKER_SOURCE, { eval: true, workerData: { pngjs } });
    w.on('message', (out: { id: number; pngs: ArrayBuffer[]; shas: string[]; written: boolean[] }) => {
      const b = waiting.get(out.id);
      waiting.delete(out.id);
      if (waiting.size === 0) w.unref();
      if (!b) return;
      for (let i = 0; i < out.pngs.length; i++) {
        const r: Encoded = { png: Buffer.from(out.pngs[i]!), sha256: out.shas[i]! };
        if (out.written[i]) r.onDisk = b.targets[i]!.dir;
        b.done(i, r);
      }
    });
    w.on('error', failAll);
    w.on('exit', failAll);
    w.unref();
    worker = w;
  } catch {
    broken = true;
  }
  return worker;
}

/**
 * Encode images in the worker (one message for the batch); `done(i, result)` per image (result
 * undefined: encode it yourself). With `targets[i]`, the worker also writes image i's PNG there. Pixels in a SharedArrayBuffer (the slabs `copyImage` fills) are
 * read by the worker where they are: nothing is copied on this thread. Other pixels are copied
 * into one transferred buffer.
 */
export function encodeInWorker(images: readonly ImageData[], targets: readonly (EncodeTarget | undefined)[], done: Done): void {
  const w = ENCODE_POOL.enabled ? start() : undefined;
  if (!w) {
    for (let i = 0; i < images.length; i++) done(i, undefined);
    return;
  }
  let privateBytes = 0;
  for (const img of images) if (!(img.data.buffer instanceof SharedArrayBuffer)) privateBytes += img.data.length;
  const bufs: (ArrayBuffer | SharedArrayBuffer)[] = [];
  const priv = privateBytes > 0 ? new ArrayBuffer(privateBytes) : undefined;
  if (priv) bufs.push(priv);
  const all = priv ? new Uint8Array(priv) : undefined;
  const meta = new Float64Array(images.length * 6);
  let off = 0;
  let lastShared: SharedArrayBuffer | undefined;
  let lastIndex = -1;
  for (let i = 0, k = 0; i < images.length; i++, k += 6) {
    const img = images[i]!;
    const d = img.data;
    meta[k] = img.width;
    meta[k + 1] = img.height;
    meta[k + 2] = img.channels;
    if (d.buffer instanceof SharedArrayBuffer) {
      if (d.buffer !== lastShared) {
        lastShared = d.buffer;
        lastIndex = bufs.indexOf(d.buffer);
        if (lastIndex < 0) lastIndex = bufs.push(d.buffer) - 1;
      }
      meta[k + 3] = lastIndex;
      meta[k + 4] = d.byteOffset;
    } else {
      all!.set(d, off);
      meta[k + 3] = 0;
      meta[k + 4] = off;
      off += d.length;
    }
    meta[k + 5] = d.length;
  }
  const id = nextId++;
  waiting.set(id, { done, n: images.length, targets });
  w.ref();
  w.postMessage({ id, meta, bufs, targets }, priv ? [priv] : []);
}

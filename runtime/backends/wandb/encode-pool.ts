/**
 * PNG encoding + sha256 of logged images in a worker thread, so that neither the encoding nor its
 * garbage (zlib state, filter buffers) lands on the thread that calls log*(). The worker runs the
 * same pngjs encoder with the same options as `runtime/io/image.ts` (identical bytes), loaded from
 * the path this package resolves. The worker is referenced only while jobs are outstanding. If it
 * cannot start or dies, callers get `undefined` and encode on their own thread.
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
const COLOR_TYPE = { 1: 0, 2: 4, 3: 2, 4: 6 };
parentPort.on('message', (msg) => {
  const out = [];
  const transfer = [];
  for (const j of msg.jobs) {
    const ct = COLOR_TYPE[j.c];
    const opts = { width: j.w, height: j.h, colorType: ct, inputColorType: ct, inputHasAlpha: j.c === 2 || j.c === 4, bitDepth: 8 };
    const p = new PNG(opts);
    p.data = Buffer.from(msg.buf, j.off, j.len);
    const png = PNG.sync.write(p, opts);
    const ab = png.buffer.slice(png.byteOffset, png.byteOffset + png.length);
    out.push({ id: j.id, png: ab, sha: createHash('sha256').update(png).digest('hex') });
    transfer.push(ab);
  }
  parentPort.postMessage(out, transfer);
});
`;

export interface Encoded {
  png: Buffer;
  sha256: string;
}

type Done = (r: Encoded | undefined) => void;

let worker: WorkerType | undefined;
let broken = false;
let nextId = 1;
const waiting = new Map<number, Done>();

/** Set to false to encode on the calling thread (tests, or when worker threads are unwanted). */
export const ENCODE_POOL = { enabled: true };

function failAll(): void {
  broken = true;
  worker = undefined;
  const list = [...waiting.values()];
  waiting.clear();
  for (const d of list) d(undefined);
}

function start(): WorkerType | undefined {
  if (worker || broken) return worker;
  try {
    const pngjs = createRequire(import.meta.url).resolve('pngjs');
    const w = new (workerThreads().Worker)(WORKER_SOURCE, { eval: true, workerData: { pngjs } });
    w.on('message', (out: { id: number; png: ArrayBuffer; sha: string }[]) => {
      for (const r of out) {
        const d = waiting.get(r.id);
        waiting.delete(r.id);
        d?.({ png: Buffer.from(r.png), sha256: r.sha });
      }
      if (waiting.size === 0) w.unref();
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
 * Encode images in the worker; `done(i, result)` per image (result undefined: encode it yourself).
 * The pixels are copied into one transferred buffer, so the caller may drop its copies at once.
 */
export function encodeInWorker(images: readonly ImageData[], done: (i: number, r: Encoded | undefined) => void): void {
  const w = ENCODE_POOL.enabled ? start() : undefined;
  if (!w) {
    images.forEach((_, i) => done(i, undefined));
    return;
  }
  let total = 0;
  for (const img of images) total += img.data.length;
  const buf = new ArrayBuffer(total);
  const all = new Uint8Array(buf);
  const jobs = [];
  let off = 0;
  for (let i = 0; i < images.length; i++) {
    const img = images[i]!;
    all.set(img.data, off);
    const id = nextId++;
    waiting.set(id, (r) => done(i, r));
    jobs.push({ id, w: img.width, h: img.height, c: img.channels, off, len: img.data.length });
    off += img.data.length;
  }
  w.ref();
  w.postMessage({ buf, jobs }, [buf]);
}

/**
 * TensorBoard transport benchmark.
 *
 * Rows:
 * - end-to-end scalars/s through the public class: TensorBoardTracker.start → log() of 10 scalars
 *   per call → finish() (bytes on disk); the same through the bare driver, to show the class's cost;
 * - baseline: the same scalars written one Event per scalar through `SummaryWriter.addScalar`
 *   (the tensorboardX/torch layout), and a raw `fs.writeSync` of the same byte count;
 * - median ns per log() call (10 scalars), sampled in batches;
 * - RSS growth over 10 M scalars.
 *
 * Run directly: `npx tsx test/bench/tensorboard.bench.ts`.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import { pathToFileURL } from 'node:url';
import type { DriverContext } from '../../runtime/core/driver.js';
import { SummaryWriter, decodeEvents, driver, readEventStream } from '../../runtime/backends/tensorboard/index.js';
import { TensorBoardTracker } from '../../generated/index.gen.js';

export interface BenchRow {
  name: string;
  value: number;
  unit: string;
  goal?: string;
}

const ctx: DriverContext = {
  backend: 'tensorboard',
  className: 'TensorBoardTracker',
  warnOnce: () => undefined,
  warn: () => undefined,
};

const KEYS = Array.from({ length: 10 }, (_, i) => `metric/${String(i).padStart(2, '0')}`);

function makeValues(): Record<string, number> {
  const v: Record<string, number> = {};
  for (const k of KEYS) v[k] = 0;
  return v;
}

function dirSize(dir: string): number {
  let total = 0;
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    total += e.isDirectory() ? dirSize(p) : fs.statSync(p).size;
  }
  return total;
}

/** A tracker or the bare driver, behind the same two calls. */
async function open(root: string, name: string, via: 'tracker' | 'driver') {
  if (via === 'tracker') {
    const t = new TensorBoardTracker({ run_name: name, logging_dir: root });
    await t.start();
    return { log: (v: Record<string, number>, step: number) => t.log(v, step), finish: () => t.finish(), path: () => t.tracker.path };
  }
  const d = await driver.start({ run_name: name, logging_dir: root, flush_secs: 120, max_queue: 10, filename_suffix: '' }, ctx);
  return { log: (v: Record<string, number>, step: number) => d.log(v, step, undefined), finish: () => d.finish(), path: () => d.handle.path };
}

async function endToEnd(root: string, calls: number, via: 'tracker' | 'driver' = 'tracker'): Promise<{ seconds: number; bytes: number }> {
  const values = makeValues();
  const t0 = process.hrtime.bigint();
  const d = await open(root, `e2e-${via}-${calls}-${Date.now()}`, via);
  for (let i = 0; i < calls; i++) {
    for (let k = 0; k < 10; k++) values[KEYS[k]!] = i * 0.5 + k;
    d.log(values, i);
  }
  await d.finish();
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  return { seconds, bytes: fs.statSync(d.path()).size };
}

async function baselinePerScalar(root: string, scalars: number): Promise<number> {
  const w = new SummaryWriter(path.join(root, `baseline-${Date.now()}`), { flushSecs: 0 });
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < scalars; i++) w.addScalar(KEYS[i % 10]!, i * 0.5, Math.floor(i / 10));
  await w.close();
  return Number(process.hrtime.bigint() - t0) / 1e9;
}

function rawWrite(root: string, bytes: number): number {
  const file = path.join(root, `raw-${Date.now()}`);
  const chunk = Buffer.alloc(1 << 20, 1);
  const t0 = process.hrtime.bigint();
  const fd = fs.openSync(file, 'a');
  for (let left = bytes; left > 0; left -= chunk.length) fs.writeSync(fd, chunk, 0, Math.min(left, chunk.length));
  fs.fdatasyncSync(fd);
  fs.closeSync(fd);
  return Number(process.hrtime.bigint() - t0) / 1e9;
}

async function medianLogNs(root: string, via: 'tracker' | 'driver' = 'tracker'): Promise<number> {
  const values = makeValues();
  const d = await open(root, `lat-${via}-${Date.now()}`, via);
  // Warm up, then time batches of 100 calls (hrtime resolution) and take the median per call.
  for (let i = 0; i < 50_000; i++) d.log(values, i);
  const batch = 100;
  const samples: number[] = [];
  let step = 50_000;
  for (let b = 0; b < 5_000; b++) {
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < batch; i++) {
      values[KEYS[0]!] = step;
      d.log(values, step++);
    }
    samples.push(Number(process.hrtime.bigint() - t0) / batch);
  }
  await d.finish();
  samples.sort((a, b) => a - b);
  return samples[Math.floor(samples.length / 2)]!;
}

async function rssGrowth(root: string, scalars: number): Promise<number> {
  const values = makeValues();
  globalThis.gc?.();
  const before = process.memoryUsage().rss;
  const d = await open(root, `rss-${Date.now()}`, 'tracker');
  let peak = before;
  const calls = scalars / 10;
  for (let i = 0; i < calls; i++) {
    values[KEYS[i % 10]!] = i;
    d.log(values, i);
    if (i % 100_000 === 0) peak = Math.max(peak, process.memoryUsage().rss);
  }
  await d.finish();
  peak = Math.max(peak, process.memoryUsage().rss);
  return (peak - before) / (1024 * 1024);
}

/** An event file of `scalars` scalars, one Event each (10 tags), written with `SummaryWriter.addScalar`. */
async function scalarFile(root: string, scalars: number): Promise<string> {
  const w = new SummaryWriter(path.join(root, `read-${scalars}`), { flushSecs: 0 });
  for (let i = 0; i < scalars; i++) w.addScalar(KEYS[i % 10]!, i * 0.5, Math.floor(i / 10));
  await w.close();
  return w.path;
}

interface ReadFigures {
  events: number;
  scalars: number;
  seconds: number;
  /** Peak RSS minus RSS before reading, MB. */
  rssGrowthMB: number;
}

/** Child-process side: read `file` with `how`, print the figures as JSON. */
async function readChild(how: 'stream' | 'whole', file: string): Promise<void> {
  globalThis.gc?.();
  const mem = process.memoryUsage;
  const before = mem.rss();
  let peak = before;
  let events = 0;
  let scalars = 0;
  const t0 = process.hrtime.bigint();
  if (how === 'stream') {
    for await (const e of readEventStream(file)) {
      events++;
      scalars += e.summary?.length ?? 0;
      if ((events & 0xffff) === 0) peak = Math.max(peak, mem.rss());
    }
  } else {
    const all = decodeEvents(fs.readFileSync(file)).events;
    events = all.length;
    for (const e of all) scalars += e.summary?.length ?? 0;
  }
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  peak = Math.max(peak, mem.rss());
  const out: ReadFigures = { events, scalars, seconds, rssGrowthMB: (peak - before) / (1024 * 1024) };
  process.stdout.write(JSON.stringify(out));
}

/** Run `readChild` in a fresh process (default heap), so RSS growth is the reader's alone. */
function readInChild(how: 'stream' | 'whole', file: string): ReadFigures {
  const r = spawnSync(process.execPath, ['--import', 'tsx', '--expose-gc', import.meta.filename, '--read', how, file], {
    encoding: 'utf8',
    maxBuffer: 1 << 20,
  });
  if (r.status !== 0) throw new Error(`reader child (${how}) failed: ${r.stderr}`);
  return JSON.parse(r.stdout) as ReadFigures;
}

export default async function bench(): Promise<BenchRow[]> {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'trackspec-tb-bench-'));
  try {
    const rows: BenchRow[] = [];
    const calls = 1_000_000; // 10 M scalars
    await endToEnd(root, 50_000); // warm-up
    const e2e = await endToEnd(root, calls);
    const scalarsPerSec = (calls * 10) / e2e.seconds;
    rows.push({ name: 'tensorboard e2e scalars/s (log 10/call → finish)', value: Math.round(scalarsPerSec), unit: 'scalars/s', goal: '>= 5000000' });
    rows.push({ name: 'tensorboard e2e bytes per scalar on disk', value: +(e2e.bytes / (calls * 10)).toFixed(2), unit: 'B' });
    const bare = await endToEnd(root, calls, 'driver');
    rows.push({ name: 'same through the bare driver (no option/value checks)', value: Math.round((calls * 10) / bare.seconds), unit: 'scalars/s' });

    const baseScalars = 1_000_000;
    const baseSec = await baselinePerScalar(root, baseScalars);
    rows.push({ name: 'baseline: one Event per scalar (addScalar) scalars/s', value: Math.round(baseScalars / baseSec), unit: 'scalars/s' });
    rows.push({ name: 'ratio e2e / one-Event-per-scalar', value: +(scalarsPerSec / (baseScalars / baseSec)).toFixed(2), unit: 'x' });
    const rawSec = rawWrite(root, e2e.bytes);
    rows.push({ name: 'baseline: raw fs.writeSync of the same bytes', value: +(e2e.bytes / rawSec / 1e6).toFixed(1), unit: 'MB/s' });
    rows.push({ name: 'ratio e2e time / raw write time', value: +(e2e.seconds / rawSec).toFixed(2), unit: 'x' });

    rows.push({ name: 'tensorboard log() median (10 scalars)', value: +(await medianLogNs(root)).toFixed(1), unit: 'ns/call', goal: '<= 1000' });
    rows.push({ name: 'of which the bare driver', value: +(await medianLogNs(root, 'driver')).toFixed(1), unit: 'ns/call' });
    rows.push({ name: 'tensorboard RSS growth over 10M scalars', value: +(await rssGrowth(root, 10_000_000)).toFixed(1), unit: 'MB', goal: '<= 50' });

    // Reading back. The whole-file decode is not run on the 10 M file: it runs out of heap there.
    const small = await scalarFile(root, 1_000_000);
    const whole = readInChild('whole', small);
    const streamSmall = readInChild('stream', small);
    rows.push({ name: 'baseline: whole-file decode (old readEvents path), 1M scalars', value: Math.round(whole.events / whole.seconds), unit: 'events/s' });
    rows.push({ name: 'of which RSS growth (1M scalars, 48 MB file)', value: +whole.rssGrowthMB.toFixed(1), unit: 'MB' });
    rows.push({ name: 'readEventStream, same 1M-scalar file', value: Math.round(streamSmall.events / streamSmall.seconds), unit: 'events/s' });
    rows.push({ name: 'ratio stream / whole-file decode events/s (1M)', value: +(streamSmall.events / streamSmall.seconds / (whole.events / whole.seconds)).toFixed(2), unit: 'x' });
    const big = await scalarFile(root, 10_000_000);
    const bigMB = fs.statSync(big).size / 1e6;
    fs.rmSync(small);
    const stream = readInChild('stream', big);
    if (stream.scalars !== 10_000_000) throw new Error(`the stream read ${stream.scalars} scalars, expected 10000000`);
    rows.push({ name: `readEventStream, 10M scalars (${bigMB.toFixed(0)} MB file)`, value: Math.round(stream.events / stream.seconds), unit: 'events/s' });
    rows.push({ name: 'readEventStream RSS growth over 10M scalars', value: +stream.rssGrowthMB.toFixed(1), unit: 'MB', goal: '<= 100' });
    return rows;
  } finally {
    fs.rmSync(root, { recursive: true, force: true });
  }
}

if (process.argv[2] === '--read') {
  await readChild(process.argv[3] as 'stream' | 'whole', process.argv[4]!);
} else if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const rows = await bench();
  for (const r of rows) console.log(`${r.name}: ${r.value} ${r.unit}${r.goal ? ` (goal ${r.goal})` : ''}`);
}

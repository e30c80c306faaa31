/**
 * Trackio benchmark (needs node:sqlite: Node.js >= 22.13; on older Node.js it reports that it was skipped).
 *
 * Rows:
 * - median ns per log() call (10 scalars) through TrackioTracker, sampled in batches (goal ≤ 1 µs);
 * - end-to-end points/s to disk: start → log() of 10 scalars per call → finish() (rows committed to
 *   the SQLite database), and the same workload through TensorBoardTracker in the
 *   same run as the baseline, with the ratio;
 * - RSS growth over 2 M points (pending rows are bounded: a write pass runs every 10k rows).
 *
 * Run directly: `npx tsx test/bench/trackio.bench.ts`.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import { TensorBoardTracker, TrackioTracker } from '../../generated/index.gen.js';
import { sqliteAvailable } from '../../runtime/backends/trackio/index.js';
import type { BenchRow } from './tensorboard.bench.js';

const KEYS = Array.from({ length: 10 }, (_, i) => `metric/${String(i).padStart(2, '0')}`);

function makeValues(): Record<string, number> {
  const v: Record<string, number> = {};
  for (const k of KEYS) v[k] = 0;
  return v;
}

type Kind = 'trackio' | 'tensorboard';

async function open(root: string, kind: Kind, name: string) {
  const t =
    kind === 'trackio'
      ? new TrackioTracker({ run_name: name, trackio_dir: root })
      : new TensorBoardTracker({ run_name: name, logging_dir: root });
  await t.start();
  return t;
}

async function endToEnd(root: string, kind: Kind, calls: number): Promise<number> {
  const values = makeValues();
  const t0 = process.hrtime.bigint();
  const t = await open(root, kind, `e2e_${kind}_${calls}_${Date.now()}`);
  for (let i = 0; i < calls; i++) {
    for (let k = 0; k < 10; k++) values[KEYS[k]!] = i * 0.37 + k;
    t.log(values, i);
  }
  await t.finish();
  return Number(process.hrtime.bigint() - t0) / 1e9;
}

async function medianLogNs(root: string, kind: Kind): Promise<number> {
  const values = makeValues();
  const t = await open(root, kind, `lat_${kind}_${Date.now()}`);
  for (let i = 0; i < 20_000; i++) t.log(values, i);
  const batch = 100;
  const samples: number[] = [];
  let step = 20_000;
  for (let b = 0; b < 2_000; b++) {
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < batch; i++) {
      values[KEYS[0]!] = step * 0.5;
      t.log(values, step++);
    }
    samples.push(Number(process.hrtime.bigint() - t0) / batch);
  }
  await t.finish();
  samples.sort((a, b) => a - b);
  return samples[Math.floor(samples.length / 2)]!;
}

async function rssGrowth(root: string, points: number): Promise<number> {
  const values = makeValues();
  globalThis.gc?.();
  const before = process.memoryUsage().rss;
  const t = await open(root, 'trackio', `rss_${Date.now()}`);
  let peak = before;
  for (let i = 0; i < points / 10; i++) {
    values[KEYS[i % 10]!] = i;
    t.log(values, i);
    if (i % 10_000 === 0) peak = Math.max(peak, process.memoryUsage().rss);
  }
  await t.finish();
  return (Math.max(peak, process.memoryUsage().rss) - before) / (1024 * 1024);
}

export default async function bench(): Promise<BenchRow[]> {
  if (!sqliteAvailable()) return [{ name: `trackio: skipped, node:sqlite is not in Node.js ${process.version} (needs >= 22.13)`, value: 0, unit: '' }];
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'trackspec-trackio-bench-'));
  try {
    const rows: BenchRow[] = [];
    rows.push({ name: 'trackio log() median (10 scalars)', value: +(await medianLogNs(root, 'trackio')).toFixed(1), unit: 'ns/call', goal: '<= 1000' });
    rows.push({ name: 'baseline: tensorboard log() median (10 scalars), same run', value: +(await medianLogNs(root, 'tensorboard')).toFixed(1), unit: 'ns/call' });
    const calls = 200_000; // 2 M points
    await endToEnd(root, 'trackio', 20_000); // warm-up
    await endToEnd(root, 'tensorboard', 20_000);
    const dv = await endToEnd(root, 'trackio', calls);
    const tb = await endToEnd(root, 'tensorboard', calls);
    rows.push({ name: 'trackio e2e points/s to disk (log 10/call → finish)', value: Math.round((calls * 10) / dv), unit: 'points/s' });
    rows.push({ name: 'baseline: tensorboard e2e points/s, same workload and run', value: Math.round((calls * 10) / tb), unit: 'points/s' });
    rows.push({ name: 'ratio trackio / tensorboard', value: +(tb / dv).toFixed(2), unit: 'x' });
    rows.push({ name: 'trackio RSS growth over 2M points', value: +(await rssGrowth(root, 2_000_000)).toFixed(1), unit: 'MB', goal: '<= 100' });
    return rows;
  } finally {
    fs.rmSync(root, { recursive: true, force: true });
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const rows = await bench();
  for (const r of rows) console.log(`${r.name}: ${r.value} ${r.unit}${r.goal ? ` (goal ${r.goal})` : ''}`);
}

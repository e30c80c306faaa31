/**
 * The benchmark shape of a local-first backend (DVCLive, Trackio), against TensorBoard in the same run:
 * - median ns per log() call (10 scalars), sampled in batches (goal ≤ 1 µs);
 * - end-to-end points/s to disk: start → log() of 10 scalars per call → finish(), with the ratio;
 * - RSS growth over 2 M points (pending rows must stay bounded).
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { TensorBoardTracker } from '../../generated/index.gen.js';
import type { BenchRow } from './tensorboard.bench.js';

const KEYS = Array.from({ length: 10 }, (_, i) => `metric/${String(i).padStart(2, '0')}`);

interface Tracker {
  start(): Promise<unknown>;
  log(values: Record<string, number>, step: number): void;
  finish(): Promise<void>;
}

/** `open(root, runName)` builds the backend's tracker (not started); run names use letters, digits and '_'. */
export async function localBackendBench(name: string, open: (root: string, runName: string) => Tracker): Promise<BenchRow[]> {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), `trackspec-${name}-bench-`));
  const start = async (kind: 'backend' | 'tensorboard', runName: string) => {
    const t = kind === 'backend' ? open(root, runName) : new TensorBoardTracker({ run_name: runName, logging_dir: root });
    await t.start();
    return t;
  };
  const makeValues = () => Object.fromEntries(KEYS.map((k) => [k, 0])) as Record<string, number>;

  const endToEnd = async (kind: 'backend' | 'tensorboard', calls: number): Promise<number> => {
    const values = makeValues();
    const t0 = process.hrtime.bigint();
    const t = await start(kind, `e2e_${kind}_${calls}_${Date.now()}`);
    for (let i = 0; i < calls; i++) {
      for (let k = 0; k < 10; k++) values[KEYS[k]!] = i * 0.37 + k;
      t.log(values, i);
    }
    await t.finish();
    return Number(process.hrtime.bigint() - t0) / 1e9;
  };

  const medianLogNs = async (kind: 'backend' | 'tensorboard'): Promise<number> => {
    const values = makeValues();
    const t = await start(kind, `lat_${kind}_${Date.now()}`);
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
  };

  const rssGrowth = async (points: number): Promise<number> => {
    const values = makeValues();
    globalThis.gc?.();
    const before = process.memoryUsage().rss;
    const t = await start('backend', `rss_${Date.now()}`);
    let peak = before;
    for (let i = 0; i < points / 10; i++) {
      values[KEYS[i % 10]!] = i;
      t.log(values, i);
      if (i % 10_000 === 0) peak = Math.max(peak, process.memoryUsage().rss);
    }
    await t.finish();
    return (Math.max(peak, process.memoryUsage().rss) - before) / (1024 * 1024);
  };

  try {
    const rows: BenchRow[] = [];
    rows.push({ name: `${name} log() median (10 scalars)`, value: +(await medianLogNs('backend')).toFixed(1), unit: 'ns/call', goal: '<= 1000' });
    rows.push({ name: 'baseline: tensorboard log() median (10 scalars), same run', value: +(await medianLogNs('tensorboard')).toFixed(1), unit: 'ns/call' });
    const calls = 200_000; // 2 M points
    await endToEnd('backend', 20_000); // warm-up
    await endToEnd('tensorboard', 20_000);
    const own = await endToEnd('backend', calls);
    const tb = await endToEnd('tensorboard', calls);
    rows.push({ name: `${name} e2e points/s to disk (log 10/call → finish)`, value: Math.round((calls * 10) / own), unit: 'points/s' });
    rows.push({ name: 'baseline: tensorboard e2e points/s, same workload and run', value: Math.round((calls * 10) / tb), unit: 'points/s' });
    rows.push({ name: `ratio ${name} / tensorboard`, value: +(tb / own).toFixed(2), unit: 'x' });
    rows.push({ name: `${name} RSS growth over 2M points`, value: +(await rssGrowth(2_000_000)).toFixed(1), unit: 'MB', goal: '<= 100' });
    return rows;
  } finally {
    fs.rmSync(root, { recursive: true, force: true });
  }
}

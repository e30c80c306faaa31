/**
 * W&B benchmark: history rows/s online (against the local W&B test server, same process) and
 * offline (to a .wandb file), file_stream requests per 1000 rows, and log() median cost for 10 values.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { WandBTracker, setWarningHandler } from '../../generated/index.gen.js';
import { WandbTestServer } from '../backends/wandb/server.js';
import type { BenchRow } from './tensorboard.bench.js';

function values(i: number): Record<string, number> {
  const v: Record<string, number> = {};
  for (let k = 0; k < 10; k++) v[`m${k}`] = i + k;
  return v;
}

export default async function bench(): Promise<BenchRow[]> {
  const restore = setWarningHandler(() => undefined);
  const server = await WandbTestServer.start();
  const dir = mkdtempSync(join(tmpdir(), 'trackspec-wandb-bench-'));
  try {
    const rows: BenchRow[] = [];
    const N = 20_000;
    const runOnline = async (writeAhead: boolean) => {
      const online = new WandBTracker({ run_name: 'bench', api_key: server.apiKey, base_url: server.url, dir, write_ahead: writeAhead });
      await online.start();
      const t0 = performance.now();
      for (let i = 0; i < N; i++) online.log(values(i), i);
      await online.finish();
      const seconds = (performance.now() - t0) / 1000;
      const run = server.run(online.tracker.entity, 'bench', online.tracker.runId)!;
      if (run.history.length !== N) throw new Error(`stored ${run.history.length} of ${N} rows`);
      return { rate: N / seconds, run };
    };
    // Alternate off/on twice and keep each one's best, so a noisy neighbour does not decide the ratio.
    const offs = [await runOnline(false)];
    const ons = [await runOnline(true)];
    offs.push(await runOnline(false));
    ons.push(await runOnline(true));
    const off = Math.max(...offs.map((r) => r.rate));
    const on = Math.max(...ons.map((r) => r.rate));
    const run = ons[0]!.run;
    rows.push({ name: 'wandb online history rows/s (10 values per row, log → stored after finish), write_ahead off', value: Math.round(off), unit: 'rows/s' });
    rows.push({ name: 'wandb online history rows/s, same, write_ahead on (default)', value: Math.round(on), unit: 'rows/s' });
    rows.push({ name: 'wandb write-ahead throughput ratio (on / off, same run)', value: +(on / off).toFixed(2), unit: 'x', goal: '>= 0.9' });
    rows.push({ name: 'wandb file_stream requests per 1000 rows', value: +((run.fileStreamPosts * 1000) / N).toFixed(2), unit: 'requests', goal: '<= 2' });

    const offline = new WandBTracker({ run_name: 'bench', mode: 'offline', dir });
    await offline.start();
    const t0 = performance.now();
    for (let i = 0; i < N; i++) offline.log(values(i), i);
    await offline.finish();
    rows.push({ name: 'wandb offline history rows/s (.wandb file, after finish)', value: Math.round(N / ((performance.now() - t0) / 1000)), unit: 'rows/s' });

    const lat = new WandBTracker({ run_name: 'lat', mode: 'offline', dir });
    await lat.start();
    const v = values(0);
    const samples: number[] = [];
    for (let b = 0; b < 2000; b++) {
      const s0 = process.hrtime.bigint();
      for (let i = 0; i < 10; i++) lat.log(v);
      samples.push(Number(process.hrtime.bigint() - s0) / 10);
      if (b % 200 === 199) await new Promise((r) => setImmediate(r));
    }
    await lat.finish();
    samples.sort((a, b) => a - b);
    const live = new WandBTracker({ run_name: 'lat', api_key: server.apiKey, base_url: server.url, dir });
    await live.start();
    const onSamples: number[] = [];
    for (let b = 0; b < 2000; b++) {
      const s0 = process.hrtime.bigint();
      for (let i = 0; i < 10; i++) live.log(v);
      onSamples.push(Number(process.hrtime.bigint() - s0) / 10);
      if (b % 200 === 199) await new Promise((r) => setImmediate(r));
    }
    await live.finish();
    onSamples.sort((a, b) => a - b);
    rows.push({ name: 'wandb log() median (10 values, committed row), online with write_ahead on', value: +onSamples[1000]!.toFixed(1), unit: 'ns/call', goal: '<= 1000' });
    rows.push({ name: 'wandb log() median (10 values, committed row)', value: +samples[1000]!.toFixed(1), unit: 'ns/call', goal: '<= 1000' });
    return rows;
  } finally {
    await server.close();
    setWarningHandler(restore);
    rmSync(dir, { recursive: true, force: true });
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  for (const r of await bench()) console.log(`${r.name}: ${r.value} ${r.unit}${r.goal ? ` (goal ${r.goal})` : ''}`);
}

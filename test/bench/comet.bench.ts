/**
 * Comet ML benchmark against the local Comet test server (same process):
 * - metrics/s end to end (log() → stored) for a burst within Comet's per-minute allowance, and the
 *   sustained rate the client paces itself to (the documented 12,000 metrics/min = 200/s), checked by
 *   counting that the server never answered 429;
 * - log() median cost for 10 values;
 * - metrics/s delivered at 500 metrics/s offered (50 log() calls of 10 values per second) with an
 *   injected per-request server delay of 0/5/20/50/100 ms (the round trip), one request in flight
 *   (before issue 17) vs PIPELINE.inFlight (now), in the same run: metrics stored by the server
 *   between 1 s and 3.5 s after logging started, per second (inside the first minute's allowance);
 * - the same at 100 ms sustained: limits and window scaled to 3 s (600 metrics per 3 s = the
 *   documented 200/s) on both sides, measured between 4 s and 8 s, after the window filled.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { CometMLTracker, setWarningHandler } from '../../generated/index.gen.js';
import { PACING, PIPELINE } from '../../runtime/backends/comet_ml/index.js';
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
    const calls = 500; // 5000 metrics, inside the 12,000/min allowance
    const burst = async (writeAhead: boolean): Promise<{ seconds: number; t: CometMLTracker }> => {
      const t = new CometMLTracker({ run_name: 'bench', write_ahead: writeAhead, offline_directory: spoolDir });
      await t.start();
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
      await t.finish();
      return { seconds, t };
    };
    const spoolDir = mkdtempSync(join(tmpdir(), 'trackspec-comet-wal-'));
    const off = await burst(false);
    await server.restart({ wipe: true }); // a fresh rate-limit window for the second run
    const on = await burst(true);
    rmSync(spoolDir, { recursive: true, force: true });
    const offRate = (calls * 10) / off.seconds;
    const onRate = (calls * 10) / on.seconds;
    rows.push({ name: 'comet e2e metrics/s, burst within the per-minute allowance, write_ahead off', value: Math.round(offRate), unit: 'metrics/s' });
    rows.push({ name: 'comet e2e metrics/s, same burst, write_ahead on (default)', value: Math.round(onRate), unit: 'metrics/s' });
    rows.push({ name: 'comet write-ahead throughput ratio (on / off, same run)', value: +(onRate / offRate).toFixed(2), unit: 'x', goal: '>= 0.9' });
    rows.push({ name: 'comet sustained pace (documented limit 12,000 metrics/min, paced with 2% slack)', value: Math.round(12_000 / (60 * (1 + PACING.slack))), unit: 'metrics/s' });
    rows.push({ name: 'comet 429 answers during the run (client stays under the limits)', value: server.requests.filter((r) => r.status === 429).length, unit: 'responses', goal: '<= 0' });
    // Round trip: delivered metrics/s at 500/s offered, one request in flight vs the pipeline.
    const inFlight = PIPELINE.inFlight;
    const rtDir = mkdtempSync(join(tmpdir(), 'trackspec-comet-rt-'));
    const delivered = async (delayMs: number, window: number, srv = server, from = 1000, to = 3500): Promise<number> => {
      PIPELINE.inFlight = window;
      await srv.restart({ wipe: true });
      srv.clearFaults();
      process.env.COMET_URL_OVERRIDE = srv.clientlibUrl;
      const t = new CometMLTracker({ run_name: 'bench', offline_directory: rtDir, retry_deadline_secs: 0.2 });
      await t.start();
      if (delayMs > 0) srv.inject({ kind: 'delay', ms: delayMs, path: '/metric', times: Infinity });
      const key = t.tracker.experimentKey!;
      const count = () => srv.experiment(key)!.metrics.length;
      const t0 = performance.now();
      let calls = 0;
      let at1 = -1;
      while (performance.now() - t0 < to) {
        const due = Math.floor(((performance.now() - t0) / 1000) * 50);
        for (; calls < due; calls++) {
          const v: Record<string, number> = {};
          for (let k = 0; k < 10; k++) v[`m${k}`] = calls + k;
          t.log(v, calls);
        }
        if (at1 < 0 && performance.now() - t0 >= from) at1 = count();
        await new Promise((r) => setTimeout(r, 5));
      }
      const rate = (count() - at1) / ((to - from) / 1000);
      await srv.stop(); // the backlog goes to the spool
      await t.finish().catch(() => undefined);
      PIPELINE.inFlight = inFlight;
      process.env.COMET_URL_OVERRIDE = server.clientlibUrl;
      return rate;
    };
    for (const d of [0, 5, 20, 50, 100]) {
      const one = await delivered(d, 1);
      const many = await delivered(d, inFlight);
      rows.push({ name: `comet metrics/s delivered at 500/s offered, ${d} ms per request, 1 in flight (before)`, value: Math.round(one), unit: 'metrics/s' });
      rows.push({ name: `comet metrics/s delivered at 500/s offered, ${d} ms per request, ${inFlight} in flight (now)`, value: Math.round(many), unit: 'metrics/s', ...(d === 100 ? { goal: '>= 190' } : {}) });
    }
    // Sustained: a 3 s window with the limits scaled to it on the client and the server.
    PACING.windowMs = 3000;
    const paced = await CometTestServer.start({ windowMs: 3000, limits: { metric: 600, parameter: 500, output: 600, other: 400 } });
    try {
      const one = await delivered(100, 1, paced, 4000, 8000);
      const many = await delivered(100, inFlight, paced, 4000, 8000);
      rows.push({ name: 'comet metrics/s sustained at 500/s offered, 100 ms per request, paced at the documented 200/s, 1 in flight (before)', value: Math.round(one), unit: 'metrics/s' });
      rows.push({ name: `comet metrics/s sustained at 500/s offered, 100 ms per request, paced at the documented 200/s, ${inFlight} in flight (now)`, value: Math.round(many), unit: 'metrics/s', goal: '>= 190' });
      rows.push({ name: 'comet 429 answers from the paced server (client stays under the scaled limits)', value: paced.requests.filter((r) => r.status === 429).length, unit: 'responses', goal: '<= 0' });
    } finally {
      PACING.windowMs = 60_000;
      await paced.close();
    }
    rmSync(rtDir, { recursive: true, force: true });
    await server.restart({ wipe: true });
    // log() cost: the same queueing path, on an offline tracker (so the paced sends do not have to drain).
    const dir = mkdtempSync(join(tmpdir(), 'trackspec-comet-bench-'));
    const offline = new CometMLTracker({ run_name: 'bench', online: false, offline_directory: dir });
    await offline.start();
    const values: Record<string, number> = {};
    for (let k = 0; k < 10; k++) values[`m${k}`] = k;
    const samples: number[] = [];
    for (let b = 0; b < 2000; b++) {
      const s0 = process.hrtime.bigint();
      for (let i = 0; i < 10; i++) offline.log(values, i);
      samples.push(Number(process.hrtime.bigint() - s0) / 10);
      if (b % 200 === 199) await new Promise((r) => setImmediate(r));
    }
    samples.sort((a, b) => a - b);
    // The same on an online tracker with write-ahead on (log() also queues the call for the spool).
    const walDir = mkdtempSync(join(tmpdir(), 'trackspec-comet-wal-'));
    const online = new CometMLTracker({ run_name: 'bench', offline_directory: walDir, retry_deadline_secs: 0.2 });
    await online.start();
    const onSamples: number[] = [];
    for (let b = 0; b < 500; b++) {
      const s0 = process.hrtime.bigint();
      for (let i = 0; i < 10; i++) online.log(values, i);
      onSamples.push(Number(process.hrtime.bigint() - s0) / 10);
      if (b % 100 === 99) await new Promise((r) => setImmediate(r));
    }
    await server.stop(); // the queue would take minutes at Comet's pace: end it through the spool
    await online.finish().catch(() => undefined);
    rmSync(walDir, { recursive: true, force: true });
    onSamples.sort((a, b) => a - b);
    rows.push({ name: 'comet log() median (10 values), online with write_ahead on', value: +onSamples[250]!.toFixed(1), unit: 'ns/call', goal: '<= 1000' });
    rows.push({ name: 'comet log() median (10 values)', value: +samples[1000]!.toFixed(1), unit: 'ns/call', goal: '<= 1000' });
    await offline.finish();
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

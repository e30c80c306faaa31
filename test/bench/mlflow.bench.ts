/**
 * MLflow benchmark, against the local MLflow test server (same process, so client and server share
 * the CPU) and the file store:
 * - end-to-end metrics/s from MLflowTracker.log() (10 metrics per call) to stored on the server after
 *   finish(), and requests per 1000 metrics;
 * - baseline in the same run: the server's own log-batch capacity, measured by posting ready-made
 *   1000-metric requests with the same HTTP client (the client should not be the bottleneck);
 * - log() median cost for 10 metrics;
 * - file-store metrics/s;
 * - a large artifact (1 GiB; TRACKSPEC_BENCH_ARTIFACT_MB to change) uploaded with logArtifact() to the
 *   test server, which streams it to disk: MB/s and the process's RSS growth while it is sent
 *   (client and server in this process), against, in the same run, a raw fs copy (copyFile) and a
 *   raw streamed PUT of the same file to the same server.
 */
import { createReadStream, mkdtempSync, rmSync, statSync } from 'node:fs';
import { copyFile, open as openFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { MLflowTracker, setWarningHandler } from '../../generated/index.gen.js';
import { HttpClient } from '../../runtime/io/http.js';
import { MlflowTestServer } from '../backends/mlflow/server.js';
import type { BenchRow } from './tensorboard.bench.js';

const KEYS = Array.from({ length: 10 }, (_, i) => `metric_${i}`);

async function endToEnd(uri: string, calls: number, writeAhead = true) {
  const t = new MLflowTracker({ tracking_uri: uri, experiment_name: 'bench', write_ahead: writeAhead });
  await t.start();
  const values: Record<string, number> = {};
  const t0 = performance.now();
  for (let i = 0; i < calls; i++) {
    for (let k = 0; k < 10; k++) values[KEYS[k]!] = i + k;
    t.log(values, i);
    if (i % 5000 === 4999) await new Promise((r) => setImmediate(r)); // a training loop yields now and then
  }
  await t.finish();
  const seconds = (performance.now() - t0) / 1000;
  return { seconds, tracker: t };
}

async function medianLogNs(uri: string, writeAhead = true): Promise<number> {
  const t = new MLflowTracker({ tracking_uri: uri, experiment_name: 'bench-latency', write_ahead: writeAhead });
  await t.start();
  const values: Record<string, number> = {};
  for (const k of KEYS) values[k] = 0;
  for (let i = 0; i < 5_000; i++) t.log(values, i);
  const samples: number[] = [];
  let step = 5_000;
  for (let b = 0; b < 1000; b++) {
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < 10; i++) t.log(values, step++);
    samples.push(Number(process.hrtime.bigint() - t0) / 10);
    if (b % 100 === 99) await new Promise((r) => setImmediate(r));
  }
  await t.finish();
  samples.sort((a, b) => a - b);
  return samples[Math.floor(samples.length / 2)]!;
}

async function serverCapacity(server: MlflowTestServer, runId: string, requests: number): Promise<number> {
  const http = new HttpClient({ baseUrl: server.url, backend: 'mlflow' });
  const body = (r: number) => ({
    run_id: runId,
    metrics: Array.from({ length: 1000 }, (_, i) => ({ key: KEYS[i % 10], value: i, timestamp: 1_700_000_000_000 + r, step: r * 100 + Math.floor(i / 10) })),
  });
  const t0 = performance.now();
  const inFlight: Promise<unknown>[] = [];
  for (let r = 0; r < requests; r++) {
    inFlight.push(http.request('POST', '/api/2.0/mlflow/runs/log-batch', { json: body(r) }));
    if (inFlight.length === 2) await inFlight.shift();
  }
  await Promise.all(inFlight);
  const seconds = (performance.now() - t0) / 1000;
  await http.close();
  return (requests * 1000) / seconds;
}

/** Write `bytes` of pseudo-random data in 8 MiB chunks (never held whole). */
async function makeFile(path: string, bytes: number): Promise<void> {
  const fh = await openFile(path, 'w');
  const chunk = Buffer.alloc(8 << 20);
  for (let i = 0; i < chunk.length; i++) chunk[i] = (i * 2654435761) >>> 24;
  try {
    for (let off = 0; off < bytes; off += chunk.length) await fh.write(chunk, 0, Math.min(chunk.length, bytes - off));
    await fh.sync(); // its writeback does not land on the first measurement
  } finally {
    await fh.close();
  }
}

/** Run `fn`, sampling RSS every 20 ms; returns seconds and the RSS growth over the value before it. */
async function withRss(fn: () => Promise<void>): Promise<{ seconds: number; growthMb: number; peakMb: number }> {
  (globalThis as { gc?: () => void }).gc?.();
  const before = process.memoryUsage.rss();
  let peak = before;
  const timer = setInterval(() => {
    peak = Math.max(peak, process.memoryUsage.rss());
  }, 20);
  const t0 = performance.now();
  try {
    await fn();
  } finally {
    clearInterval(timer);
  }
  const seconds = (performance.now() - t0) / 1000;
  peak = Math.max(peak, process.memoryUsage.rss());
  return { seconds, growthMb: (peak - before) / 1e6, peakMb: peak / 1e6 };
}

async function artifactRows(server: MlflowTestServer, dir: string): Promise<BenchRow[]> {
  const mb = Number(process.env.TRACKSPEC_BENCH_ARTIFACT_MB ?? 1024);
  const bytes = mb * 1024 * 1024;
  const src = join(dir, 'big.bin');
  await makeFile(src, bytes);
  const rows: BenchRow[] = [];
  const rate = (s: number) => +(bytes / 1e6 / s).toFixed(1);
  const http = new HttpClient({ baseUrl: server.url, backend: 'mlflow' });
  const t = new MLflowTracker({ tracking_uri: server.url, experiment_name: 'bench-artifacts' });
  await t.start();
  const stored = server.artifactFile(`${t.tracker.artifactUri.replace('mlflow-artifacts:/', '')}/ckpt/big.bin`);
  const best = { fs: Infinity, raw: Infinity, up: Infinity, upGrowth: 0, upPeak: 0, rawGrowth: 0 };
  // Alternated, best of 2 each, so disk writeback of one does not decide the other.
  for (let rep = 0; rep < 2; rep++) {
    const up = await withRss(async () => {
      t.logArtifact(src, 'ckpt');
      await t.flush();
    });
    if (statSync(stored).size !== bytes) throw new Error(`stored ${statSync(stored).size} of ${bytes} bytes`);
    rmSync(stored);
    best.up = Math.min(best.up, up.seconds);
    best.upGrowth = Math.max(best.upGrowth, up.growthMb);
    best.upPeak = Math.max(best.upPeak, up.peakMb);
    const raw = await withRss(async () => {
      const res = await http.request('PUT', '/api/2.0/mlflow-artifacts/artifacts/raw/big.bin', {
        body: createReadStream(src, { highWaterMark: 1 << 20 }),
        headers: { 'content-length': String(bytes), 'content-type': 'application/octet-stream' },
        timeoutMs: 0,
      });
      if (res.status !== 200) throw new Error(`raw PUT: ${res.status}`);
    });
    rmSync(server.artifactFile('raw/big.bin'));
    best.raw = Math.min(best.raw, raw.seconds);
    best.rawGrowth = Math.max(best.rawGrowth, raw.growthMb);
    const fsCopy = await withRss(() => copyFile(src, join(dir, 'copy.bin')));
    rmSync(join(dir, 'copy.bin'));
    best.fs = Math.min(best.fs, fsCopy.seconds);
  }
  await http.close();
  await t.finish();
  rmSync(src);
  rows.push({ name: `baseline: raw fs copyFile of a ${mb} MiB file`, value: rate(best.fs), unit: 'MB/s' });
  rows.push({ name: `baseline: raw streamed PUT of the ${mb} MiB file to the test server`, value: rate(best.raw), unit: 'MB/s' });
  rows.push({ name: `mlflow logArtifact() of a ${mb} MiB file → stored on the test server`, value: rate(best.up), unit: 'MB/s' });
  rows.push({ name: 'ratio logArtifact / raw PUT (MB/s)', value: +(best.raw / best.up).toFixed(2), unit: 'x' });
  rows.push({ name: 'ratio logArtifact / raw fs copy (MB/s)', value: +(best.fs / best.up).toFixed(2), unit: 'x' });
  rows.push({ name: `RSS growth during logArtifact() of ${mb} MiB (client + server in this process; worst of 2)`, value: +best.upGrowth.toFixed(1), unit: 'MB', goal: '<= 64' });
  rows.push({ name: `peak RSS during logArtifact() of ${mb} MiB`, value: +best.upPeak.toFixed(1), unit: 'MB' });
  rows.push({ name: `baseline: RSS growth during the raw PUT of ${mb} MiB`, value: +best.rawGrowth.toFixed(1), unit: 'MB' });
  return rows;
}

export default async function bench(): Promise<BenchRow[]> {
  const restore = setWarningHandler(() => undefined);
  const server = await MlflowTestServer.start();
  const dir = mkdtempSync(join(tmpdir(), 'trackspec-mlflow-bench-'));
  const spoolBefore = process.env.TRACKSPEC_SPOOL_DIR;
  process.env.TRACKSPEC_SPOOL_DIR = join(dir, 'spool');
  try {
    const rows: BenchRow[] = [];
    const artifacts = await artifactRows(server, dir); // first, on a fresh heap (RSS growth not hidden by freed memory)
    await endToEnd(server.url, 2_000); // warm-up
    const calls = 20_000; // 200k metrics
    // Write-ahead off (the baseline, as before issue 13.4) and on, alternated, best of 3 each.
    let offBest = 0;
    let onBest = 0;
    let e2e!: Awaited<ReturnType<typeof endToEnd>>;
    let batches = 0;
    for (let rep = 0; rep < 3; rep++) {
      const off = await endToEnd(server.url, calls, false);
      offBest = Math.max(offBest, (calls * 10) / off.seconds);
      const before = server.requests.filter((r) => r.path.endsWith('log-batch')).length;
      e2e = await endToEnd(server.url, calls, true);
      batches = server.requests.filter((r) => r.path.endsWith('log-batch')).length - before;
      const stored = server.run(e2e.tracker.tracker.runId)!.metrics.length;
      if (stored !== calls * 10) throw new Error(`stored ${stored} of ${calls * 10} metrics`);
      onBest = Math.max(onBest, (calls * 10) / e2e.seconds);
    }
    const perSec = onBest;
    rows.push({ name: 'baseline: mlflow REST e2e metrics/s, write_ahead off', value: Math.round(offBest), unit: 'metrics/s' });
    rows.push({ name: 'mlflow REST e2e metrics/s (log 10/call → stored after finish)', value: Math.round(perSec), unit: 'metrics/s' });
    rows.push({ name: 'ratio write_ahead on / off (e2e throughput)', value: +(onBest / offBest).toFixed(2), unit: 'x', goal: '>= 0.9' });
    rows.push({ name: 'mlflow REST requests per 1000 metrics', value: +((batches * 1000) / (calls * 10)).toFixed(3), unit: 'requests', goal: '<= 1' });
    const cap = await serverCapacity(server, e2e.tracker.tracker.runId, 200);
    rows.push({ name: 'baseline: test server log-batch capacity (ready-made 1000-metric requests)', value: Math.round(cap), unit: 'metrics/s' });
    rows.push({ name: 'ratio client e2e / server capacity', value: +(perSec / cap).toFixed(2), unit: 'x' });
    rows.push({ name: 'baseline: mlflow log() median (10 metrics), write_ahead off', value: +(await medianLogNs(server.url, false)).toFixed(1), unit: 'ns/call' });
    rows.push({ name: 'mlflow log() median (10 metrics)', value: +(await medianLogNs(server.url)).toFixed(1), unit: 'ns/call', goal: '<= 1000' });
    // Server down: every call is written ahead at the next interval (nothing is acknowledged).
    const down = await MlflowTestServer.start();
    const downUrl = down.url;
    const dt = new MLflowTracker({ tracking_uri: downUrl, experiment_name: 'bench-down', flush_interval_secs: 0.2, retry_deadline_secs: 0.5 });
    await dt.start();
    await down.close();
    {
      const values: Record<string, number> = {};
      for (const k of KEYS) values[k] = 0;
      const samples: number[] = [];
      let step = 0;
      for (let b = 0; b < 1000; b++) {
        const t0 = process.hrtime.bigint();
        for (let i = 0; i < 10; i++) dt.log(values, step++);
        samples.push(Number(process.hrtime.bigint() - t0) / 10);
        if (b % 100 === 99) await new Promise((r) => setTimeout(r, 25));
      }
      samples.sort((a, b) => a - b);
      rows.push({ name: 'mlflow log() median (10 metrics), server down, write-ahead to the spool', value: +samples[Math.floor(samples.length / 2)]!.toFixed(1), unit: 'ns/call', goal: '<= 1000' });
      await dt.finish().catch(() => undefined);
    }
    const fileCalls = 20_000;
    const file = await endToEnd(join(dir, 'mlruns'), fileCalls);
    rows.push({ name: 'mlflow file store e2e metrics/s', value: Math.round((fileCalls * 10) / file.seconds), unit: 'metrics/s' });
    rows.push(...artifacts);
    return rows;
  } finally {
    if (spoolBefore === undefined) delete process.env.TRACKSPEC_SPOOL_DIR;
    else process.env.TRACKSPEC_SPOOL_DIR = spoolBefore;
    await server.close();
    setWarningHandler(restore);
    rmSync(dir, { recursive: true, force: true });
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  for (const r of await bench()) console.log(`${r.name}: ${r.value} ${r.unit}${r.goal ? ` (goal ${r.goal})` : ''}`);
}

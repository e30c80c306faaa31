/**
 * Network-machinery benchmark (runtime/batcher.ts, spool.ts, http.ts).
 *
 * Rows:
 * - Batcher.push: median ns per item over 100 samples of 10k pushes (send resolves at once);
 * - Spool.append: records/s with one write + fdatasync per 1000-record append (MLflow-metric-sized
 *   records), and the same through appendSync;
 * - HttpClient: POST JSON requests/s against a keep-alive node:http server in a child process
 *   (so server CPU is not charged to the client), with 1 and 8 requests in flight.
 *
 * Run directly: `npx tsx test/bench/machinery.bench.ts`.
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import { Batcher } from '../../runtime/io/batcher.js';
import { HttpClient } from '../../runtime/io/http.js';
import { Spool } from '../../runtime/io/spool.js';
import type { BenchRow } from './tensorboard.bench.js';

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

async function benchPush(): Promise<number> {
  const b = new Batcher<{ key: string; value: number; step: number }>({
    maxBatch: 1000,
    maxDelayMs: 1000,
    maxPending: 1_000_000,
    send: () => Promise.resolve(),
    onFailed: () => Promise.resolve(),
  });
  const N = 10_000;
  const items = Array.from({ length: N }, (_, i) => ({ key: 'loss', value: i, step: i }));
  const samples: number[] = [];
  for (let s = 0; s < 110; s++) {
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < N; i++) b.push(items[i]!);
    const ns = Number(process.hrtime.bigint() - t0);
    samples.push(ns / N);
    await b.flush();
  }
  await b.close();
  return median(samples.slice(10)); // first samples warm the JIT
}

async function benchSpool(sync: boolean): Promise<number> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'trackspec-bench-spool-'));
  try {
    const s = await Spool.create(dir, { backend: 'bench', target: 'http://127.0.0.1', created: Date.now() });
    const chunk = Array.from({ length: 1000 }, (_, i) => ({ t: 'm', run: '0123456789abcdef0123456789abcdef', key: 'train/loss', value: i * 0.001, ts: 1_700_000_000_000 + i, step: i }));
    const appends = 40;
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < appends; i++) {
      if (sync) s.appendSync(chunk);
      else await s.append(chunk);
    }
    const sec = Number(process.hrtime.bigint() - t0) / 1e9;
    await s.close();
    return Math.round((appends * chunk.length) / sec);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

const SERVER = `
const http = require('node:http');
const s = http.createServer((req, res) => {
  let n = 0;
  req.on('data', (c) => (n += c.length));
  req.on('end', () => { res.setHeader('content-type', 'application/json'); res.end('{}'); });
});
s.keepAliveTimeout = 60000;
s.listen(0, '127.0.0.1', () => process.stdout.write(String(s.address().port) + '\\n'));
`;

async function benchHttp(): Promise<{ c1: number; c8: number }> {
  const child = spawn(process.execPath, ['-e', SERVER], { stdio: ['ignore', 'pipe', 'inherit'] });
  try {
    const port = await new Promise<number>((resolve, reject) => {
      child.stdout.once('data', (d: Buffer) => resolve(Number(d.toString().trim())));
      child.once('exit', () => reject(new Error('bench server exited')));
    });
    const client = new HttpClient({ baseUrl: `http://127.0.0.1:${port}`, backend: 'bench', connections: 8 });
    const body = { run_id: '0123456789abcdef0123456789abcdef', metrics: Array.from({ length: 10 }, (_, i) => ({ key: `m${i}`, value: i, timestamp: 1, step: 1 })) };
    const run = async (concurrency: number, ms: number): Promise<number> => {
      let done = 0;
      const end = Date.now() + ms;
      await Promise.all(
        Array.from({ length: concurrency }, async () => {
          while (Date.now() < end) {
            const r = await client.request('POST', '/api/2.0/mlflow/runs/log-batch', { json: body });
            if (r.status !== 200) throw new Error(`HTTP ${r.status}`);
            done++;
          }
        }),
      );
      return Math.round(done / (ms / 1000));
    };
    await run(8, 300); // warm up sockets and JIT
    const c1 = await run(1, 1000);
    const c8 = await run(8, 1000);
    await client.close();
    return { c1, c8 };
  } finally {
    child.kill();
  }
}

export default async function bench(): Promise<BenchRow[]> {
  const push = await benchPush();
  const spoolAsync = await benchSpool(false);
  const spoolSync = await benchSpool(true);
  const http = await benchHttp();
  return [
    { name: 'Batcher.push, median ns/item (maxBatch 1000)', value: Math.round(push * 10) / 10, unit: 'ns/item', goal: '<= 100' },
    { name: 'Spool.append, 1000 records per append, fdatasync each', value: spoolAsync, unit: 'records/s', goal: '>= 100000' },
    { name: 'Spool.appendSync, 1000 records per append, fdatasync each', value: spoolSync, unit: 'records/s' },
    { name: 'HttpClient POST JSON (10 metrics) to local keep-alive server, 1 in flight', value: http.c1, unit: 'req/s' },
    { name: 'HttpClient POST JSON (10 metrics) to local keep-alive server, 8 in flight', value: http.c8, unit: 'req/s' },
  ];
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  for (const row of await bench()) console.log(`${row.name.padEnd(80)} ${String(row.value).padStart(10)} ${row.unit}${row.goal ? `  (goal ${row.goal})` : ''}`);
}

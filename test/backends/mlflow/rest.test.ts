// MLflow over REST against the local MLflow test server: request stream, batching, retries,
// faults (no metric lost or duplicated), spool + sync, auth, process death.
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { copyFileSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { BackendError, MLflowTracker, setWarningHandler } from '../../../generated/index.gen.js';
import { syncSpools } from '../../../runtime/backends/mlflow/sync.js';
import { ROOT, tempDir } from '../../support/helpers.js';
import { MlflowTestServer, type RecordedRequest } from './server.js';

const ENV = ['MLFLOW_TRACKING_URI', 'MLFLOW_EXPERIMENT_NAME', 'MLFLOW_RUN_ID', 'MLFLOW_TAGS', 'MLFLOW_NESTED_RUN', 'MLFLOW_TRACKING_TOKEN',
  'MLFLOW_TRACKING_USERNAME', 'MLFLOW_TRACKING_PASSWORD', 'MLFLOW_TRACKING_INSECURE_TLS', 'RANK', 'LOCAL_RANK'];
let server: MlflowTestServer;
let spoolDir: string;
let warnings: string[];
beforeEach(async () => {
  for (const v of ENV) vi.stubEnv(v, undefined);
  spoolDir = tempDir('spool-');
  vi.stubEnv('TRACKSPEC_SPOOL_DIR', spoolDir);
  warnings = [];
  setWarningHandler((m) => warnings.push(m));
  server = await MlflowTestServer.start();
});
afterEach(async () => {
  vi.unstubAllEnvs();
  setWarningHandler(undefined);
  await server.close();
});

const api = (r: RecordedRequest) => `${r.method} ${r.path.replace('/api/2.0/mlflow/', '')}`;
const ok = (rs: RecordedRequest[]) => rs.filter((r) => r.status === 200);

function logMany(t: MLflowTracker, calls: number, offset = 0): void {
  for (let i = offset; i < offset + calls; i++) {
    const v: Record<string, number> = {};
    for (let k = 0; k < 10; k++) v[`m${k}`] = i + k / 10;
    t.log(v, i);
  }
}

/** Every (key, step) exactly once on the server. */
function expectExactlyOnce(runId: string, calls: number, offset = 0): void {
  const run = server.run(runId)!;
  const seen = new Map<string, number>();
  for (const m of run.metrics) seen.set(`${m.key}@${m.step}`, (seen.get(`${m.key}@${m.step}`) ?? 0) + 1);
  expect(run.metrics.length).toBe(calls * 10);
  expect(seen.size).toBe(calls * 10);
  expect([...seen.values()].every((n) => n === 1)).toBe(true);
  expect(seen.has(`m0@${offset}`) && seen.has(`m9@${offset + calls - 1}`)).toBe(true);
}

describe('request stream', () => {
  it('create experiment, run with tags, params, batched metrics, FINISHED — in that order', async () => {
    const t = new MLflowTracker({
      tracking_uri: server.url, experiment_name: 'exp', run_name: 'r1', description: 'about this run', tags: { team: 'a' }, logging_dir: 's3://bucket/x',
    });
    await t.start();
    await t.storeInitConfiguration({ lr: 0.001, layers: 4, optimizer: 'adam', warmup: null, amp: false });
    logMany(t, 250); // 2500 metrics
    await t.finish();
    const stream = server.requests.map(api);
    expect(stream).toEqual([
      'GET experiments/get-by-name',
      'POST experiments/create',
      'POST runs/create',
      'POST runs/log-batch',
      'POST runs/log-batch',
      'POST runs/log-batch',
      'POST runs/log-batch',
      'POST runs/update',
    ]);
    const [, create, runCreate, params, ...rest] = server.requests;
    expect(create!.body).toEqual({ name: 'exp', artifact_location: 's3://bucket/x', tags: [{ key: 'team', value: 'a' }] });
    expect(create!.headers['content-type']).toMatch(/^application\/json/);
    const rc = runCreate!.body as { experiment_id: string; start_time: number; run_name: string; tags: { key: string; value: string }[] };
    expect(rc.run_name).toBe('r1');
    expect(rc.start_time).toBeGreaterThan(1.7e12);
    const tags = Object.fromEntries(rc.tags.map((x) => [x.key, x.value]));
    expect(tags).toMatchObject({ team: 'a', 'mlflow.runName': 'r1', 'mlflow.note.content': 'about this run', 'mlflow.source.type': 'LOCAL' });
    expect(params!.body).toEqual({
      run_id: t.tracker.runId,
      params: [
        { key: 'lr', value: '0.001' }, { key: 'layers', value: '4' }, { key: 'optimizer', value: 'adam' },
        { key: 'warmup', value: 'None' }, { key: 'amp', value: 'False' },
      ],
    });
    const batches = rest.slice(0, 3).map((r) => (r.body as { metrics: unknown[] }).metrics.length);
    expect(batches.reduce((a, b) => a + b, 0)).toBe(2500);
    expect(Math.max(...batches)).toBeLessThanOrEqual(1000);
    const update = rest[3]!.body as { status: string; end_time: number };
    expect(update.status).toBe('FINISHED');
    expect(update.end_time).toBeGreaterThanOrEqual(rc.start_time);
    expect(server.run(t.tracker.runId)!.info.status).toBe('FINISHED');
    expectExactlyOnce(t.tracker.runId, 250);
  });

  it('a relative logging_dir is made absolute on the client (a server would resolve it against its own directory)', async () => {
    const t = new MLflowTracker({ tracking_uri: server.url, experiment_name: 'rel', logging_dir: './artifacts' });
    await t.start();
    await t.finish();
    const create = server.requests.find((r) => r.path.endsWith('experiments/create'))!;
    expect((create.body as { artifact_location: string }).artifact_location).toBe(join(process.cwd(), 'artifacts'));
  });

  it('reuses an existing experiment by exact name', async () => {
    const a = new MLflowTracker({ tracking_uri: server.url, experiment_name: "it's mine" });
    await a.start();
    await a.finish();
    const b = new MLflowTracker({ tracking_uri: server.url, experiment_name: "it's mine" });
    await b.start();
    await b.finish();
    expect(server.requests.filter((r) => r.path.endsWith('experiments/create'))).toHaveLength(1);
    expect(server.requests.find((r) => r.path.endsWith('get-by-name'))!.query).toEqual({ experiment_name: "it's mine" });
    expect(a.tracker.experimentId).toBe(b.tracker.experimentId);
  });

  it('NaN and ±Infinity are sent as MLflow expects; booleans as 1/0', async () => {
    const t = new MLflowTracker({ tracking_uri: server.url });
    await t.start();
    t.log({ a: NaN, b: Infinity, c: -Infinity, d: true, e: 0.5 }, 1);
    await t.finish();
    const sent = server.requests.filter((r) => r.path.endsWith('log-batch')).flatMap((r) => (r.body as { metrics: { key: string; value: unknown }[] }).metrics);
    expect(Object.fromEntries(sent.map((m) => [m.key, m.value]))).toEqual({ a: 'NaN', b: 'Infinity', c: '-Infinity', d: 1, e: 0.5 });
  });

  it('nested: parent from this process, or MLFLOW_RUN_ID when there is none; run_id alone resumes', async () => {
    const parent = new MLflowTracker({ tracking_uri: server.url, experiment_name: 'p' });
    await parent.start();
    const child = new MLflowTracker({ tracking_uri: server.url, nested_run: true });
    await child.start();
    expect(server.run(child.tracker.runId)!.tags['mlflow.parentRunId']).toBe(parent.tracker.runId);
    await child.finish();
    await parent.finish();

    vi.stubEnv('MLFLOW_RUN_ID', parent.tracker.runId);
    vi.stubEnv('MLFLOW_NESTED_RUN', '1');
    const viaEnv = new MLflowTracker({ tracking_uri: server.url });
    await viaEnv.start();
    expect(viaEnv.tracker.runId).not.toBe(parent.tracker.runId);
    expect(server.run(viaEnv.tracker.runId)!.tags['mlflow.parentRunId']).toBe(parent.tracker.runId);
    await viaEnv.finish();

    vi.stubEnv('MLFLOW_NESTED_RUN', 'false');
    const resumed = new MLflowTracker({ tracking_uri: server.url });
    await resumed.start();
    expect(resumed.tracker.runId).toBe(parent.tracker.runId);
    expect(server.run(parent.tracker.runId)!.info.status).toBe('RUNNING');
    await resumed.finish();
    expect(server.run(parent.tracker.runId)!.info.status).toBe('FINISHED');
  });

  it('a changed param is a BackendError saying params are immutable', async () => {
    const t = new MLflowTracker({ tracking_uri: server.url });
    await t.start();
    await t.storeInitConfiguration({ lr: 0.01 });
    await expect(t.storeInitConfiguration({ lr: 0.02 })).rejects.toThrow(/params are immutable in MLflow/);
    await t.finish();
  });

  it('4xx errors fail fast with the server\'s error_code and message', async () => {
    const t = new MLflowTracker({ tracking_uri: server.url });
    await t.start();
    server.inject({ kind: 'status', status: 400, path: 'log-batch' });
    t.log({ a: 1 }, 1);
    const started = Date.now();
    const err = (await t.flush().catch((e: unknown) => e)) as BackendError;
    expect(err).toBeInstanceOf(BackendError);
    expect(Date.now() - started).toBeLessThan(2000);
    expect(err.status).toBe(400);
    await t.finish().catch(() => undefined);
  });
});

describe('faults: no metric lost or duplicated', () => {
  const faults = [
    ['connection refused ×3', { kind: 'refuse', path: 'log-batch', times: 3 }],
    ['429 with Retry-After', { kind: 'status', status: 429, retryAfter: '1', path: 'log-batch', times: 2 }],
    ['500 ×3', { kind: 'status', status: 500, path: 'log-batch', times: 3 }],
    ['503 on runs/update', { kind: 'status', status: 503, path: 'runs/update', times: 2 }],
    ['slow responses', { kind: 'delay', ms: 300, path: 'log-batch', times: 4 }],
  ] as const;
  it.each(faults)('%s', async (_name, fault) => {
    const t = new MLflowTracker({ tracking_uri: server.url, retry_deadline_secs: 20 });
    await t.start();
    server.inject({ ...fault });
    logMany(t, 500);
    await t.flush();
    logMany(t, 300, 500);
    await t.finish();
    expectExactlyOnce(t.tracker.runId, 800);
    expect(server.run(t.tracker.runId)!.info.status).toBe('FINISHED');
  });

  it('server restart mid-run', async () => {
    const t = new MLflowTracker({ tracking_uri: server.url, retry_deadline_secs: 20, flush_interval_secs: 0.05 });
    await t.start();
    logMany(t, 300);
    await t.flush();
    await server.stop();
    logMany(t, 300, 300);
    await new Promise((r) => setTimeout(r, 300));
    await server.restart();
    await t.finish();
    expectExactlyOnce(t.tracker.runId, 600);
  });
});

describe('lossless: spool and sync', () => {
  it('server gone past the deadline: records spooled (fsync), sync uploads them exactly once', async () => {
    const t = new MLflowTracker({ tracking_uri: server.url, retry_deadline_secs: 0.3, experiment_name: 'spooled' });
    await t.start();
    const runId = t.tracker.runId;
    logMany(t, 120);
    await t.flush();
    await server.stop();
    logMany(t, 180, 120);
    await expect(t.storeInitConfiguration({ lr: 0.5 })).rejects.toThrow(/unreachable.*trackspec sync/s);
    await expect(t.finish()).rejects.toThrow(/record\(s\) are safe in .*trackspec sync/);
    expect(warnings.some((w) => w.includes('unreachable'))).toBe(true);
    const files = readdirSync(join(spoolDir, 'mlflow'));
    expect(files.filter((f) => f.endsWith('.spool'))).toHaveLength(1);
    const spoolPath = join(spoolDir, 'mlflow', files.find((f) => f.endsWith('.spool'))!);
    const copy = `${spoolPath}.copy`;
    copyFileSync(spoolPath, copy);

    await server.restart();
    const lines: string[] = [];
    const summary = await syncSpools(spoolDir, { out: (l) => lines.push(l) });
    expect(summary).toMatchObject({ spools: 1, duplicates: 0, failed: [] });
    expect(summary.sent).toBe(1800 + 1 + 1); // metrics, the param, the FINISHED status
    expectExactlyOnce(runId, 300);
    expect(server.run(runId)!.params).toEqual({ lr: '0.5' });
    expect(server.run(runId)!.info.status).toBe('FINISHED');
    expect(lines.some((l) => l.includes('records'))).toBe(true);

    // Nothing left; and a replay of the same records (as after a crash before the ack) adds nothing.
    expect((await syncSpools(spoolDir, { out: () => undefined })).spools).toBe(0);
    writeFileSync(spoolPath.replace(/\.spool$/, '-again.spool'), readFileSync(copy));
    const again = await syncSpools(spoolDir, { out: () => undefined });
    expect(again.duplicates).toBe(1800);
    expectExactlyOnce(runId, 300);
  }, 30_000);

  it('the next run warns about spools not yet uploaded', async () => {
    const t = new MLflowTracker({ tracking_uri: server.url, retry_deadline_secs: 0.2 });
    await t.start();
    await server.stop();
    t.log({ a: 1 }, 1);
    await t.finish().catch(() => undefined);
    await server.restart();
    warnings = [];
    const next = new MLflowTracker({ tracking_uri: server.url });
    await next.start();
    await new Promise((r) => setTimeout(r, 100));
    expect(warnings.some((w) => /found 1 MLflow spool file\(s\) with \d+ record\(s\) not yet uploaded/.test(w) && w.includes('trackspec sync'))).toBe(true);
    await next.finish();
  });
});

describe('auth and secrets', () => {
  it('MLFLOW_TRACKING_TOKEN → Bearer; never in errors or spool files', async () => {
    server.requireAuth({ bearer: 'tok-SECRET-123' });
    vi.stubEnv('MLFLOW_TRACKING_TOKEN', 'tok-SECRET-123');
    const t = new MLflowTracker({ tracking_uri: server.url, retry_deadline_secs: 0.2 });
    await t.start();
    expect(server.requests.every((r) => r.headers.authorization === 'Bearer tok-SECRET-123')).toBe(true);
    await server.stop();
    t.log({ a: 1 }, 1);
    const err = (await t.finish().catch((e: unknown) => e)) as Error;
    expect(String(err.message) + String((err.cause as Error)?.message)).not.toContain('SECRET');
    for (const f of readdirSync(join(spoolDir, 'mlflow'))) expect(readFileSync(join(spoolDir, 'mlflow', f), 'utf8')).not.toContain('SECRET');
    await server.restart();
  });

  it('username/password → Basic; a wrong password is a fast BackendError without the password', async () => {
    server.requireAuth({ basic: { username: 'u', password: 'p4ss-SECRET' } });
    vi.stubEnv('MLFLOW_TRACKING_USERNAME', 'u');
    vi.stubEnv('MLFLOW_TRACKING_PASSWORD', 'wrong-SECRET');
    const err = (await new MLflowTracker({ tracking_uri: server.url }).start().catch((e: unknown) => e)) as BackendError;
    expect(err).toBeInstanceOf(BackendError);
    expect(err.status).toBe(401);
    expect(JSON.stringify({ m: err.message, c: String(err.cause) })).not.toContain('SECRET');
    vi.stubEnv('MLFLOW_TRACKING_PASSWORD', 'p4ss-SECRET');
    const t = new MLflowTracker({ tracking_uri: server.url });
    await t.start();
    await t.finish();
  });
});

describe('process death', () => {
  // The server lives in this process: the child must run asynchronously (spawnSync would block it).
  async function child(mode: 'throw' | 'sigterm'): Promise<void> {
    const dir = tempDir();
    const script = join(dir, 'child.mts');
    writeFileSync(
      script,
      `import { MLflowTracker } from ${JSON.stringify(join(ROOT, 'generated', 'index.gen.ts'))};
const t = new MLflowTracker({ tracking_uri: ${JSON.stringify(server.url)}, experiment_name: 'dying' });
await t.start();
process.stdout.write(t.tracker.runId + '\\n');
for (let i = 0; i < 50; i++) t.log({ loss: i }, i);
${mode === 'throw' ? "setTimeout(() => { throw new Error('boom'); }, 10);" : "setTimeout(() => process.kill(process.pid, 'SIGTERM'), 10); setInterval(() => {}, 1000);"}
`,
    );
    const proc = spawn(process.execPath, ['--import', 'tsx', script], { cwd: ROOT, env: { ...process.env, TRACKSPEC_SPOOL_DIR: spoolDir }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    proc.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    proc.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const [code, signal] = (await once(proc, 'close')) as [number | null, string | null];
    const runId = stdout.trim().split('\n')[0]!;
    expect(runId, stderr).toMatch(/^[0-9a-f]{32}$/);
    expect(mode === 'throw' ? code : signal).toBe(mode === 'throw' ? 1 : 'SIGTERM');
    const run = server.run(runId)!;
    expect(run.info.status).toBe(mode === 'throw' ? 'FAILED' : 'KILLED');
    expect(run.info.end_time).toBeGreaterThan(0);
    expect(run.metrics).toHaveLength(50);
  }
  it('an uncaught exception marks the run FAILED and sends the pending metrics', () => child('throw'), 30_000);
  it('SIGTERM marks the run KILLED', () => child('sigterm'), 30_000);
});

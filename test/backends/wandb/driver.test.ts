// WandBTracker against the local W&B test server: UpsertBucket + file_stream, W&B step semantics,
// heartbeats, faults (no row lost or duplicated), resume, offline .wandb files and sync.
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { BackendError, ConfigError, ValidationError, WandBTracker } from '../../../generated/index.gen.js';
import { findOfflineRuns, readWandbFile } from '../../../runtime/backends/wandb/offline.js';
import { syncAll } from '../../../runtime/backends/sync.js';
import { WandbTestServer, parseWandbJson } from './server.js';
import YAML from 'yaml';
import { runDyingChild, wandbTestSetup, wandbTestTeardown } from './setup.js';

let server: WandbTestServer;
let dir: string;
let warnings: string[];
beforeEach(async () => {
  ({ server, dir, warnings } = await wandbTestSetup('wandb-'));
});
afterEach(async () => {
  await wandbTestTeardown(server);
});

const rowsOf = (r: { history: { offset: number; row: Record<string, unknown> }[] }) =>
  r.history.map((h) => Object.fromEntries(Object.entries(h.row).filter(([k]) => !['_runtime', '_timestamp'].includes(k))));

describe('online protocol', () => {
  it('Viewer, UpsertBucket with {key: {value}} config, merged history rows, summary, complete', async () => {
    const t = new WandBTracker({ run_name: 'proj', name: 'display', tags: ['a', 'b'], notes: 'n', group: 'g', job_type: 'train', config: { a: 1 }, dir });
    await t.start();
    await t.storeInitConfiguration({ lr: 0.1, opt: { name: 'adam' } });
    t.log({ loss: 1 }, 0);
    t.log({ acc: 0.5 }, 0); // same step: merged
    t.log({ loss: 2 }, 1); // higher step: row 0 committed
    t.log({ x: 1 }); // no step: merged into row 1 and committed
    t.log({ y: 2 }, 0); // lower step: ignored with a warning
    t.log({ loss: 3, nan: NaN, inf: Infinity, text: 'hi', nested: { k: [1, 2] } }); // step 2
    await t.finish();
    const { entity, runId } = t.tracker;
    expect(entity).toBe('test-entity');
    const run = server.run(entity, 'proj', runId)!;
    expect(run.problems).toEqual([]);
    expect(rowsOf(run)).toEqual([
      { loss: 1, acc: 0.5, _step: 0 },
      { loss: 2, x: 1, _step: 1 },
      { loss: 3, nan: NaN, inf: Infinity, text: 'hi', nested: { k: [1, 2] }, _step: 2 },
    ]);
    expect(run.history.map((h) => h.offset)).toEqual([0, 1, 2]);
    expect(run.history.every((h) => typeof h.row._runtime === 'number' && (h.row._timestamp as number) > 1.7e9)).toBe(true);
    expect(run.config).toMatchObject({ a: { value: 1 }, lr: { value: 0.1 }, opt: { value: { name: 'adam' } } });
    expect(run).toMatchObject({ displayName: 'display', tags: ['a', 'b'], notes: 'n', groupName: 'g', jobType: 'train', complete: true, exitcode: 0 });
    expect(run.summary).toMatchObject({ loss: 3, acc: 0.5, x: 1, _step: 2 });
    expect(warnings.some((w) => w.includes('step 0 is lower than the current step'))).toBe(true);
    const ops = server.requests.map((r) => r.operation ?? (r.path.endsWith('file_stream') ? 'file_stream' : r.path));
    expect(ops.slice(0, 3)).toEqual(['Viewer', 'UpsertBucket', 'UpsertBucket']);
    const api = server.requests.filter((r) => !r.path.startsWith('/upload/'));
    expect(api.every((r) => r.headers.authorization === `Basic ${Buffer.from(`api:${server.apiKey}`).toString('base64')}`)).toBe(true);
    // At finish, as wandb-core: wandb-summary.json and config.yaml uploaded as run files, before complete.
    expect(Object.keys(run.files).sort()).toEqual(['config.yaml', 'wandb-summary.json']);
    expect(run.uploaded.sort()).toEqual(['config.yaml', 'wandb-summary.json']);
    const summaryFile = parseWandbJson(server.fileContent(entity, 'proj', runId, 'wandb-summary.json')!.toString('utf8'));
    expect(summaryFile).toEqual(run.summary);
    const configFile = YAML.parse(server.fileContent(entity, 'proj', runId, 'config.yaml')!.toString('utf8')) as Record<string, { value: unknown }>;
    expect(configFile).toEqual(run.config);
    expect(Object.keys(configFile)).toEqual(['_wandb', 'a', 'lr', 'opt']); // sorted, as yaml.v3 writes a map
    const completeAt = server.requests.findIndex((r) => (r.body as { complete?: boolean } | undefined)?.complete === true);
    const lastPut = server.requests.map((r) => r.path.startsWith('/upload/')).lastIndexOf(true);
    expect(lastPut).toBeGreaterThan(-1);
    expect(lastPut).toBeLessThan(completeAt);
  });

  it('heartbeats while idle', async () => {
    const t = new WandBTracker({ run_name: 'p', heartbeat_secs: 0.2, dir });
    await t.start();
    await new Promise((r) => setTimeout(r, 900));
    await t.finish();
    expect(server.run(t.tracker.entity, 'p', t.tracker.runId)!.heartbeats).toBeGreaterThanOrEqual(2);
  });

  it('a missing API key is a ConfigError naming WANDB_API_KEY', async () => {
    vi.stubEnv('WANDB_API_KEY', undefined);
    const err = (await new WandBTracker({ run_name: 'p', dir }).start().catch((e: unknown) => e)) as ConfigError;
    expect(err).toBeInstanceOf(ConfigError);
    expect(err.message).toContain('WANDB_API_KEY');
  });

  it('bad values get typed errors at log() time', async () => {
    const t = new WandBTracker({ run_name: 'p', dir });
    await t.start();
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    expect(() => t.log({ c: cyclic })).toThrow(ValidationError);
    expect(() => t.log({ s: 'x'.repeat(1_000_001) })).toThrow(/limited to 1000000/);
    expect(() => t.log({ f: () => 1 })).toThrow(ValidationError);
    expect(() => t.log({ b: 10n })).toThrow(ValidationError);
    await t.finish();
  });

  it('mode disabled logs nothing', async () => {
    const t = new WandBTracker({ run_name: 'p', mode: 'disabled', dir });
    await t.start();
    t.log({ a: 1 });
    await t.finish();
    expect(server.requests).toHaveLength(0);
  });
});

describe('faults: no row lost or duplicated', () => {
  it.each([
    ['500 ×3', { kind: 'status', status: 500, path: 'file_stream', times: 3 }],
    ['429', { kind: 'status', status: 429, retryAfter: '1', path: 'file_stream', times: 1 }],
    ['connection refused ×2', { kind: 'refuse', path: 'file_stream', times: 2 }],
  ] as const)('%s', async (_n, fault) => {
    const t = new WandBTracker({ run_name: 'p', flush_interval_secs: 0.05, dir });
    await t.start();
    server.inject({ ...fault });
    for (let i = 0; i < 300; i++) t.log({ i }, i);
    await t.finish();
    const run = server.run(t.tracker.entity, 'p', t.tracker.runId)!;
    expect(run.problems).toEqual([]);
    expect(run.history.map((h) => h.row.i)).toEqual(Array.from({ length: 300 }, (_, i) => i));
  });

  it('server restart mid-run', async () => {
    const t = new WandBTracker({ run_name: 'p', flush_interval_secs: 0.05, retry_deadline_secs: 20, dir });
    await t.start();
    for (let i = 0; i < 100; i++) t.log({ i }, i);
    await t.flush();
    await server.stop();
    for (let i = 100; i < 200; i++) t.log({ i }, i);
    await new Promise((r) => setTimeout(r, 300));
    await server.restart();
    await t.finish();
    const run = server.run(t.tracker.entity, 'p', t.tracker.runId)!;
    expect(run.history.map((h) => h.row.i)).toEqual(Array.from({ length: 200 }, (_, i) => i));
    expect(run.complete).toBe(true);
  }, 30_000);
});

describe('resume', () => {
  it('resume "allow" continues at the run\'s history offset; "must" and "never" are enforced', async () => {
    server.seedRun('test-entity', 'p', 'abc123', 5);
    const t = new WandBTracker({ run_name: 'p', id: 'abc123', resume: 'allow', dir });
    await t.start();
    for (let i = 0; i < 3; i++) t.log({ v: i });
    await t.finish();
    const run = server.run('test-entity', 'p', 'abc123')!;
    expect(run.history.map((h) => h.offset)).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
    expect(run.problems).toEqual([]);
    await expect(new WandBTracker({ run_name: 'p', id: 'nope', resume: 'must', dir }).start()).rejects.toThrow(BackendError);
    await expect(new WandBTracker({ run_name: 'p', id: 'abc123', resume: 'never', dir }).start()).rejects.toThrow(/already exists/);
  });
});

describe('offline', () => {
  it('writes a .wandb transaction log that trackspec sync uploads once', async () => {
    vi.stubEnv('WANDB_MODE', 'offline');
    const t = new WandBTracker({ run_name: 'off', config: { a: 1 }, dir });
    await t.start();
    await t.storeInitConfiguration({ lr: 0.5 });
    for (let i = 0; i < 50; i++) t.log({ loss: 1 / (i + 1) }, i);
    await t.finish();
    expect(server.requests).toHaveLength(0);
    const [file] = await findOfflineRuns(dir);
    expect(file).toMatch(/wandb\/offline-run-\d{8}_\d{6}-[a-z0-9]+\/run-[a-z0-9]+\.wandb$/);
    const { records, error } = await readWandbFile(file!);
    expect(error).toBeUndefined();
    const kinds = records.map((r) => r.kind);
    expect(kinds[0]).toBe('header');
    expect(kinds[1]).toBe('run');
    expect(kinds.slice(-3)).toEqual(['exit', 'final', 'footer']);
    expect(kinds.filter((k) => k === 'history')).toHaveLength(50);
    expect(records.map((r) => r.num)).toEqual(records.map((_, i) => i + 1));

    const summary = await syncAll(dir, { out: () => undefined });
    expect(summary.failed).toEqual([]);
    const run = server.run('test-entity', 'off', t.tracker.runId)!;
    expect(run.problems).toEqual([]);
    expect(run.history.map((h) => h.row.loss)).toEqual(Array.from({ length: 50 }, (_, i) => 1 / (i + 1)));
    expect(run.config).toMatchObject({ a: { value: 1 }, lr: { value: 0.5 } });
    expect(run).toMatchObject({ complete: true, exitcode: 0 });
    expect(existsSync(`${file}.synced`)).toBe(true);
    expect((await syncAll(dir, { out: () => undefined })).spools).toBe(0);
  });

  it('a flipped bit mid-file: sync uploads every intact row after resynchronising by block, names the range, fails (issue 13.3)', async () => {
    vi.stubEnv('WANDB_MODE', 'offline');
    const t = new WandBTracker({ run_name: 'dmg', dir });
    await t.start();
    const N = 3000;
    for (let i = 0; i < N; i++) t.log({ loss: i, pad: 'x'.repeat(40) }, i);
    await t.finish();
    const [file] = await findOfflineRuns(dir);
    const bytes = readFileSync(file!);
    expect(bytes.length).toBeGreaterThan(4 * 32768);
    const at = 2 * 32768 + 1000; // inside block 2
    bytes[at] ^= 0x10;
    writeFileSync(file!, bytes);
    const { records, damaged, error } = await readWandbFile(file!);
    expect(error).toBeUndefined();
    expect(damaged).toHaveLength(1);
    expect(damaged[0]!.offset).toBeLessThanOrEqual(at);
    expect(damaged[0]!.to).toBeGreaterThanOrEqual(3 * 32768);
    const lost = N - records.filter((r) => r.kind === 'history').length;
    expect(lost).toBeGreaterThan(0);
    expect(lost).toBeLessThan(400); // at most about one block of rows
    expect(records.at(-1)!.kind).toBe('footer');

    const lines: string[] = [];
    const summary = await syncAll(dir, { out: (l) => lines.push(l) });
    expect(summary.failed).toHaveLength(1);
    expect(summary.failed[0]!.error).toMatch(/damaged at bytes [\d,]+–[\d,]+/);
    const run = server.run('test-entity', 'dmg', t.tracker.runId)!;
    expect(run.history).toHaveLength(N - lost);
    expect(run.history.at(-1)!.row.loss).toBe(N - 1);
    expect(run).toMatchObject({ complete: true, exitcode: 0 });
    expect(existsSync(file!)).toBe(true);
  });

  it('falls back to offline when the server stays unreachable; sync completes the run without gaps', async () => {
    const t = new WandBTracker({ run_name: 'fb', flush_interval_secs: 0.05, retry_deadline_secs: 0.3, dir });
    await t.start();
    for (let i = 0; i < 20; i++) t.log({ i }, i);
    await t.flush();
    await server.stop();
    for (let i = 20; i < 40; i++) t.log({ i }, i);
    await t.finish();
    expect(t.tracker.mode).toBe('offline');
    expect(warnings.some((w) => w.includes('continues offline'))).toBe(true);
    await server.restart();
    await syncAll(dir, { out: () => undefined });
    const run = server.run(t.tracker.entity, 'fb', t.tracker.runId)!;
    expect(run.problems).toEqual([]);
    expect(run.history.map((h) => h.row.i)).toEqual(Array.from({ length: 40 }, (_, i) => i));
    expect(run.complete).toBe(true);
  }, 30_000);
});

describe('process death', () => {
  it('an uncaught exception sends the pending rows and exitcode 1', async () => {
    const { entity, runId } = await runDyingChild(dir, `for (let i = 0; i < 30; i++) t.log({ i }, i);
setTimeout(() => { throw new Error('boom'); }, 10);`);
    const run = server.run(entity, 'dying', runId)!;
    expect(run).toMatchObject({ complete: true, exitcode: 1 });
    expect(run.history.map((h) => h.row.i)).toEqual(Array.from({ length: 30 }, (_, i) => i)); // the pending row 29 is committed at exit
  }, 30_000);
});

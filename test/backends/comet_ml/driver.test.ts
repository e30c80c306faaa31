// CometMLTracker against the local Comet REST v2 test server.
import { mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { BackendError, CometMLTracker, ConfigError, Tracking } from '../../../generated/index.gen.js';
import { restBase } from '../../../runtime/backends/comet_ml/config.js';
import { RateLimiter } from '../../../runtime/io/rate-limit.js';
import { syncAll } from '../../../runtime/backends/sync.js';
import { tempDir } from '../../support/helpers.js';
import { cometTestSetup, cometTestTeardown } from './setup.js';
import { CometTestServer, type RecordedRequest } from './server.js';

let server: CometTestServer;
let offline: string;
let warnings: string[];
beforeEach(async () => {
  ({ server, offline, warnings } = await cometTestSetup('comet-offline-', { heartbeatMs: 300 }));
});
afterEach(async () => {
  await cometTestTeardown(server);
});

const path = (r: RecordedRequest) => `${r.method} ${r.path.replace('/api/rest/v2/write/experiment/', '')}`;

describe('online protocol', () => {
  it('the standard script: create, created-from, heartbeat, params, metrics with step/epoch, other, end time', async () => {
    const t = new CometMLTracker({ run_name: 'proj', workspace: 'team', experiment_name: 'exp-1' });
    await t.start();
    const key = t.tracker.experimentKey!;
    await t.storeInitConfiguration({ lr: 0.01, layers: 4, amp: true, warmup: null, sizes: [1, 2] });
    t.log({ loss: 0.5, note: 'hello', flag: false }, 3, { epoch: 1 });
    t.log({ loss: { train: 0.4, eval: 0.6 } }, 4);
    await t.finish();

    // (periodic heartbeats may interleave: only the first set-status is part of the fixed order)
    const stream = server.requests.filter((r, i) => !r.path.endsWith('set-status') || i === 1).map(path);
    expect(stream).toEqual([
      'POST create', 'GET set-status', 'POST log-other',
      'POST parameter', 'POST parameter', 'POST parameter', 'POST parameter', 'POST parameter',
      'POST metric', 'POST log-other', 'POST metric', 'POST metric', 'POST metric',
      'POST set-start-end-time',
    ]);
    expect(server.requests[0]!.body).toEqual({ workspaceName: 'team', projectName: 'proj', experimentName: 'exp-1' });
    for (const r of server.requests) {
      expect(r.headers.authorization).toBe(server.apiKey);
      if (r !== server.requests[0]) expect(r.method === 'GET' ? r.query.experimentKey : (r.body as { experimentKey: string }).experimentKey).toBe(key);
    }
    const e = server.experiment(key)!;
    expect(e.others['Created from']!.value).toBe('trackspec');
    expect(e.others.note!.value).toBe('hello');
    expect(Object.fromEntries(Object.entries(e.parameters).map(([k, p]) => [k, p.value]))).toEqual({ lr: 0.01, layers: 4, amp: true, warmup: 'None', sizes: '[1,2]' });
    expect(e.metrics.map((m) => [m.name, m.value, m.step, m.epoch])).toEqual([
      ['loss', 0.5, 3, 1], ['flag', 0, 3, 1], ['train', 0.4, 4, null], ['eval', 0.6, 4, null],
    ]);
    expect(e.metrics.every((m) => m.timestamp > 1.7e12)).toBe(true);
    expect(e.endTimeMillis!).toBeGreaterThanOrEqual(e.startTimeMillis!);
    expect(e.writesAfterEnd).toBe(false);
  });

  it('heartbeats at the interval the server returns while running, none after finish', async () => {
    const t = new CometMLTracker({ run_name: 'p' });
    await t.start();
    await new Promise((r) => setTimeout(r, 1000));
    const key = t.tracker.experimentKey!;
    expect(server.experiment(key)!.heartbeats.length).toBeGreaterThanOrEqual(3);
    await t.finish();
    const n = server.experiment(key)!.heartbeats.length;
    await new Promise((r) => setTimeout(r, 700));
    expect(server.experiment(key)!.heartbeats.length).toBe(n);
  });

  it('prefix_nested_metrics keeps the outer key', async () => {
    const t = new CometMLTracker({ run_name: 'p', prefix_nested_metrics: true });
    await t.start();
    t.log({ loss: { train: 1, eval: 2 } }, 1);
    await t.finish();
    expect(server.experiment(t.tracker.experimentKey!)!.metrics.map((m) => m.name)).toEqual(['loss/train', 'loss/eval']);
  });

  it('experiment_key appends to an existing experiment (no create)', async () => {
    const a = new CometMLTracker({ run_name: 'p' });
    await a.start();
    await a.finish();
    const key = a.tracker.experimentKey!;
    const creates = server.requests.filter((r) => r.path.endsWith('/create')).length;
    vi.stubEnv('COMET_EXPERIMENT_KEY', key);
    const b = new CometMLTracker({ run_name: 'p' });
    await b.start();
    b.log({ x: 1 }, 9);
    await b.finish();
    expect(server.requests.filter((r) => r.path.endsWith('/create')).length).toBe(creates);
    expect(server.experiment(key)!.metrics.map((m) => m.step)).toEqual([9]);
  });
});

describe('configuration', () => {
  it('a missing API key is a ConfigError naming COMET_API_KEY and .comet.config', async () => {
    vi.stubEnv('COMET_API_KEY', undefined);
    const err = (await new CometMLTracker({ run_name: 'p' }).start().catch((e: unknown) => e)) as ConfigError;
    expect(err).toBeInstanceOf(ConfigError);
    expect(err.message).toContain('COMET_API_KEY');
    expect(err.message).toContain('.comet.config');
  });

  it('.comet.config in the home directory supplies the key and workspace; the environment wins over it', async () => {
    vi.stubEnv('COMET_API_KEY', undefined);
    const home = tempDir('home-');
    vi.stubEnv('HOME', home);
    writeFileSync(join(home, '.comet.config'), `[comet]\napi_key = ${server.apiKey}\nworkspace = from-file\n`);
    const t = new CometMLTracker({ run_name: 'p' });
    await t.start();
    await t.finish();
    expect(server.experiment(t.tracker.experimentKey!)!.workspaceName).toBe('from-file');
    vi.stubEnv('COMET_WORKSPACE', 'from-env');
    const u = new CometMLTracker({ run_name: 'p' });
    await u.start();
    await u.finish();
    expect(server.experiment(u.tracker.experimentKey!)!.workspaceName).toBe('from-env');
  });

  it('COMET_URL_OVERRIDE is taken like Comet clients take it', () => {
    expect(restBase('http://127.0.0.1:8080/clientlib/')).toBe('http://127.0.0.1:8080/api/rest/v2');
    expect(restBase('http://h:1/clientlib')).toBe('http://h:1/api/rest/v2');
    expect(restBase('https://www.comet.com/')).toBe('https://www.comet.com/api/rest/v2');
  });

  it('the API key never appears in errors', async () => {
    vi.stubEnv('COMET_API_KEY', 'wrong-SECRET-key');
    const err = (await new CometMLTracker({ run_name: 'p' }).start().catch((e: unknown) => e)) as BackendError;
    expect(err).toBeInstanceOf(BackendError);
    expect(err.status).toBe(401);
    expect(`${err.message} ${String(err.cause)}`).not.toContain('SECRET');
  });
});

describe('rate limits and faults: nothing dropped', () => {
  it('the client paces itself under a per-window limit', async () => {
    let now = 0;
    const sleeps: number[] = [];
    const rl = new RateLimiter({ limit: 3, windowMs: 1000, now: () => now, sleep: async (ms) => { sleeps.push(ms); now += ms; } });
    const times: number[] = [];
    for (let i = 0; i < 7; i++) {
      await rl.take();
      times.push(now);
    }
    expect(times).toEqual([0, 0, 0, 1000, 1000, 1000, 2000]);
    for (let i = 0; i < times.length; i++) expect(times.filter((t) => t > times[i]! - 1000 && t <= times[i]!).length).toBeLessThanOrEqual(3);
  });

  it('429 bursts (server limit below the client pace) are retried after Retry-After', async () => {
    await server.close();
    server = await CometTestServer.start({ limits: { metric: 40 }, windowMs: 500 });
    vi.stubEnv('COMET_URL_OVERRIDE', server.clientlibUrl);
    const t = new CometMLTracker({ run_name: 'p' });
    await t.start();
    for (let i = 0; i < 40; i++) t.log({ a: i, b: i }, i);
    await t.finish();
    const e = server.experiment(t.tracker.experimentKey!)!;
    expect(server.requests.some((r) => r.status === 429)).toBe(true);
    expect(e.metrics).toHaveLength(80);
    expect(new Set(e.metrics.map((m) => `${m.name}@${m.step}`)).size).toBe(80);
  }, 20_000);

  it.each([
    ['500 ×3', { kind: 'status', status: 500, path: '/metric', times: 3 }],
    ['connection refused ×2', { kind: 'refuse', path: '/metric', times: 2 }],
    ['slow', { kind: 'delay', ms: 200, path: '/metric', times: 3 }],
  ] as const)('%s', async (_n, fault) => {
    const t = new CometMLTracker({ run_name: 'p' });
    await t.start();
    server.inject({ ...fault });
    for (let i = 0; i < 30; i++) t.log({ m: i }, i);
    await t.finish();
    const e = server.experiment(t.tracker.experimentKey!)!;
    expect(e.metrics.map((m) => m.step!).sort((a, b) => a - b)).toEqual(Array.from({ length: 30 }, (_, i) => i));
  });

  it('server restart mid-run', async () => {
    const t = new CometMLTracker({ run_name: 'p', retry_deadline_secs: 20 });
    await t.start();
    for (let i = 0; i < 20; i++) t.log({ m: i }, i);
    await t.flush();
    await server.stop();
    for (let i = 20; i < 40; i++) t.log({ m: i }, i);
    await new Promise((r) => setTimeout(r, 300));
    await server.restart();
    await t.finish();
    const e = server.experiment(t.tracker.experimentKey!)!;
    expect(e.metrics.map((m) => m.step!).sort((a, b) => a - b)).toEqual(Array.from({ length: 40 }, (_, i) => i));
    expect(e.endTimeMillis).not.toBeNull();
  }, 30_000);
});

describe('offline spool and sync', () => {
  it('online: false writes a durable spool; trackspec sync creates the experiment and uploads exactly once', async () => {
    const t = new CometMLTracker({ run_name: 'offline-proj', workspace: 'team', experiment_name: 'e', online: false, offline_directory: offline });
    await t.start();
    await t.storeInitConfiguration({ lr: 0.1 });
    for (let i = 0; i < 25; i++) t.log({ loss: 1 / (i + 1), tag: i === 0 ? 'first' : 'later' }, i);
    await t.finish();
    expect(server.requests).toHaveLength(0);
    expect(readdirSync(join(offline, 'comet_ml')).some((f) => f.endsWith('.spool'))).toBe(true);

    const lines: string[] = [];
    const summary = await syncAll(offline, { out: (l) => lines.push(l) });
    expect(summary).toMatchObject({ spools: 1, failed: [] });
    const [exp] = server.experiments();
    expect(exp).toMatchObject({ workspaceName: 'team', projectName: 'offline-proj', experimentName: 'e' });
    expect(exp!.metrics.map((m) => m.step)).toEqual(Array.from({ length: 25 }, (_, i) => i));
    expect(exp!.parameters.lr!.value).toBe(0.1);
    expect(exp!.others.tag!.value).toBe('later');
    expect(exp!.endTimeMillis).not.toBeNull();
    expect((await syncAll(offline, { out: () => undefined })).spools).toBe(0);
    expect(server.experiments()).toHaveLength(1);
  });

  it('a server unreachable at start falls back to offline with a warning', async () => {
    await server.stop();
    const t = new CometMLTracker({ run_name: 'p', offline_directory: offline, retry_deadline_secs: 0.3 });
    await t.start();
    t.log({ a: 1 }, 1);
    await t.finish();
    expect(warnings.some((w) => w.includes('unreachable') && w.includes('trackspec sync'))).toBe(true);
    await server.restart();
    await syncAll(offline, { out: () => undefined });
    expect(server.experiments()[0]!.metrics).toHaveLength(1);
  }, 20_000);

  it('works through Tracking with project_name → Comet project', async () => {
    const tr = new Tracking({ log_with: 'comet_ml' });
    await tr.initTrackers('via-tracking', { a: 1 });
    tr.log({ loss: 1 }, 0);
    await tr.endTraining();
    expect(server.experiments()[0]!.projectName).toBe('via-tracking');
  });
});

// Where trackspec's Comet requests follow Comet's own clients (issue 17, "Fix"): requests in flight,
// heartbeats until the last request and re-read intervals, start time only for a created
// experiment, one limit bucket per documented data type, the create response's link.
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { CometMLTracker } from '../../../generated/index.gen.js';
import { COMET_LIMITS, connect, PIPELINE } from '../../../runtime/backends/comet_ml/index.js';
import { cometTestSetup, cometTestTeardown } from './setup.js';
import { CometTestServer } from './server.js';

let server: CometTestServer;
beforeEach(async () => {
  let offline: string;
  ({ server, offline } = await cometTestSetup('comet-offline-', { heartbeatMs: 300 }));
  vi.stubEnv('COMET_OFFLINE_DIRECTORY', offline);
});
afterEach(async () => {
  await cometTestTeardown(server);
});

describe('requests in flight', () => {
  it(`keeps up to ${PIPELINE.inFlight} requests in flight against a slow server, and delivers every metric once`, async () => {
    const t = new CometMLTracker({ run_name: 'p' });
    await t.start();
    server.inject({ kind: 'delay', ms: 150, path: '/metric', times: Infinity });
    server.resetConcurrency();
    for (let i = 0; i < 60; i++) t.log({ a: i, b: -i }, i);
    await t.finish();
    expect(server.maxConcurrent).toBeGreaterThanOrEqual(PIPELINE.inFlight);
    const e = server.experiment(t.tracker.experimentKey!)!;
    expect(e.metrics.filter((m) => m.name === 'a').map((m) => m.step!).sort((x, y) => x - y)).toEqual(Array.from({ length: 60 }, (_, i) => i));
    expect(e.metrics).toHaveLength(120);
  });

  it('keeps order where the server keeps the last value or has no step: parameters, log-other keys, step-less metrics; the end time comes last', async () => {
    const t = new CometMLTracker({ run_name: 'p' });
    await t.start();
    server.inject({ kind: 'delay', ms: 30, times: Infinity });
    for (let i = 0; i < 8; i++) t.log({ phase: `p${i}`, loss: i });
    await t.finish();
    const key = t.tracker.experimentKey!;
    const e = server.experiment(key)!;
    expect(e.others.phase!.value).toBe('p7');
    expect(e.metrics.map((m) => m.value)).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
    expect(e.writesAfterEnd).toBe(false);
    const writes = server.requests.filter((r) => r.method === 'POST' && r.query.experimentKey === undefined && (r.body as { experimentKey?: string }).experimentKey === key);
    expect(writes.at(-1)!.path).toMatch(/set-start-end-time$/);
  });
});

describe('heartbeats', () => {
  it('go on while finish() drains a slow queue, and stop after the last request', async () => {
    server.heartbeatMs = 80;
    const t = new CometMLTracker({ run_name: 'p' });
    await t.start();
    const key = t.tracker.experimentKey!;
    server.inject({ kind: 'delay', ms: 250, path: '/metric', times: Infinity });
    for (let i = 0; i < 5; i++) t.log({ loss: i }); // step-less: one at a time, ~1.25 s
    const before = server.experiment(key)!.heartbeats.length;
    await t.finish();
    const during = server.experiment(key)!.heartbeats.length - before;
    expect(during).toBeGreaterThanOrEqual(4);
    const after = server.experiment(key)!.heartbeats.length;
    await new Promise((r) => setTimeout(r, 300));
    expect(server.experiment(key)!.heartbeats.length).toBe(after);
    expect(server.experiment(key)!.metrics).toHaveLength(5);
  });

  it('follow the interval of every set-status response', async () => {
    const t = new CometMLTracker({ run_name: 'p' });
    await t.start(); // first interval 300 ms
    server.heartbeatMs = 40;
    const key = t.tracker.experimentKey!;
    await new Promise((r) => setTimeout(r, 1300));
    const n = server.experiment(key)!.heartbeats.length;
    await t.finish();
    // at a fixed 300 ms interval this would be 1 + 4; re-read it is 1 + (1300 - 300) / 40 ≈ 26
    expect(n).toBeGreaterThanOrEqual(12);
  });
});

describe('start and end time', () => {
  it('a created experiment gets its start and end time; appending (experiment_key) keeps the original start time', async () => {
    const a = new CometMLTracker({ run_name: 'p' });
    await a.start();
    await a.finish();
    const key = a.tracker.experimentKey!;
    const first = server.experiment(key)!;
    expect(first.startTimeMillis).not.toBeNull();
    await new Promise((r) => setTimeout(r, 20));
    const b = new CometMLTracker({ run_name: 'p', experiment_key: key });
    await b.start();
    b.log({ x: 1 }, 2);
    await b.finish();
    const e = server.experiment(key)!;
    expect(e.startTimeMillis).toBe(first.startTimeMillis);
    expect(e.endTimeMillis!).toBeGreaterThan(first.endTimeMillis!);
    const posts = server.requests.filter((r) => r.path.endsWith('/set-start-end-time')).map((r) => Object.keys(r.body as object).sort());
    expect(posts).toEqual([['endTimeMillis', 'experimentKey', 'startTimeMillis'], ['endTimeMillis', 'experimentKey']]);
  });
});

describe('limits and create', () => {
  it('one limit bucket per documented data type: metrics, parameters, output, everything else', async () => {
    expect(COMET_LIMITS).toEqual({ metric: 12_000, parameter: 10_000, output: 12_000, other: 8_000 });
    const conn = connect(server.apiUrl, server.apiKey);
    expect(Object.fromEntries(Object.entries(conn.limiters).map(([k, l]) => [k, l.limit]))).toEqual(COMET_LIMITS);
    expect(new Set(Object.values(conn.limiters)).size).toBe(4);
    await conn.http.close();
  });

  it('sends workspaceName/projectName on create, keeps the link and prints it at start()', async () => {
    const lines: string[] = [];
    const spy = vi.spyOn(process.stderr, 'write').mockImplementation((chunk: string | Uint8Array) => {
      lines.push(String(chunk));
      return true;
    });
    try {
      const t = new CometMLTracker({ run_name: 'proj', workspace: 'ws' });
      await t.start();
      await t.finish();
      const create = server.requests.find((r) => r.path.endsWith('/create'))!;
      expect(create.body).toMatchObject({ workspaceName: 'ws', projectName: 'proj' });
      const link = `${server.url}/ws/proj/${t.tracker.experimentKey}`;
      expect(t.tracker.link).toBe(link);
      expect(lines.join('')).toContain(link);
      const metric = server.requests.find((r) => r.path.endsWith('/metric'));
      expect(metric).toBeUndefined();
    } finally {
      spy.mockRestore();
    }
  });

  it('metric values are JSON numbers', async () => {
    const t = new CometMLTracker({ run_name: 'p' });
    await t.start();
    t.log({ x: 0.25 }, 1);
    await t.finish();
    const m = server.requests.find((r) => r.path.endsWith('/metric'))!;
    expect(typeof (m.body as { metricValue: unknown }).metricValue).toBe('number');
  });
});

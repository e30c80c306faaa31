// W&B online backend against W&B's own client (wandb-core v0.28.2, issue 15): request size caps and
// permanent refusals, Retry-After and the retryable status set, the summary at one fixed offset,
// resume/reuse, `_wandb.t`, proxies and ~/.netrc, and the smaller items. Each runs against the local
// test server, which enforces upstream's rules (test/backends/wandb/server.ts).
import { createServer, request as httpRequest, type Server } from 'node:http';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { BackendError, ConfigError, WandBTracker } from '../../../generated/index.gen.js';
import { syncAll } from '../../../runtime/backends/sync.js';
import { parseNetrc } from '../../../runtime/backends/wandb/netrc.js';
import { proxyFor } from '../../../runtime/io/http.js';
import { tempDir } from '../../support/helpers.js';
import { WandbTestServer } from './server.js';
import { runDyingChild, wandbTestSetup, wandbTestTeardown } from './setup.js';

let server: WandbTestServer;
let dir: string;
let warnings: string[];
beforeEach(async () => {
  ({ server, dir, warnings } = await wandbTestSetup('wandb-up-'));
});
afterEach(async () => {
  await wandbTestTeardown(server);
});

const serverPort = (): string => new URL(server.url).port;
const streamPosts = () => server.requests.filter((r) => r.path.endsWith('/file_stream') && r.status === 200);

describe('1. request size and permanent refusals', () => {
  it('a 413 stops streaming, keeps every row in the .wandb file, the run is not completed; trackspec sync uploads it all', async () => {
    const t = new WandBTracker({ run_name: 'p', flush_interval_secs: 0.05, dir });
    await t.start();
    for (let i = 0; i < 20; i++) t.log({ i }, i);
    await t.flush();
    server.inject({ kind: 'status', status: 413, path: 'file_stream', times: 1 });
    for (let i = 20; i < 60; i++) t.log({ i }, i);
    await t.flush().catch(() => undefined);
    for (let i = 60; i < 80; i++) t.log({ i }, i);
    const err = (await t.finish().catch((e: unknown) => e)) as BackendError;
    expect(err).toBeInstanceOf(BackendError);
    expect(err.message).toMatch(/refused a post for good .*HTTP 413.*not marked complete.*trackspec sync/);
    expect(warnings.some((w) => w.includes('streaming stopped'))).toBe(true);
    let run = server.run(t.tracker.entity, 'p', t.tracker.runId)!;
    expect(run.complete).toBe(false);
    expect(run.history).toHaveLength(19); // row 19 was still pending (its step can take more values)
    const summary = await syncAll(dir, { out: () => undefined });
    expect(summary.failed).toEqual([]);
    run = server.run(t.tracker.entity, 'p', t.tracker.runId)!;
    expect(run.problems).toEqual([]);
    expect(run.history.map((h) => h.row.i)).toEqual(Array.from({ length: 80 }, (_, i) => i));
    expect(run.complete).toBe(true);
  }, 30_000);

  it('rows are split over posts of at most about 10 MiB (one 12 MB batch is not refused)', async () => {
    const t = new WandBTracker({ run_name: 'p', flush_interval_secs: 60, dir });
    await t.start();
    const big = 'z'.repeat(999_000);
    for (let i = 0; i < 12; i++) t.log({ i, big }, i);
    await t.finish();
    const run = server.run(t.tracker.entity, 'p', t.tracker.runId)!;
    expect(run.problems).toEqual([]);
    expect(run.history.map((h) => h.row.i)).toEqual(Array.from({ length: 12 }, (_, i) => i));
    expect(run.complete).toBe(true);
    expect(server.requests.filter((r) => r.status === 413)).toHaveLength(0);
    expect(streamPosts().filter((r) => (r.body as { files?: object }).files).length).toBeGreaterThanOrEqual(2);
  }, 30_000);

  it('a row over the line limit is skipped with a warning; the step advances, offsets stay contiguous', async () => {
    const t = new WandBTracker({ run_name: 'p', dir });
    await t.start();
    t.log({ a: 1 });
    const huge: Record<string, string> = {};
    for (let k = 0; k < 11; k++) huge[`s${k}`] = 'q'.repeat(999_999);
    t.log(huge);
    t.log({ a: 3 });
    await t.finish();
    const run = server.run(t.tracker.entity, 'p', t.tracker.runId)!;
    expect(run.problems).toEqual([]);
    expect(run.history.map((h) => [h.offset, h.row._step, h.row.a])).toEqual([[0, 0, 1], [1, 2, 3]]);
    expect(warnings.some((w) => /row at step 1 is \d+ bytes as JSON, over W&B's line limit/.test(w))).toBe(true);
    expect(run.complete).toBe(true);
  }, 30_000);
});

describe('2. Retry-After and the retryable statuses', () => {
  it('a 429 with Retry-After longer than the retry deadline is waited out; the run stays online', async () => {
    const t = new WandBTracker({ run_name: 'p', flush_interval_secs: 0.05, retry_deadline_secs: 0.5, dir });
    await t.start();
    server.inject({ kind: 'status', status: 429, retryAfter: '2', path: 'file_stream', times: 1 });
    for (let i = 0; i < 10; i++) t.log({ i }, i);
    await t.finish();
    expect(t.tracker.mode).toBe('online');
    expect(warnings.filter((w) => w.includes('unreachable'))).toEqual([]);
    const run = server.run(t.tracker.entity, 'p', t.tracker.runId)!;
    expect(run.history.map((h) => h.row.i)).toEqual(Array.from({ length: 10 }, (_, i) => i));
    expect(run).toMatchObject({ complete: true, problems: [] });
    const at = server.requests.filter((r) => r.path.endsWith('/file_stream')).map((r) => r.at);
    expect(at[1]! - at[0]!).toBeGreaterThanOrEqual(1900); // the full Retry-After
  }, 30_000);

  it('408 on file_stream and 409 on UpsertBucket are retried, as upstream', async () => {
    server.inject({ kind: 'status', status: 409, path: /graphql$/, times: 1 });
    const t = new WandBTracker({ run_name: 'p', entity: 'test-entity', flush_interval_secs: 0.05, dir });
    await t.start();
    expect(server.requests.slice(0, 2).map((r) => [r.operation, r.status])).toEqual([['UpsertBucket', 409], ['UpsertBucket', 200]]);
    server.inject({ kind: 'status', status: 408, path: 'file_stream', times: 1 });
    for (let i = 0; i < 5; i++) t.log({ i }, i);
    await t.finish();
    const run = server.run('test-entity', 'p', t.tracker.runId)!;
    expect(run.history.map((h) => h.row.i)).toEqual([0, 1, 2, 3, 4]);
    expect(run.complete).toBe(true);
  }, 30_000);

  it('a non-2xx GraphQL answer is reported with its errors[].message; 403 is not retried', async () => {
    server.inject({ kind: 'status', status: 403, path: /graphql$/, times: 1 });
    const err = (await new WandBTracker({ run_name: 'p', dir }).start().catch((e: unknown) => e)) as BackendError;
    expect(err.message).toMatch(/Viewer failed: HTTP 403 Injected fault: HTTP 403/);
    expect(server.requests).toHaveLength(1);
  });
});

describe('3-6. summary offset, resume and reuse', () => {
  it('the summary is one line at offset 0 in every post, so a resumed run shows the new summary', async () => {
    const t1 = new WandBTracker({ run_name: 'p', id: 'sum1', flush_interval_secs: 0.05, dir });
    await t1.start();
    for (let i = 0; i < 3; i++) {
      t1.log({ loss: i, first: 'yes' }, i);
      t1.log({}, i + 1);
      await t1.flush();
    }
    await t1.finish();
    const t2 = new WandBTracker({ run_name: 'p', id: 'sum1', resume: 'allow', flush_interval_secs: 0.05, dir });
    await t2.start();
    t2.log({ loss: 100 });
    await t2.finish();
    const offsets = streamPosts().flatMap((r) => {
      const f = (r.body as { files?: Record<string, { offset: number }> }).files?.['wandb-summary.json'];
      return f ? [f.offset] : [];
    });
    expect(offsets.length).toBeGreaterThanOrEqual(4);
    expect(new Set(offsets)).toEqual(new Set([0]));
    const run = server.run('test-entity', 'p', 'sum1')!;
    expect(run.summary).toMatchObject({ loss: 100, first: 'yes', _step: 3 }); // session 1's keys restored
    expect(run.problems).toEqual([]);
  });

  it('resume merges the config, restores the summary and continues _runtime; the first step is summary _step + 1', async () => {
    server.seedRun('test-entity', 'p', 'res1', 4, { a: 1, b: 2 });
    const t = new WandBTracker({ run_name: 'p', id: 'res1', resume: 'must', config: { b: 3 }, dir });
    await t.start();
    t.log({ v: 1 });
    await t.finish();
    const run = server.run('test-entity', 'p', 'res1')!;
    expect(run.config).toMatchObject({ a: { value: 1 }, b: { value: 3 } });
    expect(run.history.slice(4).map((h) => [h.offset, h.row._step, h.row.v])).toEqual([[4, 4, 1]]);
    expect(run.history[4]!.row._runtime as number).toBeGreaterThanOrEqual(3); // seeded run: _runtime 3
    expect(run.summary).toMatchObject({ loss: 0.25, v: 1, _step: 4 });
    expect((run.summary!._runtime as number)).toBeGreaterThanOrEqual(3);
  });

  it('reusing a run id without resume appends after historyLineCount instead of overwriting line 0', async () => {
    server.seedRun('test-entity', 'p', 'reuse1', 5);
    const t = new WandBTracker({ run_name: 'p', id: 'reuse1', dir });
    await t.start();
    for (let i = 0; i < 3; i++) t.log({ n: i });
    await t.finish();
    const run = server.run('test-entity', 'p', 'reuse1')!;
    expect(run.history.map((h) => h.offset)).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
    expect(run.history.slice(0, 5).map((h) => h.row.loss)).toEqual([1, 1 / 2, 1 / 3, 1 / 4, 1 / 5]);
    expect(run.history.slice(5).map((h) => h.row.n)).toEqual([0, 1, 2]);
  });

  it('the config carries _wandb.t, so W&B counts the run as started; a run without it is not resumable with "must"', async () => {
    const t = new WandBTracker({ run_name: 'p', id: 'tt1', config: { x: NaN }, dir });
    await t.start();
    await t.finish();
    const cfg = server.run('test-entity', 'p', 'tt1')!.config as Record<string, { value: unknown }>;
    expect(cfg._wandb!.value).toMatchObject({ t: {} });
    expect(cfg.x!.value).toBeNaN();
    const again = new WandBTracker({ run_name: 'p', id: 'tt1', resume: 'must', dir });
    await again.start();
    await again.finish();
    server.seedRun('test-entity', 'p', 'bare', 2, {}, { started: false });
    await expect(new WandBTracker({ run_name: 'p', id: 'bare', resume: 'must', dir }).start()).rejects.toThrow(/no W&B client started it/);
  });
});

describe('7. environment: proxies and ~/.netrc', () => {
  it('reads the API key from $NETRC for the base URL host:port', async () => {
    vi.stubEnv('WANDB_API_KEY', undefined);
    const netrc = join(tempDir(), 'netrc');
    writeFileSync(netrc, `machine api.wandb.ai\n  login user\n  password wrong-key-000000\nmachine 127.0.0.1:${serverPort()}\n  login user\n  password ${server.apiKey}\n`);
    vi.stubEnv('NETRC', netrc);
    const t = new WandBTracker({ run_name: 'p', dir });
    await t.start();
    await t.finish();
    expect(server.run(t.tracker.entity, 'p', t.tracker.runId)!.complete).toBe(true);
    expect(parseNetrc('default login a password dflt\nmacdef init\n  x y\n\nmachine h password "p w"').get('h')).toBe('p w');
  });

  it('HTTP_PROXY is used (absolute-form requests through the proxy); NO_PROXY and loopback are not proxied', async () => {
    const seen: string[] = [];
    const proxy: Server = createServer((req, res) => {
      seen.push(`${req.method} ${req.url}`);
      const target = new URL(req.url!);
      const up = httpRequest({ host: '127.0.0.1', port: serverPort(), path: target.pathname + target.search, method: req.method, headers: req.headers }, (r) => {
        res.writeHead(r.statusCode!, r.headers);
        r.pipe(res);
      });
      req.pipe(up);
    });
    await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', r));
    const port = (proxy.address() as { port: number }).port;
    try {
      vi.stubEnv('HTTP_PROXY', `http://127.0.0.1:${port}`);
      vi.stubEnv('WANDB_BASE_URL', `http://wandb.invalid:${serverPort()}`);
      const t = new WandBTracker({ run_name: 'p', dir });
      await t.start();
      t.log({ a: 1 });
      await t.finish();
      expect(seen).toContain(`POST http://wandb.invalid:${serverPort()}/graphql`);
      expect(seen.some((s) => s.endsWith('/file_stream'))).toBe(true);
      expect(server.run(t.tracker.entity, 'p', t.tracker.runId)!.complete).toBe(true);
    } finally {
      proxy.close();
    }
    const env = { HTTP_PROXY: 'http://proxy:3128', HTTPS_PROXY: 'http://sproxy:3128', NO_PROXY: '.corp.example,other:8080' };
    expect(proxyFor(new URL('http://api.example.com'), env)).toBe('http://proxy:3128');
    expect(proxyFor(new URL('https://api.example.com'), env)).toBe('http://sproxy:3128');
    expect(proxyFor(new URL('https://a.corp.example'), env)).toBeUndefined();
    expect(proxyFor(new URL('http://other:8080'), env)).toBeUndefined();
    expect(proxyFor(new URL('http://other:9090'), env)).toBe('http://proxy:3128');
    expect(proxyFor(new URL('http://127.0.0.1:9090'), env)).toBeUndefined();
  });
});

describe('8. smaller items', () => {
  it('log({}) advances the step without a row; nested summary values are merged leaf by leaf; User-Agent is sent', async () => {
    const t = new WandBTracker({ run_name: 'p', dir });
    await t.start();
    t.log({ m: { a: 1, b: 2 } });
    t.log({});
    t.log({ m: { b: 3 } });
    await t.finish();
    const run = server.run(t.tracker.entity, 'p', t.tracker.runId)!;
    expect(run.history.map((h) => [h.offset, h.row._step])).toEqual([[0, 0], [1, 2]]);
    expect(run.summary).toMatchObject({ m: { a: 1, b: 3 }, _step: 2 });
    // every API request (the PUTs of run files go to presigned upload URLs)
    expect(server.requests.filter((r) => !r.path.startsWith('/upload/')).every((r) => /^trackspec\/\S+ \(wandb\)$/.test(String(r.headers['user-agent'])))).toBe(true);
  });

  it.each([
    [{ id: "a;b'" }, /run id "a;b'": it cannot contain any of : ; , # \? \/ ' \(found ; '\)/],
    [{ id: ' x' }, /whitespace/],
    [{ tags: ['ok', 'x'.repeat(65)] }, /tag 1 .* is 65 characters; W&B tags must be 1 to 64 characters/],
    [{ tags: [''] }, /tag 0 .* is 0 characters/],
    [{ run_name: 'a:b' }, /invalid project name "a:b"/],
    [{ run_name: 'p'.repeat(129) }, /longer than 128 characters/],
  ])('bad names are refused before any request: %j', async (opts, message) => {
    const err = (await new WandBTracker({ run_name: 'p', dir, ...opts }).start().catch((e: unknown) => e)) as ConfigError;
    expect(err).toBeInstanceOf(ConfigError);
    expect(err.message).toMatch(message);
    expect(server.requests).toHaveLength(0);
  });

  it.each([
    ['process.exit(3)', 'setTimeout(() => process.exit(3), 10);', 3],
    ['SIGTERM', "setTimeout(() => process.kill(process.pid, 'SIGTERM'), 10);", 255],
  ])('exit codes as upstream: %s', async (_n, ending, code) => {
    const { entity, runId } = await runDyingChild(dir, `for (let i = 0; i < 5; i++) t.log({ i }, i);
${ending}
setTimeout(() => undefined, 5000);`);
    expect(server.run(entity, 'dying', runId)).toMatchObject({ complete: true, exitcode: code });
  }, 30_000);
});

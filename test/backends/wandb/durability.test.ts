// Issue 13.4 for W&B online runs: write-ahead under SIGKILL, and the in-memory cap spilling to disk.
import { once } from 'node:events';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { WandBTracker } from '../../../generated/index.gen.js';
import { QUEUE_LIMITS } from '../../../runtime/backends/wandb/index.js';
import { findOfflineRuns, readWandbFile } from '../../../runtime/backends/wandb/offline.js';
import { syncAll } from '../../../runtime/backends/sync.js';
import { Spool, listSpools } from '../../../runtime/io/spool.js';
import { ROOT } from '../../support/helpers.js';
import { WandbTestServer } from './server.js';
import { wandbTestSetup, wandbTestTeardown } from './setup.js';
import { lastStepAtOrBefore, metricsLoop, startLoggingChild } from '../../support/logging-child.js';

let server: WandbTestServer;
let dir: string;
let warnings: string[];
beforeEach(async () => {
  ({ server, dir, warnings } = await wandbTestSetup('wandb-wal-'));
});
afterEach(async () => {
  await wandbTestTeardown(server);
});

describe('write-ahead: SIGKILL loses at most the last flush interval (issue 13.4)', () => {
  it('a child SIGKILLed mid-run with the server down: sync uploads every row logged before the last interval, once, at its offset', async () => {
    const interval = 0.4;
    const child = await startLoggingChild(
      `import { WandBTracker } from ${JSON.stringify(join(ROOT, 'generated', 'index.gen.ts'))};
const t = new WandBTracker({ run_name: 'killed', dir: ${JSON.stringify(dir)}, flush_interval_secs: ${interval} });
await t.start();
process.stdout.write('run ' + t.tracker.entity + ' ' + t.tracker.runId + '\\n');
${metricsLoop(20, true)}
`,
      { ready: /^run (\S+) (\S+)$/m, env: { ...process.env, WANDB_API_KEY: server.apiKey, WANDB_BASE_URL: server.url } },
    );
    const [entity, runId] = child.ready as [string, string];
    for (let i = 0; i < 100 && !server.run(entity, 'killed', runId)!.history.length; i++) await new Promise((r) => setTimeout(r, 50));
    expect(server.run(entity, 'killed', runId)!.history.length).toBeGreaterThan(0); // the first rows were posted
    await server.stop();
    child.go();
    await new Promise((r) => setTimeout(r, 2500));
    const { killedAt, logged, stderr } = await child.kill();
    expect(logged.length, stderr).toBeGreaterThan(50);
    const mustHave = lastStepAtOrBefore(logged, killedAt - interval * 1000 - 250);
    const lastLogged = logged.at(-1)!.step;
    expect(mustHave).toBeGreaterThan(1000);

    await server.restart();
    const summary = await syncAll(dir, { out: () => undefined });
    expect(summary.failed).toEqual([]);
    const run = server.run(entity, 'killed', runId)!;
    expect(run.problems).toEqual([]); // no gap, no line rewritten with other content
    const steps = run.history.map((h) => h.row._step as number);
    expect(run.history.map((h) => h.offset)).toEqual(steps.map((_, i) => i)); // one line per offset
    expect(steps).toEqual(steps.map((_, i) => i)); // each step once, in order
    expect(steps.length).toBeGreaterThan(mustHave);
    expect(steps.length).toBeLessThanOrEqual(lastLogged + 1);
    expect(run.history[mustHave]!.row).toMatchObject({ m0: mustHave, m9: mustHave + 0.9 });
    expect(run).toMatchObject({ complete: true, exitcode: 1 });
    expect((await syncAll(dir, { out: () => undefined })).spools).toBe(0);
  }, 60_000);

  it('a child SIGKILLed while its run files are still uploading: they are on disk and in the spool, and trackspec sync uploads them once', async () => {
    server.inject({ kind: 'status', path: '/upload/', status: 503, times: Infinity }); // every PUT fails for now
    const child = await startLoggingChild(
      `import { WandBTracker } from ${JSON.stringify(join(ROOT, 'generated', 'index.gen.ts'))};
const t = new WandBTracker({ run_name: 'media-killed', dir: ${JSON.stringify(dir)}, flush_interval_secs: 0.2 });
await t.start();
process.stdout.write('run ' + t.tracker.entity + ' ' + t.tracker.runId + '\\n');
process.stdin.once('data', () => {
  for (let s = 0; s < 5; s++) {
    const data = new Uint8Array(8 * 8 * 3).map((_, i) => (i * 7 + s * 31) & 255);
    t.logImages({ img: { data, width: 8, height: 8, channels: 3 } }, s);
    t.log({ loss: 1 / (s + 1) }, s);
  }
  t.log({ end: 1 }, 5);
  process.stdout.write('logged 4 ' + Date.now() + '\\n');
});
`,
      { ready: /^run (\S+) (\S+)$/m, env: { ...process.env, WANDB_API_KEY: server.apiKey, WANDB_BASE_URL: server.url } },
    );
    const [entity, runId] = child.ready as [string, string];
    child.go();
    // the rows reach the server; the uploads keep failing; a few write-ahead intervals pass
    for (let i = 0; i < 100 && server.run(entity, 'media-killed', runId)!.history.length < 5; i++) await new Promise((r) => setTimeout(r, 50));
    await new Promise((r) => setTimeout(r, 1000));
    const { logged, stderr } = await child.kill();
    expect(logged, stderr).toHaveLength(1);
    let run = server.run(entity, 'media-killed', runId)!;
    expect(run.history).toHaveLength(5);
    expect(run.files).toEqual({});
    expect(server.mediaProblems(entity, 'media-killed', runId).length).toBeGreaterThan(0); // images not there yet

    server.clearFaults();
    const summary = await syncAll(dir, { out: () => undefined });
    expect(summary.failed).toEqual([]);
    run = server.run(entity, 'media-killed', runId)!;
    expect(run.problems).toEqual([]);
    expect(server.mediaProblems(entity, 'media-killed', runId)).toEqual([]); // every image PUT, reported, sha256 equal
    expect(Object.keys(run.files)).toHaveLength(5);
    expect(run.history.map((h) => h.row._step)).toEqual([0, 1, 2, 3, 4]); // no row duplicated
    expect((await syncAll(dir, { out: () => undefined })).spools).toBe(0);
  }, 60_000);

  it("a spool whose files_dir leaves the folder is refused by sync, naming it; nothing outside is read", async () => {
    const s = await Spool.create(dir, { backend: 'wandb', target: server.url, created: 1, meta: { entity: 'test-entity', project: 'p', run_id: 'r1', files_dir: '../../etc' } });
    s.appendSync([{ u: 'passwd' }]);
    await s.close();
    server.seedRun('test-entity', 'p', 'r1', 0);
    const lines: string[] = [];
    const summary = await syncAll(dir, { out: (l) => lines.push(l) });
    expect(summary.failed).toHaveLength(1);
    expect(summary.failed[0]!.error).toMatch(/files_dir "\.\.\/\.\.\/etc" leaves its directory/);
    expect(server.requests.some((r) => r.operation === 'CreateRunFiles' || r.path.startsWith('/upload/'))).toBe(false);
  });

  it('with a healthy server the spool is removed at finish()', async () => {
    const t = new WandBTracker({ run_name: 'healthy', dir, flush_interval_secs: 0.05 });
    await t.start();
    for (let i = 0; i < 300; i++) {
      t.log({ a: i });
      if (i % 100 === 99) await new Promise((r) => setTimeout(r, 80));
    }
    await t.finish();
    const run = server.run(t.tracker.entity, 'healthy', t.tracker.runId)!;
    expect(run.history).toHaveLength(300);
    expect(run.problems).toEqual([]);
    expect(await listSpools(dir, 'wandb')).toEqual([]);
  });
});

describe('the in-memory cap spills to disk (issue 13.4)', () => {
  it('past the cap the run continues in the .wandb file, in offset order; nothing is dropped and sync completes it', async () => {
    const saved = QUEUE_LIMITS.maxPending;
    QUEUE_LIMITS.maxPending = 50;
    try {
      const t = new WandBTracker({ run_name: 'cap', dir, retry_deadline_secs: 30 });
      await t.start();
      await server.stop(); // the first post waits on the server; the queue fills up
      for (let i = 0; i <= 80; i++) t.log({ a: i }, i); // rows 0..79 committed, 80 pending
      const [file] = await findOfflineRuns(dir);
      expect(file).toBeDefined();
      const { records } = await readWandbFile(file!);
      expect(records.filter((r) => r.kind === 'history').map((r) => r.items!.a)).toEqual(Array.from({ length: 51 }, (_, i) => i)); // written at once, from the first unsent row
      expect(warnings.some((w) => w.includes('faster than the server') && w.includes('trackspec sync'))).toBe(true);
      await server.restart();
      await t.finish();
      const summary = await syncAll(dir, { out: () => undefined });
      expect(summary.failed).toEqual([]);
      const run = server.run(t.tracker.entity, 'cap', t.tracker.runId)!;
      expect(run.problems).toEqual([]);
      expect(run.history.map((h) => h.row.a)).toEqual(Array.from({ length: 81 }, (_, i) => i));
      expect(run).toMatchObject({ complete: true, exitcode: 0 });
    } finally {
      QUEUE_LIMITS.maxPending = saved;
    }
  }, 60_000);
});

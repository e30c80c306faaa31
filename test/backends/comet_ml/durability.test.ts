// Issue 13.4 for Comet: write-ahead under SIGKILL, and the in-memory cap spilling to the spool.
import { once } from 'node:events';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { BackendError, CometMLTracker } from '../../../generated/index.gen.js';
import { QUEUE_LIMITS } from '../../../runtime/backends/comet_ml/index.js';
import { syncAll } from '../../../runtime/backends/sync.js';
import { listSpools } from '../../../runtime/io/spool.js';
import { ROOT, tempDir } from '../../support/helpers.js';
import { cometTestSetup, cometTestTeardown } from './setup.js';
import { CometTestServer } from './server.js';
import { lastStepAtOrBefore, startLoggingChild } from '../../support/logging-child.js';

let server: CometTestServer;
let offline: string;
let warnings: string[];
beforeEach(async () => {
  ({ server, offline, warnings } = await cometTestSetup('comet-wal-'));
});
afterEach(async () => {
  await cometTestTeardown(server);
});

/** name@step → how many times the server stored it. */
function counts(key: string): Map<string, number> {
  const seen = new Map<string, number>();
  for (const m of server.experiment(key)!.metrics) seen.set(`${m.name}@${m.step}`, (seen.get(`${m.name}@${m.step}`) ?? 0) + 1);
  return seen;
}

describe('write-ahead: SIGKILL loses at most the last flush interval (issue 13.4)', () => {
  it('a child SIGKILLed mid-run with the server down: sync uploads everything logged before the last interval, exactly once', async () => {
    const interval = 0.4;
    const child = await startLoggingChild(
      `import { CometMLTracker } from ${JSON.stringify(join(ROOT, 'generated', 'index.gen.ts'))};
const t = new CometMLTracker({ run_name: 'killed', offline_directory: ${JSON.stringify(offline)}, flush_interval_secs: ${interval} });
await t.start();
process.stdout.write('key ' + t.tracker.experimentKey + '\\n');
process.stdin.once('data', () => {
  let step = 0;
  setInterval(() => {
    for (let i = 0; i < 5; i++, step++) t.log({ a: step, b: step / 2 }, step);
    process.stdout.write('logged ' + (step - 1) + ' ' + Date.now() + '\\n');
  }, 20);
});
`,
      { ready: /^key (\S+)$/m, env: { ...process.env, COMET_API_KEY: server.apiKey, COMET_URL_OVERRIDE: server.clientlibUrl, HOME: tempDir('home-') } },
    );
    const [key] = child.ready as [string];
    await server.stop();
    child.go();
    await new Promise((r) => setTimeout(r, 2500));
    const { killedAt, logged, stderr } = await child.kill();
    expect(logged.length, stderr).toBeGreaterThan(20);
    const mustHave = lastStepAtOrBefore(logged, killedAt - interval * 1000 - 250);
    const lastLogged = logged.at(-1)!.step;
    expect(mustHave).toBeGreaterThan(100);

    await server.restart();
    const summary = await syncAll(offline, { out: () => undefined });
    expect(summary.failed).toEqual([]);
    const seen = counts(key);
    expect([...seen.values()].every((n) => n === 1)).toBe(true); // exactly once
    for (let s = 0; s <= mustHave; s++) for (const k of ['a', 'b']) if (!seen.has(`${k}@${s}`)) throw new Error(`step ${s} ${k} lost (must have ≤ ${mustHave}, logged ${lastLogged})`);
    expect(Math.max(...server.experiment(key)!.metrics.map((m) => m.step ?? 0))).toBeLessThanOrEqual(lastLogged);
    expect((await syncAll(offline, { out: () => undefined })).spools).toBe(0);
  }, 60_000);

  it('with a healthy server the spool is removed at finish() and nothing is sent twice', async () => {
    const t = new CometMLTracker({ run_name: 'healthy', offline_directory: offline, flush_interval_secs: 0.05 });
    await t.start();
    for (let i = 0; i < 40; i++) {
      t.log({ a: i }, i);
      if (i % 10 === 9) await new Promise((r) => setTimeout(r, 60)); // ticks run while records are in flight
    }
    await t.finish();
    const seen = counts(t.tracker.experimentKey!);
    expect(seen.size).toBe(40);
    expect([...seen.values()].every((n) => n === 1)).toBe(true);
    expect((await listSpools(offline, 'comet_ml')).filter((s) => s.pending > 0)).toEqual([]);
  }, 20_000);
});

describe('the in-memory cap spills to the spool (issue 13.4)', () => {
  it('log() calls past the cap are written to the spool at once; nothing is dropped and sync completes the run exactly once', async () => {
    const saved = QUEUE_LIMITS.maxPending;
    QUEUE_LIMITS.maxPending = 50;
    try {
      const t = new CometMLTracker({ run_name: 'cap', offline_directory: offline, retry_deadline_secs: 30, write_ahead: false });
      await t.start();
      const key = t.tracker.experimentKey!;
      await server.stop(); // the first batch waits on the server; the queue fills up
      for (let i = 0; i < 80; i++) t.log({ a: i }, i);
      await new Promise((r) => setImmediate(r));
      const spools = await listSpools(offline, 'comet_ml');
      expect(spools).toHaveLength(1);
      expect(spools[0]!.pending).toBe(30); // the 30 calls over the cap, before any flush interval passed
      expect(warnings.some((w) => w.includes('faster than') && w.includes('trackspec sync'))).toBe(true);
      await server.restart();
      const err = (await t.finish().catch((e: unknown) => e)) as BackendError;
      expect(err).toBeInstanceOf(BackendError);
      // the 30 calls over the cap, and the end time (finish() queued it while the queue was still full)
      expect(err.message).toMatch(/31 record\(s\) are safe in .*\.spool/);
      expect(counts(key).size).toBe(50);
      const summary = await syncAll(offline, { out: () => undefined });
      expect(summary).toMatchObject({ sent: 31, failed: [] });
      expect(server.experiment(key)!.endTimeMillis).not.toBeNull();
      const seen = counts(key);
      expect(seen.size).toBe(80);
      expect([...seen.values()].every((n) => n === 1)).toBe(true);
    } finally {
      QUEUE_LIMITS.maxPending = saved;
    }
  }, 60_000);
});

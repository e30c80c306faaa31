// Issue 13.4 for Aim: write-ahead under SIGKILL, and the in-memory cap spilling to the spool,
// against the local Aim 3.29.1 server emulator; `trackspec sync` replays the spool.
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { AimTracker, BackendError, setWarningHandler } from '../../../generated/index.gen.js';
import { cmdSync } from '../../../cli/commands/sync.js';
import { aimTuning } from '../../../runtime/backends/aim/index.js';
import { listSpools } from '../../../runtime/io/spool.js';
import { ROOT, tempDir } from '../../support/helpers.js';
import { AimTestServer } from './server.js';
import { lastStepAtOrBefore, metricsLoop, startLoggingChild } from '../../support/logging-child.js';

const vectors = JSON.parse(readFileSync(new URL('./hash-vectors.json', import.meta.url), 'utf8')) as { values: { value: unknown; hash: string }[] };
/** Context id of {} (Aim's hash_auto, from the Python vectors). */
const CTX0 = vectors.values.find((v) => JSON.stringify(v.value) === '{}')!.hash;

let server: AimTestServer;
let spoolDir: string;
let warnings: string[];
const saved = { ...aimTuning };
beforeEach(async () => {
  server = await AimTestServer.start({ recordInstructions: false });
  spoolDir = tempDir('aim-spool-');
  vi.stubEnv('TRACKSPEC_SPOOL_DIR', spoolDir);
  vi.stubEnv('RANK', undefined);
  vi.stubEnv('LOCAL_RANK', undefined);
  warnings = [];
  setWarningHandler((m) => warnings.push(m));
});
afterEach(async () => {
  Object.assign(aimTuning, saved);
  vi.unstubAllEnvs();
  setWarningHandler(undefined);
  await server.stop();
});

async function runSyncCli(dir: string): Promise<{ code: number; out: string }> {
  let out = '';
  const spy = vi.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
    out += chunk.toString();
    return true;
  });
  try {
    return { code: await cmdSync([dir]), out };
  } finally {
    spy.mockRestore();
  }
}

/** Per metric name: the steps stored in the emulator's seqs tree (from the `step` arrays), and the values at them. */
function stored(hash: string): Map<string, Map<number, number>> {
  const byName = new Map<string, Map<string, { step?: number; val?: number }>>();
  for (const e of server.entries('seqs', hash)) {
    const p = e.path;
    // seqs/v2/chunks/<hash>/<ctx>/<name>/<step|val|epoch|time>/<hash_auto(step)>
    if (p[0] !== 'seqs' || p[1] !== 'v2' || String(p[4]) !== CTX0) continue;
    const field = p[6];
    if ((field !== 'step' && field !== 'val') || p.length !== 8) continue;
    const name = String(p[5]);
    const rows = byName.get(name) ?? byName.set(name, new Map()).get(name)!;
    const key = String(p[7]);
    const row = rows.get(key) ?? rows.set(key, {}).get(key)!;
    row[field] = Number(e.value);
  }
  const out = new Map<string, Map<number, number>>();
  for (const [name, rows] of byName) {
    const m = new Map<number, number>();
    for (const r of rows.values()) m.set(r.step!, r.val!);
    out.set(name, m);
  }
  return out;
}

describe('write-ahead: SIGKILL loses at most the last flush interval (issue 13.4)', () => {
  it('a child SIGKILLed while the server is down: after sync every point logged before the last interval is in the tree exactly once, in order, and the run stays active', async () => {
    const interval = 0.4;
    const child = await startLoggingChild(
      `import { AimTracker } from ${JSON.stringify(join(ROOT, 'generated', 'index.gen.ts'))};
const t = new AimTracker({ run_name: 'killed', logging_dir: ${JSON.stringify(server.uri)}, flush_interval_secs: ${interval} });
await t.start();
process.stdout.write('run ' + t.tracker.hash + '\\n');
${metricsLoop(5)}
`,
      { ready: /^run ([0-9a-f]{24})$/m, env: { ...process.env, TRACKSPEC_SPOOL_DIR: spoolDir } },
    );
    const [hash] = child.ready as [string];
    child.go();
    // Up for a while (part of the run reaches the server and is acknowledged), then down: the
    // emulator keeps what it stored and listens again after downMs.
    await new Promise((r) => setTimeout(r, 800));
    const back = server.restart({ downMs: 4000 });
    await new Promise((r) => setTimeout(r, 2500));
    const { killedAt, logged, stderr } = await child.kill();
    expect(logged.length, stderr).toBeGreaterThan(50);
    // Everything logged before the last interval (plus the 0.2 s batching delay and scheduling slack) must survive.
    const mustHave = lastStepAtOrBefore(logged, killedAt - interval * 1000 - aimTuning.maxDelayMs - 300);
    const lastLogged = logged.at(-1)!.step;
    const before = stored(hash).get('m0');
    const beforeSync = before ? Math.max(...before.keys()) : -1;
    expect(mustHave, 'the server was down for most of the run').toBeGreaterThan(beforeSync + 100);

    await back;
    const { code, out } = await runSyncCli(spoolDir);
    expect(code, out).toBe(0);
    const series = stored(hash);
    expect([...series.keys()].sort()).toEqual(Array.from({ length: 10 }, (_, k) => `m${k}`).sort());
    const meta = (server.tree('meta', hash) as any).meta.chunks[hash];
    for (const [name, points] of series) {
      const k = Number(name.slice(1));
      const last = Math.max(...points.keys());
      // no gap: the spool holds a prefix of what was logged, replayed in order
      expect(points.size, name).toBe(last + 1);
      expect(last).toBeGreaterThanOrEqual(mustHave);
      expect(last).toBeLessThanOrEqual(lastLogged);
      for (const [s, v] of points) expect(v).toBe(s + k / 10);
      // the trace's bookkeeping is that of the last message, as if nothing had happened
      expect(meta.traces[CTX0][name]).toMatchObject({ first_step: 0, last_step: last, last: last + k / 10 });
    }
    // SIGKILL closes nothing: the run stays active (end_time None), as with Aim's own SDK.
    expect(meta.end_time).toBeNull();
    expect(server.runs.get(hash)).toMatchObject({ name: 'killed' });
    // A second sync has nothing left to do.
    expect((await runSyncCli(spoolDir)).out).toMatch(/nothing to upload/);
  }, 60_000);
});

describe('message boundaries fall between values', () => {
  it('each 16 KiB write message holds whole run.track() calls (a run cut off at a message boundary holds whole values only)', async () => {
    await server.stop();
    server = await AimTestServer.start();
    const t = new AimTracker({ run_name: 'whole', logging_dir: server.uri });
    await t.start();
    for (let s = 0; s < 300; s++) t.log({ loss: s, acc: s / 300, lr: 1 / (s + 1) }, s);
    await t.finish();
    let cut = 0;
    for (const m of server.messages) {
      const fields = new Map<string, number>();
      for (const [, , args] of m.instructions) {
        const path = args[0] as unknown[] | undefined;
        if (Array.isArray(path) && path[0] === 'seqs' && path.length === 8) fields.set(String(path[6]), (fields.get(String(path[6])) ?? 0) + 1);
      }
      if (fields.size === 0) continue;
      cut++;
      // a metric value is val, epoch, time and step at its key: all four in the same message
      expect(new Set(fields.values()).size, JSON.stringify([...fields])).toBe(1);
      expect(m.bytes).toBeLessThanOrEqual(aimTuning.maxMessageBytes);
    }
    expect(cut).toBeGreaterThan(50);
  });
});

describe('the in-memory cap spills to the spool', () => {
  it('messages beyond maxUnsentBytes (a slow server) go to the spool in order, nothing dropped; sync completes and closes the run', async () => {
    await server.stop();
    server = await AimTestServer.start({ recordInstructions: false, replyDelayMs: 20 });
    aimTuning.maxUnsentBytes = 256 << 10;
    const t = new AimTracker({ run_name: 'flood', logging_dir: server.uri });
    await t.start();
    const hash = t.tracker.hash;
    const N = 3000;
    for (let s = 0; s < N; s++) t.log({ loss: s, acc: s / N }, s);
    const err = await t.finish().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BackendError);
    expect((err as Error).message).toMatch(new RegExp(`values were logged faster than the server at aim://127\\.0\\.0\\.1:\\d+ applies them; \\d+ write message\\(s\\) of run ${hash} are safe in .*trackspec sync`));
    expect(warnings.join('\n')).toMatch(/logged faster than the server .* goes to the spool/);
    expect(t.tracker.online).toBe(false);
    const partial = stored(hash).get('loss')?.size ?? 0;
    expect(partial).toBeLessThan(N);
    expect((await listSpools(spoolDir, 'aim'))[0]!.pending).toBeGreaterThan(0);

    server.replyDelayMs = 0;
    const { code, out } = await runSyncCli(spoolDir);
    expect(code, out).toBe(0);
    const series = stored(hash);
    const loss = series.get('loss')!;
    expect(loss.size).toBe(N);
    for (let s = 0; s < N; s++) expect(loss.get(s)).toBe(s);
    const meta = (server.tree('meta', hash) as any).meta.chunks[hash];
    expect(meta.traces[CTX0].loss).toMatchObject({ last_step: N - 1, last: N - 1 });
    expect(meta.end_time).toBeGreaterThan(0); // finish() closed it: the end time was in the spool
  }, 60_000);
});

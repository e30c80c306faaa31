// Issue 13: spool damage (3) and write-ahead under SIGKILL (4), MLflow over REST against the local test server.
import { once } from 'node:events';
import { existsSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { MLflowTracker, setWarningHandler } from '../../../generated/index.gen.js';
import { cmdSync } from '../../../cli/commands/sync.js';
import { ROOT, tempDir } from '../../support/helpers.js';
import { MlflowTestServer } from './server.js';
import { lastStepAtOrBefore, metricsLoop, startLoggingChild } from '../../support/logging-child.js';

const ENV = ['MLFLOW_TRACKING_URI', 'MLFLOW_EXPERIMENT_NAME', 'MLFLOW_RUN_ID', 'MLFLOW_TAGS', 'MLFLOW_NESTED_RUN', 'MLFLOW_TRACKING_TOKEN',
  'MLFLOW_TRACKING_USERNAME', 'MLFLOW_TRACKING_PASSWORD', 'MLFLOW_TRACKING_INSECURE_TLS', 'RANK', 'LOCAL_RANK'];
let server: MlflowTestServer;
let spoolDir: string;
beforeEach(async () => {
  for (const v of ENV) vi.stubEnv(v, undefined);
  spoolDir = tempDir('spool-');
  vi.stubEnv('TRACKSPEC_SPOOL_DIR', spoolDir);
  setWarningHandler(() => undefined);
  server = await MlflowTestServer.start();
});
afterEach(async () => {
  vi.unstubAllEnvs();
  setWarningHandler(undefined);
  await server.close();
});

async function runSyncCli(dir: string): Promise<{ code: number; out: string }> {
  let out = '';
  const spy = vi.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
    out += chunk.toString();
    return true;
  });
  try {
    const code = await cmdSync([dir]);
    return { code, out };
  } finally {
    spy.mockRestore();
  }
}

describe('a damaged byte in a spool (issue 13.3)', () => {
  it('trackspec sync uploads every intact record, keeps the file, names the damaged range and exits 1', async () => {
    const t = new MLflowTracker({ tracking_uri: server.url, retry_deadline_secs: 0.2, experiment_name: 'damaged' });
    await t.start();
    const runId = t.tracker.runId;
    await server.stop();
    const N = 3000;
    for (let i = 0; i < N; i++) t.log({ loss: i }, i);
    await expect(t.finish()).rejects.toThrow(/safe in/);
    const file = join(spoolDir, 'mlflow', readdirSync(join(spoolDir, 'mlflow')).find((f) => f.endsWith('.spool'))!);
    const bytes = readFileSync(file);
    const mid = Math.floor(bytes.length / 2);
    bytes[mid] ^= 0x08; // one flipped bit in the middle
    writeFileSync(file, bytes);

    await server.restart();
    const { code, out } = await runSyncCli(spoolDir);
    expect(code).toBe(1);
    expect(out).toMatch(/damaged at bytes [\d,]+–[\d,]+ \(\d+ bytes\)/);
    const [, from, to] = /damaged at bytes ([\d,]+)–([\d,]+)/.exec(out)!.map((x) => Number(x.replace(/,/g, '')));
    expect(from).toBeLessThanOrEqual(mid);
    expect(to).toBeGreaterThan(mid);
    // Every intact record arrived exactly once: all steps but the one damaged record, and the status.
    const run = server.run(runId)!;
    const steps = run.metrics.filter((m) => m.key === 'loss').map((m) => Number(m.step));
    expect(steps).toHaveLength(N - 1);
    expect(new Set(steps).size).toBe(N - 1);
    expect(steps).toContain(N - 1);
    expect(run.info.status).toBe('FINISHED');
    expect(existsSync(`${file}.damaged`)).toBe(true);
    expect(readFileSync(`${file}.damaged`).subarray(0, bytes.length).equals(bytes)).toBe(true);
  }, 30_000);
});

describe('write-ahead: SIGKILL loses at most the last flush interval (issue 13.4)', () => {
  it('a child SIGKILLed mid-run with the server down: sync uploads everything logged before the last interval, exactly once', async () => {
    const interval = 0.4;
    const child = await startLoggingChild(
      `import { MLflowTracker } from ${JSON.stringify(join(ROOT, 'generated', 'index.gen.ts'))};
const t = new MLflowTracker({ tracking_uri: ${JSON.stringify(server.url)}, experiment_name: 'killed', flush_interval_secs: ${interval} });
await t.start();
process.stdout.write('run ' + t.tracker.runId + '\\n');
${metricsLoop(50)}
`,
      { ready: /^run ([0-9a-f]{32})$/m, env: { ...process.env, TRACKSPEC_SPOOL_DIR: spoolDir } },
    );
    const [runId] = child.ready as [string];
    await server.stop();
    child.go();
    await new Promise((r) => setTimeout(r, 3000));
    const { killedAt, logged, stderr } = await child.kill();
    expect(logged.length, stderr).toBeGreaterThan(50);
    // Everything logged before the last interval (plus scheduling slack) must survive.
    const mustHave = lastStepAtOrBefore(logged, killedAt - interval * 1000 - 250);
    const lastLogged = logged.at(-1)!.step;
    expect(mustHave).toBeGreaterThan(1000);

    await server.restart();
    const { code } = await runSyncCli(spoolDir);
    expect(code).toBe(0);
    const run = server.run(runId)!;
    const seen = new Map<string, number>();
    for (const m of run.metrics) seen.set(`${m.key}@${m.step}`, (seen.get(`${m.key}@${m.step}`) ?? 0) + 1);
    expect([...seen.values()].every((n) => n === 1)).toBe(true); // exactly once
    for (let s = 0; s <= mustHave; s++) for (let k = 0; k < 10; k++) if (!seen.has(`m${k}@${s}`)) throw new Error(`step ${s} m${k} lost (must have ≤ ${mustHave}, logged ${lastLogged})`);
    expect(run.metrics.reduce((a, m) => Math.max(a, Number(m.step)), 0)).toBeLessThanOrEqual(lastLogged);
    // A second sync has nothing left to do.
    expect((await runSyncCli(spoolDir)).out).toMatch(/nothing to upload/);
  }, 60_000);
});

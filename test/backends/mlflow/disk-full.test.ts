// Issue 13.1: a full disk never leaves the MLflow file store unreadable for MLflow, and nothing logged is lost.
// Uses a real 512 KiB tmpfs when this process may mount one (root), else injects ENOSPC into fs.writeSync.
import * as fs from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { MLflowTracker, setWarningHandler } from '../../../generated/index.gen.js';
import { syncSpools } from '../../../runtime/backends/mlflow/sync.js';
import { tempDir } from '../../support/helpers.js';
import { smallDisk, type SmallDisk } from '../../support/small-disk.js';

const ENV = ['MLFLOW_TRACKING_URI', 'MLFLOW_EXPERIMENT_NAME', 'MLFLOW_RUN_ID', 'MLFLOW_TAGS', 'MLFLOW_NESTED_RUN', 'RANK', 'LOCAL_RANK'];
let spoolDir: string;
beforeEach(() => {
  for (const v of ENV) vi.stubEnv(v, undefined);
  spoolDir = tempDir('spool-');
  vi.stubEnv('TRACKSPEC_SPOOL_DIR', spoolDir);
  setWarningHandler(() => undefined);
});
afterEach(() => {
  vi.unstubAllEnvs();
  setWarningHandler(undefined);
});

/** MLflow 2.12.2 FileStore._get_metric_from_line: each line must split into 2 or 3 fields. */
function readMetricFileAsMlflow(path: string, key: string): { ts: number; value: number; step: number }[] {
  const text = fs.readFileSync(path, 'utf8');
  return text.split('\n').filter((l) => l !== '').map((line) => {
    const parts = line.trim().split(' ');
    if (parts.length !== 2 && parts.length !== 3) throw new Error(`Metric '${key}' is malformed; persisted metric data contained ${parts.length} fields. Expected 2 or 3 fields.`);
    const [ts, value, step] = parts;
    const v = Number(value);
    if (!Number.isFinite(Number(ts)) || (Number.isNaN(v) && value !== 'nan')) throw new Error(`Metric '${key}' is malformed: ${JSON.stringify(line)}`);
    return { ts: Number(ts), value: v, step: Number(step ?? 0) };
  });
}


function checkStore(root: string, experimentId: string, runId: string, steps: number, keys: string[]): void {
  const runDir = join(root, experimentId, runId);
  for (const key of keys) {
    const points = readMetricFileAsMlflow(join(runDir, 'metrics', key), key);
    const counts = new Map<number, number>();
    for (const p of points) counts.set(p.step, (counts.get(p.step) ?? 0) + 1);
    expect(counts.size, key).toBe(steps);
    expect([...counts.values()].every((n) => n === 1), `${key}: every step exactly once`).toBe(true);
  }
  const leftovers: string[] = [];
  const walk = (d: string) => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      if (e.isDirectory()) walk(join(d, e.name));
      else if (e.name.endsWith('.tmp')) leftovers.push(join(d, e.name));
    }
  };
  walk(root);
  expect(leftovers).toEqual([]);
  expect((parse(fs.readFileSync(join(runDir, 'meta.yaml'), 'utf8')) as { status: number }).status).toBe(3); // FINISHED
}

const KEYS = ['acc', 'loss', 'lr'];
function logSteps(t: MLflowTracker, from: number, to: number): void {
  // Short values: 5,100 steps × 3 keys (~350 KB of lines) fit the 512 KiB disk once the filler is gone.
  for (let s = from; s < to; s++) t.log({ acc: s % 7, loss: s % 5, lr: 0.5 }, s);
}

describe('MLflow file store on a full disk (issue 13.1)', () => {
  it('the failed write names the file and says the disk is full; files stay whole lines; retried after space is freed', async () => {
    const disk = smallDisk({ sizeKiB: 512, leftKiB: 48, injectedBytes: 40_000 });
    try {
      const root = join(disk.dir, 'mlruns');
      const t = new MLflowTracker({ tracking_uri: root, experiment_name: 'full' });
      await t.start();
      logSteps(t, 0, 100);
      await t.flush();
      disk.fill();
      logSteps(t, 100, 5100);
      const err = (await t.flush().catch((e: unknown) => e)) as Error;
      expect(err, disk.kind).toBeInstanceOf(Error);
      expect(err.message).toMatch(/metric file .*\/metrics\/(acc|loss|lr): the disk is full \(ENOSPC/);
      expect(err.message).toMatch(/written again on the next flush/);
      // Readable by MLflow's rules right now, while the disk is full.
      for (const k of KEYS) readMetricFileAsMlflow(join(root, t.tracker.experimentId, t.tracker.runId, 'metrics', k), k);
      disk.free();
      await t.flush();
      await t.finish();
      checkStore(root, t.tracker.experimentId, t.tracker.runId, 5100, KEYS);
    } finally {
      disk.dispose();
    }
  }, 30_000);

  it('still full at finish(): the rest is spooled (nothing dropped), and sync completes the run once space is back', async () => {
    const disk = smallDisk({ sizeKiB: 512, leftKiB: 48, injectedBytes: 40_000 });
    try {
      const root = join(disk.dir, 'mlruns');
      const t = new MLflowTracker({ tracking_uri: root, experiment_name: 'full' });
      await t.start();
      logSteps(t, 0, 100);
      await t.flush();
      disk.fill();
      logSteps(t, 100, 5100);
      const err = (await t.finish().catch((e: unknown) => e)) as Error;
      expect(err).toBeInstanceOf(Error);
      expect(err.message).toMatch(/the disk is full/);
      expect(err.message).toMatch(/record\(s\) are safe in .*\.spool — upload them with `trackspec sync/);
      const runDir = join(root, t.tracker.experimentId, t.tracker.runId);
      for (const k of KEYS) readMetricFileAsMlflow(join(runDir, 'metrics', k), k);
      disk.free();
      const summary = await syncSpools(spoolDir, { out: () => undefined });
      expect(summary.failed).toEqual([]);
      checkStore(root, t.tracker.experimentId, t.tracker.runId, 5100, KEYS);
    } finally {
      disk.dispose();
    }
  }, 30_000);

  it('a torn last line (from a crash) is repaired before the next append', async () => {
    const root = join(tempDir(), 'mlruns');
    const t = new MLflowTracker({ tracking_uri: root, experiment_name: 'torn' });
    await t.start();
    t.log({ acc: 1 }, 0);
    await t.flush();
    const file = join(root, t.tracker.experimentId, t.tracker.runId, 'metrics', 'acc');
    fs.appendFileSync(file, '1796077555441 ');
    // A new process (a fresh store) appends to it.
    const { FileStore } = await import('../../../runtime/backends/mlflow/file-store.js');
    const store = new FileStore(root);
    await store.logBatch(t.tracker.runId, { metrics: [{ key: 'acc', value: 2, timestamp: 5, step: 1 }] });
    await t.finish();
    expect(readMetricFileAsMlflow(file, 'acc').map((p) => p.step)).toEqual([0, 1]);
  });
});

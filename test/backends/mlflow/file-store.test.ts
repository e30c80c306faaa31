// MLflow file store: the exact layout and bytes MLflow 2.x reads (mlflow ui --backend-store-uri).
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { BackendError, MLflowTracker, ValidationError, setWarningHandler } from '../../../generated/index.gen.js';
import { tempDir } from '../../support/helpers.js';

const ENV = ['MLFLOW_TRACKING_URI', 'MLFLOW_EXPERIMENT_NAME', 'MLFLOW_RUN_ID', 'MLFLOW_TAGS', 'MLFLOW_NESTED_RUN', 'RANK', 'LOCAL_RANK'];
let warnings: string[] = [];
beforeEach(() => {
  for (const v of ENV) vi.stubEnv(v, undefined);
  vi.stubEnv('TRACKSPEC_SPOOL_DIR', tempDir('spool-'));
  warnings = [];
  setWarningHandler((m) => warnings.push(m));
});
afterEach(() => {
  vi.unstubAllEnvs();
  setWarningHandler(undefined);
});

const yamlOf = (p: string) => parse(readFileSync(p, 'utf8')) as Record<string, unknown>;

describe('file store layout', () => {
  it('writes experiments, runs, metrics, params and tags exactly as MLflow lays them out', async () => {
    const root = join(tempDir(), 'mlruns');
    const t = new MLflowTracker({
      tracking_uri: root, experiment_name: 'exp', run_name: 'r1', description: 'a **note**\nline 2',
      tags: { team: 'vision', n: 3 }, logging_dir: '/artifacts/here',
    });
    await t.start();
    const { runId, experimentId } = t.tracker;
    await t.storeInitConfiguration({ lr: 0.001, layers: 4, use_amp: true, warmup: null, 'model/depth': 12, names: ['a', 'b'] });
    t.log({ loss: 0.5, 'eval/acc': 0.25, flag: true }, 3);
    t.log({ loss: NaN, big: Infinity, small: 1e-9 }, 4);
    t.log({ loss: 1 });
    await t.finish();

    // Default experiment and the experiment's meta.yaml
    expect(yamlOf(join(root, '0', 'meta.yaml'))).toMatchObject({ experiment_id: '0', name: 'Default', lifecycle_stage: 'active' });
    expect(experimentId).toMatch(/^\d{18}$/);
    const exp = yamlOf(join(root, experimentId, 'meta.yaml'));
    expect(exp).toMatchObject({ experiment_id: experimentId, name: 'exp', lifecycle_stage: 'active', artifact_location: '/artifacts/here' });
    expect(typeof exp.creation_time).toBe('number');
    expect(readFileSync(join(root, experimentId, 'tags', 'team'), 'utf8')).toBe('vision');

    // Run meta.yaml
    const runDir = join(root, experimentId, runId);
    expect(runId).toMatch(/^[0-9a-f]{32}$/);
    const meta = yamlOf(join(runDir, 'meta.yaml'));
    expect(meta).toMatchObject({
      run_id: runId, run_uuid: runId, experiment_id: experimentId, run_name: 'r1', lifecycle_stage: 'active',
      status: 3, source_type: 4, entry_point_name: '', source_name: '', source_version: '', tags: [],
    });
    expect(meta.end_time).toBeGreaterThanOrEqual(meta.start_time as number);

    // Metrics: "<timestamp> <value> <step>" lines, Python float repr, '/' → subdirectories
    const lines = (k: string) => readFileSync(join(runDir, 'metrics', k), 'utf8').trimEnd().split('\n').map((l) => l.split(' '));
    expect(lines('loss').map(([, v, s]) => [v, s])).toEqual([['0.5', '3'], ['nan', '4'], ['1.0', '0']]);
    expect(lines('eval/acc').map(([, v]) => v)).toEqual(['0.25']);
    expect(lines('flag').map(([, v]) => v)).toEqual(['1.0']);
    expect(lines('big').map(([, v]) => v)).toEqual(['inf']);
    expect(lines('small').map(([, v]) => v)).toEqual(['1e-09']);
    for (const [ts] of lines('loss')) expect(Number(ts)).toBeGreaterThan(1.7e12);
    expect(readFileSync(join(runDir, 'metrics', 'loss'), 'utf8').endsWith('\n')).toBe(true);

    // Params: Python str() forms, raw, no trailing newline
    const param = (k: string) => readFileSync(join(runDir, 'params', k), 'utf8');
    expect([param('lr'), param('layers'), param('use_amp'), param('warmup'), param('model/depth'), param('names')]).toEqual(['0.001', '4', 'True', 'None', '12', '["a","b"]']);

    // Tags
    const tag = (k: string) => readFileSync(join(runDir, 'tags', k), 'utf8');
    expect(tag('mlflow.runName')).toBe('r1');
    expect(tag('mlflow.note.content')).toBe('a **note**\nline 2');
    expect(tag('team')).toBe('vision');
    expect(tag('n')).toBe('3');
    expect(tag('mlflow.source.type')).toBe('LOCAL');
    expect(readdirSync(runDir).sort()).toEqual(['artifacts', 'meta.yaml', 'metrics', 'params', 'tags']);
  });

  it('reuses an experiment by exact name; concurrent trackers in one process do not corrupt the store', async () => {
    const root = join(tempDir(), 'mlruns');
    const trackers = Array.from({ length: 6 }, (_, i) => new MLflowTracker({ tracking_uri: `file://${root}`, experiment_name: 'shared', run_name: `r${i}` }));
    await Promise.all(trackers.map((t) => t.start()));
    const experiments = readdirSync(root).filter((d) => d !== '0' && existsSync(join(root, d, 'meta.yaml')));
    expect(experiments).toHaveLength(1);
    await Promise.all(trackers.map(async (t, i) => {
      for (let s = 0; s < 200; s++) t.log({ loss: i + s / 1000, shared_key: s }, s);
      await t.storeInitConfiguration({ idx: i });
      await t.finish();
    }));
    for (const t of trackers) {
      const runDir = join(root, experiments[0]!, t.tracker.runId);
      expect(readFileSync(join(runDir, 'metrics', 'loss'), 'utf8').trimEnd().split('\n')).toHaveLength(200);
      expect(yamlOf(join(runDir, 'meta.yaml')).status).toBe(3);
    }
  });

  it('params are immutable; over-long params are dropped with a warning; the caller object is untouched', async () => {
    const root = join(tempDir(), 'mlruns');
    const t = new MLflowTracker({ tracking_uri: root });
    await t.start();
    const config = Object.freeze({ lr: 0.1, long: 'x'.repeat(6001) });
    await t.storeInitConfiguration(config);
    expect(warnings.some((w) => w.includes('"long"') && w.includes('6000'))).toBe(true);
    await t.storeInitConfiguration({ lr: 0.1 }); // same value: fine
    await expect(t.storeInitConfiguration({ lr: 0.2 })).rejects.toThrow(/params are immutable in MLflow/);
    await expect(t.storeInitConfiguration({ lr: 0.2 })).rejects.toThrow(BackendError);
    await t.finish();
    expect(config.long).toHaveLength(6001);
  });

  it('bad keys are rejected at log() time, naming MLflow\'s rule', async () => {
    const t = new MLflowTracker({ tracking_uri: join(tempDir(), 'mlruns') });
    await t.start();
    expect(() => t.log({ 'bad:colon': 1 })).toThrow(ValidationError);
    expect(() => t.log({ 'a//b': 1 })).toThrow(/must not resolve to another name/);
    expect(() => t.log({ ['k'.repeat(251)]: 1 })).toThrow(/over MLflow's limit of 250/);
    t.log({ 'ünï cøde-1.2': 1 });
    await t.finish();
  });

  it('strings and nested values are skipped with one warning per key', async () => {
    const t = new MLflowTracker({ tracking_uri: join(tempDir(), 'mlruns') });
    await t.start();
    t.log({ a: 1, s: 'text', o: { x: 1 } });
    t.log({ a: 2, s: 'again' });
    await t.finish();
    expect(warnings.filter((w) => w.includes('skipped'))).toHaveLength(2);
  });

  it('resumes a run by run_id (status back to RUNNING, then FINISHED)', async () => {
    const root = join(tempDir(), 'mlruns');
    const a = new MLflowTracker({ tracking_uri: root, experiment_name: 'e' });
    await a.start();
    a.log({ loss: 1 }, 1);
    await a.storeInitConfiguration({ lr: 0.5 });
    await a.finish();
    const { runId, experimentId } = a.tracker;
    vi.stubEnv('MLFLOW_RUN_ID', runId);
    const b = new MLflowTracker({ tracking_uri: root });
    await b.start();
    expect(yamlOf(join(root, experimentId, runId, 'meta.yaml')).status).toBe(1);
    b.log({ loss: 0.5 }, 2);
    await expect(b.storeInitConfiguration({ lr: 0.7 })).rejects.toThrow(/immutable/);
    await b.finish();
    expect(readFileSync(join(root, experimentId, runId, 'metrics', 'loss'), 'utf8').trimEnd().split('\n')).toHaveLength(2);
  });

  it('nested runs point at the active parent', async () => {
    const root = join(tempDir(), 'mlruns');
    const parent = new MLflowTracker({ tracking_uri: root, experiment_name: 'p' });
    await parent.start();
    const child = new MLflowTracker({ tracking_uri: root, nested_run: true });
    await child.start();
    expect(child.tracker.experimentId).toBe(parent.tracker.experimentId);
    const dir = join(root, child.tracker.experimentId, child.tracker.runId);
    expect(readFileSync(join(dir, 'tags', 'mlflow.parentRunId'), 'utf8')).toBe(parent.tracker.runId);
    await child.finish();
    await parent.finish();
  });

  it('MLFLOW_NESTED_RUN=false is really false', async () => {
    const root = join(tempDir(), 'mlruns');
    const parent = new MLflowTracker({ tracking_uri: root });
    await parent.start();
    vi.stubEnv('MLFLOW_NESTED_RUN', 'false');
    const other = new MLflowTracker({ tracking_uri: root, nested_run: true });
    await other.start();
    expect(existsSync(join(root, other.tracker.experimentId, other.tracker.runId, 'tags', 'mlflow.parentRunId'))).toBe(false);
    await other.finish();
    await parent.finish();
  });

  it('an unsupported URI scheme is a ConfigError at start()', async () => {
    await expect(new MLflowTracker({ tracking_uri: 'databricks://profile' }).start()).rejects.toThrow(
      /tracking URI scheme 'databricks:' is not supported; use http\(s\):\/\/host:port/,
    );
  });
});

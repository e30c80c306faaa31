// Printing trackers and options never shows secrets; values that contain themselves follow one
// rule in every backend (the rule for values the backend cannot represent).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { inspect } from 'node:util';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import {
  CometMLTracker,
  MLflowTracker,
  TensorBoardTracker,
  Tracking,
  ValidationError,
  WandBTracker,
  setWarningHandler,
} from '../../generated/index.gen.js';
import { applyValueRules, cyclePath, type ValueRuleTable } from '../../runtime/core/values.js';
import { redactUrl } from '../../runtime/core/redact.js';
import { tempDir } from '../support/helpers.js';

let warnings: string[] = [];
beforeEach(() => {
  for (const v of ['MLFLOW_TRACKING_URI', 'MLFLOW_TAGS', 'MLFLOW_RUN_ID', 'WANDB_API_KEY', 'COMET_API_KEY', 'RANK', 'LOCAL_RANK']) vi.stubEnv(v, undefined);
  vi.stubEnv('TRACKSPEC_SPOOL_DIR', tempDir('spool-'));
  warnings = [];
  setWarningHandler((m) => warnings.push(m));
});
afterEach(() => {
  vi.unstubAllEnvs();
  setWarningHandler(undefined);
});

describe('printing trackers and options', () => {
  it('console.log / util.inspect and JSON.stringify redact URL credentials and secret options', () => {
    const ml = new MLflowTracker({ tracking_uri: 'https://alice:s3cret-pw@mlflow.example:5000/?token=abc123&x=1' });
    const wb = new WandBTracker({ run_name: 'p', api_key: 'wandb-key-0123456789', base_url: 'https://bob:pw2@wandb.example' });
    const cm = new CometMLTracker({ run_name: 'p', api_key: 'comet-key-9876543210', online: false });
    const tr = new Tracking({ log_with: [ml, wb, cm] });
    for (const shown of [inspect(ml), inspect(ml.options), JSON.stringify(ml), JSON.stringify(ml.options), inspect(wb, { depth: 5 }), JSON.stringify(wb), inspect(cm), JSON.stringify(cm), inspect(tr, { depth: 6 })]) {
      for (const secret of ['s3cret-pw', 'alice', 'abc123', 'wandb-key-0123456789', 'pw2', 'comet-key-9876543210']) expect(shown).not.toContain(secret);
    }
    expect(JSON.parse(JSON.stringify(ml.options)).tracking_uri).toBe('https://***@mlflow.example:5000/?token=***&x=1');
    expect(JSON.parse(JSON.stringify(wb.options))).toMatchObject({ api_key: '[redacted]', base_url: 'https://***@wandb.example' });
    expect(inspect(cm.options)).toContain("api_key: '[redacted]'");
    // The real values are still there for the driver (and the user) to read.
    expect(ml.options.tracking_uri).toBe('https://alice:s3cret-pw@mlflow.example:5000/?token=abc123&x=1');
    expect(wb.options.api_key).toBe('wandb-key-0123456789');
    // Unset secrets stay null (nothing to hide), other options print as they are.
    expect(JSON.parse(JSON.stringify(new CometMLTracker({ run_name: 'p', online: false }).options))).toMatchObject({ api_key: null, run_name: 'p', online: false });
  });

  it('redactUrl leaves strings without credentials alone', () => {
    expect(redactUrl('./runs')).toBe('./runs');
    expect(redactUrl('http://127.0.0.1:5000')).toBe('http://127.0.0.1:5000');
    expect(redactUrl('aim://user:pw@host:53800')).toBe('aim://***@host:53800');
    expect(redactUrl('https://h/api?api_key=k&page=2')).toBe('https://h/api?api_key=***&page=2');
  });
});

describe('values that contain themselves', () => {
  const cyclic = () => {
    const model: Record<string, unknown> = { depth: 4, inner: { list: [1] } };
    ((model.inner as Record<string, unknown>).list as unknown[]).push(model);
    return model;
  };

  it('cyclePath finds the closing reference; shared references are not cycles', () => {
    expect(cyclePath(cyclic())).toBe('/inner/list/1');
    const shared = { a: 1 };
    expect(cyclePath({ x: shared, y: [shared, shared] })).toBeUndefined();
    let deep: Record<string, unknown> = {};
    const root = deep;
    for (let i = 0; i < 100_000; i++) deep = (deep.next = {}) as Record<string, unknown>;
    expect(cyclePath(root)).toBeUndefined(); // iterative: no stack overflow
  });

  it('the rule: an accepted object/array kind that is cyclic takes the "other" action', () => {
    const table = (other: 'warn' | 'error'): ValueRuleTable => ({ number: 'accept', boolean: 'accept', string: 'accept', null: 'accept', array: 'accept', numeric_object: 'accept', object: 'accept', other });
    const seen: string[] = [];
    const ctx = { where: 'X.log()', warnOnce: (_k: string, m: string) => seen.push(m) };
    const v = { lr: 1, model: cyclic() };
    expect(applyValueRules(v, table('warn'), ctx)).toEqual({ lr: 1 });
    expect(seen).toEqual(['X.log(): skipped "model": a cyclic object (it contains itself at "/inner/list/1") is not supported by this backend (warned once per key)']);
    expect(() => applyValueRules(v, table('error'), ctx)).toThrow('X.log(): "model" is a cyclic object (it contains itself at "/inner/list/1"), which this backend cannot store');
  });

  it('storeInitConfiguration: a ValidationError naming the key in every backend, and nothing of the call is stored', async () => {
    const dir = tempDir();
    const tb = new TensorBoardTracker({ run_name: 'run', logging_dir: dir });
    const ml = new MLflowTracker({ tracking_uri: path.join(dir, 'mlruns'), experiment_name: 'e' });
    const wb = new WandBTracker({ run_name: 'p', mode: 'offline', dir: path.join(dir, 'wandb') });
    const cm = new CometMLTracker({ run_name: 'p', online: false, offline_directory: path.join(dir, 'comet') });
    for (const t of [tb, ml, wb, cm]) {
      const err = (await t.storeInitConfiguration({ lr: 0.1, model: cyclic() }).catch((e: unknown) => e)) as ValidationError;
      expect(err, t.constructor.name).toBeInstanceOf(ValidationError);
      expect(err.issues).toEqual([{ pointer: '/model', code: 'cyclic-value', message: '"model" is a cyclic object (it contains itself at "/inner/list/1"), which this backend cannot store' }]);
      expect(err.message).toBe(`${t.constructor.name}.storeInitConfiguration(): "model" is a cyclic object (it contains itself at "/inner/list/1"), which this backend cannot store`);
    }
    expect(fs.existsSync(path.join(dir, 'run', 'hparams.yml'))).toBe(false);
    const mlRun = path.join(dir, 'mlruns', ml.tracker.experimentId, ml.tracker.runId);
    expect(fs.readdirSync(path.join(mlRun, 'params'))).toEqual([]);
    for (const t of [tb, ml, wb, cm]) await t.finish();
  });

  it('log(): one warning naming the key where objects are warned (TensorBoard), an error where they are accepted (W&B)', async () => {
    const dir = tempDir();
    const tb = new TensorBoardTracker({ run_name: 'run', logging_dir: dir });
    await tb.start();
    tb.log({ loss: 1, model: cyclic() }, 0);
    tb.log({ loss: 2, model: cyclic() }, 1);
    expect(warnings).toEqual(['TensorBoardTracker.log(): skipped "model": an object is not supported by this backend (warned once per key)']);
    await tb.finish();
    const wb = new WandBTracker({ run_name: 'p', mode: 'offline', dir: path.join(dir, 'wandb') });
    await wb.start();
    expect(() => wb.log({ loss: 1, model: cyclic() }, 0)).toThrow('WandBTracker.log(): "model" is a cyclic object (it contains itself at "/inner/list/1"), which this backend cannot store');
    await wb.finish();
  });
});

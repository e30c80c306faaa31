// MLflow file store: names that become paths (tag/param/metric keys, run and experiment ids) are
// checked by MLflow's own rules before anything is written, so nothing lands outside the store.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { ConfigError, MLflowTracker, ValidationError, setWarningHandler } from '../../../generated/index.gen.js';
import { FileStore } from '../../../runtime/backends/mlflow/file-store.js';
import { RUN_ID_PATTERN, runIdProblem } from '../../../runtime/backends/mlflow/keys.js';
import { tempDir } from '../../support/helpers.js';

const ENV = ['MLFLOW_TRACKING_URI', 'MLFLOW_EXPERIMENT_NAME', 'MLFLOW_RUN_ID', 'MLFLOW_TAGS', 'MLFLOW_NESTED_RUN', 'RANK', 'LOCAL_RANK'];
beforeEach(() => {
  for (const v of ENV) vi.stubEnv(v, undefined);
  vi.stubEnv('TRACKSPEC_SPOOL_DIR', tempDir('spool-'));
  setWarningHandler(() => undefined);
});
afterEach(() => {
  vi.unstubAllEnvs();
  setWarningHandler(undefined);
});

function tree(dir: string): string[] {
  if (!fs.existsSync(dir)) return [];
  return (fs.readdirSync(dir, { recursive: true }) as string[]).sort();
}

/** <box>/a/b/c/d/mlruns: a four-level escape from the store stays inside the box. */
function sandbox(): { box: string; root: string } {
  const box = tempDir();
  return { box, root: path.join(box, 'a', 'b', 'c', 'd', 'mlruns') };
}

describe('MLflow file store: hostile names', () => {
  it("tags {'../../../../x': 'v'}: a ConfigError naming the option and the key, and nothing is written", async () => {
    const { box, root } = sandbox();
    const t = new MLflowTracker({ tracking_uri: root, experiment_name: 'e', tags: { '../../../../x': 'attacker content', ok: 'v' } });
    const err = (await t.start().catch((e: unknown) => e)) as ConfigError;
    expect(err).toBeInstanceOf(ConfigError);
    expect(err.option).toBe('tags');
    expect(err.message).toBe(
      `MLflowTracker: option "tags" (or MLFLOW_TAGS): tag "../../../../x" must not resolve to another name when treated as a path (it resolves to '../../../../x'): no '..', leading '/', '//', '/./' or trailing '/'`,
    );
    expect(err.issues).toMatchObject([{ pointer: '/tags/..~1..~1..~1..~1x', code: 'mlflow-key' }]);
    expect(tree(box)).toEqual([]); // not even the store root: the check comes first
  });

  it('MLFLOW_TAGS with a bad key, and a tag value over MLflow\'s limit, are refused the same way', async () => {
    const { box, root } = sandbox();
    vi.stubEnv('MLFLOW_TAGS', JSON.stringify({ '/etc/x': 'v' }));
    const e1 = (await new MLflowTracker({ tracking_uri: root }).start().catch((e: unknown) => e)) as ConfigError;
    expect(e1).toBeInstanceOf(ConfigError);
    expect(e1.message).toContain('tag "/etc/x" must not resolve to another name');
    vi.stubEnv('MLFLOW_TAGS', undefined);
    const e2 = (await new MLflowTracker({ tracking_uri: root, tags: { long: 'x'.repeat(5001) } }).start().catch((e: unknown) => e)) as ConfigError;
    expect(e2).toBeInstanceOf(ConfigError);
    expect(e2.message).toContain(`tag "long" has a value of 5001 characters, over MLflow's limit of 5000`);
    expect(tree(box)).toEqual([]);
  });

  it("run_id must match MLflow's run-id pattern before it is used (option and MLFLOW_RUN_ID)", () => {
    expect(() => new MLflowTracker({ tracking_uri: '/nonexistent', run_id: '../../x' })).toThrow(ConfigError);
    expect(() => new MLflowTracker({ tracking_uri: '/nonexistent', run_id: '../../x' })).toThrow(
      'MLflowTracker: option "run_id" (can also be set with MLFLOW_RUN_ID): must match pattern "^[a-zA-Z0-9][\\p{L}\\p{N}_-]{0,255}$"; got "../../x"',
    );
    vi.stubEnv('MLFLOW_RUN_ID', 'abc/../../def');
    expect(() => new MLflowTracker({ tracking_uri: '/nonexistent' })).toThrow('MLFLOW_RUN_ID (for option run_id): must match pattern');
    // MLflow's rule: a letter or digit, then up to 255 of \w or '-'; its own ids are 32 hex digits.
    expect(RUN_ID_PATTERN.test('0123456789abcdef0123456789abcdef')).toBe(true);
    expect(RUN_ID_PATTERN.test('run_ünï-1')).toBe(true);
    for (const bad of ['', '_a', '-a', 'a.b', 'a/b', 'a b', `a${'b'.repeat(256)}`, 'abc\n']) expect(runIdProblem(bad)).toBeDefined();
  });

  it('the store refuses bad names itself (defence in depth), before any write', async () => {
    const { box, root } = sandbox();
    const store = new FileStore(root);
    await expect(store.createExperiment('e', null, [{ key: '../../../../x', value: 'v' }])).rejects.toThrow(ValidationError);
    await expect(store.getRun('../../../../x')).rejects.toThrow('run id "../../../../x" is not a valid MLflow run id');
    await expect(store.updateRun('../x', 'FINISHED')).rejects.toThrow(ValidationError);
    const exp = await store.createExperiment('e', null, []);
    await expect(store.createRun({ experimentId: '../..', startTime: 0, runName: 'r', tags: [] })).rejects.toThrow('experiment id "../.." is not a valid MLflow experiment id');
    const run = await store.createRun({ experimentId: exp, startTime: 0, runName: 'r', tags: [] });
    const err = (await store.logBatch(run.runId, { metrics: [{ key: '../../../../../../y', value: 1, timestamp: 0, step: 0 }], params: [{ key: 'ok', value: '1' }] }).catch((e: unknown) => e)) as ValidationError;
    expect(err).toBeInstanceOf(ValidationError);
    expect(err.issues).toMatchObject([{ pointer: '/..~1..~1..~1..~1..~1..~1y', code: 'mlflow-key' }]);
    // Nothing outside the store, and the refused batch wrote nothing (not even its valid param).
    expect(tree(box).filter((p) => !p.startsWith(path.join('a', 'b', 'c', 'd', 'mlruns')))).toEqual(['a', 'a/b', 'a/b/c', 'a/b/c/d'].map((p) => p.split('/').join(path.sep)));
    expect(fs.existsSync(path.join(root, exp, run.runId, 'params', 'ok'))).toBe(false);
    await store.close();
  });
});

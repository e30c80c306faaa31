// The intermediate model: every decision (names, defaults, env precedence) in one table.
import { describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { loadSpec } from '../../generator/load.js';
import { buildModel } from '../../generator/model.js';
import { ROOT } from '../support/helpers.js';

const spec = await loadSpec(join(ROOT, 'spec'));
const model = buildModel(spec, join(ROOT, 'generated'));
const byName = Object.fromEntries(model.backends.map((b) => [b.name, b]));

describe('model: backends', () => {
  it('has the Accelerate backends in Accelerate order', () => {
    expect(model.backends.map((b) => b.name)).toEqual(['tensorboard', 'wandb', 'comet_ml', 'aim', 'mlflow', 'dvclive', 'trackio']);
  });

  it.each([
    // name, class, requires dir, main only, project option, images, tables, artifacts
    ['tensorboard', 'TensorBoardTracker', true, true, 'run_name', true, false, false],
    ['wandb', 'WandBTracker', false, false, 'run_name', true, true, false],
    ['comet_ml', 'CometMLTracker', false, true, 'run_name', true, true, true],
    ['aim', 'AimTracker', true, true, 'run_name', true, false, false],
    ['mlflow', 'MLflowTracker', false, true, 'experiment_name', true, true, true],
  ] as const)('%s → %s', (name, cls, dir, main, project, images, tables, artifacts) => {
    const b = byName[name]!;
    expect(b.className).toBe(cls);
    expect(b.requiresLoggingDirectory).toBe(dir);
    expect(b.mainProcessOnly).toBe(main);
    expect(b.projectNameOption).toBe(project);
    expect(b.capabilities).toEqual({ log_images: images, log_table: tables, artifacts });
    expect(b.optionsType).toBe(`${cls.replace(/Tracker$/, '')}Options`);
    expect(b.validatorName).toBe(`validate${cls.replace(/Tracker$/, '')}Options`);
    expect(b.classFile).toBe(`${name}.gen.ts`);
    expect(b.driverImport).toBe(`../runtime/backends/${name}/index.js`);
  });
});

describe('model: environment precedence', () => {
  const rows = model.backends.flatMap((b) => b.options.flatMap((o) => o.env.map((e) => [b.name, o.name, e.var, e.parse, e.overrides] as const)));

  it('decides env-wins only for the four variables upstream lets override arguments', () => {
    expect(rows.filter((r) => r[4]).map((r) => r[2]).sort()).toEqual(['MLFLOW_EXPERIMENT_NAME', 'MLFLOW_NESTED_RUN', 'MLFLOW_RUN_ID', 'MLFLOW_TAGS']);
  });

  it('maps every variable to its option and parse form', () => {
    expect(rows).toEqual([
      ['wandb', 'run_name', 'WANDB_PROJECT', 'string', false],
      ['wandb', 'entity', 'WANDB_ENTITY', 'string', false],
      ['wandb', 'name', 'WANDB_NAME', 'string', false],
      ['wandb', 'id', 'WANDB_RUN_ID', 'string', false],
      ['wandb', 'group', 'WANDB_RUN_GROUP', 'string', false],
      ['wandb', 'job_type', 'WANDB_JOB_TYPE', 'string', false],
      ['wandb', 'tags', 'WANDB_TAGS', 'list', false],
      ['wandb', 'notes', 'WANDB_NOTES', 'string', false],
      ['wandb', 'mode', 'WANDB_MODE', 'string', false],
      ['wandb', 'dir', 'WANDB_DIR', 'string', false],
      ['wandb', 'resume', 'WANDB_RESUME', 'string', false],
      ['wandb', 'api_key', 'WANDB_API_KEY', 'string', false],
      ['wandb', 'base_url', 'WANDB_BASE_URL', 'string', false],
      ['comet_ml', 'project_name', 'COMET_PROJECT_NAME', 'string', false],
      ['comet_ml', 'workspace', 'COMET_WORKSPACE', 'string', false],
      ['comet_ml', 'experiment_key', 'COMET_EXPERIMENT_KEY', 'string', false],
      ['comet_ml', 'online', 'COMET_START_ONLINE', 'boolean', false],
      ['comet_ml', 'mode', 'COMET_START_MODE', 'string', false],
      ['comet_ml', 'offline_directory', 'COMET_OFFLINE_DIRECTORY', 'string', false],
      ['comet_ml', 'api_key', 'COMET_API_KEY', 'string', false],
      ['comet_ml', 'url_override', 'COMET_URL_OVERRIDE', 'string', false],
      ['mlflow', 'experiment_name', 'MLFLOW_EXPERIMENT_NAME', 'string', true],
      ['mlflow', 'run_id', 'MLFLOW_RUN_ID', 'string', true],
      ['mlflow', 'tags', 'MLFLOW_TAGS', 'json', true],
      ['mlflow', 'nested_run', 'MLFLOW_NESTED_RUN', 'boolean', true],
      ['mlflow', 'tracking_uri', 'MLFLOW_TRACKING_URI', 'string', false],
      ['mlflow', 'spool_dir', 'TRACKSPEC_SPOOL_DIR', 'string', false],
      ['dvclive', 'resume', 'DVCLIVE_RESUME', 'boolean', false],
      ['trackio', 'trackio_dir', 'TRACKIO_DIR', 'string', false],
    ]);
  });

  it('marks secrets and JSON-string options', () => {
    const flags = model.backends.flatMap((b) => b.options.filter((o) => o.secret || o.jsonString).map((o) => `${b.name}.${o.name}:${o.secret ? 'secret' : 'json'}`));
    expect(flags).toEqual(['wandb.api_key:secret', 'comet_ml.api_key:secret', 'mlflow.tags:json']);
  });
});

describe('model: options and defaults', () => {
  it.each([
    ['tensorboard', { flush_secs: 120, max_queue: 10, filename_suffix: '', purge_step: null }, ['run_name', 'logging_dir']],
    ['mlflow', { experiment_name: null, logging_dir: null, run_id: null, tags: null, nested_run: false, run_name: null, description: null, tracking_uri: null, retry_deadline_secs: 60, flush_interval_secs: 1, write_ahead: true, spool_dir: null }, []],
    ['aim', { run_name: null, experiment: null, run_hash: null, system_tracking_interval: null, log_system_params: false, retry_deadline_secs: 60, flush_interval_secs: 1, write_ahead: true }, ['logging_dir']],
  ] as const)('%s defaults and required options', (name, defaults, required) => {
    const b = byName[name]!;
    expect(Object.fromEntries(b.options.filter((o) => o.hasDefault).map((o) => [o.name, o.default]))).toEqual(defaults);
    expect(b.options.filter((o) => o.required).map((o) => o.name)).toEqual(required);
  });

  it('writes where each value comes from into the option docs', () => {
    const tags = byName.mlflow!.options.find((o) => o.name === 'tags')!;
    expect(tags.doc).toContain('Environment: `MLFLOW_TAGS` (json, overrides an explicit option as upstream).');
    expect(tags.doc).toContain('Default: `null`.');
    const key = byName.wandb!.options.find((o) => o.name === 'api_key')!;
    expect(key.doc).not.toContain('Default');
  });

  it('strips x- extension keywords from the schemas handed to emitters', () => {
    expect(JSON.stringify(model.backends.map((b) => b.optionsSchema))).not.toMatch(/"x-/);
  });

  it('value rules are complete for every backend', () => {
    for (const b of model.backends) {
      expect(Object.keys(b.valueRules.log)).toEqual(['number', 'boolean', 'string', 'null', 'array', 'numeric_object', 'object', 'other']);
      expect(Object.keys(b.valueRules.storeInitConfiguration)).toHaveLength(8);
    }
  });

  it('hashes the spec independent of absolute paths', () => {
    expect(model.specHash).toMatch(/^[0-9a-f]{64}$/);
    expect(buildModel(spec, join(ROOT, 'generated')).specHash).toBe(model.specHash);
  });
});

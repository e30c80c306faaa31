// Config files: `trackspec validate` and loadTrackingConfig / Tracking.fromConfig.
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { TensorBoardTracker, Tracking, ValidationError, loadTrackingConfig } from '../../generated/index.gen.js';
import { listEventFiles } from '../../runtime/backends/tensorboard/index.js';
import { ROOT, runCli, tempDir } from '../support/helpers.js';

const FIX = 'test/fixtures/configs';

describe('trackspec validate', () => {
  it('a valid file exits 0', () => {
    const r = runCli(['validate', `${FIX}/valid.yaml`]);
    expect(r.code).toBe(0);
    expect(r.stdout).toBe('');
    expect(r.stderr).toBe('1 file(s) valid\n');
  });

  it('YAML: every problem with exact line:col, did-you-mean, one line each', () => {
    const r = runCli(['validate', `${FIX}/invalid.yaml`]);
    expect(r.code).toBe(1);
    expect(r.stdout.trimEnd().split('\n')).toEqual([
      // anyOf (name | list of names) collapsed to the best match: the bad list item.
      `${FIX}/invalid.yaml:2:25  error  /log_with/1  must be one of "tensorboard", "wandb", "comet_ml", "aim", "mlflow", "dvclive", "trackio", "all"; got "mlfow"`,
      `${FIX}/invalid.yaml:3:14  error  /logging_dir  must be string or null, got integer 42`,
      `${FIX}/invalid.yaml:6:5  error  /init_kwargs/tensorboard/flush_sec  unknown tensorboard option "flush_sec"; did you mean "flush_secs"?`,
      `${FIX}/invalid.yaml:8:17  error  /init_kwargs/mlflow/nested_run  must be boolean, got string "no"`,
      `${FIX}/invalid.yaml:9:11  error  /init_kwargs/mlflow/tags  must be object or string or null, got array ["a","b"]`,
      `${FIX}/invalid.yaml:10:3  error  /init_kwargs/neptune  unknown backend "neptune"; expected one of "tensorboard", "wandb", "comet_ml", "aim", "mlflow", "dvclive", "trackio"`,
    ]);
    expect(r.stderr).toBe('6 problem(s) in 1 of 1 file(s)\n');
  });

  it('JSON: same rules, exact positions', () => {
    const r = runCli(['validate', `${FIX}/invalid.json`]);
    expect(r.code).toBe(1);
    expect(r.stdout.trimEnd().split('\n')).toEqual([
      `${FIX}/invalid.json:3:19  error  /project_name  must NOT have fewer than 1 characters; got ""`,
      `${FIX}/invalid.json:6:24  error  /init_kwargs/wandb/mode  must be one of "online", "offline", "disabled"; got "shared"`,
      `${FIX}/invalid.json:6:42  error  /init_kwargs/wandb/tags  must be array or null, got string "a,b"`,
      `${FIX}/invalid.json:8:3  error  /extra  unknown key "extra"; expected one of "$schema", "project_name", "log_with", "logging_dir", "config", "init_kwargs"`,
    ]);
  });

  it('--format json and --format github', () => {
    const j = runCli(['validate', '--format', 'json', `${FIX}/invalid.json`]);
    expect(j.code).toBe(1);
    const rows = JSON.parse(j.stdout);
    expect(rows[1]).toEqual({
      file: `${FIX}/invalid.json`, line: 6, col: 24, severity: 'error', code: 'enum',
      pointer: '/init_kwargs/wandb/mode', message: 'must be one of "online", "offline", "disabled"; got "shared"',
    });
    const g = runCli(['validate', '--format', 'github', `${FIX}/invalid.json`]);
    expect(g.stdout.split('\n')[1]).toBe(
      `::error file=${FIX}/invalid.json,line=6,col=24,title=enum::/init_kwargs/wandb/mode must be one of "online", "offline", "disabled"; got "shared"`,
    );
  });

  it('a file that does not parse is located; unreadable files and bad usage exit 2', () => {
    const p = runCli(['validate', `${FIX}/broken.yaml`]);
    expect(p.code).toBe(1);
    expect(p.stdout).toMatch(new RegExp(`^${FIX}/broken\\.yaml:3:1  error  /  `));
    const missing = runCli(['validate', `${FIX}/valid.yaml`, 'nope.yaml']);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain('cannot read nope.yaml: ENOENT');
    expect(runCli(['validate']).code).toBe(2);
    expect(runCli(['validate', '--format', 'xml', `${FIX}/valid.yaml`]).code).toBe(2);
  });

  it('colour only on a TTY and never with NO_COLOR', () => {
    const r = runCli(['validate', `${FIX}/invalid.json`], { env: { NO_COLOR: undefined, FORCE_COLOR: '1' } });
    expect(r.stdout).not.toContain('\u001b['); // not a TTY
  });
});

describe('loadTrackingConfig / Tracking.fromConfig', () => {
  it('loads, validates and starts trackers from a YAML file', async () => {
    const dir = tempDir();
    const file = join(dir, 'trackers.yaml');
    writeFileSync(file, readFileSync(join(ROOT, FIX, 'tb.yaml'), 'utf8').replace('PLACEHOLDER', dir));
    const config = await loadTrackingConfig(file);
    expect(config.log_with).toBe('tensorboard');
    const tr = await Tracking.fromConfig(config);
    expect(tr.getTracker('tensorboard')).toBeInstanceOf(TensorBoardTracker);
    tr.log({ loss: 1 }, 0);
    await tr.endTraining();
    expect(listEventFiles(join(dir, 'from-config'))).toHaveLength(1);
  });

  it('invalid files throw a ValidationError with located issues', async () => {
    const err = (await loadTrackingConfig(join(ROOT, FIX, 'invalid.yaml')).catch((e: unknown) => e)) as ValidationError;
    expect(err).toBeInstanceOf(ValidationError);
    expect(err.issues).toHaveLength(6);
    expect(err.issues[2]).toMatchObject({ line: 6, col: 5, code: 'unknown-key', message: 'unknown tensorboard option "flush_sec"; did you mean "flush_secs"?' });
    expect(err.message).toContain('invalid.yaml:6:5  /init_kwargs/tensorboard/flush_sec');
  });
});

// Generated tracker classes on the runtime: options, value rules, lifecycle, gating by rank.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, expectTypeOf, it, vi } from 'vitest';
import {
  AimTracker, BackendError, CometMLTracker, ConfigError, GeneralTracker, MLflowTracker, TensorBoardTracker, TrackspecError, ValidationError, WandBTracker,
  processRank, setWarningHandler,
} from '../../generated/index.gen.js';
import { EchoTracker } from '../fixtures/custom-out/index.gen.js';
import { unavailableDriver } from '../../runtime/core/driver.js';
import type { SummaryWriter } from '../../runtime/backends/tensorboard/index.js';
import { tempDir } from '../support/helpers.js';

const RANK_VARS = ['RANK', 'SLURM_PROCID', 'OMPI_COMM_WORLD_RANK', 'PMI_RANK', 'LOCAL_RANK'];
let warnings: string[] = [];
beforeEach(() => {
  for (const v of [...RANK_VARS, 'ECHO_RUN_NAME', 'ECHO_LEVEL', 'ECHO_MODE', 'MLFLOW_EXPERIMENT_NAME', 'MLFLOW_NESTED_RUN']) vi.stubEnv(v, undefined);
  warnings = [];
  setWarningHandler((m) => warnings.push(m));
});
afterEach(() => {
  vi.unstubAllEnvs();
  setWarningHandler(undefined);
});

const lines = (path: string) => readFileSync(path, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);

describe('public API shape', () => {
  it('matches the documented contract', async () => {
    const t = new MLflowTracker({ experiment_name: 'exp', tags: { team: 'a' }, nested_run: false });
    expect(t.name).toBe('mlflow');
    expect(t.requiresLoggingDirectory).toBe(false);
    expect(t.mainProcessOnly).toBe(true);
    expect(t).toBeInstanceOf(GeneralTracker);
    expect(new WandBTracker().mainProcessOnly).toBe(false);
    expect(new TensorBoardTracker({ run_name: 'r', logging_dir: '/tmp' }).requiresLoggingDirectory).toBe(true);
    expectTypeOf<TensorBoardTracker['tracker']>().toEqualTypeOf<SummaryWriter>();
    expectTypeOf<ConstructorParameters<typeof MLflowTracker>[0]>().toMatchTypeOf<{ nested_run?: boolean } | undefined>();
  });

  it('every built-in backend is available; a driver made with unavailableDriver fails at start() and never pretends to log', async () => {
    for (const C of [TensorBoardTracker, CometMLTracker, AimTracker, MLflowTracker]) expect(C.available).toBe(true);
    const d = unavailableDriver('x', 'issue #99');
    expect(d.available).toBe(false);
    await expect(d.start({}, undefined as never)).rejects.toThrow(BackendError);
    await expect(d.start({}, undefined as never)).rejects.toThrow(/x transport is not built in this version of trackspec \(tracked in issue #99\); nothing was logged/);
    expect(() => new AimTracker({ logging_dir: 'aim://127.0.0.1:1' }).log({ loss: 1 })).toThrow(/before start\(\)/);
  });
});

describe('options', () => {
  it('unknown option → ConfigError with did-you-mean', () => {
    const make = () => new MLflowTracker({ experiment_nam: 'x' } as never);
    expect(make).toThrow(ConfigError);
    expect(make).toThrow('MLflowTracker: unknown option "experiment_nam"; did you mean "experiment_name"?');
    expect(() => make()).toThrow(expect.objectContaining({ option: 'experiment_nam' }));
  });

  it('wrong type names the option, expected type and the env var that could also set it', () => {
    expect(() => new MLflowTracker({ nested_run: 'yes' } as never)).toThrow(
      'MLflowTracker: option "nested_run" (can also be set with MLFLOW_NESTED_RUN): must be boolean, got string "yes"',
    );
  });

  it('several problems are reported together', () => {
    let err: ConfigError | undefined;
    try {
      new TensorBoardTracker({ run_name: 3, flush_secs: -1, colour: 'x' } as never);
    } catch (e) {
      err = e as ConfigError;
    }
    expect(err).toBeInstanceOf(ConfigError);
    expect(err!.issues.map((i) => i.code).sort()).toEqual(['exclusiveMinimum', 'missing', 'type', 'unknown-key']);
    expect(err!.message).toContain('missing required option "logging_dir"');
    expect(err!.message).toContain('unknown option "colour"');
  });

  it('enum values are listed', () => {
    expect(() => new WandBTracker({ mode: 'shared' } as never)).toThrow('must be one of "online", "offline", "disabled"; got "shared"');
  });

  it('explicit null means "no value" and still validates', () => {
    expect(new MLflowTracker({ run_name: null }).options.run_name).toBeNull();
  });
});

describe('lifecycle and value rules (fixture backend with a real driver)', () => {
  it('start is lazy and idempotent; log/flush/finish write through the driver', async () => {
    const path = join(tempDir(), 'echo.jsonl');
    const t = new EchoTracker({ path, run_name: 'r1' });
    expect(() => t.tracker).toThrow(/available after `await tracker.start\(\)`/);
    await Promise.all([t.start(), t.start()]);
    await t.start();
    await t.storeInitConfiguration({ lr: 0.001, layers: 4, optimizer: 'adam', warmup: null });
    const values = { loss: 0.25, acc: 0.9 };
    t.log(values, 10);
    values.loss = 99; // the caller may reuse its object
    t.log({ loss: 0.2 }, undefined, { note: 'k' });
    t.logTable('preds', { columns: ['a'], data: [[1]] }, 3);
    await t.flush();
    expect(t.tracker.lines).toBe(4);
    await t.finish();
    await t.finish();
    expect(lines(path)).toEqual([
      { run: 'r1', config: { lr: 0.001, layers: 4, optimizer: 'adam', warmup: null } },
      { run: 'r1', log: { loss: 0.25, acc: 0.9 }, step: 10, kwargs: null },
      { run: 'r1', log: { loss: 0.2 }, step: null, kwargs: { note: 'k' } },
      { run: 'r1', table: 'preds', columns: ['a'], data: [[1]], step: 3 },
      { run: 'r1', finished: true },
    ]);
    expect(() => t.log({ loss: 1 })).toThrow(new TrackspecError('EchoTracker.log() after finish(); create a new tracker'));
  });

  it('warn-rule values are skipped and warned once per key; the rest is logged', async () => {
    const path = join(tempDir(), 'echo.jsonl');
    const t = new EchoTracker({ path });
    await t.start();
    t.log({ a: 1, b: null, c: [1, 2], d: { x: 1 }, e: { x: 'not numeric' } }, 1);
    t.log({ a: 2, b: null }, 2);
    await t.finish();
    expect(lines(path).slice(0, 2).map((l) => l.log)).toEqual([{ a: 1, d: { x: 1 } }, { a: 2 }]);
    expect(warnings).toEqual([
      'EchoTracker.log(): skipped "b": a null is not supported by this backend (warned once per key)',
      'EchoTracker.log(): skipped "c": an array is not supported by this backend (warned once per key)',
      'EchoTracker.log(): skipped "e": an object is not supported by this backend (warned once per key)',
    ]);
  });

  it('error-rule values throw a ValidationError at the call and nothing is logged', async () => {
    const path = join(tempDir(), 'echo.jsonl');
    const t = new EchoTracker({ path });
    await t.start();
    let err: ValidationError | undefined;
    try {
      t.log({ ok: 1, when: new Date(0), f: () => 1 }, 1);
    } catch (e) {
      err = e as ValidationError;
    }
    expect(err).toBeInstanceOf(ValidationError);
    expect(err!.issues).toEqual([
      { pointer: '/when', code: 'unsupported-value', message: '"when" is a Date, which this backend does not accept' },
      { pointer: '/f', code: 'unsupported-value', message: '"f" is a function, which this backend does not accept' },
    ]);
    await t.finish();
    expect(lines(path)).toEqual([{ run: null, finished: true }]);
  });

  it('bad steps and non-object values are ValidationErrors', async () => {
    const t = new EchoTracker({ path: join(tempDir(), 'e.jsonl') });
    await t.start();
    for (const step of [-1, 1.5, Number.NaN, 2 ** 53]) expect(() => t.log({ a: 1 }, step)).toThrow(ValidationError);
    expect(() => t.log([1, 2] as never)).toThrow('EchoTracker.log(): values must be a plain object of name → value');
    await expect(t.storeInitConfiguration('x' as never)).rejects.toThrow(ValidationError);
    await t.finish();
  });

  it('storeInitConfiguration never mutates the caller object', async () => {
    const t = new EchoTracker({ path: join(tempDir(), 'e.jsonl') });
    const config = Object.freeze({ a: 1, nested: Object.freeze({ b: 2 }) });
    await t.storeInitConfiguration(config);
    await t.finish();
    expect(config).toEqual({ a: 1, nested: { b: 2 } });
  });

  it('driver failures surface as BackendError from flush/finish', async () => {
    const dir = tempDir();
    const t = new EchoTracker({ path: join(dir, 'missing-dir', 'e.jsonl') });
    await t.start();
    t.log({ a: 1 });
    await expect(t.flush()).rejects.toThrow(BackendError);
    await expect(t.flush()).resolves.toBeUndefined();
  });
});

describe('main-process gating', () => {
  it.each([
    [{ RANK: '1' }, 1],
    [{ LOCAL_RANK: '2' }, 2],
    [{ SLURM_PROCID: '3' }, 3],
    [{ OMPI_COMM_WORLD_RANK: '4' }, 4],
    [{ PMI_RANK: '5' }, 5],
    [{ RANK: '0', LOCAL_RANK: '1' }, 0],
    [{ SLURM_PROCID: '0', LOCAL_RANK: '3' }, 0],
    [{}, 0],
  ])('%o → rank %i', (env, rank) => {
    for (const [k, v] of Object.entries(env)) vi.stubEnv(k, v);
    expect(processRank()).toBe(rank);
  });

  it('a bad rank variable is a ConfigError naming it', () => {
    vi.stubEnv('RANK', 'one');
    expect(() => processRank()).toThrow(/environment variable RANK must be a non-negative integer process rank; got "one"/);
  });

  it('on rank 1 every method of a main-process-only tracker is a no-op', async () => {
    vi.stubEnv('RANK', '1');
    const path = join(tempDir(), 'e.jsonl');
    const t = new EchoTracker({ path });
    expect(t.isGated).toBe(true);
    await t.start();
    await t.storeInitConfiguration({ a: 1 });
    t.log({ a: 1 }, 1);
    t.logTable('x', {});
    await t.flush();
    await t.finish();
    expect(() => readFileSync(path)).toThrow(/ENOENT/);
    // Aim is main-process-only: no BackendError (its transport is not built) because nothing runs on rank 1.
    await expect(new AimTracker({ logging_dir: 'aim://127.0.0.1:1' }).start()).resolves.toBeUndefined();
  });

  it('W&B is not main-process-only (as upstream): it runs on rank 1', async () => {
    vi.stubEnv('RANK', '1');
    vi.stubEnv('WANDB_API_KEY', undefined);
    const t = new WandBTracker();
    expect(t.isGated).toBe(false);
    await expect(t.start()).rejects.toThrow(/WANDB_API_KEY/); // it really starts (and wants a key)
  });
});

// Tracking: Accelerate's orchestration rules, minus upstream's bugs.
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import {
  BackendError, ConfigError, GeneralTracker, TensorBoardTracker, Tracking, TrackioTracker, setWarningHandler, type Values,
} from '../../generated/index.gen.js';
import { listEventFiles, readEvents, scalarOf } from '../../runtime/backends/tensorboard/index.js';
import { tempDir } from '../support/helpers.js';

/** A user-written tracker that records its calls (custom GeneralTracker subclass). */
class Recorder extends GeneralTracker<string[]> {
  static readonly trackerName: string = 'recorder';
  static readonly requiresLoggingDirectory: boolean = false;
  readonly name: string = 'recorder';
  readonly requiresLoggingDirectory = false;
  readonly calls: string[] = [];
  readonly options: Values;
  constructor(options: Values = {}) {
    super();
    this.options = options;
  }
  get tracker() {
    return this.calls;
  }
  override async start() {
    this.calls.push('start');
  }
  override async storeInitConfiguration(values: Values) {
    this.calls.push(`config ${JSON.stringify(values)}`);
    (values as Record<string, unknown>).mutated = true; // a rude tracker must not affect others
  }
  override log(values: Values, step?: number, kwargs?: Values) {
    this.calls.push(`log ${JSON.stringify(values)} ${step} ${JSON.stringify(kwargs ?? null)}`);
  }
  override async finish() {
    this.calls.push('finish');
  }
}

class DirRecorder extends Recorder {
  static override readonly trackerName = 'dir_recorder';
  static override readonly requiresLoggingDirectory = true;
  override readonly name: string = 'dir_recorder';
}

let warnings: string[] = [];
beforeEach(() => {
  for (const v of ['RANK', 'LOCAL_RANK', 'SLURM_PROCID', 'OMPI_COMM_WORLD_RANK', 'PMI_RANK', 'MLFLOW_EXPERIMENT_NAME']) vi.stubEnv(v, undefined);
  warnings = [];
  setWarningHandler((m) => warnings.push(m));
});
afterEach(() => {
  vi.unstubAllEnvs();
  setWarningHandler(undefined);
  Tracking.unregisterTracker('recorder');
  Tracking.unregisterTracker('dir_recorder');
});

describe('log_with', () => {
  it('unknown names throw, listing the valid names', () => {
    const make = () => new Tracking({ log_with: 'tensorbaord' });
    expect(make).toThrow(ConfigError);
    expect(make).toThrow(`unsupported tracker "tensorbaord"; choose from 'tensorboard', 'wandb', 'comet_ml', 'aim', 'mlflow', 'dvclive', 'trackio', 'all'`);
    expect(() => new Tracking({ log_with: 'TensorBoard' })).toThrow(ConfigError); // exact, case-sensitive
  });

  it('a backend that requires a logging directory without one throws — also under "all"', () => {
    expect(() => new Tracking({ log_with: 'tensorboard' })).toThrow(
      "logging with 'tensorboard' requires a logging directory: pass logging_dir (or project_dir) to Tracking",
    );
    expect(() => new Tracking({ log_with: 'all' })).toThrow("logging with 'tensorboard' requires a logging directory: pass logging_dir (or project_dir) to Tracking (it was selected by 'all')");
    expect(() => new Tracking({ log_with: ['aim'], project_dir: '/tmp' })).not.toThrow();
  });

  it('"all" expands to the available built-ins; duplicates are removed', () => {
    const tr = new Tracking({ log_with: ['tensorboard', 'all', 'tensorboard', 'mlflow', 'mlflow'], logging_dir: '/tmp' });
    expect(tr.logWith.map((e) => (e as { trackerName: string }).trackerName)).toEqual([
      'tensorboard', 'wandb', 'comet_ml', 'aim', 'mlflow', 'dvclive',
      // trackio needs node:sqlite (Node.js >= 22.13): 'all' leaves it out elsewhere, as Accelerate skips unavailable trackers
      ...(TrackioTracker.available ? ['trackio'] : []),
    ]);
  });

  it('custom GeneralTracker instances are accepted and deduplicated', () => {
    const r = new Recorder();
    const tr = new Tracking({ log_with: [r, 'tensorboard', r], logging_dir: '/tmp' });
    expect(tr.logWith).toHaveLength(2);
    expect(tr.logWith[0]).toBe(r);
  });

  it('custom instances missing required members are rejected', () => {
    const bad = Object.create(GeneralTracker.prototype) as GeneralTracker;
    expect(() => new Tracking({ log_with: [bad] })).toThrow('is missing required members: name, requiresLoggingDirectory, tracker');
  });

  it('custom classes can be registered by name; collisions warn', () => {
    Tracking.registerTracker(Recorder);
    expect(Tracking.validNames()).toContain('recorder');
    expect(new Tracking({ log_with: 'recorder' }).logWith).toEqual([Recorder]);
    Tracking.registerTracker(Recorder);
    expect(warnings).toEqual([]);
    Tracking.registerTracker(class Other extends Recorder {});
    expect(warnings[0]).toMatch(/Other replaces the tracker registered as 'recorder'/);
    expect(() => Tracking.registerTracker({} as never)).toThrow('registerTracker expects a class extending GeneralTracker');
  });

  it('registered classes get the logging-dir guard too', () => {
    Tracking.registerTracker(DirRecorder);
    expect(() => new Tracking({ log_with: 'dir_recorder' })).toThrow(/'dir_recorder' requires a logging directory/);
  });

  it('unknown Tracking options are rejected', () => {
    expect(() => new Tracking({ log_width: 'mlflow' } as never)).toThrow(/unknown option "log_width"/);
  });
});

describe('initTrackers / log / getTracker / endTraining', () => {
  it('passes project_name to each backend, init_kwargs win, config is copied, logs reach every tracker', async () => {
    Tracking.registerTracker(Recorder);
    const dir = tempDir();
    const instance = new Recorder();
    const tr = new Tracking({ log_with: ['tensorboard', 'recorder', instance], logging_dir: dir });
    const config = { lr: 0.01, nested: { depth: 2 } };
    await tr.initTrackers('proj', config, { recorder: { colour: 'blue' }, tensorboard: { flush_secs: 5 } });
    expect(config).toEqual({ lr: 0.01, nested: { depth: 2 } });
    const byName = tr.getTracker('recorder') as Recorder;
    expect(byName.options).toEqual({ colour: 'blue', run_name: 'proj' });
    const tb = tr.getTracker('tensorboard') as TensorBoardTracker;
    expect(tb.options).toMatchObject({ run_name: 'proj', logging_dir: dir, flush_secs: 5 });
    expect(tr.getTracker('tensorboard', { unwrap: true })).toBe(tb.tracker);

    tr.log({ loss: 0.5 }, 7, { recorder: { k: 1 } });
    await tr.endTraining();
    expect(byName.calls).toEqual(['start', `config {"lr":0.01,"nested":{"depth":2}}`, 'log {"loss":0.5} 7 {"k":1}', 'finish']);
    // log kwargs are keyed by tracker.name, so the instance (also named 'recorder') gets them too.
    expect(instance.calls[2]).toBe('log {"loss":0.5} 7 {"k":1}');
    const files = listEventFiles(join(dir, 'proj'));
    const events = (await readEvents(files[0]!)).events;
    const loss = events.flatMap((e) => (e.summary ?? []).filter((v) => v.tag === 'loss').map((v) => [e.step, scalarOf(v)]));
    expect(loss).toEqual([[7, 0.5]]);
  });

  it('init_kwargs override project_name and logging_dir for their backend', async () => {
    const a = tempDir();
    const b = tempDir();
    const tr = new Tracking({ log_with: 'tensorboard', logging_dir: a });
    await tr.initTrackers('proj', null, { tensorboard: { run_name: 'mine', logging_dir: b } });
    await tr.endTraining();
    expect(existsSync(join(b, 'mine'))).toBe(true);
    expect(readdirSync(a)).toEqual([]);
  });

  it('init_kwargs for a backend not in log_with warn', async () => {
    const tr = new Tracking({ log_with: [] });
    await tr.initTrackers('p', null, { wandb: {} });
    expect(warnings).toEqual(["initTrackers: init_kwargs.wandb is ignored: 'wandb' is not in log_with"]);
  });

  it('a backend that fails to start fails initTrackers; started trackers are finished', async () => {
    const r = new Recorder();
    const tr = new Tracking({ log_with: [r, 'aim'], logging_dir: '/tmp' });
    await expect(tr.initTrackers('p')).rejects.toThrow(/AimTracker: logging_dir '\/tmp' is a directory.*aim server --repo \/tmp/);
    expect(r.calls).toEqual(['start', 'finish']);
    expect(tr.trackers).toEqual([]);
  });

  it('getTracker of an unknown name explains what is started', async () => {
    const tr = new Tracking({ log_with: [new Recorder()] });
    expect(() => tr.getTracker('recorder')).toThrow('"recorder" is not a started tracker; started: none (call initTrackers first)');
    await tr.initTrackers('p');
    expect(() => tr.getTracker('wandb')).toThrow(`"wandb" is not a started tracker; started: 'recorder'`);
  });

  it('endTraining finishes every tracker even if one fails, then reports', async () => {
    class Failing extends Recorder {
      override readonly name = 'failing';
      override async finish() {
        throw new BackendError('failing', 'disk full');
      }
    }
    const ok = new Recorder();
    const tr = new Tracking({ log_with: [new Failing(), ok] });
    await tr.initTrackers('p');
    await expect(tr.endTraining()).rejects.toThrow('failing: disk full');
    expect(ok.calls.at(-1)).toBe('finish');
  });

  it('off the main process: initTrackers is a no-op and getTracker returns a blank tracker with every method', async () => {
    vi.stubEnv('RANK', '3');
    const r = new Recorder();
    const tr = new Tracking({ log_with: [r] });
    await tr.initTrackers('p', { a: 1 });
    expect(r.calls).toEqual([]);
    const blank = tr.getTracker('anything') as GeneralTracker & { logImages(): void; logTable(): void };
    expect(() => {
      blank.log({ a: 1 });
      blank.logImages();
      blank.logTable();
    }).not.toThrow();
    expect(blank.tracker).toBeUndefined();
    expect(tr.getTracker('x', { unwrap: true })).toBeUndefined();
    await tr.endTraining();
  });
});

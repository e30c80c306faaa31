/**
 * DVCLive backend: the files dvclive 3.49.0 writes, which DVC, DVC Studio and the VS Code DVC
 * extension read (`<dir>/params.yaml`, `<dir>/metrics.json`, `<dir>/plots/metrics/<name>.tsv`,
 * `dvc.yaml`), with Accelerate's DVCLiveTracker calls on top:
 *
 * - `start()`: `Live(dir, resume, dvcyaml)` — clears dvclive's files in `dir` unless resuming.
 * - `storeInitConfiguration(values)`: `live.log_params(values)`.
 * - `log(values, step, kwargs)`: `live.step = step` when a step is given, `live.log_metric(k, v,
 *   **kwargs)` per value (kwargs `timestamp` and `plot`), then `live.next_step()`: every call
 *   advances the step (two step-less calls then `step=3` give steps 0, 1, 3).
 * - `logImages(values)`: `live.log_image(name, img)` → `plots/images/<name>.png` (one image per
 *   key; a list → `<key>/<i>.png`). The step does not advance (dvclive overwrites images per name).
 * - `finish()`: `live.end()`.
 *
 * `tracker.tracker` is the `Live` writer itself.
 */
import * as path from 'node:path';
import type { BackendDriver, DriverContext, ImageData, TrackerDriver, Values } from '../../core/driver.js';
import { BackendError, ConfigError, TrackspecError } from '../../core/errors.js';
import { Live, type LogMetricOptions } from './live.js';
import type { MetricValue } from './format.js';

export { Live, WRITE_DELAY_MS } from './live.js';
export type { LiveOptions, LogMetricOptions } from './live.js';
export { nameProblem, tsvCell, jsonToken } from './format.js';

export interface DVCLiveDriverOptions {
  run_name?: string;
  dir: string;
  resume: boolean;
  dvcyaml: string | boolean | null;
  save_dvc_exp: boolean;
}

const BACKEND = 'dvclive';

function asBackendError(message: string, err: unknown): Error {
  if (err instanceof TrackspecError) return err;
  return new BackendError(BACKEND, `${message}: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
}

class DVCLiveDriver implements TrackerDriver<Live> {
  #finished = false;
  constructor(
    readonly handle: Live,
    private readonly ctx: DriverContext,
  ) {}

  #usable(what: string): boolean {
    if (!this.#finished) return true;
    this.ctx.warnOnce(`closed:${what}`, `dvclive: ${what}() after finish() was ignored`);
    return false;
  }

  #metricOptions(kwargs: Readonly<Values> | undefined): LogMetricOptions | undefined {
    if (kwargs === undefined) return undefined;
    const out: LogMetricOptions = {};
    for (const k in kwargs) {
      const v = kwargs[k];
      if ((k === 'timestamp' || k === 'plot') && typeof v === 'boolean') out[k] = v;
      else this.ctx.warnOnce(`kwarg:${k}`, `dvclive: log kwarg '${k}' is not a log_metric option (timestamp, plot: booleans) and was ignored`);
    }
    return out;
  }

  async storeInitConfiguration(values: Readonly<Values>): Promise<void> {
    if (!this.#usable('storeInitConfiguration')) return;
    this.handle.logParams(values);
    await this.flush();
  }

  log(values: Readonly<Values>, step: number | undefined, kwargs: Readonly<Values> | undefined): void {
    if (!this.#usable('log')) return;
    const live = this.handle;
    if (step !== undefined) live.step = step;
    const opts = this.#metricOptions(kwargs);
    for (const key in values) live.logMetric(key, values[key] as MetricValue, opts);
    live.nextStep();
  }

  logImages(values: Readonly<Record<string, ImageData | ImageData[]>>): void {
    if (!this.#usable('logImages')) return;
    for (const key in values) {
      const v = values[key];
      if (Array.isArray(v)) v.forEach((img, i) => this.handle.logImage(`${key}/${i}.png`, img));
      else if (v !== undefined) this.handle.logImage(key, v);
    }
  }

  async flush(): Promise<void> {
    try {
      this.handle.flush();
    } catch (err) {
      throw asBackendError('flush failed', err);
    }
  }

  async finish(): Promise<void> {
    if (this.#finished) return;
    this.#finished = true;
    try {
      this.handle.end();
    } catch (err) {
      throw asBackendError('finish failed', err);
    }
  }
}

function dvcYamlPath(value: string | boolean | null): string | null {
  if (value === null || value === false) return null;
  if (value === true) return 'dvc.yaml';
  if (path.basename(value) !== 'dvc.yaml') {
    throw new ConfigError(`DVCLiveTracker: option 'dvcyaml' must be a path to a file named dvc.yaml (got ${JSON.stringify(value)}), true, false or null`, {
      option: 'dvcyaml',
    });
  }
  return value;
}

export const driver: BackendDriver<DVCLiveDriverOptions, Live> = {
  available: true,
  start: async (options, ctx) => {
    const dvcyaml = dvcYamlPath(options.dvcyaml);
    if (options.save_dvc_exp) {
      ctx.warn("dvclive: save_dvc_exp needs DVC itself (a Git repository and `dvc exp save`); trackspec writes dvclive's files only. Run `dvc exp save` after the run to record the experiment.");
    }
    let live: Live;
    try {
      live = new Live({
        dir: options.dir,
        resume: options.resume,
        dvcyaml,
        onWriteError: (err) => ctx.warn(`dvclive: ${err.message} (kept in memory and retried; flush() reports it)`),
      });
    } catch (err) {
      throw asBackendError('start failed', err);
    }
    return new DVCLiveDriver(live, ctx);
  },
};

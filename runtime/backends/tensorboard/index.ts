/**
 * TensorBoard backend: writes tfevents files directly (no Python, no TensorFlow).
 *
 * Driver semantics (documented in the README):
 * - Run directory: `<logging_dir>/<run_name>`, created by `start()`.
 * - `log(values, step)`: numbers and booleans (true → 1, false → 0) become float32 `simple_value`
 *   scalars, all in ONE Event per call; strings become text-plugin values in the same Event;
 *   plain objects `{k: number | boolean}` follow `add_scalars` (torch): sub-run directory
 *   `<run>/<key>_<k>` (with `/` in `key` replaced by `_`), tag `key`.
 * - Steps: `step` undefined → the tracker's auto step. It starts at 0; every step-less `log()` /
 *   `logImages()` call uses the next value; an explicit step `s` sets the counter to `s + 1`.
 * - `logImages(values, step)`: a single image under key `k` → tag `k`; an array → tags
 *   `k/image/0`, `k/image/1`, ... (also for a one-element array). PNG-encoded, one Event per call.
 *   Malformed images are skipped with a warning.
 * - `storeInitConfiguration(values)`: `hparams.yml` (YAML of the values as given) in the run
 *   directory, and `_hparams_/session_start_info` in the run (see `hparams.ts` for the mapping:
 *   nested objects flattened with `/`, arrays as JSON text, null/undefined omitted with a warning).
 *   `_hparams_/experiment` (hparam infos + every scalar tag logged, so TensorBoard's HParams
 *   dashboard shows the metrics) and `_hparams_/session_end_info` (STATUS_SUCCESS) are written by
 *   `finish()`.
 * - `kwargs.walltime` (seconds) overrides the event wall time; other kwargs are ignored (warned once).
 * - `flush()` / `finish()` reject with `BackendError` on write failures; buffered data is kept
 *   and retried, and written at process exit by the exit hook.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { BackendDriver, DriverContext, ImageData, TrackerDriver, Values } from '../../core/driver.js';
import { BackendError, ConfigError, wrapBackendError } from '../../core/errors.js';
import { resolveInside } from '../../io/safe-path.js';
import { checkImage } from '../../io/image.js';
import { SummaryWriter, filenameSuffixProblem } from './summary-writer.js';
import { SessionStatus } from './hparams.js';

export { SummaryWriter } from './summary-writer.js';
export type { SummaryWriterOptions, LogValues } from './summary-writer.js';
export {
  readEvents,
  readEventsSync,
  readEventStream,
  readEventStreamSync,
  EventStream,
  EventStreamSync,
  EventFileError,
  decodeEvents,
  decodeEvent,
  readRecords,
  listEventFiles,
  scalarOf,
  textOf,
} from './reader.js';
export type {
  EventStreamOptions,
  ReadResult,
  ReadError,
  ReadErrorKind,
  RecordsResult,
  TfRecord,
  DecodedEvent,
  DecodedValue,
  DecodedTensor,
  DecodedMetadata,
  DecodedImage,
} from './reader.js';
export {
  decodeHParamsPluginData,
  flattenHparams,
  HParamDataType,
  SessionStatus,
  EXPERIMENT_TAG,
  SESSION_START_TAG,
  SESSION_END_TAG,
} from './hparams.js';
export type { DecodedHParamsPluginData, HParamValue, MetricName } from './hparams.js';
export { encodePng, decodePngRgba } from '../../io/image.js';
export { crc32c, maskedCrc32c, maskCrc, crc32cImplementation } from './crc.js';

export interface TensorBoardDriverOptions {
  run_name: string;
  logging_dir: string;
  flush_secs: number;
  max_queue: number;
  filename_suffix: string;
  purge_step?: number | null;
}

const BACKEND = 'tensorboard';

const asBackendError = (message: string, err: unknown): BackendError => wrapBackendError(BACKEND, message, err);

class TensorBoardDriver implements TrackerDriver<SummaryWriter> {
  private nextStep = 0;
  private finished = false;

  constructor(
    readonly handle: SummaryWriter,
    private readonly runDir: string,
    private readonly ctx: DriverContext,
  ) {}

  private stepFor(step: number | undefined): number {
    if (step === undefined || step === null) return this.nextStep++;
    this.nextStep = Math.trunc(step) + 1;
    return step;
  }

  private walltime(kwargs: Readonly<Values> | undefined): number | undefined {
    if (kwargs === undefined) return undefined;
    let wt: number | undefined;
    for (const k in kwargs) {
      const v = kwargs[k];
      if (k === 'walltime' && typeof v === 'number') wt = v;
      else this.ctx.warnOnce(`kwarg:${k}`, `tensorboard: log kwarg '${k}' is not supported and was ignored`);
    }
    return wt;
  }

  private usable(what: string): boolean {
    if (!this.finished) return true;
    this.ctx.warnOnce(`closed:${what}`, `tensorboard: ${what}() after finish() was ignored`);
    return false;
  }

  async storeInitConfiguration(values: Readonly<Values>): Promise<void> {
    if (!this.usable('storeInitConfiguration')) return;
    let yamlText: string;
    try {
      // Loaded here, not at import, to keep the SDK's import cheap.
      const { stringify: yamlStringify } = await import('yaml');
      yamlText = yamlStringify(values);
    } catch (err) {
      throw asBackendError('cannot serialize the hyperparameters to hparams.yml', err);
    }
    const { omitted } = this.handle.startHparamsSession(values);
    if (omitted.length > 0) {
      this.ctx.warnOnce(
        'hparams-null',
        `tensorboard: hyperparameters with null/undefined values are not shown in TensorBoard's HParams dashboard (kept in hparams.yml): ${omitted.join(', ')}`,
      );
    }
    const target = path.join(this.runDir, 'hparams.yml');
    const tmp = `${target}.${process.pid}.tmp`;
    try {
      await fs.promises.writeFile(tmp, yamlText);
      await fs.promises.rename(tmp, target);
    } catch (err) {
      await fs.promises.rm(tmp, { force: true }).catch(() => undefined);
      throw asBackendError(`cannot write ${target}`, err);
    }
    await this.flush();
  }

  log(values: Readonly<Values>, step: number | undefined, kwargs: Readonly<Values> | undefined): void {
    if (!this.usable('log')) return;
    this.handle.addValues(values, this.stepFor(step), this.walltime(kwargs));
  }

  logImages(
    values: Readonly<Record<string, ImageData | ImageData[]>>,
    step: number | undefined,
    kwargs: Readonly<Values> | undefined,
  ): void {
    if (!this.usable('logImages')) return;
    const images: Array<[string, ImageData]> = [];
    const add = (tag: string, image: ImageData): void => {
      try {
        checkImage(image, tag);
        images.push([tag, image]);
      } catch (err) {
        this.ctx.warn(`tensorboard: image '${tag}' skipped: ${err instanceof Error ? err.message : String(err)}`);
      }
    };
    for (const key in values) {
      const v = values[key];
      if (Array.isArray(v)) v.forEach((img, i) => add(`${key}/image/${i}`, img));
      else if (v !== undefined) add(key, v);
    }
    const s = this.stepFor(step);
    if (images.length > 0) this.handle.addImages(images, s, this.walltime(kwargs));
  }

  async flush(): Promise<void> {
    try {
      await this.handle.flush();
    } catch (err) {
      throw asBackendError('flush failed', err);
    }
  }

  async finish(): Promise<void> {
    if (this.finished) return;
    this.finished = true;
    try {
      if (this.handle.hasHparamsSession && !this.handle.closed) this.handle.endHparamsSession(SessionStatus.SUCCESS);
      await this.handle.close();
    } catch (err) {
      throw asBackendError('finish failed', err);
    }
  }
}

export const driver: BackendDriver<TensorBoardDriverOptions, SummaryWriter> = {
  available: true,
  start: async (options, ctx) => {
    // Names are checked before anything is created: run_name may nest ('exp/a') but must stay
    // inside logging_dir; filename_suffix must keep the event file name one file name.
    const runDir = resolveInside(
      options.logging_dir,
      options.run_name,
      (problem) => new ConfigError(`TensorBoardTracker: run_name ${JSON.stringify(options.run_name)} ${problem} (logging_dir ${options.logging_dir})`, { option: 'run_name' }),
      { root: true },
    );
    const suffixProblem = filenameSuffixProblem(options.filename_suffix);
    if (suffixProblem !== undefined) {
      throw new ConfigError(`TensorBoardTracker: filename_suffix ${JSON.stringify(options.filename_suffix)} ${suffixProblem}`, { option: 'filename_suffix' });
    }
    try {
      await fs.promises.mkdir(runDir, { recursive: true });
    } catch (err) {
      throw asBackendError(`cannot create the run directory ${runDir}`, err);
    }
    const writer = new SummaryWriter(runDir, {
      flushSecs: options.flush_secs,
      maxQueue: options.max_queue,
      filenameSuffix: options.filename_suffix,
      purgeStep: options.purge_step ?? null,
    });
    return new TensorBoardDriver(writer, runDir, ctx);
  },
};

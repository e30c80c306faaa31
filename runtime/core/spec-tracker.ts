/**
 * The base class of every generated tracker: option resolution, main-process gating, value rules,
 * start/finish lifecycle, and hand-off to the backend driver.
 */
import type { ArtifactRequest, BackendDriver, DriverContext, ImageData, TableData, TrackerDriver, Values } from './driver.js';
import { BackendError, TrackspecError, ValidationError } from './errors.js';
import { GeneralTracker } from './general-tracker.js';
import { resolveOptions, type OptionDescriptor, type Validator } from './options.js';
import { processRank } from './rank.js';
import { applyValueRules, isPlainObject, type RuleContext, type ValueRuleTable } from './values.js';
import { warn, WarnOnce } from './warnings.js';

export interface TrackerDescriptor {
  readonly name: string;
  readonly className: string;
  readonly requiresLoggingDirectory: boolean;
  readonly mainProcessOnly: boolean;
  readonly projectNameOption: string;
  readonly capabilities: { readonly log_images: boolean; readonly log_table: boolean; readonly artifacts: boolean };
  readonly valueRules: { readonly log: ValueRuleTable; readonly storeInitConfiguration: ValueRuleTable };
  readonly options: readonly OptionDescriptor[];
}

type State = 'new' | 'starting' | 'started' | 'finished';

function checkValues(where: string, values: unknown): asserts values is Values {
  if (!isPlainObject(values)) {
    throw new ValidationError(`${where}: values must be a plain object of name → value`, [
      { pointer: '', code: 'type', message: 'values must be a plain object' },
    ]);
  }
}

function checkStep(where: string, step: unknown): void {
  if (step !== undefined && !(Number.isSafeInteger(step) && (step as number) >= 0)) {
    throw new ValidationError(`${where}: step must be a non-negative integer or omitted; got ${String(step)}`, [
      { pointer: '/step', code: 'step', message: 'step must be a non-negative integer' },
    ]);
  }
}

function asBackendError(backend: string, e: unknown): Error {
  if (e instanceof TrackspecError) return e;
  return new BackendError(backend, (e as Error)?.message ?? String(e), { cause: e });
}

export abstract class SpecTracker<R, H> extends GeneralTracker<H> {
  /** The resolved options (explicit > env > default, per the spec). Printing them (console.log, util.inspect, JSON.stringify) shows secret options and URL credentials redacted; reading a property gives the real value. */
  readonly options: Readonly<R>;
  readonly #descriptor: TrackerDescriptor;
  readonly #driver: BackendDriver<R, H>;
  readonly #gated: boolean;
  readonly #warnings = new WarnOnce();
  readonly #ctx: DriverContext;
  readonly #logRules: RuleContext;
  readonly #configRules: RuleContext;
  #state: State = 'new';
  #starting: Promise<void> | undefined;
  #d: TrackerDriver<H> | undefined;

  protected constructor(descriptor: TrackerDescriptor, options: unknown, validate: Validator, driver: BackendDriver<R, H>) {
    super();
    this.#descriptor = descriptor;
    this.#driver = driver;
    this.options = resolveOptions<R>(descriptor.className, descriptor.options, options, validate);
    this.#gated = descriptor.mainProcessOnly && processRank() !== 0;
    const warnings = this.#warnings;
    const prefix = descriptor.className;
    this.#ctx = {
      backend: descriptor.name,
      className: descriptor.className,
      warnOnce: (key, message) => warnings.warn(key, `${prefix}: ${message}`),
      warn: (message) => warn(`${prefix}: ${message}`),
    };
    const warnOnce = (key: string, message: string) => warnings.warn(key, message);
    this.#logRules = { where: `${prefix}.log()`, warnOnce };
    this.#configRules = { where: `${prefix}.storeInitConfiguration()`, warnOnce };
  }

  /** True when this process is not rank 0 and the backend is main-process-only: every method is a no-op. */
  get isGated(): boolean {
    return this.#gated;
  }

  get tracker(): H {
    if (this.#d) return this.#d.handle;
    if (this.#gated) {
      throw new TrackspecError(`${this.#descriptor.className}.tracker: this process is not rank 0, so the tracker is disabled here`);
    }
    throw new TrackspecError(`${this.#descriptor.className}.tracker is available after \`await tracker.start()\``);
  }

  override start(): Promise<void> {
    if (this.#gated || this.#state === 'started') return Promise.resolve();
    if (this.#state === 'finished') {
      return Promise.reject(new TrackspecError(`${this.#descriptor.className}.start(): the tracker was finished; create a new one`));
    }
    if (!this.#starting) {
      this.#state = 'starting';
      this.#starting = this.#driver.start(this.options, this.#ctx).then(
        (d) => {
          this.#d = d;
          this.#state = 'started';
        },
        (e: unknown) => {
          this.#state = 'new';
          this.#starting = undefined;
          throw asBackendError(this.#descriptor.name, e);
        },
      );
    }
    return this.#starting;
  }

  #started(method: string): TrackerDriver<H> {
    if (this.#d && this.#state === 'started') return this.#d;
    const cls = this.#descriptor.className;
    if (this.#state === 'finished') throw new TrackspecError(`${cls}.${method}() after finish(); create a new tracker`);
    throw new TrackspecError(`${cls}.${method}() before start(); \`await tracker.start()\` first`);
  }

  override async storeInitConfiguration(values: Values): Promise<void> {
    if (this.#gated) return;
    const where = this.#configRules.where;
    checkValues(where, values);
    await this.start();
    const accepted = applyValueRules(values, this.#descriptor.valueRules.storeInitConfiguration, this.#configRules);
    try {
      await this.#started('storeInitConfiguration').storeInitConfiguration(accepted);
    } catch (e) {
      throw asBackendError(this.#descriptor.name, e);
    }
  }

  override log(values: Values, step?: number, kwargs?: Values): void {
    if (this.#gated) return;
    const d = this.#d !== undefined && this.#state === 'started' ? this.#d : this.#started('log');
    if (step !== undefined) checkStep(this.#logRules.where, step);
    if (!isPlainObject(values)) checkValues(this.#logRules.where, values);
    d.log(applyValueRules(values, this.#descriptor.valueRules.log, this.#logRules), step, kwargs);
  }

  /** Shared implementation for generated `logImages` methods (backends with the log_images capability). */
  protected logImagesImpl(values: Record<string, ImageData | ImageData[]>, step?: number, kwargs?: Values): void {
    if (this.#gated) return;
    const d = this.#started('logImages');
    // The `where` names are built only on the error path (this is a hot path: ≤ 5 µs per image).
    if (step !== undefined && !(Number.isSafeInteger(step) && step >= 0)) checkStep(`${this.#descriptor.className}.logImages()`, step);
    if (!isPlainObject(values)) checkValues(`${this.#descriptor.className}.logImages()`, values);
    if (!d.logImages) throw new TrackspecError(`${this.#descriptor.className}: this backend cannot log images`);
    d.logImages(values, step, kwargs);
  }

  /** Shared implementation for generated `logTable` methods (backends with the log_table capability). */
  protected logTableImpl(name: string, table: TableData, step?: number, kwargs?: Values): void {
    if (this.#gated) return;
    const d = this.#started('logTable');
    checkStep(`${this.#descriptor.className}.logTable()`, step);
    if (!d.logTable) throw new TrackspecError(`${this.#descriptor.className}: this backend cannot log tables`);
    d.logTable(name, table, step, kwargs);
  }

  /** Shared implementation for generated `logArtifact` / `logArtifacts` / `logFigure` methods (artifacts capability). */
  protected logArtifactImpl(method: string, request: ArtifactRequest): void {
    if (this.#gated) return;
    const d = this.#started(method);
    if (!d.logArtifact) throw new TrackspecError(`${this.#descriptor.className}: this backend cannot log artifacts`);
    d.logArtifact(request);
  }

  override async flush(): Promise<void> {
    if (this.#gated || !this.#d || this.#state !== 'started') return;
    try {
      await this.#d.flush();
    } catch (e) {
      throw asBackendError(this.#descriptor.name, e);
    }
  }

  override async finish(): Promise<void> {
    if (this.#gated || this.#state === 'finished') return;
    if (this.#starting) await this.#starting.catch(() => undefined);
    const d = this.#d;
    this.#state = 'finished';
    if (!d) return;
    try {
      await d.finish();
    } catch (e) {
      throw asBackendError(this.#descriptor.name, e);
    }
  }
}

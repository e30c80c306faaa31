/**
 * Accelerator-side orchestration of several trackers (Accelerate's log_with / init_trackers / log /
 * get_tracker / end_training), with upstream's rules minus its bugs:
 * - unknown names throw, listing the valid ones;
 * - 'all' expands to every available built-in backend at its position, and is checked like any
 *   other entry (logging-dir guard, dedup);
 * - duplicates (same name or same instance) are removed;
 * - a backend that requires a logging directory without one throws at construction;
 * - init_kwargs values win over project_name / logging_dir for their backend;
 * - the config dict is never mutated (each tracker gets a copy).
 */
import type { Values } from './driver.js';
import { ConfigError, TrackspecError } from './errors.js';
import { GeneralTracker } from './general-tracker.js';
import { processRank } from './rank.js';
import { isPlainObject } from './values.js';
import { warn } from './warnings.js';

/** A tracker class Tracking can build by name: generated classes and registered custom classes. */
export interface TrackerClass {
  new (options: never): GeneralTracker;
  readonly trackerName: string;
  readonly requiresLoggingDirectory: boolean;
  /** Option that receives project_name (default `run_name`). */
  readonly projectNameOption?: string;
  /** False for built-ins whose transport is not built yet; they are left out of 'all'. */
  readonly available?: boolean;
}

export type LogWithEntry = string | GeneralTracker;

export interface TrackingOptions {
  /** Tracker names, 'all', or GeneralTracker instances. */
  log_with?: LogWithEntry | readonly LogWithEntry[] | null;
  /** Directory given to trackers that require one (TensorBoard, Aim). */
  logging_dir?: string | null;
  /** As Accelerate's ProjectConfiguration: logging_dir defaults to project_dir. */
  project_dir?: string | null;
}

/** The shape of a tracker config file (YAML or JSON) and of `Tracking.fromConfig`'s input. */
export interface TrackingConfigInput {
  project_name: string;
  log_with: string | string[];
  logging_dir?: string | null;
  config?: Values | null;
  init_kwargs?: Record<string, Values | undefined> | null;
}

const registered = new Map<string, TrackerClass>();

/** Each tracker gets its own copy of the config, so none can affect another (upstream #4046). */
function copyConfig(config: Values): Values {
  try {
    return structuredClone(config);
  } catch {
    return { ...config };
  }
}

/** A tracker returned off the main process: every method is a no-op. */
class BlankTracker extends GeneralTracker<undefined> {
  readonly name: string;
  readonly requiresLoggingDirectory = false;
  constructor(name: string) {
    super();
    this.name = name;
  }
  get tracker(): undefined {
    return undefined;
  }
  logImages(): void {}
  logTable(): void {}
  logArtifact(): void {}
  logArtifacts(): void {}
  logFigure(): void {}
}

function checkInstance(t: GeneralTracker): void {
  const missing: string[] = [];
  if (typeof t.name !== 'string' || t.name === '') missing.push('name');
  if (typeof t.requiresLoggingDirectory !== 'boolean') missing.push('requiresLoggingDirectory');
  if (!('tracker' in t)) missing.push('tracker');
  if (missing.length) {
    throw new ConfigError(`custom tracker ${t.constructor.name} is missing required members: ${missing.join(', ')}`);
  }
}

export class TrackingBase {
  /** Built-in tracker classes, in Accelerate's order. Set by the generated `Tracking` subclass. */
  protected static readonly builtins: readonly TrackerClass[] = [];

  /**
   * Register a custom tracker class by its static `trackerName`, so configs and `log_with` can name
   * it. Overwriting an existing name (including a built-in) warns. Registered names are not part of 'all'.
   */
  static registerTracker(cls: TrackerClass): void {
    if (typeof cls !== 'function' || !(cls.prototype instanceof GeneralTracker)) {
      throw new ConfigError('registerTracker expects a class extending GeneralTracker');
    }
    if (typeof cls.trackerName !== 'string' || !/^[a-z][a-z0-9_]*$/.test(cls.trackerName)) {
      throw new ConfigError(`registerTracker: ${cls.name} needs a static trackerName (lowercase, e.g. 'my_tracker')`);
    }
    if (typeof cls.requiresLoggingDirectory !== 'boolean') {
      throw new ConfigError(`registerTracker: ${cls.name} needs a static requiresLoggingDirectory boolean`);
    }
    const clash = registered.get(cls.trackerName) ?? this.builtins.find((b) => b.trackerName === cls.trackerName);
    if (clash && clash !== cls) warn(`registerTracker: ${cls.name} replaces the tracker registered as '${cls.trackerName}'`);
    registered.set(cls.trackerName, cls);
  }

  /** Remove a registered custom tracker class. */
  static unregisterTracker(name: string): boolean {
    return registered.delete(name);
  }

  /** Every name log_with accepts: built-ins, registered classes and 'all'. */
  static validNames(): string[] {
    const names = new Set([...this.builtins.map((b) => b.trackerName), ...registered.keys()]);
    return [...names, 'all'];
  }

  /** Build and start trackers from a parsed config file (see loadTrackingConfig). */
  static async fromConfig<T extends TrackingBase>(
    this: { new (options: TrackingOptions): T },
    config: TrackingConfigInput,
  ): Promise<T> {
    const tracking = new this({ log_with: config.log_with, logging_dir: config.logging_dir ?? null });
    await tracking.initTrackers(config.project_name, config.config ?? null, config.init_kwargs ?? null);
    return tracking;
  }

  /** Trackers started by initTrackers (empty off the main process). */
  readonly trackers: GeneralTracker[] = [];
  /** The resolved, deduplicated log_with entries. */
  readonly logWith: readonly (TrackerClass | GeneralTracker)[];
  readonly loggingDir: string | null;

  constructor(options: TrackingOptions = {}) {
    if (!isPlainObject(options as unknown)) throw new ConfigError('Tracking options must be a plain object');
    const known = ['log_with', 'logging_dir', 'project_dir'];
    for (const k of Object.keys(options)) {
      if (!known.includes(k)) throw new ConfigError(`Tracking: unknown option ${JSON.stringify(k)}; expected one of ${known.join(', ')}`, { option: k });
    }
    this.loggingDir = options.logging_dir ?? options.project_dir ?? null;
    this.logWith = this.#filter(options.log_with);
  }

  #classFor(name: string): TrackerClass | undefined {
    const ctor = this.constructor as typeof TrackingBase;
    return registered.get(name) ?? ctor.builtins.find((b) => b.trackerName === name);
  }

  #filter(logWith: TrackingOptions['log_with']): (TrackerClass | GeneralTracker)[] {
    if (logWith === undefined || logWith === null) return [];
    const entries = (Array.isArray(logWith) ? logWith : [logWith]) as LogWithEntry[];
    const ctor = this.constructor as typeof TrackingBase;
    const out: (TrackerClass | GeneralTracker)[] = [];
    const names = new Set<string>();
    const add = (cls: TrackerClass) => {
      if (names.has(cls.trackerName)) return;
      if (cls.requiresLoggingDirectory && !this.loggingDir) {
        throw new ConfigError(
          `logging with '${cls.trackerName}' requires a logging directory: pass logging_dir (or project_dir) to Tracking` +
            (entries.includes('all') ? ` (it was selected by 'all')` : ''),
          { option: 'logging_dir' },
        );
      }
      names.add(cls.trackerName);
      out.push(cls);
    };
    for (const entry of entries) {
      if (entry instanceof GeneralTracker) {
        checkInstance(entry);
        if (!out.includes(entry)) out.push(entry);
      } else if (entry === 'all') {
        for (const b of ctor.builtins) if (b.available !== false) add(b);
      } else if (typeof entry === 'string') {
        const cls = this.#classFor(entry);
        if (!cls) {
          throw new ConfigError(
            `unsupported tracker ${JSON.stringify(entry)}; choose from ${ctor.validNames().map((n) => `'${n}'`).join(', ')}`,
            { option: 'log_with' },
          );
        }
        add(cls);
      } else {
        throw new ConfigError(`log_with entries must be tracker names or GeneralTracker instances, got ${typeof entry}`, {
          option: 'log_with',
        });
      }
    }
    return out;
  }

  /**
   * Build, start and configure every tracker (main process only). init_kwargs is keyed by tracker
   * name; its values are the backend's constructor options.
   */
  async initTrackers(projectName: string, config?: Values | null, initKwargs?: Record<string, Values | undefined> | null): Promise<void> {
    if (processRank() !== 0) return;
    if (typeof projectName !== 'string') throw new ConfigError('initTrackers: project_name must be a string', { option: 'project_name' });
    const kwargs = initKwargs ?? {};
    for (const key of Object.keys(kwargs)) {
      if (!this.logWith.some((e) => !(e instanceof GeneralTracker) && e.trackerName === key)) {
        warn(`initTrackers: init_kwargs.${key} is ignored: '${key}' is not in log_with`);
      }
    }
    const built: GeneralTracker[] = [];
    for (const entry of this.logWith) {
      if (entry instanceof GeneralTracker) {
        built.push(entry);
        continue;
      }
      const options: Values = { ...(kwargs[entry.trackerName] ?? {}) };
      const projectOption = entry.projectNameOption ?? 'run_name';
      if (options[projectOption] === undefined) options[projectOption] = projectName;
      if (entry.requiresLoggingDirectory && options.logging_dir === undefined) options.logging_dir = this.loggingDir;
      built.push(new entry(options as never));
    }
    const started = await Promise.allSettled(built.map((t) => t.start()));
    const failed = started.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) {
      await Promise.allSettled(built.map((t, i) => (started[i]!.status === 'fulfilled' ? t.finish() : undefined)));
      throw failed.reason;
    }
    this.trackers.push(...built);
    if (config !== undefined && config !== null) {
      for (const t of built) await t.storeInitConfiguration(copyConfig(config));
    }
  }

  /** Log to every tracker; logKwargs is keyed by tracker name. */
  log(values: Values, step?: number, logKwargs?: Record<string, Values | undefined> | null): void {
    for (const t of this.trackers) t.log(values, step, logKwargs?.[t.name]);
  }

  /** The tracker named `name`, or with unwrap its backend handle. Off the main process: a no-op tracker. */
  getTracker(name: string, options: { unwrap?: boolean } = {}): GeneralTracker | unknown {
    if (processRank() !== 0) return options.unwrap ? undefined : new BlankTracker(name);
    const t = this.trackers.find((x) => x.name === name);
    if (!t) {
      const have = this.trackers.map((x) => `'${x.name}'`).join(', ') || 'none (call initTrackers first)';
      throw new ConfigError(`${JSON.stringify(name)} is not a started tracker; started: ${have}`);
    }
    return options.unwrap ? t.tracker : t;
  }

  /** Flush every tracker. */
  async flush(): Promise<void> {
    const results = await Promise.allSettled(this.trackers.map((t) => t.flush()));
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw failed.reason;
  }

  /** Finish every tracker (all are finished even if one fails; the first failure is rethrown). */
  async endTraining(): Promise<void> {
    const results = await Promise.allSettled(this.trackers.map((t) => t.finish()));
    const failed = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed.length === 1) throw failed[0]!.reason;
    if (failed.length > 1) {
      throw new TrackspecError(`endTraining: ${failed.length} trackers failed: ${failed.map((f) => (f.reason as Error).message).join('; ')}`, {
        cause: failed[0]!.reason,
      });
    }
  }
}

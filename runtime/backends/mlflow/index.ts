/**
 * MLflow backend: a tracking server over REST, or the local file store that `mlflow ui` reads.
 *
 * - Where: `tracking_uri` (else MLFLOW_TRACKING_URI, else ./mlruns). http(s):// → REST; a path or
 *   file: URI → file store; any other scheme → ConfigError.
 * - Auth (REST): MLFLOW_TRACKING_TOKEN (Bearer), else MLFLOW_TRACKING_USERNAME/PASSWORD (Basic), else
 *   user:password in the URL (Basic). MLFLOW_TRACKING_INSECURE_TLS skips TLS verification.
 *   Credentials never appear in errors, warnings or spool files.
 * - Nesting rule: with nested_run, the parent is the most recently started, unfinished MLflowTracker
 *   run of this process; when there is none and run_id is set (e.g. from MLFLOW_RUN_ID), run_id names
 *   the parent and a new child run is created under it. Without nested_run, run_id resumes that run.
 * - log(): metrics go to a background batcher (≤ 1000 per log-batch request) and never wait on the
 *   network; batches that still fail when the retry deadline passes go to a durable spool
 *   (`trackspec sync` replays it without duplicates).
 * - Process death: on an uncaught exception the run is marked FAILED, on SIGINT/SIGTERM KILLED
 *   (pending metrics are sent first, synchronously, or spooled).
 */
import { hostname, userInfo } from 'node:os';
import { resolve as resolvePath } from 'node:path';
import { Batcher } from '../../io/batcher.js';
import type { BackendDriver, DriverContext, TrackerDriver, Values } from '../../core/driver.js';
import { parseEnv, readEnv, type Env } from '../../core/env.js';
import { BackendError, ConfigError, TrackspecError, ValidationError } from '../../core/errors.js';
import { registerExitHook } from '../../io/exit-hooks.js';
import { HttpTransportError } from '../../io/http.js';
import { postSync } from '../../io/exit-post.js';
import { RetryDeadlineError } from '../../io/retry.js';
import { defaultSpoolDir, listSpools } from '../../io/spool.js';
import { WriteAhead } from '../../io/write-ahead.js';
import { FileStore, MetricWriteError } from './file-store.js';
import {
  keyProblem,
  MAX_METRICS_PER_BATCH,
  MAX_PARAM_VALUE_LENGTH,
  MAX_PARAMS_PER_BATCH,
  MAX_TAG_VALUE_LENGTH,
  MAX_TAGS_PER_BATCH,
  paramString,
  pyFloatRepr,
  wireMetricValue,
} from './keys.js';
import type { RestStore } from './rest-store.js';
import type { MlflowKV, MlflowMetric, MlflowStore, RunInfo, RunStatus } from './store.js';
import { PARAM_IMMUTABLE } from './store.js';

export { FileStore } from './file-store.js';
export type { MlflowStore, MlflowMetric, MlflowKV, RunInfo, RunStatus } from './store.js';
export { keyProblem, pyFloatRepr, paramString } from './keys.js';

export interface MLflowDriverOptions {
  experiment_name: string | null;
  logging_dir: string | null;
  run_id: string | null;
  tags: Record<string, string | number | boolean | undefined> | string | null;
  nested_run: boolean;
  run_name: string | null;
  description: string | null;
  tracking_uri: string | null;
  retry_deadline_secs: number;
  flush_interval_secs: number;
  write_ahead: boolean;
  spool_dir: string | null;
}

/** Spooled record shapes (JSON lines in the spool). */
export type SpoolRecord =
  | { t: 'metric'; run: string; key: string; value: number | string; ts: number; step: number }
  | { t: 'param'; run: string; key: string; value: string }
  | { t: 'tag'; run: string; key: string; value: string }
  | { t: 'status'; run: string; status: RunStatus; end: number };

/** The handle `MLflowTracker.tracker` returns. */
export interface MLflowRun {
  readonly runId: string;
  readonly experimentId: string;
  readonly runName: string;
  /** Tracking server URL (without credentials) or file-store directory. */
  readonly trackingUri: string;
  readonly artifactUri: string;
  /** Path of this run's spool file, once anything had to be spooled. */
  readonly spoolPath: string | undefined;
  /** Requests sent per endpoint (REST only). */
  readonly requestCounts: ReadonlyMap<string, number>;
  /** Set a run tag (mutable, unlike params). */
  setTag(key: string, value: string): Promise<void>;
}

const SCHEME = /^([a-zA-Z][a-zA-Z0-9+.-]*):/;

/** One log() call as queued: a shallow copy of its values (one allocation, not one per metric). */
interface MetricCall {
  v: Record<string, unknown>;
  ts: number;
  step: number;
  n: number;
}

/** Expand queued calls into MLflow metrics. */
function expand(calls: readonly MetricCall[]): MlflowMetric[] {
  const out: MlflowMetric[] = [];
  for (const c of calls) {
    for (const key in c.v) {
      const v = c.v[key];
      out.push({ key, value: typeof v === 'boolean' ? (v ? 1 : 0) : (v as number), timestamp: c.ts, step: c.step });
    }
  }
  return out;
}

interface StoreChoice {
  store: MlflowStore;
  rest?: { url: string; headers: Record<string, string>; insecure: boolean };
}

/**
 * Pick and open the store for a tracking URI. Exported for `trackspec sync`. The REST client (and
 * its HTTP library) is loaded only when a server is used, so importing the SDK stays cheap.
 */
export async function openStore(trackingUri: string | null, retryDeadlineSecs: number, env: Env = process.env): Promise<StoreChoice> {
  const uri = trackingUri ?? './mlruns';
  const scheme = SCHEME.exec(uri)?.[1]?.toLowerCase();
  if (scheme === undefined || scheme.length === 1 /* C:\ */ || scheme === 'file') return { store: new FileStore(uri) };
  if (scheme !== 'http' && scheme !== 'https') {
    throw new ConfigError(
      `MLflowTracker: tracking URI scheme '${scheme}:' is not supported; use http(s)://host:port for a tracking server, or a path / file: URI for a local store (set tracking_uri or MLFLOW_TRACKING_URI)`,
      { option: 'tracking_uri' },
    );
  }
  const headers: Record<string, string> = {};
  const token = readEnv(env, 'MLFLOW_TRACKING_TOKEN');
  const user = readEnv(env, 'MLFLOW_TRACKING_USERNAME');
  const password = readEnv(env, 'MLFLOW_TRACKING_PASSWORD');
  let parsed: URL;
  try {
    parsed = new URL(uri);
  } catch {
    throw new ConfigError(`MLflowTracker: tracking URI is not a valid URL (set tracking_uri or MLFLOW_TRACKING_URI)`, { option: 'tracking_uri' });
  }
  if (token) headers.authorization = `Bearer ${token}`;
  else if (user !== undefined || password !== undefined) {
    headers.authorization = `Basic ${Buffer.from(`${user ?? ''}:${password ?? ''}`).toString('base64')}`;
  } else if (parsed.username || parsed.password) {
    headers.authorization = `Basic ${Buffer.from(`${decodeURIComponent(parsed.username)}:${decodeURIComponent(parsed.password)}`).toString('base64')}`;
  }
  const insecureRaw = readEnv(env, 'MLFLOW_TRACKING_INSECURE_TLS');
  const insecure = insecureRaw === undefined ? false : (parseEnv('MLFLOW_TRACKING_INSECURE_TLS', insecureRaw, 'boolean') as boolean);
  const { RestStore, displayUrl } = await import('./rest-store.js');
  const url = displayUrl(uri);
  const store = new RestStore({ url, headers, insecureTls: insecure, retry: { deadlineMs: retryDeadlineSecs * 1000 } });
  return { store, rest: { url, headers, insecure } };
}

/** Runs started by MLflowTracker in this process, most recent last (the nesting parent). */
const activeRuns: MLflowRunDriver[] = [];

let uncaught = false;
process.on('uncaughtExceptionMonitor', () => {
  uncaught = true;
});

function isUnreachable(e: unknown): boolean {
  return e instanceof HttpTransportError || e instanceof RetryDeadlineError;
}

/**
 * A relative logging_dir means a directory of the caller: made absolute here, because a tracking
 * server would otherwise resolve it against its own working directory.
 */
function artifactLocation(dir: string | null): string | null {
  if (dir === null) return null;
  const scheme = SCHEME.exec(dir)?.[1];
  if (scheme !== undefined && scheme.length > 1) return dir; // a URI (s3://, file:, ...); not a Windows drive
  return resolvePath(dir);
}

function stringTags(tags: MLflowDriverOptions['tags']): MlflowKV[] {
  if (tags === null || typeof tags === 'string') return [];
  return Object.entries(tags)
    .filter(([, v]) => v !== undefined)
    .map(([key, value]) => ({ key, value: String(value) }));
}

function checkKeys(where: string, keys: Iterable<string>): void {
  const issues = [];
  for (const key of keys) {
    const problem = keyProblem(key);
    if (problem) issues.push({ pointer: `/${key.replace(/~/g, '~0').replace(/\//g, '~1')}`, code: 'mlflow-key', message: `${JSON.stringify(key)} ${problem}` });
  }
  if (issues.length) throw new ValidationError(`MLflowTracker.${where}: invalid MLflow key(s): ${issues.map((i) => i.message).join('; ')}`, issues);
}

/**
 * The `tags` option (or MLFLOW_TAGS), checked by MLflow's tag rules before anything is created:
 * a tag key becomes a file name in the file store, so a bad one must never reach a write.
 */
function checkTagOption(tags: readonly MlflowKV[]): void {
  const issues = [];
  for (const t of tags) {
    const problem = keyProblem(t.key) ?? (t.value.length > MAX_TAG_VALUE_LENGTH ? `has a value of ${t.value.length} characters, over MLflow's limit of ${MAX_TAG_VALUE_LENGTH}` : undefined);
    if (problem) issues.push({ pointer: `/tags/${t.key.replace(/~/g, '~0').replace(/\//g, '~1')}`, code: 'mlflow-key', message: `tag ${JSON.stringify(t.key)} ${problem}` });
  }
  if (issues.length) {
    throw new ConfigError(`MLflowTracker: option "tags" (or MLFLOW_TAGS): ${issues.map((i) => i.message).join('; ')}`, { option: 'tags', issues });
  }
}

class MLflowRunDriver implements TrackerDriver<MLflowRun> {
  readonly handle: MLflowRun;
  readonly #store: MlflowStore;
  readonly #rest: StoreChoice['rest'];
  readonly #ctx: DriverContext;
  readonly #info: RunInfo;
  readonly #spoolDir: string;
  readonly #batcher: Batcher<MetricCall>;
  readonly #params = new Map<string, string>();
  readonly #validKeys = new Set<string>();
  readonly #inFlight = new Set<MetricCall[]>();
  /** Write-ahead to the spool (REST): unacknowledged calls are written every flush interval. */
  readonly #wal: WriteAhead<MetricCall>;
  readonly #walOn: boolean;
  #spoolPath: string | undefined;
  /** File store: metrics whose append failed (disk full), retried on the next flush. */
  #retry: MlflowMetric[] = [];
  #overflow: MetricCall[] = [];
  #finished = false;
  #unregisterExit: () => void;

  constructor(store: StoreChoice, info: RunInfo, params: Record<string, string>, options: MLflowDriverOptions, ctx: DriverContext) {
    this.#store = store.store;
    this.#rest = store.rest;
    this.#ctx = ctx;
    this.#info = info;
    this.#spoolDir = options.spool_dir ?? defaultSpoolDir();
    for (const [k, v] of Object.entries(params)) this.#params.set(k, v);
    const self = this;
    this.handle = {
      runId: info.runId,
      experimentId: info.experimentId,
      runName: info.runName,
      trackingUri: store.store.target,
      artifactUri: info.artifactUri,
      get spoolPath() {
        return self.#spoolPath;
      },
      requestCounts: (store.store as Partial<RestStore>).requestCounts ?? new Map(),
      setTag: (key, value) => this.#logEntries('setTag', [], [{ key, value: String(value) }]),
    };
    this.#walOn = store.rest !== undefined && options.write_ahead;
    this.#wal = new WriteAhead<MetricCall>({
      dir: this.#spoolDir,
      header: () => ({ backend: 'mlflow', target: this.#store.target, created: Date.now(), meta: { run_id: info.runId, experiment_id: info.experimentId } }),
      intervalMs: options.flush_interval_secs * 1000,
      records: (c) => expand([c]).map((m) => this.#metricRecord(m)),
      onOpen: (spool) => {
        this.#spoolPath = spool.path;
      },
      onError: (e) => ctx.warnOnce('spool:error', `mlflow: could not write ahead to the spool in ${this.#spoolDir}: ${(e as Error).message}`),
    });
    this.#batcher = new Batcher<MetricCall>({
      maxBatch: MAX_METRICS_PER_BATCH,
      weight: (c) => c.n,
      maxDelayMs: options.flush_interval_secs * 1000,
      maxPending: 100_000, // log() calls held in memory; beyond, they go to the spool
      concurrency: 2,
      send: async (batch) => {
        this.#inFlight.add(batch);
        try {
          await this.#sendMetrics(expand(batch));
          if (this.#walOn) this.#wal.acked(batch);
        } finally {
          this.#inFlight.delete(batch);
        }
      },
      onFailed: async (batch, error) => {
        if (error instanceof MetricWriteError) {
          // File store (e.g. the disk is full): keep what was not written, retry on the next flush.
          for (const m of error.unwritten) this.#retry.push(m);
          return;
        }
        if (!isUnreachable(error)) {
          if (this.#walOn) this.#wal.acked(batch); // rejected by the server (4xx): reported by flush(), not replayable
          return;
        }
        this.#warnKept('unreachable');
        this.#wal.keep(batch);
      },
      overflow: (items) => {
        this.#overflow.push(...items);
        if (this.#overflow.length === items.length) {
          queueMicrotask(() => {
            const moving = this.#overflow;
            this.#overflow = [];
            this.#warnKept('overflow');
            this.#wal.keep(moving);
          });
        }
      },
    });
    this.#unregisterExit = registerExitHook((reason) => this.#onExit(reason));
  }

  async #sendMetrics(metrics: MlflowMetric[]): Promise<void> {
    for (let i = 0; i < metrics.length; i += MAX_METRICS_PER_BATCH) {
      const part = metrics.slice(i, i + MAX_METRICS_PER_BATCH);
      try {
        await this.#store.logBatch(this.#info.runId, { metrics: part });
      } catch (e) {
        if (e instanceof MetricWriteError) throw new MetricWriteError(e.detail, e.cause, [...e.unwritten, ...metrics.slice(i + MAX_METRICS_PER_BATCH)]);
        throw e;
      }
    }
  }

  /** File store: write the metrics of earlier failed appends again (throws MetricWriteError if it still fails). */
  async #retryFailed(): Promise<void> {
    const metrics = this.#retry;
    this.#retry = [];
    try {
      await this.#sendMetrics(metrics);
    } catch (e) {
      if (e instanceof MetricWriteError) this.#retry = [...e.unwritten, ...this.#retry];
      else this.#retry = [...metrics, ...this.#retry];
      throw e;
    }
  }

  #metricRecord(m: MlflowMetric): SpoolRecord {
    return { t: 'metric', run: this.#info.runId, key: m.key, value: wireMetricValue(m.value), ts: m.timestamp, step: m.step };
  }

  #warnKept(why: 'unreachable' | 'overflow' | 'disk'): void {
    const where = `${this.#spoolDir} (upload later with \`trackspec sync ${this.#spoolDir}\`)`;
    if (why === 'unreachable') this.#ctx.warnOnce('spool:unreachable', `the MLflow server at ${this.#store.target} is unreachable; records are kept in a spool under ${where}`);
    else if (why === 'overflow') this.#ctx.warnOnce('spool:overflow', `metrics are logged faster than ${this.#store.target} accepts them; the excess is kept in a spool under ${where}`);
    else this.#ctx.warnOnce('spool:disk', `the MLflow file store ${this.#store.target} could not be written; the records are kept in a spool under ${where}`);
  }

  /** Records that must reach the server later (params, tags, status, metrics given up on): fsync'd to the spool. */
  async #toSpool(records: SpoolRecord[], why: 'unreachable' | 'disk'): Promise<void> {
    if (records.length === 0) return;
    this.#warnKept(why);
    await this.#wal.appendRecords(records);
  }

  log(values: Readonly<Values>, step: number | undefined, kwargs: Readonly<Values> | undefined): void {
    if (this.#finished) throw new TrackspecError('MLflowTracker.log() after finish()');
    const valid = this.#validKeys;
    let n = 0;
    for (const key in values) {
      if (!valid.has(key)) {
        checkKeys('log()', [key]);
        valid.add(key);
      }
      n++;
    }
    if (n === 0) return;
    let timestamp = Date.now();
    if (kwargs !== undefined) {
      for (const k in kwargs) {
        if (k === 'timestamp' && typeof kwargs[k] === 'number') timestamp = kwargs[k] as number;
        else this.#ctx.warnOnce(`kwarg:${k}`, `mlflow: log kwarg '${k}' is not supported and was ignored`);
      }
    }
    const call: MetricCall = { v: { ...values }, ts: timestamp, step: step ?? 0, n };
    this.#batcher.push(call);
    if (this.#walOn) this.#wal.push(call);
  }

  /** Send params/tags in MLflow-sized requests (awaited); spool them if the server stays unreachable. */
  async #logEntries(what: string, params: MlflowKV[], tags: MlflowKV[]): Promise<void> {
    checkKeys(what, [...params, ...tags].map((p) => p.key));
    let i = 0;
    let j = 0;
    while (i < params.length || j < tags.length) {
      const p = params.slice(i, i + MAX_PARAMS_PER_BATCH);
      const t = tags.slice(j, j + MAX_TAGS_PER_BATCH);
      i += p.length;
      j += t.length;
      try {
        await this.#store.logBatch(this.#info.runId, { params: p, tags: t });
      } catch (e) {
        if (!isUnreachable(e)) throw e;
        const run = this.#info.runId;
        await this.#toSpool([
          ...p.map((x): SpoolRecord => ({ t: 'param', run, key: x.key, value: x.value })),
          ...t.map((x): SpoolRecord => ({ t: 'tag', run, key: x.key, value: x.value })),
          ...params.slice(i).map((x): SpoolRecord => ({ t: 'param', run, key: x.key, value: x.value })),
          ...tags.slice(j).map((x): SpoolRecord => ({ t: 'tag', run, key: x.key, value: x.value })),
        ], 'unreachable');
        throw new BackendError('mlflow', `the server at ${this.#store.target} is unreachable; ${what} was saved to ${this.#spoolPath} — upload it with \`trackspec sync ${this.#spoolDir}\``, { cause: e });
      }
    }
  }

  async storeInitConfiguration(values: Readonly<Values>): Promise<void> {
    const params: MlflowKV[] = [];
    for (const [key, v] of Object.entries(values)) {
      const value = paramString(v);
      if (value.length > MAX_PARAM_VALUE_LENGTH) {
        this.#ctx.warnOnce(
          `long:${key}`,
          `mlflow: trackspec is attempting to log a value of "${value.slice(0, 40)}…" for key "${key}" as a parameter. MLflow's log_param() only accepts values no longer than ${MAX_PARAM_VALUE_LENGTH} characters so we dropped this attribute.`,
        );
        continue;
      }
      const old = this.#params.get(key);
      if (old !== undefined && old !== value) {
        throw new BackendError('mlflow', `${PARAM_IMMUTABLE}: ${JSON.stringify(key)} is ${JSON.stringify(old)}, not ${JSON.stringify(value)}. Log it under another name, or start a new run.`, {
          code: 'INVALID_PARAMETER_VALUE',
        });
      }
      if (old === undefined) params.push({ key, value });
    }
    await this.#logEntries('storeInitConfiguration()', params, []);
    for (const p of params) this.#params.set(p.key, p.value);
  }

  async flush(): Promise<void> {
    try {
      if (this.#retry.length > 0) await this.#retryFailed();
      await this.#batcher.flush();
    } catch (e) {
      if (isUnreachable(e)) {
        throw new BackendError('mlflow', `the server at ${this.#store.target} is unreachable; ${this.#wal.unacked} record(s) are safe in ${this.#spoolPath} — upload them with \`trackspec sync ${this.#spoolDir}\``, { cause: e });
      }
      if (e instanceof MetricWriteError) {
        throw new BackendError('mlflow', `${e.detail}; ${this.#retry.length} metric(s) are kept in memory and written again on the next flush() (or spooled at finish())`, { cause: e.cause, code: e.code });
      }
      throw e;
    }
  }

  async finish(): Promise<void> {
    if (this.#finished) return;
    this.#finished = true;
    const at = activeRuns.indexOf(this);
    if (at >= 0) activeRuns.splice(at, 1);
    let failure: unknown;
    try {
      await this.#batcher.close();
    } catch (e) {
      failure = e;
    }
    if (this.#retry.length > 0) {
      try {
        await this.#retryFailed();
      } catch (e) {
        failure ??= e;
        // Still failing: the metrics go to the spool (nothing is dropped).
        const rest = this.#retry;
        this.#retry = [];
        await this.#toSpool(rest.map((m) => this.#metricRecord(m)), 'disk').catch((e2: unknown) => {
          failure = new AggregateError([failure, e2], `${(failure as Error).message}; and spooling the ${rest.length} unwritten metric(s) failed: ${(e2 as Error).message}`);
        });
      }
    }
    const endTime = Date.now();
    try {
      await this.#store.updateRun(this.#info.runId, 'FINISHED', endTime);
    } catch (e) {
      if (isUnreachable(e)) await this.#toSpool([{ t: 'status', run: this.#info.runId, status: 'FINISHED', end: endTime }], 'unreachable');
      else if (this.#store instanceof FileStore) await this.#toSpool([{ t: 'status', run: this.#info.runId, status: 'FINISHED', end: endTime }], 'disk').catch(() => undefined);
      failure ??= e;
    }
    this.#unregisterExit();
    const kept = await this.#wal.close();
    await this.#store.close();
    if (failure !== undefined) {
      if (kept !== undefined) {
        const what = isUnreachable(failure) ? `the server at ${this.#store.target} unreachable` : failure instanceof MetricWriteError ? failure.detail : (failure as Error).message;
        throw new BackendError('mlflow', `finished with ${what}: ${this.#wal.unacked} record(s) are safe in ${kept} — upload them with \`trackspec sync ${this.#spoolDir}\``, { cause: failure });
      }
      throw failure;
    }
  }

  /** Synchronous last resort when the process ends without finish(). */
  #onExit(reason: 'beforeExit' | 'exit' | 'SIGINT' | 'SIGTERM'): void {
    if (this.#finished) return;
    if (reason === 'beforeExit') {
      // The event loop drained without finish(): finish normally (as mlflow's atexit end_run does).
      void this.finish().catch((e: unknown) => this.#ctx.warn(`finishing the run at exit failed: ${(e as Error).message}`));
      return;
    }
    this.#finished = true;
    const status: RunStatus = reason === 'exit' ? (uncaught || (process.exitCode ?? 0) !== 0 ? 'FAILED' : 'FINISHED') : 'KILLED';
    const calls = [...[...this.#inFlight].flat(), ...this.#batcher.takePending(), ...this.#overflow];
    const pending = expand(calls);
    const endTime = Date.now();
    const runId = this.#info.runId;
    if (this.#store instanceof FileStore) {
      const dir = this.#store.runDir(this.#info);
      try {
        this.#store.appendMetricsSync(dir, [...this.#retry, ...pending]);
        this.#store.updateRunSync(dir, this.#info, status, endTime);
      } catch (e) {
        process.stderr.write(`trackspec: could not write the last MLflow metrics at exit: ${(e as Error).message}\n`);
      }
      return;
    }
    const rest = this.#rest!;
    const batches: unknown[][] = [];
    for (let i = 0; i < pending.length; i += MAX_METRICS_PER_BATCH) {
      batches.push(pending.slice(i, i + MAX_METRICS_PER_BATCH).map((m) => ({ key: m.key, value: wireMetricValue(m.value), timestamp: m.timestamp, step: m.step })));
    }
    const api = `${rest.url}/api/2.0/mlflow`;
    const sent = postSync(
      [
        ...batches.map((metrics) => ({ url: `${api}/runs/log-batch`, body: { run_id: runId, metrics } })),
        { url: `${api}/runs/update`, body: { run_id: runId, status, end_time: endTime } },
      ],
      { headers: rest.headers, insecure: rest.insecure },
    );
    try {
      const path = this.#wal.settleAtExit(calls, sent, sent ? [] : [{ t: 'status', run: runId, status, end: endTime } satisfies SpoolRecord]);
      if (!sent && path) process.stderr.write(`trackspec: MLflow server unreachable at exit; ${this.#wal.unacked} record(s) are saved in ${path} — upload with \`trackspec sync ${this.#spoolDir}\`\n`);
    } catch (e) {
      process.stderr.write(`trackspec: could not save the last MLflow records at exit: ${(e as Error).message}\n`);
    }
  }
}

async function warnAboutSpools(dir: string, ctx: DriverContext): Promise<void> {
  try {
    const pending = (await listSpools(dir, 'mlflow')).filter((s) => s.pending > 0);
    if (pending.length > 0) {
      const n = pending.reduce((a, s) => a + s.pending, 0);
      ctx.warn(`found ${pending.length} MLflow spool file(s) with ${n} record(s) not yet uploaded in ${dir}; upload them with \`trackspec sync ${dir}\``);
    }
  } catch {
    // no spool directory: nothing to offer
  }
}

export const driver: BackendDriver<MLflowDriverOptions, MLflowRun> = {
  available: true,
  start: async (options, ctx) => {
    const choice = await openStore(options.tracking_uri, options.retry_deadline_secs);
    const { store } = choice;
    try {
      void warnAboutSpools(options.spool_dir ?? defaultSpoolDir(), ctx);
      const tags = stringTags(options.tags);
      checkTagOption(tags);
      const parent = options.nested_run ? activeRuns.at(-1) : undefined;
      let info: RunInfo;
      let params: Record<string, string> = {};
      if (options.run_id && !(options.nested_run && !parent)) {
        // Resume an existing run.
        const existing = await store.getRun(options.run_id);
        if (!existing) {
          throw new BackendError('mlflow', `run_id ${options.run_id} does not exist at ${store.target} (set by the run_id option or MLFLOW_RUN_ID)`, { code: 'RESOURCE_DOES_NOT_EXIST', status: 404 });
        }
        await store.updateRun(options.run_id, 'RUNNING');
        info = { ...existing.info, status: 'RUNNING' };
        params = existing.params;
        const extra: MlflowKV[] = [...tags];
        if (parent) extra.push({ key: 'mlflow.parentRunId', value: parent.handle.runId });
        if (extra.length) await store.logBatch(info.runId, { tags: extra });
      } else {
        let parentId = parent?.handle.runId;
        let parentExperiment: string | undefined = parent?.handle.experimentId;
        if (options.nested_run && !parent && options.run_id) {
          const p = await store.getRun(options.run_id);
          if (!p) throw new BackendError('mlflow', `nested_run: parent run ${options.run_id} (run_id / MLFLOW_RUN_ID) does not exist at ${store.target}`, { code: 'RESOURCE_DOES_NOT_EXIST', status: 404 });
          parentId = p.info.runId;
          parentExperiment = p.info.experimentId;
        }
        if (options.nested_run && !parentId) ctx.warn('mlflow: nested_run is set but there is no active parent run; starting a top-level run');
        let experimentId: string;
        if (options.experiment_name === null && parentExperiment !== undefined) experimentId = parentExperiment;
        else {
          const name = options.experiment_name ?? 'Default';
          const found = await store.getExperimentByName(name);
          experimentId = found ? found.experimentId : await store.createExperiment(name, artifactLocation(options.logging_dir), tags);
        }
        const runTags: MlflowKV[] = [
          ...tags,
          { key: 'mlflow.user', value: userInfo().username },
          { key: 'mlflow.source.name', value: process.argv[1] ?? 'node' },
          { key: 'mlflow.source.type', value: 'LOCAL' },
          { key: 'trackspec.host', value: hostname() },
        ];
        if (options.run_name) runTags.push({ key: 'mlflow.runName', value: options.run_name });
        if (options.description) runTags.push({ key: 'mlflow.note.content', value: options.description });
        if (parentId) runTags.push({ key: 'mlflow.parentRunId', value: parentId });
        for (const t of runTags) {
          if (t.value.length > MAX_TAG_VALUE_LENGTH) {
            throw new ConfigError(`MLflowTracker: tag ${JSON.stringify(t.key)} is longer than MLflow's ${MAX_TAG_VALUE_LENGTH} characters`, { option: 'tags' });
          }
        }
        checkKeys('start()', runTags.map((t) => t.key));
        info = await store.createRun({ experimentId, startTime: Date.now(), runName: options.run_name, tags: runTags });
      }
      const d = new MLflowRunDriver(choice, info, params, options, ctx);
      activeRuns.push(d);
      return d;
    } catch (e) {
      await store.close();
      if (e instanceof TrackspecError) throw e;
      throw new BackendError('mlflow', (e as Error).message, { cause: e });
    }
  },
};

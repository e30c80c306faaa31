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
import { basename, join, relative, resolve as resolvePath, sep } from 'node:path';
import { Batcher } from '../../io/batcher.js';
import type { ArtifactRequest, BackendDriver, DriverContext, ImageData, TableData, TrackerDriver, Values } from '../../core/driver.js';
import { parseEnv, readEnv, type Env } from '../../core/env.js';
import { BackendError, ConfigError, TrackspecError, ValidationError } from '../../core/errors.js';
import { registerExitHook } from '../../io/exit-hooks.js';
import { HttpTransportError } from '../../io/http.js';
import { postSync } from '../../io/exit-post.js';
import { RetryDeadlineError } from '../../io/retry.js';
import { defaultSpoolDir, listSpools } from '../../io/spool.js';
import { WriteAhead } from '../../io/write-ahead.js';
import { walkFiles } from '../../io/fs-util.js';
import { checkImage, encodePng } from '../../io/image.js';
import { lazy } from '../../io/lazy.js';
import {
  artifactTarget,
  ArtifactUploads,
  checkArtifactPath,
  checkLocal,
  copyWithDigest,
  sendArtifact,
  type ArtifactFailure,
  type ArtifactSource,
  type ArtifactTarget,
} from './artifacts.js';
import { compressImageSize, encodeWebpLossless } from './webp.js';
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
  /** An artifact the server did not take in time: its bytes are copied to `file` (relative to the spool file's folder). */
  | { t: 'artifact'; run: string; uri: string; path: string; file: string; size: number; sha256: string; source: string }
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

const cryptoLazy = lazy<typeof import('node:crypto')>('node:crypto');

/** MLflow's rule for image keys (log_image). */
const IMAGE_KEY = /^[a-zA-Z0-9_\-./ ]+$/;
/** Characters MLflow's log_table refuses in artifact_file (_check_artifact_file_string). */
const TABLE_FORBIDDEN = ['"', "'", ',', ':', '[', ']', '{', '}'];

const PNG_SIGNATURE = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];

/** PNG bytes of a logFigure() image: HWC images are encoded, PNG bytes copied (the caller may reuse them). */
function figureBytes(image: ImageData | Uint8Array): Uint8Array {
  if (image instanceof Uint8Array) {
    if (image.length < 8 || PNG_SIGNATURE.some((b, i) => image[i] !== b)) {
      throw new ValidationError('MLflowTracker.logFigure(): image bytes are not a PNG (no PNG signature); pass PNG bytes or an image { data, height, width, channels }', [
        { pointer: '/image', code: 'image', message: 'not a PNG' },
      ]);
    }
    return Uint8Array.from(image);
  }
  checkImage(image, '/image');
  return encodePng(image);
}

/** Python's json.dumps (default separators, ensure_ascii) for the small JSON values of MLflow tags. */
export function pyJsonDumps(v: unknown): string {
  if (v === null || v === undefined) return 'null';
  if (typeof v === 'string') return JSON.stringify(v).replace(/[\u007f-\uffff]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
  if (typeof v === 'number') return Number.isFinite(v) ? String(v) : Number.isNaN(v) ? 'NaN' : v > 0 ? 'Infinity' : '-Infinity';
  if (typeof v === 'boolean') return v ? 'true' : 'false';
  if (Array.isArray(v)) return `[${v.map(pyJsonDumps).join(', ')}]`;
  return `{${Object.entries(v as Record<string, unknown>).map(([k, x]) => `${pyJsonDumps(k)}: ${pyJsonDumps(x)}`).join(', ')}}`;
}

/** A table as pandas' `to_json(orient="split", index=False)` writes it; NaN/±Infinity/undefined → null. */
function tableJson(columns: string[], rows: unknown[][]): string {
  return JSON.stringify({ columns, data: rows }, (_k, v: unknown) => (typeof v === 'number' && !Number.isFinite(v)) || v === undefined ? null : v);
}

/** Check a logTable() table: columns are strings, every row an array as long as columns, cells JSON values. */
function checkTable(name: string, table: TableData): { columns: string[]; data: unknown[][] } {
  const issues: { pointer: string; code: string; message: string }[] = [];
  if (table === null || typeof table !== 'object') issues.push({ pointer: '', code: 'table', message: 'must be an object { columns, data }' });
  else {
    const { columns, data } = table;
    if (!Array.isArray(columns) || columns.some((c) => typeof c !== 'string')) issues.push({ pointer: '/columns', code: 'table', message: 'columns must be an array of strings' });
    else if (new Set(columns).size !== columns.length) issues.push({ pointer: '/columns', code: 'table', message: 'columns must be distinct' });
    if (data !== undefined && !Array.isArray(data)) issues.push({ pointer: '/data', code: 'table', message: 'data must be an array of rows' });
    if (issues.length === 0) {
      (data ?? []).forEach((row, i) => {
        if (!Array.isArray(row)) issues.push({ pointer: `/data/${i}`, code: 'table', message: `row ${i} is not an array` });
        else if (row.length !== columns!.length) issues.push({ pointer: `/data/${i}`, code: 'table', message: `row ${i} has ${row.length} cells for ${columns!.length} columns` });
      });
      if (issues.length === 0) {
        try {
          tableJson(columns!, data ?? []);
        } catch (e) {
          issues.push({ pointer: '/data', code: 'table', message: `cells must be JSON values: ${(e as Error).message}` });
        }
      }
    }
  }
  if (issues.length > 0) throw new ValidationError(`MLflowTracker.logTable(${JSON.stringify(name)}): ${issues.map((i) => i.message).join('; ')}`, issues);
  return { columns: [...table.columns!], data: (table.data ?? []).map((r) => [...r]) };
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
  #finished = false;
  #unregisterExit: () => void;
  /** Artifact uploads (background) and where they go (resolved on the first artifact). */
  readonly #uploads = new ArtifactUploads(2);
  #target: ArtifactTarget | undefined;
  readonly #retryPolicy: { deadlineMs: number };
  #imagesTagged = false;
  /** Tables logged by this tracker (logging one again appends rows, as mlflow.log_table does). */
  readonly #tables = new Map<string, { columns: string[]; data: unknown[][] }>();
  /** The run's `mlflow.loggedArtifacts` entries. */
  #loggedArtifacts: unknown[] = [];

  constructor(store: StoreChoice, info: RunInfo, params: Record<string, string>, options: MLflowDriverOptions, ctx: DriverContext, tags: Record<string, string> = {}) {
    this.#store = store.store;
    this.#rest = store.rest;
    this.#ctx = ctx;
    this.#info = info;
    this.#spoolDir = options.spool_dir ?? defaultSpoolDir();
    this.#retryPolicy = { deadlineMs: options.retry_deadline_secs * 1000 };
    try {
      const logged: unknown = JSON.parse(tags['mlflow.loggedArtifacts'] ?? '[]');
      if (Array.isArray(logged)) this.#loggedArtifacts = logged;
    } catch {
      // not JSON: replaced by ours when a table is logged
    }
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
      overflow: (items) => this.#wal.keepSoon(items, () => this.#warnKept('overflow')),
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

  // ------------------------------------------------------------------------------------------
  // artifacts, figures, images, tables

  #artifactTarget(): ArtifactTarget {
    if (!this.#target) {
      const rest = this.#rest && { ...this.#rest, http: (this.#store as RestStore).http };
      this.#target = artifactTarget(this.#info.artifactUri, rest);
    }
    return this.#target;
  }

  /** Queue one artifact; if the server stays unreachable, its bytes are copied into the spool. */
  #queueArtifact(rel: string, source: ArtifactSource, what: string): void {
    const target = this.#target!;
    this.#uploads.add(rel, what, rel, async () => {
      try {
        await sendArtifact(target, rel, source, this.#retryPolicy);
      } catch (e) {
        if (!isUnreachable(e) || target.kind === 'local') throw e;
        try {
          await this.#spoolArtifact(target, rel, source, what);
        } catch (e2) {
          throw new BackendError('mlflow', `the server at ${this.#store.target} is unreachable and ${what} could not be kept in the spool either: ${(e2 as Error).message}`, { cause: e2 });
        }
        throw e;
      }
    });
  }

  async #spoolArtifact(target: ArtifactTarget, rel: string, source: ArtifactSource, what: string): Promise<void> {
    const name = `${this.#info.runId}-${cryptoLazy().randomBytes(6).toString('hex')}-${basename(rel).slice(-80)}`;
    const copy = join(this.#spoolDir, 'mlflow', 'artifacts', name);
    const { size, sha256 } = await copyWithDigest(source, copy);
    await this.#toSpool([{ t: 'artifact', run: this.#info.runId, uri: target.uri, path: rel, file: `artifacts/${name}`, size, sha256, source: what }], 'unreachable');
  }

  /** A tag set after the artifacts queued before it (in order per key); spooled if the server stays unreachable. */
  #queueTag(key: string, value: string): void {
    this.#uploads.add(`tag:${key}`, `tag ${key}`, key, async () => {
      try {
        await this.#store.logBatch(this.#info.runId, { tags: [{ key, value }] });
      } catch (e) {
        if (!isUnreachable(e)) throw e;
        await this.#toSpool([{ t: 'tag', run: this.#info.runId, key, value }], 'unreachable');
        throw e;
      }
    });
  }

  #artifactError(failures: ArtifactFailure[]): BackendError {
    const detail = (e: unknown) => (e instanceof BackendError ? e.message.replace(/^mlflow: /, '') : (e as Error)?.message ?? String(e));
    const kept = failures.filter((f) => isUnreachable(f.error));
    const parts = failures.slice(0, 5).map((f) => (isUnreachable(f.error) ? `${f.what} (→ ${f.rel}): server unreachable, kept in the spool` : `${f.what} (→ ${f.rel}): ${detail(f.error)}`));
    const more = failures.length > 5 ? `; and ${failures.length - 5} more` : '';
    const sync = kept.length > 0 ? ` — ${kept.length} kept in ${this.#spoolPath ?? this.#spoolDir}; upload them with \`trackspec sync ${this.#spoolDir}\`` : '';
    const first = failures[0]!.error;
    return new BackendError('mlflow', `${failures.length} artifact upload(s) failed: ${parts.join('; ')}${more}${sync}`, {
      cause: first,
      code: (first as { code?: unknown })?.code as string | undefined,
    });
  }

  logArtifact(request: ArtifactRequest): void {
    const method = request.kind === 'file' ? 'logArtifact()' : request.kind === 'dir' ? 'logArtifacts()' : 'logFigure()';
    if (this.#finished) throw new TrackspecError(`MLflowTracker.${method} after finish()`);
    if (request.kind === 'file') {
      const dir = checkArtifactPath(method, 'artifactPath', request.artifactPath, true);
      checkLocal(method, 'localPath', request.localPath, 'file');
      this.#artifactTarget();
      const file = resolvePath(request.localPath);
      const rel = dir ? `${dir}/${basename(file)}` : basename(file);
      this.#queueArtifact(rel, { file }, file);
    } else if (request.kind === 'dir') {
      const dir = checkArtifactPath(method, 'artifactPath', request.artifactPath, true);
      checkLocal(method, 'localDir', request.localDir, 'dir');
      this.#artifactTarget();
      const root = resolvePath(request.localDir);
      this.#uploads.add(`walk:${root}`, root, dir || '.', async () => {
        for (const f of await walkFiles(root)) {
          const rel = relative(root, f).split(sep).join('/');
          this.#queueArtifact(dir ? `${dir}/${rel}` : rel, { file: f }, f);
        }
      });
    } else {
      const rel = checkArtifactPath(method, 'artifactFile', request.artifactFile, false);
      const bytes = figureBytes(request.image);
      this.#artifactTarget();
      this.#queueArtifact(rel, { bytes }, `figure ${rel}`);
    }
  }

  /**
   * As MLflow 2.12's `log_image(image, key=key, step=step)`: for each image,
   * `images/<key>%step%<step>%timestamp%<ms>%<uuid>.png` and a thumbnail `…%compressed.webp` (at most
   * 256 px), '/' in keys stored as '#', and the run tag `mlflow.loggedImages` = "True".
   */
  logImages(values: Readonly<Record<string, ImageData | ImageData[]>>, step: number | undefined, kwargs: Readonly<Values> | undefined): void {
    if (this.#finished) throw new TrackspecError('MLflowTracker.logImages() after finish()');
    let timestamp = Date.now();
    if (kwargs !== undefined) {
      for (const k in kwargs) {
        if (k === 'timestamp' && typeof kwargs[k] === 'number') timestamp = kwargs[k] as number;
        else this.#ctx.warnOnce(`imgkwarg:${k}`, `mlflow: logImages kwarg '${k}' is not supported and was ignored`);
      }
    }
    const target = this.#artifactTarget();
    const items: [string, ImageData][] = [];
    for (const [key, v] of Object.entries(values)) {
      const pointer = `/${key.replace(/~/g, '~0').replace(/\//g, '~1')}`;
      if (!IMAGE_KEY.test(key)) {
        throw new ValidationError(`MLflowTracker.logImages(): image key ${JSON.stringify(key)} may only contain letters, digits, '_', '-', '.', ' ' and '/' (MLflow's rule)`, [{ pointer, code: 'mlflow-image-key', message: 'invalid characters' }]);
      }
      if (target.kind === 'http' && key.includes('/')) {
        throw new ValidationError(
          `MLflowTracker.logImages(): image key ${JSON.stringify(key)}: MLflow stores '/' in image keys as '#', which a tracking server refuses in artifact paths; use another separator (e.g. '_' or '.')`,
          [{ pointer, code: 'mlflow-image-key', message: "'/' cannot be stored through a tracking server" }],
        );
      }
      const list = Array.isArray(v) ? v : [v];
      list.forEach((img, i) => {
        checkImage(img, Array.isArray(v) ? `${pointer}/${i}` : pointer);
        items.push([key, img]);
      });
    }
    const s = step ?? 0;
    for (const [key, img] of items) {
      const base = `images/${key.replace(/\//g, '#')}%step%${s}%timestamp%${timestamp}%${cryptoLazy().randomUUID()}`;
      this.#queueArtifact(`${base}.png`, { bytes: encodePng(img) }, `image ${key} (step ${s})`);
      this.#queueArtifact(`${base}%compressed.webp`, { bytes: encodeWebpLossless(compressImageSize(img)) }, `image ${key} (step ${s}) thumbnail`);
    }
    if (items.length > 0 && !this.#imagesTagged) {
      this.#imagesTagged = true;
      this.#queueTag('mlflow.loggedImages', 'True');
    }
  }

  /**
   * As `mlflow.log_table(data, artifact_file)`: `<name>` (`.json` added when missing) holds
   * `{"columns": [...], "data": [[...], ...]}` (pandas' orient="split"); logging the same name again
   * appends the rows; the run tag `mlflow.loggedArtifacts` lists the table as {"path", "type": "table"}.
   */
  logTable(name: string, table: TableData, step: number | undefined, kwargs: Readonly<Values> | undefined): void {
    if (this.#finished) throw new TrackspecError('MLflowTracker.logTable() after finish()');
    if (typeof name !== 'string' || name === '') throw new ValidationError('MLflowTracker.logTable(): name must be a non-empty string', [{ pointer: '/name', code: 'table', message: 'empty name' }]);
    const bad = TABLE_FORBIDDEN.find((c) => name.includes(c));
    if (bad) throw new ValidationError(`MLflowTracker.logTable(): name ${JSON.stringify(name)} contains ${JSON.stringify(bad)}, which MLflow refuses in a table's artifact file`, [{ pointer: '/name', code: 'table', message: `forbidden character ${bad}` }]);
    const rel = checkArtifactPath('logTable()', 'name', name.endsWith('.json') ? name : `${name}.json`, false);
    const t = checkTable(name, table);
    if (step !== undefined) this.#ctx.warnOnce('table:step', 'mlflow: logTable() has no step in MLflow (mlflow.log_table); the step was ignored');
    if (kwargs !== undefined && Object.keys(kwargs).length > 0) this.#ctx.warnOnce('table:kwargs', 'mlflow: logTable() kwargs are not supported and were ignored');
    this.#artifactTarget();
    const prev = this.#tables.get(rel);
    let merged = t;
    if (prev) {
      // pandas.concat([existing, new], ignore_index=True): columns united in order of appearance, missing cells null.
      const columns = [...prev.columns, ...t.columns.filter((c) => !prev.columns.includes(c))];
      const pad = (cols: string[], rows: unknown[][]) => rows.map((r) => columns.map((c) => (cols.includes(c) ? r[cols.indexOf(c)] : null)));
      merged = { columns, data: [...pad(prev.columns, prev.data), ...pad(t.columns, t.data)] };
    }
    this.#tables.set(rel, merged);
    this.#queueArtifact(rel, { bytes: Buffer.from(tableJson(merged.columns, merged.data)) }, `table ${rel}`);
    const entry = { path: rel, type: 'table' };
    if (!this.#loggedArtifacts.some((e) => pyJsonDumps(e) === pyJsonDumps(entry))) {
      this.#loggedArtifacts = [...this.#loggedArtifacts, entry];
      this.#queueTag('mlflow.loggedArtifacts', pyJsonDumps(this.#loggedArtifacts));
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
    const artifacts = this.#uploads.settle();
    try {
      await this.#flushMetrics();
    } catch (e) {
      await artifacts;
      throw e;
    }
    const failures = await artifacts;
    if (failures.length > 0) throw this.#artifactError(failures);
  }

  async #flushMetrics(): Promise<void> {
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
    const artifactFailures = this.#uploads.settle();
    try {
      await this.#batcher.close();
    } catch (e) {
      failure = e;
    }
    const af = await artifactFailures;
    if (af.length > 0) failure ??= this.#artifactError(af);
    if (this.#target?.kind === 'http' && this.#target.own) await this.#target.client.close();
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
        const what = isUnreachable(failure)
          ? `the server at ${this.#store.target} unreachable`
          : failure instanceof MetricWriteError
            ? failure.detail
            : (failure as Error).message.replace(/^mlflow: /, '');
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
    const calls = [...[...this.#inFlight].flat(), ...this.#batcher.takePending(), ...this.#wal.takeKeepSoon()];
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
      let runTagsKnown: Record<string, string> = {};
      if (options.run_id && !(options.nested_run && !parent)) {
        // Resume an existing run.
        const existing = await store.getRun(options.run_id);
        if (!existing) {
          throw new BackendError('mlflow', `run_id ${options.run_id} does not exist at ${store.target} (set by the run_id option or MLFLOW_RUN_ID)`, { code: 'RESOURCE_DOES_NOT_EXIST', status: 404 });
        }
        await store.updateRun(options.run_id, 'RUNNING');
        info = { ...existing.info, status: 'RUNNING' };
        params = existing.params;
        runTagsKnown = existing.tags;
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
      const d = new MLflowRunDriver(choice, info, params, options, ctx, runTagsKnown);
      activeRuns.push(d);
      return d;
    } catch (e) {
      await store.close();
      if (e instanceof TrackspecError) throw e;
      throw new BackendError('mlflow', (e as Error).message, { cause: e });
    }
  },
};

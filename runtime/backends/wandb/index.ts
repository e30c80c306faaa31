/**
 * Weights & Biases backend.
 *
 * - Online, as wandb-core 0.28.2: GraphQL `UpsertBucket` (config as `{key: {value}}` with `_wandb.t`),
 *   then `file_stream` posts (≤ ~10 MiB each) of history rows (`_step`, `_runtime`, `_timestamp`) at
 *   contiguous line offsets plus the summary, one line always at offset 0; an empty post as heartbeat
 *   when idle; `complete` + `exitcode` at finish (at exit: 1 uncaught error, 255 signal, n exit(n)).
 *   Offsets make every post idempotent, so retries never duplicate a row. A post refused for good
 *   stops streaming: the rest of the run goes to the .wandb file and the run is not completed.
 * - Steps, as W&B: `log(values, step)` with a higher step commits the pending row and moves to that
 *   step; the same step merges into the pending row; a lower step is ignored with a warning;
 *   `log(values)` without a step merges into the pending row and commits it (the step then advances).
 * - Offline (`mode: 'offline'`, WANDB_MODE=offline, or the server still unreachable after
 *   retry_deadline_secs): a `.wandb` transaction log under `<dir>/wandb/offline-run-…` that
 *   `wandb sync` uploads, and that `trackspec sync` uploads through the online protocol.
 * - `mode: 'disabled'`: nothing is logged (documented no-op, as W&B).
 * - Media (`logImages`, `logTable`): values and files as the Python SDK (media.ts), encoded in the
 *   background; offline the files go under `files/` with FilesRecords, online through
 *   CreateRunFiles → PUT → `uploaded` (upload.ts) before `complete`; files not uploaded by finish()
 *   are listed in `trackspec-uploads.json` for `trackspec sync`.
 */
import { copyFileSync, existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join, relative, sep } from 'node:path';
import { Batcher } from '../../io/batcher.js';
import type { BackendDriver, DriverContext, TrackerDriver, Values } from '../../core/driver.js';
import { BackendError, ConfigError, TrackspecError, ValidationError } from '../../core/errors.js';
import { postSync } from '../../io/exit-post.js';
import { registerExitHook } from '../../io/exit-hooks.js';
import { HttpClient, HttpStatusError, HttpTransportError, httpError } from '../../io/http.js';
import { lazy } from '../../io/lazy.js';
import { RetryDeadlineError, withRetry, type RetryDecision } from '../../io/retry.js';
import { WriteAhead } from '../../io/write-ahead.js';
import { OfflineRunWriter, parseValueJson, runDirFor, trackspecVersion, type WandbRunInfo } from './offline.js';
import { MAX_IMAGES, MediaValue, checkMediaKey, copyImage, copyTable, imagesValue, prepareAll, tableValue, type MediaFile } from './media.js';
import { CREATE_RUN_FILES, MediaUploader, UPLOAD_LIMITS, type CreateRunFilesResult } from './upload.js';
import type { ImageData, TableData } from '../../core/driver.js';
import { netrcPassword } from './netrc.js';

/** Where a run starts: history offset, step, and (resume) the earlier summary and runtime. */
interface RunStart {
  offset: number;
  step: number;
  summary?: Record<string, unknown>;
  runtimeSecs?: number;
}

const crypto = lazy<typeof import('node:crypto')>('node:crypto');

export interface WandBDriverOptions {
  run_name: string | null;
  entity: string | null;
  name: string | null;
  id: string | null;
  group: string | null;
  job_type: string | null;
  tags: string[] | null;
  notes: string | null;
  config: Record<string, unknown> | null;
  mode: 'online' | 'offline' | 'disabled';
  dir: string | null;
  resume: 'allow' | 'must' | 'never' | 'auto' | null;
  api_key: string | null;
  base_url: string;
  heartbeat_secs: number;
  flush_interval_secs: number;
  retry_deadline_secs: number;
  write_ahead: boolean;
}

/**
 * Committed rows held in memory while the server catches up. Past it, the run continues in the
 * `.wandb` file (as when the server is unreachable): history lines must arrive in offset order, so
 * rows cannot skip ahead of a spilled one. Mutable for tests.
 */
export const QUEUE_LIMITS = { maxPending: 100_000 };

/** A write-ahead spool record: one history line at its offset (wandbJson text). */
export interface WandbSpoolRow {
  o: number;
  l: string;
}

/** A write-ahead spool record: a run file (under the header's `files_dir`) to upload. */
export interface WandbSpoolFile {
  u: string;
}

/** The handle `WandBTracker.tracker` returns. */
export interface WandbRun {
  readonly runId: string;
  readonly entity: string;
  readonly project: string;
  /** 'online', 'offline' (also after falling back), or 'disabled'. */
  readonly mode: 'online' | 'offline' | 'disabled';
  /** The .wandb file when logging offline. */
  readonly offlinePath: string | undefined;
  /** Current step (the step the next committed row gets). */
  readonly step: number;
}

const HISTORY = 'wandb-history.jsonl';
/** Run files an online run did not upload by finish(), beside their files/ directory, for `trackspec sync`. */
export const UPLOADS_MANIFEST = 'trackspec-uploads.json';
const SUMMARY = 'wandb-summary.json';
/** A single value longer than this is refused at log() time (W&B rejects oversized rows). */
export const MAX_VALUE_CHARS = 1_000_000;

let uncaught = false;
process.on('uncaughtExceptionMonitor', () => {
  uncaught = true;
});

const isUnreachable = (e: unknown) => e instanceof HttpTransportError || e instanceof RetryDeadlineError;

/** W&B's config form: top-level key → {value}. */
export function configForm(config: Record<string, unknown>): Record<string, { value: unknown }> {
  return Object.fromEntries(Object.entries(config).map(([k, v]) => [k, { value: v }]));
}

/** The rough size counted for a number, a boolean or a media value (its JSON is short or known later). */
const SMALL_VALUE_CHARS = 24;

/** Characters of the last value jsonValue() returned (a rough size, for the line limit). */
let valueChars = 0;

/** A JSON copy of a value, or a ValidationError naming the key (cycles, oversized strings). */
function jsonValue(key: string, v: unknown): unknown {
  valueChars = SMALL_VALUE_CHARS;
  if (typeof v === 'number') return Number.isFinite(v) ? v : v > 0 ? Infinity : v < 0 ? -Infinity : NaN;
  if (typeof v === 'string') {
    valueChars = v.length;
    if (v.length > MAX_VALUE_CHARS) {
      throw new ValidationError(`WandBTracker.log(): "${key}" is a string of ${v.length} characters; W&B history values are limited to ${MAX_VALUE_CHARS}`, [
        { pointer: `/${key}`, code: 'too-large', message: `string longer than ${MAX_VALUE_CHARS} characters` },
      ]);
    }
    return v;
  }
  if (v === null || typeof v !== 'object') return v;
  if (v instanceof MediaValue) return v; // serialised (toJSON) in the background
  let text: string;
  try {
    text = JSON.stringify(v);
  } catch (e) {
    throw new ValidationError(`WandBTracker.log(): "${key}" is not JSON-serialisable (${(e as Error).message})`, [
      { pointer: `/${key}`, code: 'not-json', message: (e as Error).message },
    ]);
  }
  if (text.length > MAX_VALUE_CHARS) {
    throw new ValidationError(`WandBTracker.log(): "${key}" serialises to ${text.length} characters; W&B history values are limited to ${MAX_VALUE_CHARS}`, [
      { pointer: `/${key}`, code: 'too-large', message: 'value too large' },
    ]);
  }
  valueChars = text.length;
  return JSON.parse(text);
}

/** JSON for the wire: W&B writes non-finite numbers as the bare tokens NaN / Infinity / -Infinity. */
export function wandbJson(v: unknown): string {
  return JSON.stringify(v, (_k, x) => (typeof x === 'number' && !Number.isFinite(x) ? `__nonfinite__${x}` : x)).replace(
    /"__nonfinite__(NaN|Infinity|-Infinity)"/g,
    '$1',
  );
}

/**
 * Encode `media` (if not yet) and write their files under `filesDir` (bytes in memory, else a copy
 * from the directory they are already in, `onDisk`). Appends the paths written to `paths`, for a
 * FilesRecord. File paths are safe relative `/`-separated paths (media.ts), so they are joined by
 * concatenation.
 */
function writeRunFiles(paths: string[], filesDir: string, media: readonly MediaValue[], made: Set<string>, keepBytes: boolean): void {
  for (const m of media) {
    m.resolve();
    for (const f of m.files) {
      if (f.onDisk === filesDir) {
        // already there (written by the encoding worker or the uploader)
        if (!keepBytes) f.bytes = undefined;
        paths.push(f.path);
        continue;
      }
      const to = `${filesDir}/${f.path}`;
      const parent = to.slice(0, to.lastIndexOf('/'));
      if (!made.has(parent)) {
        mkdirSync(parent, { recursive: true });
        made.add(parent);
      }
      if (f.bytes) {
        writeFileSync(to, f.bytes);
        if (!keepBytes) f.bytes = undefined; // on disk now: not held in memory
      } else if (f.onDisk !== undefined && existsSync(`${f.onDisk}/${f.path}`)) {
        copyFileSync(`${f.onDisk}/${f.path}`, to);
      } else continue;
      paths.push(f.path);
    }
  }
}

/** The caption of image `i`: the `caption` kwarg when it is a string, or its i-th string. */
function captionAt(caption: unknown, i: number): string | undefined {
  if (typeof caption === 'string') return caption;
  return Array.isArray(caption) && typeof caption[i] === 'string' ? (caption[i] as string) : undefined;
}

const yamlLib = lazy<typeof import('yaml')>('yaml');

/**
 * The run files wandb-core writes under the run's files directory and uploads at finish
 * (sender.go uploadSummaryFile / uploadConfigFile), so the run's Files tab has them:
 * `wandb-summary.json` (the summary line) and `config.yaml` (`{key: {value}}` with `_wandb`, keys
 * sorted, 4-space indent, as Go's yaml.v3 writes runconfig's map). Returned as run files to upload.
 */
export function writeRunInfoFiles(filesDir: string, config: Record<string, unknown>, summary: string | undefined): MediaFile[] {
  mkdirSync(filesDir, { recursive: true });
  const out: MediaFile[] = [];
  const add = (path: string, text: string): void => {
    const bytes = Buffer.from(text, 'utf8');
    writeFileSync(join(filesDir, path), bytes);
    out.push({ path, bytes, sha256: crypto().createHash('sha256').update(bytes).digest('hex'), size: bytes.length });
  };
  if (summary !== undefined) add('wandb-summary.json', summary);
  add('config.yaml', yamlLib().stringify(configForm({ _wandb: wandbInternalConfig(), ...config }), { indent: 4, sortMapEntries: true, lineWidth: 0 }));
  return out;
}

/** A committed history row; serialised (JSON or protobuf) in the background, never in log(). */
interface Row {
  offset: number;
  row: Record<string, unknown>;
  /** wandbJson(row), computed once by whichever needs it first (the post or the write-ahead). */
  line?: string;
  /** Media values in the row (their files are written / uploaded with it). */
  media?: MediaValue[];
}

const lineOf = (r: Row): string => (r.line ??= wandbJson(r.row));

export interface WandbConnection {
  http: HttpClient;
  deadlineMs: number;
}

/**
 * W&B's file_stream limits (wandb-core `filestream.go`): one history/summary line at most
 * 10 MiB − 100 KiB (longer lines are skipped with a warning), one request about 10 MiB (rows are
 * split over several posts). Mutable for tests.
 */
export const WANDB_LIMITS = { maxLineBytes: (10 << 20) - (100 << 10), maxRequestBytes: 10 << 20 };
/** Room kept in a request for the JSON envelope (file names, offsets, quotes and commas per line). */
const ENVELOPE_BYTES = 64 << 10;

/** Statuses wandb-core never retries (`RetryMostFailures`); every other 4xx/5xx (408, 429, 500, …) is retried. */
const PERMANENT = new Set([400, 401, 403, 404, 409, 410, 413, 422, 501]);
/** UpsertBucket's own policy: as above, but a 409 (conflict) is retried. */
const PERMANENT_UPSERT = new Set([400, 401, 403, 404, 410, 413, 422, 501]);
/** Retries per call, as wandb-core: GraphQL 20, file_stream 10085 (about 7 days at 60 s). */
const MAX_RETRIES = { graphql: 20, fileStream: 10_085 };

export function wandbClassify(err: unknown, permanent: ReadonlySet<number> = PERMANENT): RetryDecision {
  if (err instanceof HttpTransportError) return err.code === 'ECLOSED' ? { retry: false } : { retry: true };
  if (err instanceof HttpStatusError) {
    const s = err.status;
    if (permanent.has(s)) return { retry: false };
    if (s >= 400 || s < 200) return err.retryAfterMs !== undefined ? { retry: true, afterMs: err.retryAfterMs } : { retry: true };
  }
  return { retry: false };
}

/**
 * withRetry with W&B's policy. The retry deadline (`retry_deadline_secs`) bounds only the time the
 * server is unreachable or failing: a wait the server asked for (`Retry-After`) is honoured in full
 * and not counted against it, as wandb-core does (it never turns a slow-down into "unreachable").
 */
export function wandbRetry<T>(conn: WandbConnection, fn: () => Promise<T>, opts: { maxRetries: number; permanent?: ReadonlySet<number> }): Promise<T> {
  let serverWaits = 0; // ms slept because the server asked for it
  let asked = 0; // the Retry-After of the decision being made (excluded from the deadline check)
  let retries = 0;
  return withRetry(fn, {
    policy: { deadlineMs: conn.deadlineMs },
    backend: 'wandb',
    classify: (e) => {
      const d = wandbClassify(e, opts.permanent);
      if (!d.retry) return d;
      if (++retries > opts.maxRetries) return { retry: false };
      asked = d.afterMs ?? 0;
      return d;
    },
    now: () => Date.now() - serverWaits - asked,
    sleep: async (ms) => {
      await new Promise((r) => setTimeout(r, ms));
      serverWaits += Math.min(ms, asked);
      asked = 0;
    },
  });
}

export function wandbConnect(baseUrl: string, apiKey: string, deadlineMs: number): WandbConnection {
  return {
    http: new HttpClient({
      baseUrl,
      headers: { authorization: `Basic ${Buffer.from(`api:${apiKey}`).toString('base64')}`, 'user-agent': USER_AGENT() },
      backend: 'wandb',
      proxyFromEnv: true,
    }),
    deadlineMs,
  };
}

const USER_AGENT = (): string => `trackspec/${trackspecVersion()} (wandb)`;

export async function graphql<T>(conn: WandbConnection, operationName: string, query: string, variables: Record<string, unknown>): Promise<T> {
  return wandbRetry(
    conn,
    async () => {
      const res = await conn.http.request<{ data?: T; errors?: { message: string }[] }>('POST', '/graphql', { json: { operationName, query, variables } });
      const messages = Array.isArray(res.body?.errors) ? res.body.errors.map((e) => e?.message).filter((m) => typeof m === 'string').join('; ') : '';
      if (res.status < 200 || res.status >= 300) {
        const e = httpError('wandb', operationName, res);
        if (!messages) throw e;
        // wandb-core uses the GraphQL errors[].message as the error text (gqlerrors.go).
        throw new HttpStatusError('wandb', `${operationName} failed: HTTP ${res.status} ${messages}${e.retryAfterMs !== undefined ? ` (retry after ${e.retryAfterMs} ms)` : ''}`, {
          status: res.status, retryAfterMs: e.retryAfterMs, body: res.body, serverMessage: messages,
        });
      }
      const body = res.body;
      if (messages) throw new BackendError('wandb', `${operationName}: ${messages}`, { status: res.status });
      return body.data as T;
    },
    { maxRetries: MAX_RETRIES.graphql, permanent: operationName === 'UpsertBucket' ? PERMANENT_UPSERT : PERMANENT },
  );
}

export const fileStreamPath = (entity: string, project: string, runId: string): string =>
  `/files/${encodeURIComponent(entity)}/${encodeURIComponent(project)}/${encodeURIComponent(runId)}/file_stream`;

export async function fileStream(conn: WandbConnection, entity: string, project: string, runId: string, body: Record<string, unknown>): Promise<void> {
  await wandbRetry(
    conn,
    async () => {
      const res = await conn.http.request('POST', fileStreamPath(entity, project, runId), { json: body });
      if (res.status < 200 || res.status >= 300) throw httpError('wandb', 'file_stream', res);
    },
    { maxRetries: MAX_RETRIES.fileStream },
  );
}

/** Upper bound of a line's UTF-8 size (exact for long lines). */
const lineBytes = (l: string): number => (l.length < 4096 ? l.length * 3 : Buffer.byteLength(l));

/**
 * Split history lines (contiguous offsets) into file_stream posts of at most about
 * `maxRequestBytes`, as wandb-core does; `extraBytes` is kept free in the last post (the summary).
 */
export function chunkLines<T>(items: readonly T[], line: (t: T) => string): T[][] {
  const cap = WANDB_LIMITS.maxRequestBytes - ENVELOPE_BYTES;
  const out: T[][] = [];
  let cur: T[] = [];
  let size = 0;
  for (const it of items) {
    const n = lineBytes(line(it)) + 8;
    if (cur.length > 0 && size + n > cap) {
      out.push(cur);
      cur = [];
      size = 0;
    }
    cur.push(it);
    size += n;
  }
  if (cur.length > 0) out.push(cur);
  return out;
}

/** The summary line, or undefined (with a warning) when it is over W&B's line limit (wandb-core skips it). */
export function summaryLine(summary: Record<string, unknown>, warn: (m: string) => void): string | undefined {
  const line = wandbJson(summary);
  if (lineBytes(line) > WANDB_LIMITS.maxLineBytes && Buffer.byteLength(line) > WANDB_LIMITS.maxLineBytes) {
    warn(`wandb: the run summary is ${Buffer.byteLength(line)} bytes, over W&B's line limit of ${WANDB_LIMITS.maxLineBytes}; it was not sent (as wandb-core skips it)`);
    return undefined;
  }
  return line;
}

/** Merge a row into the summary leaf by leaf (nested dicts merged, as wandb-core's runsummary). Never aliases the row's objects. */
export function mergeSummary(target: Record<string, unknown>, src: Readonly<Record<string, unknown>>): void {
  for (const k in src) {
    const v = src[k];
    if (v !== null && typeof v === 'object' && !Array.isArray(v) && !(v instanceof MediaValue)) {
      const t = target[k];
      const into = t !== null && typeof t === 'object' && !Array.isArray(t) ? (t as Record<string, unknown>) : (target[k] = {});
      mergeSummary(into as Record<string, unknown>, v as Record<string, unknown>);
    } else target[k] = v;
  }
}

export const UPSERT_BUCKET = `mutation UpsertBucket($id: String, $name: String, $project: String, $entity: String, $groupName: String, $description: String, $displayName: String, $notes: String, $config: JSONString, $host: String, $jobType: String, $tags: [String!], $summaryMetrics: JSONString) {
  upsertBucket(input: {id: $id, name: $name, modelName: $project, entityName: $entity, groupName: $groupName, description: $description, displayName: $displayName, notes: $notes, config: $config, host: $host, jobType: $jobType, tags: $tags, summaryMetrics: $summaryMetrics}) {
    bucket { id name displayName description config sweepName historyLineCount project { id name entity { id name } } }
    inserted
  }
}`;
const VIEWER = 'query Viewer { viewer { id entity username } }';
const RESUME_STATUS = `query RunResumeStatus($project: String, $entity: String, $name: String!) {
  model(name: $project, entityName: $entity) { id name entity { id name } bucket(name: $name, missingOk: true) { id name summaryMetrics displayName logLineCount historyLineCount eventsLineCount historyTail eventsTail config tags notes wandbConfig(keys: ["t"]) } }
}`;

/**
 * The \`_wandb\` config entries a resume depends on: W&B's clients treat a run as started only when
 * \`_wandb.t\` (telemetry) exists (wandb-core runbranch/resume.go), so without it \`resume="must"\`
 * fails and "allow" starts over. \`t\` is a TelemetryRecord as a dict by field number (13 = platform).
 */
export function wandbInternalConfig(): Record<string, unknown> {
  return { t: { '13': `${process.platform}-${process.arch}` }, m: [] };
}

export interface UpsertVariables {
  name: string;
  project: string;
  entity: string;
  displayName?: string | null;
  notes?: string | null;
  groupName?: string | null;
  jobType?: string | null;
  tags?: string[] | null;
  config?: Record<string, unknown>;
  host?: string;
}

export async function upsertBucket(conn: WandbConnection, v: UpsertVariables): Promise<{ historyLineCount: number }> {
  const variables: Record<string, unknown> = { name: v.name, project: v.project, entity: v.entity, host: v.host ?? hostname() };
  if (v.displayName) variables.displayName = v.displayName;
  if (v.notes) variables.notes = v.notes;
  if (v.groupName) variables.groupName = v.groupName;
  if (v.jobType) variables.jobType = v.jobType;
  if (v.tags) variables.tags = v.tags;
  if (v.config) variables.config = wandbJson(configForm({ _wandb: wandbInternalConfig(), ...v.config }));
  const data = await graphql<{ upsertBucket: { bucket: { historyLineCount?: number } } }>(conn, 'UpsertBucket', UPSERT_BUCKET, variables);
  return { historyLineCount: Number(data.upsertBucket.bucket.historyLineCount ?? 0) };
}

export interface ResumeStatus {
  historyLineCount: number;
  lastStep: number | null;
  summary: Record<string, unknown>;
  /** Top-level config values (unwrapped from {value}), without `_wandb`. */
  config: Record<string, unknown>;
  /** Seconds the run has run so far (summary `_wandb.runtime`, else `_runtime`). */
  runtimeSecs: number;
  /** False when the run exists but no client started it (no `_wandb.t`): W&B treats it as new. */
  started: boolean;
}

export async function resumeStatus(conn: WandbConnection, entity: string, project: string, runId: string): Promise<ResumeStatus | undefined> {
  const data = await graphql<{ model: { bucket: { historyLineCount?: number; summaryMetrics?: string; config?: string; wandbConfig?: string | null } | null } | null }>(conn, 'RunResumeStatus', RESUME_STATUS, {
    project, entity, name: runId,
  });
  const b = data.model?.bucket;
  if (!b) return undefined;
  let started = false;
  try {
    const w = b.wandbConfig ? (parseValueJson(b.wandbConfig) as Record<string, unknown> | null) : null;
    started = w !== null && typeof w === 'object' && 't' in w;
  } catch {
    // unreadable: not started
  }
  const config: Record<string, unknown> = {};
  try {
    const c = parseValueJson(b.config ?? '{}') as Record<string, unknown>;
    for (const [k, v] of Object.entries(c ?? {})) {
      if (k === '_wandb') continue;
      config[k] = v !== null && typeof v === 'object' && !Array.isArray(v) && 'value' in v ? (v as { value: unknown }).value : v;
    }
  } catch {
    // no usable config
  }
  let lastStep: number | null = null;
  let summary: Record<string, unknown> = {};
  let runtimeSecs = 0;
  try {
    const s = parseValueJson(b.summaryMetrics ?? '{}') as { _step?: number; _runtime?: number; _wandb?: { runtime?: number } };
    if (s !== null && typeof s === 'object') summary = s;
    if (typeof s._step === 'number') lastStep = s._step;
    const rt = s._wandb?.runtime ?? s._runtime;
    if (typeof rt === 'number' && Number.isFinite(rt) && rt > 0) runtimeSecs = rt;
  } catch {
    // no usable summary
  }
  return { historyLineCount: Number(b.historyLineCount ?? 0), lastStep, summary, config, runtimeSecs, started };
}

class WandbRunDriver implements TrackerDriver<WandbRun> {
  readonly handle: WandbRun;
  readonly #ctx: DriverContext;
  readonly #info: WandbRunInfo;
  readonly #root: string;
  readonly #startMs: number;
  #conn: WandbConnection | undefined;
  #offline: OfflineRunWriter | undefined;
  #offlineOpening: Promise<OfflineRunWriter> | undefined;
  /** Offset of the next history row the offline file expects (rows below it are already in it). */
  #offlineNext = -1;
  /** Write-ahead of rows the server has not acknowledged (online). */
  /** Rows not yet accepted by the server, and run files not yet uploaded. */
  readonly #wal: WriteAhead<Row | MediaFile>;
  readonly #walOn: boolean;
  #step: number;
  #pending: Record<string, unknown> | undefined;
  #summary: Record<string, unknown>;
  /** Rough characters of the pending row (exact size checked at commit only when it could be over the line limit). */
  #pendingChars = 0;
  #offset: number;
  /** Offset of the first history line the server has not accepted. */
  #acceptedTo: number;
  /** A post the server refused for good (4xx): streaming stopped, the rows are kept in the .wandb file. */
  #refused: Error | undefined;
  /** Rows over W&B's line limit, skipped with a warning. */
  #skipped = 0;
  readonly #batcher: Batcher<Row>;
  #heartbeat: NodeJS.Timeout | undefined;
  #lastPost = Date.now();
  readonly #inFlight = new Set<Row[]>();
  readonly #baseUrl: string;
  readonly #authHeaders: Record<string, string>;
  #finished = false;
  #unregisterExit: () => void;
  /** Media values of the pending row. */
  #pendingMedia: MediaValue[] | undefined;
  /** Media values logged and not yet encoded (encoded in the background, in order). */
  #encodeQueue: MediaValue[] = [];
  #encodeScheduled = false;
  /** Input bytes copied by log*() and not encoded yet (bounded by the upload byte budget). */
  #rawHeld = 0;
  /** Online: uploads run files (created on the first media value). */
  #uploader: MediaUploader | undefined;
  readonly #deadlineMs: number;

  constructor(info: WandbRunInfo, root: string, conn: WandbConnection | undefined, start: RunStart, ctx: DriverContext, options: WandBDriverOptions) {
    this.#ctx = ctx;
    this.#info = info;
    this.#root = root;
    this.#conn = conn;
    this.#offset = start.offset;
    this.#acceptedTo = start.offset;
    this.#step = start.step;
    this.#summary = start.summary ?? {};
    // A resumed run's runtime continues from the earlier sessions' (wandb-core resume.go).
    this.#startMs = Date.now() - (start.runtimeSecs ?? 0) * 1000;
    this.#baseUrl = options.base_url.replace(/\/+$/, '');
    this.#deadlineMs = options.retry_deadline_secs * 1000;
    this.#authHeaders = options.api_key ? { authorization: `Basic ${Buffer.from(`api:${options.api_key}`).toString('base64')}` } : {};
    const self = this;
    this.handle = {
      runId: info.runId,
      entity: info.entity,
      project: info.project,
      get mode() {
        return self.#conn ? 'online' : 'offline';
      },
      get offlinePath() {
        return self.#offline?.path;
      },
      get step() {
        return self.#step;
      },
    };
    this.#walOn = conn !== undefined && options.write_ahead;
    this.#wal = new WriteAhead<Row | MediaFile>({
      dir: root,
      header: () => ({
        backend: 'wandb',
        target: this.#baseUrl,
        created: Date.now(),
        // files_dir: where run files listed in the spool are, relative to `root` (the spool's parent).
        meta: { entity: info.entity, project: info.project, run_id: info.runId, files_dir: relative(root, join(runDirFor(root, info, true), 'files')).split(sep).join('/') },
      }),
      intervalMs: options.flush_interval_secs * 1000,
      records: (it): (WandbSpoolRow | WandbSpoolFile)[] => ('offset' in it ? [{ o: it.offset, l: lineOf(it) }] : [{ u: it.path }]),
      // A row whose media the worker is still encoding waits for a later tick (serialising it now
      // would encode on this thread); the byte budget bounds how long that can be.
      ready: (it) => !('offset' in it) || it.media === undefined || it.media.every((m) => m.resolved),
      onError: (e) => ctx.warnOnce('spool:error', `wandb: could not write ahead to the spool under ${root}: ${(e as Error).message}`),
    });
    this.#batcher = new Batcher<Row>({
      maxBatch: 1000,
      maxDelayMs: conn ? options.flush_interval_secs * 1000 : 200,
      maxPending: QUEUE_LIMITS.maxPending,
      concurrency: 1, // offsets must arrive in order
      send: async (rows) => {
        this.#inFlight.add(rows);
        try {
          await this.#mediaReady(rows);
          await this.#post(rows);
          if (this.#walOn) this.#wal.acked(rows);
        } finally {
          this.#inFlight.delete(rows);
        }
      },
      onFailed: async (rows, error) => {
        if (isUnreachable(error)) await this.#fallBack(rows);
        else await this.#refuse(rows, error);
      },
      overflow: (items) => {
        // Past the in-memory cap: the run continues in the .wandb file, rows in offset order.
        if (this.#conn) this.#ctx.warn(`wandb: rows are logged faster than the server accepts them; past ${QUEUE_LIMITS.maxPending} queued rows the run continues in a .wandb file (upload later with \`trackspec sync ${this.#root}\` or \`wandb sync\`)`);
        const rest = [...[...this.#inFlight].flat(), ...this.#batcher.takePending(), ...items].sort((a, b) => a.offset - b.offset);
        this.#goOffline();
        const w = this.#openOfflineSync(rest[0]?.offset ?? this.#offset);
        this.#toOffline(w, rest);
        w.flushSync();
        if (this.#walOn) this.#wal.acked(rest);
      },
    });
    if (conn) {
      this.#heartbeat = setInterval(() => {
        if (this.#conn && Date.now() - this.#lastPost >= options.heartbeat_secs * 1000) {
          this.#lastPost = Date.now();
          void fileStream(this.#conn, info.entity, info.project, info.runId, {}).catch(() => undefined);
        }
      }, Math.max(50, (options.heartbeat_secs * 1000) / 2));
      this.#heartbeat.unref();
    }
    this.#unregisterExit = registerExitHook((reason) => this.#onExit(reason));
  }

  /**
   * Post rows (contiguous offsets) in requests of at most about 10 MiB, the summary with the last
   * one: the whole summary as one line, always at offset 0 (wandb-core's SummaryLineNum).
   */
  async #post(rows: Row[]): Promise<void> {
    this.#fold(rows);
    if (!this.#conn) return this.#fallBack(rows);
    const chunks = chunkLines(rows, lineOf);
    for (let i = 0; i < chunks.length; i++) {
      const chunk = chunks[i]!;
      if (!this.#conn) return this.#fallBack(chunk);
      this.#lastPost = Date.now();
      const files: Record<string, unknown> = { [HISTORY]: { offset: chunk[0]!.offset, content: chunk.map(lineOf) } };
      if (i === chunks.length - 1) {
        const line = this.#summaryLine();
        if (line !== undefined) files[SUMMARY] = { offset: 0, content: [line] };
      }
      await fileStream(this.#conn, this.#info.entity, this.#info.project, this.#info.runId, { files });
      this.#acceptedTo = chunk[chunk.length - 1]!.offset + 1;
      if (this.#walOn && chunks.length > 1) this.#wal.acked(chunk);
    }
  }

  /** The summary line (with `_wandb.runtime` in whole seconds, as wandb-core), or undefined when over the line limit. */
  #summaryLine(): string | undefined {
    const w = this.#summary._wandb;
    this.#summary._wandb = { ...(w !== null && typeof w === 'object' ? w : {}), runtime: Math.floor((Date.now() - this.#startMs) / 1000) };
    return summaryLine(this.#summary, (m) => this.#ctx.warnOnce('summary:too-long', m));
  }

  /**
   * The server refused a post for good (e.g. 413, 400): stop streaming (wandb-core stops its
   * file_stream on a non-retryable error) and keep every row not accepted, and all later ones, in
   * the .wandb file at their offsets for `trackspec sync`. finish() reports it; the run is not
   * marked complete with rows missing.
   */
  async #refuse(rows: Row[], error: unknown): Promise<void> {
    const rest = rows.filter((r) => r.offset >= this.#acceptedTo);
    if (this.#walOn) this.#wal.acked(rows.filter((r) => r.offset < this.#acceptedTo));
    if (!this.#refused) {
      this.#refused = error as Error;
      this.#ctx.warn(`wandb: the server refused a post for good (${(error as Error).message}); streaming stopped and every row from offset ${rest[0]?.offset ?? this.#acceptedTo} on is kept in a .wandb file under ${this.#root} (upload it with \`trackspec sync ${this.#root}\` or \`wandb sync\`)`);
    }
    this.#goOffline();
    const w = await this.#openOffline(rest[0]?.offset ?? this.#acceptedTo);
    this.#toOffline(w, rest);
    w.summary(this.#summary);
    await w.flush();
    if (this.#walOn) this.#wal.acked(rest); // durable in the .wandb file now
  }

  /** The server stayed unreachable: continue in a .wandb file (rows not yet accepted go there first). */
  async #fallBack(rows: Row[]): Promise<void> {
    if (this.#conn) this.#ctx.warn(`wandb: the server is unreachable; the run continues offline (upload later with \`trackspec sync ${this.#root}\` or \`wandb sync\`)`);
    this.#goOffline();
    const w = await this.#openOffline(rows[0]?.offset ?? this.#offset);
    this.#toOffline(w, rows);
    w.summary(this.#summary);
    await w.flush();
    if (this.#walOn) this.#wal.acked(rows); // durable in the .wandb file now
  }

  /** Stop posting: the rest of the run goes to the .wandb file. */
  #goOffline(): void {
    if (!this.#conn) return;
    const conn = this.#conn;
    this.#conn = undefined;
    if (this.#heartbeat) clearInterval(this.#heartbeat);
    void conn.http.close();
  }

  /** Append history rows to the offline file, skipping rows it already holds (it stays contiguous). */
  #toOffline(w: OfflineRunWriter, rows: readonly Row[]): void {
    // The batch's run files first (written, then one FilesRecord), then its history rows.
    let paths: string[] | undefined;
    let made: Set<string> | undefined;
    const filesDir = join(w.runDir, 'files');
    for (const r of rows) if (r.media && r.offset >= this.#offlineNext) writeRunFiles((paths ??= []), filesDir, r.media, (made ??= new Set()), this.#uploader !== undefined);
    if (paths) w.files(paths);
    for (const r of rows) {
      if (r.offset < this.#offlineNext) continue;
      w.history(r.row, Number(r.row._step));
      this.#offlineNext = r.offset + 1;
    }
  }

  #openOffline(baseOffset: number): Promise<OfflineRunWriter> {
    if (this.#offline && !this.#offlineOpening) this.#offlineOpening = Promise.resolve(this.#offline);
    this.#offlineOpening ??= OfflineRunWriter.create(this.#root, { ...this.#info, resumed: baseOffset > 0 || this.#info.resumed }).then(async (w) => {
      this.#offline = w;
      this.#offlineNext = baseOffset;
      // Where this file's history continues the run's history online (for trackspec sync).
      const { writeFile } = await import('node:fs/promises');
      await writeFile(`${w.path}.offset`, String(baseOffset));
      return w;
    });
    return this.#offlineOpening;
  }

  #openOfflineSync(baseOffset: number): OfflineRunWriter {
    if (this.#offline) return this.#offline;
    const w = OfflineRunWriter.createSync(this.#root, { ...this.#info, resumed: baseOffset > 0 || this.#info.resumed });
    writeFileSync(`${w.path}.offset`, String(baseOffset));
    this.#offline = w;
    this.#offlineNext = baseOffset;
    this.#offlineOpening ??= Promise.resolve(w);
    return w;
  }

  #merge(values: Readonly<Values>): void {
    const p = (this.#pending ??= {});
    for (const key in values) {
      p[key] = jsonValue(key, values[key]);
      this.#pendingChars += valueChars + key.length;
    }
  }

  /** Commit the pending row (already a private copy: it becomes the row). The summary is folded in the background. */
  #commit(): void {
    const row = this.#pending;
    if (!row) return;
    this.#pending = undefined;
    const media = this.#pendingMedia;
    this.#pendingMedia = undefined;
    const chars = this.#pendingChars;
    this.#pendingChars = 0;
    const step = this.#step++;
    // An empty row is not written, but the step advances (wandb-core handler.go).
    let empty = true;
    for (const _k in row) {
      empty = false;
      break;
    }
    if (empty) return;
    const now = Date.now();
    row._step = step;
    row._runtime = (now - this.#startMs) / 1000;
    row._timestamp = now / 1000;
    const r: Row = { offset: this.#offset, row };
    if (media) r.media = media;
    // A JSON character takes at most 6 bytes (\uXXXX): only a row that could be over the line limit is measured.
    if (chars * 6 > WANDB_LIMITS.maxLineBytes && Buffer.byteLength(lineOf(r)) > WANDB_LIMITS.maxLineBytes) {
      this.#skipped++;
      this.#ctx.warn(`wandb: the row at step ${step} is ${Buffer.byteLength(lineOf(r))} bytes as JSON, over W&B's line limit of ${WANDB_LIMITS.maxLineBytes}; it was skipped (as wandb-core skips it)`);
      return;
    }
    this.#offset++;
    this.#batcher.push(r);
    if (this.#walOn) this.#wal.push(r);
  }

  /** The summary as of the given rows (latest value per key). */
  #fold(rows: readonly Row[]): Record<string, unknown> {
    for (const r of rows) mergeSummary(this.#summary, r.row);
    return this.#summary;
  }

  log(values: Readonly<Values>, step: number | undefined, _kwargs: Readonly<Values> | undefined): void {
    if (this.#finished) throw new TrackspecError('WandBTracker.log() after finish()');
    if (step !== undefined) {
      if (step < this.#step) {
        this.#ctx.warnOnce(`step-back`, `wandb: log() with step ${step} is lower than the current step ${this.#step}; the values were ignored (steps must not go backwards, as in W&B)`);
        return;
      }
      if (step > this.#step) {
        this.#commit();
        this.#step = step;
      }
      this.#merge(values);
      return;
    }
    this.#merge(values);
    this.#commit();
  }

  /**
   * As Accelerate's WandBTracker.log_images: one `log` per key, so without a step the step advances
   * once per key. One image → `image-file`, a list → `images/separated` (at most 108, as W&B).
   * kwargs: `caption` (a string, or one per image). Checks and copies here; encodes in the background.
   */
  logImages(values: Readonly<Record<string, ImageData | ImageData[]>>, step: number | undefined, kwargs: Readonly<Values> | undefined): void {
    if (this.#finished) throw new TrackspecError('WandBTracker.logImages() after finish()');
    let caption: unknown;
    if (kwargs !== undefined) {
      caption = kwargs.caption;
      for (const k in kwargs) if (k !== 'caption') this.#ctx.warnOnce(`kwarg:logImages:${k}`, `wandb: logImages kwarg '${k}' is not supported (only caption) and was ignored`);
    }
    // Everything is checked and copied before anything is logged: a bad image logs nothing.
    let first: MediaValue | undefined;
    let firstKey = '';
    let more: [string, MediaValue][] | undefined;
    for (const key in values) {
      checkMediaKey('logImages', key);
      const v = values[key]!;
      let m: MediaValue;
      if (!Array.isArray(v)) m = imagesValue(key, this.#step, [copyImage(v, key)], true, [captionAt(caption, 0)]);
      else {
        if (v.length === 0) continue;
        let list = v as ImageData[];
        if (list.length > MAX_IMAGES) {
          this.#ctx.warnOnce(`images:max:${key}`, `wandb: "${key}" has ${list.length} images; only the first ${MAX_IMAGES} are logged (as W&B)`);
          list = list.slice(0, MAX_IMAGES);
        }
        const copies: ImageData[] = new Array(list.length);
        const captions: (string | undefined)[] = new Array(list.length);
        for (let i = 0; i < list.length; i++) {
          copies[i] = copyImage(list[i]!, key, i);
          captions[i] = captionAt(caption, i);
        }
        m = imagesValue(key, this.#step, copies, false, captions);
      }
      if (first === undefined) {
        first = m;
        firstKey = key;
      } else (more ??= []).push([key, m]);
    }
    if (first === undefined) return;
    this.#logMedia(firstKey, first, step);
    if (more) for (const [key, m] of more) this.#logMedia(key, m, step);
  }

  /** A `table-file` value under `name` and its table JSON; a bad cell or a ragged row is a ValidationError naming row and column. */
  logTable(name: string, table: TableData, step: number | undefined, _kwargs: Readonly<Values> | undefined): void {
    if (this.#finished) throw new TrackspecError('WandBTracker.logTable() after finish()');
    checkMediaKey('logTable', name);
    this.#logMedia(name, tableValue(name, this.#step, copyTable(name, table)), step);
  }

  #logMedia(key: string, m: MediaValue, step: number | undefined): void {
    if (step !== undefined && step < this.#step) {
      this.log({ [key]: m }, step, undefined); // warns and ignores, as log()
      return;
    }
    this.#encodeQueue.push(m);
    this.#rawHeld += m.rawBytes;
    // Over the byte budget: encode now (back-pressure) instead of holding more copies.
    if (this.#rawHeld > UPLOAD_LIMITS.budgetBytes) this.#encode(true);
    else this.#scheduleEncode();
    if (step === undefined) {
      this.#addMedia(key, m);
      this.#commit();
      return;
    }
    if (step > this.#step) {
      this.#commit();
      this.#step = step;
    }
    this.#addMedia(key, m);
  }

  /** Put a media value in the pending row (as #merge does for plain values). */
  #addMedia(key: string, m: MediaValue): void {
    (this.#pending ??= {})[key] = m;
    this.#pendingChars += SMALL_VALUE_CHARS + key.length;
    (this.#pendingMedia ??= []).push(m);
  }

  #scheduleEncode(): void {
    if (this.#encodeScheduled) return;
    this.#encodeScheduled = true;
    setImmediate(() => {
      this.#encodeScheduled = false;
      try {
        this.#encode();
      } catch (e) {
        this.#ctx.warn(`wandb: encoding media failed: ${(e as Error).message}`);
      }
    });
  }

  /**
   * Encode every queued media value — in the worker thread (`sync` false: background, flush,
   * finish), or here (`sync`: back-pressure, process exit) — and hand its files to the uploader.
   */
  #encode(sync = false): void {
    const q = this.#encodeQueue;
    if (q.length === 0) return;
    this.#encodeQueue = [];
    const done = (m: MediaValue): void => {
      this.#rawHeld -= m.rawBytes;
      if (this.#conn) this.#upload(m.files);
    };
    if (!sync) {
      // The worker writes the PNGs into the run's files directory (online: the uploader's, offline: the .wandb file's).
      prepareAll(q, done, this.#filesDir(this.#conn !== undefined));
      return;
    }
    for (const m of q) {
      m.resolve();
      done(m);
    }
  }

  /** Wait until the media values of these rows are encoded (before they are serialised). */
  async #mediaReady(rows: readonly Row[]): Promise<void> {
    let waits: Promise<void>[] | undefined;
    for (const r of rows) if (r.media) for (const m of r.media) if (!m.resolved) (waits ??= []).push(m.ready);
    if (!waits) return;
    this.#encode(); // anything still queued goes to the worker now
    await Promise.all(waits);
  }

  /** The run's files directory: the online run's (the uploader's) or the offline run's. */
  #filesDir(online: boolean): string {
    return join(runDirFor(this.#root, this.#info, online), 'files');
  }

  #upload(files: MediaFile[]): void {
    const conn = this.#conn;
    if (!conn) return;
    const { entity, project, runId } = this.#info;
    this.#uploader ??= new MediaUploader(
      {
        createRunFiles: async (paths) =>
          (await graphql<{ createRunFiles: CreateRunFilesResult }>(this.#conn ?? conn, 'CreateRunFiles', CREATE_RUN_FILES, { entity, project, run: runId, files: paths })).createRunFiles,
        reportUploaded: (paths) => fileStream(this.#conn ?? conn, entity, project, runId, { uploaded: paths }),
      },
      this.#filesDir(true),
      // With write-ahead, each file is on disk and in the spool until it is uploaded, so a killed
      // process leaves it for `trackspec sync`.
      { deadlineMs: this.#deadlineMs, warn: (m) => this.#ctx.warn(m), persist: this.#walOn, onUploaded: (done) => this.#walOn && this.#wal.acked(done) },
    );
    this.#uploader.add(files);
    if (this.#walOn) for (const f of files) this.#wal.push(f);
  }

  /**
   * finish(): wait for the uploads (at most the retry deadline); files still not uploaded are listed
   * in `<run dir>/trackspec-uploads.json` (the files are beside it) for `trackspec sync`.
   */
  async #finishUploads(): Promise<void> {
    const up = this.#uploader;
    if (!up) return;
    const left = await up.drain(this.#deadlineMs);
    await up.close();
    if (left.length === 0) return;
    this.#writeUploadsManifest(left);
    this.#ctx.warn(`wandb: ${left.length} run file(s) were not uploaded before the deadline; they are kept in ${runDirFor(this.#root, this.#info, true)} (upload them with \`trackspec sync ${this.#root}\`)`);
  }

  /** List run files not uploaded for `trackspec sync` (which then uploads them from here, not from the write-ahead spool). */
  #writeUploadsManifest(left: MediaFile[]): void {
    if (left.length === 0) return;
    const runDir = runDirFor(this.#root, this.#info, true);
    const manifest = { backend: 'wandb', target: this.#baseUrl, entity: this.#info.entity, project: this.#info.project, run_id: this.#info.runId, files: left.map((f) => ({ path: f.path, sha256: f.sha256, size: f.size })) };
    mkdirSync(runDir, { recursive: true });
    writeFileSync(join(runDir, UPLOADS_MANIFEST), JSON.stringify(manifest, null, 1));
    if (this.#walOn) this.#wal.acked(left);
  }

  async storeInitConfiguration(values: Readonly<Values>): Promise<void> {
    const update: Record<string, unknown> = {};
    for (const key in values) update[key] = jsonValue(key, values[key]);
    Object.assign(this.#info.config, update);
    if (this.#conn) {
      try {
        await upsertBucket(this.#conn, { name: this.#info.runId, project: this.#info.project, entity: this.#info.entity, config: this.#info.config });
        return;
      } catch (e) {
        if (!isUnreachable(e)) throw e;
        await this.#fallBack([]);
      }
    }
    const w = this.#offline ?? (await this.#openOffline(this.#offset));
    w.config(update);
    await w.flush();
  }

  async flush(): Promise<void> {
    this.#encode();
    try {
      await this.#batcher.flush();
    } catch (e) {
      if (!isUnreachable(e)) throw e; // unreachable: the rows went to the offline file (warned)
    }
    if (this.#offline || this.#offlineOpening) await (await this.#openOfflineIfAny())?.flush();
  }

  async #openOfflineIfAny(): Promise<OfflineRunWriter | undefined> {
    return this.#offlineOpening ? this.#offlineOpening : undefined;
  }

  async finish(exitCode = 0): Promise<void> {
    if (this.#finished) return;
    this.#commit();
    this.#finished = true;
    if (this.#heartbeat) clearInterval(this.#heartbeat);
    try {
      this.#encode();
    } catch (e) {
      this.#ctx.warn(`wandb: encoding media failed: ${(e as Error).message}`);
    }
    let failure: unknown;
    try {
      await this.#batcher.close();
    } catch (e) {
      if (!isUnreachable(e)) failure = e; // unreachable: the rows went to the offline file (warned)
    }
    if (this.#refused) failure = undefined; // reported below, with where the rows are
    const runtime = (Date.now() - this.#startMs) / 1000;
    // Run files are uploaded before `complete` (wandb-core sender.go finish order), with the
    // summary and config files wandb-core adds at finish.
    if (this.#conn && !this.#refused) {
      try {
        this.#upload(writeRunInfoFiles(this.#filesDir(true), this.#info.config, this.#summaryLine()));
      } catch (e) {
        this.#ctx.warn(`wandb: could not write config.yaml / wandb-summary.json for upload: ${(e as Error).message}`);
      }
    }
    await this.#finishUploads();
    if (this.#conn) {
      try {
        await fileStream(this.#conn, this.#info.entity, this.#info.project, this.#info.runId, { complete: true, exitcode: exitCode });
      } catch (e) {
        if (!isUnreachable(e)) failure ??= e;
        else await this.#fallBack([]);
      }
      await this.#conn?.http.close();
    }
    const offline = await this.#openOfflineIfAny();
    if (offline) {
      offline.summary(this.#summary);
      offline.exit(exitCode, runtime);
      await offline.close();
    }
    this.#unregisterExit();
    await this.#wal.close();
    if (this.#refused) {
      throw new BackendError(
        'wandb',
        `the server refused a post for good (${this.#refused.message}); the run was not marked complete, and every row it did not accept is kept in ${offline?.path ?? this.#root}: upload it with \`trackspec sync ${this.#root}\` or \`wandb sync\``,
        { cause: this.#refused, status: (this.#refused as { status?: number }).status },
      );
    }
    if (failure) throw failure;
  }

  #onExit(reason: 'beforeExit' | 'exit' | 'SIGINT' | 'SIGTERM'): void {
    if (this.#finished) return;
    if (reason === 'beforeExit') {
      void this.finish(0).catch((e: unknown) => this.#ctx.warn(`finishing the run at exit failed: ${(e as Error).message}`));
      return;
    }
    // Synchronous last resort: post the unsent rows and complete/exitcode from a child process;
    // if the server does not answer, write them to the offline file (trackspec sync uploads it).
    this.#finished = true;
    this.#commit();
    // As W&B's exit hooks: an uncaught exception is 1, a signal 255, process.exit(n) n.
    const code = reason === 'exit' ? (uncaught ? 1 : Number(process.exitCode ?? 0) || 0) : 255;
    const rest = [...[...this.#inFlight].flat(), ...this.#batcher.takePending()].sort((a, b) => a.offset - b.offset);
    try {
      this.#encode(true);
      if (this.#conn) for (const r of rest) for (const m of r.media ?? []) if (!m.resolved) this.#upload((m.resolve(), m.files));
      // Run files not uploaded yet: on disk and listed for trackspec sync.
      if (this.#uploader) this.#writeUploadsManifest(this.#uploader.abandon());
    } catch (e) {
      process.stderr.write(`trackspec: could not keep the W&B run files at exit: ${(e as Error).message}\n`);
    }
    this.#fold(rest);
    if (this.#conn) {
      const url = `${this.#baseUrl}${fileStreamPath(this.#info.entity, this.#info.project, this.#info.runId)}`;
      const requests = [];
      for (const chunk of chunkLines(rest, lineOf)) {
        requests.push({ url, body: { files: { [HISTORY]: { offset: chunk[0]!.offset, content: chunk.map(lineOf) } } } });
      }
      const line = this.#summaryLine();
      requests.push({ url, body: { ...(line !== undefined ? { files: { [SUMMARY]: { offset: 0, content: [line] } } } : {}), complete: true, exitcode: code } });
      if (postSync(requests, { headers: { ...this.#authHeaders, 'user-agent': USER_AGENT() } })) {
        this.#settleWal(rest);
        return;
      }
    }
    if (!this.#offline && rest.length === 0 && !this.#conn) return;
    try {
      if (!this.#offline) {
        process.stderr.write(`trackspec: the W&B run ${this.#info.runId} ended without finish(); ${rest.length} unsent row(s) and the exit code are kept for \`trackspec sync ${this.#root}\`\n`);
        this.#info.resumed = true;
      }
      const w = this.#openOfflineSync(rest[0]?.offset ?? this.#offset);
      this.#toOffline(w, rest);
      w.summary(this.#summary);
      w.exit(code, (Date.now() - this.#startMs) / 1000);
      w.flushSync();
      this.#settleWal(rest); // the rows are in the .wandb file now
    } catch (e) {
      process.stderr.write(`trackspec: could not save the W&B run at exit: ${(e as Error).message}\n`);
    }
  }

  #settleWal(rows: Row[]): void {
    try {
      this.#wal.settleAtExit(rows, true);
    } catch {
      // the spool keeps them: trackspec sync rewrites the same offsets
    }
  }
}

/** A driver that logs nothing (mode 'disabled'). */
class DisabledDriver implements TrackerDriver<WandbRun> {
  readonly handle: WandbRun;
  constructor(runId: string, entity: string, project: string) {
    this.handle = { runId, entity, project, mode: 'disabled', offlinePath: undefined, step: 0 };
  }
  async storeInitConfiguration(): Promise<void> {}
  log(): void {}
  logImages(): void {}
  logTable(): void {}
  async flush(): Promise<void> {}
  async finish(): Promise<void> {}
}

/** W&B's own checks (wandb_settings.py validate_project / validate_run_id / validate_run_tags), before any request. */
export function validateNames(project: string, runId: string | null, tags: readonly string[] | null): void {
  const bad = (option: string, message: string): never => {
    throw new ConfigError(`WandBTracker: ${message}`, { option });
  };
  if (project.length > 128) bad('run_name', `invalid project name ${JSON.stringify(project)}: longer than 128 characters`);
  const projectChars = [...'/\\#?%:'].filter((c) => project.includes(c));
  if (projectChars.length > 0) bad('run_name', `invalid project name ${JSON.stringify(project)}: it cannot contain any of / \\ # ? % : (found ${projectChars.join(' ')})`);
  if (runId !== null) {
    if (runId.length === 0) bad('id', 'the run id cannot be empty');
    if (runId.trim() !== runId || runId.trim() === '') bad('id', `invalid run id ${JSON.stringify(runId)}: it cannot start or end with whitespace`);
    const idChars = [...":;,#?/'"].filter((c) => runId.includes(c));
    if (idChars.length > 0) bad('id', `invalid run id ${JSON.stringify(runId)}: it cannot contain any of : ; , # ? / ' (found ${idChars.join(' ')})`);
  }
  for (const [i, tag] of (tags ?? []).entries()) {
    if (tag.length < 1 || tag.length > 64) bad('tags', `tag ${i} (${JSON.stringify(tag.length > 70 ? `${tag.slice(0, 64)}…` : tag)}) is ${tag.length} characters; W&B tags must be 1 to 64 characters`);
  }
}

/** The API key `wandb login` stored in ~/.netrc (or $NETRC) for the base URL's host[:port]. */
export function apiKeyFromNetrc(baseUrl: string, env: Record<string, string | undefined> = process.env): string | undefined {
  let host: string;
  try {
    host = new URL(baseUrl).host; // host, plus :port when the URL has one
  } catch {
    return undefined;
  }
  return netrcPassword(host, env);
}

function newRunId(): string {
  const alphabet = 'abcdefghijklmnopqrstuvwxyz0123456789';
  return [...crypto().randomBytes(8)].map((b) => alphabet[b % alphabet.length]).join('');
}

export const driver: BackendDriver<WandBDriverOptions, WandbRun> = {
  available: true,
  start: async (options, ctx) => {
    const project = options.run_name ?? 'uncategorized';
    const runId = options.id ?? newRunId();
    const root = options.dir ?? process.cwd();
    if (options.mode === 'disabled') return new DisabledDriver(runId, options.entity ?? '', project);
    validateNames(project, options.id, options.tags);
    const info: WandbRunInfo = {
      runId,
      entity: options.entity ?? '',
      project,
      displayName: options.name,
      notes: options.notes,
      tags: options.tags,
      group: options.group,
      jobType: options.job_type,
      config: { ...(options.config ?? {}) },
      startTimeMs: Date.now(),
      host: hostname(),
    };
    if (options.mode === 'offline') {
      return new WandbRunDriver(info, root, undefined, { offset: 0, step: 0 }, ctx, options);
    }
    const apiKey = options.api_key ?? apiKeyFromNetrc(options.base_url);
    if (!apiKey) {
      throw new ConfigError('WandBTracker: no API key: set WANDB_API_KEY (or pass api_key, or run `wandb login`, which writes it to ~/.netrc), or log offline with mode: "offline" / WANDB_MODE=offline', {
        option: 'api_key',
        envVar: 'WANDB_API_KEY',
      });
    }
    options = { ...options, api_key: apiKey };
    const conn = wandbConnect(options.base_url, apiKey, options.retry_deadline_secs * 1000);
    try {
      if (!info.entity) {
        const v = await graphql<{ viewer: { entity: string } | null }>(conn, 'Viewer', VIEWER, {});
        info.entity = v.viewer?.entity ?? '';
      }
      const start: RunStart = { offset: 0, step: 0 };
      const resume = options.resume;
      if (resume && resume !== 'never' && options.id) {
        const found = await resumeStatus(conn, info.entity, project, runId);
        // A run no client started (no _wandb.t) does not count as existing (wandb-core resume.go).
        const status = found?.started ? found : undefined;
        if (!status && resume === 'must') {
          throw new BackendError('wandb', `resume "must": run ${runId} does not exist in ${info.entity}/${project}${found ? ' (it exists, but no W&B client started it: its config has no _wandb.t)' : ''}`, { code: 'RUN_NOT_FOUND' });
        }
        if (status) {
          start.offset = status.historyLineCount;
          // Starting step: summary _step, +1 when there is history (resume.go).
          start.step = status.lastStep === null ? 0 : status.lastStep + (status.historyLineCount > 0 ? 1 : 0);
          start.summary = status.summary;
          start.runtimeSecs = status.runtimeSecs;
          // The server replaces the config: the earlier keys not set now are sent back (MergeResumedConfig).
          for (const [k, v] of Object.entries(status.config)) if (!(k in info.config)) info.config[k] = v;
          info.resumed = true;
        }
      } else if (resume === 'never' && options.id) {
        const status = await resumeStatus(conn, info.entity, project, runId);
        if (status?.started) throw new BackendError('wandb', `resume "never": run ${runId} already exists in ${info.entity}/${project}; pick another id`, { code: 'RUN_EXISTS' });
      }
      const up = await upsertBucket(conn, {
        name: runId, project, entity: info.entity, displayName: info.displayName, notes: info.notes, groupName: info.group,
        jobType: info.jobType, tags: info.tags, config: info.config,
      });
      // historyLineCount > 0 is the history offset whether or not the run is resumed (runupserter.go):
      // reusing an id appends instead of overwriting line 0.
      start.offset = Math.max(start.offset, up.historyLineCount);
      return new WandbRunDriver(info, root, conn, start, ctx, options);
    } catch (e) {
      if (isUnreachable(e)) {
        await conn.http.close();
        ctx.warn(`wandb: the server at ${options.base_url} is unreachable; logging offline under ${root} (upload later with \`trackspec sync ${root}\` or \`wandb sync\`)`);
        return new WandbRunDriver(info, root, undefined, { offset: 0, step: 0 }, ctx, options);
      }
      await conn.http.close();
      if (e instanceof TrackspecError) throw e;
      throw new BackendError('wandb', (e as Error).message, { cause: e });
    }
  },
};

/**
 * Comet ML backend over the REST API v2 write endpoints.
 *
 * - Configuration: options (and COMET_* variables) first, then `.comet.config` ([comet] section) in
 *   the current directory, then the home directory. COMET_URL_OVERRIDE is taken like Comet's clients
 *   (`…/clientlib/` is stripped before `/api/rest/v2`). The API key is never printed.
 * - Online: create the experiment (or use experiment_key; the create response's link is printed),
 *   log-other "Created from" = "trackspec", then parameters, metrics (step, epoch), log-other for
 *   strings, with up to PIPELINE.inFlight requests in flight; heartbeats (set-status) at the
 *   interval each response gives, until finish()'s last request; the end time at finish(), with the
 *   start time only for an experiment this run created.
 * - Images, tables, assets (media.ts): multipart upload-asset, one after another in the background;
 *   offline or unreachable, a copy in <offline_directory>/comet_ml/files plus a spooled record.
 * - Console output (log_output): stdout/stderr lines to write/experiment/output in batches.
 * - Accelerate mapping: numbers/booleans → metric with step; strings → log-other; a nested
 *   {k: number} → one metric per entry, the outer key dropped as upstream (prefix_nested_metrics
 *   keeps it as `<outer>/<k>`).
 * - Rate limits: every request is paced under Comet's documented per-minute limits, one bucket per
 *   data type (metrics 12,000, parameters 10,000, output 12,000, everything else 8,000); a 429 (not
 *   documented by Comet: an assumption) is retried honouring Retry-After. Nothing is dropped.
 * - Offline (online: false, or the server unreachable): records go to a durable spool in
 *   offline_directory; `trackspec sync <offline_directory>` uploads them exactly once.
 * - Write-ahead (online, write_ahead): every flush_interval_secs the queued records the server has
 *   not acknowledged are written to that spool in the background; each record the server accepts is
 *   marked done, so a SIGKILL loses at most the last interval and a replay re-sends at most the one
 *   record in flight. Past the in-memory cap (QUEUE_LIMITS), log() calls go straight to the spool.
 */
import { statSync } from 'node:fs';
import { copyFile, mkdir, rename, writeFile } from 'node:fs/promises';
import { basename, join, relative, resolve as resolvePath, sep } from 'node:path';
import type { ArtifactRequest, BackendDriver, DriverContext, ImageData, TableData, TrackerDriver, Values } from '../../core/driver.js';
import { Batcher } from '../../io/batcher.js';
import { BackendError, ConfigError, TrackspecError, ValidationError } from '../../core/errors.js';
import { walkFiles } from '../../io/fs-util.js';
import { lazy } from '../../io/lazy.js';
import { checkImage, encodePng } from '../../io/image.js';
import { registerExitHook } from '../../io/exit-hooks.js';
import { HttpClient, HttpTransportError, httpError } from '../../io/http.js';
import { RateLimiter } from '../../io/rate-limit.js';
import { RetryDeadlineError, withRetry } from '../../io/retry.js';
import { WriteAhead } from '../../io/write-ahead.js';
import { readCometConfigFiles, restBase } from './config.js';
import { checkAssetName, tableCsv, uploadAsset, type MediaBody, type MediaRecord } from './media.js';

const crypto = lazy<typeof import('node:crypto')>('node:crypto');

export { readCometConfigFiles, restBase } from './config.js';

export interface CometDriverOptions {
  run_name: string | null;
  project_name: string | null;
  workspace: string | null;
  experiment_name: string | null;
  experiment_key: string | null;
  online: boolean;
  mode: 'get' | 'create' | 'get_or_create';
  offline_directory: string;
  api_key: string | null;
  url_override: string;
  prefix_nested_metrics: boolean;
  retry_deadline_secs: number;
  flush_interval_secs: number;
  write_ahead: boolean;
  log_output: boolean;
}

/**
 * log() calls (and parameters) held in memory while the server catches up; beyond it they go to the
 * spool for `trackspec sync`. Comet paces itself to 200 metrics/s, so 20,000 calls of 10 values are
 * already over 15 minutes of backlog. Mutable for tests.
 */
export const QUEUE_LIMITS = { maxPending: 20_000 };

/**
 * Comet's documented per-user, per-minute limits, one bucket per documented data type ("each data
 * type ... all have separate rate limits"): metrics, parameters, output, everything else.
 */
export const COMET_LIMITS = { metric: 12_000, parameter: 10_000, output: 12_000, other: 8_000 } as const;
export type LimitKind = keyof typeof COMET_LIMITS;

/**
 * Requests in flight per experiment. REST v2 has no batch endpoint, so delivered records/s is about
 * inFlight / round trip: 25 reach the documented 200 metrics/s at a 100 ms round trip with room for
 * overhead (Comet's Java SDK fires every request without waiting). The HTTP pool has as many
 * connections; the per-minute pacing still applies. Mutable for tests and the bench.
 */
export const PIPELINE = { inFlight: 25 };

/**
 * The pacing window; the per-minute limits are scaled to it (e.g. 3 s: 600 metrics per 3 s). Only
 * the bench shortens it, to reach the sustained pace without logging for minutes. `slack`: the
 * client's window is that much longer (2%: 196 metrics/s sustained instead of 200), because with
 * many requests in flight they reach the server with uneven delays, and a window counted at the
 * server must still never see more than the limit.
 */
export const PACING = { windowMs: 60_000, slack: 0.02 };
const DEFAULT_URL = 'https://www.comet.com/clientlib/';
const DEFAULT_OFFLINE = '.cometml-runs';
/** Wait after a failed heartbeat (the Java SDK's 3000 ms). */
const HEARTBEAT_RETRY_MS = 3000;

/** One write, as queued and as spooled. */
export type CometRecord =
  | { t: 'metric'; name: string; value: number | string; step: number | null; epoch: number | null; ts: number }
  | { t: 'parameter'; name: string; value: string | number | boolean; ts: number }
  | { t: 'other'; key: string; value: string; ts: number }
  /** `start` is null for an experiment this run did not create (its start time is kept). */
  | { t: 'end'; start: number | null; end: number }
  /** Console output lines of one stream (log_output). */
  | { t: 'output'; lines: OutputLine[] };

/** One console line as Comet's output endpoint takes it (`output` ends with a newline when the line had one). */
export interface OutputLine {
  output: string;
  stderr: boolean;
  localTimestamp: number;
  offset: number;
}

/** Console output batching, as Comet's Python SDK: at most 500 lines every 5 s per request. Mutable for tests. */
export const OUTPUT_BATCH = { maxLines: 500, intervalMs: 5000 };

/** One log() call as queued (expanded into records when sent): one allocation per call. */
interface CometCall {
  t: 'call';
  v: Record<string, unknown>;
  step: number | null;
  epoch: number | null;
  ts: number;
  n: number;
}
type Queued = CometRecord | CometCall;

export interface CometExperiment {
  readonly experimentKey: string | undefined;
  readonly workspace: string | null;
  readonly project: string | null;
  /** REST base (`…/api/rest/v2`), never with credentials. */
  readonly baseUrl: string;
  /** The experiment's page, as the create response gave it (undefined when appending or offline). */
  readonly link: string | undefined;
  readonly online: boolean;
  /** Spool file (offline, or once the server was unreachable). */
  readonly spoolPath: string | undefined;
  /**
   * Upload a local file as an asset (Comet's `log_asset`): `name` (default the file's name) and
   * `step`. The file is streamed from disk in the background; offline or unreachable, a copy goes to
   * the spool. A missing file, a path that is not a file or a bad name is a `ValidationError` here.
   */
  logAsset(localPath: string, options?: { name?: string; step?: number }): void;
}

export interface CometConnection {
  http: HttpClient;
  limiters: Record<LimitKind, RateLimiter>;
  retryDeadlineMs: number;
}

export function connect(baseUrl: string, apiKey: string, options: { limits?: Partial<typeof COMET_LIMITS>; windowMs?: number; retryDeadlineMs?: number } = {}): CometConnection {
  const windowMs = options.windowMs ?? Math.ceil(PACING.windowMs * (1 + PACING.slack));
  const scale = options.windowMs === undefined ? PACING.windowMs / 60_000 : 1;
  const limits: Record<LimitKind, number> = { ...COMET_LIMITS, ...options.limits };
  for (const k of Object.keys(limits) as LimitKind[]) limits[k] = Math.max(1, Math.floor(limits[k] * scale));
  return {
    http: new HttpClient({ baseUrl, headers: { authorization: apiKey }, backend: 'comet_ml', connections: Math.max(8, PIPELINE.inFlight) }),
    limiters: {
      metric: new RateLimiter({ limit: limits.metric, windowMs }),
      parameter: new RateLimiter({ limit: limits.parameter, windowMs }),
      output: new RateLimiter({ limit: limits.output, windowMs }),
      other: new RateLimiter({ limit: limits.other, windowMs }),
    },
    retryDeadlineMs: options.retryDeadlineMs ?? 60_000,
  };
}

/** One paced, retried API call. */
export async function call<T>(conn: CometConnection, kind: LimitKind, method: 'GET' | 'POST', path: string, body: Record<string, unknown>): Promise<T> {
  await conn.limiters[kind].take();
  return withRetry(
    async () => {
      const res = await conn.http.request<T>(method, `/write/experiment/${path}`, method === 'GET' ? { query: body as Record<string, string> } : { json: body });
      if (res.status >= 200 && res.status < 300) return res.body;
      throw httpError('comet_ml', path, res);
    },
    { policy: { deadlineMs: conn.retryDeadlineMs }, backend: 'comet_ml' },
  );
}

/** Send one record for an experiment. */
export function sendRecord(conn: CometConnection, experimentKey: string, r: CometRecord): Promise<unknown> {
  switch (r.t) {
    case 'metric':
      return call(conn, 'metric', 'POST', 'metric', {
        experimentKey, metricName: r.name, metricValue: r.value, timestamp: r.ts,
        ...(r.step !== null ? { step: r.step } : {}), ...(r.epoch !== null ? { epoch: r.epoch } : {}),
      });
    case 'parameter':
      return call(conn, 'parameter', 'POST', 'parameter', { experimentKey, parameterName: r.name, parameterValue: r.value, timestamp: r.ts });
    case 'other':
      return call(conn, 'other', 'POST', 'log-other', { experimentKey, key: r.key, value: r.value, timestamp: r.ts });
    case 'output':
      return call(conn, 'output', 'POST', 'output', { experimentKey, runContext: null, outputLines: r.lines });
    case 'end':
      return call(conn, 'other', 'POST', 'set-start-end-time', { experimentKey, ...(r.start !== null ? { startTimeMillis: r.start } : {}), endTimeMillis: r.end });
  }
}

export async function createExperiment(conn: CometConnection, workspace: string | null, project: string | null, name: string | null): Promise<{ key: string; link: string | undefined }> {
  const r = await call<{ experimentKey: string; link?: unknown }>(conn, 'other', 'POST', 'create', {
    ...(workspace ? { workspaceName: workspace } : {}),
    ...(project ? { projectName: project } : {}),
    ...(name ? { experimentName: name } : {}),
  });
  if (!r || typeof r.experimentKey !== 'string') throw new BackendError('comet_ml', 'experiment/create answered without an experimentKey');
  return { key: r.experimentKey, link: typeof r.link === 'string' ? r.link : undefined };
}

/** Accelerate's mapping: numbers/booleans → metric, strings → log-other, {k: number} → one metric per entry. */
function expand(items: readonly Queued[], prefix: boolean): CometRecord[] {
  const out: CometRecord[] = [];
  for (const it of items) {
    if (it.t !== 'call') {
      out.push(it);
      continue;
    }
    const metric = (name: string, v: unknown) => {
      const n = typeof v === 'boolean' ? (v ? 1 : 0) : (v as number);
      out.push({ t: 'metric', name, value: Number.isFinite(n) ? n : String(n), step: it.step, epoch: it.epoch, ts: it.ts });
    };
    for (const key in it.v) {
      const v = it.v[key];
      if (typeof v === 'string') out.push({ t: 'other', key, value: v, ts: it.ts });
      else if (typeof v === 'object' && v !== null) {
        for (const inner in v as Record<string, unknown>) metric(prefix ? `${key}/${inner}` : inner, (v as Record<string, unknown>)[inner]);
      } else metric(key, v);
    }
  }
  return out;
}

/** A local file or directory argument: exists and is of the right kind, else a ValidationError naming the argument. */
function checkLocal(where: string, arg: string, p: unknown, kind: 'file' | 'dir'): string {
  if (typeof p !== 'string' || p === '') throw new ValidationError(`${where}: ${arg} must be a non-empty path`, [{ pointer: `/${arg}`, code: 'path', message: 'not a path' }]);
  const abs = resolvePath(p);
  let st;
  try {
    st = statSync(abs);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new ValidationError(`${where}: ${arg} ${JSON.stringify(p)} ${code === 'ENOENT' ? 'does not exist' : `cannot be read (${code})`}`, [{ pointer: `/${arg}`, code: 'path', message: code ?? 'unreadable' }]);
  }
  if (kind === 'file' ? !st.isFile() : !st.isDirectory()) {
    throw new ValidationError(`${where}: ${arg} ${JSON.stringify(p)} is not a ${kind === 'file' ? 'file' : 'directory'}`, [{ pointer: `/${arg}`, code: 'path', message: `not a ${kind}` }]);
  }
  return abs;
}

function isUnreachable(e: unknown): boolean {
  return e instanceof HttpTransportError || e instanceof RetryDeadlineError;
}

function paramValue(v: unknown): string | number | boolean {
  if (typeof v === 'number' || typeof v === 'boolean' || typeof v === 'string') return v;
  if (v === null || v === undefined) return 'None';
  return JSON.stringify(v) ?? String(v);
}

class CometRunDriver implements TrackerDriver<CometExperiment> {
  readonly handle: CometExperiment;
  readonly #ctx: DriverContext;
  readonly #conn: CometConnection | undefined;
  readonly #batcher: Batcher<Queued>;
  readonly #prefix: boolean;
  readonly #start = Date.now();
  readonly #spoolDir: string;
  readonly #header: { workspace: string | null; project: string | null; name: string | null };
  /** The spool: write-ahead of unacknowledged records, records kept for sync, and the offline log. */
  readonly #wal: WriteAhead<Queued>;
  readonly #walOn: boolean;
  readonly #inFlight = new Set<Queued[]>();
  #key: string | undefined;
  #spoolPath: string | undefined;
  #keptWhy: 'unreachable' | 'overflow' | undefined;
  #heartbeat: NodeJS.Timeout | undefined;
  #beating = false;
  /** The last heartbeat request (finish() waits for it before closing the connection). */
  #beat: Promise<unknown> = Promise.resolve();
  readonly #created: boolean;
  /** Uploads (images, tables, assets), one after another in the background. */
  #media: Promise<void> = Promise.resolve();
  #mediaFailure: unknown;
  /** log_output: undoes the stdout/stderr hooks. */
  #unhookOutput: (() => void) | undefined;
  #finished = false;
  #unregisterExit: () => void;

  constructor(
    conn: CometConnection | undefined,
    key: string | undefined,
    baseUrl: string,
    header: { workspace: string | null; project: string | null; name: string | null },
    options: CometDriverOptions & { offline_directory: string },
    ctx: DriverContext,
    extra: { created: boolean; link?: string },
  ) {
    this.#created = extra.created;
    this.#conn = conn;
    this.#key = key;
    this.#ctx = ctx;
    this.#prefix = options.prefix_nested_metrics;
    this.#spoolDir = options.offline_directory;
    this.#header = header;
    const self = this;
    this.handle = {
      get experimentKey() {
        return self.#key;
      },
      workspace: header.workspace,
      project: header.project,
      baseUrl,
      link: extra.link,
      get online() {
        return self.#conn !== undefined && self.#key !== undefined;
      },
      get spoolPath() {
        return self.#spoolPath;
      },
      logAsset(localPath: string, options?: { name?: string; step?: number }): void {
        self.#logAsset(localPath, options ?? {});
      },
    };
    const intervalMs = options.flush_interval_secs * 1000;
    this.#walOn = conn !== undefined && key !== undefined && options.write_ahead;
    this.#wal = new WriteAhead<Queued>({
      dir: this.#spoolDir,
      header: () => this.#spoolHeader(),
      intervalMs,
      records: (q) => expand([q], this.#prefix),
      partial: true,
      onOpen: (spool) => {
        this.#spoolPath = spool.path;
      },
      onError: (e) => ctx.warnOnce('spool:error', `comet_ml: could not write ahead to the spool in ${this.#spoolDir}: ${(e as Error).message}`),
    });
    this.#batcher = new Batcher<Queued>({
      maxBatch: 500,
      weight: (q) => (q.t === 'call' ? q.n : 1),
      maxDelayMs: Math.min(500, intervalMs / 2),
      maxPending: QUEUE_LIMITS.maxPending,
      send: async (items) => {
        if (!this.#conn || !this.#key) {
          await this.#wal.appendRecords(expand(items, this.#prefix)); // offline: the spool is the log
          return;
        }
        this.#inFlight.add(items);
        try {
          await this.#sendItems(this.#conn, this.#key, items);
        } finally {
          this.#inFlight.delete(items);
        }
      },
      onFailed: async () => undefined, // rejected by the server (4xx): reported by flush()
      // Past the in-memory cap: to the spool (written at once, never dropped).
      overflow: (items) => this.#wal.keepSoon(items, () => this.#kept('overflow')),
    });
    if (options.log_output) this.#unhookOutput = this.#hookOutput();
    this.#unregisterExit = registerExitHook(() => {
      this.#unhookOutput?.();
      const rest = [...[...this.#inFlight].flat(), ...this.#batcher.takePending(), ...this.#wal.takeKeepSoon()];
      if (rest.length === 0 && !this.#wal.spool) return;
      try {
        const path = this.#wal.settleAtExit(rest, false);
        if (path) process.stderr.write(`trackspec: ${this.#wal.unacked} Comet record(s) not acknowledged by the server are saved in ${path}; upload with \`trackspec sync ${this.#spoolDir}\`\n`);
      } catch (e) {
        process.stderr.write(`trackspec: could not save the last Comet records at exit: ${(e as Error).message}\n`);
      }
    });
  }

  /**
   * Send queued items with up to PIPELINE.inFlight requests in flight (Comet has no batch endpoint
   * in REST v2, so throughput is requests in flight / round trip). Order is kept where the server
   * keeps the last value or has no other order: per parameter name, per log-other key and per
   * step-less metric name; metrics with a step (and a timestamp) go in parallel; the end time waits
   * for everything before it. Each item's delivered prefix is marked done in the write-ahead spool,
   * so a crash re-sends at most the records that were in flight. A record the server refuses (4xx)
   * is skipped and reported by flush(); when the server stays unreachable past the retry deadline,
   * the items not fully delivered are kept in the spool for `trackspec sync`.
   */
  async #sendItems(conn: CometConnection, key: string, items: Queued[]): Promise<void> {
    let refused: unknown;
    let down = false;
    const slots = new Set<Promise<void>>();
    const chains = new Map<string, Promise<void>>();
    const states: { left: number; flags: Uint8Array; prefix: number }[] = [];
    const window = Math.max(1, PIPELINE.inFlight);
    outer: for (let j = 0; j < items.length; j++) {
      const it = items[j]!;
      const recs = expand([it], this.#prefix);
      const st = { left: recs.length, flags: new Uint8Array(recs.length), prefix: 0 };
      states[j] = st;
      if (recs.length === 0 && this.#walOn) this.#wal.acked([it]);
      for (let i = 0; i < recs.length; i++) {
        const r = recs[i]!;
        if (r.t === 'end') await Promise.all(slots);
        while (slots.size >= window) await Promise.race(slots);
        if (down) break outer;
        const order = r.t === 'parameter' ? `p\0${r.name}` : r.t === 'other' ? `o\0${r.key}` : r.t === 'metric' && r.step === null ? `m\0${r.name}` : r.t === 'output' ? 'out' : undefined;
        const prev = order !== undefined ? chains.get(order) : undefined;
        const slot: Promise<void> = (async () => {
          if (prev) await prev;
          if (down) return;
          try {
            await sendRecord(conn, key, r);
          } catch (e) {
            if (isUnreachable(e)) {
              down = true;
              return;
            }
            refused ??= e; // not replayable either: counted as done
          }
          st.flags[i] = 1;
          st.left--;
          while (st.prefix < st.flags.length && st.flags[st.prefix] === 1) st.prefix++;
          if (this.#walOn) {
            if (st.left === 0) this.#wal.acked([it]);
            else this.#wal.ackedPart(it, st.prefix);
          }
        })().finally(() => slots.delete(slot));
        slots.add(slot);
        if (order !== undefined) chains.set(order, slot);
      }
    }
    await Promise.all(slots);
    if (down) {
      const rest: Queued[] = [];
      for (let j = 0; j < items.length; j++) {
        const st = states[j];
        if (st !== undefined && st.left === 0) continue;
        if (st !== undefined && st.prefix > 0) this.#wal.ackedPart(items[j]!, st.prefix);
        rest.push(items[j]!);
      }
      this.#kept('unreachable');
      this.#wal.keep(rest);
      return;
    }
    if (refused !== undefined) throw refused;
  }

  #kept(why: 'unreachable' | 'overflow'): void {
    this.#keptWhy ??= why;
    const where = `${this.#spoolDir} (upload later with \`trackspec sync ${this.#spoolDir}\`)`;
    if (why === 'unreachable') this.#ctx.warnOnce('offline', `comet_ml: the server at ${this.handle.baseUrl} is unreachable; records are kept in a spool under ${where}`);
    else this.#ctx.warnOnce('overflow', `comet_ml: values are logged faster than ${this.handle.baseUrl} accepts them; the excess is kept in a spool under ${where}`);
  }

  #failureText(): string {
    return this.#keptWhy === 'overflow' ? `logging faster than the server at ${this.handle.baseUrl} accepts` : `the server at ${this.handle.baseUrl} unreachable`;
  }

  #spoolHeader() {
    return {
      backend: 'comet_ml',
      target: this.handle.baseUrl,
      created: Date.now(),
      meta: { experimentKey: this.#key ?? null, ...this.#header },
    };
  }

  /**
   * Heartbeats as Comet's Java SDK sends them: the next one after the interval the last set-status
   * response gave (re-read every time; 3 s after a failed beat), until the last request of finish()
   * is done.
   */
  startHeartbeat(intervalMs: number): void {
    if (!this.#conn || !this.#key) return;
    const conn = this.#conn;
    const key = this.#key;
    this.#beating = true;
    const schedule = (ms: number): void => {
      if (!this.#beating) return;
      this.#heartbeat = setTimeout(() => {
        this.#beat = call<{ isAliveBeatDurationMillis?: unknown }>(conn, 'other', 'GET', 'set-status', { experimentKey: key }).then(
          (r) => {
            const next = r?.isAliveBeatDurationMillis;
            schedule(typeof next === 'number' && next > 0 ? next : ms);
          },
          () => schedule(HEARTBEAT_RETRY_MS),
        );
      }, Math.max(50, ms));
      this.#heartbeat.unref();
    };
    schedule(intervalMs);
  }

  async #stopHeartbeat(): Promise<void> {
    this.#beating = false;
    if (this.#heartbeat) clearTimeout(this.#heartbeat);
    await this.#beat;
  }

  log(values: Readonly<Values>, step: number | undefined, kwargs: Readonly<Values> | undefined): void {
    if (this.#finished) throw new TrackspecError('CometMLTracker.log() after finish()');
    let epoch: number | null = null;
    if (kwargs) {
      for (const k in kwargs) {
        if (k === 'epoch' && Number.isSafeInteger(kwargs[k])) epoch = kwargs[k] as number;
        else this.#ctx.warnOnce(`kwarg:${k}`, `comet_ml: log kwarg '${k}' is not supported and was ignored`);
      }
    }
    let n = 0;
    const copy: Record<string, unknown> = {};
    for (const key in values) {
      const v = values[key];
      // nested objects are copied too: the caller may reuse them
      copy[key] = typeof v === 'object' && v !== null ? { ...(v as object) } : v;
      n += typeof v === 'object' && v !== null ? Object.keys(v).length : 1;
    }
    if (n > 0) this.#push({ t: 'call', v: copy, step: step ?? null, epoch, ts: Date.now(), n });
  }

  #push(q: Queued): void {
    this.#batcher.push(q);
    if (this.#walOn) this.#wal.push(q);
  }

  // -------------------------------------------------------------------------------------------
  // console output (log_output)

  /**
   * Wrap process.stdout/stderr.write: the original write runs first with the same arguments (the
   * terminal sees exactly what it saw), then the text is split into lines, one counter per stream
   * for `offset`. Lines go out as one record per stream every OUTPUT_BATCH.intervalMs, or at once
   * when OUTPUT_BATCH.maxLines are waiting. Returns the undo function.
   */
  #hookOutput(): () => void {
    const streams = [
      { s: process.stdout, stderr: false, partial: '', lines: [] as OutputLine[], offset: 0 },
      { s: process.stderr, stderr: true, partial: '', lines: [] as OutputLine[], offset: 0 },
    ];
    const send = (st: (typeof streams)[number]): void => {
      while (st.lines.length > 0) this.#push({ t: 'output', lines: st.lines.splice(0, OUTPUT_BATCH.maxLines) });
    };
    const originals = streams.map((st) => {
      const original = st.s.write;
      const hooked = function (this: unknown, chunk: unknown, ...rest: unknown[]): boolean {
        const ok = (original as (...a: unknown[]) => boolean).call(st.s, chunk, ...rest);
        try {
          const text = typeof chunk === 'string' ? chunk : chunk instanceof Uint8Array ? Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength).toString(typeof rest[0] === 'string' ? (rest[0] as BufferEncoding) : 'utf8') : '';
          const parts = (st.partial + text).split('\n');
          st.partial = parts.pop()!;
          const now = Date.now();
          for (const line of parts) st.lines.push({ output: `${line}\n`, stderr: st.stderr, localTimestamp: now, offset: st.offset++ });
          if (st.lines.length >= OUTPUT_BATCH.maxLines) send(st);
        } catch {
          // never let capture break the program's own output
        }
        return ok;
      };
      st.s.write = hooked as typeof st.s.write;
      return { st, original, hooked };
    });
    const timer = setInterval(() => streams.forEach(send), OUTPUT_BATCH.intervalMs);
    timer.unref();
    return () => {
      clearInterval(timer);
      for (const { st, original, hooked } of originals) {
        if (st.s.write === hooked) st.s.write = original;
        if (st.partial !== '') st.lines.push({ output: st.partial, stderr: st.stderr, localTimestamp: Date.now(), offset: st.offset++ });
        st.partial = '';
        if (!this.#finished || this.#acceptingOutput) send(st);
      }
    };
  }

  /** True while finish() still queues the last output lines. */
  #acceptingOutput = false;

  // -------------------------------------------------------------------------------------------
  // images, tables, assets

  #queueMedia(m: Omit<MediaRecord, 't' | 'file' | 'ts'>, body: MediaBody): void {
    const rec: MediaRecord = { t: 'media', ...m, file: 'path' in body ? body.path : '', ts: Date.now() };
    this.#media = this.#media.then(() => this.#sendMedia(rec, body));
  }

  async #sendMedia(m: MediaRecord, body: MediaBody): Promise<void> {
    if (this.#conn && this.#key) {
      try {
        await uploadAsset(this.#conn, this.#key, m, body);
        return;
      } catch (e) {
        if (!isUnreachable(e)) {
          this.#mediaFailure ??= e;
          return;
        }
        this.#kept('unreachable');
      }
    }
    try {
      await this.#spoolMedia(m, body);
    } catch (e) {
      this.#mediaFailure ??= new BackendError('comet_ml', `could not keep ${m.fileName} in the spool under ${this.#spoolDir}: ${(e as Error).message}`, { cause: e });
    }
  }

  /** Offline or unreachable: copy the file (or write the bytes) next to the spool, then spool the record naming the copy. */
  async #spoolMedia(m: MediaRecord, body: MediaBody): Promise<void> {
    const dir = join(this.#spoolDir, 'comet_ml', 'files');
    await mkdir(dir, { recursive: true });
    const name = `${crypto().randomUUID()}-${basename(m.fileName)}`;
    const tmp = join(dir, `.${name}.tmp`);
    if ('bytes' in body) await writeFile(tmp, body.bytes);
    else await copyFile(body.path, tmp);
    await rename(tmp, join(dir, name));
    await this.#wal.appendRecords([{ ...m, file: `files/${name}` }]);
  }

  #mediaOptions(where: string, kwargs: Readonly<Values> | undefined, allowed: readonly string[]): { overwrite: boolean; context: string | null; metadata: Record<string, unknown> | null } {
    let overwrite = false;
    let context: string | null = null;
    let metadata: Record<string, unknown> | null = null;
    for (const k in kwargs ?? {}) {
      const v = kwargs![k];
      if (k === 'overwrite' && typeof v === 'boolean') overwrite = v;
      else if (k === 'context' && typeof v === 'string') context = v;
      else if (k === 'caption' && allowed.includes('caption') && typeof v === 'string') metadata = { ...(metadata ?? {}), caption: v };
      else if (k === 'metadata' && v !== null && typeof v === 'object' && !Array.isArray(v)) metadata = { ...(metadata ?? {}), ...(v as Record<string, unknown>) };
      else this.#ctx.warnOnce(`${where}:kwarg:${k}`, `comet_ml: ${where} kwarg '${k}' is not supported (${[...allowed, 'overwrite', 'context', 'metadata'].join(', ')}) and was ignored`);
    }
    return { overwrite, context, metadata };
  }

  /**
   * As Comet's `log_image`: each image is PNG-encoded here and uploaded as `<key>.png` (an array as
   * `<key>_<i>.png`) with type `image`; kwargs `caption` (in the metadata part), `overwrite`,
   * `context`, `metadata`.
   */
  logImages(values: Readonly<Record<string, ImageData | ImageData[]>>, step: number | undefined, kwargs: Readonly<Values> | undefined): void {
    if (this.#finished) throw new TrackspecError('CometMLTracker.logImages() after finish()');
    const opts = this.#mediaOptions('logImages()', kwargs, ['caption']);
    const out: { fileName: string; png: Buffer }[] = [];
    for (const key in values) {
      checkAssetName('CometMLTracker.logImages()', `image key`, key);
      const v = values[key]!;
      const list = Array.isArray(v) ? v : [v];
      list.forEach((img, i) => {
        checkImage(img, Array.isArray(v) ? `/${key}/${i}` : `/${key}`);
        out.push({ fileName: Array.isArray(v) ? `${key}_${i}.png` : `${key}.png`, png: encodePng(img) });
      });
    }
    for (const o of out) this.#queueMedia({ type: 'image', fileName: o.fileName, step: step ?? null, ...opts }, { bytes: o.png });
  }

  /** As Comet's `log_table`: an RFC 4180 CSV asset of type `dataframe`, named `<name>.csv`. */
  logTable(name: string, table: TableData, step: number | undefined, kwargs: Readonly<Values> | undefined): void {
    if (this.#finished) throw new TrackspecError('CometMLTracker.logTable() after finish()');
    checkAssetName('CometMLTracker.logTable()', 'name', name);
    const csv = tableCsv(`CometMLTracker.logTable(${JSON.stringify(name)})`, table);
    const opts = this.#mediaOptions('logTable()', kwargs, []);
    this.#queueMedia({ type: 'dataframe', fileName: /\.csv$/i.test(name) ? name : `${name}.csv`, step: step ?? null, ...opts }, { bytes: csv });
  }

  #logAsset(localPath: string, options: { name?: string; step?: number }): void {
    const where = 'CometMLTracker.tracker.logAsset()';
    if (this.#finished) throw new TrackspecError(`${where} after finish()`);
    const file = checkLocal(where, 'localPath', localPath, 'file');
    const name = options.name === undefined ? basename(file) : checkAssetName(where, 'name', options.name);
    if (options.step !== undefined && !(Number.isSafeInteger(options.step) && options.step >= 0)) {
      throw new ValidationError(`${where}: step must be a non-negative integer, got ${JSON.stringify(options.step)}`, [{ pointer: '/step', code: 'step', message: 'not a non-negative integer' }]);
    }
    this.#queueMedia({ type: 'asset', fileName: name, step: options.step ?? null, overwrite: false, context: null, metadata: null }, { path: file });
  }

  /** The generated logArtifact / logArtifacts / logFigure: assets (figures as images). */
  logArtifact(request: ArtifactRequest): void {
    const method = request.kind === 'file' ? 'logArtifact()' : request.kind === 'dir' ? 'logArtifacts()' : 'logFigure()';
    const where = `CometMLTracker.${method}`;
    if (this.#finished) throw new TrackspecError(`${where} after finish()`);
    const prefix = request.kind !== 'figure' && request.artifactPath !== undefined ? checkAssetName(where, 'artifactPath', request.artifactPath).replace(/\/+$/, '') : undefined;
    const none = { overwrite: false, context: null, metadata: null };
    if (request.kind === 'file') {
      const file = checkLocal(where, 'localPath', request.localPath, 'file');
      this.#queueMedia({ type: 'asset', fileName: prefix ? `${prefix}/${basename(file)}` : basename(file), step: null, ...none }, { path: file });
    } else if (request.kind === 'dir') {
      const root = checkLocal(where, 'localDir', request.localDir, 'dir');
      // listed when the queue gets there, then each file queued in order
      this.#media = this.#media.then(async () => {
        for (const f of await walkFiles(root)) {
          const rel = relative(root, f).split(sep).join('/');
          await this.#sendMedia({ t: 'media', type: 'asset', fileName: prefix ? `${prefix}/${rel}` : rel, step: null, ...none, file: f, ts: Date.now() }, { path: f });
        }
      });
    } else {
      const name = checkAssetName(where, 'artifactFile', request.artifactFile);
      let png: Uint8Array;
      if (request.image instanceof Uint8Array) png = request.image;
      else {
        checkImage(request.image as ImageData, '/image');
        png = encodePng(request.image as ImageData);
      }
      this.#queueMedia({ type: 'image', fileName: name, step: null, ...none }, { bytes: png });
    }
  }

  async storeInitConfiguration(values: Readonly<Values>): Promise<void> {
    const ts = Date.now();
    for (const [name, v] of Object.entries(values)) this.#push({ t: 'parameter', name, value: paramValue(v), ts });
    await this.flush();
  }

  #mediaError(): void {
    const e = this.#mediaFailure;
    if (e === undefined) return;
    this.#mediaFailure = undefined;
    throw e instanceof TrackspecError ? e : new BackendError('comet_ml', (e as Error).message, { cause: e });
  }

  async flush(): Promise<void> {
    await this.#batcher.flush();
    await this.#media;
    this.#mediaError();
    if (this.#wal.kept > 0 && this.#conn) {
      throw new BackendError('comet_ml', `${this.#failureText()}: ${this.#wal.kept} record(s) are safe in ${this.#spoolPath} — upload them with \`trackspec sync ${this.#spoolDir}\``);
    }
  }

  async finish(): Promise<void> {
    if (this.#finished) return;
    this.#finished = true;
    if (this.#unhookOutput) {
      this.#acceptingOutput = true;
      this.#unhookOutput(); // the last lines (and a last line without a newline) before the end time
      this.#acceptingOutput = false;
      this.#unhookOutput = undefined;
    }
    this.#push({ t: 'end', start: this.#created ? this.#start : null, end: Date.now() });
    let failure: unknown;
    try {
      await this.#batcher.close();
    } catch (e) {
      failure = e;
    }
    await this.#media;
    await this.#stopHeartbeat(); // beating until the last request is done, as the Java SDK does
    this.#unregisterExit();
    await this.#wal.close();
    await this.#conn?.http.close();
    if (failure) throw failure;
    this.#mediaError();
    if (this.#wal.kept > 0 && this.#conn) {
      throw new BackendError('comet_ml', `finished with ${this.#failureText()}: ${this.#wal.kept} record(s) are safe in ${this.#spoolPath} — upload them with \`trackspec sync ${this.#spoolDir}\``);
    }
  }
}

export const driver: BackendDriver<CometDriverOptions, CometExperiment> = {
  available: true,
  start: async (options, ctx) => {
    const file = readCometConfigFiles();
    const apiKey = options.api_key ?? file.api_key ?? null;
    const workspace = options.workspace ?? file.workspace ?? null;
    const project = options.project_name ?? options.run_name ?? file.project_name ?? null;
    const urlOverride = options.url_override !== DEFAULT_URL ? options.url_override : (file.url_override ?? DEFAULT_URL);
    const offlineDir = options.offline_directory !== DEFAULT_OFFLINE ? options.offline_directory : (file.offline_directory ?? DEFAULT_OFFLINE);
    const baseUrl = restBase(urlOverride);
    const header = { workspace, project, name: options.experiment_name };
    const opts = { ...options, offline_directory: offlineDir };
    const appending = options.experiment_key !== null && options.mode !== 'create';
    if (!options.online) return new CometRunDriver(undefined, appending ? options.experiment_key! : undefined, baseUrl, header, opts, ctx, { created: !appending });
    if (!apiKey) {
      throw new ConfigError(
        'CometMLTracker: no API key: set COMET_API_KEY, pass api_key, or put api_key under [comet] in .comet.config (current or home directory); or log offline with online: false',
        { option: 'api_key', envVar: 'COMET_API_KEY' },
      );
    }
    const conn = connect(baseUrl, apiKey, { retryDeadlineMs: options.retry_deadline_secs * 1000 });
    try {
      let key = options.experiment_key ?? undefined;
      if (key && options.mode === 'create') key = undefined;
      if (!key && options.mode === 'get') {
        throw new ConfigError('CometMLTracker: mode "get" needs experiment_key (or COMET_EXPERIMENT_KEY)', { option: 'experiment_key', envVar: 'COMET_EXPERIMENT_KEY' });
      }
      const created = !key;
      let link: string | undefined;
      if (!key) ({ key, link } = await createExperiment(conn, workspace, project, options.experiment_name));
      const status = await call<{ isAliveBeatDurationMillis?: number }>(conn, 'other', 'GET', 'set-status', { experimentKey: key });
      const d = new CometRunDriver(conn, key, baseUrl, header, opts, ctx, { created, link });
      if (link) process.stderr.write(`comet_ml: experiment is live at ${link}\n`); // as Comet's SDKs print it
      if (created) await sendRecord(conn, key, { t: 'other', key: 'Created from', value: 'trackspec', ts: Date.now() });
      d.startHeartbeat(status?.isAliveBeatDurationMillis ?? 5000);
      return d;
    } catch (e) {
      if (isUnreachable(e)) {
        await conn.http.close();
        ctx.warn(`comet_ml: the server at ${baseUrl} is unreachable; logging offline to ${offlineDir} (upload later with \`trackspec sync ${offlineDir}\`)`);
        return new CometRunDriver(undefined, appending ? options.experiment_key! : undefined, baseUrl, header, opts, ctx, { created: !appending });
      }
      await conn.http.close();
      if (e instanceof TrackspecError) throw e;
      throw new BackendError('comet_ml', (e as Error).message, { cause: e });
    }
  },
};

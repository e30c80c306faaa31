/**
 * Comet ML backend over the REST API v2 write endpoints.
 *
 * - Configuration: options (and COMET_* variables) first, then `.comet.config` ([comet] section) in
 *   the current directory, then the home directory. COMET_URL_OVERRIDE is taken like Comet's clients
 *   (`…/clientlib/` is stripped before `/api/rest/v2`). The API key is never printed.
 * - Online: create the experiment (or use experiment_key), log-other "Created from" = "trackspec",
 *   then parameters, metrics (step, epoch), log-other for strings, heartbeats (set-status) at the
 *   interval the server returns, and the end time at finish() with heartbeats stopped.
 * - Accelerate mapping: numbers/booleans → metric with step; strings → log-other; a nested
 *   {k: number} → one metric per entry, the outer key dropped as upstream (prefix_nested_metrics
 *   keeps it as `<outer>/<k>`).
 * - Rate limits: every request is paced under Comet's documented per-minute limits (metrics 12,000,
 *   parameters 10,000, everything else 8,000); 429 is retried honouring Retry-After. Nothing is dropped.
 * - Offline (online: false, or the server unreachable): records go to a durable spool in
 *   offline_directory; `trackspec sync <offline_directory>` uploads them exactly once.
 * - Write-ahead (online, write_ahead): every flush_interval_secs the queued records the server has
 *   not acknowledged are written to that spool in the background; each record the server accepts is
 *   marked done, so a SIGKILL loses at most the last interval and a replay re-sends at most the one
 *   record in flight. Past the in-memory cap (QUEUE_LIMITS), log() calls go straight to the spool.
 */
import type { BackendDriver, DriverContext, TrackerDriver, Values } from '../../core/driver.js';
import { Batcher } from '../../io/batcher.js';
import { BackendError, ConfigError, TrackspecError } from '../../core/errors.js';
import { registerExitHook } from '../../io/exit-hooks.js';
import { HttpClient, HttpTransportError, httpError } from '../../io/http.js';
import { RateLimiter } from '../../io/rate-limit.js';
import { RetryDeadlineError, withRetry } from '../../io/retry.js';
import { WriteAhead } from '../../io/write-ahead.js';
import { readCometConfigFiles, restBase } from './config.js';

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
}

/**
 * log() calls (and parameters) held in memory while the server catches up; beyond it they go to the
 * spool for `trackspec sync`. Comet paces itself to 200 metrics/s, so 20,000 calls of 10 values are
 * already over 15 minutes of backlog. Mutable for tests.
 */
export const QUEUE_LIMITS = { maxPending: 20_000 };

/** Comet's documented per-minute limits. */
export const COMET_LIMITS = { metric: 12_000, parameter: 10_000, other: 8_000 } as const;
const DEFAULT_URL = 'https://www.comet.com/clientlib/';
const DEFAULT_OFFLINE = '.cometml-runs';

/** One write, as queued and as spooled. */
export type CometRecord =
  | { t: 'metric'; name: string; value: number | string; step: number | null; epoch: number | null; ts: number }
  | { t: 'parameter'; name: string; value: string | number | boolean; ts: number }
  | { t: 'other'; key: string; value: string; ts: number }
  | { t: 'end'; start: number; end: number };

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
  readonly online: boolean;
  /** Spool file (offline, or once the server was unreachable). */
  readonly spoolPath: string | undefined;
}

export interface CometConnection {
  http: HttpClient;
  limiters: Record<'metric' | 'parameter' | 'other', RateLimiter>;
  retryDeadlineMs: number;
}

export function connect(baseUrl: string, apiKey: string, options: { limits?: Partial<typeof COMET_LIMITS>; windowMs?: number; retryDeadlineMs?: number } = {}): CometConnection {
  const limits = { ...COMET_LIMITS, ...options.limits };
  const windowMs = options.windowMs ?? 60_000;
  return {
    http: new HttpClient({ baseUrl, headers: { authorization: apiKey }, backend: 'comet_ml' }),
    limiters: {
      metric: new RateLimiter({ limit: limits.metric, windowMs }),
      parameter: new RateLimiter({ limit: limits.parameter, windowMs }),
      other: new RateLimiter({ limit: limits.other, windowMs }),
    },
    retryDeadlineMs: options.retryDeadlineMs ?? 60_000,
  };
}

/** One paced, retried API call. */
export async function call<T>(conn: CometConnection, kind: 'metric' | 'parameter' | 'other', method: 'GET' | 'POST', path: string, body: Record<string, unknown>): Promise<T> {
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
    case 'end':
      return call(conn, 'other', 'POST', 'set-start-end-time', { experimentKey, startTimeMillis: r.start, endTimeMillis: r.end });
  }
}

export async function createExperiment(conn: CometConnection, workspace: string | null, project: string | null, name: string | null): Promise<string> {
  const r = await call<{ experimentKey: string }>(conn, 'other', 'POST', 'create', {
    ...(workspace ? { workspaceName: workspace } : {}),
    ...(project ? { projectName: project } : {}),
    ...(name ? { experimentName: name } : {}),
  });
  if (!r || typeof r.experimentKey !== 'string') throw new BackendError('comet_ml', 'experiment/create answered without an experimentKey');
  return r.experimentKey;
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
  #overflow: Queued[] = [];
  #key: string | undefined;
  #spoolPath: string | undefined;
  #keptWhy: 'unreachable' | 'overflow' | undefined;
  #heartbeat: NodeJS.Timeout | undefined;
  #finished = false;
  #unregisterExit: () => void;

  constructor(
    conn: CometConnection | undefined,
    key: string | undefined,
    baseUrl: string,
    header: { workspace: string | null; project: string | null; name: string | null },
    options: CometDriverOptions & { offline_directory: string },
    ctx: DriverContext,
  ) {
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
      get online() {
        return self.#conn !== undefined && self.#key !== undefined;
      },
      get spoolPath() {
        return self.#spoolPath;
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
      overflow: (items) => {
        // Past the in-memory cap: to the spool (written at once, never dropped).
        this.#overflow.push(...items);
        if (this.#overflow.length === items.length) {
          queueMicrotask(() => {
            const moving = this.#overflow;
            this.#overflow = [];
            this.#kept('overflow');
            this.#wal.keep(moving);
          });
        }
      },
    });
    this.#unregisterExit = registerExitHook(() => {
      const rest = [...[...this.#inFlight].flat(), ...this.#batcher.takePending(), ...this.#overflow];
      this.#overflow = [];
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
   * Send queued items record by record, marking each accepted record done in the write-ahead spool.
   * A record the server refuses (4xx) is skipped and reported by flush(); when the server stays
   * unreachable past the retry deadline, this item's remaining records and the rest of the batch
   * are kept in the spool for `trackspec sync`.
   */
  async #sendItems(conn: CometConnection, key: string, items: Queued[]): Promise<void> {
    let refused: unknown;
    for (let j = 0; j < items.length; j++) {
      const it = items[j]!;
      const recs = expand([it], this.#prefix);
      for (let i = 0; i < recs.length; i++) {
        try {
          await sendRecord(conn, key, recs[i]!);
        } catch (e) {
          if (isUnreachable(e)) {
            this.#wal.ackedPart(it, i);
            this.#kept('unreachable');
            this.#wal.keep(items.slice(j));
            return;
          }
          refused ??= e; // not replayable either: counted as done
        }
        if (this.#walOn) this.#wal.ackedPart(it, i + 1);
      }
      if (this.#walOn) this.#wal.acked([it]);
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

  startHeartbeat(intervalMs: number): void {
    if (!this.#conn || !this.#key) return;
    const conn = this.#conn;
    const key = this.#key;
    const beat = () => {
      void call(conn, 'other', 'GET', 'set-status', { experimentKey: key }).catch(() => undefined);
    };
    this.#heartbeat = setInterval(beat, Math.max(250, intervalMs));
    this.#heartbeat.unref();
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

  async storeInitConfiguration(values: Readonly<Values>): Promise<void> {
    const ts = Date.now();
    for (const [name, v] of Object.entries(values)) this.#push({ t: 'parameter', name, value: paramValue(v), ts });
    await this.flush();
  }

  async flush(): Promise<void> {
    await this.#batcher.flush();
    if (this.#wal.kept > 0 && this.#conn) {
      throw new BackendError('comet_ml', `${this.#failureText()}: ${this.#wal.kept} record(s) are safe in ${this.#spoolPath} — upload them with \`trackspec sync ${this.#spoolDir}\``);
    }
  }

  async finish(): Promise<void> {
    if (this.#finished) return;
    this.#finished = true;
    if (this.#heartbeat) clearInterval(this.#heartbeat);
    this.#push({ t: 'end', start: this.#start, end: Date.now() });
    let failure: unknown;
    try {
      await this.#batcher.close();
    } catch (e) {
      failure = e;
    }
    this.#unregisterExit();
    await this.#wal.close();
    await this.#conn?.http.close();
    if (failure) throw failure;
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
    if (!options.online) return new CometRunDriver(undefined, options.experiment_key ?? undefined, baseUrl, header, opts, ctx);
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
      key ??= await createExperiment(conn, workspace, project, options.experiment_name);
      const status = await call<{ isAliveBeatDurationMillis?: number }>(conn, 'other', 'GET', 'set-status', { experimentKey: key });
      const d = new CometRunDriver(conn, key, baseUrl, header, opts, ctx);
      if (created) await sendRecord(conn, key, { t: 'other', key: 'Created from', value: 'trackspec', ts: Date.now() });
      d.startHeartbeat(status?.isAliveBeatDurationMillis ?? 5000);
      return d;
    } catch (e) {
      if (isUnreachable(e)) {
        await conn.http.close();
        ctx.warn(`comet_ml: the server at ${baseUrl} is unreachable; logging offline to ${offlineDir} (upload later with \`trackspec sync ${offlineDir}\`)`);
        return new CometRunDriver(undefined, undefined, baseUrl, header, opts, ctx);
      }
      await conn.http.close();
      if (e instanceof TrackspecError) throw e;
      throw new BackendError('comet_ml', (e as Error).message, { cause: e });
    }
  },
};

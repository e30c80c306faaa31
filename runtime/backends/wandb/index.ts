/**
 * Weights & Biases backend.
 *
 * - Online: GraphQL `UpsertBucket` (config as `{key: {value}}`), then `file_stream` posts of history
 *   rows (`_step`, `_runtime`, `_timestamp`) at contiguous line offsets plus the current summary;
 *   an empty post as heartbeat when idle; `complete` + `exitcode` at finish (1 when the process dies
 *   of an error). Offsets make every post idempotent, so retries never duplicate a row.
 * - Steps, as W&B: `log(values, step)` with a higher step commits the pending row and moves to that
 *   step; the same step merges into the pending row; a lower step is ignored with a warning;
 *   `log(values)` without a step merges into the pending row and commits it (the step then advances).
 * - Offline (`mode: 'offline'`, WANDB_MODE=offline, or the server still unreachable after
 *   retry_deadline_secs): a `.wandb` transaction log under `<dir>/wandb/offline-run-…` that
 *   `wandb sync` uploads, and that `trackspec sync` uploads through the online protocol.
 * - `mode: 'disabled'`: nothing is logged (documented no-op, as W&B).
 */
import { writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { Batcher } from '../../io/batcher.js';
import type { BackendDriver, DriverContext, TrackerDriver, Values } from '../../core/driver.js';
import { BackendError, ConfigError, TrackspecError, ValidationError } from '../../core/errors.js';
import { postSync } from '../../io/exit-post.js';
import { registerExitHook } from '../../io/exit-hooks.js';
import { HttpClient, HttpTransportError, httpError } from '../../io/http.js';
import { lazy } from '../../io/lazy.js';
import { RetryDeadlineError, withRetry } from '../../io/retry.js';
import { WriteAhead } from '../../io/write-ahead.js';
import { OfflineRunWriter, type WandbRunInfo } from './offline.js';

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

/** A JSON copy of a value, or a ValidationError naming the key (cycles, oversized strings). */
function jsonValue(key: string, v: unknown): unknown {
  if (typeof v === 'number') return Number.isFinite(v) ? v : v > 0 ? Infinity : v < 0 ? -Infinity : NaN;
  if (typeof v === 'string') {
    if (v.length > MAX_VALUE_CHARS) {
      throw new ValidationError(`WandBTracker.log(): "${key}" is a string of ${v.length} characters; W&B history values are limited to ${MAX_VALUE_CHARS}`, [
        { pointer: `/${key}`, code: 'too-large', message: `string longer than ${MAX_VALUE_CHARS} characters` },
      ]);
    }
    return v;
  }
  if (v === null || typeof v !== 'object') return v;
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
  return JSON.parse(text);
}

/** JSON for the wire: W&B writes non-finite numbers as the bare tokens NaN / Infinity / -Infinity. */
export function wandbJson(v: unknown): string {
  return JSON.stringify(v, (_k, x) => (typeof x === 'number' && !Number.isFinite(x) ? `__nonfinite__${x}` : x)).replace(
    /"__nonfinite__(NaN|Infinity|-Infinity)"/g,
    '$1',
  );
}

/** A committed history row; serialised (JSON or protobuf) in the background, never in log(). */
interface Row {
  offset: number;
  row: Record<string, unknown>;
  /** wandbJson(row), computed once by whichever needs it first (the post or the write-ahead). */
  line?: string;
}

const lineOf = (r: Row): string => (r.line ??= wandbJson(r.row));

export interface WandbConnection {
  http: HttpClient;
  deadlineMs: number;
}

export function wandbConnect(baseUrl: string, apiKey: string, deadlineMs: number): WandbConnection {
  return {
    http: new HttpClient({ baseUrl, headers: { authorization: `Basic ${Buffer.from(`api:${apiKey}`).toString('base64')}` }, backend: 'wandb' }),
    deadlineMs,
  };
}

export async function graphql<T>(conn: WandbConnection, operationName: string, query: string, variables: Record<string, unknown>): Promise<T> {
  return withRetry(
    async () => {
      const res = await conn.http.request<{ data?: T; errors?: { message: string }[] }>('POST', '/graphql', { json: { operationName, query, variables } });
      if (res.status < 200 || res.status >= 300) throw httpError('wandb', operationName, res);
      const body = res.body;
      if (body.errors?.length) throw new BackendError('wandb', `${operationName}: ${body.errors.map((e) => e.message).join('; ')}`, { status: res.status });
      return body.data as T;
    },
    { policy: { deadlineMs: conn.deadlineMs }, backend: 'wandb' },
  );
}

export async function fileStream(conn: WandbConnection, entity: string, project: string, runId: string, body: Record<string, unknown>): Promise<void> {
  await withRetry(
    async () => {
      const res = await conn.http.request('POST', `/files/${encodeURIComponent(entity)}/${encodeURIComponent(project)}/${encodeURIComponent(runId)}/file_stream`, { json: body });
      if (res.status < 200 || res.status >= 300) throw httpError('wandb', 'file_stream', res);
    },
    { policy: { deadlineMs: conn.deadlineMs }, backend: 'wandb' },
  );
}

export const UPSERT_BUCKET = `mutation UpsertBucket($id: String, $name: String, $project: String, $entity: String, $groupName: String, $description: String, $displayName: String, $notes: String, $config: JSONString, $host: String, $jobType: String, $tags: [String!], $summaryMetrics: JSONString) {
  upsertBucket(input: {id: $id, name: $name, modelName: $project, entityName: $entity, groupName: $groupName, description: $description, displayName: $displayName, notes: $notes, config: $config, host: $host, jobType: $jobType, tags: $tags, summaryMetrics: $summaryMetrics}) {
    bucket { id name displayName description config sweepName historyLineCount project { id name entity { id name } } }
    inserted
  }
}`;
const VIEWER = 'query Viewer { viewer { id entity username } }';
const RESUME_STATUS = `query RunResumeStatus($project: String, $entity: String, $name: String!) {
  model(name: $project, entityName: $entity) { bucket(name: $name, missingOk: true) { id name historyLineCount summaryMetrics config } }
}`;

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
  if (v.config) variables.config = wandbJson(configForm(v.config));
  const data = await graphql<{ upsertBucket: { bucket: { historyLineCount?: number } } }>(conn, 'UpsertBucket', UPSERT_BUCKET, variables);
  return { historyLineCount: Number(data.upsertBucket.bucket.historyLineCount ?? 0) };
}

export async function resumeStatus(conn: WandbConnection, entity: string, project: string, runId: string): Promise<{ historyLineCount: number; lastStep: number | null; summary: Record<string, unknown> } | undefined> {
  const data = await graphql<{ model: { bucket: { historyLineCount?: number; summaryMetrics?: string } | null } | null }>(conn, 'RunResumeStatus', RESUME_STATUS, {
    project, entity, name: runId,
  });
  const b = data.model?.bucket;
  if (!b) return undefined;
  let lastStep: number | null = null;
  let summary: Record<string, unknown> = {};
  try {
    const s = JSON.parse(b.summaryMetrics ?? '{}') as { _step?: number };
    if (s !== null && typeof s === 'object') summary = s;
    if (typeof s._step === 'number') lastStep = s._step;
  } catch {
    // no usable summary
  }
  return { historyLineCount: Number(b.historyLineCount ?? 0), lastStep, summary };
}

class WandbRunDriver implements TrackerDriver<WandbRun> {
  readonly handle: WandbRun;
  readonly #ctx: DriverContext;
  readonly #info: WandbRunInfo;
  readonly #root: string;
  readonly #startMs = Date.now();
  #conn: WandbConnection | undefined;
  #offline: OfflineRunWriter | undefined;
  #offlineOpening: Promise<OfflineRunWriter> | undefined;
  /** Offset of the next history row the offline file expects (rows below it are already in it). */
  #offlineNext = -1;
  /** Write-ahead of rows the server has not acknowledged (online). */
  readonly #wal: WriteAhead<Row>;
  readonly #walOn: boolean;
  #step: number;
  #pending: Record<string, unknown> | undefined;
  #summary: Record<string, unknown> = {};
  #summaryLine = 0;
  #offset: number;
  readonly #batcher: Batcher<Row>;
  #heartbeat: NodeJS.Timeout | undefined;
  #lastPost = Date.now();
  readonly #inFlight = new Set<Row[]>();
  readonly #baseUrl: string;
  readonly #authHeaders: Record<string, string>;
  #finished = false;
  #unregisterExit: () => void;

  constructor(info: WandbRunInfo, root: string, conn: WandbConnection | undefined, startOffset: number, startStep: number, ctx: DriverContext, options: WandBDriverOptions) {
    this.#ctx = ctx;
    this.#info = info;
    this.#root = root;
    this.#conn = conn;
    this.#offset = startOffset;
    this.#step = startStep;
    this.#baseUrl = options.base_url.replace(/\/+$/, '');
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
    this.#wal = new WriteAhead<Row>({
      dir: root,
      header: () => ({
        backend: 'wandb',
        target: this.#baseUrl,
        created: Date.now(),
        meta: { entity: info.entity, project: info.project, run_id: info.runId },
      }),
      intervalMs: options.flush_interval_secs * 1000,
      records: (r): WandbSpoolRow[] => [{ o: r.offset, l: lineOf(r) }],
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
          await this.#post(rows);
          if (this.#walOn) this.#wal.acked(rows);
        } finally {
          this.#inFlight.delete(rows);
        }
      },
      onFailed: async (rows, error) => {
        if (isUnreachable(error)) await this.#fallBack(rows);
        else if (this.#walOn) this.#wal.acked(rows); // refused (4xx): reported by flush(), not replayable
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

  async #post(rows: Row[]): Promise<void> {
    this.#fold(rows);
    if (!this.#conn) return this.#fallBack(rows);
    this.#lastPost = Date.now();
    await fileStream(this.#conn, this.#info.entity, this.#info.project, this.#info.runId, {
      files: {
        [HISTORY]: { offset: rows[0]!.offset, content: rows.map(lineOf) },
        [SUMMARY]: { offset: this.#summaryLine++, content: [wandbJson(this.#summary)] },
      },
    });
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
    for (const key in values) p[key] = jsonValue(key, values[key]);
  }

  /** Commit the pending row (already a private copy: it becomes the row). The summary is folded in the background. */
  #commit(): void {
    const row = this.#pending;
    if (!row) return;
    this.#pending = undefined;
    const now = Date.now();
    row._step = this.#step++;
    row._runtime = (now - this.#startMs) / 1000;
    row._timestamp = now / 1000;
    const r: Row = { offset: this.#offset++, row };
    this.#batcher.push(r);
    if (this.#walOn) this.#wal.push(r);
  }

  /** The summary as of the given rows (latest value per key). */
  #fold(rows: readonly Row[]): Record<string, unknown> {
    for (const r of rows) Object.assign(this.#summary, r.row);
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
    let failure: unknown;
    try {
      await this.#batcher.close();
    } catch (e) {
      if (!isUnreachable(e)) failure = e; // unreachable: the rows went to the offline file (warned)
    }
    const runtime = (Date.now() - this.#startMs) / 1000;
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
    const code = reason === 'exit' ? (uncaught || (process.exitCode ?? 0) !== 0 ? 1 : 0) : 1;
    const rest = [...[...this.#inFlight].flat(), ...this.#batcher.takePending()].sort((a, b) => a.offset - b.offset);
    this.#fold(rest);
    if (this.#conn) {
      const url = `${this.#baseUrl}/files/${encodeURIComponent(this.#info.entity)}/${encodeURIComponent(this.#info.project)}/${encodeURIComponent(this.#info.runId)}/file_stream`;
      const requests = [];
      for (let i = 0; i < rest.length; i += 1000) {
        const chunk = rest.slice(i, i + 1000);
        requests.push({ url, body: { files: { [HISTORY]: { offset: chunk[0]!.offset, content: chunk.map((r) => wandbJson(r.row)) } } } });
      }
      requests.push({ url, body: { files: { [SUMMARY]: { offset: this.#summaryLine++, content: [wandbJson(this.#summary)] } }, complete: true, exitcode: code } });
      if (postSync(requests, { headers: this.#authHeaders })) {
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
  async flush(): Promise<void> {}
  async finish(): Promise<void> {}
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
      return new WandbRunDriver(info, root, undefined, 0, 0, ctx, options);
    }
    if (!options.api_key) {
      throw new ConfigError('WandBTracker: no API key: set WANDB_API_KEY (or pass api_key), or log offline with mode: "offline" / WANDB_MODE=offline', {
        option: 'api_key',
        envVar: 'WANDB_API_KEY',
      });
    }
    const conn = wandbConnect(options.base_url, options.api_key, options.retry_deadline_secs * 1000);
    try {
      if (!info.entity) {
        const v = await graphql<{ viewer: { entity: string } | null }>(conn, 'Viewer', VIEWER, {});
        info.entity = v.viewer?.entity ?? '';
      }
      let offset = 0;
      let step = 0;
      const resume = options.resume;
      if (resume && resume !== 'never' && options.id) {
        const status = await resumeStatus(conn, info.entity, project, runId);
        if (!status && resume === 'must') {
          throw new BackendError('wandb', `resume "must": run ${runId} does not exist in ${info.entity}/${project}`, { code: 'RUN_NOT_FOUND' });
        }
        if (status) {
          offset = status.historyLineCount;
          step = status.lastStep === null ? 0 : status.lastStep + 1;
          info.resumed = true;
        }
      } else if (resume === 'never' && options.id) {
        const status = await resumeStatus(conn, info.entity, project, runId);
        if (status) throw new BackendError('wandb', `resume "never": run ${runId} already exists in ${info.entity}/${project}; pick another id`, { code: 'RUN_EXISTS' });
      }
      const up = await upsertBucket(conn, {
        name: runId, project, entity: info.entity, displayName: info.displayName, notes: info.notes, groupName: info.group,
        jobType: info.jobType, tags: info.tags, config: info.config,
      });
      if (info.resumed) offset = Math.max(offset, up.historyLineCount);
      return new WandbRunDriver(info, root, conn, offset, step, ctx, options);
    } catch (e) {
      if (isUnreachable(e)) {
        await conn.http.close();
        ctx.warn(`wandb: the server at ${options.base_url} is unreachable; logging offline under ${root} (upload later with \`trackspec sync ${root}\` or \`wandb sync\`)`);
        return new WandbRunDriver(info, root, undefined, 0, 0, ctx, options);
      }
      await conn.http.close();
      if (e instanceof TrackspecError) throw e;
      throw new BackendError('wandb', (e as Error).message, { cause: e });
    }
  },
};

/**
 * Trackio backend: writes trackio 0.36.0's local store directly — what `trackio.init()` /
 * `run.log()` / `run.finish()` do in local mode, where trackio's background thread calls
 * `SQLiteStorage.bulk_log()` every 0.5 s (no server is involved; only Spaces and self-hosted
 * servers are reached through gradio_client). `trackio show` then lists the project, its runs,
 * their configs and every metric point.
 *
 * Accelerate's TrackioTracker on top: `trackio.init(project=run_name, **kwargs)`,
 * `storeInitConfiguration` → `trackio.config.update(values)`, `log(values, step)` →
 * `run.log(values, step=step)`, `finish()` → `run.finish()`.
 *
 * - `log()` copies the values (O(1) per value, no I/O, no encoding); a write pass at most every
 *   500 ms (as trackio's sender), on `flush()`/`finish()`, when 10,000 rows are waiting, and
 *   synchronously at exit/SIGINT/SIGTERM inserts them in one transaction.
 * - Steps as trackio: an explicit step is used as given; without one the run's next step;
 *   next = max(next, step + 1). A resumed run continues after its largest step.
 * - Rows as `bulk_log`: `metrics` = compact JSON as a BLOB (NaN/±Infinity as the strings
 *   "NaN"/"Infinity"/"-Infinity", nested too), `log_id` = a random hex id (INSERT OR IGNORE, so a
 *   retried batch is not duplicated), `timestamp` = the log() time as Python's isoformat (UTC).
 *   Reserved keys (`project`, `run`, `timestamp`, `step`, `time`, `metrics`, `__*`) are renamed
 *   `__<key>`, with a warning, as trackio does.
 * - Config: `{...config option, _Username: null, _Created, _Group, ...storeInitConfiguration}`,
 *   one `configs` row per run written with the first batch and again whenever it changes (trackio
 *   writes it only once; Accelerate's `allow_val_change=True` keyword is not stored as a key).
 * - Concurrency as trackio: our connection uses WAL, so the dashboard (or read_trackio.py) reads
 *   while we write; writers are serialised by SQLite's own locks with a busy timeout. Node has no
 *   flock(), so trackio's advisory `<project>.lock` is not taken.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { BackendDriver, DriverContext, TrackerDriver, Values } from '../../core/driver.js';
import { BackendError, ConfigError, TrackspecError, ValidationError, wrapBackendError } from '../../core/errors.js';
import { registerExitHook } from '../../io/exit-hooks.js';
import { lazy } from '../../io/lazy.js';
import { openSqlite, sqliteAvailable, sqliteMissing, type SqliteDatabase } from './sqlite.js';
import { canonicalProjectName, checkProjectName, configure, defaultTrackioDir, immediateTransaction, initSchema, isoUtc, readableName } from './store.js';
import { checkJsonLike } from '../../core/values.js';
import { escapePointer } from '../../core/humanize.js';

const crypto = lazy<typeof import('node:crypto')>('node:crypto');
const TRACKIO_HOLDS = 'trackio stores JSON (numbers, strings, booleans, null, arrays, plain objects)';

export { canonicalProjectName, defaultTrackioDir, readableName } from './store.js';
export { sqliteAvailable } from './sqlite.js';

export interface TrackioDriverOptions {
  run_name: string;
  name?: string | null;
  group?: string | null;
  config?: Record<string, unknown> | null;
  resume: 'never' | 'allow' | 'must';
  trackio_dir?: string | null;
}

const BACKEND = 'trackio';
/** trackio's local sender interval. */
export const WRITE_INTERVAL_MS = 500;
/** Rows waiting before `log()` runs the write pass itself (bounds memory in tight loops). */
export const MAX_PENDING_ROWS = 10_000;
/** Busy timeout of a background pass: short, so another writer never stalls the event loop (the batch waits for the next pass). */
const BACKGROUND_BUSY_MS = 50;
/** Busy timeout of flush()/finish() and of the exit path (trackio's connect timeout is 30 s). */
const FOREGROUND_BUSY_MS = 30_000;

const RESERVED = new Set(['project', 'run', 'timestamp', 'step', 'time', 'metrics']);

interface PendingRow {
  ms: number;
  step: number;
  keys: string[];
  vals: unknown[];
  logId?: string;
}

const fail = (message: string, err: unknown): BackendError => wrapBackendError(BACKEND, message, err);

/** A number as Python's orjson writes a float: `1.0`, `0.5`, `1e-7`; non-finite as trackio's strings. */
function encodeNumber(v: number): string {
  if (Number.isNaN(v)) return '"NaN"';
  if (v === Infinity) return '"Infinity"';
  if (v === -Infinity) return '"-Infinity"';
  if (Object.is(v, -0)) return '-0.0';
  const s = String(v);
  return Number.isInteger(v) && !s.includes('e') ? `${s}.0` : s;
}

/** `orjson.dumps(serialize_values(value))` for JSON-like values. */
function encodeValue(v: unknown): string {
  switch (typeof v) {
    case 'number':
      return encodeNumber(v);
    case 'string':
      return JSON.stringify(v);
    case 'boolean':
      return v ? 'true' : 'false';
    case 'undefined':
      return 'null';
    case 'object': {
      if (v === null) return 'null';
      if (Array.isArray(v)) return `[${v.map(encodeValue).join(',')}]`;
      const parts: string[] = [];
      for (const k of Object.keys(v)) parts.push(`${JSON.stringify(k)}:${encodeValue((v as Record<string, unknown>)[k])}`);
      return `{${parts.join(',')}}`;
    }
    default:
      return 'null';
  }
}

/** The run: what `tracker.tracker` returns (trackio's `Run`). */
export class TrackioRun {
  /** Project name as given, and its database. */
  readonly project: string;
  readonly dbPath: string;
  /** Run name and id (`uuid4().hex`). */
  readonly name: string;
  readonly id: string;
  readonly group: string | null;
  readonly resumed: boolean;
  readonly #db: SqliteDatabase;
  readonly #config: Record<string, unknown>;
  #configDirty = true;
  #nextStep: number;
  #pending: PendingRow[] = [];
  #timer: NodeJS.Timeout | undefined;
  #error: BackendError | undefined;
  #lastReported: string | undefined;
  #closed = false;
  #written = false;
  /** `"key":` per metric name, encoded once. */
  readonly #keyJson = new Map<string, string>();
  readonly #unhook: () => void;
  readonly #onWriteError: (err: BackendError) => void;
  readonly #warnOnce: (key: string, message: string) => void;

  constructor(
    init: { project: string; dbPath: string; db: SqliteDatabase; name: string; id: string; group: string | null; resumed: boolean; nextStep: number; config: Record<string, unknown> },
    ctx: { onWriteError: (err: BackendError) => void; warnOnce: (key: string, message: string) => void },
  ) {
    this.project = init.project;
    this.dbPath = init.dbPath;
    this.#db = init.db;
    this.name = init.name;
    this.id = init.id;
    this.group = init.group;
    this.resumed = init.resumed;
    this.#nextStep = init.nextStep;
    this.#config = init.config;
    this.#onWriteError = ctx.onWriteError;
    this.#warnOnce = ctx.warnOnce;
    this.#unhook = registerExitHook(() => {
      try {
        this.#write(FOREGROUND_BUSY_MS);
      } catch {
        // reported by flush()/finish(); at exit there is no one left to tell
      }
    });
  }

  /** The step the next step-less log() gets. */
  get nextStep(): number {
    return this.#nextStep;
  }

  /** A copy of the run's config (what the configs row holds). */
  get config(): Record<string, unknown> {
    return structuredClone(this.#config);
  }

  /** `trackio.config.update(values)`. Keys starting with `_` are reserved (ValidationError), as in trackio. */
  updateConfig(values: Readonly<Record<string, unknown>>): void {
    const where = 'TrackioTracker.storeInitConfiguration()';
    const bad = Object.keys(values).filter((k) => k.startsWith('_'));
    if (bad.length > 0) {
      throw new ValidationError(`${where}: config keys starting with '_' are reserved by trackio: ${bad.map((k) => JSON.stringify(k)).join(', ')}`, bad.map((k) => ({ pointer: `/${k}`, code: 'reserved-key', message: `${JSON.stringify(k)} is reserved` })));
    }
    checkJsonLike(where, values, TRACKIO_HOLDS);
    Object.assign(this.#config, structuredClone(values));
    this.#configDirty = true;
  }

  /** `run.log(metrics, step)`: recorded in memory; written by the next pass. */
  log(values: Readonly<Values>, step: number | undefined): void {
    const keys: string[] = [];
    const vals: unknown[] = [];
    for (const k in values) {
      let v = values[k];
      if (v !== null && typeof v === 'object') {
        checkJsonLike('TrackioTracker.log()', v, TRACKIO_HOLDS, `/${escapePointer(k)}`);
        v = structuredClone(v);
      }
      if (RESERVED.has(k) || k.startsWith('__')) {
        this.#warnOnce(`reserved:${k}`, `trackio: reserved key ${JSON.stringify(k)} renamed to ${JSON.stringify(`__${k}`)} (as trackio does)`);
        keys.push(`__${k}`);
      } else keys.push(k);
      vals.push(v);
    }
    const s = step ?? this.#nextStep;
    if (s + 1 > this.#nextStep) this.#nextStep = s + 1;
    this.#pending.push({ ms: Date.now(), step: s, keys, vals });
    if (this.#pending.length >= MAX_PENDING_ROWS) this.#tryWrite(BACKGROUND_BUSY_MS);
    else if (this.#timer === undefined) {
      this.#timer = setTimeout(() => {
        this.#timer = undefined;
        this.#tryWrite(BACKGROUND_BUSY_MS);
      }, WRITE_INTERVAL_MS);
      this.#timer.unref();
    }
  }

  #tryWrite(busyMs: number): void {
    try {
      this.#write(busyMs);
    } catch {
      // kept in #error and reported by flush()/finish(); the rows stay queued
    }
    if (this.#pending.length > 0 && this.#timer === undefined && !this.#closed) {
      this.#timer = setTimeout(() => {
        this.#timer = undefined;
        this.#tryWrite(BACKGROUND_BUSY_MS);
      }, WRITE_INTERVAL_MS);
      this.#timer.unref();
    }
  }

  /** One transaction: the pending rows (and the config row when it changed). Throws on failure, keeping everything queued. */
  #write(busyMs: number): void {
    if (this.#closed) return;
    const rows = this.#pending;
    // A run is listed from its metrics rows, so its config goes with (or after) the first row, as trackio.
    const withConfig = this.#configDirty && (rows.length > 0 || this.#written);
    if (rows.length === 0 && !withConfig) return;
    const db = this.#db;
    try {
      db.exec(`PRAGMA busy_timeout = ${busyMs}`);
      immediateTransaction(db, () => {
        if (rows.length > 0) {
          const ins = db.prepare('INSERT OR IGNORE INTO metrics (timestamp, run_id, run_name, step, metrics, log_id, space_id) VALUES (?, ?, ?, ?, ?, ?, NULL)');
          const ids = crypto().randomBytes(16 * rows.length).toString('hex');
          let lastMs = -1;
          let lastIso = '';
          for (let n = 0; n < rows.length; n++) {
            const r = rows[n]!;
            r.logId ??= ids.slice(32 * n, 32 * n + 32);
            if (r.ms !== lastMs) {
              lastMs = r.ms;
              lastIso = isoUtc(r.ms);
            }
            let json = '{';
            for (let i = 0; i < r.keys.length; i++) {
              const k = r.keys[i]!;
              let prefix = this.#keyJson.get(k);
              if (prefix === undefined) this.#keyJson.set(k, (prefix = `${JSON.stringify(k)}:`));
              json += (i > 0 ? ',' : '') + prefix + encodeValue(r.vals[i]);
            }
            ins.run(lastIso, this.id, this.name, r.step, Buffer.from(`${json}}`), r.logId);
          }
        }
        if (withConfig) {
          db.prepare('INSERT OR REPLACE INTO configs (run_id, run_name, config, created_at) VALUES (?, ?, ?, ?)').run(
            this.id,
            this.name,
            Buffer.from(encodeValue(this.#config)),
            isoUtc(Date.now()),
          );
        }
      });
    } catch (err) {
      const e = fail(`cannot write to ${this.dbPath} (nothing was lost: the rows are retried)`, err);
      this.#error = e;
      if (e.message !== this.#lastReported) {
        this.#lastReported = e.message;
        this.#onWriteError(e);
      }
      throw e;
    }
    if (rows.length > 0) this.#written = true;
    this.#pending = this.#pending === rows ? [] : this.#pending.slice(rows.length);
    if (withConfig) this.#configDirty = false;
    this.#error = undefined;
  }

  /** Write everything logged so far now (waiting up to 30 s for another writer's lock). */
  flush(): void {
    if (this.#timer !== undefined) {
      clearTimeout(this.#timer);
      this.#timer = undefined;
    }
    this.#write(FOREGROUND_BUSY_MS);
  }

  /** `run.finish()`: write what is pending, then close the database (checkpointing the WAL). */
  finish(): void {
    if (this.#closed) return;
    this.flush();
    this.#closed = true;
    this.#unhook();
    try {
      this.#db.close();
    } catch (err) {
      throw fail(`cannot close ${this.dbPath}`, err);
    }
  }

  /** The last write failure, if no write succeeded since. */
  get writeError(): BackendError | undefined {
    return this.#error;
  }
}

class TrackioDriver implements TrackerDriver<TrackioRun> {
  #finished = false;
  constructor(
    readonly handle: TrackioRun,
    private readonly ctx: DriverContext,
  ) {}

  #usable(what: string): boolean {
    if (!this.#finished) return true;
    this.ctx.warnOnce(`closed:${what}`, `trackio: ${what}() after finish() was ignored`);
    return false;
  }

  async storeInitConfiguration(values: Readonly<Values>): Promise<void> {
    if (!this.#usable('storeInitConfiguration')) return;
    this.handle.updateConfig(values);
  }

  log(values: Readonly<Values>, step: number | undefined, kwargs: Readonly<Values> | undefined): void {
    if (!this.#usable('log')) return;
    if (kwargs !== undefined) for (const k in kwargs) this.ctx.warnOnce(`kwarg:${k}`, `trackio: log kwarg '${k}' is not supported by run.log() and was ignored`);
    this.handle.log(values, step);
  }

  async flush(): Promise<void> {
    try {
      this.handle.flush();
    } catch (err) {
      throw err instanceof TrackspecError ? err : fail('flush failed', err);
    }
  }

  async finish(): Promise<void> {
    if (this.#finished) return;
    this.#finished = true;
    try {
      this.handle.finish();
    } catch (err) {
      throw err instanceof TrackspecError ? err : fail('finish failed', err);
    }
  }
}

function startRun(options: TrackioDriverOptions, ctx: DriverContext): TrackioRun {
  checkProjectName(options.run_name);
  const config = options.config ?? {};
  const reserved = Object.keys(config).filter((k) => k.startsWith('_'));
  if (reserved.length > 0) {
    throw new ConfigError(`TrackioTracker: option 'config' has keys reserved by trackio (starting with '_'): ${reserved.join(', ')}`, { option: 'config' });
  }
  if (options.resume === 'must' && !options.name) {
    throw new ConfigError("TrackioTracker: resume: 'must' needs option 'name' (the run to resume)", { option: 'name' });
  }
  const dir = path.resolve(options.trackio_dir || defaultTrackioDir());
  const dbPath = path.join(dir, `${canonicalProjectName(options.run_name)}.db`);
  let db: SqliteDatabase;
  try {
    fs.mkdirSync(dir, { recursive: true });
    db = openSqlite(dbPath);
  } catch (err) {
    throw err instanceof TrackspecError ? err : fail(`cannot open ${dbPath}`, err);
  }
  try {
    configure(db, FOREGROUND_BUSY_MS);
    initSchema(db);
    let id: string = crypto().randomBytes(16).toString('hex');
    let resumed = false;
    let name = options.name ?? undefined;
    if (name !== undefined && options.resume !== 'never') {
      const existing = db.prepare('SELECT run_id FROM metrics WHERE run_name = ? GROUP BY run_id ORDER BY MAX(timestamp) DESC, MAX(id) DESC LIMIT 1').get(name);
      if (existing) {
        id = String(existing.run_id);
        resumed = true;
      } else if (options.resume === 'must') {
        throw new ConfigError(`TrackioTracker: run ${JSON.stringify(name)} does not exist in project ${JSON.stringify(options.run_name)} (${dbPath}); resume: 'must' needs an existing run`, { option: 'resume' });
      }
    }
    if (name === undefined) {
      const used = new Set(db.prepare('SELECT DISTINCT run_name FROM metrics').all().map((r) => String(r.run_name)));
      name = readableName(used);
    }
    const max = resumed ? db.prepare('SELECT MAX(step) AS m FROM metrics WHERE run_id = ?').get(id)?.m : null;
    let runConfig: Record<string, unknown> = { ...structuredClone(config), _Username: null, _Created: isoUtc(Date.now()), _Group: options.group ?? null };
    if (resumed) {
      const row = db.prepare('SELECT config FROM configs WHERE run_id = ?').get(id);
      if (row?.config !== undefined) {
        const text = typeof row.config === 'string' ? row.config : Buffer.from(row.config as Uint8Array).toString('utf8');
        try {
          runConfig = { ...(JSON.parse(text) as Record<string, unknown>), ...structuredClone(config) };
        } catch {
          // keep the new config
        }
      }
    }
    return new TrackioRun(
      { project: options.run_name, dbPath, db, name, id, group: options.group ?? null, resumed, nextStep: max === null || max === undefined ? 0 : Number(max) + 1, config: runConfig },
      {
        onWriteError: (err) => ctx.warn(`trackio: ${err.message}`),
        warnOnce: (key, message) => ctx.warnOnce(key, message),
      },
    );
  } catch (err) {
    try {
      db.close();
    } catch {
      // the first error matters
    }
    throw err instanceof TrackspecError ? err : fail(`cannot prepare ${dbPath}`, err);
  }
}

export const driver: BackendDriver<TrackioDriverOptions, TrackioRun> = {
  available: sqliteAvailable(),
  start: async (options, ctx) => {
    if (!sqliteAvailable()) throw sqliteMissing();
    return new TrackioDriver(startRun(options, ctx), ctx);
  },
};

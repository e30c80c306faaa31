/**
 * trackio 0.36.0's local store, as its `SQLiteStorage` lays it out: one database per project,
 * `<TRACKIO_DIR>/<canonical project>.db`, with the tables and indexes of `SQLiteStorage.init_db`
 * (created with IF NOT EXISTS, so trackio's own init_db later finds them in place), connection
 * pragmas as `_configure_sqlite_pragmas` sets them (WAL, synchronous NORMAL, temp_store MEMORY,
 * cache_size -20000, mmap_size 0, and the TRACKIO_SQLITE_* overrides), and rows as `bulk_log`
 * writes them (`metrics` JSON stored as a BLOB, one `configs` row per run).
 */
import * as os from 'node:os';
import * as path from 'node:path';
import { ConfigError } from '../../core/errors.js';
import type { SqliteDatabase } from './sqlite.js';

/** `trackio.utils.canonical_project_name`: keep `[A-Za-z0-9_-]` (Unicode letters and digits too), else `default`. */
export function canonicalProjectName(project: string): string {
  const safe = [...project].filter((c) => /[\p{L}\p{N}_-]/u.test(c)).join('');
  return safe || 'default';
}

const RESERVED_SUFFIXES = ['_system', '_configs', '_traces', '_artifacts', '_artifact_versions', '_artifact_aliases', '_run_artifact_links'];

/** `SQLiteStorage.validate_project_name`: the names trackio refuses, as a ConfigError naming the option. */
export function checkProjectName(project: string): void {
  const canonical = canonicalProjectName(project);
  if (canonical.startsWith('registry-')) {
    throw new ConfigError(`TrackioTracker: project ${JSON.stringify(project)} is not allowed: names beginning with 'registry-' are reserved for trackio registries`, { option: 'run_name' });
  }
  for (const suffix of RESERVED_SUFFIXES) {
    if (canonical.length > suffix.length && canonical.endsWith(suffix)) {
      throw new ConfigError(
        `TrackioTracker: project ${JSON.stringify(project)} is not allowed: its on-disk name ${JSON.stringify(canonical)} ends with the reserved suffix '${suffix}' (it would collide with the files trackio keeps for project ${JSON.stringify(canonical.slice(0, -suffix.length))}); choose another name`,
        { option: 'run_name' },
      );
    }
  }
}

/** trackio's default directory: `$HF_HOME/trackio`, HF_HOME being huggingface_hub's (`$XDG_CACHE_HOME/huggingface`, else `~/.cache/huggingface`). */
export function defaultTrackioDir(env: NodeJS.ProcessEnv = process.env): string {
  const expand = (p: string): string => (p.startsWith('~') ? path.join(os.homedir(), p.slice(1)) : p);
  const hfHome = env.HF_HOME ? expand(env.HF_HOME) : path.join(env.XDG_CACHE_HOME ? expand(env.XDG_CACHE_HOME) : path.join(os.homedir(), '.cache'), 'huggingface');
  return path.join(hfHome, 'trackio');
}

function choice(name: string, allowed: readonly string[], fallback: string): string {
  const v = (process.env[name] ?? '').trim().toLowerCase();
  return allowed.includes(v) ? v.toUpperCase() : fallback;
}

/** `_configure_sqlite_pragmas` (local mode), plus a busy timeout. */
export function configure(db: SqliteDatabase, busyTimeoutMs: number): void {
  db.exec(`PRAGMA busy_timeout = ${Math.max(0, Math.trunc(busyTimeoutMs))}`);
  db.exec(`PRAGMA journal_mode = ${choice('TRACKIO_SQLITE_JOURNAL_MODE', ['delete', 'truncate', 'persist', 'memory', 'wal', 'off'], 'WAL')}`);
  db.exec(`PRAGMA synchronous = ${choice('TRACKIO_SQLITE_SYNCHRONOUS', ['off', 'normal', 'full', 'extra'], 'NORMAL')}`);
  db.exec(`PRAGMA temp_store = ${choice('TRACKIO_SQLITE_TEMP_STORE', ['default', 'file', 'memory'], 'MEMORY')}`);
  db.exec('PRAGMA cache_size = -20000');
  const mmap = Number.parseInt((process.env.TRACKIO_SQLITE_MMAP_SIZE ?? '').trim(), 10);
  db.exec(`PRAGMA mmap_size = ${Number.isFinite(mmap) ? mmap : 0}`);
  const locking = choice('TRACKIO_SQLITE_LOCKING_MODE', ['normal', 'exclusive'], '');
  if (locking) db.exec(`PRAGMA locking_mode = ${locking}`);
}

const TABLES = [
  `CREATE TABLE IF NOT EXISTS metrics (
    id INTEGER PRIMARY KEY AUTOINCREMENT, run_id TEXT NOT NULL, timestamp TEXT NOT NULL, run_name TEXT NOT NULL,
    step INTEGER NOT NULL, metrics TEXT NOT NULL, log_id TEXT, space_id TEXT)`,
  `CREATE TABLE IF NOT EXISTS configs (
    id INTEGER PRIMARY KEY AUTOINCREMENT, run_id TEXT NOT NULL, run_name TEXT NOT NULL, config TEXT NOT NULL,
    created_at TEXT NOT NULL, UNIQUE(run_id))`,
  `CREATE TABLE IF NOT EXISTS system_metrics (
    id INTEGER PRIMARY KEY AUTOINCREMENT, run_id TEXT NOT NULL, timestamp TEXT NOT NULL, run_name TEXT NOT NULL,
    metrics TEXT NOT NULL, log_id TEXT, space_id TEXT)`,
  `CREATE TABLE IF NOT EXISTS traces (
    id TEXT PRIMARY KEY, run_id TEXT NOT NULL, timestamp TEXT NOT NULL, run_name TEXT NOT NULL, step INTEGER NOT NULL,
    key TEXT NOT NULL, trace_index INTEGER, messages TEXT NOT NULL, metadata TEXT NOT NULL, search_text TEXT NOT NULL,
    log_id TEXT, space_id TEXT)`,
  `CREATE TABLE IF NOT EXISTS project_metadata (key TEXT PRIMARY KEY, value TEXT NOT NULL)`,
  `CREATE TABLE IF NOT EXISTS pending_uploads (
    id INTEGER PRIMARY KEY AUTOINCREMENT, space_id TEXT NOT NULL, run_id TEXT, run_name TEXT, step INTEGER,
    file_path TEXT NOT NULL, relative_path TEXT, created_at TEXT NOT NULL, kind TEXT NOT NULL DEFAULT 'media', digest TEXT)`,
  `CREATE TABLE IF NOT EXISTS alerts (
    id INTEGER PRIMARY KEY AUTOINCREMENT, run_id TEXT NOT NULL, timestamp TEXT NOT NULL, run_name TEXT NOT NULL,
    title TEXT NOT NULL, text TEXT, level TEXT NOT NULL DEFAULT 'warn', step INTEGER, alert_id TEXT)`,
  `CREATE TABLE IF NOT EXISTS artifacts (
    id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL UNIQUE, type TEXT NOT NULL, description TEXT, created_at TEXT NOT NULL)`,
  `CREATE TABLE IF NOT EXISTS artifact_versions (
    id INTEGER PRIMARY KEY AUTOINCREMENT, artifact_id INTEGER NOT NULL REFERENCES artifacts(id), version INTEGER NOT NULL,
    manifest_digest TEXT NOT NULL, manifest TEXT NOT NULL, metadata TEXT, size_bytes INTEGER NOT NULL, producer_run_id TEXT,
    producer_run_name TEXT, created_at TEXT NOT NULL, UNIQUE(artifact_id, version), UNIQUE(artifact_id, manifest_digest))`,
  `CREATE TABLE IF NOT EXISTS artifact_aliases (
    artifact_id INTEGER NOT NULL REFERENCES artifacts(id), alias TEXT NOT NULL,
    artifact_version_id INTEGER NOT NULL REFERENCES artifact_versions(id), PRIMARY KEY (artifact_id, alias))`,
  `CREATE TABLE IF NOT EXISTS run_artifact_links (
    id INTEGER PRIMARY KEY AUTOINCREMENT, run_id TEXT, run_name TEXT, artifact_version_id INTEGER NOT NULL REFERENCES artifact_versions(id),
    direction TEXT NOT NULL CHECK(direction IN ('input', 'output')), created_at TEXT NOT NULL)`,
];

/** Columns trackio adds with ALTER TABLE to databases made by older versions. */
const ADDED_COLUMNS: ReadonlyArray<[string, string]> = [
  ['pending_uploads', "kind TEXT NOT NULL DEFAULT 'media'"],
  ['pending_uploads', 'digest TEXT'],
  ['metrics', 'log_id TEXT'],
  ['metrics', 'space_id TEXT'],
  ['system_metrics', 'log_id TEXT'],
  ['system_metrics', 'space_id TEXT'],
];

const INDEXES = [
  'CREATE INDEX IF NOT EXISTS idx_run_artifact_links_run ON run_artifact_links(run_id, run_name)',
  'CREATE INDEX IF NOT EXISTS idx_run_artifact_links_name ON run_artifact_links(run_name, run_id)',
  'CREATE INDEX IF NOT EXISTS idx_run_artifact_links_version ON run_artifact_links(artifact_version_id)',
  'CREATE UNIQUE INDEX IF NOT EXISTS idx_run_artifact_links_unique ON run_artifact_links(run_id, artifact_version_id, direction)',
  'CREATE INDEX IF NOT EXISTS idx_pending_uploads_kind ON pending_uploads(kind)',
  'CREATE INDEX IF NOT EXISTS idx_metrics_run_step ON metrics(run_id, step)',
  'CREATE INDEX IF NOT EXISTS idx_metrics_run_timestamp ON metrics(run_id, timestamp)',
  'CREATE INDEX IF NOT EXISTS idx_configs_run_name ON configs(run_name)',
  'CREATE INDEX IF NOT EXISTS idx_system_metrics_run_timestamp ON system_metrics(run_id, timestamp)',
  'CREATE INDEX IF NOT EXISTS idx_traces_run_step ON traces(run_id, step)',
  'CREATE INDEX IF NOT EXISTS idx_traces_run_timestamp ON traces(run_id, timestamp)',
  'CREATE INDEX IF NOT EXISTS idx_traces_search ON traces(search_text)',
  'CREATE INDEX IF NOT EXISTS idx_alerts_run ON alerts(run_id)',
  'CREATE INDEX IF NOT EXISTS idx_alerts_timestamp ON alerts(timestamp)',
  'CREATE UNIQUE INDEX IF NOT EXISTS idx_alerts_alert_id ON alerts(alert_id) WHERE alert_id IS NOT NULL',
  'CREATE UNIQUE INDEX IF NOT EXISTS idx_metrics_log_id ON metrics(log_id) WHERE log_id IS NOT NULL',
  'CREATE INDEX IF NOT EXISTS idx_metrics_pending ON metrics(space_id) WHERE space_id IS NOT NULL',
  'CREATE UNIQUE INDEX IF NOT EXISTS idx_system_metrics_log_id ON system_metrics(log_id) WHERE log_id IS NOT NULL',
  'CREATE INDEX IF NOT EXISTS idx_system_metrics_pending ON system_metrics(space_id) WHERE space_id IS NOT NULL',
];

/** Run `body` in one `BEGIN IMMEDIATE` transaction: committed, or rolled back and the error rethrown. */
export function immediateTransaction(db: SqliteDatabase, body: () => void): void {
  db.exec('BEGIN IMMEDIATE');
  try {
    body();
    db.exec('COMMIT');
  } catch (err) {
    try {
      db.exec('ROLLBACK');
    } catch {
      // the first error matters
    }
    throw err;
  }
}

/** `SQLiteStorage.init_db`: every table and index, in one immediate transaction. */
export function initSchema(db: SqliteDatabase): void {
  immediateTransaction(db, () => {
    for (const sql of TABLES) db.exec(sql);
    for (const [table, col] of ADDED_COLUMNS) {
      const name = col.split(' ')[0]!;
      const cols = db.prepare(`PRAGMA table_info(${table})`).all().map((r) => r.name);
      if (!cols.includes(name)) db.exec(`ALTER TABLE ${table} ADD COLUMN ${col}`);
    }
    for (const sql of INDEXES) db.exec(sql);
  });
}

/** `datetime.now(timezone.utc).isoformat()` for a time in milliseconds: `2026-11-30T22:49:18.329000+00:00`. */
export function isoUtc(ms: number): string {
  return `${new Date(ms).toISOString().slice(0, 23)}000+00:00`;
}

/** Adjectives and nouns for generated run names (`<adjective>-<noun>-<n>`, as trackio's `generate_readable_name`). */
const ADJECTIVES = ['dainty', 'brave', 'calm', 'eager', 'fancy', 'gentle', 'happy', 'jolly', 'kind', 'lively', 'merry', 'nice', 'proud', 'quick', 'silly', 'tidy', 'witty'];
const NOUNS = ['sunset', 'river', 'forest', 'meadow', 'mountain', 'ocean', 'valley', 'breeze', 'canyon', 'glacier', 'harbor', 'island', 'lagoon'];

/** A name not in `used`: `dainty-sunset-0`, else `<adj[n]>-<noun[n]>-<n>` for the first free n (trackio's scheme). */
export function readableName(used: ReadonlySet<string>): string {
  let n = 0;
  let name = `${ADJECTIVES[0]}-${NOUNS[0]}-0`;
  while (used.has(name)) {
    n++;
    name = `${ADJECTIVES[n % ADJECTIVES.length]}-${NOUNS[n % NOUNS.length]}-${n}`;
  }
  return name;
}

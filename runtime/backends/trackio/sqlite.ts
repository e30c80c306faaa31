/**
 * The SQLite library: Node's built-in `node:sqlite` (SQLite compiled into Node, with its unix VFS:
 * POSIX file locks, WAL and the shared-memory index, so the Python dashboard can read while we
 * write). It exists from Node 22.5 (behind `--experimental-sqlite` until 22.13 / 23.4) and not in
 * Node 20; there `start()` fails with a ConfigError naming the requirement.
 *
 * Candidates rejected for Node 20 (see the README's Trackio section): better-sqlite3 (native, its
 * install script downloads a prebuilt binary or compiles), node-sqlite3-wasm (WASM; its VFS locks
 * with a `<db>.lock` directory, which Python's sqlite3 never sees, and has no WAL shared memory),
 * sql.js (an in-memory copy written back), libsql 0.5.29 (prebuilt binary without install script,
 * but binding any BLOB parameter panics and aborts the process).
 */
import { createRequire } from 'node:module';
import { ConfigError } from '../../core/errors.js';

export interface SqliteStatement {
  run(...params: unknown[]): { changes: number | bigint; lastInsertRowid: number | bigint };
  get(...params: unknown[]): Record<string, unknown> | undefined;
  all(...params: unknown[]): Record<string, unknown>[];
}

export interface SqliteDatabase {
  exec(sql: string): void;
  prepare(sql: string): SqliteStatement;
  close(): void;
}

interface NodeSqlite {
  DatabaseSync: new (path: string, options?: Record<string, unknown>) => SqliteDatabase;
}

const load = createRequire(import.meta.url);
let cached: NodeSqlite | null | undefined;

function nodeSqlite(): NodeSqlite | null {
  if (cached !== undefined) return cached;
  try {
    const id = 'node:sqlite';
    cached = load(id) as NodeSqlite;
  } catch {
    cached = null;
  }
  return cached;
}

/**
 * Whether this Node.js has node:sqlite, decided from the version and flags without loading it
 * (loading prints Node's ExperimentalWarning, which importing the SDK must not do): Node.js >= 22.13
 * (23.4 on the 23 line), or 22.5–22.12 / 23.0–23.3 started with --experimental-sqlite.
 */
export function sqliteAvailable(): boolean {
  const [major = 0, minor = 0] = process.versions.node.split('.').map(Number);
  if (major > 23 || (major === 23 && minor >= 4) || (major === 22 && minor >= 13)) return true;
  if ((major === 22 && minor >= 5) || major === 23) {
    return [...process.execArgv, ...(process.env.NODE_OPTIONS ?? '').split(/\s+/)].includes('--experimental-sqlite');
  }
  return false;
}

/** The ConfigError for a Node.js without node:sqlite. */
export function sqliteMissing(): ConfigError {
  const [major, minor] = process.versions.node.split('.').map(Number) as [number, number];
  const flagged = major === 22 && minor >= 5 && minor < 13;
  return new ConfigError(
    `TrackioTracker needs SQLite, which this Node.js (${process.version}) does not provide: trackio's local store is a SQLite database that ` +
      (flagged
        ? 'node:sqlite writes here only with `node --experimental-sqlite`. Run with that flag, or use Node.js >= 22.13.'
        : 'trackspec writes with Node\'s built-in node:sqlite, available from Node.js 22.13 (22.5 with --experimental-sqlite). Upgrade Node.js to use this backend.'),
  );
}

/** Open (creating) a database file. */
export function openSqlite(file: string): SqliteDatabase {
  const m = nodeSqlite();
  if (!m) throw sqliteMissing();
  return new m.DatabaseSync(file);
}

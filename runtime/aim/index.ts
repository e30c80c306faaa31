/**
 * Aim backend: a client of Aim 3.x's remote tracking server (`aim server`, `logging_dir:
 * 'aim://host:port'`) that replays the calls Aim's Python SDK makes for Accelerate's AimTracker:
 * `Run(repo=…, experiment=…, run_hash=…, log_system_params=…)`, `run.name = run_name`,
 * `run['hparams'] = config`, `run.track(v, name=k, step=step, **kwargs)` per value, `run.close()`.
 *
 * - Start: probe, version check, connect, heartbeat (client.ts); then, as `Run.__init__`: [resume:
 *   check the run exists] → run `Lock` resource + lock → `TreeView` meta → [resume: load the
 *   sequences, refuse pre-3.11 metrics] → `FileManager` + 'starting' check-in → `RunHeartbeat` →
 *   attrs `{}` (new run) and `end_time` None → `StructuredRun` (+ experiment) → `TreeView` seqs →
 *   `__system_params` → name. (Writes go in one message; the resources are created first.)
 * - log(): numbers and booleans (1/0) are float metrics; strings are `aim.Text` objects (their
 *   own "texts" sequences). A step omitted counts per sequence as Aim does. kwargs: `epoch`
 *   (integer) and `context` (dict) as `run.track`'s; others are warned about once.
 * - logImages(): `aim.Image` objects (PNG), kwargs as Accelerate's `{aim_image, track}`.
 * - Writes are batched (one WebSocket message holds many instructions, applied in order by the
 *   server) in the background. A failed write is retried with backoff until retry_deadline_secs,
 *   reconnecting and re-creating the run's resources each time (a restarted server lost them);
 *   re-sending is safe because every instruction sets absolute paths to fixed values. Past the
 *   deadline the message and everything after it go to a durable spool; `trackspec sync` replays
 *   it. A process exiting without finish() sends what was not acknowledged plus the end time
 *   synchronously (a child process, exit-post.ts) and closes the run; failing that, spools them.
 *   Messages are cut at aimTuning.maxMessageBytes (uvicorn refuses WebSocket messages > 16 MiB).
 * - finish(): end_time, run heartbeat stop, lock release, resources released, disconnect.
 */
import * as path from 'node:path';
import type { BackendDriver } from '../driver.js';
import { ConfigError } from '../errors.js';

export interface AimDriverOptions {
  run_name: string | null;
  logging_dir: string;
  experiment: string | null;
  run_hash: string | null;
  system_tracking_interval: number | null;
  log_system_params: boolean;
  retry_deadline_secs: number;
}

/** `tracker.tracker` for AimTracker. */
export interface AimRunHandle {
  /** The run hash (24 hex characters for a new run). */
  readonly hash: string;
  /** `aim://host:port`. */
  readonly uri: string;
  readonly name: string | null;
  readonly experiment: string | null;
  /** The server's Aim version ('' when it was never reached). */
  readonly serverVersion: string;
  /** True while writes go to the server (false once they go to the spool). */
  readonly online: boolean;
  /** Spool file, once the server was unreachable. */
  readonly spoolPath: string | undefined;
}

/** Tuning for tests and the benchmark (not user options). */
export const aimTuning = { heartbeatMs: 10_000, maxDelayMs: 200, valuesPerMessage: 500, maxMessageBytes: 4 << 20, timeoutMs: 30_000, baseDelayMs: 200 };

const DEFAULT_PORT = 53800;

/** Parse `aim://host[:port]`; a plain path is a ConfigError explaining how to serve it. */
export function parseAimUri(loggingDir: string): { address: string; uri: string } {
  if (!/^aim:\/\//i.test(loggingDir)) {
    const dir = path.resolve(loggingDir);
    throw new ConfigError(
      `AimTracker: logging_dir '${loggingDir}' is a directory, but trackspec cannot write an Aim repository (RocksDB + SQLite) from Node. ` +
        `Serve the repository with Aim's tracking server, e.g. \`aim server --repo ${dir}\` (aim 3.x, default port ${DEFAULT_PORT}), ` +
        `then pass logging_dir: 'aim://<host>:${DEFAULT_PORT}' (e.g. 'aim://127.0.0.1:${DEFAULT_PORT}' on this machine).`,
      { option: 'logging_dir' },
    );
  }
  let url: URL;
  try {
    url = new URL(`http://${loggingDir.slice('aim://'.length)}`);
  } catch {
    throw new ConfigError(`AimTracker: logging_dir '${loggingDir}' is not a valid aim://host:port URI`, { option: 'logging_dir' });
  }
  if (!url.hostname || (url.pathname !== '/' && url.pathname !== '') || url.search || url.username) {
    throw new ConfigError(`AimTracker: logging_dir '${loggingDir}' must be aim://host:port (no path, query or credentials)`, { option: 'logging_dir' });
  }
  const address = `${url.hostname}:${url.port || DEFAULT_PORT}`;
  return { address, uri: `aim://${address}` };
}

export const driver: BackendDriver<AimDriverOptions, AimRunHandle> = {
  available: true,
  start: async (options, ctx) => (await import('./session.js')).startAim(options, ctx),
};

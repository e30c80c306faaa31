/** Aim options, the run handle type, tuning and `aim://` URIs: what the driver, the session and sync share. */
import * as path from 'node:path';
import { ConfigError } from '../../core/errors.js';

export interface AimDriverOptions {
  run_name: string | null;
  logging_dir: string;
  experiment: string | null;
  run_hash: string | null;
  system_tracking_interval: number | null;
  log_system_params: boolean;
  retry_deadline_secs: number;
  flush_interval_secs: number;
  write_ahead: boolean;
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
  /** Spool file holding writes kept for `trackspec sync` (the server was unreachable, or the in-memory cap was reached); undefined while the write-ahead only holds writes the server is still to acknowledge. */
  readonly spoolPath: string | undefined;
}

/**
 * Tuning for tests and the benchmark (not user options).
 *
 * maxMessageBytes (16 KiB): a cap per WebSocket write message, measured against a real Aim 3.29.1
 * server. Its `unpack_args` (aim/ext/transport/message_utils.py) re-slices the rest of the message
 * for every record, so decoding costs O(records × bytes): 0.5 ms for 16 KB, 94 ms for 256 KB,
 * 2.3 s for 1 MB, 16.5 s for 2.2 MB. It decodes and applies a message synchronously in its event
 * loop, so meanwhile every client, HTTP call, heartbeat and keepalive ping waits; past 20 s with a
 * ping outstanding uvicorn closes the socket (1011) after applying the message without answering
 * it. At 16 KiB (about 4 metric values) a message is answered in about 2 ms, and throughput was
 * best (8 KiB and 32 KiB were no faster; 4 MiB made 33 points/s). Only one instruction larger than
 * the cap by itself (a big image) makes a larger message, alone; a blob is one record, so such a
 * message is cheap per byte. `aim server` accepts messages up to 1 GiB (`--ws-max-size`).
 *
 * ackTimeoutMs: the hard cap on waiting for a write's answer while the socket stays open (a host
 * that vanished without closing TCP); a busy server is waited for, see client.ts. slowAckMs: a
 * write unanswered this long is warned about (once).
 *
 * maxUnsentBytes: encoded write messages held in memory, not yet acknowledged (a slow or
 * unreachable server). Past it, they and the rest of the run go to the spool (never dropped; the
 * server must apply them in order, so nothing later is sent before them).
 */
export const aimTuning = {
  heartbeatMs: 10_000,
  maxDelayMs: 200,
  valuesPerMessage: 500,
  maxMessageBytes: 16 << 10,
  timeoutMs: 30_000,
  ackTimeoutMs: 300_000,
  slowAckMs: 30_000,
  baseDelayMs: 200,
  maxUnsentBytes: 256 << 20,
};

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

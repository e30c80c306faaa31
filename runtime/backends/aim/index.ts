/**
 * Aim backend: a client of Aim 3.x's remote tracking server (`aim server`, `logging_dir:
 * 'aim://host:port'`) that replays the calls Aim's Python SDK makes for Accelerate's AimTracker:
 * `Run(repo=…, experiment=…, run_hash=…, log_system_params=…)`, `run.name = run_name`,
 * `run['hparams'] = config`, `run.track(v, name=k, step=step, **kwargs)` per value, `run.close()`.
 *
 * - Start: probe, version check, connect, `Repo` resource, heartbeat (client.ts); then, as `Run.__init__`: [resume:
 *   check the run exists] → run `Lock` resource + lock → `TreeView` meta → [resume: load the
 *   sequences, refuse pre-3.11 metrics] → `FileManager` + 'starting' check-in → `RunHeartbeat` →
 *   attrs `{}` (new run) and `end_time` None → `StructuredRun` (+ experiment) → `TreeView` seqs →
 *   `__system_params` → name. (Writes go in one message, more if `__system_params` is large; the
 *   resources are created first.)
 * - log(): numbers and booleans (1/0) are float metrics; strings are `aim.Text` objects (their
 *   own "texts" sequences). A step omitted counts per sequence as Aim does. kwargs: `epoch`
 *   (integer) and `context` (dict) as `run.track`'s; others are warned about once.
 * - logImages(): `aim.Image` objects (PNG), kwargs as Accelerate's `{aim_image, track}`.
 * - The client holds a `Repo` resource from connect to close (without one the server's run lock
 *   dies with its repo; see client.ts).
 * - Writes are batched in the background into WebSocket messages of at most
 *   aimTuning.maxMessageBytes (16 KiB: the server's decode cost grows with records × bytes and
 *   blocks it; see config.ts), one in flight, applied in order by the server. The answer is
 *   waited for as long as the socket stays open (a busy server is slow, not gone). A failed write
 *   (socket closed, or `UnauthorizedRequestError`: the server dropped our resources) is retried
 *   with backoff until retry_deadline_secs, reconnecting and re-creating the run's resources each
 *   time (a restarted server lost them). The server applies a re-sent message again; that leaves
 *   the same data as long as re-sends go in order (run.ts), which they do: the unacknowledged
 *   message is re-sent before anything after it. Past the deadline the message and everything
 *   after it go to a durable spool; `trackspec sync` replays it in order. Encoding does not wait
 *   for delivery: with write_ahead, messages not yet acknowledged are written to the spool every
 *   flush_interval_secs (a SIGKILL loses at most that), acknowledged ones are marked done; past
 *   aimTuning.maxUnsentBytes waiting in memory the rest of the run goes to the spool. Message
 *   boundaries never split one run.track() call (run.ts). A process exiting
 *   without finish() sends what was not acknowledged plus the end time synchronously (a child
 *   process, exit-post.ts) and closes the run; failing that, spools them.
 * - finish(): end_time, run heartbeat stop, lock release (both re-tried after re-creating the
 *   resources if the server dropped them), resources released, Repo released, disconnect.
 */
import type { BackendDriver } from '../../core/driver.js';
import type { AimDriverOptions, AimRunHandle } from './config.js';

export { aimTuning, parseAimUri } from './config.js';
export type { AimDriverOptions, AimRunHandle } from './config.js';

export const driver: BackendDriver<AimDriverOptions, AimRunHandle> = {
  available: true,
  start: async (options, ctx) => (await import('./session.js')).startAim(options, ctx),
};

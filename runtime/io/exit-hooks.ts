/**
 * Process-exit hooks shared by the backends (TensorBoard, MLflow, W&B, ...).
 *
 * A hook is a **synchronous** callback (e.g. "write my buffered bytes with fs.writeSync") that runs:
 *
 * - on `beforeExit` (the event loop drained; may fire more than once, so hooks must be idempotent),
 * - on `exit` (normal exit or `process.exit()`; only synchronous work can happen here),
 * - on `SIGINT` / `SIGTERM`. After the hooks ran, the signal is **re-raised** with its default
 *   behaviour (the process dies from that signal, exit status 128+n) unless the application has
 *   installed its own listener for that signal, in which case the application decides what happens
 *   next (we never swallow a signal and never exit on the application's behalf).
 *
 * Hooks run in registration order; an exception thrown by one hook is caught and reported on
 * stderr so the remaining hooks still run. Process listeners are installed lazily when the first
 * hook is registered and removed when the last one is unregistered.
 */

export type ExitHook = (reason: ExitReason) => void;
export type ExitReason = 'beforeExit' | 'exit' | 'SIGINT' | 'SIGTERM';

const hooks = new Set<ExitHook>();
const SIGNALS = ['SIGINT', 'SIGTERM'] as const;
type HookedSignal = (typeof SIGNALS)[number];

let installed = false;

function runHooks(reason: ExitReason): void {
  for (const hook of [...hooks]) {
    try {
      hook(reason);
    } catch (err) {
      try {
        process.stderr.write(`trackspec: exit hook failed (${reason}): ${String(err)}\n`);
      } catch {
        // stderr gone: nothing more we can do.
      }
    }
  }
}

const onBeforeExit = (): void => runHooks('beforeExit');
const onExit = (): void => runHooks('exit');
const signalListeners: Record<HookedSignal, () => void> = {
  SIGINT: () => onSignal('SIGINT'),
  SIGTERM: () => onSignal('SIGTERM'),
};

function onSignal(signal: HookedSignal): void {
  runHooks(signal);
  // Another listener (the application's) owns the behaviour: leave the process alone.
  if (process.listenerCount(signal) > 1) return;
  // We were the only listener, i.e. the default behaviour (terminate) was expected: remove our
  // listeners and re-raise so the process terminates from the signal as it would have without us.
  uninstall();
  process.kill(process.pid, signal);
}

function install(): void {
  if (installed) return;
  installed = true;
  process.on('beforeExit', onBeforeExit);
  process.on('exit', onExit);
  for (const s of SIGNALS) process.on(s, signalListeners[s]);
}

function uninstall(): void {
  if (!installed) return;
  installed = false;
  process.off('beforeExit', onBeforeExit);
  process.off('exit', onExit);
  for (const s of SIGNALS) process.off(s, signalListeners[s]);
}

/**
 * Register a synchronous hook to run before the process exits (see module doc). Registering the
 * same function twice is a no-op. Returns a function that unregisters it.
 */
export function registerExitHook(hook: ExitHook): () => void {
  hooks.add(hook);
  install();
  return () => unregisterExitHook(hook);
}

/** Unregister a hook; removes the process listeners once no hook is left. */
export function unregisterExitHook(hook: ExitHook): void {
  hooks.delete(hook);
  if (hooks.size === 0) uninstall();
}

/** Number of registered hooks (for tests and diagnostics). */
export function exitHookCount(): number {
  return hooks.size;
}

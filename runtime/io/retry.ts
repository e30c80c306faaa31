/**
 * Retries with exponential backoff and full jitter, bounded by a total deadline; shared by every
 * network backend.
 *
 * - `classifyError` is the default policy: transport failures (`HttpTransportError`), 429 and 5xx
 *   responses (`HttpStatusError`) are retried; everything else (4xx, programming errors) fails at once.
 *   A backend passes its own `classify` to refine it (e.g. a 500 its server uses for a
 *   non-transient condition).
 * - The delay before retry n (n = 1, 2, ...) is `random() * min(maxDelayMs, baseDelayMs * 2^(n-1))`
 *   ("full jitter"), raised to at least the server's `Retry-After` when it sent one.
 * - Before sleeping, if `elapsed + delay` would pass `deadlineMs`, `withRetry` gives up with a
 *   `RetryDeadlineError` whose `cause` is the last error.
 * - `signal`: aborting stops the loop (also mid-sleep) and rejects with the signal's reason.
 */
import { BackendError } from '../core/errors.js';
import { HttpStatusError, HttpTransportError } from './http.js';

export interface RetryPolicy {
  baseDelayMs: number;
  maxDelayMs: number;
  deadlineMs: number;
}

export const DEFAULT_RETRY_POLICY: RetryPolicy = Object.freeze({ baseDelayMs: 200, maxDelayMs: 10_000, deadlineMs: 60_000 });

export type RetryDecision = { retry: false } | { retry: true; afterMs?: number };

/** The retry loop gave up because the next attempt would pass the deadline. */
export class RetryDeadlineError extends BackendError {
  readonly attempts: number;
  readonly deadlineExceeded = true as const;
  /** The last error (also `cause`). */
  readonly lastError: unknown;
  constructor(backend: string, message: string, attempts: number, lastError: unknown) {
    const last = lastError as { status?: unknown; code?: unknown } | undefined;
    super(backend, message, {
      cause: lastError,
      status: typeof last?.status === 'number' ? last.status : undefined,
      code: typeof last?.code === 'string' ? last.code : undefined,
    });
    this.attempts = attempts;
    this.lastError = lastError;
  }
}

/**
 * Default classification: HttpTransportError → retry (except `ECLOSED`: the client was closed); HttpStatusError 429 → retry after
 * Retry-After (if any); 5xx → retry (after Retry-After if any, e.g. 503); any other error
 * (incl. 4xx) → no retry.
 */
export function classifyError(err: unknown): RetryDecision {
  if (err instanceof HttpTransportError) return err.code === 'ECLOSED' ? { retry: false } : { retry: true };
  if (err instanceof HttpStatusError) {
    if (err.status === 429 || err.status >= 500) {
      return err.retryAfterMs !== undefined ? { retry: true, afterMs: err.retryAfterMs } : { retry: true };
    }
  }
  return { retry: false };
}

export interface WithRetryOptions {
  policy?: Partial<RetryPolicy>;
  classify?: (err: unknown) => RetryDecision;
  signal?: AbortSignal;
  onRetry?: (info: { attempt: number; delayMs: number; error: unknown }) => void;
  sleep?: (ms: number) => Promise<void>;
  now?: () => number;
  /** Uniform [0, 1) source for the jitter; default Math.random. */
  random?: () => number;
  /** Backend name for `RetryDeadlineError` (default: the last error's backend, else 'network'). */
  backend?: string;
}

function abortableSleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const onAbort = (): void => {
      clearTimeout(t);
      reject(signal!.reason);
    };
    const t = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/** The backoff delay before retry number `attempt` (1-based), without Retry-After. */
export function backoffDelay(attempt: number, policy: RetryPolicy, random: () => number = Math.random): number {
  const ceiling = Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** Math.min(attempt - 1, 52));
  return Math.floor(random() * ceiling);
}

function describe(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/**
 * Run fn until it succeeds, a non-retryable error (thrown as is), or the total deadline would be
 * exceeded (then `RetryDeadlineError` with `.cause` = last error, `.attempts`, `deadlineExceeded`).
 * `fn` receives the attempt number, starting at 1.
 */
export async function withRetry<T>(fn: (attempt: number) => Promise<T>, options: WithRetryOptions = {}): Promise<T> {
  const policy: RetryPolicy = { ...DEFAULT_RETRY_POLICY, ...options.policy };
  const classify = options.classify ?? classifyError;
  const now = options.now ?? Date.now;
  const random = options.random ?? Math.random;
  const signal = options.signal;
  const sleep = options.sleep ?? ((ms: number) => abortableSleep(ms, signal));
  const start = now();
  for (let attempt = 1; ; attempt++) {
    signal?.throwIfAborted();
    try {
      return await fn(attempt);
    } catch (err) {
      if (signal?.aborted) throw signal.reason;
      const decision = classify(err);
      if (!decision.retry) throw err;
      let delayMs = backoffDelay(attempt, policy, random);
      if (decision.afterMs !== undefined && decision.afterMs > delayMs) delayMs = Math.ceil(decision.afterMs);
      const elapsed = now() - start;
      if (elapsed + delayMs > policy.deadlineMs) {
        const backend = options.backend ?? (err instanceof BackendError ? err.backend : 'network');
        const lastMessage = err instanceof BackendError ? err.message.replace(`${err.backend}: `, '') : describe(err);
        throw new RetryDeadlineError(
          backend,
          `gave up after ${attempt} attempt${attempt === 1 ? '' : 's'} in ${Math.round(elapsed)} ms ` +
            `(retry deadline ${policy.deadlineMs} ms): ${lastMessage}`,
          attempt,
          err,
        );
      }
      options.onRetry?.({ attempt, delayMs, error: err });
      await sleep(delayMs);
    }
  }
}

/**
 * The error hierarchy every trackspec failure belongs to.
 *
 * - `ConfigError`: an option or environment variable is wrong (names it and the fix).
 * - `ValidationError`: a value or document failed validation; carries a structured issue list.
 * - `BackendError`: the backend (server, file system, protocol) failed; wraps the cause.
 */
export class TrackspecError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}

export interface ConfigErrorDetails {
  /** The option (spec name) the error is about, if any. */
  option?: string;
  /** The environment variable the bad value came from, if any. */
  envVar?: string;
  /** Every problem found, when several options were wrong at once. */
  issues?: readonly ValidationIssue[];
  cause?: unknown;
}

export class ConfigError extends TrackspecError {
  readonly option: string | undefined;
  readonly envVar: string | undefined;
  readonly issues: readonly ValidationIssue[];
  constructor(message: string, details: ConfigErrorDetails = {}) {
    super(message, { cause: details.cause });
    this.option = details.option;
    this.envVar = details.envVar;
    this.issues = details.issues ?? [];
  }
}

export interface ValidationIssue {
  /** JSON Pointer to the offending value ('' for the root). */
  pointer: string;
  /** Stable, machine-readable code such as `unknown-option` or `type`. */
  code: string;
  /** Human-readable message. */
  message: string;
}

export class ValidationError extends TrackspecError {
  readonly issues: readonly ValidationIssue[];
  constructor(message: string, issues: readonly ValidationIssue[]) {
    super(message);
    this.issues = issues;
  }
}

export interface BackendErrorDetails {
  cause?: unknown;
  /** HTTP status, when the failure was an HTTP response. */
  status?: number;
  /** Backend-specific error code (e.g. MLflow's `error_code`). */
  code?: string;
}

export class BackendError extends TrackspecError {
  readonly backend: string;
  readonly status: number | undefined;
  readonly code: string | undefined;
  constructor(backend: string, message: string, details: BackendErrorDetails = {}) {
    super(`${backend}: ${message}`, { cause: details.cause });
    this.backend = backend;
    this.status = details.status;
    this.code = details.code;
  }
}

/**
 * `err` as a BackendError of `backend` with `message: <err's message>` (its errno `code` kept, `err`
 * as the cause); a BackendError is returned as it is.
 */
export function wrapBackendError(backend: string, message: string, err: unknown): BackendError {
  if (err instanceof BackendError) return err;
  const code = (err as { code?: unknown } | null)?.code;
  return new BackendError(backend, `${message}: ${err instanceof Error ? err.message : String(err)}`, {
    cause: err,
    ...(typeof code === 'string' ? { code } : {}),
  });
}

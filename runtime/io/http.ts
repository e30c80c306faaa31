/**
 * The HTTP client every network backend (MLflow, W&B, Comet ML, Aim) shares.
 *
 * - One keep-alive `undici` `Pool` per client (one origin), `connections` sockets (default 8).
 * - JSON in, JSON out: `request()` never throws on an HTTP status (turn a non-2xx response into an
 *   error with `httpError()`); it throws `HttpTransportError` when no response arrived (connection
 *   refused/reset, DNS, TLS, timeout), with a normalised `code` (`ECONNREFUSED`, `ECONNRESET`,
 *   `ETIMEDOUT`, `ENOTFOUND`, ...).
 * - A whole request (connect + headers + body) is bounded by `timeoutMs` (default 30 s).
 * - Credentials never leak: header values and URL userinfo (`http://user:pass@host` becomes a Basic
 *   `Authorization` header unless one is given) are redacted from every message this module builds,
 *   and the `cause` of an `HttpTransportError` is a redacted copy of the underlying error, not the
 *   original object. Error messages name the origin and path, never the query string.
 * - `signal`: aborting rejects with the signal's reason (as `fetch` does), not with an
 *   `HttpTransportError`, so retry loops stop.
 * - `proxyFromEnv` (opt-in, off by default): `HTTPS_PROXY`/`HTTP_PROXY` (and lower-case) for the
 *   origin's scheme, unless `NO_PROXY` names the host or the host is loopback, as Go's
 *   `http.ProxyFromEnvironment` decides (W&B's client). http targets go to the proxy in absolute
 *   form, https targets through a CONNECT tunnel (undici `ProxyAgent`).
 */
import type { Dispatcher } from 'undici';
import { BackendError } from '../core/errors.js';
import { lazy } from './lazy.js';

/** undici is required when the first client is made, so importing the SDK does not pay for it. */
const loadUndici = lazy<typeof import('undici')>('undici');

export interface HttpClientOptions {
  /** e.g. `http://127.0.0.1:5000` or `https://host/prefix`; a path prefix is kept for every request. */
  baseUrl: string;
  /** e.g. Authorization; values are NEVER included in errors or logs. */
  headers?: Record<string, string>;
  /** Skip TLS certificate verification (https only). */
  insecureTls?: boolean;
  /** Per request (connect + headers + body), default 30_000. */
  timeoutMs?: number;
  /** Keep-alive pool size, default 8. */
  connections?: number;
  /** For error messages, e.g. `mlflow`. */
  backend: string;
  /** Honour HTTP(S)_PROXY / NO_PROXY from `env` (default false). */
  proxyFromEnv?: boolean;
  /** Environment for `proxyFromEnv` (default process.env). */
  env?: Record<string, string | undefined>;
}

const isLoopback = (host: string): boolean =>
  host === 'localhost' || host.endsWith('.localhost') || /^127\.\d+\.\d+\.\d+$/.test(host) || host === '[::1]' || host === '::1';

/**
 * The proxy URL for `url` from the environment, or undefined: Go's `ProxyFromEnvironment` rules
 * (scheme-specific variable, lower case first; loopback never proxied; `NO_PROXY` entries `*`,
 * `host`, `.domain`/`domain` (and subdomains), optionally `:port`).
 */
export function proxyFor(url: URL, env: Record<string, string | undefined> = process.env): string | undefined {
  const pick = (name: string): string | undefined => env[name.toLowerCase()] || env[name.toUpperCase()] || undefined;
  const proxy = url.protocol === 'https:' ? pick('HTTPS_PROXY') : pick('HTTP_PROXY');
  if (!proxy) return undefined;
  const host = url.hostname.toLowerCase();
  if (isLoopback(host)) return undefined;
  const port = url.port || (url.protocol === 'https:' ? '443' : '80');
  for (const raw of (pick('NO_PROXY') ?? '').split(/[,\s]+/)) {
    let entry = raw.trim().toLowerCase();
    if (!entry) continue;
    if (entry === '*') return undefined;
    let entryPort: string | undefined;
    const m = /^(.*?):(\d+)$/.exec(entry);
    if (m && !entry.endsWith(']')) [, entry, entryPort] = m as unknown as [string, string, string];
    if (entryPort && entryPort !== port) continue;
    entry = entry.replace(/^\*?\./, '');
    if (host === entry || host.endsWith(`.${entry}`)) return undefined;
  }
  return /^[a-z][a-z0-9+.-]*:\/\//i.test(proxy) ? proxy : `http://${proxy}`;
}

export interface HttpResponse<T = unknown> {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: T;
}

export type QueryValue = string | number | boolean | (string | number)[] | undefined;

export interface RequestInit {
  query?: Record<string, QueryValue>;
  json?: unknown;
  signal?: AbortSignal;
  /** Return a 2xx response body as bytes (a Buffer) instead of parsing it; other statuses are parsed as usual. */
  bytes?: boolean;
  /**
   * A raw request body instead of `json` (PUT uploads): bytes, or a readable stream that undici
   * streams with backpressure (a file is never read whole). A stream can be sent once: a retry needs
   * a new one. Give `content-length` in `headers` for a stream.
   */
  body?: Uint8Array | NodeJS.ReadableStream;
  /** Extra request headers (e.g. content-type of a raw body); the client's own headers win for credentials. */
  headers?: Record<string, string>;
  /** Overall limit for this request instead of the client's `timeoutMs` (0 = none; undici's idle timeouts still apply). */
  timeoutMs?: number;
}

/** A connection-level failure: no HTTP response was received. */
export class HttpTransportError extends BackendError {
  declare readonly code: string;
  /** HTTP method and path (no query string, no credentials). */
  readonly request: string;
  /**
   * False when the request certainly never reached the server (connection refused, DNS failure,
   * connect timeout, unreachable network): safe to retry even for non-idempotent calls. True when
   * the connection broke or timed out after the request may have been sent (a retry may duplicate).
   */
  readonly mayHaveReachedServer: boolean;
  constructor(backend: string, message: string, code: string, request: string, cause?: unknown, mayHaveReachedServer = true) {
    super(backend, message, { cause, code });
    this.request = request;
    this.mayHaveReachedServer = mayHaveReachedServer;
  }
}

/** A non-2xx HTTP response turned into an error by `httpError()`. */
export class HttpStatusError extends BackendError {
  declare readonly status: number;
  /** Milliseconds the server asked us to wait (`Retry-After`), if it did. */
  readonly retryAfterMs: number | undefined;
  /** The parsed response body (JSON value or text). */
  readonly body: unknown;
  /** The server's own message (`message` field of a JSON error body), if any. */
  readonly serverMessage: string | undefined;
  constructor(
    backend: string,
    message: string,
    details: { status: number; code?: string; retryAfterMs?: number; body: unknown; serverMessage?: string },
  ) {
    super(backend, message, { status: details.status, code: details.code });
    this.retryAfterMs = details.retryAfterMs;
    this.body = details.body;
    this.serverMessage = details.serverMessage;
  }
}

/** Replaces every secret in a string; attached (non-enumerable) to responses for `httpError`. */
type Redactor = (text: string) => string;
const kRedact = Symbol('trackspec.redact');

const identity: Redactor = (s) => s;

function makeRedactor(secrets: Iterable<string>): Redactor {
  // Short values (e.g. "1") would redact half of every message and are not credentials.
  const list = [...new Set([...secrets].filter((s) => s.length >= 4))].sort((a, b) => b.length - a.length);
  if (list.length === 0) return identity;
  return (text) => {
    let out = text;
    for (const s of list) if (out.includes(s)) out = out.split(s).join('***');
    return out;
  };
}

/** A plain, redacted copy of an error (message, name, code and the usual syscall fields; nested causes too). */
function redactError(err: unknown, redact: Redactor, depth = 0): unknown {
  if (!(err instanceof Error)) return err === undefined ? undefined : new Error(redact(String(err)));
  const copy = new Error(redact(err.message)) as Error & Record<string, unknown>;
  copy.name = err.name;
  const src = err as Error & Record<string, unknown>;
  for (const k of ['code', 'errno', 'syscall', 'address', 'port']) {
    const v = src[k];
    if (typeof v === 'string') copy[k] = redact(v);
    else if (typeof v === 'number') copy[k] = v;
  }
  if (err.stack) copy.stack = redact(err.stack);
  if (src.cause !== undefined && depth < 4) copy.cause = redactError(src.cause, redact, depth + 1);
  // AggregateError (happy eyeballs: several addresses refused).
  if (Array.isArray(src.errors) && depth < 4) copy.errors = src.errors.map((e) => redactError(e, redact, depth + 1));
  return copy;
}

const UNDICI_CODES: Record<string, string> = {
  UND_ERR_CONNECT_TIMEOUT: 'ETIMEDOUT',
  UND_ERR_HEADERS_TIMEOUT: 'ETIMEDOUT',
  UND_ERR_BODY_TIMEOUT: 'ETIMEDOUT',
  UND_ERR_SOCKET: 'ECONNRESET',
  UND_ERR_CLOSED: 'ECONNRESET',
  UND_ERR_DESTROYED: 'ECONNRESET',
};

/** The most specific errno-like code in an error (or its cause / AggregateError members). */
function transportCode(err: unknown, depth = 0): string {
  if (!err || typeof err !== 'object' || depth > 4) return 'EUNKNOWN';
  const e = err as { code?: unknown; cause?: unknown; errors?: unknown };
  if (typeof e.code === 'string' && /^E[A-Z0-9_]+$/.test(e.code)) return e.code;
  if (Array.isArray(e.errors) && e.errors.length > 0) {
    const c = transportCode(e.errors[0], depth + 1);
    if (c !== 'EUNKNOWN') return c;
  }
  if (e.cause !== undefined) {
    const c = transportCode(e.cause, depth + 1);
    if (c !== 'EUNKNOWN') return c;
  }
  if (typeof e.code === 'string' && UNDICI_CODES[e.code]) return UNDICI_CODES[e.code]!;
  if (typeof e.code === 'string' && e.code.length > 0) return e.code;
  return 'EUNKNOWN';
}

const NEVER_SENT = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH', 'EHOSTDOWN', 'UND_ERR_CONNECT_TIMEOUT']);

/** True unless some code in the error chain says the connection was never established. */
function mayHaveReached(err: unknown, depth = 0): boolean {
  if (!err || typeof err !== 'object' || depth > 4) return true;
  const e = err as { code?: unknown; cause?: unknown; errors?: unknown };
  if (typeof e.code === 'string' && NEVER_SENT.has(e.code)) return false;
  if (Array.isArray(e.errors) && e.errors.length > 0 && e.errors.every((x) => !mayHaveReached(x, depth + 1))) return false;
  return e.cause === undefined ? true : mayHaveReached(e.cause, depth + 1);
}

function encodeQuery(query: Record<string, QueryValue> | undefined): string {
  if (!query) return '';
  const parts: string[] = [];
  for (const key of Object.keys(query)) {
    const v = query[key];
    if (v === undefined) continue;
    const k = encodeURIComponent(key);
    if (Array.isArray(v)) for (const item of v) parts.push(`${k}=${encodeURIComponent(String(item))}`);
    else parts.push(`${k}=${encodeURIComponent(String(v))}`);
  }
  return parts.length ? `?${parts.join('&')}` : '';
}

class TimeoutSentinel extends Error {}

export class HttpClient {
  readonly backend: string;
  /** `scheme://host:port` plus path prefix, without credentials (safe to print). */
  readonly publicUrl: string;
  private readonly origin: string;
  private readonly prefix: string;
  private readonly headers: Record<string, string>;
  private readonly jsonHeaders: Record<string, string>;
  private readonly timeoutMs: number;
  private readonly pool: Dispatcher;
  /** Set when requests go through a proxy agent (which needs the origin on each request). */
  private readonly viaProxy: boolean;
  private readonly redact: Redactor;
  private closed = false;

  constructor(options: HttpClientOptions) {
    this.backend = options.backend;
    let url: URL;
    try {
      url = new URL(options.baseUrl);
    } catch {
      // Do not echo the URL: it may carry credentials.
      throw new BackendError(options.backend, 'invalid base URL (expected http://host[:port][/prefix] or https://...)');
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') {
      throw new BackendError(options.backend, `unsupported URL scheme '${url.protocol}' (expected http: or https:)`);
    }
    const secrets: string[] = [];
    const headers: Record<string, string> = {};
    for (const [k, v] of Object.entries(options.headers ?? {})) {
      headers[k.toLowerCase()] = v;
      secrets.push(v);
      // "Bearer xyz" / "Basic xyz": the token alone is a secret too.
      const token = /^\S+\s+(\S+)$/.exec(v)?.[1];
      if (token) secrets.push(token);
    }
    if (url.username || url.password) {
      const user = decodeURIComponent(url.username);
      const pass = decodeURIComponent(url.password);
      secrets.push(url.username, url.password, user, pass, `${url.username}:${url.password}`, `${user}:${pass}`);
      const basic = Buffer.from(`${user}:${pass}`).toString('base64');
      secrets.push(basic);
      if (!('authorization' in headers)) headers['authorization'] = `Basic ${basic}`;
    }
    this.redact = makeRedactor(secrets);
    this.origin = url.origin;
    this.prefix = url.pathname.replace(/\/+$/, '');
    this.publicUrl = `${url.origin}${this.prefix}`;
    this.headers = headers;
    this.jsonHeaders = { ...headers, 'content-type': 'application/json' };
    this.timeoutMs = options.timeoutMs ?? 30_000;
    const tls = url.protocol === 'https:' && options.insecureTls ? { rejectUnauthorized: false } : {};
    const poolOptions = {
      connections: options.connections ?? 8,
      pipelining: 1,
      headersTimeout: this.timeoutMs,
      bodyTimeout: this.timeoutMs,
      connect: { timeout: Math.min(this.timeoutMs, 10_000), ...tls },
    };
    const proxy = options.proxyFromEnv ? proxyFor(url, options.env) : undefined;
    this.viaProxy = proxy !== undefined;
    if (proxy !== undefined) {
      let proxyUrl: URL;
      try {
        proxyUrl = new URL(proxy);
      } catch {
        throw new BackendError(options.backend, 'invalid proxy URL in HTTPS_PROXY/HTTP_PROXY (expected http://host:port)');
      }
      for (const part of [proxyUrl.username, proxyUrl.password, decodeURIComponent(proxyUrl.password)]) if (part) secrets.push(part);
      this.redact = makeRedactor(secrets);
      this.pool = new (loadUndici().ProxyAgent)({ ...poolOptions, uri: proxy, proxyTunnel: false, requestTls: tls });
    } else {
      this.pool = new (loadUndici().Pool)(this.origin, poolOptions);
    }
  }

  /**
   * JSON in/out. GET: `query` as query string (arrays → repeated params). POST/PUT: `json` as body
   * with Content-Type: application/json. Parses JSON responses; non-JSON bodies are returned as
   * text (an empty body as `''`). Never throws on HTTP status; throws `HttpTransportError` on
   * connection failure/timeout.
   */
  async request<T = unknown>(
    method: 'GET' | 'POST' | 'PUT' | 'DELETE',
    path: string,
    init?: RequestInit,
  ): Promise<HttpResponse<T>> {
    const fullPath = `${this.prefix}${path.startsWith('/') ? path : `/${path}`}`;
    const shownPath = (path.startsWith('/') ? path : `/${path}`).split('?')[0]!; // never the query string
    const what = `${method} ${this.publicUrl}${shownPath}`;
    if (this.closed) throw new HttpTransportError(this.backend, `${what}: client is closed`, 'ECLOSED', what, undefined, false);
    const userSignal = init?.signal;
    userSignal?.throwIfAborted();

    // Per-request objects only when needed (an Error captures a stack: built only when the timer fires).
    const limitMs = init?.timeoutMs ?? this.timeoutMs;
    const controller = limitMs > 0 || userSignal ? new AbortController() : undefined;
    let timeout: TimeoutSentinel | undefined;
    const timer = limitMs > 0 ? setTimeout(() => controller!.abort((timeout = new TimeoutSentinel('timeout'))), limitMs) : undefined;
    const onUserAbort = (): void => controller!.abort(userSignal!.reason);
    userSignal?.addEventListener('abort', onUserAbort, { once: true });

    const hasBody = init?.json !== undefined;
    const raw = init?.body;
    const headers = raw !== undefined ? { ...init?.headers, ...this.headers } : hasBody ? { ...init?.headers, ...this.jsonHeaders } : init?.headers ? { ...init.headers, ...this.headers } : this.headers;
    try {
      const res = await this.pool.request({
        path: fullPath + encodeQuery(init?.query),
        ...(this.viaProxy ? { origin: this.origin } : {}),
        method,
        headers,
        body: raw !== undefined ? (raw as Uint8Array) : hasBody ? JSON.stringify(init!.json) : undefined,
        signal: controller?.signal,
      });
      if (init?.bytes && res.statusCode >= 200 && res.statusCode < 300) {
        const raw = Buffer.from(await res.body.arrayBuffer());
        const out: HttpResponse<T> = { status: res.statusCode, headers: res.headers, body: raw as T };
        Object.defineProperty(out, kRedact, { value: this.redact, enumerable: false });
        return out;
      }
      const text = await res.body.text();
      const ctype = res.headers['content-type'];
      const isJson = typeof ctype === 'string' ? /[/+]json\b/i.test(ctype) : false;
      let body: unknown = text;
      if (text.length > 0 && (isJson || text[0] === '{' || text[0] === '[')) {
        try {
          body = JSON.parse(text);
        } catch {
          body = text; // declared JSON but is not: keep the text
        }
      }
      const out: HttpResponse<T> = { status: res.statusCode, headers: res.headers, body: body as T };
      Object.defineProperty(out, kRedact, { value: this.redact, enumerable: false });
      return out;
    } catch (err) {
      if (userSignal?.aborted && err === userSignal.reason) throw err;
      if (userSignal?.aborted) throw userSignal.reason;
      if (timeout !== undefined && (err === timeout || controller?.signal.reason === timeout)) {
        throw new HttpTransportError(
          this.backend,
          `${what}: no complete response within ${limitMs} ms (ETIMEDOUT)`,
          'ETIMEDOUT',
          what,
        );
      }
      const code = transportCode(err);
      const detail = err instanceof Error ? this.redact(err.message) : this.redact(String(err));
      throw new HttpTransportError(
        this.backend,
        `${what}: ${code === 'ECONNREFUSED' ? 'connection refused' : 'request failed'} (${code}${detail ? `: ${detail}` : ''})`,
        code,
        what,
        redactError(err, this.redact),
        mayHaveReached(err),
      );
    } finally {
      if (timer !== undefined) clearTimeout(timer);
      userSignal?.removeEventListener('abort', onUserAbort);
    }
  }

  /** Close the pool: in-flight requests finish, idle sockets close. Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.pool.close();
  }
}

/**
 * Parse `Retry-After`: delay-seconds (`"120"`, also fractional) or an HTTP date; returns
 * milliseconds from `now` (never negative), or undefined when absent or unparsable.
 */
export function parseRetryAfter(value: string | string[] | undefined, now: number = Date.now()): number | undefined {
  const v = Array.isArray(value) ? value[0] : value;
  if (v === undefined) return undefined;
  const s = v.trim();
  if (s === '') return undefined;
  if (/^\d+(\.\d+)?$/.test(s)) return Math.round(Number(s) * 1000);
  const t = Date.parse(s);
  if (Number.isNaN(t)) return undefined;
  return Math.max(0, t - now);
}

function snippet(text: string, max = 200): string {
  const plain = text
    .replace(/<(script|style)[\s\S]*?<\/\1>/gi, ' ')
    .replace(/<[^>]*>/g, ' ')
    .replace(/\s+/g, ' ')
    .trim();
  return plain.length > max ? `${plain.slice(0, max)}…` : plain;
}

/**
 * Turn a non-2xx response into an `HttpStatusError` with the status, the server's `error_code` /
 * `message` when the body has them (JSON `{error_code, message}`; also `{error: {code, message}}`
 * and `{error: "..."}`/`{message: "..."}` shapes), and `retryAfterMs` from `Retry-After` (seconds
 * or HTTP date). `what` says what was attempted, e.g. `'log-batch'`.
 */
export function httpError(backend: string, what: string, res: HttpResponse): HttpStatusError {
  const redact = (res as unknown as Record<symbol, Redactor | undefined>)[kRedact] ?? identity;
  const body = res.body;
  let code: string | undefined;
  let serverMessage: string | undefined;
  if (body && typeof body === 'object' && !Array.isArray(body)) {
    const b = body as Record<string, unknown>;
    if (typeof b.error_code === 'string') code = b.error_code;
    if (typeof b.message === 'string') serverMessage = b.message;
    const e = b.error;
    if (e && typeof e === 'object') {
      const eo = e as Record<string, unknown>;
      if (code === undefined && typeof eo.code === 'string') code = eo.code;
      if (serverMessage === undefined && typeof eo.message === 'string') serverMessage = eo.message;
    } else if (typeof e === 'string' && serverMessage === undefined) {
      serverMessage = e;
    }
  }
  const retryAfterMs = parseRetryAfter(res.headers['retry-after']);
  let detail: string;
  if (code !== undefined || serverMessage !== undefined) {
    detail = [code, serverMessage !== undefined ? redact(serverMessage) : undefined].filter((x) => x !== undefined).join(': ');
  } else if (typeof body === 'string') {
    detail = redact(snippet(body));
  } else {
    detail = '';
  }
  const message = `${what} failed: HTTP ${res.status}${detail ? ` ${detail}` : ''}${retryAfterMs !== undefined ? ` (retry after ${retryAfterMs} ms)` : ''}`;
  return new HttpStatusError(backend, message, {
    status: res.status,
    code,
    retryAfterMs,
    body,
    serverMessage: serverMessage !== undefined ? redact(serverMessage) : undefined,
  });
}

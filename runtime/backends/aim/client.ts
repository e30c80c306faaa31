/**
 * Client of Aim 3.x's remote tracking server (`aim server`, `aim://host:port`), the protocol of
 * `aim/ext/transport/client.py`:
 *
 * - `GET /status/` probe (http, then https; it must answer `{"status": "OK"}`, or this is not an
 *   Aim tracking server), `GET /client/get-version/` and a compatibility check,
 *   `GET /client/connect/<uri>/`, a client heartbeat every 10 s (`/client/heartbeat/<uri>/`; the
 *   server releases a silent client's resources after 5 minutes) and `/client/disconnect/<uri>/`.
 * - A `Repo` resource held from connect to close, as Aim's SDK holds its `RemoteRepoProxy`: the
 *   server pools repos in a WeakValueDictionary (`Repo.from_path`) and a run `Lock` only weakly
 *   references the repo's LockManager, so with no live `Repo` resource the repo is collected and
 *   `lock()` fails with `AttributeError: 'NoneType' object has no attribute 'lock'`.
 * - Resources: `POST /tracking/<uri>/get-resource/` with `args` = base64 of the packed, encoded
 *   kwargs; `GET /tracking/<uri>/release-resource/<handler>/`.
 * - Reads: `POST /tracking/<uri>/read-instruction/` → packed, encoded result.
 * - Writes: one WebSocket `/tracking/<uri>/write-instruction/`; each binary message is a packed,
 *   encoded list of `(handler, method, args)`; the server answers `OK` or a packed exception. The
 *   server decodes and applies a message synchronously in its event loop before answering, so a
 *   late answer means "busy", not "gone": the wait ends on the answer or on the socket closing (a
 *   real disconnect: server killed, its 1011 keepalive timeout, a reset), with only a hard cap
 *   (`ackTimeoutMs`) for a host that vanished without closing TCP. undici's WebSocket answers the
 *   server's pings but cannot send its own.
 * - Reconnect (after a dropped connection, a server restart, or `UnauthorizedRequestError`: the
 *   server dropped this client's resources, e.g. its HeartbeatWatcher after a 5-minute gap):
 *   `/client/reconnect/<uri>/` (bookkeeping only on the server), then every live resource is
 *   re-created under its old handler with its original kwargs, in creation order (the `Repo`
 *   first, as Aim's SDK does; the server accepts a client-chosen handler and replaces a live one),
 *   then a new WebSocket.
 *
 * Compatibility rule (the protocol is not a public API): the server must answer get-version (Aim
 * ≥ 3.19) with a 3.x version. A 3.x newer than the version this client was written against
 * (`AIM_PROTOCOL_VERSION`) is accepted with a warning; Aim's own client refuses a newer server,
 * but the resources and methods trackspec uses have not changed through the 3.x line.
 *
 * Transport failures surface as `HttpTransportError` (retryable by `withRetry`); server-side
 * exceptions as `AimServerError` (not retryable), except `UnauthorizedRequestError` on a write,
 * which is an `HttpTransportError` (code `ERESOURCELOST`): the retry reconnects and re-sends.
 */
import { randomUUID } from 'node:crypto';
import { BackendError } from '../../core/errors.js';
import { HttpClient, HttpTransportError, type HttpResponse } from '../../io/http.js';
import { lazy } from '../../io/lazy.js';
import { packTree, unpackTree } from './encoding.js';

export const AIM_PROTOCOL_VERSION = '3.29.1';
const BACKEND = 'aim';
const loadUndici = lazy<typeof import('undici')>('undici');

/** An exception raised by the Aim server (`{module_name, class_name, args, message}`). */
export class AimServerError extends BackendError {
  readonly moduleName: string;
  readonly className: string;
  readonly serverMessage: string;
  constructor(what: string, exc: { module_name?: unknown; class_name?: unknown; args?: unknown; message?: unknown }) {
    const moduleName = typeof exc.module_name === 'string' ? exc.module_name : '?';
    const className = typeof exc.class_name === 'string' ? exc.class_name : 'Exception';
    const message = typeof exc.message === 'string' ? exc.message : typeof exc.args === 'string' ? exc.args : '';
    super(BACKEND, `${what}: the server raised ${moduleName === 'builtins' ? '' : `${moduleName}.`}${className}${message ? `: ${message}` : ''}`);
    this.moduleName = moduleName;
    this.className = className;
    this.serverMessage = message;
  }
}

/** Kwargs/args as Aim's client sends them: `base64(pack_args(encode_tree(value)))` (dicts marked only when empty). */
function b64Args(value: unknown): string {
  const bytes = packTree([], value, { objectMarkers: 'empty' });
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64');
}

interface Resource {
  type: string;
  kwargs: Record<string, unknown>;
  /** Called after the resource was re-created on reconnect (e.g. re-take a lock). */
  onReinit?: () => Promise<void>;
}

export interface AimClientOptions {
  heartbeatMs?: number;
  /** Per HTTP request (and the WebSocket handshake, at most 10 s). Default 30 s. */
  timeoutMs?: number;
  /**
   * Longest wait for a write's answer while its WebSocket stays open (a host that vanished without
   * closing the connection). Default 300 s. A busy server is waited for; see the header.
   */
  ackTimeoutMs?: number;
  /** A write not answered after this long is warned about once per client. Default 30 s. */
  slowAckMs?: number;
  warn?: (message: string) => void;
}

/** Is this the server's `UnauthorizedRequestError` (the handler is not one of this client's live resources)? */
function isResourceLost(e: unknown): e is AimServerError {
  return e instanceof AimServerError && e.moduleName === 'aim.ext.transport.tracking' && e.className === 'UnauthorizedRequestError';
}

/** Compare dotted versions numerically: <0, 0, >0. */
export function compareVersions(a: string, b: string): number {
  const pa = a.split('.').map((x) => parseInt(x, 10) || 0);
  const pb = b.split('.').map((x) => parseInt(x, 10) || 0);
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const d = (pa[i] ?? 0) - (pb[i] ?? 0);
    if (d !== 0) return d;
  }
  return 0;
}

/** One WebSocket with at most one message awaiting its answer. */
class WriteSocket {
  #ws: InstanceType<typeof import('undici').WebSocket>;
  #open: Promise<void>;
  #waiting: { resolve: (b: Uint8Array) => void; reject: (e: unknown) => void } | undefined;
  #closed: Error | undefined;
  readonly url: string;

  constructor(url: string, timeoutMs: number) {
    this.url = url;
    const { WebSocket } = loadUndici();
    this.#ws = new WebSocket(url);
    this.#ws.binaryType = 'arraybuffer';
    this.#open = new Promise((resolve, reject) => {
      const handshakeMs = Math.min(timeoutMs, 10_000);
      const t = setTimeout(() => {
        reject(this.#fail(`no WebSocket handshake within ${handshakeMs} ms`, 'ETIMEDOUT'));
        this.close();
      }, handshakeMs);
      this.#ws.onopen = () => {
        clearTimeout(t);
        resolve();
      };
      this.#ws.onerror = () => undefined; // onclose follows with the details
      this.#ws.onclose = (ev) => {
        clearTimeout(t);
        const err = this.#fail(`WebSocket closed (code ${ev.code}${ev.reason ? `, ${ev.reason}` : ''})`, 'EWSCLOSED');
        this.#closed = err;
        reject(err);
        const w = this.#waiting;
        this.#waiting = undefined;
        w?.reject(err);
      };
    });
    this.#open.catch(() => undefined);
    this.#ws.onmessage = (ev) => {
      const w = this.#waiting;
      this.#waiting = undefined;
      const data = ev.data as ArrayBuffer | string;
      w?.resolve(typeof data === 'string' ? new TextEncoder().encode(data) : new Uint8Array(data));
    };
  }

  #fail(message: string, code: string): HttpTransportError {
    return new HttpTransportError(BACKEND, `${this.url}: ${message}`, code, `WS ${this.url}`);
  }

  get closed(): boolean {
    return this.#closed !== undefined;
  }

  /**
   * Send one message and wait for its answer: until it comes, until the socket closes, or at most
   * `ackTimeoutMs` (see the client's header). `onSlow` is called once if the answer takes longer
   * than `slowMs`.
   */
  async send(message: Uint8Array, ackTimeoutMs: number, slowMs: number, onSlow: () => void): Promise<Uint8Array> {
    await this.#open;
    if (this.#closed) throw this.#closed;
    if (this.#waiting) throw new BackendError(BACKEND, 'internal: a write is already awaiting its answer');
    return new Promise<Uint8Array>((resolve, reject) => {
      const slow = slowMs < ackTimeoutMs ? setTimeout(onSlow, slowMs) : undefined;
      const t = setTimeout(() => {
        this.#waiting = undefined;
        clearTimeout(slow);
        reject(this.#fail(`no answer to a write within ${ackTimeoutMs} ms while the connection stayed open`, 'ETIMEDOUT'));
        this.close();
      }, ackTimeoutMs);
      this.#waiting = {
        resolve: (b) => {
          clearTimeout(t);
          clearTimeout(slow);
          resolve(b);
        },
        reject: (e) => {
          clearTimeout(t);
          clearTimeout(slow);
          reject(e);
        },
      };
      this.#ws.send(message);
    });
  }

  close(): void {
    try {
      this.#ws.close();
    } catch {
      // already closing
    }
  }
}

export class AimClient {
  /** The client uri (a uuid4, as Aim's client). */
  readonly uri = randomUUID();
  /** `host:port` (no scheme). */
  readonly address: string;
  #http: HttpClient;
  #secure: boolean;
  #ws: WriteSocket | undefined;
  #resources = new Map<string, Resource>();
  #heartbeat: NodeJS.Timeout | undefined;
  #timeoutMs: number;
  #ackTimeoutMs = 300_000;
  #slowAckMs = 30_000;
  #warn: ((m: string) => void) | undefined;
  #warnedSlow = false;
  #reconnecting = false;
  #closed = false;
  serverVersion = '';
  /** The `Repo` resource held from open() to close() (see the header). */
  repoHandler = '';
  heartbeatsSent = 0;
  heartbeatsFailed = 0;

  private constructor(address: string, http: HttpClient, secure: boolean, timeoutMs: number) {
    this.address = address;
    this.#http = http;
    this.#secure = secure;
    this.#timeoutMs = timeoutMs;
  }

  get httpUrl(): string {
    return `${this.#secure ? 'https' : 'http'}://${this.address}`;
  }

  /** Probe, check the version, connect, start the heartbeat. */
  static async open(address: string, options: AimClientOptions = {}): Promise<AimClient> {
    const timeoutMs = options.timeoutMs ?? 30_000;
    let http = new HttpClient({ baseUrl: `http://${address}`, backend: BACKEND, timeoutMs });
    let secure = false;
    let status: HttpResponse;
    try {
      status = await http.request('GET', '/status/');
    } catch (e) {
      // Aim's client falls back to https when plain http does not answer.
      const https = new HttpClient({ baseUrl: `https://${address}`, backend: BACKEND, timeoutMs });
      try {
        status = await https.request('GET', '/status/');
        await http.close();
        http = https;
        secure = true;
      } catch {
        await https.close();
        await http.close();
        throw e;
      }
    }
    const client = new AimClient(address, http, secure, timeoutMs);
    client.#ackTimeoutMs = options.ackTimeoutMs ?? 300_000;
    client.#slowAckMs = options.slowAckMs ?? 30_000;
    client.#warn = options.warn;
    try {
      client.#checkStatus(status);
      await client.#checkVersion(options.warn);
      await client.#get(`/client/connect/${client.uri}/`);
      client.repoHandler = await client.getResource('Repo', {});
    } catch (e) {
      await http.close();
      throw e;
    }
    client.#startHeartbeat(options.heartbeatMs ?? 10_000);
    return client;
  }

  /** Every Aim 3.x server answers `GET /status/` with `{"status": "OK"}`; anything else is not one (fail fast, no retry). */
  #checkStatus(res: HttpResponse): void {
    const body = res.body as { status?: unknown } | undefined;
    if (res.status === 200 && body && typeof body === 'object' && body.status === 'OK') return;
    if (res.status >= 500 || res.status === 429) throw this.#statusError('GET /status/', res); // transient: retried
    const got = (typeof res.body === 'string' ? res.body : JSON.stringify(res.body ?? '')).replace(/\s+/g, ' ').trim();
    throw new BackendError(
      BACKEND,
      `${this.httpUrl} is not an Aim tracking server: GET /status/ answered HTTP ${res.status} ${got.length > 80 ? `${got.slice(0, 80)}…` : got} instead of {"status": "OK"}. ` +
        `logging_dir must be the address of \`aim server\` (Aim 3.x remote tracking, default port 53800), not of \`aim up\` (the UI) or another service.`,
      { status: res.status },
    );
  }

  async #checkVersion(warn: ((m: string) => void) | undefined): Promise<void> {
    const res = await this.#http.request<{ version?: unknown }>('GET', '/client/get-version/');
    if (res.status === 404) {
      throw new BackendError(BACKEND, `the Aim server at ${this.httpUrl} is older than 3.19 (no /client/get-version/); trackspec speaks the Aim ${AIM_PROTOCOL_VERSION} remote-tracking protocol: upgrade the server (pip install 'aim>=3.19,<4')`);
    }
    const version = res.status === 200 && typeof res.body?.version === 'string' ? res.body.version : undefined;
    if (version === undefined) throw new BackendError(BACKEND, `${this.httpUrl}/client/get-version/ answered ${res.status} without a version: is this an Aim tracking server (\`aim server\`)?`);
    this.serverVersion = version;
    const major = parseInt(version, 10);
    if (major !== 3) {
      throw new BackendError(BACKEND, `the Aim server at ${this.httpUrl} is version ${version}; trackspec speaks Aim 3.x's remote-tracking protocol (written against ${AIM_PROTOCOL_VERSION}), which Aim ${major}.x does not serve: run an Aim 3.x server (pip install 'aim>=3.19,<4')`);
    }
    if (compareVersions(version, '3.19.0') < 0) {
      throw new BackendError(BACKEND, `the Aim server at ${this.httpUrl} is version ${version}; trackspec needs Aim 3.19 or newer: upgrade the server`);
    }
    if (compareVersions(version, AIM_PROTOCOL_VERSION) > 0) {
      warn?.(`aim: the server at ${this.httpUrl} is Aim ${version}, newer than the ${AIM_PROTOCOL_VERSION} protocol trackspec was written against; continuing (the remote-tracking protocol is not a public API)`);
    }
  }

  async #get(path: string): Promise<HttpResponse> {
    const res = await this.#http.request('GET', path);
    if (res.status !== 200) throw this.#statusError(`GET ${path}`, res);
    return res;
  }

  #statusError(what: string, res: HttpResponse): BackendError {
    const body = res.body as { exception?: unknown; message?: unknown; detail?: unknown } | undefined;
    if (body && typeof body === 'object' && body.exception && typeof body.exception === 'object') {
      return new AimServerError(what, body.exception as Record<string, unknown>);
    }
    if (res.status >= 500 || res.status === 429) {
      // let withRetry retry it like any other transient server failure
      return new HttpTransportError(BACKEND, `${what}: HTTP ${res.status}`, `HTTP${res.status}`, what);
    }
    const detail = body && typeof body === 'object' ? JSON.stringify(body) : String(res.body ?? '');
    return new BackendError(BACKEND, `${what}: HTTP ${res.status}${detail ? ` ${detail.slice(0, 300)}` : ''}`, { status: res.status });
  }

  #startHeartbeat(ms: number): void {
    const beat = (): void => {
      this.heartbeatsSent++;
      this.#http.request('GET', `/client/heartbeat/${this.uri}/`).then(
        (r) => {
          if (r.status !== 200) this.heartbeatsFailed++;
        },
        () => {
          this.heartbeatsFailed++;
        },
      );
    };
    beat(); // as Aim: one at once, then periodically
    this.#heartbeat = setInterval(beat, ms);
    this.#heartbeat.unref();
  }

  /** Create a resource (or re-create one under `handler`). Returns its handler. */
  async getResource(type: string, kwargs: Record<string, unknown>, options: { handler?: string; onReinit?: () => Promise<void> } = {}): Promise<string> {
    const res = await this.#http.request<{ handler?: unknown }>('POST', `/tracking/${this.uri}/get-resource/`, {
      json: { resource_handler: options.handler ?? '', resource_type: type, args: b64Args(kwargs) },
    });
    if (res.status !== 200) throw this.#statusError(`get-resource ${type}`, res);
    const handler = res.body?.handler;
    if (typeof handler !== 'string' || handler.length === 0) throw new BackendError(BACKEND, `get-resource ${type} answered without a handler`);
    this.#resources.set(handler, { type, kwargs, onReinit: options.onReinit });
    return handler;
  }

  /**
   * Run a read instruction (waits for its answer). If the server no longer knows the resource
   * (`UnauthorizedRequestError`: it dropped this client's resources) while this client holds it,
   * reconnect (re-creating every resource) and run it once more.
   */
  async read(handler: string, method: string, args: readonly unknown[] = []): Promise<unknown> {
    try {
      return await this.#read(handler, method, args);
    } catch (e) {
      if (!isResourceLost(e) || this.#reconnecting || !this.#resources.has(handler)) throw e;
      this.#warn?.(`aim: the server at ${this.httpUrl} no longer knows this client's resources (dropped after a heartbeat gap?); re-creating them`);
      await this.reconnect();
      return this.#read(handler, method, args);
    }
  }

  async #read(handler: string, method: string, args: readonly unknown[]): Promise<unknown> {
    const res = await this.#http.request<Buffer>('POST', `/tracking/${this.uri}/read-instruction/`, {
      json: { resource_handler: handler, method_name: method, args: b64Args(args) },
      bytes: true,
    });
    if (res.status !== 200) throw this.#statusError(`${method}()`, res);
    return res.body.length === 0 ? null : unpackTree(res.body);
  }

  /** Send one packed write-instruction message; resolves on the server's `OK`. */
  async write(message: Uint8Array): Promise<void> {
    if (this.#closed) throw new HttpTransportError(BACKEND, 'aim client is closed', 'ECLOSED', 'WS write', undefined, false);
    this.#ws ??= this.#openSocket();
    const ws = this.#ws;
    let answer: Uint8Array;
    try {
      answer = await ws.send(message, this.#ackTimeoutMs, this.#slowAckMs, () => {
        if (this.#warnedSlow) return;
        this.#warnedSlow = true;
        this.#warn?.(`aim: the server at ${this.httpUrl} has not answered a ${message.length}-byte write for ${(this.#slowAckMs / 1000).toFixed(1)} s (still applying it, or busy with another client); waiting while the connection stays open`);
      });
    } catch (e) {
      if (this.#ws === ws) this.#ws = undefined;
      ws.close();
      throw e;
    }
    if (answer.length === 2 && answer[0] === 0x4f && answer[1] === 0x4b) return;
    // An exception: Aim's server closes the socket after sending it.
    if (this.#ws === ws) this.#ws = undefined;
    ws.close();
    let exc: Record<string, unknown> = {};
    try {
      exc = (unpackTree(answer) ?? {}) as Record<string, unknown>;
    } catch {
      exc = { class_name: 'undecodable answer', message: Buffer.from(answer).toString('latin1').slice(0, 200) };
    }
    const error = new AimServerError('write instructions', exc);
    if (isResourceLost(error)) {
      // Our resources are gone while the server lives: retryable. The caller reconnects (which
      // re-creates them) and re-sends the message; its instructions before the failing one were
      // applied, and applying them again, in order, leaves the same data.
      throw new HttpTransportError(BACKEND, `the server no longer knows resource ${error.serverMessage} of this client (dropped after a heartbeat gap?); re-creating the resources`, 'ERESOURCELOST', 'WS write');
    }
    throw error;
  }

  /** The write-instruction WebSocket URL of this client. */
  get wsUrl(): string {
    return `${this.#secure ? 'wss' : 'ws'}://${this.address}/tracking/${this.uri}/write-instruction/`;
  }

  /** The HTTP calls that close this client's run at exit (best effort, made by a child process). */
  closingCalls(reads: { handler: string; method: string; args: unknown[] }[], release: string[]): { method: 'GET' | 'POST'; url: string; body?: unknown }[] {
    const base = `${this.httpUrl}/tracking/${this.uri}`;
    return [
      ...reads.map((r) => ({ method: 'POST' as const, url: `${base}/read-instruction/`, body: { resource_handler: r.handler, method_name: r.method, args: b64Args(r.args) } })),
      ...[...release, ...(this.repoHandler ? [this.repoHandler] : [])].map((h) => ({ method: 'GET' as const, url: `${base}/release-resource/${h}/` })),
      { method: 'GET' as const, url: `${this.httpUrl}/client/disconnect/${this.uri}/` },
    ];
  }

  #openSocket(): WriteSocket {
    return new WriteSocket(this.wsUrl, this.#timeoutMs);
  }

  /**
   * After a failure: tell the server we are back, re-create every live resource under its handler
   * (a restarted server lost them), and use a fresh WebSocket for the next write.
   */
  async reconnect(): Promise<void> {
    this.#ws?.close();
    this.#ws = undefined;
    this.#reconnecting = true;
    try {
      await this.#get(`/client/reconnect/${this.uri}/`);
      // creation order: the Repo first, so the run Lock binds to a live repo
      for (const [handler, r] of [...this.#resources]) {
        await this.getResource(r.type, r.kwargs, { handler, onReinit: r.onReinit });
        await r.onReinit?.();
      }
    } finally {
      this.#reconnecting = false;
    }
  }

  /** Run `fn` after the resource `handler` was re-created by `reconnect()`. */
  setReinit(handler: string, fn: () => Promise<void>): void {
    const r = this.#resources.get(handler);
    if (r) r.onReinit = fn;
  }

  /** Release a resource; one the server already dropped (`UnauthorizedRequestError`) counts as released. */
  async release(handler: string): Promise<void> {
    const res = await this.#http.request('GET', `/tracking/${this.uri}/release-resource/${handler}/`);
    this.#resources.delete(handler);
    if (res.status === 200) return;
    const e = this.#statusError('release-resource', res);
    if (!isResourceLost(e)) throw e;
  }

  /** Release every resource this client still holds (best effort). */
  async releaseAll(): Promise<void> {
    for (const handler of [...this.#resources.keys()].reverse()) await this.release(handler).catch(() => undefined);
  }

  /** Stop the heartbeat, close the WebSocket, release the Repo, disconnect. Idempotent. */
  async close(options: { disconnect?: boolean } = {}): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#heartbeat) clearInterval(this.#heartbeat);
    this.#ws?.close();
    this.#ws = undefined;
    try {
      if (options.disconnect !== false) {
        if (this.#resources.has(this.repoHandler)) await this.release(this.repoHandler);
        await this.#get(`/client/disconnect/${this.uri}/`);
      }
    } finally {
      await this.#http.close();
    }
  }
}

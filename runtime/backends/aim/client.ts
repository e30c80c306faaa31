/**
 * Client of Aim 3.x's remote tracking server (`aim server`, `aim://host:port`), the protocol of
 * `aim/ext/transport/client.py`:
 *
 * - `GET /status/` probe (http, then https), `GET /client/get-version/` and a compatibility check,
 *   `GET /client/connect/<uri>/`, a client heartbeat every 10 s (`/client/heartbeat/<uri>/`; the
 *   server releases a silent client's resources after 5 minutes) and `/client/disconnect/<uri>/`.
 * - Resources: `POST /tracking/<uri>/get-resource/` with `args` = base64 of the packed, encoded
 *   kwargs; `GET /tracking/<uri>/release-resource/<handler>/`.
 * - Reads: `POST /tracking/<uri>/read-instruction/` → packed, encoded result.
 * - Writes: one WebSocket `/tracking/<uri>/write-instruction/`; each binary message is a packed,
 *   encoded list of `(handler, method, args)`; the server answers `OK` or a packed exception.
 * - Reconnect (after a dropped connection or a server restart): `/client/reconnect/<uri>/`, then
 *   every live resource is re-created under its old handler with its original kwargs (the server
 *   accepts a client-chosen handler), then a new WebSocket.
 *
 * Compatibility rule (the protocol is not a public API): the server must answer get-version (Aim
 * ≥ 3.19) with a 3.x version. A 3.x newer than the version this client was written against
 * (`AIM_PROTOCOL_VERSION`) is accepted with a warning; Aim's own client refuses a newer server,
 * but the resources and methods trackspec uses have not changed through the 3.x line.
 *
 * Transport failures surface as `HttpTransportError` (retryable by `withRetry`); server-side
 * exceptions as `AimServerError` (not retryable).
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
  /** Per HTTP request and per WebSocket answer. Default 30 s. */
  timeoutMs?: number;
  warn?: (message: string) => void;
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

  async send(message: Uint8Array, timeoutMs: number): Promise<Uint8Array> {
    await this.#open;
    if (this.#closed) throw this.#closed;
    if (this.#waiting) throw new BackendError(BACKEND, 'internal: a write is already awaiting its answer');
    return new Promise<Uint8Array>((resolve, reject) => {
      const t = setTimeout(() => {
        this.#waiting = undefined;
        reject(this.#fail(`no answer to a write within ${timeoutMs} ms`, 'ETIMEDOUT'));
        this.close();
      }, timeoutMs);
      this.#waiting = {
        resolve: (b) => {
          clearTimeout(t);
          resolve(b);
        },
        reject: (e) => {
          clearTimeout(t);
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
  #closed = false;
  serverVersion = '';
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
    try {
      await http.request('GET', '/status/');
    } catch (e) {
      // Aim's client falls back to https when plain http does not answer.
      const https = new HttpClient({ baseUrl: `https://${address}`, backend: BACKEND, timeoutMs });
      try {
        const r = await https.request('GET', '/status/');
        if (r.status !== 200) throw e;
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
    try {
      await client.#checkVersion(options.warn);
      await client.#get(`/client/connect/${client.uri}/`);
    } catch (e) {
      await http.close();
      throw e;
    }
    client.#startHeartbeat(options.heartbeatMs ?? 10_000);
    return client;
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

  /** Run a read instruction (waits for its answer). */
  async read(handler: string, method: string, args: readonly unknown[] = []): Promise<unknown> {
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
      answer = await ws.send(message, this.#timeoutMs);
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
    throw new AimServerError('write instructions', exc);
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
      ...release.map((h) => ({ method: 'GET' as const, url: `${base}/release-resource/${h}/` })),
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
    await this.#get(`/client/reconnect/${this.uri}/`);
    for (const [handler, r] of [...this.#resources]) {
      await this.getResource(r.type, r.kwargs, { handler, onReinit: r.onReinit });
      await r.onReinit?.();
    }
  }

  /** Run `fn` after the resource `handler` was re-created by `reconnect()`. */
  setReinit(handler: string, fn: () => Promise<void>): void {
    const r = this.#resources.get(handler);
    if (r) r.onReinit = fn;
  }

  async release(handler: string): Promise<void> {
    const res = await this.#http.request('GET', `/tracking/${this.uri}/release-resource/${handler}/`);
    this.#resources.delete(handler);
    if (res.status !== 200) throw this.#statusError('release-resource', res);
  }

  /** Release every resource this client still holds (best effort). */
  async releaseAll(): Promise<void> {
    for (const handler of [...this.#resources.keys()].reverse()) await this.release(handler).catch(() => undefined);
  }

  /** Stop the heartbeat, close the WebSocket, disconnect. Idempotent; never throws on transport errors. */
  async close(options: { disconnect?: boolean } = {}): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#heartbeat) clearInterval(this.#heartbeat);
    this.#ws?.close();
    this.#ws = undefined;
    try {
      if (options.disconnect !== false) await this.#get(`/client/disconnect/${this.uri}/`);
    } finally {
      await this.#http.close();
    }
  }
}

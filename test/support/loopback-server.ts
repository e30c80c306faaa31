// What the local test servers (MLflow, Comet, W&B) share: recorded requests, fault injection and
// listening on 127.0.0.1.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { pathToFileURL } from 'node:url';

export interface RecordedRequest {
  method: string;
  path: string;
  query: Record<string, string | string[]>;
  headers: Record<string, string | string[] | undefined>;
  /** Parsed JSON when the body is JSON, else the raw text ('' when empty). */
  body: unknown;
  /** HTTP status answered; 0 when the connection was dropped (refuse/reset faults). */
  status: number;
  at: number;
}

export interface Fault {
  /**
   * - `refuse`: close the socket without answering (client: "socket hang up" / ECONNRESET / UND_ERR_SOCKET).
   * - `reset`: send a TCP RST before processing (client: ECONNRESET).
   * - `status`: answer `status` with the server's JSON error body, without processing.
   * - `delay`: wait `ms`, then process normally.
   * Faults never modify the stored data (the request is not processed), except `delay`.
   */
  kind: 'refuse' | 'reset' | 'status' | 'delay';
  /** Substring of, or RegExp tested against, the request path (without query). Default: every request. */
  path?: string | RegExp;
  status?: number;
  retryAfter?: string;
  ms?: number;
  /** How many matching requests the fault applies to. Default 1; Infinity = until cleared. */
  times?: number;
}

/** Injected faults, consumed by the requests they match. */
export class FaultList {
  #faults: (Fault & { left: number })[] = [];

  inject(fault: Fault): void {
    this.#faults.push({ ...fault, left: fault.times ?? 1 });
  }

  clear(): void {
    this.#faults = [];
  }

  /**
   * Apply the first fault matching `path` to a request. Returns true when the request was consumed
   * (socket dropped or reset, or answered through `answer(status, headers)`); false to process it
   * normally (no fault, or after a delay).
   */
  async apply(path: string, req: IncomingMessage, answer: (status: number, headers: Record<string, string>) => void): Promise<boolean> {
    const fault = this.take(path);
    if (!fault) return false;
    if (fault.kind === 'refuse') {
      req.socket.destroy();
      return true;
    }
    if (fault.kind === 'reset') {
      req.socket.resetAndDestroy();
      return true;
    }
    if (fault.kind === 'status') {
      answer(fault.status ?? 503, fault.retryAfter !== undefined ? { 'Retry-After': fault.retryAfter } : {});
      return true;
    }
    await new Promise((r) => setTimeout(r, fault.ms ?? 0));
    return req.socket.destroyed;
  }

  /** The first fault matching `path` (one use of it is consumed), or undefined. */
  take(path: string): Fault | undefined {
    for (const f of this.#faults) {
      const match = f.path === undefined ? true : typeof f.path === 'string' ? path.includes(f.path) : f.path.test(path);
      if (!match) continue;
      f.left--;
      this.#faults = this.#faults.filter((x) => x.left > 0);
      return f;
    }
    return undefined;
  }
}

/** Listen on 127.0.0.1 (port 0 = any free port); resolves with the port. */
export function listenLoopback(srv: Server, port: number): Promise<number> {
  return new Promise<number>((resolve, reject) => {
    srv.once('error', reject);
    srv.listen(port, '127.0.0.1', () => {
      srv.off('error', reject);
      resolve((srv.address() as AddressInfo).port);
    });
  });
}

/** Close a server and every open connection (so clients see the server go away at once). */
export function closeServer(srv: Server): Promise<void> {
  return new Promise<void>((resolve) => {
    srv.close(() => resolve());
    srv.closeAllConnections();
  });
}

/**
 * Standalone use of a test server (`node --import tsx test/<backend>/server.ts --port N ...`): when
 * `moduleUrl` is the entry script, start the server with the command line's `--name value` options
 * (`opt`) and bare flags (`flag`), print `banner`, and stop it on SIGINT/SIGTERM.
 */
export async function runStandalone<S>(
  moduleUrl: string,
  start: (opt: (name: string) => string | undefined, flag: (name: string) => boolean) => Promise<S>,
  banner: (server: S) => string,
  stop: (server: S) => Promise<void>,
): Promise<void> {
  if (process.argv[1] === undefined || moduleUrl !== pathToFileURL(process.argv[1]).href) return;
  const args = process.argv.slice(2);
  const opt = (name: string): string | undefined => {
    const i = args.indexOf(name);
    return i >= 0 ? args[i + 1] : undefined;
  };
  const server = await start(opt, (name) => args.includes(name));
  console.log(banner(server));
  const shutdown = (): void => {
    void stop(server).then(() => process.exit(0));
  };
  process.on('SIGINT', shutdown);
  process.on('SIGTERM', shutdown);
}

/**
 * What the HTTP test servers (MLflow, Comet, W&B) share: one loopback listener, injected faults,
 * stop / restart (optionally wiping the stored state) / close. Subclasses handle requests.
 */
export abstract class LoopbackTestServer {
  protected readonly faults = new FaultList();
  protected port = 0;
  #server: Server | undefined;

  /** Handle one request (fault injection included). */
  protected abstract handle(req: IncomingMessage, res: ServerResponse): Promise<void>;
  /** Answer a request whose handler threw, in the backend's own 500 form. */
  protected abstract internalError(res: ServerResponse): void;
  /** Forget everything stored (`restart({ wipe: true })`). */
  protected abstract wipe(): void;

  /** http://127.0.0.1:PORT (what the client's base URL / tracking URI is set to). */
  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  protected async listen(): Promise<void> {
    const srv = createServer((req, res) => {
      this.handle(req, res).catch(() => {
        if (!res.headersSent) this.internalError(res);
      });
    });
    this.port = await listenLoopback(srv, this.port);
    this.#server = srv;
  }

  inject(fault: Fault): void {
    this.faults.inject(fault);
  }

  clearFaults(): void {
    this.faults.clear();
  }

  async stop(): Promise<void> {
    const srv = this.#server;
    if (!srv) return;
    this.#server = undefined;
    await closeServer(srv);
  }

  /** Stop and listen again on the same port; `wipe` forgets the stored state; `downForMs` refuses connections meanwhile. */
  async restart(options: { wipe?: boolean; downForMs?: number } = {}): Promise<void> {
    await this.stop();
    if (options.downForMs) await new Promise((r) => setTimeout(r, options.downForMs));
    if (options.wipe) this.wipe();
    await this.listen();
  }

  async close(): Promise<void> {
    this.clearFaults();
    await this.stop();
  }
}

// A local Aim 3.29.1 remote-tracking server (`aim server`, aim/ext/transport/*.py): the HTTP JSON endpoints
// and the write-instruction WebSocket, backed by in-memory containers. Loopback only.
//
// Standalone: node --import tsx test/backends/aim/server.ts [--port 53800] [--version 3.29.1] [--keep-alive-ms 300000]
//   [--apply-cost MS_PER_RECORD_BYTE] (e.g. 1.7e-7, REAL_APPLY_COST)
//
// Behaviour (as Aim unless said otherwise):
// - every HTTP route also answers without its trailing slash; unknown paths 404 and wrong methods 405 with
//   FastAPI's `{"detail": ...}`. Injected HTTP faults (`faults`) apply before routing, to WS upgrades too
//   (a `status` fault answers the upgrade with that status); their body is `{"detail": "Injected fault: HTTP <n>"}`.
// - errors are Python exceptions `{module_name, class_name, args, message}`: `args` = `json.dumps(exc.args)`
//   (", " separators, ASCII-escaped), `message` = `str(exc)` — for a KeyError that is the repr of its argument,
//   e.g. `"No key ['x'] is present."` with the quotes. Over HTTP they come as 400 `{"exception": {...}}`; over the
//   WebSocket as a packed tree, after which the socket is closed (close code 1000; Aim's handler just returns).
//   Instructions of a message before the failing one stay applied (no rollback, as Aim).
// - get-resource: `args` must be a string (Aim calls len() on it: null → TypeError); '' → no kwargs. Missing
//   kwargs raise what Aim's handler raises: KeyError('name') for TreeView/Lock (kwargs[...]), TypeError
//   "missing ... positional argument" for StructuredRun/RunHeartbeat, TypeError for any kwarg given to Repo.
//   A failing get-resource drops the handler from the pool (Aim's cleanup), even if it existed before.
//   Re-using a live handler replaces (and finalizes) the old resource.
// - decoded args keep Python types: floats come back as `AimFloat`, blob entries as `AimBlob`, resource
//   references as `AimCustomObject('aim.resource')` — also in `messages` and `resources()[].kwargs`.
//   Stored values keep the float/int distinction and blob flags: `entries()` gives each entry's raw value
//   `bytes` (bytes[0] = type byte) and `isBlob`; `tree()` and `entries()[].value` are plain JS values.
// - TreeView read methods: collect (strict/resolve_objects ignored), first_key/last_key (bare KeyError when
//   nothing is under the path; the path's own marker entry does not count), keys_eager, items_eager, preload.
//   Writes: __setitem__/set (delete the range, store encode_tree(value) with object markers only for empty
//   dicts), make_array, __delitem__, update, finalize(index) (copies every entry into the index container).
//   A path that is a single str/int means `(path,)`. Read-only TreeViews are not write-protected.
//   Containers are keyed (name, sub); `index=true` gives (name, '__index__').
// - StructuredRun: created (name/experiment/description null, archived false, tags []) unless it exists;
//   read_only on a missing run → aim.sdk.errors.RepoIntegrityError. `creation_time` is answered as a float,
//   `end_time` as None. add_tag ignores duplicates; remove_tag answers whether it removed one.
// - Repo lifetime (aim/sdk/repo.py:108 pools repos in a WeakValueDictionary; lock_manager.py:55-62 the run
//   lock holds only a weakref to the repo's LockManager): only `Repo` resources keep the repo object alive.
//   The repo lives while at least one Repo resource (of any client) does; when the last is released a later
//   one builds a new repo. A Lock resource binds to the repo live when it is created; `lock()` raises
//   `AttributeError: 'NoneType' object has no attribute 'lock'` if that repo is gone (or there was none:
//   get_lock built a throwaway repo). Re-creating a Repo under its live handler keeps the same repo.
// - Lock: `lock(force)` fails with filelock.Timeout when another live Lock resource holds the run (Aim
//   first polls the lock file for 10 s in its event loop, blocking the whole server: not modelled);
//   `release()` frees it only when this resource holds it (it needs no repo). Releasing the resource
//   (explicitly, by the keep-alive watcher, or by replacing its handler) releases its lock and stops a
//   RunHeartbeat.
// - Repo: list_all_runs = hashes of ('meta', hash) containers with entries; list_active_runs = those whose
//   ('meta','chunks',hash,'end_time') entry is None. Other Repo methods → AttributeError.
// - FileManager: touch(filename, cleanup_pattern) records a check-in (`checkIns`), cleanup keeps only the
//   greatest name matching the pattern; poll(pattern) → greatest matching name or None.
// - restart(): sockets closed; clients, heartbeats, resource pool, repo and locks forgotten; containers, run
//   records, run heartbeat states and check-ins kept (on disk in Aim). Recorded requests/messages are kept.
// - keep-alive: clients that sent a heartbeat and have been silent for `clientKeepAliveMs` lose all their
//   resources and their connected status (Aim's HeartbeatWatcher, a thread: it runs even while the server
//   is busy); checked every min(1 s, keepAlive/5). `dropResources(uri)` does the same at once. Any later
//   call naming a dropped handler raises aim.ext.transport.tracking.UnauthorizedRequestError(handler).
// - write messages (tracking.py:211-245) are decoded in full, then applied in order, synchronously in the
//   event loop; only then `OK`. Aim's `unpack_args` re-slices the rest of the message per record, so its
//   cost is O(records × bytes) (measured: 16 KB 0.5 ms, 256 KB 94 ms, 1 MB 2.3 s, 2.2 MB 16.5 s). With
//   `applyCostMsPerRecordByte` (REAL_APPLY_COST ≈ the real server's) each message keeps the server busy
//   for records × bytes × that: every HTTP request, WebSocket upgrade and message (of any client) waits
//   until it is done. Off by default (instant, nothing waits).
// - WebSocket fault `apply-then-1011`: the message is applied, then the socket is closed with 1011
//   "keepalive ping timeout" and no `OK`, as uvicorn (websockets' keepalive: ping every 20 s, 20 s
//   timeout) does when a message blocked the loop past the ping timeout. A re-sent message is applied
//   again (no message ids, no deduplication, as Aim).
// - `aim server` runs uvicorn with `--ws-max-size 1073741824` (aim/cli/utils.py): messages up to 1 GiB.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { randomUUID } from 'node:crypto';
import { WebSocketServer, type RawData, type WebSocket } from 'ws';
import {
  AimBlob,
  AimCustomObject,
  AimFloat,
  TYPE_FLOAT,
  decodePath,
  decodeValue,
  encodePath,
  encodeTree,
  packTree,
  unflattenTree,
  unpack,
  type AimPathElement,
  type AimValue,
} from '../../../runtime/backends/aim/encoding.js';
import { isPlainObject } from '../../../runtime/core/values.js';
import { FaultList, closeServer, listenLoopback, type RecordedRequest, runStandalone } from '../../support/loopback-server.js';
export type { Fault, RecordedRequest } from '../../support/loopback-server.js';

export const AIM_VERSION = '3.29.1';

export interface AimTestServerOptions {
  /** 0 (default) = random free port. */
  port?: number;
  /** Answered by /client/get-version/; null → 404 (servers older than 3.19). Default AIM_VERSION. */
  version?: string | null;
  /** Aim's CLIENT_KEEP_ALIVE_TIME. Default 300000. */
  clientKeepAliveMs?: number;
  /** Keep each WS message's decoded instructions in `messages` (default true; the benchmark turns it off to save memory). */
  recordInstructions?: boolean;
  /** Benchmark only: answer every write message `OK` without decoding or applying it. */
  sink?: boolean;
  /** Delay each write message's answer by this much (a network round trip), default 0. */
  replyDelayMs?: number;
  /**
   * Processing time of a write message, ms per (record × byte); the server is blocked meanwhile (see
   * the header). 0 (default): instant. REAL_APPLY_COST approximates Aim 3.29.1's decode.
   */
  applyCostMsPerRecordByte?: number;
}

/** Aim 3.29.1's decode cost, ms per record × byte (a 2.2 MB message of 44,636 records took 16.5 s). */
export const REAL_APPLY_COST = 1.7e-7;

export interface AimRunRecord {
  name: string | null;
  experiment: string | null;
  description: string | null;
  archived: boolean;
  /** seconds since the epoch */
  createdAt: number;
  tags: string[];
  heartbeat: 'active' | 'stopped' | 'none';
}

export interface AimWsMessage {
  clientUri: string;
  instructions: [string, string, unknown[]][];
  bytes: number;
  /** the injected WS fault this message met */
  fault?: WsFaultKind;
  /** packed records (entries) of the message */
  records: number;
  /** how long it kept the server busy (applyCostMsPerRecordByte × records × bytes) */
  busyMs: number;
}

export type WsFaultKind = 'drop-before' | 'drop-after' | 'error' | 'apply-then-1011';
export type ResourceType = 'TreeView' | 'StructuredRun' | 'Repo' | 'Lock' | 'RunHeartbeat' | 'FileManager';

interface Resource {
  handler: string;
  clientUri: string;
  type: ResourceType;
  kwargs: Record<string, unknown>;
  /** TreeView: container key; StructuredRun/Lock/RunHeartbeat: run hash */
  target: string;
  /** Lock: the repo object it was created with (-1: a throwaway repo, already collected) */
  repo?: number;
}

type Entry = { value: Uint8Array; isBlob: boolean };
type RawEntry = Entry & { key: Uint8Array };

// ---------------------------------------------------------------------------------------------
// Python exceptions

class PyError extends Error {
  constructor(
    readonly module: string,
    readonly cls: string,
    readonly pyArgs: unknown[],
    message?: string,
  ) {
    super(message ?? (pyArgs.length === 0 ? '' : pyArgs.length === 1 ? String(pyArgs[0]) : pyRepr(pyArgs, true)));
  }
}
const keyError = (...a: unknown[]): PyError => new PyError('builtins', 'KeyError', a, a.length === 1 ? pyRepr(a[0]) : undefined);
const typeError = (msg: string): PyError => new PyError('builtins', 'TypeError', [msg]);
const attrError = (cls: string, name: string): PyError => new PyError('builtins', 'AttributeError', [`'${cls}' object has no attribute '${name}'`]);
const unauthorized = (handler: unknown): PyError => new PyError('aim.ext.transport.tracking', 'UnauthorizedRequestError', [handler]);

function exceptionDict(e: unknown): Record<string, string> {
  const err = e instanceof PyError ? e : new PyError('builtins', e instanceof TypeError ? 'TypeError' : e instanceof RangeError ? 'ValueError' : 'RuntimeError', [e instanceof Error ? e.message : String(e)]);
  return { module_name: err.module, class_name: err.cls, args: pyJson(err.pyArgs), message: err.message };
}

/** Python repr() of decoded values (lists as [..], or as a tuple). */
function pyRepr(v: unknown, tuple = false): string {
  if (Array.isArray(v)) return tuple ? `(${v.map((x) => pyRepr(x)).join(', ')}${v.length === 1 ? ',' : ''})` : `[${v.map((x) => pyRepr(x)).join(', ')}]`;
  if (v === null || v === undefined) return 'None';
  if (typeof v === 'boolean') return v ? 'True' : 'False';
  if (typeof v === 'number' || typeof v === 'bigint') return String(v);
  if (v instanceof AimFloat) return Number.isInteger(v.value) ? `${v.value}.0` : String(v.value);
  if (typeof v === 'string') {
    const q = v.includes("'") && !v.includes('"') ? '"' : "'";
    return q + v.replace(/\\/g, '\\\\').replace(new RegExp(q, 'g'), `\\${q}`).replace(/\n/g, '\\n') + q;
  }
  if (typeof v === 'object') return `{${Object.entries(v).map(([k, x]) => `${pyRepr(k)}: ${pyRepr(x)}`).join(', ')}}`;
  return String(v);
}

/** Python json.dumps() (default separators, ensure_ascii). */
function pyJson(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(pyJson).join(', ')}]`;
  if (v instanceof AimFloat) return String(v.value);
  if (v !== null && typeof v === 'object') return `{${Object.entries(v).map(([k, x]) => `${pyJson(k)}: ${pyJson(x)}`).join(', ')}}`;
  if (typeof v === 'string') return JSON.stringify(v).replace(/[\u0080-\uffff]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
  if (typeof v === 'bigint') return v.toString();
  return JSON.stringify(v ?? null);
}

// ---------------------------------------------------------------------------------------------
// trees

const latin1 = (b: Uint8Array): string => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('latin1');
const bytesOf = (s: string): Uint8Array => new Uint8Array(Buffer.from(s, 'latin1'));

/** Aim's decode_tree: the value of packed entries, floats as AimFloat and blobs as AimBlob (undefined if none). */
function decodeTree(raw: readonly RawEntry[]): unknown {
  return unflattenTree(
    raw.map((e) => {
      const v = decodeValue(e.value);
      const typed = e.isBlob && (typeof v === 'string' || v instanceof Uint8Array) ? new AimBlob(v) : e.value[0] === TYPE_FLOAT ? new AimFloat(v as number) : v;
      return [decodePath(e.key), typed] as const;
    }),
    { keepTyped: true },
  );
}

const packTreeValue = (v: unknown): Uint8Array => packTree([], v === undefined ? null : v, { objectMarkers: 'empty' });
const num = (v: unknown): unknown => (v instanceof AimFloat ? v.value : v);
/** Python `None` after a side effect */
const none = (..._effects: unknown[]): null => null;

function toPath(v: unknown): { path: AimPathElement[]; shown: () => string } {
  if (v === undefined) return { path: [], shown: () => '()' };
  const list = Array.isArray(v);
  const path = (list ? v : [v]) as unknown[];
  for (const el of path) if (typeof el !== 'string' && typeof el !== 'number' && typeof el !== 'bigint') throw typeError(`unsupported path element ${pyRepr(el)}`);
  return { path: path as AimPathElement[], shown: () => pyRepr(path, !list) };
}

const globRe = (p: string): RegExp =>
  new RegExp(`^${p.replace(/[.+^${}()|\\]/g, '\\$&').replace(/\*/g, '[^/]*').replace(/\?/g, '[^/]')}$`);

/** One container (a RocksDB database in Aim): entries sorted bytewise by key (latin1 strings compare bytewise). */
/**
 * Sorted keys in chunks of at most 512 (inserts and range deletes stay cheap for long series: a plain
 * sorted array would make every insert O(n)).
 */
class SortedKeys {
  private chunks: string[][] = [[]];

  private static lowerBound(a: string[], k: string): number {
    let lo = 0;
    let hi = a.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (a[mid]! < k) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /** Index of the first chunk whose last key is >= k (the last chunk if none). */
  private chunkFor(k: string): number {
    let lo = 0;
    let hi = this.chunks.length - 1;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      const c = this.chunks[mid]!;
      if (c[c.length - 1]! < k) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  insert(k: string): void {
    const ci = this.chunkFor(k);
    const c = this.chunks[ci]!;
    c.splice(SortedKeys.lowerBound(c, k), 0, k);
    if (c.length > 512) this.chunks.splice(ci, 1, c.slice(0, 256), c.slice(256));
  }

  /** Keys k with lo <= k < hi, in order. */
  range(lo: string, hi: string): string[] {
    const out: string[] = [];
    for (let ci = this.chunkFor(lo); ci < this.chunks.length; ci++) {
      const c = this.chunks[ci]!;
      for (let i = out.length === 0 ? SortedKeys.lowerBound(c, lo) : 0; i < c.length; i++) {
        if (c[i]! >= hi) return out;
        out.push(c[i]!);
      }
    }
    return out;
  }

  /** Remove and return the keys lo <= k < hi. */
  deleteRange(lo: string, hi: string): string[] {
    const gone = this.range(lo, hi);
    if (gone.length === 0) return gone;
    const ci = this.chunkFor(lo);
    let left = gone.length;
    for (let i = ci; i < this.chunks.length && left > 0; i++) {
      const c = this.chunks[i]!;
      const a = SortedKeys.lowerBound(c, lo);
      const b = SortedKeys.lowerBound(c, hi);
      c.splice(a, b - a);
      left -= b - a;
    }
    this.chunks = this.chunks.filter((c) => c.length > 0);
    if (this.chunks.length === 0) this.chunks = [[]];
    return gone;
  }
}

class Container {
  private readonly keys = new SortedKeys();
  readonly map = new Map<string, Entry>();

  set(k: string, e: Entry): void {
    if (!this.map.has(k)) this.keys.insert(k);
    this.map.set(k, e);
  }

  /** Keys starting with `prefix` (Aim's range [prefix, prefix + 0xFF)). */
  range(prefix: string): string[] {
    return this.keys.range(prefix, `${prefix}\xff`);
  }

  deleteRange(prefix: string): void {
    for (const k of this.keys.deleteRange(prefix, `${prefix}\xff`)) this.map.delete(k);
  }

  /** Entries under `prefix`, prefix stripped. */
  view(prefix: string): RawEntry[] {
    return this.range(prefix).map((k) => ({ key: bytesOf(k.slice(prefix.length)), value: this.map.get(k)!.value, isBlob: this.map.get(k)!.isBlob }));
  }
}

const containerKey = (name: string, sub: string): string => `${name}\u0000${sub}`;

// ---------------------------------------------------------------------------------------------

const RESOURCE_TYPES: Record<ResourceType, { fn: string; params: string[]; style: 'kwargs' | 'positional' | 'none' }> = {
  TreeView: { fn: 'get_tree', params: ['name', 'sub', 'read_only', 'index', 'timeout'], style: 'kwargs' },
  StructuredRun: { fn: 'get_structured_run', params: ['hash_', 'read_only', 'created_at'], style: 'positional' },
  Repo: { fn: 'get_repo', params: [], style: 'none' },
  Lock: { fn: 'get_lock', params: ['run_hash'], style: 'kwargs' },
  RunHeartbeat: { fn: 'get_run_heartbeat', params: ['run_hash'], style: 'positional' },
  FileManager: { fn: 'get_file_manager', params: [], style: 'kwargs' },
};
const PY_CLASS: Record<ResourceType, string> = {
  TreeView: 'ContainerTreeView',
  StructuredRun: 'ModelMappedRun',
  Repo: 'Repo',
  Lock: 'SFRunLock',
  RunHeartbeat: 'ScheduledStatusReporter',
  FileManager: 'LocalFileManager',
};

export class AimTestServer {
  readonly requests: RecordedRequest[] = [];
  readonly messages: AimWsMessage[] = [];
  readonly faults = new FaultList();
  readonly runs = new Map<string, AimRunRecord>();
  /** run hash → handler of the Lock resource holding it */
  readonly locks = new Map<string, string>();
  /** connected client uris */
  readonly clients = new Set<string>();
  /** client uri → number of heartbeats */
  readonly heartbeats = new Map<string, number>();
  /** handlers released (explicitly, by the keep-alive watcher or by re-use of their handler) */
  readonly released: string[] = [];
  /** FileManager check-in file names */
  readonly checkIns = new Set<string>();
  readonly version: string | null;
  readonly clientKeepAliveMs: number;
  readonly recordInstructions: boolean;
  readonly sink: boolean;
  replyDelayMs: number;
  applyCostMsPerRecordByte: number;
  private _port: number;
  private server: Server | undefined;
  private readonly wss = new WebSocketServer({ noServer: true, maxPayload: 1 << 30 });
  /** the live repo object (a generation number) and the Repo resources keeping it alive */
  private repo = 0;
  private liveRepos = 0;
  /** the event loop is blocked by a write message until then (ms since the epoch) */
  private busyUntil = 0;
  private writeQueue: Promise<void> = Promise.resolve();
  private readonly containers = new Map<string, Container>();
  private readonly pool = new Map<string, Resource>();
  private readonly sockets = new Set<Duplex>();
  /** the server-side object's members, per resource */
  private readonly members = new WeakMap<Resource, Members>();
  private readonly lastBeat = new Map<string, number>();
  private readonly runHeartbeats = new Map<string, AimRunRecord['heartbeat']>();
  private wsFaults: { kind: WsFaultKind; left: number }[] = [];
  private timer: NodeJS.Timeout | undefined;

  private constructor(opts: AimTestServerOptions) {
    this._port = opts.port ?? 0;
    this.version = opts.version === undefined ? AIM_VERSION : opts.version;
    this.clientKeepAliveMs = opts.clientKeepAliveMs ?? 300_000;
    this.recordInstructions = opts.recordInstructions ?? true;
    this.sink = opts.sink ?? false;
    this.replyDelayMs = opts.replyDelayMs ?? 0;
    this.applyCostMsPerRecordByte = opts.applyCostMsPerRecordByte ?? 0;
  }

  static async start(opts: AimTestServerOptions = {}): Promise<AimTestServer> {
    const s = new AimTestServer(opts);
    await s.listen();
    s.timer = setInterval(() => s.watchHeartbeats(), Math.max(10, Math.min(1000, s.clientKeepAliveMs / 5)));
    s.timer.unref();
    return s;
  }

  get port(): number {
    return this._port;
  }

  /** `aim://127.0.0.1:<port>` */
  get uri(): string {
    return `aim://127.0.0.1:${this.port}`;
  }

  injectWsFault(f: { kind: WsFaultKind; times?: number }): void {
    this.wsFaults.push({ kind: f.kind, left: f.times ?? 1 });
  }
  /** Drop every pending WS fault. */
  clearWsFaults(): void {
    this.wsFaults = [];
  }

  /** Drop every resource of a client (all clients if none given), as Aim's HeartbeatWatcher does after a heartbeat gap. */
  dropResources(clientUri?: string): void {
    for (const r of [...this.pool.values()]) if (clientUri === undefined || r.clientUri === clientUri) this.drop(r);
  }


  async stop(): Promise<void> {
    clearInterval(this.timer);
    await this.down();
  }

  /** Emulate a server process restart (see the header); stays down `downMs` (connections refused). */
  async restart(opts: { downMs?: number } = {}): Promise<void> {
    await this.down();
    this.clients.clear();
    this.heartbeats.clear();
    this.lastBeat.clear();
    this.pool.clear();
    this.locks.clear();
    this.liveRepos = 0;
    this.repo++; // a new process: the old repo object is gone
    this.busyUntil = 0;
    if (opts.downMs) await new Promise((r) => setTimeout(r, opts.downMs));
    await this.listen();
  }

  /** Decoded tree of a container (plain JS values), undefined if empty. */
  tree(name: string, sub: string): unknown {
    const c = this.containers.get(containerKey(name, sub));
    return c ? unflattenTree(c.view('').map((e) => [decodePath(e.key), decodeValue(e.value)] as const)) : undefined;
  }

  /** Entries of a container sorted by key bytes: decoded path and value, is_blob, raw value bytes (bytes[0] = type byte). */
  entries(name: string, sub: string): { path: AimPathElement[]; value: AimValue; isBlob: boolean; bytes: Uint8Array }[] {
    return (this.containers.get(containerKey(name, sub))?.view('') ?? []).map((e) => ({
      path: decodePath(e.key),
      value: decodeValue(e.value),
      isBlob: e.isBlob,
      bytes: e.value,
    }));
  }

  /** Hashes with a run record or non-empty meta/seqs containers, sorted. */
  runHashes(): string[] {
    const out = new Set(this.runs.keys());
    for (const [k, c] of this.containers) {
      const [name, sub] = k.split('\u0000');
      if ((name === 'meta' || name === 'seqs') && sub !== '__index__' && c.map.size) out.add(sub);
    }
    return [...out].sort();
  }

  resources(): { handler: string; clientUri: string; type: string; kwargs: unknown }[] {
    return [...this.pool.values()].map(({ handler, clientUri, type, kwargs }) => ({ handler, clientUri, type, kwargs }));
  }

  // -------------------------------------------------------------------------------------------
  // transport

  private async listen(): Promise<void> {
    const srv = createServer((req, res) => {
      this.handle(req, res).catch((e: unknown) => {
        if (!res.headersSent) res.writeHead(500, { 'Content-Type': 'application/json' }).end(JSON.stringify({ detail: String(e) }));
      });
    });
    srv.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => void this.upgrade(req, socket, head));
    // every raw socket, including ones detached by an upgrade still in progress: a restart kills them all
    srv.on('connection', (sock: Duplex) => {
      this.sockets.add(sock);
      sock.on('close', () => this.sockets.delete(sock));
    });
    this._port = await listenLoopback(srv, this._port);
    this.server = srv;
  }

  private async down(): Promise<void> {
    for (const ws of this.wss.clients) ws.terminate();
    for (const sock of this.sockets) sock.destroy();
    this.sockets.clear();
    const srv = this.server;
    this.server = undefined;
    if (srv) await closeServer(srv);
  }

  private record(req: IncomingMessage, path: string, body: unknown): RecordedRequest {
    const url = new URL(req.url ?? '/', 'http://127.0.0.1');
    const query: Record<string, string | string[]> = {};
    for (const [k, v] of url.searchParams) {
      const prev = query[k];
      query[k] = prev === undefined ? v : Array.isArray(prev) ? [...prev, v] : [prev, v];
    }
    const rec: RecordedRequest = { method: req.method ?? 'GET', path, query, headers: { ...req.headers }, body, status: 0, at: Date.now() };
    this.requests.push(rec);
    return rec;
  }

  private async upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
    const path = new URL(req.url ?? '/', 'http://127.0.0.1').pathname;
    const rec = this.record(req, path, '');
    const refuse = (status: number, detail: string): void => {
      rec.status = status;
      const body = JSON.stringify({ detail });
      socket.end(`HTTP/1.1 ${status} Error\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`);
    };
    if (await this.faults.apply(path, req, (status) => refuse(status, `Injected fault: HTTP ${status}`))) return;
    await this.idle();
    const m = /^\/tracking\/([^/]+)\/write-instruction\/?$/.exec(path);
    if (!m) return refuse(404, 'Not Found');
    const clientUri = decodeURIComponent(m[1]);
    this.wss.handleUpgrade(req, socket, head, (ws) => {
      rec.status = 101;
      ws.on('message', (data, isBinary) => this.onMessage(ws, clientUri, data, isBinary));
    });
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const text = Buffer.concat(chunks).toString('utf8');
    let json: unknown;
    let jsonOk = false;
    try {
      json = JSON.parse(text);
      jsonOk = true;
    } catch {
      /* keep the text */
    }
    const path = new URL(req.url ?? '/', 'http://127.0.0.1').pathname;
    const rec = this.record(req, path, jsonOk ? json : text);
    const send = (status: number, body: unknown, bytes?: Uint8Array): void => {
      rec.status = status;
      res.writeHead(status, { 'Content-Type': bytes ? 'application/octet-stream' : 'application/json' });
      res.end(bytes ?? JSON.stringify(body));
    };
    if (await this.faults.apply(path, req, (status, headers) => {
      rec.status = status;
      res.writeHead(status, { 'Content-Type': 'application/json', ...headers }).end(JSON.stringify({ detail: `Injected fault: HTTP ${status}` }));
    })) return;
    await this.idle();

    let seg: string[];
    try {
      seg = path.replace(/\/$/, '').split('/').slice(1).map(decodeURIComponent);
    } catch {
      return send(404, { detail: 'Not Found' });
    }
    const method = req.method ?? 'GET';
    const route = ((): { method: string; run: () => void } | undefined => {
      const [a, b, c, d] = seg;
      if (seg.length === 1 && a === 'status') return { method: 'GET', run: () => send(200, { status: 'OK' }) };
      if (seg.length === 2 && a === 'client' && b === 'get-version') {
        return { method: 'GET', run: () => (this.version === null ? send(404, { detail: 'Not Found' }) : send(200, { version: this.version })) };
      }
      if (seg.length === 3 && a === 'client' && ['connect', 'reconnect', 'disconnect', 'heartbeat'].includes(b)) {
        return { method: 'GET', run: () => send(200, this.clientCall(b, c)) };
      }
      if (a !== 'tracking' || seg.length < 3) return undefined;
      const body = jsonOk ? json : undefined;
      const guarded = (method: string, f: () => void): { method: string; run: () => void } => ({
        method,
        run: () => {
          try {
            f();
          } catch (e) {
            send(400, { exception: exceptionDict(e) });
          }
        },
      });
      if (seg.length === 3 && c === 'get-resource') return guarded('POST', () => send(200, this.getResource(b, body)));
      if (seg.length === 3 && c === 'read-instruction') return guarded('POST', () => send(200, null, this.readInstruction(b, body)));
      if (seg.length === 4 && c === 'release-resource') return guarded('GET', () => send(200, this.releaseResource(b, d)));
      return undefined;
    })();
    if (!route) return send(404, { detail: 'Not Found' });
    if (method !== route.method) return send(405, { detail: 'Method Not Allowed' });
    route.run();
  }

  /** Resolves once the write messages received so far are applied (at once when none is pending). */
  private async idle(): Promise<void> {
    await this.writeQueue;
    await this.notBusy();
  }

  private async notBusy(): Promise<void> {
    while (Date.now() < this.busyUntil) await new Promise((r) => setTimeout(r, this.busyUntil - Date.now()));
  }

  // -------------------------------------------------------------------------------------------
  // client lifecycle

  private clientCall(action: string, uri: string): null {
    if (action === 'connect' || action === 'reconnect') this.clients.add(uri);
    else if (action === 'disconnect') this.clients.delete(uri);
    else {
      this.lastBeat.set(uri, Date.now());
      this.heartbeats.set(uri, (this.heartbeats.get(uri) ?? 0) + 1);
    }
    return null;
  }

  private watchHeartbeats(): void {
    const now = Date.now();
    for (const [uri, at] of [...this.lastBeat]) {
      if (now - at <= this.clientKeepAliveMs) continue;
      for (const r of [...this.pool.values()]) if (r.clientUri === uri) this.drop(r);
      this.clients.delete(uri);
      this.lastBeat.delete(uri);
    }
  }

  // -------------------------------------------------------------------------------------------
  // resources

  private owned(handler: unknown, clientUri: string): Resource {
    const r = typeof handler === 'string' ? this.pool.get(handler) : undefined;
    if (!r || r.clientUri !== clientUri) throw unauthorized(handler);
    return r;
  }

  /** Remove from the pool and run the resource's finalizer (Aim's ResourceRef clean-up). */
  private drop(r: Resource): void {
    if (this.pool.get(r.handler) === r) this.pool.delete(r.handler);
    if (r.type === 'Repo') this.liveRepos--;
    this.released.push(r.handler);
    if (r.type === 'Lock' && this.locks.get(r.target) === r.handler) this.locks.delete(r.target);
    if (r.type === 'RunHeartbeat') this.setHeartbeat(r.target, 'stopped');
  }

  private setHeartbeat(hash: string, state: AimRunRecord['heartbeat']): void {
    this.runHeartbeats.set(hash, state);
    const run = this.runs.get(hash);
    if (run) run.heartbeat = state;
  }

  private getResource(clientUri: string, body: unknown): { handler: string } {
    const b = (isPlainObject(body) ? body : {}) as Record<string, unknown>;
    const handler = typeof b.resource_handler === 'string' && b.resource_handler ? b.resource_handler : randomUUID();
    try {
      const type = b.resource_type;
      const spec = typeof type === 'string' && Object.hasOwn(RESOURCE_TYPES, type) ? RESOURCE_TYPES[type as ResourceType] : undefined;
      if (!spec) throw keyError(type ?? null);
      const args = b.args;
      if (typeof args !== 'string') throw typeError(`object of type '${args === undefined || args === null ? 'NoneType' : typeof args}' has no len()`);
      let kwargs: Record<string, unknown> = {};
      if (args.length > 0) {
        const tree = decodeTree(unpack(Buffer.from(args, 'base64')));
        if (!isPlainObject(tree)) throw new PyError('builtins', 'AttributeError', [`'${Array.isArray(tree) ? 'list' : 'object'}' object has no attribute 'items'`]);
        for (const [k, v] of Object.entries(tree)) kwargs[k] = v instanceof AimCustomObject && v.name === 'aim.resource' ? this.owned(v.storage.handler, clientUri) : v;
      }
      const missing = spec.params.filter((p) => !(p in kwargs));
      if (spec.style === 'none' && Object.keys(kwargs).length) throw typeError(`${spec.fn}() got an unexpected keyword argument '${Object.keys(kwargs)[0]}'`);
      if (spec.style === 'kwargs' && missing.length) throw keyError(missing[0]);
      if (spec.style === 'positional' && missing.length) {
        const names = missing.map((m) => `'${m}'`);
        const list = names.length === 1 ? names[0] : `${names.slice(0, -1).join(', ')} and ${names[names.length - 1]}`;
        throw typeError(`${spec.fn}() missing ${missing.length} required positional argument${missing.length > 1 ? 's' : ''}: ${list}`);
      }
      const r: Resource = { handler, clientUri, type: type as ResourceType, kwargs, target: '' };
      this.create(r);
      const old = this.pool.get(handler);
      this.pool.set(handler, r);
      if (old) this.drop(old);
      return { handler };
    } catch (e) {
      this.pool.delete(handler);
      throw e;
    }
  }

  private create(r: Resource): void {
    const k = r.kwargs;
    const str = (v: unknown, what: string): string => {
      if (typeof v !== 'string') throw typeError(`${what} must be str, not ${pyRepr(v)}`);
      return v;
    };
    if (r.type === 'TreeView') {
      r.target = containerKey(str(k.name, 'name'), k.index ? '__index__' : str(k.sub, 'sub'));
      if (!this.containers.has(r.target)) this.containers.set(r.target, new Container());
    } else if (r.type === 'StructuredRun') {
      const hash = (r.target = str(k.hash_, 'hash_'));
      const createdAt = num(k.created_at);
      if (createdAt !== null && typeof createdAt !== 'number') throw typeError(`'${typeof createdAt}' object cannot be interpreted as a timestamp`);
      if (!this.runs.has(hash)) {
        if (k.read_only) throw new PyError('aim.sdk.errors', 'RepoIntegrityError', [`Missing props for Run ${hash}`]);
        const heartbeat = this.runHeartbeats.get(hash) ?? 'none';
        this.runs.set(hash, { name: null, experiment: null, description: null, archived: false, createdAt: createdAt ?? Date.now() / 1000, tags: [], heartbeat });
      }
    } else if (r.type === 'Repo') {
      if (this.liveRepos++ === 0) this.repo++; // no live repo: Repo.from_path builds a new one
    } else if (r.type === 'Lock' || r.type === 'RunHeartbeat') {
      r.target = str(k.run_hash, 'run_hash');
      if (r.type === 'Lock') r.repo = this.liveRepos > 0 ? this.repo : -1;
      if (r.type === 'RunHeartbeat') this.setHeartbeat(r.target, 'active');
    }
  }

  private releaseResource(clientUri: string, handler: string): null {
    this.drop(this.owned(handler, clientUri));
    return null;
  }

  private resolveArgs(args: unknown, clientUri: string): unknown[] {
    if (!Array.isArray(args)) throw typeError(`argument after * must be an iterable, not ${pyRepr(args)}`);
    return args.map((a) => (a instanceof AimCustomObject && a.name === 'aim.resource' ? this.owned(a.storage.handler, clientUri) : a));
  }

  private readInstruction(clientUri: string, body: unknown): Uint8Array {
    if (!isPlainObject(body)) throw new PyError('json.decoder', 'JSONDecodeError', ['Expecting value']);
    const r = this.owned(body.resource_handler, clientUri);
    if (typeof body.args !== 'string') throw typeError('argument should be a bytes-like object or ASCII string, not None');
    const tree = decodeTree(unpack(Buffer.from(body.args, 'base64')));
    if (tree === undefined) throw keyError(); // decode_tree of nothing
    const args = this.resolveArgs(tree, clientUri);
    return packTreeValue(this.invoke(r, String(body.method_name), args, false));
  }

  // -------------------------------------------------------------------------------------------
  // write instructions (WebSocket)

  private onMessage(ws: WebSocket, clientUri: string, data: RawData, isBinary: boolean): void {
    const buf = Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data as ArrayBuffer);
    const msg: AimWsMessage = { clientUri, instructions: [], bytes: buf.length, records: 0, busyMs: 0 };
    this.messages.push(msg);
    if (this.sink) return void ws.send(Buffer.from('OK'));
    if (this.applyCostMsPerRecordByte <= 0) return this.apply(ws, clientUri, buf, isBinary, msg);
    // one message at a time, blocking everything else while it is decoded and applied
    this.writeQueue = this.writeQueue.then(async () => {
      await this.notBusy();
      let records = 0;
      try {
        records = unpack(buf).length;
      } catch {
        // undecodable: fails at once below
      }
      msg.busyMs = records * buf.length * this.applyCostMsPerRecordByte;
      this.busyUntil = Date.now() + msg.busyMs;
      await this.notBusy();
      this.apply(ws, clientUri, buf, isBinary, msg);
    }).catch(() => undefined); // apply answers its own errors; the queue must go on
  }

  private apply(ws: WebSocket, clientUri: string, buf: Buffer, isBinary: boolean, msg: AimWsMessage): void {
    const fault = this.wsFaults[0];
    if (fault) {
      msg.fault = fault.kind;
      if (--fault.left <= 0) this.wsFaults.shift();
    }
    const fail = (e: unknown): void => {
      ws.send(packTreeValue(exceptionDict(e)));
      ws.close(1000);
    };
    let tree: unknown;
    let decodeError: unknown;
    try {
      if (!isBinary) throw keyError('bytes'); // Starlette's receive_bytes() on a text frame
      const raw = unpack(buf);
      msg.records = raw.length;
      tree = decodeTree(raw);
      if (tree === undefined) throw keyError(); // decode_tree of nothing
      if (!Array.isArray(tree)) throw typeError('cannot unpack non-iterable instruction list');
      if (this.recordInstructions) msg.instructions = tree as AimWsMessage['instructions'];
    } catch (e) {
      decodeError = e;
    }
    if (fault?.kind === 'drop-before') return void ws.terminate();
    if (fault?.kind === 'error') return fail(new PyError('builtins', 'RuntimeError', ['Injected fault']));
    if (decodeError !== undefined) return fail(decodeError);
    try {
      for (const ins of tree as unknown[]) {
        if (!Array.isArray(ins) || ins.length !== 3) throw new PyError('builtins', 'ValueError', [`not enough values to unpack (expected 3)`]);
        const [handler, method, args] = ins as [unknown, unknown, unknown];
        const r = this.owned(handler, clientUri);
        this.invoke(r, String(method), this.resolveArgs(args, clientUri), true);
      }
      if (fault?.kind === 'drop-after') return void ws.terminate();
      if (fault?.kind === 'apply-then-1011') return void ws.close(1011, 'keepalive ping timeout');
      if (this.replyDelayMs > 0) setTimeout(() => ws.send(Buffer.from('OK')), this.replyDelayMs);
      else ws.send(Buffer.from('OK'));
    } catch (e) {
      fail(e);
    }
  }

  // -------------------------------------------------------------------------------------------
  // server-side objects

  private invoke(r: Resource, method: string, args: unknown[], write: boolean): unknown {
    const cls = PY_CLASS[r.type];
    const setter = method.endsWith('.setter');
    const name = setter ? method.split('.')[0] : method;
    let target = this.members.get(r);
    if (!target) {
      target = r.type === 'TreeView' ? this.treeMethods(r) : r.type === 'StructuredRun' ? this.runMembers(r) : this.otherMethods(r);
      this.members.set(r, target);
    }
    const member = Object.hasOwn(target, name) ? target[name] : undefined;
    if (setter) {
      if (!member?.set) throw member ? new PyError('builtins', 'AttributeError', [`can't set attribute '${name}'`]) : attrError(cls, name);
      member.set(args[0]);
      return null;
    }
    if (!member) throw attrError(cls, name);
    if (member.call) return member.call(...args);
    if (write) throw new PyError('builtins', 'AssertionError', []);
    return member.get!();
  }

  private treeMethods(r: Resource): Members {
    const c = this.containers.get(r.target)!;
    const prefix = (p: unknown): { key: string; shown: () => string } => {
      const { path, shown } = toPath(p);
      return { key: latin1(encodePath(path)), shown };
    };
    const set = (p: unknown, value: unknown): null => {
      const { key } = prefix(p);
      if (value === undefined) throw typeError("set() missing 1 required positional argument: 'value'");
      const entries = encodeTree([], value, { objectMarkers: 'empty' });
      c.deleteRange(key);
      for (const e of entries) c.set(key + latin1(e.key), { value: e.value, isBlob: !!e.isBlob });
      return null;
    };
    /** first elements of the keys under `p` (the path's own entry excluded) */
    const firsts = (p: unknown): AimPathElement[] => {
      const { key } = prefix(p);
      return c.range(key).filter((k) => k.length > key.length).map((k) => decodePath(bytesOf(k.slice(key.length)))[0]);
    };
    const edge = (last: boolean) => (p: unknown = []): AimPathElement => {
      const f = firsts(p);
      if (!f.length) throw keyError();
      return f[last ? f.length - 1 : 0];
    };
    const collect = (p: unknown = []): unknown => {
      const { key, shown } = prefix(p);
      const tree = decodeTree(c.view(key));
      if (tree === undefined) throw keyError(`No key ${shown()} is present.`);
      return tree;
    };
    return {
      preload: { call: () => null },
      collect: { call: collect },
      first_key: { call: edge(false) },
      last_key: { call: edge(true) },
      keys_eager: { call: (p = []) => [...new Map(firsts(p).map((k) => [`${typeof k}${k}`.replace('bigint', 'number'), k])).values()] },
      items_eager: {
        call: (p = []) => {
          const tree = collect(p);
          if (Array.isArray(tree)) return tree.map((v, i) => [i, v]);
          return Object.entries(tree instanceof AimCustomObject ? tree.storage : isPlainObject(tree) ? tree : {});
        },
      },
      make_array: { call: (p = []) => none(c.set(prefix(p).key, { value: Uint8Array.of(6), isBlob: false })) },
      __setitem__: { call: set },
      set: { call: set },
      __delitem__: { call: (p) => none(c.deleteRange(prefix(p).key)) },
      update: {
        call: (p, values) => {
          if (!Array.isArray(values)) throw typeError(`'${pyRepr(values)}' object is not iterable`);
          for (const kv of values) {
            if (!Array.isArray(kv) || kv.length !== 2) throw new PyError('builtins', 'ValueError', ['not enough values to unpack (expected 2)']);
            set([...toPath(p).path, kv[0] as AimPathElement], kv[1]);
          }
          return null;
        },
      },
      finalize: {
        call: (index) => {
          const ir = index as Resource | undefined;
          if (ir?.type !== 'TreeView') throw typeError('finalize() needs an index TreeView resource');
          const ic = this.containers.get(ir.target)!;
          for (const k of c.range('')) ic.set(k, c.map.get(k)!);
          return null;
        },
      },
    };
  }

  private runMembers(r: Resource): Members {
    const run = this.runs.get(r.target)!;
    const field = <K extends 'name' | 'experiment' | 'description' | 'archived'>(k: K): Member => ({
      get: () => run[k],
      set: (v) => {
        run[k] = (k === 'archived' ? Boolean(v) : num(v)) as AimRunRecord[K];
      },
    });
    return {
      name: field('name'),
      experiment: field('experiment'),
      description: field('description'),
      archived: field('archived'),
      creation_time: { get: () => new AimFloat(run.createdAt) },
      end_time: { get: () => null },
      hash: { get: () => r.target },
      tags: { get: () => [...run.tags] },
      add_tag: { call: (v) => none(typeof v === 'string' && !run.tags.includes(v) && run.tags.push(v)) },
      remove_tag: {
        call: (v) => {
          const i = run.tags.indexOf(v as string);
          if (i >= 0) run.tags.splice(i, 1);
          return i >= 0;
        },
      },
    };
  }

  private otherMethods(r: Resource): Members {
    const hash = r.target;
    if (r.type === 'Lock') {
      return {
        lock: {
          call: (force = false) => {
            // SFRunLock.lock dereferences its weakref to the repo's LockManager
            if (r.repo !== this.repo || this.liveRepos === 0) throw attrError('NoneType', 'lock');
            const holder = this.locks.get(hash);
            if (holder !== undefined && holder !== r.handler && !force && this.pool.has(holder)) {
              throw new PyError('filelock', 'Timeout', [hash], `The file lock '${hash}' could not be acquired.`);
            }
            this.locks.set(hash, r.handler);
            return null;
          },
        },
        release: { call: () => none(this.locks.get(hash) === r.handler && this.locks.delete(hash)) },
      };
    }
    if (r.type === 'RunHeartbeat') return { stop: { call: () => none(this.setHeartbeat(hash, 'stopped')) } };
    if (r.type === 'FileManager') {
      const matching = (pattern: unknown): string[] => [...this.checkIns].filter((f) => globRe(String(pattern)).test(f)).sort();
      return {
        touch: {
          call: (filename, pattern = null) => {
            this.checkIns.add(String(filename));
            if (pattern !== null) for (const f of matching(pattern).slice(0, -1)) this.checkIns.delete(f);
            return null;
          },
        },
        poll: { call: (pattern) => matching(pattern).pop() ?? null },
      };
    }
    const metaRuns = (): string[] =>
      [...this.containers].filter(([k, c]) => k.startsWith('meta\u0000') && c.map.size && !k.endsWith('\u0000__index__')).map(([k]) => k.slice(5));
    return {
      list_all_runs: { call: () => metaRuns() },
      list_active_runs: {
        call: () =>
          metaRuns().filter((h) => {
            const e = this.containers.get(containerKey('meta', h))!.map.get(latin1(encodePath(['meta', 'chunks', h, 'end_time'])));
            return e !== undefined && e.value.length === 1 && e.value[0] === 0;
          }),
      },
    };
  }
}

interface Member {
  get?: () => unknown;
  set?: (v: unknown) => void;
  call?: (...args: unknown[]) => unknown;
}
type Members = Record<string, Member>;

// ---------------------------------------------------------------------------------------------
// standalone use

await runStandalone(
  import.meta.url,
  (opt) => {
    const keepAlive = opt('--keep-alive-ms');
    return AimTestServer.start({
      port: Number(opt('--port') ?? 53800),
      version: opt('--version') ?? AIM_VERSION,
      clientKeepAliveMs: keepAlive === undefined ? undefined : Number(keepAlive),
      applyCostMsPerRecordByte: Number(opt('--apply-cost') ?? 0),
    });
  },
  (server) => server.uri,
  (server) => server.stop(),
);

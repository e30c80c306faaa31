// A local Weights & Biases backend test server (the online protocol of
// /work/shared/reference/wandb-comet-aim.md Part A, A.2/A.5; modelled on W&B's own `wandb_backend_spy`).
// Loopback only, in memory.
//
// Standalone: node --import tsx test/backends/wandb/server.ts [--port 8080] [--api-key KEY] [--entity NAME]
//
// Routes: `POST /graphql` and `POST /files/<entity>/<project>/<run_id>/file_stream`.
//
// Behaviour chosen where the reference leaves room:
// - order of checks: fault injection → unknown path 404 → wrong method 405 (with `Allow: POST`) → auth 401
//   → JSON body 400 → operation / run checks.
// - auth: `Authorization: Basic base64("api:" + key)`, user exactly `api`, password exactly the key, else 401.
// - `Content-Encoding: gzip` request bodies are decompressed (wandb-core gzips file_stream posts when allowed).
// - error bodies: /graphql answers `{"errors": [{"message"}]}` (data null); file_stream answers `{"error": "..."}`.
// - GraphQL operation = `operationName`, else the name after `query`/`mutation` in the query text, else (anonymous
//   operation) the first root field mapped back (`viewer` → Viewer, `upsertBucket` → UpsertBucket,
//   `model` → RunResumeStatus). Unknown operations → HTTP 200 with `{"errors": [...], "data": null}`, as GraphQL
//   servers do. A missing `query` string, or variables of the wrong type (tags not strings, config/summaryMetrics
//   not valid JSON) → HTTP 400 with `errors`, nothing stored.
// - UpsertBucket accepts the project/entity under the input names `modelName`/`entityName` and also under the
//   variable names `project`/`entity` used by W&B's own mutation text (`modelName: $project`). Project default
//   'uncategorized'; entity default = defaultEntity; missing run `name` → a random 8-char id (as W&B does).
//   On update only the fields present (non-null) are changed; `summaryMetrics` replaces the summary.
//   `config` may be sent as an object instead of a JSON string: stored, with the problem "config is not a JSON string".
//   An UpsertBucket on a completed run is a resumed session: `complete`/`exitcode` are reset.
// - problems found before a run exists (file_stream before UpsertBucket) are kept and attached to that run when
//   it is created; `server.problems` lists every problem as "<entity>/<project>/<run>: <message>".
// - file_stream: the post is validated as a whole first (types, JSON lines, history gap): a 400 stores nothing.
//   Re-sending a stored history line with *different* content is accepted (replaced) but records the problem
//   "history line N rewritten with different content" (a retry must re-send the same bytes).
//   `fileStreamPosts` counts every authenticated post that reached an existing run (400s included).
//   `complete: true` without `exitcode` records a problem. Other files (`wandb-events.jsonl`, `output.log`, …)
//   only have their line counts kept (reported by RunResumeStatus as eventsLineCount / logLineCount).
// - seedRun(config): plain values are stored wrapped as `{key: {value}}`; a config whose values all already are
//   `{value}` objects is stored as is. Seeded rows are `{_step: i, _runtime: i, _timestamp, loss}`, the summary is
//   the last row, the run is not complete, `upserts` is 0.
// - RunResumeStatus: `historyTail` is always '[]'. `wandbConfig(keys: [...])` (when the query asks for it) is the
//   JSON of those keys of the config's `_wandb` value, or null without `_wandb`: W&B's clients count a run as
//   started only when it has `t` (wandb-core runbranch/resume.go).
// - Upstream rules enforced (wandb-core v0.28.2 is the reference, no W&B server exists here):
//   - a request body over MAX_REQUEST_BYTES (10 MiB, wandb-core's request cap) → 413, nothing stored;
//   - a history or summary line over MAX_LINE_BYTES (10 MiB − 100 KiB) → 400 and a problem;
//   - the summary is the line at the HIGHEST offset ever written to wandb-summary.json (as W&B's own test spy,
//     spy.py: a client must overwrite one fixed line; a lower offset than stored is kept but not shown);
//   - config and summaryMetrics are W&B JSON: bare NaN / Infinity / -Infinity are accepted (wandb-core sends them).
// - Run files (wandb-core's upload flow): GraphQL `CreateRunFiles(entity, project, run, files)` answers
//   `uploadHeaders` (["X-Upload-Secret: <secret>"], a fresh secret per call) and one `uploadUrl` per file,
//   `<url>/upload/<token>`, valid for `uploadUrlTtlMs`. `PUT /upload/<token>` (no auth, like a presigned URL):
//   a token this server did not issue → 403 and a server problem; an expired one (`uploadUrlTtlMs`, or one of the
//   next `expiredUrls` issued) → 403 "Request has expired";
//   without the upload header → 403; a PUT carrying Authorization records a problem (wandb-core sends none).
//   The body is stored as the run file (`files[path]` = {size, sha256}). file_stream `uploaded` paths must
//   have been PUT (else a problem); they are listed in `uploaded`. A post holding only `uploaded` after
//   `complete` is not a "write after complete" (files uploaded later by a sync). `mediaProblems()` checks every media value
//   in the history and summary (image-file, images/separated, table-file and the image cells of its table
//   JSON): the file was PUT and reported uploaded, and its size and sha256 equal the value's.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createHash, randomBytes, randomInt } from 'node:crypto';
import { gunzipSync } from 'node:zlib';
import { LoopbackTestServer, type Fault, type RecordedRequest as BaseRecordedRequest, runStandalone } from '../../support/loopback-server.js';
export type { Fault } from '../../support/loopback-server.js';

/**
 * W&B history and summary lines are JSON plus the bare tokens NaN, Infinity and -Infinity (what
 * W&B's SDKs write for non-finite numbers); outside strings they are read as numbers.
 */
export function parseWandbJson(line: string): unknown {
  const marked = line.replace(/("(?:[^"\\]|\\.)*")|(-?Infinity|NaN)/g, (m, str: string | undefined, tok: string | undefined) =>
    str !== undefined ? str : `{"__nonfinite__":"${tok}"}`,
  );
  return JSON.parse(marked, (_k, v: unknown) =>
    v !== null && typeof v === 'object' && !Array.isArray(v) && Object.keys(v).length === 1 && '__nonfinite__' in v
      ? Number((v as { __nonfinite__: string }).__nonfinite__)
      : v,
  );
}

export const DEFAULT_API_KEY = 'wandb-test-key-0123456789';
export const DEFAULT_ENTITY = 'test-entity';
export const DEFAULT_PROJECT = 'uncategorized';
export const HISTORY_FILE = 'wandb-history.jsonl';
export const SUMMARY_FILE = 'wandb-summary.json';
export const EVENTS_FILE = 'wandb-events.jsonl';
export const OUTPUT_FILE = 'output.log';
/** wandb-core's file_stream limits (filestream.go): request ≈ 10 MiB, line 10 MiB − 100 KiB. */
export const MAX_REQUEST_BYTES = 10 << 20;
export const MAX_LINE_BYTES = (10 << 20) - (100 << 10);

export interface WandbTestServerOptions {
  /** The only accepted API key (any non-empty string; real W&B keys are 40 chars). Default DEFAULT_API_KEY. */
  apiKey?: string;
  /** Entity answered by Viewer and used when a request names none. Default 'test-entity'. */
  defaultEntity?: string;
  /** 0 (default) = random free port. */
  port?: number;
}

export interface RecordedRequest extends BaseRecordedRequest {
  /** GraphQL requests only: operationName, or the operation name parsed from the query text. */
  operation?: string;
}


export interface HistoryLine {
  offset: number;
  row: Record<string, unknown>;
}

export interface WandbRun {
  entity: string;
  project: string;
  /** run id */
  name: string;
  storageId: string;
  displayName: string | null;
  notes: string | null;
  groupName: string | null;
  jobType: string | null;
  tags: string[];
  /** the LAST UpsertBucket config, parsed (form {key: {value}}), as sent */
  config: Record<string, unknown>;
  /** UpsertBucket calls for this run */
  upserts: number;
  /** by offset, ascending, one per line (an offset re-sent replaces its line) */
  history: HistoryLine[];
  /** the wandb-summary.json line at the highest offset (or the last UpsertBucket summaryMetrics) */
  summary: Record<string, unknown> | null;
  /** offset of that summary line (-1: none written through file_stream) */
  summaryOffset: number;
  complete: boolean;
  exitcode: number | null;
  /** empty-body (`{}`) file_stream posts */
  heartbeats: number;
  fileStreamPosts: number;
  /** protocol violations detected, for assertions */
  problems: string[];
  /** run files PUT through issued upload URLs: path → size and sha256 of the stored bytes */
  files: Record<string, { size: number; sha256: string }>;
  /** paths reported in file_stream `uploaded`, in order, once each */
  uploaded: string[];
  /** CreateRunFiles calls for this run */
  createRunFilesCalls: number;
  /** PUTs accepted for this run */
  puts: number;
}

interface RunState extends WandbRun {
  /** raw text of each history line, for the rewrite check */
  rawHistory: string[];
  /** file name → line count, for files other than history/summary */
  fileLines: Map<string, number>;
  /** run file bytes */
  fileBytes: Map<string, Buffer>;
}

interface UploadUrl {
  key: string;
  path: string;
  secret: string;
  expires: number;
}

class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

type Obj = Record<string, unknown>;

const isObj = (v: unknown): v is Obj => v !== null && typeof v === 'object' && !Array.isArray(v);
const typeName = (v: unknown): string => (v === null ? 'null' : Array.isArray(v) ? 'array' : typeof v);
const b64 = (s: string): string => Buffer.from(s, 'utf8').toString('base64');
const runKey = (entity: string, project: string, name: string): string => `${entity}\u0000${project}\u0000${name}`;
const runLabel = (entity: string, project: string, name: string): string => `${entity}/${project}/${name}`;
const RUN_ID_ALPHABET = 'abcdefghijklmnopqrstuvwxyz0123456789';
const randomRunId = (): string => Array.from({ length: 8 }, () => RUN_ID_ALPHABET[randomInt(RUN_ID_ALPHABET.length)]).join('');

/** True when every top-level value except `_wandb` is an object with a `value` field. */
export function isWandbConfigForm(config: Obj): boolean {
  return Object.entries(config).every(([k, v]) => k === '_wandb' || (isObj(v) && 'value' in v));
}

const ROOT_FIELD_OPERATIONS: Record<string, string> = { viewer: 'Viewer', upsertBucket: 'UpsertBucket', model: 'RunResumeStatus', project: 'RunResumeStatus' };

/** operationName, else `query Name` / `mutation Name`, else the first root field mapped to a known operation. */
export function graphqlOperation(body: unknown): string | undefined {
  if (!isObj(body)) return undefined;
  if (typeof body.operationName === 'string' && body.operationName) return body.operationName;
  if (typeof body.query !== 'string') return undefined;
  const q = body.query.replace(/#[^\n]*/g, '');
  const named = /\b(?:query|mutation|subscription)\s+([_A-Za-z][_0-9A-Za-z]*)/.exec(q);
  if (named) return named[1];
  const root = /\{\s*(?:[_A-Za-z][_0-9A-Za-z]*\s*:\s*)?([_A-Za-z][_0-9A-Za-z]*)/.exec(q);
  return root ? ROOT_FIELD_OPERATIONS[root[1]!] : undefined;
}

// ---------------------------------------------------------------------------------------------

export class WandbTestServer extends LoopbackTestServer {
  readonly requests: RecordedRequest[] = [];
  /** Every problem of every run, as "<entity>/<project>/<run>: <message>", in detection order. */
  readonly problems: string[] = [];
  readonly apiKey: string;
  readonly defaultEntity: string;
  private store = new Map<string, RunState>();
  /** problems detected for runs that do not exist yet */
  private pending = new Map<string, string[]>();
  /** upload URLs issued by CreateRunFiles, by token */
  private uploadUrls = new Map<string, UploadUrl>();
  /** How long an issued upload URL stays valid (ms). */
  uploadUrlTtlMs = 10 * 60_000;
  /** The next N upload URLs are issued already expired (a PUT to them gets 403 "Request has expired"). */
  expiredUrls = 0;

  private constructor(options: WandbTestServerOptions) {
    super();
    const key = options.apiKey ?? DEFAULT_API_KEY;
    if (!key) throw new Error('apiKey must not be empty');
    this.apiKey = key;
    this.defaultEntity = options.defaultEntity ?? DEFAULT_ENTITY;
    this.port = options.port ?? 0;
  }

  static async start(options: WandbTestServerOptions = {}): Promise<WandbTestServer> {
    const s = new WandbTestServer(options);
    await s.listen();
    return s;
  }

  /** The `Authorization` header value a client must send. */
  get authorization(): string {
    return `Basic ${b64(`api:${this.apiKey}`)}`;
  }

  /** Deep copy of one run, or undefined. */
  run(entity: string, project: string, runId: string): WandbRun | undefined {
    const r = this.store.get(runKey(entity, project, runId));
    return r ? publicRun(r) : undefined;
  }

  /** Deep copies of every run, in creation order. */
  runs(): WandbRun[] {
    return [...this.store.values()].map(publicRun);
  }

  /**
   * Pre-create a run (for resume tests) with N history lines. `started` (default true) gives it the
   * `_wandb.t` a W&B client sends; false seeds a run no client started (e.g. a sweep run made ahead).
   */
  seedRun(entity: string, project: string, runId: string, historyLines: number, config: Obj = {}, options: { started?: boolean } = {}): void {
    const r = this.newRun(entity, project, runId);
    r.config = isWandbConfigForm(config) ? structuredClone(config) : Object.fromEntries(Object.entries(config).map(([k, v]) => [k, k === '_wandb' ? v : { value: v }]));
    if (options.started !== false && !('_wandb' in r.config)) r.config._wandb = { value: { t: { '13': 'seeded' } } };
    const t0 = Date.now() / 1000 - historyLines;
    for (let i = 0; i < historyLines; i++) {
      const row = { _step: i, _runtime: i, _timestamp: t0 + i, loss: 1 / (i + 1) };
      r.history.push({ offset: i, row });
      r.rawHistory.push(JSON.stringify(row));
    }
    r.summary = historyLines > 0 ? { ...r.history[historyLines - 1]!.row } : null;
  }

  // -------------------------------------------------------------------------------------------
  // transport

  /** `restart({ wipe: true })`: drop all runs (and pending problems). */
  protected wipe(): void {
    this.store = new Map();
    this.pending = new Map();
  }

  protected internalError(res: ServerResponse): void {
    res.writeHead(500, { 'Content-Type': 'application/json' });
    res.end(JSON.stringify({ error: 'Internal server error' }));
  }

  private authorized(req: IncomingMessage): boolean {
    const h = req.headers.authorization;
    const m = /^Basic\s+(\S+)\s*$/i.exec(Array.isArray(h) ? (h[0] ?? '') : (h ?? ''));
    if (!m) return false;
    const decoded = Buffer.from(m[1]!, 'base64').toString('utf8');
    return decoded === `api:${this.apiKey}`;
  }

  protected async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    let raw = Buffer.concat(chunks);
    let gzipError = false;
    if (String(req.headers['content-encoding'] ?? '').toLowerCase() === 'gzip' && raw.length > 0) {
      try {
        raw = gunzipSync(raw);
      } catch {
        gzipError = true;
      }
    }
    const upload = /^\/upload\/([A-Za-z0-9]+)$/.exec(new URL(req.url ?? '/', 'http://127.0.0.1').pathname);
    const tooLarge = !upload && raw.length > MAX_REQUEST_BYTES;
    const bodyText = tooLarge ? '' : raw.toString('utf8');
    const url = new URL(req.url ?? '/', 'http://127.0.0.1');
    const query: Record<string, string | string[]> = {};
    for (const [k, v] of url.searchParams) {
      const prev = query[k];
      query[k] = prev === undefined ? v : Array.isArray(prev) ? [...prev, v] : [prev, v];
    }
    let parsed: unknown;
    let parsedOk = false;
    if (!gzipError && bodyText.trim()) {
      try {
        parsed = JSON.parse(bodyText);
        parsedOk = true;
      } catch {
        /* keep raw text */
      }
    }
    const now = Date.now();
    const path = url.pathname;
    const isGraphql = path === '/graphql';
    const rec: RecordedRequest = {
      method: req.method ?? 'GET',
      path,
      query,
      headers: { ...req.headers },
      body: parsedOk ? parsed : bodyText,
      status: 0,
      at: now,
    };
    if (isGraphql) {
      const op = graphqlOperation(parsed);
      if (op !== undefined) rec.operation = op;
    }
    this.requests.push(rec);
    const send = (status: number, body: unknown, headers: Record<string, string> = {}): void => {
      rec.status = status;
      res.writeHead(status, { 'Content-Type': 'application/json', ...headers });
      res.end(JSON.stringify(body));
    };
    const fail = (status: number, message: string, headers: Record<string, string> = {}): void =>
      send(status, isGraphql ? { errors: [{ message }], data: null } : { error: message }, headers);

    const faulted = await this.faults.apply(path, req, (status, headers) =>
      fail(status, `Injected fault: HTTP ${status}`, headers),
    );
    if (faulted) return;

    if (upload) {
      if (rec.method !== 'PUT') return fail(405, `Method ${rec.method} not allowed for ${path}`, { Allow: 'PUT' });
      const u = this.uploadUrls.get(upload[1]!);
      if (!u) {
        this.problems.push(`PUT ${path}: not an upload URL this server issued`);
        return fail(403, 'AccessDenied: not an upload URL this server issued');
      }
      if (Date.now() > u.expires) return fail(403, 'AccessDenied: Request has expired');
      if (req.headers['x-upload-secret'] !== u.secret) return fail(403, 'AccessDenied: the upload headers from CreateRunFiles are missing (X-Upload-Secret)');
      const r = this.store.get(u.key)!;
      if (req.headers.authorization !== undefined) this.problem(r.entity, r.project, r.name, `PUT ${u.path} carried an Authorization header (upload URLs get no credentials)`);
      r.fileBytes.set(u.path, raw);
      r.files[u.path] = { size: raw.length, sha256: createHash('sha256').update(raw).digest('hex') };
      r.puts++;
      rec.status = 200;
      res.writeHead(200);
      res.end();
      return;
    }
    const fileStream = /^\/files\/([^/]+)\/([^/]+)\/([^/]+)\/file_stream\/?$/.exec(path);
    if (!isGraphql && !fileStream) {
      fail(404, `Not found: ${path}`);
      return;
    }
    if (rec.method !== 'POST') {
      fail(405, `Method ${rec.method} not allowed for ${path}`, { Allow: 'POST' });
      return;
    }
    if (!this.authorized(req)) {
      fail(401, 'user is not logged in (send Authorization: Basic base64("api:<key>"))');
      return;
    }
    if (tooLarge) {
      fail(413, `Request body of ${raw.length} bytes is over the limit of ${MAX_REQUEST_BYTES} bytes`);
      return;
    }
    if (gzipError) {
      fail(400, 'Content-Encoding gzip, but the body is not valid gzip');
      return;
    }
    if (!parsedOk || !isObj(parsed)) {
      fail(400, 'Request body must be a JSON object');
      return;
    }
    try {
      if (isGraphql) {
        const [status, body] = this.graphql(parsed, rec.operation);
        send(status, body);
      } else {
        const [entity, project, name] = fileStream!.slice(1, 4).map((s) => decodeURIComponent(s!)) as [string, string, string];
        send(200, this.fileStream(entity, project, name, parsed));
      }
    } catch (e) {
      if (e instanceof ApiError) fail(e.status, e.message);
      else throw e;
    }
  }

  // -------------------------------------------------------------------------------------------
  // runs and problems

  private newRun(entity: string, project: string, name: string): RunState {
    const key = runKey(entity, project, name);
    const r: RunState = {
      entity,
      project,
      name,
      storageId: b64(`Run:v1:${name}:${project}:${entity}`),
      displayName: null,
      notes: null,
      groupName: null,
      jobType: null,
      tags: [],
      config: {},
      upserts: 0,
      history: [],
      summary: null,
      summaryOffset: -1,
      complete: false,
      exitcode: null,
      heartbeats: 0,
      fileStreamPosts: 0,
      problems: this.pending.get(key) ?? [],
      files: {},
      uploaded: [],
      createRunFilesCalls: 0,
      puts: 0,
      rawHistory: [],
      fileLines: new Map(),
      fileBytes: new Map(),
    };
    this.pending.delete(key);
    this.store.set(key, r);
    return r;
  }

  private problem(entity: string, project: string, name: string, message: string): void {
    const key = runKey(entity, project, name);
    const r = this.store.get(key);
    if (r) r.problems.push(message);
    else {
      const list = this.pending.get(key) ?? [];
      list.push(message);
      this.pending.set(key, list);
    }
    this.problems.push(`${runLabel(entity, project, name)}: ${message}`);
  }

  // -------------------------------------------------------------------------------------------
  // GraphQL

  /** CreateRunFiles: one upload URL per file (relative paths only), plus the upload headers. */
  private createRunFiles(v: Obj): Obj {
    const { entity, project, run, files } = v;
    if (typeof entity !== 'string' || typeof project !== 'string' || typeof run !== 'string') throw new ApiError(400, 'entity, project and run must be strings');
    if (!Array.isArray(files) || !files.every((f) => typeof f === 'string')) throw new ApiError(400, 'files must be a list of strings');
    const r = this.store.get(runKey(entity, project, run));
    if (!r) throw new ApiError(404, `run ${runLabel(entity, project, run)} not found (CreateRunFiles comes after UpsertBucket)`);
    r.createRunFilesCalls++;
    const secret = randomBytes(8).toString('hex');
    const out = (files as string[]).map((name) => {
      if (!name || name.startsWith('/') || name.split('/').some((p) => p === '..' || p === '.' || p === '') || name.includes('\\')) {
        this.problem(entity, project, run, `CreateRunFiles: ${JSON.stringify(name)} is not a relative run file path`);
        return { name, uploadUrl: null };
      }
      const token = randomBytes(12).toString('hex');
      const expired = this.expiredUrls > 0;
      if (expired) this.expiredUrls--;
      this.uploadUrls.set(token, { key: runKey(entity, project, run), path: name, secret, expires: expired ? 0 : Date.now() + this.uploadUrlTtlMs });
      return { name, uploadUrl: `${this.url}/upload/${token}` };
    });
    return { runID: r.storageId, uploadHeaders: [`X-Upload-Secret: ${secret}`], files: out };
  }

  /**
   * Every media value in the run's history and summary checked against the stored files: each path
   * was PUT and reported `uploaded`, and its size and sha256 equal the value's (image cells of a
   * table JSON included). [] when all is well.
   */
  /** The bytes of a run file PUT through an issued upload URL (undefined if never uploaded). */
  fileContent(entity: string, project: string, runId: string, path: string): Buffer | undefined {
    return this.store.get(runKey(entity, project, runId))?.fileBytes.get(path);
  }

  mediaProblems(entity: string, project: string, runId: string): string[] {
    const r = this.store.get(runKey(entity, project, runId));
    if (!r) return [`run ${runLabel(entity, project, runId)} not found`];
    const out: string[] = [];
    const checkFile = (where: string, v: Obj): Buffer | undefined => {
      const path = v.path;
      if (typeof path !== 'string') {
        out.push(`${where}: no path`);
        return undefined;
      }
      const bytes = r.fileBytes.get(path);
      if (!bytes) {
        out.push(`${where}: ${path} was never uploaded`);
        return undefined;
      }
      if (!r.uploaded.includes(path)) out.push(`${where}: ${path} not reported in uploaded`);
      if (v.size !== bytes.length) out.push(`${where}: size ${String(v.size)} but the file has ${bytes.length} bytes`);
      const digest = createHash('sha256').update(bytes).digest('hex');
      if (v.sha256 !== digest) out.push(`${where}: sha256 ${String(v.sha256)} but the file's is ${digest}`);
      return bytes;
    };
    const checkValue = (where: string, v: unknown): void => {
      if (!isObj(v)) return;
      if (v._type === 'image-file') checkFile(where, v);
      else if (v._type === 'images/separated') {
        const names = v.filenames;
        if (!Array.isArray(names) || names.length !== v.count) out.push(`${where}: filenames does not list count (${String(v.count)}) files`);
        for (const n of Array.isArray(names) ? names : []) if (typeof n !== 'string' || !r.fileBytes.has(n)) out.push(`${where}: ${String(n)} was never uploaded`);
      } else if (v._type === 'table-file') {
        const bytes = checkFile(where, v);
        if (!bytes) return;
        let t: unknown;
        try {
          t = parseWandbJson(bytes.toString('utf8'));
        } catch {
          out.push(`${where}: ${String(v.path)} is not table JSON`);
          return;
        }
        if (!isObj(t) || !Array.isArray(t.columns) || !Array.isArray(t.data)) return void out.push(`${where}: ${String(v.path)} lacks columns/data`);
        if (t.columns.length !== v.ncols || t.data.length !== v.nrows) out.push(`${where}: ncols/nrows ${String(v.ncols)}/${String(v.nrows)} but the table has ${t.columns.length}/${t.data.length}`);
        t.data.forEach((row, i) => (Array.isArray(row) ? row : []).forEach((c, j) => isObj(c) && checkValue(`${where} cell [${i}][${j}]`, c)));
      }
    };
    for (const h of r.history) for (const [k, v] of Object.entries(h.row)) checkValue(`history line ${h.offset} "${k}"`, v);
    for (const [k, v] of Object.entries(r.summary ?? {})) checkValue(`summary "${k}"`, v);
    return out;
  }

  private graphql(body: Obj, operation: string | undefined): [number, unknown] {
    if (typeof body.query !== 'string' || !body.query.trim()) throw new ApiError(400, 'Must provide query string.');
    const variables = body.variables ?? {};
    if (!isObj(variables)) throw new ApiError(400, 'Variables must be provided as an object');
    switch (operation) {
      case 'Viewer':
        return [200, { data: { viewer: { id: b64(`User:${this.defaultEntity}`), entity: this.defaultEntity, username: this.defaultEntity, teams: { edges: [] } } } }];
      case 'UpsertBucket':
        return [200, { data: { upsertBucket: this.upsertBucket(variables) } }];
      case 'RunResumeStatus':
        return [200, { data: { model: this.resumeStatus(variables, body.query) } }];
      case 'CreateRunFiles':
        return [200, { data: { createRunFiles: this.createRunFiles(variables) } }];
      default:
        return [200, { errors: [{ message: `Unknown operation: ${operation ?? '(none found in the query)'}` }], data: null }];
    }
  }

  private upsertBucket(v: Obj): unknown {
    const str = (k: string): string | null | undefined => {
      const x = v[k];
      if (x === undefined || x === null) return undefined;
      if (typeof x !== 'string') throw new ApiError(400, `Variable "$${k}" got invalid value ${JSON.stringify(x)}; String cannot represent a non string value`);
      return x;
    };
    const project = str('modelName') ?? str('project') ?? DEFAULT_PROJECT;
    const entity = str('entityName') ?? str('entity') ?? this.defaultEntity;
    const name = str('name') || randomRunId();
    const tags = v.tags;
    if (tags !== undefined && tags !== null && !(Array.isArray(tags) && tags.every((t) => typeof t === 'string'))) {
      throw new ApiError(400, `Variable "$tags" got invalid value ${JSON.stringify(tags)}; expected [String]`);
    }
    const later: string[] = [];
    const json = (k: string): Obj | undefined => {
      const x = v[k];
      if (x === undefined || x === null) return undefined;
      let val: unknown = x;
      if (typeof x === 'string') {
        try {
          val = parseWandbJson(x); // W&B JSON: bare NaN/Infinity are valid (wandb-core's simplejsonext)
        } catch {
          throw new ApiError(400, `Variable "$${k}" got invalid value; JSONString: not valid JSON`);
        }
      } else later.push(`${k} is not a JSON string (sent as ${typeName(x)})`);
      if (!isObj(val)) throw new ApiError(400, `Variable "$${k}" must be a JSON object, got ${typeName(val)}`);
      return val;
    };
    const config = json('config');
    const summary = json('summaryMetrics');
    if (config && !isWandbConfigForm(config)) later.push('config not in {key: {value}} form');

    let r = this.store.get(runKey(entity, project, name));
    const inserted = !r;
    if (!r) r = this.newRun(entity, project, name);
    else if (r.complete) {
      // a new session resuming a finished run
      r.complete = false;
      r.exitcode = null;
    }
    const id = str('id');
    if (id !== undefined && id !== r.storageId && !inserted) later.push(`storage id mismatch: sent ${id}, run has ${r.storageId}`);
    for (const p of later) this.problem(entity, project, name, p);
    const set = (k: 'displayName' | 'notes' | 'groupName' | 'jobType', x: string | undefined | null): void => {
      if (x !== undefined && x !== null) r[k] = x;
    };
    set('displayName', str('displayName'));
    set('notes', str('notes') ?? str('description'));
    set('groupName', str('groupName'));
    set('jobType', str('jobType'));
    if (Array.isArray(tags)) r.tags = [...(tags as string[])];
    if (config) r.config = config;
    if (summary) r.summary = summary;
    r.upserts++;
    return {
      bucket: {
        id: r.storageId,
        name: r.name,
        displayName: r.displayName,
        description: r.notes,
        config: JSON.stringify(r.config),
        sweepName: null,
        historyLineCount: r.history.length,
        project: { id: b64(`Project:v1:${project}:${entity}`), name: project, entity: { id: b64(`Entity:v1:${entity}`), name: entity } },
      },
      inserted,
    };
  }

  private resumeStatus(v: Obj, query: string): unknown {
    const s = (k: string): string | undefined => (typeof v[k] === 'string' && v[k] ? (v[k] as string) : undefined);
    const project = s('project') ?? s('modelName') ?? DEFAULT_PROJECT;
    const entity = s('entity') ?? s('entityName') ?? this.defaultEntity;
    const name = s('name');
    const r = name === undefined ? undefined : this.store.get(runKey(entity, project, name));
    return {
      id: b64(`Project:v1:${project}:${entity}`),
      name: project,
      entity: { id: b64(`Entity:v1:${entity}`), name: entity },
      bucket: r
        ? {
            id: r.storageId,
            name: r.name,
            displayName: r.displayName,
            historyLineCount: r.history.length,
            summaryMetrics: JSON.stringify(r.summary ?? {}),
            config: JSON.stringify(r.config),
            eventsLineCount: r.fileLines.get(EVENTS_FILE) ?? 0,
            logLineCount: r.fileLines.get(OUTPUT_FILE) ?? 0,
            historyTail: '[]',
            ...wandbConfigField(r.config, query),
          }
        : null,
    };
  }

  // -------------------------------------------------------------------------------------------
  // file_stream

  private fileStream(entity: string, project: string, name: string, b: Obj): unknown {
    const r = this.store.get(runKey(entity, project, name));
    if (!r) {
      this.problem(entity, project, name, 'file_stream before UpsertBucket');
      throw new ApiError(404, `run ${runLabel(entity, project, name)} not found (UpsertBucket first)`);
    }
    r.fileStreamPosts++;
    const reject = (message: string): never => {
      this.problem(entity, project, name, message);
      throw new ApiError(400, message);
    };

    // ---- validate the whole post first
    const files = b.files;
    if (files !== undefined && !isObj(files)) reject(`files must be an object, got ${typeName(files)}`);
    const entries: Array<[string, number, string[]]> = [];
    for (const [file, entry] of Object.entries((files ?? {}) as Obj)) {
      if (!isObj(entry)) reject(`files["${file}"] must be an object {offset, content}`);
      const { offset, content } = entry as Obj;
      if (typeof offset !== 'number' || !Number.isSafeInteger(offset) || offset < 0) reject(`files["${file}"].offset must be a non-negative integer, got ${JSON.stringify(offset)}`);
      if (!Array.isArray(content) || !content.every((l) => typeof l === 'string')) reject(`files["${file}"].content must be an array of strings`);
      entries.push([file, offset as number, content as string[]]);
    }
    if (b.complete !== undefined && typeof b.complete !== 'boolean') reject(`complete must be a boolean, got ${typeName(b.complete)}`);
    if (b.exitcode !== undefined && b.exitcode !== null && (typeof b.exitcode !== 'number' || !Number.isSafeInteger(b.exitcode))) {
      reject(`exitcode must be an integer, got ${JSON.stringify(b.exitcode)}`);
    }
    if (b.preempting !== undefined && typeof b.preempting !== 'boolean') reject(`preempting must be a boolean, got ${typeName(b.preempting)}`);
    if (b.uploaded !== undefined && !(Array.isArray(b.uploaded) && b.uploaded.every((x) => typeof x === 'string'))) reject('uploaded must be an array of file names');

    const parseLines = (file: string, offset: number, content: string[]): Obj[] =>
      content.map((line, i) => {
        if (line.length * 3 > MAX_LINE_BYTES && Buffer.byteLength(line) > MAX_LINE_BYTES) {
          reject(`${file} line at offset ${offset + i} is ${Buffer.byteLength(line)} bytes, over the line limit of ${MAX_LINE_BYTES}`);
        }
        let row: unknown;
        try {
          row = parseWandbJson(line);
        } catch {
          return reject(`${file} line at offset ${offset + i} is not valid JSON`);
        }
        if (!isObj(row)) reject(`${file} line at offset ${offset + i} is not a JSON object`);
        return row as Obj;
      });
    const history = entries.find(([f]) => f === HISTORY_FILE);
    const historyRows = history ? parseLines(HISTORY_FILE, history[1], history[2]) : [];
    if (history && history[1] > r.history.length) reject(`history gap at offset ${history[1]}, have ${r.history.length} lines`);
    const summaryEntry = entries.find(([f]) => f === SUMMARY_FILE);
    const summaryRows = summaryEntry ? parseLines(SUMMARY_FILE, summaryEntry[1], summaryEntry[2]) : [];

    // ---- apply
    // A post with only `uploaded` after complete is accepted: run files reported later by a sync.
    const onlyUploaded = 'uploaded' in b && Object.keys(b).every((k) => k === 'uploaded');
    if (r.complete && !onlyUploaded) this.problem(entity, project, name, 'write after complete');
    if (Object.keys(b).length === 0) r.heartbeats++;
    if (history) {
      const [, offset, content] = history;
      content.forEach((line, i) => {
        const at = offset + i;
        const row = historyRows[i]!;
        if (at < r.history.length) {
          if (r.rawHistory[at] !== line) this.problem(entity, project, name, `history line ${at} rewritten with different content`);
          r.history[at] = { offset: at, row };
          r.rawHistory[at] = line;
        } else {
          r.history.push({ offset: at, row });
          r.rawHistory.push(line);
        }
        for (const k of ['_step', '_runtime', '_timestamp']) {
          const x = row[k];
          if (typeof x !== 'number' || !Number.isFinite(x)) this.problem(entity, project, name, `history line ${at}: ${k} missing or not a number`);
        }
        if (typeof row._step === 'number' && !Number.isInteger(row._step)) this.problem(entity, project, name, `history line ${at}: _step is not an integer`);
      });
      // steps non-decreasing around and inside the written range
      const from = Math.max(1, offset);
      const to = Math.min(r.history.length - 1, offset + content.length);
      for (let i = from; i <= to; i++) {
        const prev = r.history[i - 1]!.row._step;
        const cur = r.history[i]!.row._step;
        if (typeof prev === 'number' && typeof cur === 'number' && cur < prev) {
          this.problem(entity, project, name, `step went backwards at offset ${i}: _step ${cur} after ${prev}`);
        }
      }
    }
    if (summaryEntry && summaryRows.length > 0) {
      // The line at the highest offset is the summary (W&B's spy.py); a lower offset does not replace it.
      const top = summaryEntry[1] + summaryRows.length - 1;
      if (top >= r.summaryOffset) {
        r.summary = summaryRows[summaryRows.length - 1]!;
        r.summaryOffset = top;
      }
    }
    for (const [file, offset, content] of entries) {
      if (file === HISTORY_FILE || file === SUMMARY_FILE) continue;
      r.fileLines.set(file, Math.max(r.fileLines.get(file) ?? 0, offset + content.length));
    }
    for (const p of (b.uploaded ?? []) as string[]) {
      if (!r.fileBytes.has(p)) this.problem(entity, project, name, `uploaded reports ${p}, which was never PUT`);
      if (!r.uploaded.includes(p)) r.uploaded.push(p);
    }
    if (typeof b.exitcode === 'number') r.exitcode = b.exitcode;
    if (b.complete === true) {
      if (typeof b.exitcode !== 'number') this.problem(entity, project, name, 'complete without exitcode');
      r.complete = true;
    }
    return { exitcode: null, limits: {} };
  }
}

/** `wandbConfig` of RunResumeStatus: the asked keys of the config's `_wandb` value, as a JSON string (null without `_wandb`). */
function wandbConfigField(config: Obj, query: string): { wandbConfig?: string | null } {
  const m = /wandbConfig\s*\(\s*keys\s*:\s*\[([^\]]*)\]\s*\)/.exec(query);
  if (!m) return /\bwandbConfig\b/.test(query) ? { wandbConfig: null } : {};
  const keys = [...m[1]!.matchAll(/"([^"]*)"/g)].map((k) => k[1]!);
  const w = config._wandb;
  const inner = isObj(w) && 'value' in w ? w.value : w;
  if (!isObj(inner)) return { wandbConfig: null };
  return { wandbConfig: JSON.stringify(Object.fromEntries(keys.filter((k) => k in inner).map((k) => [k, inner[k]]))) };
}

function publicRun(r: RunState): WandbRun {
  const { rawHistory: _raw, fileLines: _lines, fileBytes: _bytes, ...rest } = r;
  return structuredClone(rest);
}

// ---------------------------------------------------------------------------------------------
// standalone use

await runStandalone(
  import.meta.url,
  (opt) =>
    WandbTestServer.start({
      port: Number(opt('--port') ?? 8080),
      apiKey: opt('--api-key') ?? DEFAULT_API_KEY,
      defaultEntity: opt('--entity') ?? DEFAULT_ENTITY,
    }),
  (server) => `WANDB_BASE_URL=${server.url} WANDB_API_KEY=${server.apiKey}`,
  (server) => server.close(),
);

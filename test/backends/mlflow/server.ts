// A local MLflow tracking REST test server (emulates MLflow 2.12.2 with the sqlite or the file store).
// See /work/shared/reference/mlflow-rest.md for the behaviour it reproduces. Loopback only, in memory.
//
// Standalone: node --import tsx test/backends/mlflow/server.ts [--port 5000] [--store sqlite|file] [--no-truncate]
import { join as pathJoin, resolve as pathResolve } from 'node:path';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { randomBytes, randomInt } from 'node:crypto';
import { createReadStream, createWriteStream, mkdtempSync, rmSync } from 'node:fs';
import { mkdir, readdir, rename, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { pipeline } from 'node:stream/promises';
import { fileURLToPath } from 'node:url';
import {
  MlflowError,
  UncaughtError,
  invalidParam,
  parseDict,
  validateSchema,
  validateBatchLimits,
  validateMetricKey,
  validateMetric,
  validateParam,
  validateTag,
  validateRunId,
  pyRepr,
  pyStr,
  MAX_EXPERIMENT_TAG_VAL_LENGTH,
  type Check,
  type MessageSchema,
  type Parsed,
} from './server-proto.js';
import {
  EXPERIMENT_ATTRS,
  RUN_ATTRS,
  compare,
  createPageToken,
  orderCompare,
  parseFilter,
  parseOrderBy,
  parsePageToken,
  type Clause,
  type OrderKey,
} from './server-search.js';
import { LoopbackTestServer, type Fault, type RecordedRequest, runStandalone } from '../../support/loopback-server.js';
export type { Fault, RecordedRequest } from '../../support/loopback-server.js';

export interface MlflowTestServerOptions {
  /** Which MLflow backend to emulate (reference §9). Default 'sqlite'. */
  store?: 'sqlite' | 'file';
  /** MLFLOW_TRUNCATE_LONG_VALUES (default true): truncate long param/run-tag values instead of 400. */
  truncateLongValues?: boolean;
  /** 0 (default) = random free port. */
  port?: number;
  /**
   * Where proxied artifacts are stored (the real server's --artifacts-destination). Default: a new
   * temporary directory, removed by close().
   */
  artifactsDir?: string;
}

/** MLflow's validate_path_is_safe (mlflow/utils/uri.py): no '#', no '..' segment, not absolute. */
function artifactPathSafe(p: string): boolean {
  if (p.includes('#')) return false;
  if (p.split('/').includes('..')) return false;
  if (p.startsWith('/') || /^[a-zA-Z]:/.test(p) || p.startsWith('\\')) return false;
  return true;
}

/** A FileInfo as the server lists it: file_size left out for directories and empty files (proto default). */
async function fileInfos(dir: string, prefix: string): Promise<Array<{ path: string; is_dir: boolean; file_size?: number }>> {
  let entries;
  try {
    entries = await readdir(dir, { withFileTypes: true });
  } catch {
    return [];
  }
  const out: Array<{ path: string; is_dir: boolean; file_size?: number }> = [];
  for (const e of entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))) {
    if (e.name.endsWith('.upload-tmp')) continue;
    const path = prefix ? `${prefix}/${e.name}` : e.name;
    if (e.isDirectory()) out.push({ path, is_dir: true });
    else {
      const size = (await stat(pathJoin(dir, e.name))).size;
      out.push(size > 0 ? { path, is_dir: false, file_size: size } : { path, is_dir: false });
    }
  }
  return out;
}



interface Experiment {
  experiment_id: string;
  name: string;
  artifact_location: string;
  lifecycle_stage: 'active' | 'deleted';
  creation_time: number;
  last_update_time: number;
  tags: Map<string, string>;
}

interface MetricPoint {
  key: string;
  value: number;
  timestamp: number;
  step: number;
}

type RunStatus = 'RUNNING' | 'SCHEDULED' | 'FINISHED' | 'FAILED' | 'KILLED';

interface RunRecord {
  run_id: string;
  experiment_id: string;
  run_name: string;
  user_id: string;
  status: RunStatus;
  start_time: number;
  end_time: number | null;
  artifact_uri: string;
  lifecycle_stage: 'active' | 'deleted';
  deleted_time: number | null;
  params: Map<string, string>;
  tags: Map<string, string>;
  /** every stored point, in insertion order (sqlite: exact duplicates are not stored) */
  history: MetricPoint[];
  /** sqlite duplicate check in O(1): key/timestamp/step/value of every stored point */
  pointKeys: Set<string>;
  latest: Map<string, MetricPoint>;
}

// ---------------------------------------------------------------------------------------------
// proto message shapes (mlflow/protos/service.proto, the fields this server reads)

const KV: MessageSchema = { key: { type: 'string' }, value: { type: 'string' } };
const METRIC: MessageSchema = {
  key: { type: 'string' },
  value: { type: 'double' },
  timestamp: { type: 'int64' },
  step: { type: 'int64' },
};
const RUN_STATUS = { RUNNING: 1, SCHEDULED: 2, FINISHED: 3, FAILED: 4, KILLED: 5 };
const VIEW_TYPE = { ACTIVE_ONLY: 1, DELETED_ONLY: 2, ALL: 3 };
const S = { type: 'string' } as const;
const RUN_REF: MessageSchema = { run_id: S, run_uuid: S };

const PROTO = {
  createExperiment: { name: S, artifact_location: S, tags: { type: { message: KV }, repeated: true } },
  getExperiment: { experiment_id: S },
  getExperimentByName: { experiment_name: S },
  searchExperiments: {
    max_results: { type: 'int64' },
    page_token: S,
    filter: S,
    order_by: { type: 'string', repeated: true },
    view_type: { type: { enum: VIEW_TYPE } },
  },
  updateExperiment: { experiment_id: S, new_name: S },
  experimentId: { experiment_id: S },
  setExperimentTag: { experiment_id: S, key: S, value: S },
  createRun: {
    experiment_id: S,
    user_id: S,
    run_name: S,
    start_time: { type: 'int64' },
    tags: { type: { message: KV }, repeated: true },
  },
  updateRun: { ...RUN_REF, status: { type: { enum: RUN_STATUS } }, end_time: { type: 'int64' }, run_name: S },
  runRef: RUN_REF,
  logMetric: { ...RUN_REF, ...METRIC },
  keyValue: { ...RUN_REF, ...KV },
  deleteTag: { ...RUN_REF, key: S },
  logBatch: {
    ...RUN_REF,
    metrics: { type: { message: METRIC }, repeated: true },
    params: { type: { message: KV }, repeated: true },
    tags: { type: { message: KV }, repeated: true },
  },
  getMetricHistory: { ...RUN_REF, metric_key: S, page_token: S, max_results: { type: 'int32' } },
  bulkInterval: {
    run_ids: { type: 'string', repeated: true },
    metric_key: S,
    start_step: { type: 'int64' },
    end_step: { type: 'int64' },
    max_results: { type: 'int32' },
  },
  searchRuns: {
    experiment_ids: { type: 'string', repeated: true },
    filter: S,
    run_view_type: { type: { enum: VIEW_TYPE } },
    max_results: { type: 'int32' },
    order_by: { type: 'string', repeated: true },
    page_token: S,
  },
  listArtifacts: { ...RUN_REF, path: S, page_token: S },
} satisfies Record<string, MessageSchema>;

const SEARCH_MAX_RESULTS = 50000;
const SQLITE_DOUBLE_MAX = 1.7976931348623157e308;

// ---------------------------------------------------------------------------------------------
// HTML pages (Werkzeug 2.2 / Flask defaults)

const htmlPage = (code: number, name: string, description: string): string =>
  `<!doctype html>\n<html lang=en>\n<title>${code} ${name}</title>\n<h1>${name}</h1>\n<p>${description}</p>\n`;
const HTML_404 = htmlPage(
  404,
  'Not Found',
  'The requested URL was not found on the server. If you entered the URL manually please check your spelling and try again.',
);
const HTML_405 = htmlPage(405, 'Method Not Allowed', 'The method is not allowed for the requested URL.');
const HTML_500 = htmlPage(
  500,
  'Internal Server Error',
  'The server encountered an internal error and was unable to complete your request. Either the server is overloaded or there is an error in the application.',
);
/** Body of MLflow's basic-auth plugin 401 answer (`WWW-Authenticate: Basic realm="mlflow"`). */
/** Real MLflow turns a relative artifact location into an absolute path on the server machine. */
function absoluteArtifactLocation(loc: string | undefined): string | undefined {
  if (!loc || /^[a-zA-Z][a-zA-Z0-9+.-]*:/.test(loc) || loc.startsWith('/')) return loc;
  return pathResolve(loc);
}

export const AUTH_401_BODY =
  'You are not authenticated. Please see https://www.mlflow.org/docs/latest/auth/index.html#authenticating-to-mlflow on how to authenticate.';

const FAULT_CODES: Record<number, string> = {
  400: 'BAD_REQUEST',
  401: 'UNAUTHENTICATED',
  403: 'PERMISSION_DENIED',
  404: 'ENDPOINT_NOT_FOUND',
  409: 'ABORTED',
  429: 'REQUEST_LIMIT_EXCEEDED',
  500: 'INTERNAL_ERROR',
  501: 'NOT_IMPLEMENTED',
  502: 'TEMPORARILY_UNAVAILABLE',
  503: 'TEMPORARILY_UNAVAILABLE',
  504: 'TEMPORARILY_UNAVAILABLE',
};

const ADJECTIVES = ['abundant', 'bemused', 'brawny', 'calm', 'clean', 'dapper', 'enchanting', 'gentle', 'gregarious', 'honorable', 'judicious', 'languid', 'nebulous', 'omniscient', 'rare', 'resilient', 'sincere', 'thundering', 'unique', 'zealous'];
const NOUNS = ['ant', 'bass', 'bird', 'colt', 'crab', 'deer', 'duck', 'fox', 'gull', 'hawk', 'koi', 'lark', 'mole', 'newt', 'owl', 'ram', 'seal', 'steed', 'toad', 'wolf'];

const randomName = (): string =>
  `${ADJECTIVES[randomInt(ADJECTIVES.length)]}-${NOUNS[randomInt(NOUNS.length)]}-${randomInt(1000)}`;

/** double → proto-JSON value */
const wireDouble = (v: number): number | string =>
  Number.isNaN(v) ? 'NaN' : v === Infinity ? 'Infinity' : v === -Infinity ? '-Infinity' : v;

interface Incoming {
  method: string;
  path: string;
  rawQuery: string;
  query: Record<string, string | string[]>;
  contentType: string | undefined;
  bodyText: string;
}

type Handler = (req: Incoming) => unknown;

export class MlflowTestServer extends LoopbackTestServer {
  readonly requests: RecordedRequest[] = [];
  private readonly store: 'sqlite' | 'file';
  private readonly truncate: boolean;
  private auth: { bearer?: string; basic?: { username: string; password: string } } | undefined;
  private exps = new Map<string, Experiment>();
  private runs = new Map<string, RunRecord>();
  private nextExperimentId = 1;
  private readonly routes: Map<string, { methods: string[]; handler: Handler }>;
  /** Root of the proxied artifact store (STORE_DIR/mlartifacts of the real server). */
  readonly artifactsDir: string;
  readonly #ownArtifactsDir: boolean;
  /** Called when an artifact PUT's body has been stored, before the answer (tests change files here). */
  onArtifactPut: ((path: string, bytes: number) => void | Promise<void>) | undefined;

  private constructor(options: MlflowTestServerOptions) {
    super();
    this.#ownArtifactsDir = options.artifactsDir === undefined;
    this.artifactsDir = options.artifactsDir ?? mkdtempSync(pathJoin(tmpdir(), 'mlflow-test-artifacts-'));
    this.store = options.store ?? 'sqlite';
    this.truncate = options.truncateLongValues ?? true;
    this.port = options.port ?? 0;
    this.wipe();
    const r = (methods: string[], handler: Handler) => ({ methods, handler });
    this.routes = new Map(
      Object.entries({
        'experiments/create': r(['POST'], (q) => this.createExperiment(q)),
        'experiments/get': r(['GET'], (q) => this.getExperiment(q)),
        'experiments/get-by-name': r(['GET'], (q) => this.getExperimentByName(q)),
        'experiments/search': r(['GET', 'POST'], (q) => this.searchExperiments(q)),
        'experiments/update': r(['POST'], (q) => this.updateExperiment(q)),
        'experiments/delete': r(['POST'], (q) => this.deleteExperiment(q, true)),
        'experiments/restore': r(['POST'], (q) => this.deleteExperiment(q, false)),
        'experiments/set-experiment-tag': r(['POST'], (q) => this.setExperimentTag(q)),
        'runs/create': r(['POST'], (q) => this.createRun(q)),
        'runs/update': r(['POST'], (q) => this.updateRun(q)),
        'runs/delete': r(['POST'], (q) => this.deleteRun(q, true)),
        'runs/restore': r(['POST'], (q) => this.deleteRun(q, false)),
        'runs/get': r(['GET'], (q) => this.getRun(q)),
        'runs/log-metric': r(['POST'], (q) => this.logMetric(q)),
        'runs/log-parameter': r(['POST'], (q) => this.logParam(q)),
        'runs/set-tag': r(['POST'], (q) => this.setTag(q)),
        'runs/delete-tag': r(['POST'], (q) => this.deleteTag(q)),
        'runs/log-batch': r(['POST'], (q) => this.logBatch(q)),
        'runs/log-inputs': r(['POST'], (q) => this.logInputs(q)),
        'runs/search': r(['POST'], (q) => this.searchRuns(q)),
        'metrics/get-history': r(['GET'], (q) => this.getMetricHistory(q)),
        'metrics/get-history-bulk-interval': r(['GET'], (q) => this.getHistoryBulkInterval(q)),
        'artifacts/list': r(['GET'], (q) => this.listArtifacts(q)),
      }),
    );
  }

  static async start(options: MlflowTestServerOptions = {}): Promise<MlflowTestServer> {
    const s = new MlflowTestServer(options);
    await s.listen();
    return s;
  }

  override async close(): Promise<void> {
    await super.close();
    if (this.#ownArtifactsDir) rmSync(this.artifactsDir, { recursive: true, force: true });
  }

  /** Local path of a stored proxied artifact, e.g. `artifactFile('0/<run>/artifacts/a.txt')`. */
  artifactFile(path: string): string {
    return pathJoin(this.artifactsDir, ...path.split('/'));
  }

  /**
   * The mlflow-artifacts service (handlers.py `_upload_artifact`, `_download_artifact`,
   * `_list_artifacts_mlflow_artifacts`) and the UI's `/get-artifact`: bodies are streamed to and from
   * disk, never held in memory. Returns false when the request is not for it.
   */
  private async handleArtifacts(req: IncomingMessage, res: ServerResponse, url: URL): Promise<boolean> {
    // The raw path: URL parsing would resolve '..' and '%2E%2E' segments away, which the real server (werkzeug) does not.
    const rawPath = (req.url ?? '/').split('?')[0]!;
    const m = /^\/(?:api|ajax-api)\/2\.0\/mlflow-artifacts\/artifacts(?:\/(.*))?$/.exec(rawPath);
    const getArtifact = url.pathname === '/get-artifact' || /^\/(?:api|ajax-api)\/2\.0\/mlflow\/get-artifact$/.test(url.pathname);
    if (!m && !getArtifact) return false;
    const rec: RecordedRequest = {
      method: req.method ?? 'GET',
      path: url.pathname,
      query: Object.fromEntries(url.searchParams),
      headers: { ...req.headers },
      body: '',
      status: 0,
      at: Date.now(),
    };
    this.requests.push(rec);
    const send = (status: number, body: unknown): void => {
      rec.status = status;
      res.writeHead(status, { 'Content-Type': 'application/json' });
      res.end(typeof body === 'string' ? body : JSON.stringify(body));
    };
    const drain = async () => {
      for await (const _ of req) {
        // discard
      }
    };
    const faulted = await this.faults.apply(url.pathname, req, (status, headers) => {
      rec.status = status;
      res.writeHead(status, { 'Content-Type': 'application/json', ...headers });
      res.end(JSON.stringify({ error_code: FAULT_CODES[status] ?? 'INTERNAL_ERROR', message: `Injected fault: HTTP ${status}` }));
    });
    if (faulted) return true;
    if (!this.authorized(req.headers.authorization)) {
      await drain();
      rec.status = 401;
      res.writeHead(401, { 'Content-Type': 'text/html; charset=utf-8', 'WWW-Authenticate': 'Basic realm="mlflow"' });
      res.end(AUTH_401_BODY);
      return true;
    }
    const invalid = () => send(400, { error_code: 'INVALID_PARAMETER_VALUE', message: 'Invalid path' });
    const download = async (rel: string, name: string) => {
      const file = this.artifactFile(rel);
      const st = await stat(file).catch(() => undefined);
      if (!st || !st.isFile()) {
        if (st?.isDirectory()) {
          rec.status = 500;
          this.internalError(res);
          return;
        }
        send(500, {
          error_code: 'INTERNAL_ERROR',
          message: `The following failures occurred while downloading one or more artifacts from ${this.artifactsDir}:\n##### File ${rel} #####\n[Errno 2] No such file or directory: '${file}'`,
        });
        return;
      }
      rec.status = 200;
      res.writeHead(200, { 'Content-Type': 'application/octet-stream', 'Content-Length': String(st.size), 'Content-Disposition': `attachment; filename=${name}` });
      await pipeline(createReadStream(file), res);
    };

    if (getArtifact) {
      if (req.method !== 'GET') {
        rec.status = 405;
        res.writeHead(405, { 'Content-Type': 'text/html; charset=utf-8', Allow: 'GET, HEAD, OPTIONS' });
        res.end(HTML_405);
        return true;
      }
      const runId = url.searchParams.get('run_id') ?? url.searchParams.get('run_uuid') ?? '';
      const path = url.searchParams.get('path') ?? '';
      if (!artifactPathSafe(path)) return invalid(), true;
      const r = this.runs.get(runId);
      if (!r) return send(404, { error_code: 'RESOURCE_DOES_NOT_EXIST', message: `Run with id=${runId} not found` }), true;
      const root = this.artifactRoot(r.artifact_uri);
      await download(root.proxied ? `${root.rel}/${path}` : '', path.split('/').pop()!);
      return true;
    }

    const rel = m![1] === undefined ? undefined : decodeURIComponent(m![1]);
    if (req.method === 'PUT' && rel !== undefined && rel !== '') {
      if (!artifactPathSafe(rel)) {
        await drain();
        return invalid(), true;
      }
      const dest = this.artifactFile(rel);
      const tmp = `${dest}.${randomBytes(4).toString('hex')}.upload-tmp`;
      await mkdir(pathJoin(dest, '..'), { recursive: true });
      let bytes = 0;
      req.on('data', (c: Buffer) => {
        bytes += c.length;
      });
      try {
        await pipeline(req, createWriteStream(tmp));
        await rename(tmp, dest);
      } catch {
        await rm(tmp, { force: true });
        return true; // the client went away mid-body
      }
      rec.body = `<${bytes} bytes>`;
      await this.onArtifactPut?.(rel, bytes);
      send(200, {});
      return true;
    }
    if (req.method === 'GET' && rel !== undefined && rel !== '') {
      if (!artifactPathSafe(rel)) return invalid(), true;
      await download(rel, rel.split('/').pop()!);
      return true;
    }
    if (req.method === 'GET' && (rel === undefined || rel === '')) {
      const path = url.searchParams.get('path') ?? '';
      if (path && !artifactPathSafe(path)) return invalid(), true;
      const files = (await fileInfos(this.artifactFile(path), '')).map((f) => f);
      send(200, files.length ? { files } : {});
      return true;
    }
    await drain();
    rec.status = 405;
    res.writeHead(405, { 'Content-Type': 'text/html; charset=utf-8', Allow: 'GET, HEAD, OPTIONS, PUT' });
    res.end(HTML_405);
    return true;
  }

  /** A run's artifact root: proxied (`rel` below artifactsDir) or a local directory the server reads itself. */
  private artifactRoot(uri: string): { proxied: true; rel: string } | { proxied: false; dir: string } {
    if (uri.startsWith('mlflow-artifacts:')) return { proxied: true, rel: new URL(uri).pathname.replace(/^\/+/, '').replace(/\/$/, '') };
    if (uri.startsWith('file:')) return { proxied: false, dir: fileURLToPath(uri) };
    return { proxied: false, dir: uri };
  }

  requireAuth(auth: { bearer?: string; basic?: { username: string; password: string } } | undefined): void {
    this.auth = auth;
  }

  experiments(): Array<{ experiment_id: string; name: string; lifecycle_stage: string; artifact_location: string; tags: Record<string, string> }> {
    return [...this.exps.values()].map((e) => ({
      experiment_id: e.experiment_id,
      name: e.name,
      lifecycle_stage: e.lifecycle_stage,
      artifact_location: e.artifact_location,
      tags: Object.fromEntries(e.tags),
    }));
  }

  run(runId: string):
    | { info: Record<string, unknown>; params: Record<string, string>; tags: Record<string, string>; metrics: Array<{ key: string; value: number | string; timestamp: number; step: number }> }
    | undefined {
    const r = this.runs.get(runId);
    if (!r) return undefined;
    return {
      info: this.runInfo(r),
      params: Object.fromEntries(r.params),
      tags: Object.fromEntries(r.tags),
      metrics: r.history.map((m) => ({ ...m, value: wireDouble(m.value) })),
    };
  }

  // -------------------------------------------------------------------------------------------
  // transport

  protected internalError(res: ServerResponse): void {
    res.writeHead(500, { 'Content-Type': 'text/html; charset=utf-8' });
    res.end(HTML_500);
  }

  protected wipe(): void {
    this.exps = new Map();
    this.runs = new Map();
    this.nextExperimentId = 1;
    const now = Date.now();
    this.exps.set('0', {
      experiment_id: '0',
      name: 'Default',
      artifact_location: 'mlflow-artifacts:/0',
      lifecycle_stage: 'active',
      creation_time: now,
      last_update_time: now,
      tags: new Map(),
    });
  }

  private authorized(header: string | undefined): boolean {
    const a = this.auth;
    if (!a || (!a.bearer && !a.basic)) return true;
    if (!header) return false;
    if (a.bearer !== undefined && header === `Bearer ${a.bearer}`) return true;
    if (a.basic && header === `Basic ${Buffer.from(`${a.basic.username}:${a.basic.password}`).toString('base64')}`) return true;
    return false;
  }

  protected async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    if (await this.handleArtifacts(req, res, new URL(req.url ?? '/', 'http://127.0.0.1'))) return;
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const bodyText = Buffer.concat(chunks).toString('utf8');
    const url = new URL(req.url ?? '/', 'http://127.0.0.1');
    const query: Record<string, string | string[]> = {};
    for (const [k, v] of url.searchParams) {
      const prev = query[k];
      query[k] = prev === undefined ? v : Array.isArray(prev) ? [...prev, v] : [prev, v];
    }
    let recordedBody: unknown = bodyText;
    if (bodyText) {
      try {
        recordedBody = JSON.parse(bodyText);
      } catch {
        /* keep raw text */
      }
    }
    const rec: RecordedRequest = {
      method: req.method ?? 'GET',
      path: url.pathname,
      query,
      headers: { ...req.headers },
      body: recordedBody,
      status: 0,
      at: Date.now(),
    };
    this.requests.push(rec);
    const send = (status: number, body: string, headers: Record<string, string> = {}): void => {
      rec.status = status;
      res.writeHead(status, { 'Content-Type': 'application/json', ...headers });
      res.end(body);
    };

    const faulted = await this.faults.apply(url.pathname, req, (status, headers) =>
      send(status, JSON.stringify({ error_code: FAULT_CODES[status] ?? 'INTERNAL_ERROR', message: `Injected fault: HTTP ${status}` }), headers),
    );
    if (faulted) return;

    const html = (status: number, body: string, headers: Record<string, string> = {}): void =>
      send(status, body, { 'Content-Type': 'text/html; charset=utf-8', ...headers });

    if (url.pathname !== '/health' && !this.authorized(req.headers.authorization)) {
      html(401, AUTH_401_BODY, { 'WWW-Authenticate': 'Basic realm="mlflow"' });
      return;
    }

    const method = rec.method;
    if (url.pathname === '/health' || url.pathname === '/version' || url.pathname === '/') {
      if (method !== 'GET' && method !== 'HEAD' && method !== 'OPTIONS') {
        html(405, HTML_405, { Allow: 'GET, HEAD, OPTIONS' });
        return;
      }
      html(200, url.pathname === '/health' ? 'OK' : url.pathname === '/version' ? '2.12.2' : 'Unable to display MLflow UI - landing page (index.html) not found');
      return;
    }
    const m = /^\/(?:api|ajax-api)\/2\.0\/mlflow\/(.+)$/.exec(url.pathname);
    const route = m ? this.routes.get(m[1]!) : undefined;
    if (!route) {
      html(404, HTML_404);
      return;
    }
    const allowed = [...route.methods, ...(route.methods.includes('GET') ? ['HEAD'] : []), 'OPTIONS'];
    const allow = [...allowed].sort().join(', ');
    if (method === 'OPTIONS') {
      html(200, '', { Allow: allow });
      return;
    }
    if (!allowed.includes(method)) {
      html(405, HTML_405, { Allow: allow });
      return;
    }
    const contentType = req.headers['content-type'];
    try {
      const out = await route.handler({
        method: method === 'HEAD' ? 'GET' : method,
        path: url.pathname,
        rawQuery: url.search.slice(1),
        query,
        contentType,
        bodyText,
      });
      send(200, JSON.stringify(out ?? {}));
    } catch (e) {
      if (e instanceof MlflowError) {
        send(e.httpStatus, JSON.stringify({ error_code: e.errorCode, message: e.message }));
      } else {
        html(500, HTML_500);
      }
    }
  }

  // -------------------------------------------------------------------------------------------
  // request decoding (handlers.py `_get_request_json` / `_get_request_message`)

  /** `_get_request_json`: Content-Type check for POST, then `get_json(force=True, silent=True)`. */
  private requestJson(req: Incoming): unknown {
    if (req.method === 'POST' || req.method === 'PUT') {
      const ct = (req.contentType ?? '').split(';')[0]!.trim().toLowerCase();
      if (ct !== 'application/json') throw invalidParam("Bad Request. Content-Type must be one of ['application/json'].");
    }
    if (!req.bodyText.trim()) return null;
    try {
      return JSON.parse(req.bodyText);
    } catch {
      return null; // silent=True
    }
  }

  private message(req: Incoming, proto: MessageSchema, schema: Record<string, Check[]>): Parsed {
    if (req.method === 'GET' && req.rawQuery.length > 0) {
      // querystring_parser: every value is a string; repeated fields become lists; no schema validation.
      const dict: Record<string, unknown> = {};
      for (const [rawKey, v] of Object.entries(req.query)) {
        const k = rawKey.replace(/\[\d*\]$/, '');
        const spec = proto[k];
        dict[k] = spec?.repeated ? (Array.isArray(v) ? v : [v]) : v;
      }
      const { msg, ok } = parseDict(dict, proto);
      if (!ok) throw new UncaughtError('ParseError');
      return msg;
    }
    let json = this.requestJson(req);
    if (typeof json === 'string') {
      try {
        json = JSON.parse(json); // double-encoded JSON from old clients
      } catch {
        throw new UncaughtError('JSONDecodeError');
      }
    }
    if (json === null) json = {};
    if (typeof json !== 'object' || Array.isArray(json)) throw new UncaughtError('not a dict');
    const obj = json as Record<string, unknown>;
    const { msg, ok } = parseDict(obj, proto);
    validateSchema(obj, schema, ok);
    return msg;
  }

  // -------------------------------------------------------------------------------------------
  // lookups and store-specific errors

  private get sqlite(): boolean {
    return this.store === 'sqlite';
  }

  private experiment(id: string): Experiment {
    if (this.sqlite) {
      const key = id === '' ? '0' : id; // `experiment_id or DEFAULT_EXPERIMENT_ID`
      if (!/^\s*[+-]?\d+\s*$/.test(key)) throw new UncaughtError(`int(${pyRepr(id)})`);
      const e = this.exps.get(String(Number(key)));
      if (!e) throw new MlflowError('RESOURCE_DOES_NOT_EXIST', `No Experiment with id=${id} exists`);
      return e;
    }
    if (!/^[a-zA-Z0-9][\w-]{0,63}$/.test(id)) throw invalidParam(`Invalid experiment ID: '${id}'`);
    const e = this.exps.get(id);
    if (!e) throw new MlflowError('RESOURCE_DOES_NOT_EXIST', `Could not find experiment with ID ${id}`);
    return e;
  }

  private experimentByName(name: string): Experiment | undefined {
    const all = [...this.exps.values()].filter((e) => e.name === name);
    if (this.sqlite) return all[0];
    return all.find((e) => e.lifecycle_stage === 'active');
  }

  private getRunRecord(runId: string): RunRecord {
    if (!this.sqlite) validateRunId(runId);
    const r = this.runs.get(runId);
    if (!r) {
      throw new MlflowError('RESOURCE_DOES_NOT_EXIST', this.sqlite ? `Run with id=${runId} not found` : `Run '${runId}' not found`);
    }
    return r;
  }

  private checkRunActive(r: RunRecord): void {
    if (r.lifecycle_stage === 'active') return;
    throw invalidParam(
      this.sqlite
        ? `The run ${r.run_id} must be in the 'active' state. Current state is ${r.lifecycle_stage}.`
        : `The run ${r.run_id} must be in 'active' lifecycle_stage.`,
    );
  }

  /** Lookup for writes: run-id format, existence, active. */
  private activeRun(runId: string): RunRecord {
    validateRunId(runId);
    const r = this.getRunRecord(runId);
    this.checkRunActive(r);
    return r;
  }

  private runIdOf(msg: Parsed): string {
    return (msg.run_id as string | undefined) || (msg.run_uuid as string | undefined) || '';
  }

  private runInfo(r: RunRecord): Record<string, unknown> {
    return {
      run_uuid: r.run_id,
      experiment_id: r.experiment_id,
      run_name: r.run_name,
      user_id: r.user_id,
      status: r.status,
      start_time: r.start_time,
      ...(r.end_time ? { end_time: r.end_time } : {}),
      artifact_uri: r.artifact_uri,
      lifecycle_stage: r.lifecycle_stage,
      run_id: r.run_id,
    };
  }

  private runData(r: RunRecord): Record<string, unknown> {
    const out: Record<string, unknown> = {};
    const metrics = [...r.latest.values()].map((m) => ({ key: m.key, value: wireDouble(m.value), timestamp: m.timestamp, step: m.step }));
    if (metrics.length) out.metrics = metrics;
    if (r.params.size) out.params = [...r.params].map(([key, value]) => ({ key, value }));
    if (r.tags.size) out.tags = [...r.tags].map(([key, value]) => ({ key, value }));
    return out;
  }

  private experimentJson(e: Experiment): Record<string, unknown> {
    return {
      experiment_id: e.experiment_id,
      name: e.name,
      artifact_location: e.artifact_location,
      lifecycle_stage: e.lifecycle_stage,
      last_update_time: e.last_update_time,
      creation_time: e.creation_time,
      ...(e.tags.size ? { tags: [...e.tags].map(([key, value]) => ({ key, value })) } : {}),
    };
  }

  private sqliteIntegrityError(what: string, sql: string, params: unknown[]): string {
    return `(sqlite3.IntegrityError) ${what}\n[SQL: ${sql}]\n[parameters: (${params.map(pyRepr).join(', ')})]\n(Background on this error at: https://sqlalche.me/e/14/gkpj)`;
  }

  // -------------------------------------------------------------------------------------------
  // experiments

  private createExperiment(req: Incoming): unknown {
    const msg = this.message(req, PROTO.createExperiment, { name: ['required', 'string'], artifact_location: ['string'] });
    const name = msg.name as string;
    const tags = ((msg.tags ?? []) as Parsed[]).map((t) => {
      const key = (t.key as string | undefined) ?? '';
      const value = (t.value as string | undefined) ?? '';
      // Real 2.12.2 does not validate experiment tags passed to experiments/create (only set-experiment-tag does).
      return [key, value] as const;
    });
    const now = Date.now();
    if (this.experimentByName(name)) {
      if (this.sqlite) {
        const sql = 'INSERT INTO experiments (name, artifact_location, lifecycle_stage, creation_time, last_update_time) VALUES (?, ?, ?, ?, ?)';
        const detail = this.sqliteIntegrityError('UNIQUE constraint failed: experiments.name', sql, [name, null, 'active', now, now]);
        throw new MlflowError('RESOURCE_ALREADY_EXISTS', `Experiment(name=${name}) already exists. Error: ${detail}`);
      }
      throw new MlflowError('RESOURCE_ALREADY_EXISTS', `Experiment '${name}' already exists.`);
    }
    let id: string;
    if (this.sqlite) id = String(this.nextExperimentId++);
    else {
      do id = String(randomInt(1, 10)) + String(randomInt(0, 1e8)).padStart(8, '0') + String(randomInt(0, 1e9)).padStart(9, '0');
      while (this.exps.has(id));
    }
    this.exps.set(id, {
      experiment_id: id,
      name,
      // A relative path is resolved against the server's own working directory, as the real server does.
      artifact_location: absoluteArtifactLocation(msg.artifact_location as string | undefined) || `mlflow-artifacts:/${id}`,
      lifecycle_stage: 'active',
      creation_time: now,
      last_update_time: now,
      tags: new Map(tags),
    });
    return { experiment_id: id };
  }

  private getExperiment(req: Incoming): unknown {
    const msg = this.message(req, PROTO.getExperiment, { experiment_id: ['required', 'string'] });
    return { experiment: this.experimentJson(this.experiment((msg.experiment_id as string | undefined) ?? '')) };
  }

  private getExperimentByName(req: Incoming): unknown {
    const msg = this.message(req, PROTO.getExperimentByName, { experiment_name: ['required', 'string'] });
    const name = (msg.experiment_name as string | undefined) ?? '';
    const e = this.experimentByName(name);
    if (!e) throw new MlflowError('RESOURCE_DOES_NOT_EXIST', `Could not find experiment with name '${name}'`);
    return { experiment: this.experimentJson(e) };
  }

  private searchExperiments(req: Incoming): unknown {
    const msg = this.message(req, PROTO.searchExperiments, {
      view_type: ['intlike'],
      max_results: ['intlike'],
      order_by: ['array'],
      filter: ['string'],
      page_token: ['string'],
    });
    const max = (msg.max_results as number | undefined) ?? 0;
    if (max < 1) throw invalidParam(`Invalid value for max_results. It must be a positive integer, but got ${max}`);
    if (max > SEARCH_MAX_RESULTS) throw invalidParam(`Invalid value for max_results. It must be at most ${SEARCH_MAX_RESULTS}, but got ${max}`);
    const view = (msg.view_type as string | undefined) ?? 'ACTIVE_ONLY';
    const clauses = parseFilter(msg.filter as string | undefined, EXPERIMENT_ATTRS, ['attribute', 'tag']);
    const order = parseOrderBy(msg.order_by as string[] | undefined, EXPERIMENT_ATTRS, ['attribute']);
    const offset = parsePageToken(msg.page_token as string | undefined);
    const value = (e: Experiment, k: { type: string; key: string }): string | number | undefined => {
      if (k.type === 'tag') return e.tags.get(k.key);
      if (k.key === 'experiment_id') return /^\d+$/.test(e.experiment_id) ? Number(e.experiment_id) : e.experiment_id;
      return (e as unknown as Record<string, string | number>)[k.key];
    };
    const list = [...this.exps.values()]
      .filter((e) => view === 'ALL' || (view === 'ACTIVE_ONLY') === (e.lifecycle_stage === 'active'))
      .filter((e) => clauses.every((c) => compare(value(e, c), c.comparator, c.value)))
      .sort((a, b) => {
        const keys: OrderKey[] = [...order];
        if (!keys.some((k) => k.key === 'creation_time')) keys.push({ type: 'attribute', key: 'creation_time', asc: false });
        keys.push({ type: 'attribute', key: 'experiment_id', asc: true });
        for (const k of keys) {
          const r = orderCompare(value(a, k), value(b, k), k.asc);
          if (r) return r;
        }
        return 0;
      });
    const page = list.slice(offset, offset + max);
    const out: Record<string, unknown> = {};
    if (page.length) out.experiments = page.map((e) => this.experimentJson(e));
    if (offset + max < list.length) out.next_page_token = createPageToken(offset + max);
    return out;
  }

  private updateExperiment(req: Incoming): unknown {
    const msg = this.message(req, PROTO.updateExperiment, { experiment_id: ['required', 'string'], new_name: ['string', 'required'] });
    const e = this.experiment((msg.experiment_id as string | undefined) ?? '');
    const newName = msg.new_name as string;
    if (e.lifecycle_stage !== 'active') throw new MlflowError('INVALID_STATE', 'Cannot rename a non-active experiment.');
    const other = this.experimentByName(newName);
    if (other && other !== e) {
      if (this.sqlite) {
        const sql = 'UPDATE experiments SET name=?, last_update_time=? WHERE experiments.experiment_id = ?';
        throw new MlflowError('BAD_REQUEST', this.sqliteIntegrityError('UNIQUE constraint failed: experiments.name', sql, [newName, Date.now(), Number(e.experiment_id)]));
      }
      throw new MlflowError('RESOURCE_ALREADY_EXISTS', `Experiment '${newName}' already exists.`);
    }
    e.name = newName;
    e.last_update_time = Date.now();
    return {};
  }

  private deleteExperiment(req: Incoming, del: boolean): unknown {
    const msg = this.message(req, PROTO.experimentId, { experiment_id: ['required', 'string'] });
    const id = (msg.experiment_id as string | undefined) ?? '';
    if (!this.sqlite && del && id === '0') {
      throw invalidParam("Cannot delete the default experiment '0'. This is an internally reserved experiment.");
    }
    const e = this.experiment(id);
    if (e.lifecycle_stage !== (del ? 'active' : 'deleted')) {
      throw new MlflowError(
        'RESOURCE_DOES_NOT_EXIST',
        this.sqlite ? `No Experiment with id=${id} exists` : del ? `Could not find experiment with ID ${id}` : `Could not find deleted experiment with ID ${id}`,
      );
    }
    if (!del && !this.sqlite && this.experimentByName(e.name)) {
      throw new MlflowError('RESOURCE_ALREADY_EXISTS', `Cannot restore experiment with ID ${id}. An experiment with name ${e.name} already exists.`);
    }
    const now = Date.now();
    e.lifecycle_stage = del ? 'deleted' : 'active';
    e.last_update_time = now;
    if (this.sqlite) {
      // sqlite store: deleting an experiment marks its runs deleted; restoring reactivates them.
      for (const r of this.runs.values()) {
        if (r.experiment_id !== e.experiment_id) continue;
        r.lifecycle_stage = del ? 'deleted' : 'active';
        r.deleted_time = del ? now : null;
      }
    }
    return {};
  }

  private setExperimentTag(req: Incoming): unknown {
    const msg = this.message(req, PROTO.setExperimentTag, {
      experiment_id: ['required', 'string'],
      key: ['required', 'string'],
      value: ['string'],
    });
    const key = msg.key as string;
    const value = validateTag(key, (msg.value as string | undefined) ?? '', false, this.sqlite ? MAX_EXPERIMENT_TAG_VAL_LENGTH : Infinity);
    const e = this.experiment((msg.experiment_id as string | undefined) ?? '');
    if (e.lifecycle_stage !== 'active') {
      throw invalidParam(`The experiment ${e.experiment_id} must be in the 'active' state. Current state is ${e.lifecycle_stage}.`);
    }
    e.tags.set(key, value);
    return {};
  }

  // -------------------------------------------------------------------------------------------
  // runs

  private createRun(req: Incoming): unknown {
    const msg = this.message(req, PROTO.createRun, { experiment_id: ['string'], start_time: ['intlike'], run_name: ['string'] });
    const experimentId = (msg.experiment_id as string | undefined) ?? '';
    const e = this.experiment(experimentId);
    if (e.lifecycle_stage !== 'active') {
      if (this.sqlite) throw invalidParam(`The experiment ${e.experiment_id} must be in the 'active' state. Current state is ${e.lifecycle_stage}.`);
      throw new MlflowError('INVALID_STATE', `Could not create run under non-active experiment with ID ${experimentId}.`);
    }
    const tags = new Map<string, string>();
    for (const t of (msg.tags ?? []) as Parsed[]) {
      const key = (t.key as string | undefined) ?? '';
      tags.set(key, validateTag(key, (t.value as string | undefined) ?? '', this.truncate));
    }
    const runName = (msg.run_name as string | undefined) ?? '';
    const tagName = ((msg.tags ?? []) as Parsed[]).find((t) => t.key === 'mlflow.runName')?.value as string | undefined;
    if (runName && tagName && runName !== tagName) {
      throw invalidParam(
        `Both 'run_name' argument and 'mlflow.runName' tag are specified, but with different values (run_name='${runName}', mlflow.runName='${tagName}').`,
      );
    }
    const name = runName || tagName || randomName();
    if (!tagName) tags.set('mlflow.runName', name);
    const runId = randomBytes(16).toString('hex');
    const startTime = (msg.start_time as number | undefined) ?? 0;
    const userId = (msg.user_id as string | undefined) ?? '';
    if (this.sqlite && experimentId === '') {
      const sql =
        'INSERT INTO runs (run_uuid, name, source_type, source_name, entry_point_name, user_id, status, start_time, end_time, deleted_time, source_version, lifecycle_stage, artifact_uri, experiment_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)';
      const params = [runId, name, 'UNKNOWN', '', '', userId, 'RUNNING', startTime, null, null, '', 'active', `${e.artifact_location}/${runId}/artifacts`, ''];
      throw new MlflowError('BAD_REQUEST', this.sqliteIntegrityError('FOREIGN KEY constraint failed', sql, params));
    }
    const r: RunRecord = {
      run_id: runId,
      experiment_id: e.experiment_id,
      run_name: name,
      user_id: userId,
      status: 'RUNNING',
      start_time: startTime,
      end_time: null,
      artifact_uri: `${e.artifact_location}/${runId}/artifacts`,
      lifecycle_stage: 'active',
      deleted_time: null,
      params: new Map(),
      tags,
      history: [],
      pointKeys: new Set(),
      latest: new Map(),
    };
    this.runs.set(runId, r);
    return { run: { info: this.runInfo(r), data: this.runData(r) } };
  }

  private updateRun(req: Incoming): unknown {
    const msg = this.message(req, PROTO.updateRun, {
      run_id: ['required', 'string'],
      end_time: ['intlike'],
      status: ['string'],
      run_name: ['string'],
    });
    const runId = this.runIdOf(msg);
    const r = this.getRunRecord(runId);
    this.checkRunActive(r);
    if (msg.status !== undefined) r.status = msg.status as RunStatus;
    if (msg.end_time !== undefined) r.end_time = msg.end_time as number;
    const runName = msg.run_name as string | undefined;
    if (runName) {
      r.run_name = runName;
      r.tags.set('mlflow.runName', runName);
    }
    return { run_info: this.runInfo(r) };
  }

  private deleteRun(req: Incoming, del: boolean): unknown {
    const msg = this.message(req, PROTO.runRef, { run_id: ['required', 'string'] });
    const r = this.getRunRecord(this.runIdOf(msg));
    r.lifecycle_stage = del ? 'deleted' : 'active';
    r.deleted_time = del ? Date.now() : null;
    return {};
  }

  private getRun(req: Incoming): unknown {
    const msg = this.message(req, PROTO.runRef, { run_id: ['required', 'string'] });
    const r = this.getRunRecord(this.runIdOf(msg));
    return { run: { info: this.runInfo(r), data: this.runData(r), inputs: {} } };
  }

  private storeMetrics(r: RunRecord, metrics: MetricPoint[]): void {
    for (const m0 of metrics) {
      let m = m0;
      if (this.sqlite && (m.value === Infinity || m.value === -Infinity)) m = { ...m, value: Math.sign(m.value) * SQLITE_DOUBLE_MAX };
      if (this.sqlite) {
        const id = `${m.key}\u0000${m.timestamp}\u0000${m.step}\u0000${Number.isNaN(m.value) ? 'nan' : m.value}`;
        if (r.pointKeys.has(id)) continue;
        r.pointKeys.add(id);
      }
      r.history.push(m);
      const cur = r.latest.get(m.key);
      if (!cur || this.newer(m, cur)) r.latest.set(m.key, m);
    }
  }

  /** Latest-metric rule: max step, then max timestamp, then max value. */
  private newer(a: MetricPoint, b: MetricPoint): boolean {
    if (a.step !== b.step) return a.step > b.step;
    if (a.timestamp !== b.timestamp) return a.timestamp > b.timestamp;
    if (this.sqlite) {
      // sqlite compares the stored value; NaN is stored as 0 with is_nan set
      const av = Number.isNaN(a.value) ? 0 : a.value;
      const bv = Number.isNaN(b.value) ? 0 : b.value;
      return av > bv;
    }
    return a.value > b.value; // Python tuple comparison: NaN never wins nor loses
  }

  private setRunTag(r: RunRecord, key: string, value: string): void {
    r.tags.set(key, value);
    if (key === 'mlflow.runName') r.run_name = value;
  }

  private logMetric(req: Incoming): unknown {
    const msg = this.message(req, PROTO.logMetric, {
      run_id: ['required', 'string'],
      key: ['required', 'string'],
      value: ['required', 'floatlike'],
      timestamp: ['intlike', 'required'],
      step: ['intlike'],
    });
    const runId = this.runIdOf(msg);
    validateRunId(runId);
    const point = {
      key: (msg.key as string | undefined) ?? '',
      value: (msg.value as number | undefined) ?? 0,
      timestamp: (msg.timestamp as number | undefined) ?? 0,
      step: (msg.step as number | undefined) ?? 0,
    };
    validateMetric(point.key, point.value, point.timestamp);
    const r = this.activeRun(runId);
    this.storeMetrics(r, [point]);
    return {};
  }

  private changedParamSingle(runId: string, key: string, oldValue: string, newValue: string): MlflowError {
    return invalidParam(
      `Changing param values is not allowed. Param with key='${key}' was already logged with value='${oldValue}' for run ID='${runId}'. Attempted logging new value '${newValue}'.`,
    );
  }

  private logParam(req: Incoming): unknown {
    const msg = this.message(req, PROTO.keyValue, { run_id: ['required', 'string'], key: ['required', 'string'], value: ['string'] });
    const runId = this.runIdOf(msg);
    validateRunId(runId);
    const key = (msg.key as string | undefined) ?? '';
    const value = validateParam(key, (msg.value as string | undefined) ?? '', this.truncate);
    const r = this.activeRun(runId);
    const old = r.params.get(key);
    if (old !== undefined && old !== value) throw this.changedParamSingle(runId, key, old, value);
    r.params.set(key, value);
    return {};
  }

  private setTag(req: Incoming): unknown {
    const msg = this.message(req, PROTO.keyValue, { run_id: ['required', 'string'], key: ['required', 'string'], value: ['string'] });
    const runId = this.runIdOf(msg);
    validateRunId(runId);
    const key = (msg.key as string | undefined) ?? '';
    const value = validateTag(key, (msg.value as string | undefined) ?? '', this.truncate);
    const r = this.activeRun(runId);
    this.setRunTag(r, key, value);
    return {};
  }

  private deleteTag(req: Incoming): unknown {
    const msg = this.message(req, PROTO.deleteTag, { run_id: ['required', 'string'], key: ['required', 'string'] });
    const runId = this.runIdOf(msg);
    const r = this.activeRun(runId);
    const key = (msg.key as string | undefined) ?? '';
    if (!r.tags.has(key)) throw new MlflowError('RESOURCE_DOES_NOT_EXIST', `No tag with name: ${key} in run with id ${runId}`);
    r.tags.delete(key);
    return {};
  }

  private logBatch(req: Incoming): unknown {
    // `_validate_batch_log_api_req(_get_request_json())`: len(None) fails for a body that is not JSON.
    const raw = this.requestJson(req);
    if (raw === null) throw new UncaughtError("object of type 'NoneType' has no len()");
    const itemsHaveKeys = (v: unknown): boolean => Array.isArray(v) && v.every((x) => x !== null && typeof x === 'object' && (x as Parsed).key !== undefined && (x as Parsed).key !== null && (x as Parsed).key !== '');
    const metricsComplete = (v: unknown): boolean =>
      itemsHaveKeys(v) &&
      (v as Parsed[]).every((m) => m.value !== undefined && m.value !== null && m.value !== '' && m.timestamp !== undefined && m.timestamp !== null && m.timestamp !== '');
    const msg = this.message(req, PROTO.logBatch, {
      run_id: ['string', 'required'],
      metrics: ['array', metricsComplete],
      params: ['array', itemsHaveKeys],
      tags: ['array', itemsHaveKeys],
    });
    const runId = this.runIdOf(msg);
    validateRunId(runId);
    const metrics: MetricPoint[] = ((msg.metrics ?? []) as Parsed[]).map((m) => ({
      key: (m.key as string | undefined) ?? '',
      value: (m.value as number | undefined) ?? 0,
      timestamp: (m.timestamp as number | undefined) ?? 0,
      step: (m.step as number | undefined) ?? 0,
    }));
    const kv = (list: unknown): Array<{ key: string; value: string }> =>
      ((list ?? []) as Parsed[]).map((p) => ({ key: (p.key as string | undefined) ?? '', value: (p.value as string | undefined) ?? '' }));
    let params = kv(msg.params);
    let tags = kv(msg.tags);
    validateBatchLimits(metrics.length, params.length, tags.length);
    for (const m of metrics) validateMetric(m.key, m.value, m.timestamp);
    const seen = new Set<string>();
    const dupes: string[] = [];
    for (const p of params) {
      if (seen.has(p.key)) dupes.push(p.key);
      seen.add(p.key);
    }
    if (dupes.length) {
      throw invalidParam(
        `Duplicate parameter keys have been submitted: ${pyRepr(dupes)}. Please ensure the request contains only one param value per param key.`,
      );
    }
    params = params.map((p) => ({ key: p.key, value: validateParam(p.key, p.value, this.truncate) }));
    tags = tags.map((t) => ({ key: t.key, value: validateTag(t.key, t.value, this.truncate) }));
    const r = this.activeRun(runId);
    if (this.sqlite) {
      const changed = params
        .filter((p) => r.params.has(p.key) && r.params.get(p.key) !== p.value)
        .map((p) => ({ key: p.key, old_value: r.params.get(p.key)!, new_value: p.value }));
      if (changed.length) {
        throw invalidParam(`Changing param values is not allowed. Params were already logged='${pyRepr(changed)}' for run ID='${runId}'.`);
      }
      for (const p of params) r.params.set(p.key, p.value);
    } else {
      // file store: params are written one by one; any failure is re-raised as INTERNAL_ERROR
      for (const p of params) {
        const old = r.params.get(p.key);
        if (old !== undefined && old !== p.value) {
          throw new MlflowError('INTERNAL_ERROR', this.changedParamSingle(runId, p.key, old, p.value).message);
        }
        r.params.set(p.key, p.value);
      }
    }
    this.storeMetrics(r, metrics);
    for (const t of tags) this.setRunTag(r, t.key, t.value);
    return {};
  }

  private logInputs(req: Incoming): unknown {
    const msg = this.message(req, { run_id: S }, { run_id: ['required', 'string'] });
    this.activeRun(this.runIdOf(msg));
    return {};
  }

  private getMetricHistory(req: Incoming): unknown {
    const msg = this.message(req, PROTO.getMetricHistory, {
      run_id: ['string', 'required'],
      metric_key: ['string', 'required'],
      page_token: ['string'],
    });
    const runId = this.runIdOf(msg);
    const key = (msg.metric_key as string | undefined) ?? '';
    let points: MetricPoint[];
    if (this.sqlite) {
      // sqlite: a plain query on the metrics table (no run check); order as observed (timestamp, step)
      points = (this.runs.get(runId)?.history ?? [])
        .filter((m) => m.key === key)
        .sort((a, b) => a.timestamp - b.timestamp || a.step - b.step || (a.value < b.value ? -1 : a.value > b.value ? 1 : 0));
    } else {
      validateRunId(runId);
      validateMetricKey(key);
      points = this.getRunRecord(runId).history.filter((m) => m.key === key);
    }
    if (!points.length) return {};
    return { metrics: points.map((m) => ({ key: m.key, value: wireDouble(m.value), timestamp: m.timestamp, step: m.step })) };
  }

  /** Simplified: all points of the key per run (step range applied), sorted by step, at most max_results per run. */
  private getHistoryBulkInterval(req: Incoming): unknown {
    const msg = this.message(req, PROTO.bulkInterval, {});
    const runIds = (msg.run_ids as string[] | undefined) ?? [];
    if (runIds.length === 0) throw invalidParam('GetMetricHistoryBulkInterval request must specify at least one run_id.');
    if (runIds.length > 100) throw invalidParam(`GetMetricHistoryBulkInterval request cannot specify more than 100 run_ids. Received ${runIds.length} run_ids.`);
    const key = (msg.metric_key as string | undefined) ?? '';
    if (!key) throw invalidParam('GetMetricHistoryBulkInterval request must specify a metric_key.');
    const max = (msg.max_results as number | undefined) ?? 2500;
    if (max < 1 || max > 2500) throw invalidParam('max_results must be between 1 and 2500.');
    const start = msg.start_step as number | undefined;
    const end = msg.end_step as number | undefined;
    const out: unknown[] = [];
    for (const id of runIds) {
      const r = this.getRunRecord(id);
      r.history
        .filter((m) => m.key === key && (start === undefined || m.step >= start) && (end === undefined || m.step <= end))
        .sort((a, b) => a.step - b.step || a.timestamp - b.timestamp)
        .slice(0, max)
        .forEach((m) => out.push({ key: m.key, value: wireDouble(m.value), timestamp: m.timestamp, step: m.step, run_id: id }));
    }
    return out.length ? { metrics: out } : {};
  }

  private async listArtifacts(req: Incoming): Promise<unknown> {
    const msg = this.message(req, PROTO.listArtifacts, { run_id: ['string', 'required'] });
    const path = msg.path as string | undefined;
    if (path !== undefined && !artifactPathSafe(path)) throw invalidParam('Invalid path');
    const r = this.getRunRecord(this.runIdOf(msg));
    const root = this.artifactRoot(r.artifact_uri);
    const dir = root.proxied ? this.artifactFile(path ? `${root.rel}/${path}` : root.rel) : pathJoin(root.dir, ...(path ? path.split('/') : []));
    const files = await fileInfos(dir, path ?? '');
    return files.length ? { root_uri: r.artifact_uri, files } : { root_uri: r.artifact_uri };
  }

  private searchRuns(req: Incoming): unknown {
    const msg = this.message(req, PROTO.searchRuns, {
      experiment_ids: ['array'],
      filter: ['string'],
      max_results: ['intlike', (v) => Number(v) <= SEARCH_MAX_RESULTS],
      order_by: ['array', (v) => Array.isArray(v) && v.every((x) => typeof x === 'string')],
    });
    const max = (msg.max_results as number | undefined) ?? 1000;
    if (max > SEARCH_MAX_RESULTS) {
      throw invalidParam(
        `Invalid value ${max} for parameter 'max_results' supplied. Hint: Value was of type 'int'. See the API docs for more information about request parameters.`,
      );
    }
    if (max < 1) throw invalidParam(`Invalid value for request parameter max_results. It must be at least 1, but got value ${max}`);
    const ids = new Set((msg.experiment_ids as string[] | undefined) ?? []);
    const view = (msg.run_view_type as string | undefined) ?? 'ACTIVE_ONLY';
    const clauses = parseFilter(msg.filter as string | undefined, RUN_ATTRS, ['metric', 'parameter', 'tag', 'attribute']);
    const order = parseOrderBy(msg.order_by as string[] | undefined, RUN_ATTRS, ['metric', 'parameter', 'tag', 'attribute']);
    const offset = parsePageToken(msg.page_token as string | undefined);
    const value = (r: RunRecord, c: { type: string; key: string }): string | number | undefined => {
      switch (c.type) {
        case 'metric':
          return r.latest.get(c.key)?.value;
        case 'parameter':
          return r.params.get(c.key);
        case 'tag':
          return r.tags.get(c.key);
        default:
          if (c.key === 'run_name') return r.run_name;
          if (c.key === 'end_time') return r.end_time ?? undefined;
          return (r as unknown as Record<string, string | number>)[c.key];
      }
    };
    const matches = (r: RunRecord, c: Clause): boolean => {
      const v = value(r, c);
      return compare(typeof v === 'number' && Number.isNaN(v) ? undefined : v, c.comparator, c.value);
    };
    const list = [...this.runs.values()]
      .filter((r) => ids.has(r.experiment_id))
      .filter((r) => view === 'ALL' || (view === 'ACTIVE_ONLY') === (r.lifecycle_stage === 'active'))
      .filter((r) => clauses.every((c) => matches(r, c)))
      .sort((a, b) => {
        for (const k of order) {
          const res = orderCompare(value(a, k), value(b, k), k.asc);
          if (res) return res;
        }
        if (!order.some((k) => k.type === 'attribute' && k.key === 'start_time')) {
          const res = b.start_time - a.start_time;
          if (res) return res;
        }
        return a.run_id < b.run_id ? -1 : a.run_id > b.run_id ? 1 : 0;
      });
    const page = list.slice(offset, offset + max);
    const out: Record<string, unknown> = {};
    if (page.length) out.runs = page.map((r) => ({ info: this.runInfo(r), data: this.runData(r), inputs: {} }));
    // sqlite hands out a token whenever the page is full; the file store only when more runs remain
    if (this.sqlite ? page.length === max : offset + max < list.length) out.next_page_token = createPageToken(offset + max);
    return out;
  }
}

export { pyRepr, pyStr };

// ---------------------------------------------------------------------------------------------
// standalone use

await runStandalone(
  import.meta.url,
  (opt, flag) =>
    MlflowTestServer.start({
      port: Number(opt('--port') ?? 5000),
      store: opt('--store') === 'file' ? 'file' : 'sqlite',
      truncateLongValues: !flag('--no-truncate'),
    }),
  (server) => server.url,
  (server) => server.close(),
);

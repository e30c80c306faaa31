// A local Comet ML REST API v2 test server (the write endpoints of
// /work/shared/reference/wandb-comet-aim.md Part B, B.1/B.2/B.4/B.5). Loopback only, in memory.
//
// Standalone: node --import tsx test/backends/comet_ml/server.ts [--port 8080] [--api-key KEY] [--heartbeat-ms 2000]
//
// Behaviour chosen where the reference leaves room (every error body is JSON `{"msg": "...", "code": <status>}`):
// - order of checks: fault injection → unknown path 404 → wrong method 405 (with `Allow`) → auth 401
//   → rate limit 429 → Content-Type (POST) 400 → JSON body 400 → field checks 400 → experiment key 400.
// - auth: `Authorization: <key>` or `Comet-Sdk-Api: <key>` (exact match, no `Bearer ` prefix) else 401.
// - unknown or missing `experimentKey` → 400 (`Invalid experimentKey ...`), like Comet's REST API which answers
//   a bad key as a bad request.
// - POST without `Content-Type: application/json` (parameters such as `; charset=utf-8` are fine) → 400.
// - `timestamp`, `startTimeMillis`, `endTimeMillis`: integer epoch milliseconds with 1e12 < t < 1e14
//   (catches seconds and micro/nanoseconds). `step`, `epoch`: safe integers. JSON `null` = field absent.
// - rate limits: sliding window per API key and category (`metric` = /metric, `parameter` = /parameter,
//   `other` = everything else, `create` and `set-status` included); requests refused with 429 do not count;
//   `Retry-After` = whole seconds until the oldest counted request leaves the window (at least 1).
// - success body of write calls: `{"msg": "OK", "code": 200}`.
// - writes after the end time was posted are accepted and set `writesAfterEnd` (set-status heartbeats included;
//   set-start-end-time itself does not set it). An end time before the (posted) start time → 400.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { randomBytes, randomInt } from 'node:crypto';
import { LoopbackTestServer, type Fault, type RecordedRequest, runStandalone } from '../../support/loopback-server.js';
export type { Fault, RecordedRequest } from '../../support/loopback-server.js';

export const COMET_BASE_PATH = '/api/rest/v2';
export const DEFAULT_API_KEY = 'comet-test-api-key';
/** Documented per-user limits (reference B.1), per minute. */
export const DEFAULT_LIMITS: Readonly<CometRateLimits> = { metric: 12_000, parameter: 10_000, output: 12_000, other: 8_000 };

export type RateCategory = 'metric' | 'parameter' | 'output' | 'other';
export type CometRateLimits = Record<RateCategory, number>;

export interface CometTestServerOptions {
  /** The only accepted API key. Default DEFAULT_API_KEY. */
  apiKey?: string;
  /** `isAliveBeatDurationMillis` answered by set-status. Default 2000. */
  heartbeatMs?: number;
  /** Requests per `windowMs` per API key and category; Infinity disables one. Default DEFAULT_LIMITS. */
  limits?: Partial<CometRateLimits>;
  /** Rate-limit window. Default 60000. */
  windowMs?: number;
  /** Workspace used when create has no `workspaceName`. Default 'test-user'. */
  defaultWorkspace?: string;
  /** 0 (default) = random free port. */
  port?: number;
}



export type ParameterValue = string | number | boolean;
export type OtherValue = string | number | boolean;

export interface CometParameter {
  value: ParameterValue;
  step: number | null;
  /** client timestamp, or the server's receive time when the client sent none */
  timestamp: number;
  context: string | null;
}

export interface CometMetric {
  name: string;
  value: number | string;
  step: number | null;
  epoch: number | null;
  /** client timestamp, or the server's receive time when the client sent none */
  timestamp: number;
  context: string | null;
}

export interface CometExperiment {
  experimentKey: string;
  workspaceName: string;
  projectName: string;
  experimentName: string;
  /** server time of create */
  createdAt: number;
  /** parameter name → last logged value (Comet keeps the latest) */
  parameters: Record<string, CometParameter>;
  /** every metric point, in arrival order */
  metrics: CometMetric[];
  /** log-other key → last value */
  others: Record<string, { value: OtherValue; timestamp: number }>;
  /** in first-added order, without duplicates */
  tags: string[];
  /** null until posted via set-start-end-time */
  startTimeMillis: number | null;
  endTimeMillis: number | null;
  /** console output lines (write/experiment/output), in arrival order */
  output: { output: string; stderr: boolean; localTimestamp: number | null; offset: number | null; runContext: string | null }[];
  /** lines per output request, in arrival order */
  outputRequests: number[];
  /** upload-asset requests (images, tables, assets), in arrival order */
  assets: CometAsset[];
  /** server receive times of set-status calls */
  heartbeats: number[];
  /** true once any write or heartbeat arrived after an end time was posted */
  writesAfterEnd: boolean;
}

export interface CometAsset {
  /** query `type` (default `asset`) */
  type: string;
  fileName: string;
  /** query `extension` as sent (Comet's clients send it with or without the dot) */
  extension: string | null;
  step: number | null;
  overwrite: boolean;
  context: string | null;
  /** the `metadata` form part, parsed (a JSON object), or null when absent */
  metadata: Record<string, unknown> | null;
  /** the `file` part: its filename and Content-Type, and the bytes */
  partFilename: string;
  partType: string;
  bytes: Buffer;
}

/** Asset types Comet's clients send (Java SDK AssetType, plus `image` as the Python SDK sends it). */
export const ASSET_TYPES = new Set(['asset', 'image', 'dataframe', 'source_code', 'notebook', 'text-sample', 'audio', 'video', 'histogram3d', 'confusion-matrix', 'model-element', 'embeddings']);

/** A deep copy (asset bytes stay Buffers). */
function copyExperiment(e: CometExperiment): CometExperiment {
  const c = structuredClone(e);
  c.assets.forEach((a, i) => (a.bytes = Buffer.from(e.assets[i]!.bytes)));
  return c;
}

class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}
const bad = (msg: string): ApiError => new ApiError(400, msg);

type Body = Record<string, unknown>;

interface Incoming {
  query: Record<string, string | string[]>;
  body: Body;
  /** multipart routes: the parsed form */
  form?: FormData;
  now: number;
}

interface Route {
  method: 'GET' | 'POST';
  /** POST body: JSON (default) or multipart/form-data */
  multipart?: boolean;
  category: RateCategory;
  handler: (req: Incoming) => unknown | Promise<unknown>;
}

const ADJECTIVES = ['abundant', 'bemused', 'brawny', 'calm', 'clean', 'dapper', 'gentle', 'honorable', 'languid', 'rare', 'sincere', 'unique'];
const NOUNS = ['ant', 'bass', 'bird', 'colt', 'crab', 'deer', 'fox', 'gull', 'hawk', 'owl', 'seal', 'wolf'];
const randomName = (): string => `${ADJECTIVES[randomInt(ADJECTIVES.length)]}_${NOUNS[randomInt(NOUNS.length)]}_${randomInt(10_000)}`;

const OK = { msg: 'OK', code: 200 };

// ---------------------------------------------------------------------------------------------
// field checks

const present = (b: Body, k: string): boolean => b[k] !== undefined && b[k] !== null;
const typeName = (v: unknown): string => (v === null ? 'null' : Array.isArray(v) ? 'array' : typeof v);

function reqString(b: Body, k: string): string {
  const v = b[k];
  if (!present(b, k)) throw bad(`${k} is required`);
  if (typeof v !== 'string') throw bad(`${k} must be a string, got ${typeName(v)}`);
  if (v === '') throw bad(`${k} must not be empty`);
  return v;
}

function optString(b: Body, k: string): string | null {
  if (!present(b, k)) return null;
  const v = b[k];
  if (typeof v !== 'string') throw bad(`${k} must be a string, got ${typeName(v)}`);
  return v;
}

function optInt(b: Body, k: string): number | null {
  if (!present(b, k)) return null;
  const v = b[k];
  if (typeof v !== 'number' || !Number.isSafeInteger(v)) throw bad(`${k} must be an integer, got ${JSON.stringify(v)}`);
  return v;
}

/** epoch milliseconds: integer, 1e12 < t < 1e14 */
function optMillis(b: Body, k: string): number | null {
  if (!present(b, k)) return null;
  const v = b[k];
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v <= 1e12 || v >= 1e14) {
    throw bad(`${k} must be an integer epoch timestamp in milliseconds, got ${JSON.stringify(v)}`);
  }
  return v;
}

function scalar(b: Body, k: string, allowBoolean: boolean): string | number | boolean {
  if (!present(b, k)) throw bad(`${k} is required`);
  const v = b[k];
  if (typeof v === 'string' || (typeof v === 'number' && Number.isFinite(v)) || (allowBoolean && typeof v === 'boolean')) return v;
  throw bad(`${k} must be a number${allowBoolean ? ', a boolean' : ''} or a string, got ${typeName(v)}`);
}

// ---------------------------------------------------------------------------------------------

export class CometTestServer extends LoopbackTestServer {
  readonly requests: RecordedRequest[] = [];
  readonly apiKey: string;
  /** `isAliveBeatDurationMillis` answered by set-status; may be changed while running. */
  heartbeatMs: number;
  /** Requests being handled right now, and the most at any one time (since start or `resetConcurrency()`). */
  concurrent = 0;
  maxConcurrent = 0;
  readonly limits: Readonly<CometRateLimits>;
  readonly windowMs: number;
  private readonly defaultWorkspace: string;
  private exps = new Map<string, CometExperiment>();
  /** `${apiKey}\0${category}` → receive times of counted requests (ascending) */
  private rate = new Map<string, number[]>();
  private readonly routes: Map<string, Route>;

  private constructor(options: CometTestServerOptions) {
    super();
    this.apiKey = options.apiKey ?? DEFAULT_API_KEY;
    this.heartbeatMs = options.heartbeatMs ?? 2000;
    this.limits = { ...DEFAULT_LIMITS, ...options.limits };
    this.windowMs = options.windowMs ?? 60_000;
    this.defaultWorkspace = options.defaultWorkspace ?? 'test-user';
    this.port = options.port ?? 0;
    const r = (method: Route['method'], category: RateCategory, handler: Route['handler']): Route => ({ method, category, handler });
    this.routes = new Map(
      Object.entries({
        'write/experiment/create': r('POST', 'other', (q) => this.create(q)),
        'write/experiment/parameter': r('POST', 'parameter', (q) => this.parameter(q)),
        'write/experiment/metric': r('POST', 'metric', (q) => this.metric(q)),
        'write/experiment/log-other': r('POST', 'other', (q) => this.logOther(q)),
        'write/experiment/set-status': r('GET', 'other', (q) => this.setStatus(q)),
        'write/experiment/set-start-end-time': r('POST', 'other', (q) => this.setStartEndTime(q)),
        'write/experiment/tags': r('POST', 'other', (q) => this.tags(q)),
        'write/experiment/output': r('POST', 'output', (q) => this.output(q)),
        'write/experiment/upload-asset': { ...r('POST', 'other', (q) => this.uploadAsset(q)), multipart: true },
      }),
    );
  }

  static async start(options: CometTestServerOptions = {}): Promise<CometTestServer> {
    const s = new CometTestServer(options);
    await s.listen();
    return s;
  }

  /** What users put in COMET_URL_OVERRIDE. */
  get clientlibUrl(): string {
    return `${this.url}/clientlib/`;
  }

  /** `${url}/api/rest/v2` */
  get apiUrl(): string {
    return `${this.url}${COMET_BASE_PATH}`;
  }

  /** Forget every rate-limit window. */
  resetRateLimits(): void {
    this.rate = new Map();
  }

  /** Deep copies of every experiment, in creation order. */
  experiments(): CometExperiment[] {
    return [...this.exps.values()].map(copyExperiment);
  }

  /** Deep copy of one experiment, or undefined. */
  experiment(experimentKey: string): CometExperiment | undefined {
    const e = this.exps.get(experimentKey);
    return e ? copyExperiment(e) : undefined;
  }

  // -------------------------------------------------------------------------------------------
  // transport

  /** `restart({ wipe: true })`: drop all experiments and rate-limit state. */
  protected wipe(): void {
    this.exps = new Map();
    this.resetRateLimits();
  }

  protected internalError(res: ServerResponse): void {
    res.writeHead(500, { 'Content-Type': 'application/json' });
    res.end(JSON.stringify({ msg: 'Internal server error', code: 500 }));
  }

  private presentedKey(req: IncomingMessage): string | undefined {
    const h = (v: string | string[] | undefined): string | undefined => (Array.isArray(v) ? v[0] : v);
    const a = h(req.headers.authorization);
    const s = h(req.headers['comet-sdk-api']);
    if (a === this.apiKey || s === this.apiKey) return this.apiKey;
    return undefined;
  }

  /** Sliding window; returns the ms to wait when the request is over the limit, else counts it and returns 0. */
  private throttle(apiKey: string, category: RateCategory, now: number): number {
    const limit = this.limits[category];
    if (!Number.isFinite(limit)) return 0;
    const id = `${apiKey}\u0000${category}`;
    let times = this.rate.get(id);
    if (!times) this.rate.set(id, (times = []));
    const from = now - this.windowMs;
    let drop = 0;
    while (drop < times.length && times[drop]! <= from) drop++;
    if (drop) times.splice(0, drop);
    if (times.length >= limit) {
      // wait until enough of the oldest leave the window for one more request
      const oldest = times[times.length - limit]!;
      return Math.max(1, oldest + this.windowMs - now);
    }
    times.push(now);
    return 0;
  }

  resetConcurrency(): void {
    this.maxConcurrent = this.concurrent;
  }

  protected async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    this.concurrent++;
    if (this.concurrent > this.maxConcurrent) this.maxConcurrent = this.concurrent;
    res.once('close', () => this.concurrent--);
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const raw = Buffer.concat(chunks);
    const bodyText = raw.toString('utf8');
    const url = new URL(req.url ?? '/', 'http://127.0.0.1');
    const query: Record<string, string | string[]> = {};
    for (const [k, v] of url.searchParams) {
      const prev = query[k];
      query[k] = prev === undefined ? v : Array.isArray(prev) ? [...prev, v] : [prev, v];
    }
    let parsed: unknown;
    let parsedOk = false;
    if (bodyText.trim()) {
      try {
        parsed = JSON.parse(bodyText);
        parsedOk = true;
      } catch {
        /* keep raw text */
      }
    }
    const now = Date.now();
    const rec: RecordedRequest = {
      method: req.method ?? 'GET',
      path: url.pathname,
      query,
      headers: { ...req.headers },
      body: parsedOk ? parsed : bodyText,
      status: 0,
      at: now,
    };
    this.requests.push(rec);
    const send = (status: number, body: unknown, headers: Record<string, string> = {}): void => {
      rec.status = status;
      res.writeHead(status, { 'Content-Type': 'application/json', ...headers });
      res.end(JSON.stringify(body));
    };
    const fail = (status: number, msg: string, headers: Record<string, string> = {}): void => send(status, { msg, code: status }, headers);

    const faulted = await this.faults.apply(url.pathname, req, (status, headers) =>
      fail(status, `Injected fault: HTTP ${status}`, headers),
    );
    if (faulted) return;

    const prefix = `${COMET_BASE_PATH}/`;
    const route = url.pathname.startsWith(prefix) ? this.routes.get(url.pathname.slice(prefix.length).replace(/\/$/, '')) : undefined;
    if (!route) {
      fail(404, `Not found: ${url.pathname}`);
      return;
    }
    if (rec.method !== route.method) {
      fail(405, `Method ${rec.method} not allowed for ${url.pathname}`, { Allow: route.method });
      return;
    }
    const apiKey = this.presentedKey(req);
    if (apiKey === undefined) {
      fail(401, 'Invalid or missing API key (send it in the Authorization header)');
      return;
    }
    const waitMs = this.throttle(apiKey, route.category, now);
    if (waitMs > 0) {
      fail(429, `Rate limit exceeded: at most ${this.limits[route.category]} ${route.category} requests per ${this.windowMs} ms`, {
        'Retry-After': String(Math.max(1, Math.ceil(waitMs / 1000))),
      });
      return;
    }
    let body: Body = {};
    let form: FormData | undefined;
    if (route.multipart) {
      const ctype = String(req.headers['content-type'] ?? '');
      if (ctype.split(';')[0]!.trim().toLowerCase() !== 'multipart/form-data' || !/boundary=/.test(ctype)) {
        fail(400, `Content-Type must be multipart/form-data with a boundary, got ${JSON.stringify(req.headers['content-type'] ?? null)}`);
        return;
      }
      const declared = Number(req.headers['content-length']);
      if (req.headers['content-length'] !== undefined && declared !== raw.byteLength) {
        fail(400, `Content-Length ${declared} but ${raw.byteLength} bytes arrived`);
        return;
      }
      try {
        form = await new Response(raw, { headers: { 'content-type': ctype } }).formData();
      } catch (e) {
        fail(400, `Malformed multipart body: ${(e as Error).message}`);
        return;
      }
    } else if (route.method === 'POST') {
      const ct = String(req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
      if (ct !== 'application/json') {
        fail(400, `Content-Type must be application/json, got ${JSON.stringify(req.headers['content-type'] ?? null)}`);
        return;
      }
      if (!parsedOk || parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
        fail(400, 'Request body must be a JSON object');
        return;
      }
      body = parsed as Body;
    }
    try {
      send(200, await route.handler({ query, body, now, form }));
    } catch (e) {
      if (e instanceof ApiError) fail(e.status, e.message);
      else throw e;
    }
  }

  // -------------------------------------------------------------------------------------------
  // endpoints

  private lookup(key: unknown, touch = true): CometExperiment {
    if (key === undefined || key === null || key === '') throw bad('experimentKey is required');
    if (typeof key !== 'string') throw bad(`experimentKey must be a string, got ${typeName(key)}`);
    const e = this.exps.get(key);
    if (!e) throw bad(`Invalid experimentKey: ${key}`);
    if (touch && e.endTimeMillis !== null) e.writesAfterEnd = true;
    return e;
  }

  private create(q: Incoming): unknown {
    const workspaceName = optString(q.body, 'workspaceName') || this.defaultWorkspace;
    const projectName = optString(q.body, 'projectName') || 'general';
    const experimentName = optString(q.body, 'experimentName') || randomName();
    let experimentKey: string;
    do experimentKey = randomBytes(16).toString('hex');
    while (this.exps.has(experimentKey));
    this.exps.set(experimentKey, {
      experimentKey,
      workspaceName,
      projectName,
      experimentName,
      createdAt: q.now,
      parameters: {},
      metrics: [],
      others: {},
      tags: [],
      startTimeMillis: null,
      endTimeMillis: null,
      heartbeats: [],
      assets: [],
      output: [],
      outputRequests: [],
      writesAfterEnd: false,
    });
    const link = `${this.url}/${encodeURIComponent(workspaceName)}/${encodeURIComponent(projectName)}/${experimentKey}`;
    return { experimentKey, workspaceName, projectName, link };
  }

  private parameter(q: Incoming): unknown {
    const b = q.body;
    const name = reqString(b, 'parameterName');
    const value = scalar(b, 'parameterValue', true);
    const step = optInt(b, 'step');
    const timestamp = optMillis(b, 'timestamp');
    const context = optString(b, 'context');
    const e = this.lookup(b.experimentKey);
    e.parameters[name] = { value, step, timestamp: timestamp ?? q.now, context };
    return OK;
  }

  private metric(q: Incoming): unknown {
    const b = q.body;
    const name = reqString(b, 'metricName');
    const value = scalar(b, 'metricValue', false) as number | string;
    const step = optInt(b, 'step');
    const epoch = optInt(b, 'epoch');
    const timestamp = optMillis(b, 'timestamp');
    const context = optString(b, 'context');
    const e = this.lookup(b.experimentKey);
    e.metrics.push({ name, value, step, epoch, timestamp: timestamp ?? q.now, context });
    return OK;
  }

  private logOther(q: Incoming): unknown {
    const b = q.body;
    const key = reqString(b, 'key');
    const value = scalar(b, 'value', true);
    const timestamp = optMillis(b, 'timestamp');
    const e = this.lookup(b.experimentKey);
    e.others[key] = { value, timestamp: timestamp ?? q.now };
    return OK;
  }

  private setStatus(q: Incoming): unknown {
    const key = q.query.experimentKey;
    if (Array.isArray(key)) throw bad('experimentKey must be given once');
    const e = this.lookup(key);
    e.heartbeats.push(q.now);
    return { isAliveBeatDurationMillis: this.heartbeatMs, gpuMonitorIntervalMillis: 60_000, cpuMonitorIntervalMillis: 60_000 };
  }

  private setStartEndTime(q: Incoming): unknown {
    const b = q.body;
    const start = optMillis(b, 'startTimeMillis');
    const end = optMillis(b, 'endTimeMillis');
    if (start === null && end === null) throw bad('startTimeMillis or endTimeMillis is required');
    const e = this.lookup(b.experimentKey, false);
    const s = start ?? e.startTimeMillis;
    const t = end ?? e.endTimeMillis;
    if (s !== null && t !== null && t < s) throw bad(`endTimeMillis (${t}) is before startTimeMillis (${s})`);
    if (start !== null) e.startTimeMillis = start;
    if (end !== null) e.endTimeMillis = end;
    return OK;
  }

  /**
   * As Comet's clients use it: query experimentKey (required), type, fileName (required), extension
   * (with or without the dot; must match fileName's), step, overwrite (`true`/`false`), context; form
   * parts `file` (a file part with a filename, required) and `metadata` (a JSON object as a string),
   * nothing else.
   */
  private async uploadAsset(q: Incoming): Promise<unknown> {
    const one = (k: string): string | null => {
      const v = q.query[k];
      if (Array.isArray(v)) throw bad(`${k} must be given once`);
      return v ?? null;
    };
    const type = one('type') ?? 'asset';
    if (!ASSET_TYPES.has(type)) throw bad(`Unknown asset type: ${type}`);
    const fileName = one('fileName');
    if (!fileName) throw bad('fileName is required');
    const extension = one('extension');
    const dot = fileName.lastIndexOf('.');
    const real = dot > 0 ? fileName.slice(dot + 1) : '';
    if (extension !== null && extension.replace(/^\./, '') !== real) throw bad(`extension ${JSON.stringify(extension)} does not match fileName ${JSON.stringify(fileName)}`);
    const stepText = one('step');
    const step = stepText === null ? null : Number(stepText);
    if (step !== null && (!/^-?\d+$/.test(stepText!) || !Number.isSafeInteger(step))) throw bad(`step must be an integer, got ${JSON.stringify(stepText)}`);
    const ow = one('overwrite');
    if (ow !== null && ow !== 'true' && ow !== 'false') throw bad(`overwrite must be true or false, got ${JSON.stringify(ow)}`);
    const context = one('context');
    const form = q.form!;
    for (const k of new Set(form.keys())) {
      if (k !== 'file' && k !== 'metadata') throw bad(`Unexpected form part: ${k}`);
      if (form.getAll(k).length !== 1) throw bad(`Form part ${k} must be sent once`);
    }
    const file = form.get('file');
    if (file === null || typeof file === 'string') throw bad('The file part is required (a file part with a filename)');
    const metaPart = form.get('metadata');
    let metadata: Record<string, unknown> | null = null;
    if (metaPart !== null) {
      const text = typeof metaPart === 'string' ? metaPart : await metaPart.text();
      try {
        metadata = JSON.parse(text) as Record<string, unknown>;
      } catch {
        throw bad('metadata must be a JSON object');
      }
      if (metadata === null || typeof metadata !== 'object' || Array.isArray(metadata)) throw bad('metadata must be a JSON object');
    }
    const e = this.lookup(one('experimentKey'));
    e.assets.push({
      type, fileName, extension, step, overwrite: ow === 'true', context, metadata,
      partFilename: (file as File).name, partType: file.type, bytes: Buffer.from(await file.arrayBuffer()),
    });
    return { ...OK, data: { fileName, assetId: randomBytes(8).toString('hex') } };
  }

  /** Documented body: {experimentKey, runContext, outputLines: [{output, stderr, localTimestamp, offset}]}. */
  private output(q: Incoming): unknown {
    const b = q.body;
    if (!('runContext' in b)) throw bad('runContext is required');
    const runContext = optString(b, 'runContext');
    const lines = b.outputLines;
    if (!Array.isArray(lines) || lines.length === 0) throw bad(`outputLines must be a non-empty array, got ${typeName(lines)}`);
    const parsed = lines.map((l, i) => {
      if (l === null || typeof l !== 'object' || Array.isArray(l)) throw bad(`outputLines[${i}] must be an object`);
      const o = l as Body;
      if (typeof o.output !== 'string') throw bad(`outputLines[${i}].output must be a string`);
      if (present(o, 'stderr') && typeof o.stderr !== 'boolean') throw bad(`outputLines[${i}].stderr must be a boolean`);
      return { output: o.output, stderr: o.stderr === true, localTimestamp: optMillis(o, 'localTimestamp'), offset: optInt(o, 'offset'), runContext };
    });
    const e = this.lookup(b.experimentKey);
    e.output.push(...parsed);
    e.outputRequests.push(parsed.length);
    return { msg: 'Saved' };
  }

  private tags(q: Incoming): unknown {
    const b = q.body;
    const tags = b.addedTags;
    if (!Array.isArray(tags)) throw bad(`addedTags must be an array of strings, got ${typeName(tags)}`);
    if (!tags.every((t): t is string => typeof t === 'string' && t !== '')) throw bad('addedTags must contain non-empty strings only');
    const e = this.lookup(b.experimentKey);
    for (const t of tags) if (!e.tags.includes(t)) e.tags.push(t);
    return OK;
  }
}

// ---------------------------------------------------------------------------------------------
// standalone use

await runStandalone(
  import.meta.url,
  (opt) => {
    const hb = opt('--heartbeat-ms');
    return CometTestServer.start({
      port: Number(opt('--port') ?? 8080),
      apiKey: opt('--api-key') ?? DEFAULT_API_KEY,
      heartbeatMs: hb === undefined ? undefined : Number(hb),
    });
  },
  (server) => `COMET_URL_OVERRIDE=${server.clientlibUrl} COMET_API_KEY=${server.apiKey}`,
  (server) => server.close(),
);

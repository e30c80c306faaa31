// Tests of the local Comet ML REST API v2 test server (reference: wandb-comet-aim.md Part B).
import { afterAll, describe, expect, it } from 'vitest';
import { CometTestServer, DEFAULT_API_KEY, type CometTestServerOptions } from './server.js';

interface Reply {
  status: number;
  text: string;
  json: any;
  headers: Headers;
}

interface CallOptions {
  contentType?: string | null;
  raw?: string;
  /** replaces the default `Authorization: <key>` header */
  auth?: Record<string, string>;
}

const servers: CometTestServer[] = [];
afterAll(async () => {
  await Promise.all(servers.map((s) => s.close()));
});

async function start(options: CometTestServerOptions = {}): Promise<Client> {
  const s = await CometTestServer.start(options);
  servers.push(s);
  return new Client(s);
}

class Client {
  constructor(readonly server: CometTestServer) {}

  async call(method: string, path: string, body?: unknown, opts: CallOptions = {}): Promise<Reply> {
    const headers: Record<string, string> = opts.auth ?? { Authorization: this.server.apiKey };
    const ct = opts.contentType === undefined ? 'application/json' : opts.contentType;
    if (method !== 'GET' && ct !== null) headers['Content-Type'] = ct;
    // what an SDK does with COMET_URL_OVERRIDE: strip `/clientlib/`, append `/api/rest/v2`
    const base = this.server.clientlibUrl.replace(/\/clientlib\/?$/, '') + '/api/rest/v2/';
    const res = await fetch(base + path, {
      method,
      headers,
      body: method === 'GET' || method === 'HEAD' ? undefined : opts.raw ?? (body === undefined ? undefined : JSON.stringify(body)),
    });
    const text = await res.text();
    let json: any;
    try {
      json = JSON.parse(text);
    } catch {
      json = undefined;
    }
    return { status: res.status, text, json, headers: res.headers };
  }

  post(path: string, body?: unknown, opts?: CallOptions): Promise<Reply> {
    return this.call('POST', `write/experiment/${path}`, body, opts);
  }

  status(key: string, opts?: CallOptions): Promise<Reply> {
    return this.call('GET', `write/experiment/set-status?experimentKey=${encodeURIComponent(key)}`, undefined, opts);
  }

  async ok(path: string, body: unknown): Promise<any> {
    const r = await this.post(path, body);
    expect(r.status, r.text).toBe(200);
    return r.json;
  }

  async create(body: Record<string, unknown> = {}): Promise<string> {
    return (await this.ok('create', body)).experimentKey;
  }
}

const NOW = 1_700_000_000_000;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

// ---------------------------------------------------------------------------------------------

describe('urls', () => {
  it('url, clientlibUrl, apiUrl', async () => {
    const c = await start();
    expect(c.server.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect(c.server.clientlibUrl).toBe(`${c.server.url}/clientlib/`);
    expect(c.server.apiUrl).toBe(`${c.server.url}/api/rest/v2`);
    expect(c.server.apiKey).toBe(DEFAULT_API_KEY);
  });
});

describe('write endpoints', () => {
  it('create: names, 32-hex key, link; defaults', async () => {
    const c = await start();
    const r = await c.ok('create', { workspaceName: 'ws', projectName: 'proj', experimentName: 'exp-1' });
    expect(r.experimentKey).toMatch(/^[0-9a-f]{32}$/);
    expect(r).toEqual({ experimentKey: r.experimentKey, workspaceName: 'ws', projectName: 'proj', link: `${c.server.url}/ws/proj/${r.experimentKey}` });
    const e = c.server.experiment(r.experimentKey)!;
    expect(e).toMatchObject({ workspaceName: 'ws', projectName: 'proj', experimentName: 'exp-1', tags: [], metrics: [], heartbeats: [], startTimeMillis: null, endTimeMillis: null, writesAfterEnd: false });

    const d = await c.ok('create', {});
    expect(d.workspaceName).toBe('test-user');
    expect(d.projectName).toBe('general');
    expect(c.server.experiment(d.experimentKey)!.experimentName).toMatch(/^[a-z]+_[a-z]+_\d+$/);
    expect(c.server.experiments().map((x) => x.experimentKey)).toEqual([r.experimentKey, d.experimentKey]);

    expect((await c.post('create', { projectName: 5 })).status).toBe(400);
    expect((await c.post('create', { experimentName: ['x'] })).json).toEqual({ msg: 'experimentName must be a string, got array', code: 400 });
  });

  it('parameter: values, step, timestamp; last value wins', async () => {
    const c = await start();
    const k = await c.create();
    expect(await c.ok('parameter', { experimentKey: k, parameterName: 'lr', parameterValue: 0.1, timestamp: NOW })).toEqual({ msg: 'OK', code: 200 });
    await c.ok('parameter', { experimentKey: k, parameterName: 'opt', parameterValue: 'adam', step: 3 });
    await c.ok('parameter', { experimentKey: k, parameterName: 'flag', parameterValue: true, step: null });
    await c.ok('parameter', { experimentKey: k, parameterName: 'lr', parameterValue: 0.2, timestamp: NOW + 1 });
    const p = c.server.experiment(k)!.parameters;
    expect(p.lr).toEqual({ value: 0.2, step: null, timestamp: NOW + 1, context: null });
    expect(p.opt).toMatchObject({ value: 'adam', step: 3 });
    expect(p.opt!.timestamp).toBeGreaterThan(1e12); // server time when absent
    expect(p.flag!.value).toBe(true);

    for (const bad of [
      { parameterName: 'x' },
      { parameterName: 'x', parameterValue: null },
      { parameterName: 'x', parameterValue: { a: 1 } },
      { parameterName: 'x', parameterValue: [1] },
      { parameterValue: 1 },
      { parameterName: 7, parameterValue: 1 },
      { parameterName: 'x', parameterValue: 1, step: 1.5 },
      { parameterName: 'x', parameterValue: 1, step: '1' },
      { parameterName: 'x', parameterValue: 1, timestamp: NOW / 1000 },
    ]) {
      const r = await c.post('parameter', { experimentKey: k, ...bad });
      expect(r.status, JSON.stringify(bad)).toBe(400);
      expect(r.json.code).toBe(400);
      expect(typeof r.json.msg).toBe('string');
    }
    expect(Object.keys(c.server.experiment(k)!.parameters).sort()).toEqual(['flag', 'lr', 'opt']);
  });

  it('metric: numbers and strings, step/epoch/context; field checks', async () => {
    const c = await start();
    const k = await c.create();
    await c.ok('metric', { experimentKey: k, metricName: 'loss', metricValue: 0.5, step: 1, epoch: 0, timestamp: NOW });
    await c.ok('metric', { experimentKey: k, metricName: 'loss', metricValue: 0.25, step: 2, epoch: 0, timestamp: NOW + 5, context: 'train' });
    await c.ok('metric', { experimentKey: k, metricName: 'note', metricValue: '1e-3' });
    const m = c.server.experiment(k)!.metrics;
    expect(m.slice(0, 2)).toEqual([
      { name: 'loss', value: 0.5, step: 1, epoch: 0, timestamp: NOW, context: null },
      { name: 'loss', value: 0.25, step: 2, epoch: 0, timestamp: NOW + 5, context: 'train' },
    ]);
    expect(m[2]).toMatchObject({ name: 'note', value: '1e-3', step: null, epoch: null, context: null });

    const base = { experimentKey: k, metricName: 'x', metricValue: 1 };
    for (const bad of [
      { metricValue: true },
      { metricValue: null },
      { metricValue: { v: 1 } },
      { metricValue: undefined },
      { metricName: '' },
      { step: 0.5 },
      { step: '2' },
      { epoch: 1.1 },
      { timestamp: 1_700_000_000 }, // seconds
      { timestamp: NOW + 0.5 },
      { timestamp: NOW * 1000 }, // microseconds
      { timestamp: String(NOW) },
      { context: 3 },
    ]) {
      const r = await c.post('metric', { ...base, ...bad });
      expect(r.status, JSON.stringify(bad)).toBe(400);
    }
    expect(c.server.experiment(k)!.metrics).toHaveLength(3);
  });

  it('log-other', async () => {
    const c = await start();
    const k = await c.create();
    await c.ok('log-other', { experimentKey: k, key: 'Created from', value: 'cometr', timestamp: NOW });
    await c.ok('log-other', { experimentKey: k, key: 'n', value: 3 });
    expect(c.server.experiment(k)!.others['Created from']).toEqual({ value: 'cometr', timestamp: NOW });
    expect(c.server.experiment(k)!.others.n!.value).toBe(3);
    expect((await c.post('log-other', { experimentKey: k, key: 'a' })).status).toBe(400);
    expect((await c.post('log-other', { experimentKey: k, value: 'a' })).status).toBe(400);
    expect((await c.post('log-other', { experimentKey: k, key: 'a', value: { x: 1 } })).status).toBe(400);
    expect((await c.post('log-other', { experimentKey: k, key: 'a', value: 'b', timestamp: 12 })).status).toBe(400);
  });

  it('set-status: heartbeat interval and recorded heartbeats', async () => {
    const c = await start({ heartbeatMs: 750 });
    const k = await c.create();
    const r = await c.status(k);
    expect(r.status).toBe(200);
    expect(r.json).toEqual({ isAliveBeatDurationMillis: 750, gpuMonitorIntervalMillis: 60000, cpuMonitorIntervalMillis: 60000 });
    await c.status(k);
    const hb = c.server.experiment(k)!.heartbeats;
    expect(hb).toHaveLength(2);
    expect(hb[1]!).toBeGreaterThanOrEqual(hb[0]!);
    expect((await c.call('GET', 'write/experiment/set-status')).status).toBe(400);
    expect((await (await start()).status(k)).status).toBe(400); // another server does not know the key
    const d = await start();
    expect((await d.status(await d.create())).json.isAliveBeatDurationMillis).toBe(2000);
  });

  it('set-start-end-time and writes after the end', async () => {
    const c = await start();
    const k = await c.create();
    await c.ok('set-start-end-time', { experimentKey: k, startTimeMillis: NOW });
    await c.ok('metric', { experimentKey: k, metricName: 'a', metricValue: 1 });
    expect(c.server.experiment(k)!.writesAfterEnd).toBe(false);
    expect((await c.post('set-start-end-time', { experimentKey: k, endTimeMillis: NOW - 1 })).status).toBe(400);
    expect((await c.post('set-start-end-time', { experimentKey: k })).status).toBe(400);
    expect((await c.post('set-start-end-time', { experimentKey: k, endTimeMillis: 1.5 })).status).toBe(400);
    await c.ok('set-start-end-time', { experimentKey: k, endTimeMillis: NOW + 1000 });
    expect(c.server.experiment(k)).toMatchObject({ startTimeMillis: NOW, endTimeMillis: NOW + 1000, writesAfterEnd: false });
    // still accepted, but flagged
    await c.ok('metric', { experimentKey: k, metricName: 'a', metricValue: 2 });
    expect(c.server.experiment(k)!.writesAfterEnd).toBe(true);
    expect(c.server.experiment(k)!.metrics).toHaveLength(2);

    const k2 = await c.create();
    await c.ok('set-start-end-time', { experimentKey: k2, startTimeMillis: NOW, endTimeMillis: NOW + 5 });
    expect((await c.status(k2)).status).toBe(200);
    expect(c.server.experiment(k2)!.writesAfterEnd).toBe(true); // heartbeat after the end
  });

  it('tags: added without duplicates', async () => {
    const c = await start();
    const k = await c.create();
    await c.ok('tags', { experimentKey: k, addedTags: ['a', 'b'] });
    await c.ok('tags', { experimentKey: k, addedTags: ['b', 'c'] });
    expect(c.server.experiment(k)!.tags).toEqual(['a', 'b', 'c']);
    expect((await c.post('tags', { experimentKey: k, addedTags: 'a' })).status).toBe(400);
    expect((await c.post('tags', { experimentKey: k, addedTags: ['a', 1] })).status).toBe(400);
    expect((await c.post('tags', { experimentKey: k })).status).toBe(400);
  });

  it('read helpers return copies', async () => {
    const c = await start();
    const k = await c.create();
    c.server.experiment(k)!.tags.push('mutated');
    c.server.experiments()[0]!.metrics.push({ name: 'x', value: 1, step: null, epoch: null, timestamp: NOW, context: null });
    expect(c.server.experiment(k)!.tags).toEqual([]);
    expect(c.server.experiment(k)!.metrics).toEqual([]);
    expect(c.server.experiment('0'.repeat(32))).toBeUndefined();
  });
});

describe('protocol checks', () => {
  it('auth: Authorization or Comet-Sdk-Api, else 401', async () => {
    const c = await start({ apiKey: 'secret-key' });
    expect((await c.post('create', {}, { auth: { Authorization: 'secret-key' } })).status).toBe(200);
    expect((await c.post('create', {}, { auth: { 'Comet-Sdk-Api': 'secret-key' } })).status).toBe(200);
    const auths: Array<Record<string, string>> = [{}, { Authorization: 'wrong' }, { Authorization: 'Bearer secret-key' }, { 'Comet-Sdk-Api': 'nope' }];
    for (const auth of auths) {
      const r = await c.post('create', {}, { auth });
      expect(r.status, JSON.stringify(auth)).toBe(401);
      expect(r.json.code).toBe(401);
    }
    const k = c.server.experiments()[0]!.experimentKey;
    expect((await c.status(k, { auth: {} })).status).toBe(401);
    expect(c.server.experiments()).toHaveLength(2);
    expect(c.server.experiment(k)!.heartbeats).toEqual([]);
  });

  it('unknown or missing experimentKey → 400', async () => {
    const c = await start();
    const unknown = 'f'.repeat(32);
    for (const [path, body] of [
      ['metric', { experimentKey: unknown, metricName: 'a', metricValue: 1 }],
      ['parameter', { experimentKey: unknown, parameterName: 'a', parameterValue: 1 }],
      ['log-other', { experimentKey: unknown, key: 'a', value: 1 }],
      ['tags', { experimentKey: unknown, addedTags: [] }],
      ['set-start-end-time', { experimentKey: unknown, startTimeMillis: NOW }],
      ['metric', { metricName: 'a', metricValue: 1 }],
      ['metric', { experimentKey: 5, metricName: 'a', metricValue: 1 }],
    ] as const) {
      const r = await c.post(path, body);
      expect(r.status, `${path} ${JSON.stringify(body)}`).toBe(400);
    }
    const r = await c.status(unknown);
    expect(r.json).toEqual({ msg: `Invalid experimentKey: ${unknown}`, code: 400 });
  });

  it('Content-Type and JSON body', async () => {
    const c = await start();
    const k = await c.create();
    const body = { experimentKey: k, metricName: 'a', metricValue: 1 };
    expect((await c.post('metric', body, { contentType: null })).status).toBe(400);
    expect((await c.post('metric', body, { contentType: 'text/plain' })).json.msg).toMatch(/Content-Type must be application\/json/);
    expect((await c.post('metric', body, { contentType: 'application/json; charset=utf-8' })).status).toBe(200);
    expect((await c.post('metric', undefined, { raw: '{not json' })).status).toBe(400);
    expect((await c.post('metric', [body])).status).toBe(400);
    expect((await c.post('metric', undefined, { raw: '' })).status).toBe(400);
    expect(c.server.experiment(k)!.metrics).toHaveLength(1);
  });

  it('wrong method → 405, unknown path → 404', async () => {
    const c = await start();
    const k = await c.create();
    const r = await c.call('GET', 'write/experiment/metric');
    expect(r.status).toBe(405);
    expect(r.headers.get('allow')).toBe('POST');
    expect(r.json.code).toBe(405);
    const s = await c.call('POST', `write/experiment/set-status?experimentKey=${k}`, {});
    expect(s.status).toBe(405);
    expect(s.headers.get('allow')).toBe('GET');
    expect((await c.call('POST', 'write/experiment/nope', {})).status).toBe(404);
    expect((await c.call('POST', 'write/experiment/output', {})).status).toBe(400); // exists now (log_output); the body is checked
    expect((await c.call('GET', '../../clientlib/')).status).toBe(404);
    const raw = await fetch(`${c.server.url}/api/rest/v1/write/experiment/create`, { method: 'POST', headers: { Authorization: c.server.apiKey } });
    expect(raw.status).toBe(404);
    expect(await raw.json()).toMatchObject({ code: 404 });
    expect(c.server.experiment(k)!.heartbeats).toEqual([]);
  });
});

describe('rate limits', () => {
  it('429 with Retry-After per category, recovery after the window', async () => {
    const c = await start({ limits: { metric: 50, parameter: 20, other: 30 }, windowMs: 500 });
    const k = await c.create(); // other: 1
    const metric = (i: number) => c.post('metric', { experimentKey: k, metricName: 'm', metricValue: i, step: i });
    const first = await Promise.all(Array.from({ length: 50 }, (_, i) => metric(i)));
    expect(first.every((r) => r.status === 200)).toBe(true);
    const over = await metric(50);
    expect(over.status).toBe(429);
    expect(over.json.code).toBe(429);
    expect(Number(over.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    expect(c.server.experiment(k)!.metrics).toHaveLength(50);
    // other categories have their own budget
    expect((await c.post('parameter', { experimentKey: k, parameterName: 'p', parameterValue: 1 })).status).toBe(200);
    expect((await c.status(k)).status).toBe(200);
    // parameter limit
    const params = await Promise.all(Array.from({ length: 20 }, (_, i) => c.post('parameter', { experimentKey: k, parameterName: `p${i}`, parameterValue: i })));
    expect(params.filter((r) => r.status === 429)).toHaveLength(1);
    // recovery
    await sleep(550);
    expect((await metric(51)).status).toBe(200);
    expect((await c.post('parameter', { experimentKey: k, parameterName: 'late', parameterValue: 1 })).status).toBe(200);
  });

  it('other limit covers create/log-other/tags/set-status; defaults are the documented values', async () => {
    const c = await start({ limits: { other: 3 }, windowMs: 400 });
    expect(c.server.limits).toEqual({ metric: 12_000, parameter: 10_000, output: 12_000, other: 3 });
    expect(c.server.windowMs).toBe(400);
    const k = await c.create();
    await c.ok('log-other', { experimentKey: k, key: 'a', value: 'b' });
    await c.ok('tags', { experimentKey: k, addedTags: ['t'] });
    const r = await c.status(k);
    expect(r.status).toBe(429);
    expect(r.headers.get('retry-after')).toBe('1');
    expect(c.server.experiment(k)!.heartbeats).toEqual([]);
    expect((await c.post('metric', { experimentKey: k, metricName: 'm', metricValue: 1 })).status).toBe(200);
    c.server.resetRateLimits();
    expect((await c.status(k)).status).toBe(200);
    const d = await start();
    expect(d.server.limits).toEqual({ metric: 12_000, parameter: 10_000, output: 12_000, other: 8_000 });
    expect(d.server.windowMs).toBe(60_000);
  });

  it('unauthenticated requests are not counted', async () => {
    const c = await start({ limits: { other: 2 }, windowMs: 10_000 });
    for (let i = 0; i < 5; i++) expect((await c.post('create', {}, { auth: {} })).status).toBe(401);
    expect((await c.post('create', {})).status).toBe(200);
  });
});

describe('faults, restart, recording', () => {
  it('status fault with Retry-After, path filter, times; data untouched', async () => {
    const c = await start();
    const k = await c.create();
    c.server.inject({ kind: 'status', status: 503, retryAfter: '2', path: '/metric', times: 2 });
    const body = { experimentKey: k, metricName: 'a', metricValue: 1 };
    const r1 = await c.post('metric', body);
    expect(r1.status).toBe(503);
    expect(r1.headers.get('retry-after')).toBe('2');
    expect(r1.json).toEqual({ msg: 'Injected fault: HTTP 503', code: 503 });
    expect((await c.post('log-other', { experimentKey: k, key: 'a', value: 'b' })).status).toBe(200); // other path
    expect((await c.post('metric', body)).status).toBe(503);
    expect((await c.post('metric', body)).status).toBe(200);
    expect(c.server.experiment(k)!.metrics).toHaveLength(1);
  });

  it('refuse and reset drop the connection; delay then process; clearFaults', async () => {
    const c = await start();
    const k = await c.create();
    const body = { experimentKey: k, metricName: 'a', metricValue: 1 };
    c.server.inject({ kind: 'refuse' });
    await expect(c.post('metric', body)).rejects.toThrow();
    c.server.inject({ kind: 'reset', path: /metric$/ });
    await expect(c.post('metric', body)).rejects.toThrow();
    expect(c.server.experiment(k)!.metrics).toHaveLength(0);
    expect(c.server.requests.slice(-2).map((r) => r.status)).toEqual([0, 0]);

    c.server.inject({ kind: 'delay', ms: 150 });
    const t0 = Date.now();
    expect((await c.post('metric', body)).status).toBe(200);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(140);
    expect(c.server.experiment(k)!.metrics).toHaveLength(1);

    c.server.inject({ kind: 'status', status: 500, times: Infinity });
    expect((await c.post('metric', body)).status).toBe(500);
    expect((await c.status(k)).status).toBe(500);
    c.server.clearFaults();
    expect((await c.post('metric', body)).status).toBe(200);
  });

  it('restart keeps data and port; wipe loses it; stopped server refuses connections', async () => {
    const c = await start();
    const url = c.server.url;
    const k = await c.create();
    await c.ok('metric', { experimentKey: k, metricName: 'a', metricValue: 1 });
    await c.server.stop();
    await expect(c.post('metric', { experimentKey: k, metricName: 'a', metricValue: 2 })).rejects.toThrow();
    await c.server.restart();
    expect(c.server.url).toBe(url);
    await c.ok('metric', { experimentKey: k, metricName: 'a', metricValue: 3 });
    expect(c.server.experiment(k)!.metrics.map((m) => m.value)).toEqual([1, 3]);
    await c.server.restart({ wipe: true, downForMs: 20 });
    expect(c.server.url).toBe(url);
    expect(c.server.experiments()).toEqual([]);
    expect((await c.post('metric', { experimentKey: k, metricName: 'a', metricValue: 4 })).status).toBe(400);
  });

  it('records requests: method, path, query, headers, body, status, at', async () => {
    const c = await start();
    const before = Date.now();
    const k = await c.create({ projectName: 'p' });
    await c.status(k);
    await c.post('metric', undefined, { raw: 'oops' });
    const [create, status, bad] = c.server.requests;
    expect(create).toMatchObject({ method: 'POST', path: '/api/rest/v2/write/experiment/create', query: {}, body: { projectName: 'p' }, status: 200 });
    expect(create!.headers.authorization).toBe(c.server.apiKey);
    expect(create!.headers['content-type']).toBe('application/json');
    expect(create!.at).toBeGreaterThanOrEqual(before);
    expect(status).toMatchObject({ method: 'GET', path: '/api/rest/v2/write/experiment/set-status', query: { experimentKey: k }, body: '', status: 200 });
    expect(bad).toMatchObject({ body: 'oops', status: 400 });
  });

  it('a cometr-like session (reference B.4)', async () => {
    const c = await start({ heartbeatMs: 100 });
    const { experimentKey: k } = await c.ok('create', { experimentName: 'r', projectName: 'p', workspaceName: 'w' });
    await c.ok('log-other', { experimentKey: k, key: 'Created from', value: 'cometr', timestamp: Date.now() });
    await c.ok('parameter', { experimentKey: k, parameterName: 'lr', parameterValue: 0.01, timestamp: Date.now() });
    await c.ok('metric', { experimentKey: k, metricName: 'loss', metricValue: 0.3, step: 1, epoch: 1, timestamp: Date.now() });
    await c.ok('log-other', { experimentKey: k, key: 'note', value: 'hi', timestamp: Date.now() });
    for (let i = 0; i < 3; i++) {
      const r = await c.status(k);
      await sleep(r.json.isAliveBeatDurationMillis / 4);
    }
    const e = c.server.experiment(k)!;
    expect(e.heartbeats).toHaveLength(3);
    expect(Object.keys(e.others)).toEqual(['Created from', 'note']);
    expect(c.server.requests.map((r) => r.path.replace('/api/rest/v2/write/experiment/', ''))).toEqual([
      'create', 'log-other', 'parameter', 'metric', 'log-other', 'set-status', 'set-status', 'set-status',
    ]);
  });
});

describe('upload-asset (multipart, as Comet clients send it)', () => {
  const upload = async (c: Client, query: Record<string, string>, parts: [string, string | Blob, string?][] | FormData, contentType?: string) => {
    const form = parts instanceof FormData ? parts : new FormData();
    if (!(parts instanceof FormData)) for (const [k, v, name] of parts) typeof v === 'string' ? form.append(k, v) : form.append(k, v, name);
    const url = `${c.server.apiUrl}/write/experiment/upload-asset?${new URLSearchParams(query)}`;
    const req = new Request(url, { method: 'POST', body: form, headers: { Authorization: c.server.apiKey } });
    const headers = new Headers(req.headers);
    if (contentType !== undefined) headers.set('content-type', contentType);
    const res = await fetch(url, { method: 'POST', headers, body: await req.arrayBuffer() });
    return { status: res.status, json: (await res.json()) as { msg: string } };
  };
  const fresh = async () => {
    const c = await start();
    const key = (await c.post('create', { projectName: 'p' })).json.experimentKey as string;
    return { c, key };
  };

  it('stores the file part, the metadata part and the query fields', async () => {
    const { c, key } = await fresh();
    const r = await upload(c, { experimentKey: key, type: 'image', fileName: 'a.png', extension: 'png', step: '3', overwrite: 'false', context: 'train' }, [
      ['file', new Blob([new Uint8Array([1, 2, 3])], { type: 'image/png' }), 'a.png'],
      ['metadata', JSON.stringify({ caption: 'hi' })],
    ]);
    expect(r.status).toBe(200);
    const [a] = c.server.experiment(key)!.assets;
    expect(a).toMatchObject({ type: 'image', fileName: 'a.png', extension: 'png', step: 3, overwrite: false, context: 'train', metadata: { caption: 'hi' }, partFilename: 'a.png', partType: 'image/png' });
    expect([...a!.bytes]).toEqual([1, 2, 3]);
    // Python SDK style: extension with the dot
    expect((await upload(c, { experimentKey: key, fileName: 'b.csv', extension: '.csv', type: 'dataframe' }, [['file', new Blob(['x\r\n']), 'b.csv']])).status).toBe(200);
  });

  it('refuses what Comet clients never send: no file part, a file as a plain field, bad metadata, other parts, wrong extension, step or type, a JSON body, a bad key', async () => {
    const { c, key } = await fresh();
    const q = { experimentKey: key, fileName: 'a.txt', type: 'asset' };
    const file: [string, Blob, string] = ['file', new Blob(['x']), 'a.txt'];
    const cases: [Record<string, string>, [string, string | Blob, string?][], RegExp][] = [
      [q, [['metadata', '{}']], /file part is required/],
      [q, [['file', 'just text']], /file part is required/],
      [q, [file, ['metadata', 'not json']], /metadata must be a JSON object/],
      [q, [file, ['metadata', '[1]']], /metadata must be a JSON object/],
      [q, [file, ['figName', 'x']], /Unexpected form part: figName/],
      [{ ...q, extension: 'png' }, [file], /extension "png" does not match/],
      [{ ...q, step: '1.5' }, [file], /step must be an integer/],
      [{ ...q, overwrite: 'yes' }, [file], /overwrite must be true or false/],
      [{ ...q, type: 'picture' }, [file], /Unknown asset type/],
      [{ experimentKey: key, type: 'asset' }, [file], /fileName is required/],
      [{ ...q, experimentKey: 'nope' }, [file], /Invalid experimentKey/],
    ];
    for (const [query, parts, msg] of cases) {
      const r = await upload(c, query, parts);
      expect(r.status, JSON.stringify(query)).toBe(400);
      expect(r.json.msg).toMatch(msg);
    }
    const json = await c.post('upload-asset', { file: 'x' });
    expect(json.status).toBe(400);
    expect(json.json.msg).toMatch(/multipart\/form-data/);
    expect(c.server.experiment(key)!.assets).toEqual([]);
    // the old REST v1 image endpoint does not exist on v2
    expect((await c.post('upload-image', {})).status).toBe(404);
  });
});

describe('output (console lines)', () => {
  it('takes the documented body and counts in its own limit bucket', async () => {
    const c = await start({ limits: { output: 4 } }); // refused bodies count too (the limit is checked first)
    const key = (await c.post('create', { projectName: 'p' })).json.experimentKey as string;
    expect((await c.post('output', { experimentKey: key, outputLines: [{ output: 'x\n' }] })).json.msg).toMatch(/runContext is required/);
    expect((await c.post('output', { experimentKey: key, runContext: null, outputLines: [] })).status).toBe(400);
    expect((await c.post('output', { experimentKey: key, runContext: null, outputLines: [{ output: 1 }] })).json.msg).toMatch(/output must be a string/);
    const ok = await c.post('output', { experimentKey: key, runContext: null, outputLines: [{ output: 'hi\n', stderr: true, localTimestamp: Date.now(), offset: 0 }] });
    expect(ok.json).toEqual({ msg: 'Saved' });
    expect((await c.post('output', { experimentKey: key, runContext: null, outputLines: [{ output: 'again\n' }] })).status).toBe(429);
    expect((await c.post('log-other', { experimentKey: key, key: 'k', value: 'v' })).status).toBe(200);
    expect(c.server.experiment(key)!.output.map((l) => [l.output, l.stderr, l.offset])).toEqual([['hi\n', true, 0]]);
  });
});

// Tests of the local W&B backend test server (reference: wandb-comet-aim.md A.2 / A.5).
import { gzipSync } from 'node:zlib';
import { afterAll, describe, expect, it } from 'vitest';
import { DEFAULT_API_KEY, MAX_LINE_BYTES, WandbTestServer, graphqlOperation, type WandbTestServerOptions } from './server.js';

interface Reply {
  status: number;
  json: any;
  headers: Headers;
}

const servers: WandbTestServer[] = [];
afterAll(async () => {
  await Promise.all(servers.map((s) => s.close()));
});

async function start(options: WandbTestServerOptions = {}): Promise<Client> {
  const s = await WandbTestServer.start(options);
  servers.push(s);
  return new Client(s);
}

const basic = (key: string): string => `Basic ${Buffer.from(`api:${key}`).toString('base64')}`;

const UPSERT = `mutation UpsertBucket($id: String, $name: String, $project: String, $entity: String, $config: JSONString, $tags: [String!]) {
  upsertBucket(input: {id: $id, name: $name, modelName: $project, entityName: $entity, config: $config, tags: $tags}) {
    bucket { id name displayName description config sweepName historyLineCount project { id name entity { id name } } }
    inserted
  }
}`;
const VIEWER = 'query Viewer { viewer { id entity username teams { edges { node { name } } } } }';
const RESUME = `query RunResumeStatus($project: String, $entity: String, $name: String!) {
  model(name: $project, entityName: $entity) { bucket(name: $name, missingOk: true) { id name historyLineCount summaryMetrics config eventsLineCount logLineCount historyTail } }
}`;

const row = (step: number, extra: Record<string, unknown> = {}): string =>
  JSON.stringify({ ...extra, _step: step, _runtime: step * 0.5, _timestamp: 1_700_000_000 + step });

class Client {
  constructor(readonly server: WandbTestServer) {}

  async post(path: string, body: unknown, headers: Record<string, string> = {}, raw?: string | Buffer): Promise<Reply> {
    const res = await fetch(this.server.url + path, {
      method: 'POST',
      headers: { Authorization: basic(this.server.apiKey), 'Content-Type': 'application/json', ...headers },
      body: raw ?? JSON.stringify(body),
    });
    const text = await res.text();
    let json: any;
    try {
      json = JSON.parse(text);
    } catch {
      json = undefined;
    }
    return { status: res.status, json, headers: res.headers };
  }

  gql(query: string, variables: Record<string, unknown> = {}, operationName?: string, headers?: Record<string, string>): Promise<Reply> {
    return this.post('/graphql', { query, variables, ...(operationName ? { operationName } : {}) }, headers);
  }

  async upsert(variables: Record<string, unknown>): Promise<any> {
    const r = await this.gql(UPSERT, variables, 'UpsertBucket');
    expect(r.status).toBe(200);
    expect(r.json.errors).toBeUndefined();
    return r.json.data.upsertBucket;
  }

  stream(runId: string, body: unknown, project = 'p', entity = 'test-entity', headers?: Record<string, string>): Promise<Reply> {
    return this.post(`/files/${entity}/${project}/${runId}/file_stream`, body, headers);
  }

  history(runId: string, offset: number, lines: string[], project = 'p'): Promise<Reply> {
    return this.stream(runId, { files: { 'wandb-history.jsonl': { offset, content: lines } } }, project);
  }
}

describe('graphql', () => {
  it('auth: Basic api:<key> on every request, else 401', async () => {
    const c = await start();
    expect(c.server.apiKey).toBe(DEFAULT_API_KEY);
    expect(c.server.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect(c.server.authorization).toBe(basic(DEFAULT_API_KEY));
    for (const auth of [basic('wrong'), `Bearer ${DEFAULT_API_KEY}`, `Basic ${Buffer.from(`user:${DEFAULT_API_KEY}`).toString('base64')}`, DEFAULT_API_KEY]) {
      const r = await c.gql(VIEWER, {}, undefined, { Authorization: auth });
      expect(r.status).toBe(401);
      expect(r.json.errors[0].message).toMatch(/not logged in/);
    }
    const noAuth = await fetch(`${c.server.url}/graphql`, { method: 'POST', body: JSON.stringify({ query: VIEWER }) });
    expect(noAuth.status).toBe(401);
    await c.upsert({ name: 'r1', project: 'p' });
    expect((await c.stream('r1', {}, 'p', 'test-entity', { Authorization: basic('nope') })).status).toBe(401);
    expect(c.server.run('test-entity', 'p', 'r1')!.heartbeats).toBe(0);

    const custom = await start({ apiKey: 'k'.repeat(40), defaultEntity: 'me' });
    const v = await custom.gql(VIEWER);
    expect(v.status).toBe(200);
    expect(v.json.data.viewer.entity).toBe('me');
  });

  it('Viewer', async () => {
    const c = await start();
    const r = await c.gql(VIEWER, {}, 'Viewer');
    expect(r.status).toBe(200);
    expect(r.json).toEqual({ data: { viewer: { id: expect.any(String), entity: 'test-entity', username: 'test-entity', teams: { edges: [] } } } });
  });

  it('operation detection: operationName, query text, root field; unknown → errors with 200', async () => {
    expect(graphqlOperation({ query: 'query X { viewer { id } }', operationName: 'Viewer' })).toBe('Viewer');
    expect(graphqlOperation({ query: '# c\nmutation UpsertBucket($a: String) { upsertBucket { inserted } }' })).toBe('UpsertBucket');
    expect(graphqlOperation({ query: '{ viewer { id } }' })).toBe('Viewer');
    expect(graphqlOperation({ query: 'query { model(name: "p") { id } }' })).toBe('RunResumeStatus');
    expect(graphqlOperation({ query: '{ somethingElse }' })).toBeUndefined();
    const c = await start();
    expect((await c.gql('{ viewer { id entity } }')).json.data.viewer.entity).toBe('test-entity');
    const u = await c.gql('query ServerInfo { serverInfo { cliVersionInfo } }');
    expect(u.status).toBe(200);
    expect(u.json).toEqual({ errors: [{ message: 'Unknown operation: ServerInfo' }], data: null });
    expect((await c.post('/graphql', { variables: {} })).status).toBe(400);
    expect((await c.post('/graphql', undefined, {}, 'not json')).status).toBe(400);
    expect(c.server.requests.map((r) => r.operation)).toEqual(['Viewer', 'ServerInfo', undefined, undefined]);
  });

  it('UpsertBucket: create, then update; renamed inputs; response shape', async () => {
    const c = await start();
    const created = await c.upsert({
      name: 'run1', modelName: 'proj', entityName: 'ent', displayName: 'first', notes: 'n', groupName: 'g', jobType: 'train', tags: ['a', 'b'],
      config: JSON.stringify({ lr: { value: 0.1 }, _wandb: { t: { 1: [1] }, cli_version: '0.1' } }),
    });
    expect(created.inserted).toBe(true);
    expect(created.bucket).toEqual({
      id: expect.any(String), name: 'run1', displayName: 'first', description: 'n',
      config: JSON.stringify({ lr: { value: 0.1 }, _wandb: { t: { 1: [1] }, cli_version: '0.1' } }),
      sweepName: null, historyLineCount: 0,
      project: { id: expect.any(String), name: 'proj', entity: { id: expect.any(String), name: 'ent' } },
    });
    const updated = await c.upsert({ id: created.bucket.id, name: 'run1', project: 'proj', entity: 'ent', config: JSON.stringify({ lr: { value: 0.2 } }), tags: ['c'] });
    expect(updated.inserted).toBe(false);
    expect(updated.bucket.id).toBe(created.bucket.id);
    const r = c.server.run('ent', 'proj', 'run1')!;
    expect(r).toMatchObject({
      entity: 'ent', project: 'proj', name: 'run1', storageId: created.bucket.id, displayName: 'first', notes: 'n', groupName: 'g',
      jobType: 'train', tags: ['c'], config: { lr: { value: 0.2 } }, upserts: 2, history: [], summary: null, complete: false,
      exitcode: null, heartbeats: 0, fileStreamPosts: 0, problems: [],
    });
    // defaults: entity = defaultEntity, random run id when no name
    const d = await c.upsert({ modelName: 'q' });
    expect(d.bucket.name).toMatch(/^[a-z0-9]{8}$/);
    expect(c.server.run('test-entity', 'q', d.bucket.name)).toBeDefined();
    expect(c.server.runs().map((x) => x.name)).toEqual(['run1', d.bucket.name]);
  });

  it('UpsertBucket: config-form problem (what npm @wandb/sdk 0.5.1 sends), bad variables', async () => {
    const c = await start();
    await c.upsert({ name: 'raw', project: 'p', config: JSON.stringify({ lr: 0.001, layers: { value: 2 } }) });
    expect(c.server.run('test-entity', 'p', 'raw')!.problems).toEqual(['config not in {key: {value}} form']);
    expect(c.server.run('test-entity', 'p', 'raw')!.config).toEqual({ lr: 0.001, layers: { value: 2 } });
    expect(c.server.problems).toEqual(['test-entity/p/raw: config not in {key: {value}} form']);
    await c.upsert({ name: 'obj', project: 'p', config: { a: { value: 1 } } });
    expect(c.server.run('test-entity', 'p', 'obj')!.problems).toEqual(['config is not a JSON string (sent as object)']);
    await c.upsert({ name: 'ok', project: 'p', config: JSON.stringify({ a: { value: 1, desc: null }, _wandb: { value: { t: 1 } } }) });
    expect(c.server.run('test-entity', 'p', 'ok')!.problems).toEqual([]);
    for (const variables of [{ name: 'x', config: '{nope' }, { name: 'x', config: '[1]' }, { name: 'x', tags: [1] }, { name: 'x', summaryMetrics: 'x' }]) {
      const r = await c.gql(UPSERT, variables, 'UpsertBucket');
      expect(r.status).toBe(400);
      expect(r.json.errors[0].message).toBeTruthy();
    }
    expect(c.server.run('test-entity', 'uncategorized', 'x')).toBeUndefined();
  });

  it('RunResumeStatus: existing run and missing run', async () => {
    const c = await start();
    await c.upsert({ name: 'r', project: 'p', config: JSON.stringify({ a: { value: 1 } }) });
    await c.history('r', 0, [row(0), row(1), row(2)]);
    await c.stream('r', { files: { 'wandb-summary.json': { offset: 0, content: [JSON.stringify({ loss: 1, _step: 2 })] }, 'output.log': { offset: 0, content: ['a', 'b'] } } });
    const hit = await c.gql(RESUME, { project: 'p', entity: 'test-entity', name: 'r' }, 'RunResumeStatus');
    expect(hit.json.data.model.bucket).toEqual({
      id: expect.any(String), name: 'r', displayName: null, historyLineCount: 3, summaryMetrics: JSON.stringify({ loss: 1, _step: 2 }),
      config: JSON.stringify({ a: { value: 1 } }), eventsLineCount: 0, logLineCount: 2, historyTail: '[]',
    });
    const alt = await c.gql(RESUME, { modelName: 'p', entityName: 'test-entity', name: 'r' });
    expect(alt.json.data.model.bucket.historyLineCount).toBe(3);
    const miss = await c.gql(RESUME, { project: 'p', name: 'nope' }, 'RunResumeStatus');
    expect(miss.status).toBe(200);
    expect(miss.json.data.model.bucket).toBeNull();
  });
});

describe('file_stream', () => {
  it('before UpsertBucket → 404 and a problem (attached when the run appears)', async () => {
    const c = await start();
    const r = await c.history('late', 0, [row(0)]);
    expect(r.status).toBe(404);
    expect(r.json.error).toMatch(/UpsertBucket/);
    expect(c.server.problems).toEqual(['test-entity/p/late: file_stream before UpsertBucket']);
    await c.upsert({ name: 'late', project: 'p' });
    expect(c.server.run('test-entity', 'p', 'late')!.problems).toEqual(['file_stream before UpsertBucket']);
    expect(c.server.run('test-entity', 'p', 'late')!.history).toEqual([]);
  });

  it('history: historyLineCount, idempotent re-send by offset, gap detection', async () => {
    const c = await start();
    await c.upsert({ name: 'r', project: 'p' });
    const ok = await c.history('r', 0, [row(0, { loss: 1 }), row(1, { loss: 0.5 })]);
    expect(ok.status).toBe(200);
    expect(ok.json).toEqual({ exitcode: null, limits: {} });
    expect((await c.upsert({ name: 'r', project: 'p' })).bucket.historyLineCount).toBe(2);
    // a retry re-sends offset 1 plus a new line: no duplicate
    expect((await c.history('r', 1, [row(1, { loss: 0.5 }), row(2, { loss: 0.25 })])).status).toBe(200);
    let run = c.server.run('test-entity', 'p', 'r')!;
    expect(run.history.map((h) => [h.offset, h.row.loss])).toEqual([[0, 1], [1, 0.5], [2, 0.25]]);
    expect(run.problems).toEqual([]);
    // gap: nothing stored, 400, problem
    const gap = await c.history('r', 5, [row(5)]);
    expect(gap.status).toBe(400);
    run = c.server.run('test-entity', 'p', 'r')!;
    expect(run.history).toHaveLength(3);
    expect(run.problems).toEqual(['history gap at offset 5, have 3 lines']);
    // a rewrite with different content is replaced but reported
    await c.history('r', 2, [row(2, { loss: 9 })]);
    run = c.server.run('test-entity', 'p', 'r')!;
    expect(run.history[2]!.row.loss).toBe(9);
    expect(run.problems.at(-1)).toBe('history line 2 rewritten with different content');
    expect(run.fileStreamPosts).toBe(4);
  });

  it('history rows: required keys, steps monotonic, JSON objects', async () => {
    const c = await start();
    await c.upsert({ name: 'r', project: 'p' });
    await c.history('r', 0, [JSON.stringify({ loss: 1, _runtime: 0, _timestamp: 1 }), row(3), row(3), row(2), JSON.stringify({ _step: 4.5, _runtime: 'x', _timestamp: 2 })]);
    const run = c.server.run('test-entity', 'p', 'r')!;
    expect(run.history).toHaveLength(5);
    expect(run.problems).toEqual([
      'history line 0: _step missing or not a number',
      'history line 4: _runtime missing or not a number',
      'history line 4: _step is not an integer',
      'step went backwards at offset 3: _step 2 after 3',
    ]);
    expect((await c.history('r', 5, ['{bad'])).status).toBe(400);
    expect((await c.history('r', 5, ['[1]'])).status).toBe(400);
    expect((await c.stream('r', { files: { 'wandb-history.jsonl': { offset: -1, content: [] } } })).status).toBe(400);
    expect((await c.stream('r', { files: { 'wandb-history.jsonl': { offset: 5, content: [{ _step: 1 }] } } })).status).toBe(400);
    expect(c.server.run('test-entity', 'p', 'r')!.history).toHaveLength(5);
  });

  it('summary keeps the last line; heartbeats; gzip bodies', async () => {
    const c = await start();
    await c.upsert({ name: 'r', project: 'p' });
    const s = (lines: unknown[], offset = 0) => c.stream('r', { files: { 'wandb-summary.json': { offset, content: lines.map((l) => JSON.stringify(l)) } } });
    await s([{ loss: 1 }, { loss: 0.5, _step: 1 }]);
    expect(c.server.run('test-entity', 'p', 'r')!.summary).toEqual({ loss: 0.5, _step: 1 });
    await s([{ loss: 0.1, _step: 2 }], 2);
    expect(c.server.run('test-entity', 'p', 'r')!.summary).toEqual({ loss: 0.1, _step: 2 });
    await c.stream('r', {});
    await c.stream('r', {});
    await c.stream('r', { files: {} }); // not a heartbeat
    const gz = await c.post('/files/test-entity/p/r/file_stream', undefined, { 'Content-Encoding': 'gzip' }, gzipSync(JSON.stringify({})));
    expect(gz.status).toBe(200);
    const run = c.server.run('test-entity', 'p', 'r')!;
    expect(run.heartbeats).toBe(3);
    expect(run.fileStreamPosts).toBe(6);
    expect(run.problems).toEqual([]);
  });

  it('upstream rule: the summary is the line at the highest offset (a lower offset does not replace it)', async () => {
    const c = await start();
    await c.upsert({ name: 'r', project: 'p' });
    const s = (line: unknown, offset: number) => c.stream('r', { files: { 'wandb-summary.json': { offset, content: [JSON.stringify(line)] } } });
    await s({ loss: 1 }, 0);
    await s({ loss: 0.5 }, 3); // a client that moves the summary line (what trackspec did before)
    expect((await s({ loss: 0.1 }, 0)).status).toBe(200);
    expect(c.server.run('test-entity', 'p', 'r')!).toMatchObject({ summary: { loss: 0.5 }, summaryOffset: 3 });
    await s({ loss: 0.05 }, 3);
    expect(c.server.run('test-entity', 'p', 'r')!.summary).toEqual({ loss: 0.05 });
  });

  it('upstream rule: config and summaryMetrics accept bare NaN/Infinity (wandb-core writes them)', async () => {
    const c = await start();
    const r = await c.gql(UPSERT, { name: 'n', project: 'p', config: '{"a": {"value": NaN}, "b": {"value": -Infinity}}' }, 'UpsertBucket');
    expect(r.status).toBe(200);
    const cfg = c.server.run('test-entity', 'p', 'n')!.config as Record<string, { value: number }>;
    expect([cfg.a!.value, cfg.b!.value]).toEqual([NaN, -Infinity]);
  });

  it('upstream rule: RunResumeStatus answers wandbConfig(keys) from the config\'s _wandb (null without it)', async () => {
    const c = await start();
    const q = `query RunResumeStatus($project: String, $entity: String, $name: String!) { model(name: $project, entityName: $entity) { bucket(name: $name, missingOk: true) { id wandbConfig(keys: ["t"]) } } }`;
    c.server.seedRun('test-entity', 'p', 'started', 1);
    c.server.seedRun('test-entity', 'p', 'bare', 1, {}, { started: false });
    await c.gql(UPSERT, { name: 'mine', project: 'p', config: JSON.stringify({ _wandb: { value: { t: { '1': [1] }, m: [] } }, a: { value: 1 } }) }, 'UpsertBucket');
    const wc = async (name: string) => (await c.gql(q, { project: 'p', name }, 'RunResumeStatus')).json.data.model.bucket.wandbConfig;
    expect(JSON.parse(await wc('started'))).toEqual({ t: { '13': 'seeded' } });
    expect(await wc('bare')).toBeNull();
    expect(JSON.parse(await wc('mine'))).toEqual({ t: { '1': [1] } });
  });

  it('upstream rule: a request over 10 MiB is refused with 413, a line over the line limit with 400; nothing stored', async () => {
    const c = await start();
    await c.upsert({ name: 'r', project: 'p' });
    const big = 'x'.repeat(3 << 20);
    const tooBig = await c.history('r', 0, [0, 1, 2, 3].map((i) => row(i, { big })));
    expect(tooBig.status).toBe(413);
    expect(tooBig.json.error).toMatch(/over the limit of 10485760 bytes/);
    const line = await c.history('r', 0, [row(0, { big: 'y'.repeat(MAX_LINE_BYTES) })]);
    expect(line.status).toBe(400);
    expect(line.json.error).toMatch(/over the line limit/);
    expect((await c.history('r', 0, [0, 1, 2].map((i) => row(i, { big })))).status).toBe(200);
    expect(c.server.run('test-entity', 'p', 'r')!.history).toHaveLength(3);
  });

  it('complete/exitcode; writes after completion are reported; a new upsert resumes', async () => {
    const c = await start();
    await c.upsert({ name: 'r', project: 'p' });
    await c.history('r', 0, [row(0)]);
    expect((await c.stream('r', { complete: true, exitcode: 1 })).status).toBe(200);
    let run = c.server.run('test-entity', 'p', 'r')!;
    expect([run.complete, run.exitcode, run.problems]).toEqual([true, 1, []]);
    expect((await c.stream('r', {})).status).toBe(200);
    run = c.server.run('test-entity', 'p', 'r')!;
    expect(run.problems).toEqual(['write after complete']);
    expect(run.heartbeats).toBe(1);
    await c.upsert({ name: 'r', project: 'p' });
    run = c.server.run('test-entity', 'p', 'r')!;
    expect([run.complete, run.exitcode]).toEqual([false, null]);
    await c.stream('r', { complete: true });
    expect(c.server.run('test-entity', 'p', 'r')!.problems).toEqual(['write after complete', 'complete without exitcode']);
    expect((await c.stream('r', { complete: 'yes' })).status).toBe(400);
    expect((await c.stream('r', { exitcode: 1.5 })).status).toBe(400);
  });
});

describe('seedRun, faults, restart, recording', () => {
  it('seedRun: resume at historyLineCount', async () => {
    const c = await start();
    c.server.seedRun('test-entity', 'p', 'old', 4, { lr: 0.1 });
    let run = c.server.run('test-entity', 'p', 'old')!;
    expect(run.history.map((h) => h.offset)).toEqual([0, 1, 2, 3]);
    expect(run.history[3]!.row).toMatchObject({ _step: 3, _runtime: 3 });
    expect(run).toMatchObject({ config: { lr: { value: 0.1 }, _wandb: { value: { t: {} } } }, upserts: 0, complete: false, summary: { _step: 3 } });
    const status = await c.gql(RESUME, { project: 'p', name: 'old' }, 'RunResumeStatus');
    expect(status.json.data.model.bucket.historyLineCount).toBe(4);
    expect(JSON.parse(status.json.data.model.bucket.config)).toEqual({ lr: { value: 0.1 }, _wandb: { value: { t: { '13': 'seeded' } } } });
    const up = await c.upsert({ name: 'old', project: 'p' });
    expect(up).toMatchObject({ inserted: false, bucket: { historyLineCount: 4 } });
    expect((await c.history('old', 4, [row(4)])).status).toBe(200);
    expect((await c.history('old', 6, [row(6)])).status).toBe(400);
    run = c.server.run('test-entity', 'p', 'old')!;
    expect(run.history).toHaveLength(5);
    expect(run.problems).toEqual(['history gap at offset 6, have 5 lines']);
    c.server.seedRun('test-entity', 'p', 'wrapped', 0, { a: { value: 1 } });
    expect(c.server.run('test-entity', 'p', 'wrapped')).toMatchObject({ config: { a: { value: 1 } }, summary: null, history: [] });
  });

  it('status fault with Retry-After, path filter, times; data untouched', async () => {
    const c = await start();
    await c.upsert({ name: 'r', project: 'p' });
    c.server.inject({ kind: 'status', status: 429, retryAfter: '1', path: '/file_stream', times: 2 });
    const r1 = await c.history('r', 0, [row(0)]);
    expect(r1.status).toBe(429);
    expect(r1.headers.get('retry-after')).toBe('1');
    expect(r1.json).toEqual({ error: 'Injected fault: HTTP 429' });
    expect((await c.gql(VIEWER)).status).toBe(200); // other path
    expect((await c.history('r', 0, [row(0)])).status).toBe(429);
    expect((await c.history('r', 0, [row(0)])).status).toBe(200);
    expect(c.server.run('test-entity', 'p', 'r')).toMatchObject({ fileStreamPosts: 1, history: [{ offset: 0 }] });
    c.server.inject({ kind: 'status', path: /graphql$/ });
    const g = await c.gql(VIEWER);
    expect([g.status, g.json.errors[0].message]).toEqual([503, 'Injected fault: HTTP 503']);
  });

  it('refuse and reset drop the connection; delay then process; clearFaults', async () => {
    const c = await start();
    await c.upsert({ name: 'r', project: 'p' });
    c.server.inject({ kind: 'refuse' });
    await expect(c.history('r', 0, [row(0)])).rejects.toThrow();
    c.server.inject({ kind: 'reset', path: 'file_stream' });
    await expect(c.history('r', 0, [row(0)])).rejects.toThrow();
    expect(c.server.run('test-entity', 'p', 'r')!.history).toHaveLength(0);
    expect(c.server.requests.slice(-2).map((r) => r.status)).toEqual([0, 0]);
    c.server.inject({ kind: 'delay', ms: 150 });
    const t0 = Date.now();
    expect((await c.history('r', 0, [row(0)])).status).toBe(200);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(140);
    c.server.inject({ kind: 'status', status: 500, times: Infinity });
    expect((await c.stream('r', {})).status).toBe(500);
    expect((await c.gql(VIEWER)).status).toBe(500);
    c.server.clearFaults();
    expect((await c.stream('r', {})).status).toBe(200);
    expect(c.server.run('test-entity', 'p', 'r')).toMatchObject({ heartbeats: 1, history: [{ offset: 0 }] });
  });

  it('restart keeps data and port; wipe loses it; stopped server refuses connections', async () => {
    const c = await start();
    const url = c.server.url;
    await c.upsert({ name: 'r', project: 'p' });
    await c.server.stop();
    await expect(c.gql(VIEWER)).rejects.toThrow();
    await c.server.restart();
    expect(c.server.url).toBe(url);
    expect((await c.history('r', 0, [row(0)])).status).toBe(200);
    await c.server.restart({ wipe: true });
    expect(c.server.url).toBe(url);
    expect(c.server.runs()).toEqual([]);
    expect((await c.history('r', 1, [row(1)])).status).toBe(404);
  });

  it('records requests with GraphQL operations in stream order; 404/405; copies', async () => {
    const c = await start();
    const before = Date.now();
    await c.gql(VIEWER);
    await c.upsert({ name: 'r', project: 'p', config: JSON.stringify({ a: { value: 1 } }) });
    await c.history('r', 0, [row(0)]);
    await c.stream('r', { complete: true, exitcode: 0 });
    expect(c.server.requests.map((r) => r.operation ?? r.path)).toEqual(['Viewer', 'UpsertBucket', '/files/test-entity/p/r/file_stream', '/files/test-entity/p/r/file_stream']);
    const [viewer, upsert] = c.server.requests;
    expect(viewer).toMatchObject({ method: 'POST', path: '/graphql', query: {}, status: 200, body: { query: VIEWER } });
    expect(viewer!.headers.authorization).toBe(basic(c.server.apiKey));
    expect(viewer!.at).toBeGreaterThanOrEqual(before);
    expect((upsert!.body as any).variables.name).toBe('r');
    expect((await c.post('/api/other', {})).status).toBe(404);
    const get = await fetch(`${c.server.url}/graphql`, { headers: { Authorization: c.server.authorization } });
    expect([get.status, get.headers.get('allow')]).toEqual([405, 'POST']);
    const copy = c.server.run('test-entity', 'p', 'r')!;
    copy.history.length = 0;
    expect(c.server.run('test-entity', 'p', 'r')!.history).toHaveLength(1);
    expect(c.server.run('test-entity', 'p', 'r')).toMatchObject({ complete: true, exitcode: 0, problems: [] });
  });
});

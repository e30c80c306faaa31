// Tests of the MLflow 2.12.2 test server against /work/shared/reference/mlflow-rest.md.
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { request as httpRequest } from 'node:http';
import { AUTH_401_BODY, MlflowTestServer, type MlflowTestServerOptions } from './server.js';
import { normpath, pyRepr } from './server-proto.js';

type Store = 'sqlite' | 'file';
const STORES: Store[] = ['sqlite', 'file'];

interface Reply {
  status: number;
  text: string;
  json: any;
  headers: Headers;
}

async function call(
  base: string,
  method: string,
  path: string,
  body?: unknown,
  opts: { contentType?: string | null; raw?: string; headers?: Record<string, string>; prefix?: string } = {},
): Promise<Reply> {
  const headers: Record<string, string> = { ...(opts.headers ?? {}) };
  const ct = opts.contentType === undefined ? 'application/json' : opts.contentType;
  if (method !== 'GET' && ct !== null) headers['Content-Type'] = ct;
  const res = await fetch(`${base}${opts.prefix ?? '/api/2.0/mlflow/'}${path}`, {
    method,
    headers,
    body: method === 'GET' ? undefined : opts.raw ?? (body === undefined ? undefined : JSON.stringify(body)),
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

class Client {
  constructor(readonly server: MlflowTestServer) {}
  post(path: string, body?: unknown, opts?: Parameters<typeof call>[4]): Promise<Reply> {
    return call(this.server.url, 'POST', path, body, opts);
  }
  get(path: string, query: Record<string, string> = {}, opts?: Parameters<typeof call>[4]): Promise<Reply> {
    const qs = new URLSearchParams(query).toString();
    return call(this.server.url, 'GET', qs ? `${path}?${qs}` : path, undefined, opts);
  }
  async ok(path: string, body: unknown): Promise<any> {
    const r = await this.post(path, body);
    expect(r.status, r.text).toBe(200);
    return r.json;
  }
  async experiment(name = `exp-${Math.random().toString(36).slice(2)}`): Promise<string> {
    return (await this.ok('experiments/create', { name })).experiment_id;
  }
  async run(experimentId: string, extra: Record<string, unknown> = {}): Promise<string> {
    return (await this.ok('runs/create', { experiment_id: experimentId, ...extra })).run.info.run_id;
  }
}

const servers: MlflowTestServer[] = [];
async function start(options: MlflowTestServerOptions = {}): Promise<Client> {
  const s = await MlflowTestServer.start(options);
  servers.push(s);
  return new Client(s);
}
afterAll(async () => {
  await Promise.all(servers.map((s) => s.close()));
});

const err = (r: Reply): { status: number; code: string; message: string } => ({ status: r.status, code: r.json?.error_code, message: r.json?.message });

// ---------------------------------------------------------------------------------------------

describe('helpers', () => {
  it('normpath matches posixpath.normpath', () => {
    const cases: Array<[string, string]> = [
      ['', '.'],
      ['a//b', 'a/b'],
      ['a/./b', 'a/b'],
      ['a/', 'a'],
      ['/a', '/a'],
      ['//a', '//a'],
      ['///a', '/a'],
      ['a/../..', '..'],
      ['../x', '../x'],
      ['a/b/../c', 'a/c'],
    ];
    for (const [i, o] of cases) expect(normpath(i), i).toBe(o);
  });
  it('pyRepr renders Python literals', () => {
    expect(pyRepr([{ key: 'nots', value: 1 }])).toBe("[{'key': 'nots', 'value': 1}]");
    expect(pyRepr({ a: null, b: true, c: 1.5, d: "it's" })).toBe(`{'a': None, 'b': True, 'c': 1.5, 'd': "it's"}`);
    expect(pyRepr(1e-7)).toBe('1e-07');
  });
});

describe('transport', () => {
  let c: Client;
  beforeAll(async () => {
    c = await start();
  });

  it('/health and /version answer text/html', async () => {
    for (const [p, body] of [
      ['/health', 'OK'],
      ['/version', '2.12.2'],
    ] as const) {
      const r = await fetch(c.server.url + p);
      expect(r.status).toBe(200);
      expect(r.headers.get('content-type')).toBe('text/html; charset=utf-8');
      expect(await r.text()).toBe(body);
    }
  });

  it('mounts the API under /api and /ajax-api, not /api/2.0/preview', async () => {
    const id = await c.experiment('mounted');
    const a = await c.get('experiments/get', { experiment_id: id }, { prefix: '/ajax-api/2.0/mlflow/' });
    expect(a.status).toBe(200);
    expect(a.json.experiment.name).toBe('mounted');
    const p = await c.get('experiments/get', { experiment_id: id }, { prefix: '/api/2.0/preview/mlflow/' });
    expect(p.status).toBe(404);
    expect(p.headers.get('content-type')).toBe('text/html; charset=utf-8');
    expect(p.text).toContain('<title>404 Not Found</title>');
  });

  it('unknown path → 404 HTML, wrong method → 405 HTML with Allow', async () => {
    const n = await c.post('runs/nope', {});
    expect(n.status).toBe(404);
    expect(n.text).toMatch(/^<!doctype html>/);
    const m = await c.get('runs/log-batch');
    expect(m.status).toBe(405);
    expect(m.text).toContain('<title>405 Method Not Allowed</title>');
    expect(m.headers.get('allow')).toContain('POST');
    const g = await c.post('runs/get', {});
    expect(g.status).toBe(405);
  });

  it.each([
    ['missing', null],
    ['text/plain', 'text/plain'],
    ['form', 'application/x-www-form-urlencoded'],
  ])('POST without application/json Content-Type (%s) → 400', async (_n, ct) => {
    const r = await c.post('experiments/create', { name: 'ct' }, { contentType: ct });
    expect(err(r)).toEqual({ status: 400, code: 'INVALID_PARAMETER_VALUE', message: "Bad Request. Content-Type must be one of ['application/json']." });
  });

  it('accepts application/json with a charset parameter', async () => {
    const r = await c.post('experiments/create', { name: 'charset' }, { contentType: 'application/json; charset=utf-8' });
    expect(r.status).toBe(200);
  });

  it('non-JSON body to log-batch → 500 HTML; elsewhere it counts as an empty body', async () => {
    const r = await c.post('runs/log-batch', undefined, { raw: 'this is not json' });
    expect(r.status).toBe(500);
    expect(r.headers.get('content-type')).toBe('text/html; charset=utf-8');
    expect(r.text).toContain('<title>500 Internal Server Error</title>');
    const e = await c.post('experiments/create', undefined, { raw: 'nope' });
    expect(err(e)).toMatchObject({ status: 400, message: expect.stringMatching(/^Missing value for required parameter 'name'\./) });
    const arr = await c.post('experiments/create', undefined, { raw: '[1,2]' });
    expect(arr.status).toBe(500);
  });

  it('errors are {"error_code","message"} JSON; successful mutations return {}', async () => {
    const r = await c.get('experiments/get', { experiment_id: '999' });
    expect(r.headers.get('content-type')).toBe('application/json');
    expect(Object.keys(r.json).sort()).toEqual(['error_code', 'message']);
    const id = await c.experiment();
    expect(await c.ok('experiments/set-experiment-tag', { experiment_id: id, key: 'k', value: 'v' })).toEqual({});
  });

  it('records every request', async () => {
    const before = c.server.requests.length;
    await c.post('experiments/create', { name: 'recorded' });
    const rec = c.server.requests[before]!;
    expect(rec).toMatchObject({ method: 'POST', path: '/api/2.0/mlflow/experiments/create', body: { name: 'recorded' }, status: 200 });
    expect(rec.headers['content-type']).toBe('application/json');
  });
});

describe.each(STORES)('experiments (%s)', (store) => {
  let c: Client;
  beforeAll(async () => {
    c = await start({ store });
  });

  it('has the Default experiment "0" without tags', async () => {
    const r = await c.get('experiments/get', { experiment_id: '0' });
    expect(r.json.experiment).toMatchObject({ experiment_id: '0', name: 'Default', lifecycle_stage: 'active' });
    expect(r.json.experiment.tags).toBeUndefined();
    expect(typeof r.json.experiment.creation_time).toBe('number');
  });

  it('assigns ids as strings (sqlite sequential, file 18 random digits)', async () => {
    const a = await c.experiment();
    const b = await c.experiment();
    if (store === 'sqlite') expect(Number(b)).toBe(Number(a) + 1);
    else {
      expect(a).toMatch(/^[1-9]\d{17}$/);
      expect(b).toMatch(/^[1-9]\d{17}$/);
    }
  });

  it('accepts experiment_id as a JSON number', async () => {
    const id = await c.experiment('numeric-id');
    if (store === 'sqlite') {
      const r = await c.ok('runs/create', { experiment_id: Number(id) });
      expect(r.run.info.experiment_id).toBe(id);
    }
    const r = await c.ok('experiments/set-experiment-tag', { experiment_id: store === 'sqlite' ? Number(id) : id, key: 'a', value: 'b' });
    expect(r).toEqual({});
  });

  it('rejects a missing or empty name', async () => {
    for (const body of [{}, { name: '' }]) {
      const r = await c.post('experiments/create', body);
      expect(err(r)).toEqual({
        status: 400,
        code: 'INVALID_PARAMETER_VALUE',
        message: "Missing value for required parameter 'name'. See the API docs for more information about request parameters.",
      });
    }
  });

  it('duplicate name → 400 RESOURCE_ALREADY_EXISTS', async () => {
    await c.experiment('dup');
    const r = await c.post('experiments/create', { name: 'dup' });
    expect(r.status).toBe(400);
    expect(r.json.error_code).toBe('RESOURCE_ALREADY_EXISTS');
    if (store === 'sqlite') expect(r.json.message).toMatch(/^Experiment\(name=dup\) already exists\. Error: \(sqlite3\.IntegrityError\) UNIQUE constraint failed/);
    else expect(r.json.message).toBe("Experiment 'dup' already exists.");
  });

  it('unknown experiment → 404 with the store wording', async () => {
    const r = await c.get('experiments/get', { experiment_id: '999' });
    expect(err(r)).toEqual({
      status: 404,
      code: 'RESOURCE_DOES_NOT_EXIST',
      message: store === 'sqlite' ? 'No Experiment with id=999 exists' : 'Could not find experiment with ID 999',
    });
    const n = await c.get('experiments/get-by-name', { experiment_name: 'x-none' });
    expect(err(n)).toEqual({ status: 404, code: 'RESOURCE_DOES_NOT_EXIST', message: "Could not find experiment with name 'x-none'" });
  });

  it('create with tags, get, get-by-name, update, delete, restore', async () => {
    const id = (await c.ok('experiments/create', { name: 'life', tags: [{ key: 'team', value: 'ml' }] })).experiment_id;
    const g = await c.get('experiments/get-by-name', { experiment_name: 'life' });
    expect(g.json.experiment).toMatchObject({ experiment_id: id, tags: [{ key: 'team', value: 'ml' }] });
    await c.ok('experiments/update', { experiment_id: id, new_name: 'life2' });
    expect((await c.get('experiments/get', { experiment_id: id })).json.experiment.name).toBe('life2');
    await c.ok('experiments/delete', { experiment_id: id });
    const d = await c.get('experiments/get', { experiment_id: id });
    expect(d.json.experiment.lifecycle_stage).toBe('deleted');
    const byName = await c.get('experiments/get-by-name', { experiment_name: 'life2' });
    const reuse = await c.post('experiments/create', { name: 'life2' });
    if (store === 'sqlite') {
      expect(byName.json.experiment.experiment_id).toBe(id);
      expect(reuse.json.error_code).toBe('RESOURCE_ALREADY_EXISTS');
    } else {
      expect(byName.status).toBe(404);
      expect(reuse.status).toBe(200);
      expect(reuse.json.experiment_id).not.toBe(id);
    }
    const deleted = await c.post('experiments/search', { max_results: 100, view_type: 'DELETED_ONLY' });
    expect(deleted.json.experiments.map((e: any) => e.experiment_id)).toContain(id);
    if (store === 'sqlite') {
      await c.ok('experiments/restore', { experiment_id: id });
      expect((await c.get('experiments/get', { experiment_id: id })).json.experiment.lifecycle_stage).toBe('active');
    }
  });

  it('runs/create in a deleted experiment is rejected per store', async () => {
    const id = await c.experiment();
    await c.ok('experiments/delete', { experiment_id: id });
    const r = await c.post('runs/create', { experiment_id: id });
    if (store === 'sqlite') {
      expect(err(r)).toEqual({
        status: 400,
        code: 'INVALID_PARAMETER_VALUE',
        message: `The experiment ${id} must be in the 'active' state. Current state is deleted.`,
      });
    } else {
      expect(err(r)).toEqual({ status: 500, code: 'INVALID_STATE', message: `Could not create run under non-active experiment with ID ${id}.` });
    }
  });

  it('experiments/search requires max_results (GET and POST) and caps it at 50000', async () => {
    const expected = { status: 400, code: 'INVALID_PARAMETER_VALUE', message: 'Invalid value for max_results. It must be a positive integer, but got 0' };
    expect(err(await c.post('experiments/search', {}))).toEqual(expected);
    expect(err(await c.get('experiments/search', { filter: "name = 'x'" }))).toEqual(expected);
    expect(err(await c.post('experiments/search', { max_results: 50001 }))).toEqual({
      status: 400,
      code: 'INVALID_PARAMETER_VALUE',
      message: 'Invalid value for max_results. It must be at most 50000, but got 50001',
    });
    const g = await c.get('experiments/search', { max_results: '1000' });
    expect(g.json.experiments.some((e: any) => e.experiment_id === '0')).toBe(true);
  });

  it('experiments/search filters by name and pages', async () => {
    await c.experiment('page-a');
    await c.experiment('page-b');
    await c.experiment('page-c');
    const p1 = await c.post('experiments/search', { max_results: 2, filter: "name LIKE 'page-%'" });
    expect(p1.json.experiments).toHaveLength(2);
    expect(p1.json.next_page_token).toBeTruthy();
    const p2 = await c.post('experiments/search', { max_results: 2, filter: "name LIKE 'page-%'", page_token: p1.json.next_page_token });
    expect(p2.json.experiments).toHaveLength(1);
    expect(p2.json.next_page_token).toBeUndefined();
    const none = await c.post('experiments/search', { max_results: 2, filter: "name = 'no-such'" });
    expect(none.json).toEqual({});
  });

  it('experiment tag value > 5000: sqlite 400, file stores it whole', async () => {
    const id = await c.experiment();
    const r = await c.post('experiments/set-experiment-tag', { experiment_id: id, key: 'long', value: 'v'.repeat(5001) });
    if (store === 'sqlite') {
      expect(err(r)).toMatchObject({ status: 400, message: expect.stringMatching(/had length 5001, which exceeded length limit of 5000$/) });
    } else {
      expect(r.status).toBe(200);
      expect(c.server.experiments().find((e) => e.experiment_id === id)!.tags.long).toHaveLength(5001);
    }
    const bad = await c.post('experiments/set-experiment-tag', { experiment_id: id, key: 'bad:colon', value: 'x' });
    expect(bad.json.message).toBe(
      "Invalid tag name: 'bad:colon'. Names may only contain alphanumerics, underscores (_), dashes (-), periods (.), spaces ( ), and slashes (/).",
    );
  });
});

describe.each(STORES)('runs/create and runs/update (%s)', (store) => {
  let c: Client;
  let exp: string;
  beforeAll(async () => {
    c = await start({ store });
    exp = await c.experiment();
  });

  it('does not fill start_time; user_id only as sent; omits end_time', async () => {
    const r = await c.ok('runs/create', { experiment_id: exp, tags: [{ key: 'mlflow.user', value: 'alice' }] });
    const info = r.run.info;
    expect(info).toMatchObject({ experiment_id: exp, status: 'RUNNING', start_time: 0, user_id: '', lifecycle_stage: 'active' });
    expect(info.run_id).toMatch(/^[0-9a-f]{32}$/);
    expect(info.run_uuid).toBe(info.run_id);
    expect(info.end_time).toBeUndefined();
    expect(info.artifact_uri).toBe(`mlflow-artifacts:/${exp}/${info.run_id}/artifacts`);
    expect(Object.keys(info)).toEqual(['run_uuid', 'experiment_id', 'run_name', 'user_id', 'status', 'start_time', 'artifact_uri', 'lifecycle_stage', 'run_id']);
  });

  it('run_name and mlflow.runName tag', async () => {
    const a = await c.ok('runs/create', { experiment_id: exp, run_name: 'A', start_time: '17' });
    expect(a.run.info.run_name).toBe('A');
    expect(a.run.info.start_time).toBe(17);
    expect(a.run.data.tags).toContainEqual({ key: 'mlflow.runName', value: 'A' });
    const b = await c.ok('runs/create', { experiment_id: exp, tags: [{ key: 'mlflow.runName', value: 'B' }] });
    expect(b.run.info.run_name).toBe('B');
    const same = await c.ok('runs/create', { experiment_id: exp, run_name: 'C', tags: [{ key: 'mlflow.runName', value: 'C' }] });
    expect(same.run.info.run_name).toBe('C');
    const conflict = await c.post('runs/create', { experiment_id: exp, run_name: 'A', tags: [{ key: 'mlflow.runName', value: 'B' }] });
    expect(err(conflict)).toEqual({
      status: 400,
      code: 'INVALID_PARAMETER_VALUE',
      message: "Both 'run_name' argument and 'mlflow.runName' tag are specified, but with different values (run_name='A', mlflow.runName='B').",
    });
    const invented = await c.ok('runs/create', { experiment_id: exp });
    expect(invented.run.info.run_name).toMatch(/^[a-z]+-[a-z]+-\d{1,3}$/);
    expect(invented.run.data.tags).toContainEqual({ key: 'mlflow.runName', value: invented.run.info.run_name });
  });

  it('runs/create {} per store', async () => {
    const r = await c.post('runs/create', {});
    if (store === 'sqlite') {
      expect(err(r)).toMatchObject({ status: 400, code: 'BAD_REQUEST', message: expect.stringMatching(/^\(sqlite3\.IntegrityError\) FOREIGN KEY constraint failed/) });
    } else {
      expect(err(r)).toEqual({ status: 400, code: 'INVALID_PARAMETER_VALUE', message: "Invalid experiment ID: ''" });
    }
  });

  it('runs/update: statuses, unknown status ignored, end_time only when sent, run_name', async () => {
    const id = await c.run(exp, { run_name: 'u' });
    let r = await c.ok('runs/update', { run_id: id, status: 'FINISHED', end_time: 1234 });
    expect(r.run_info).toMatchObject({ status: 'FINISHED', end_time: 1234, run_id: id });
    r = await c.ok('runs/update', { run_id: id, status: 'RUNNING' });
    expect(r.run_info).toMatchObject({ status: 'RUNNING', end_time: 1234 });
    r = await c.ok('runs/update', { run_id: id, status: 'BOGUS' });
    expect(r.run_info.status).toBe('RUNNING');
    for (const s of ['SCHEDULED', 'FAILED', 'KILLED']) {
      expect((await c.ok('runs/update', { run_uuid: id, status: s })).run_info.status).toBe(s);
    }
    const id2 = await c.run(exp);
    const r2 = await c.ok('runs/update', { run_id: id2, status: 'FINISHED' });
    expect(r2.run_info.end_time).toBeUndefined();
    await c.ok('runs/update', { run_id: id2, run_name: 'renamed' });
    const g = await c.get('runs/get', { run_id: id2 });
    expect(g.json.run.info.run_name).toBe('renamed');
    expect(g.json.run.data.tags).toContainEqual({ key: 'mlflow.runName', value: 'renamed' });
    // setting the tag renames the run too
    await c.ok('runs/set-tag', { run_id: id2, key: 'mlflow.runName', value: 'by-tag' });
    expect((await c.get('runs/get', { run_id: id2 })).json.run.info.run_name).toBe('by-tag');
    // logging to a FINISHED run is allowed
    await c.ok('runs/log-parameter', { run_id: id2, key: 'p', value: 'v' });
  });

  it('unknown, malformed and deleted runs', async () => {
    const missing = 'a'.repeat(32);
    const r = await c.get('runs/get', { run_id: missing });
    expect(err(r)).toEqual({
      status: 404,
      code: 'RESOURCE_DOES_NOT_EXIST',
      message: store === 'sqlite' ? `Run with id=${missing} not found` : `Run '${missing}' not found`,
    });
    const bad = await c.post('runs/log-parameter', { run_id: 'bad id!', key: 'k', value: 'v' });
    expect(err(bad)).toEqual({ status: 400, code: 'INVALID_PARAMETER_VALUE', message: "Invalid run ID: 'bad id!'" });
    const id = await c.run(exp);
    await c.ok('runs/delete', { run_id: id });
    const log = await c.post('runs/log-metric', { run_id: id, key: 'm', value: 1, timestamp: 1 });
    expect(err(log)).toEqual({
      status: 400,
      code: 'INVALID_PARAMETER_VALUE',
      message: store === 'sqlite' ? `The run ${id} must be in the 'active' state. Current state is deleted.` : `The run ${id} must be in 'active' lifecycle_stage.`,
    });
    expect((await c.get('runs/get', { run_id: id })).json.run.info.lifecycle_stage).toBe('deleted');
    const s = await c.post('runs/search', { experiment_ids: [exp], run_view_type: 'DELETED_ONLY' });
    expect(s.json.runs.map((x: any) => x.info.run_id)).toEqual([id]);
    await c.ok('runs/restore', { run_id: id });
    await c.ok('runs/log-metric', { run_id: id, key: 'm', value: 1, timestamp: 1 });
  });

  it('delete-tag of an unset tag → 404', async () => {
    const id = await c.run(exp);
    await c.ok('runs/set-tag', { run_id: id, key: 't', value: '1' });
    await c.ok('runs/delete-tag', { run_id: id, key: 't' });
    const r = await c.post('runs/delete-tag', { run_id: id, key: 't' });
    expect(err(r)).toEqual({ status: 404, code: 'RESOURCE_DOES_NOT_EXIST', message: `No tag with name: t in run with id ${id}` });
  });
});

describe('logging rules (sqlite default)', () => {
  let c: Client;
  let exp: string;
  let run: string;
  beforeAll(async () => {
    c = await start();
    exp = await c.experiment();
    run = await c.run(exp);
  });

  const metric = (key: string) => ({ key, value: 1, timestamp: 1 });
  const kv = (key: string) => ({ key, value: 'v' });
  const range = <T>(n: number, f: (i: number) => T): T[] => Array.from({ length: n }, (_, i) => f(i));

  it.each([
    ['1001 metrics', { metrics: range(1001, (i) => metric(`m${i}`)) }, 'A batch logging request can contain at most 1000 metrics. Got 1001 metrics. Please split up metrics across multiple requests and try again.'],
    ['101 params', { params: range(101, (i) => kv(`p${i}`)) }, 'A batch logging request can contain at most 100 params. Got 101 params. Please split up params across multiple requests and try again.'],
    ['101 tags', { tags: range(101, (i) => kv(`t${i}`)) }, 'A batch logging request can contain at most 100 tags. Got 101 tags. Please split up tags across multiple requests and try again.'],
    [
      '1001 in total',
      { metrics: range(801, (i) => metric(`m${i}`)), params: range(100, (i) => kv(`p${i}`)), tags: range(100, (i) => kv(`t${i}`)) },
      'A batch logging request can contain at most 1000 metrics, params, and tags. Got 1001 metrics, params, and tags. Please split up metrics, params, and tags across multiple requests and try again.',
    ],
  ])('log-batch limit: %s', async (_name, batch, message) => {
    const r = await c.post('runs/log-batch', { run_id: run, ...batch });
    expect(err(r)).toEqual({ status: 400, code: 'INVALID_PARAMETER_VALUE', message });
  });

  it('log-batch at the limits is accepted', async () => {
    const id = await c.run(exp);
    await c.ok('runs/log-batch', { run_id: id, metrics: range(800, (i) => metric(`m${i}`)), params: range(100, (i) => kv(`p${i}`)), tags: range(100, (i) => kv(`t${i}`)) });
    expect(Object.keys(c.server.run(id)!.params)).toHaveLength(100);
  });

  const BAD_CHARS = 'Names may only contain alphanumerics, underscores (_), dashes (-), periods (.), spaces ( ), and slashes (/).';
  const resolves = (to: string) =>
    `Names may be treated as files in certain cases, and must not resolve to other names when treated as such. This name would resolve to '${to}'`;
  const KEY_CASES: Array<[string, string | null]> = [
    ['bad:colon', BAD_CHARS],
    ['semi;colon', BAD_CHARS],
    ['a//b', resolves('a/b')],
    ['a/./b', resolves('a/b')],
    ['a/', resolves('a')],
    ['/abs', resolves('/abs')],
    ['../up', resolves('../up')],
    ['a/../b', resolves('b')],
    ['.', resolves('.')],
    ['ünïcøde', null],
    ['with space/and-dash.dot_under', null],
    ['k'.repeat(250), null],
  ];
  it.each(KEY_CASES)('key %j', async (key, problem) => {
    const kinds: Array<[string, string, Record<string, unknown>]> = [
      ['parameter', 'runs/log-parameter', { key, value: 'v' }],
      ['metric', 'runs/log-metric', { key, value: 1, timestamp: 1 }],
      ['tag', 'runs/set-tag', { key, value: 'v' }],
    ];
    for (const [kind, path, body] of kinds) {
      const r = await c.post(path, { run_id: run, ...body });
      if (problem === null) expect(r.status, r.text).toBe(200);
      else expect(err(r)).toEqual({ status: 400, code: 'INVALID_PARAMETER_VALUE', message: `Invalid ${kind} name: '${key}'. ${problem}` });
    }
  });

  it('negative metric timestamp → 400; Python `$` lets a key end in one newline', async () => {
    const r = await c.post('runs/log-batch', { run_id: run, metrics: [{ key: 'neg', value: 1, timestamp: -1 }] });
    expect(err(r)).toEqual({
      status: 400,
      code: 'INVALID_PARAMETER_VALUE',
      message: "Got invalid timestamp -1 for metric 'neg' (value=1.0). Timestamp must be a nonnegative long (64-bit integer) ",
    });
    expect((await c.post('runs/set-tag', { run_id: run, key: 'nl\n', value: 'v' })).status).toBe(200);
    expect((await c.post('runs/set-tag', { run_id: run, key: 'nl\n\n', value: 'v' })).status).toBe(400);
  });

  it('key length 251 → 400 per kind', async () => {
    const key = 'k'.repeat(251);
    const tail = `'${'k'.repeat(250)}' had length 251, which exceeded length limit of 250`;
    expect((await c.post('runs/log-parameter', { run_id: run, key, value: 'v' })).json.message).toBe(`Param key ${tail}`);
    expect((await c.post('runs/log-metric', { run_id: run, key, value: 1, timestamp: 1 })).json.message).toBe(`Metric name ${tail}`);
    expect((await c.post('runs/set-tag', { run_id: run, key, value: 'v' })).json.message).toBe(`Tag key ${tail}`);
    expect((await c.post('runs/log-batch', { run_id: run, params: [{ key, value: 'v' }] })).status).toBe(400);
  });

  it('empty key in log-batch → Invalid value [...] for parameter', async () => {
    const r = await c.post('runs/log-batch', { run_id: run, params: [{ key: '', value: 'v' }] });
    expect(err(r)).toEqual({
      status: 400,
      code: 'INVALID_PARAMETER_VALUE',
      message:
        "Invalid value [{'key': '', 'value': 'v'}] for parameter 'params' supplied. Hint: Value was of type 'list'. See the API docs for more information about request parameters.",
    });
  });

  it('metric in log-batch without timestamp → Invalid value for metrics', async () => {
    const r = await c.post('runs/log-batch', { run_id: run, metrics: [{ key: 'nots', value: 1 }] });
    expect(r.json.message).toBe(
      "Invalid value [{'key': 'nots', 'value': 1}] for parameter 'metrics' supplied. Hint: Value was of type 'list'. See the API docs for more information about request parameters.",
    );
  });

  it.each([
    ['run_id', 'runs/log-metric', { key: 'm', value: 1, timestamp: 1 }],
    ['key', 'runs/log-metric', { run_id: 'RUN', value: 1, timestamp: 1 }],
    ['value', 'runs/log-metric', { run_id: 'RUN', key: 'm', timestamp: 1 }],
    ['timestamp', 'runs/log-metric', { run_id: 'RUN', key: 'm', value: 1 }],
    ['metric_key', 'metrics/get-history', { run_id: 'RUN' }],
  ])('missing %s → Missing value for required parameter', async (field, path, body) => {
    const b = JSON.parse(JSON.stringify(body).replace('RUN', run));
    const r = path.startsWith('metrics/') ? await c.get(path, b as Record<string, string>, {}) : await c.post(path, b);
    if (path.startsWith('metrics/')) {
      // a GET with a query string skips the handler schema: unknown key → {}
      expect(r.json).toEqual({});
      const noQuery = await c.get(path);
      expect(noQuery.json.message).toBe("Missing value for required parameter 'run_id'. See the API docs for more information about request parameters.");
      return;
    }
    expect(err(r)).toEqual({
      status: 400,
      code: 'INVALID_PARAMETER_VALUE',
      message: `Missing value for required parameter '${field}'. See the API docs for more information about request parameters.`,
    });
  });

  it('duplicate param keys in one batch (even with equal values)', async () => {
    const r = await c.post('runs/log-batch', { run_id: run, params: [{ key: 'dup', value: '1' }, { key: 'dup', value: '1' }] });
    expect(err(r)).toEqual({
      status: 400,
      code: 'INVALID_PARAMETER_VALUE',
      message: "Duplicate parameter keys have been submitted: ['dup']. Please ensure the request contains only one param value per param key.",
    });
  });

  it('long param / tag values are truncated by default', async () => {
    const id = await c.run(exp);
    await c.ok('runs/log-parameter', { run_id: id, key: 'long', value: 'x'.repeat(6001) });
    await c.ok('runs/log-batch', { run_id: id, params: [{ key: 'long2', value: 'y'.repeat(7000) }], tags: [{ key: 'lt', value: 'z'.repeat(5001) }] });
    await c.ok('runs/set-tag', { run_id: id, key: 'lt2', value: 'w'.repeat(9000) });
    const r = c.server.run(id)!;
    expect(r.params.long).toHaveLength(6000);
    expect(r.params.long2).toHaveLength(6000);
    expect(r.tags.lt).toHaveLength(5000);
    expect(r.tags.lt2).toHaveLength(5000);
    // re-logging the same over-long value is idempotent (compares the truncated value)
    await c.ok('runs/log-parameter', { run_id: id, key: 'long', value: 'x'.repeat(6001) });
  });

  it('params are strings: a JSON number is stored as "", a missing value as ""', async () => {
    const id = await c.run(exp);
    await c.ok('runs/log-batch', { run_id: id, params: [{ key: 'num', value: 0.01 }] });
    await c.ok('runs/log-batch', { run_id: id, params: [{ key: 'novalue' }] });
    expect(c.server.run(id)!.params).toEqual({ num: '', novalue: '' });
  });

  it('lenient parsing: numeric strings for int64/double fields', async () => {
    const id = await c.run(exp);
    await c.ok('runs/log-metric', { run_id: id, key: 'm', value: '1.5', timestamp: '17', step: '3', unknown_field: true });
    const g = await c.get('runs/get', { run_id: id });
    expect(g.json.run.data.metrics).toEqual([{ key: 'm', value: 1.5, timestamp: 17, step: 3 }]);
  });

  it('runs/get omits empty params/metrics/tags keys', async () => {
    const id = await c.run(exp, { run_name: 'x' });
    await c.ok('runs/delete-tag', { run_id: id, key: 'mlflow.runName' });
    const g = await c.get('runs/get', { run_id: id });
    expect(g.json.run.data).toEqual({});
    expect(g.json.run.inputs).toEqual({});
  });
});

describe('long values with truncateLongValues: false', () => {
  it('rejects with the length message', async () => {
    const c = await start({ truncateLongValues: false });
    const run = await c.run(await c.experiment());
    const p = await c.post('runs/log-parameter', { run_id: run, key: 'p', value: 'x'.repeat(6001) });
    expect(err(p)).toEqual({
      status: 400,
      code: 'INVALID_PARAMETER_VALUE',
      message: `Param value '${'x'.repeat(250)}' had length 6001, which exceeded length limit of 6000`,
    });
    const t = await c.post('runs/log-batch', { run_id: run, tags: [{ key: 't', value: 'y'.repeat(5001) }] });
    expect(t.json.message).toBe(`Tag value '${'y'.repeat(250)}' had length 5001, which exceeded length limit of 5000`);
    await c.ok('runs/log-parameter', { run_id: run, key: 'p', value: 'x'.repeat(6000) });
  });
});

describe.each(STORES)('param immutability (%s)', (store) => {
  it('same value ok; changed value rejected via log-parameter and log-batch', async () => {
    const c = await start({ store });
    const run = await c.run(await c.experiment());
    await c.ok('runs/log-parameter', { run_id: run, key: 'lr', value: '0.01' });
    await c.ok('runs/log-parameter', { run_id: run, key: 'lr', value: '0.01' });
    await c.ok('runs/log-batch', { run_id: run, params: [{ key: 'lr', value: '0.01' }] });
    const single = `Changing param values is not allowed. Param with key='lr' was already logged with value='0.01' for run ID='${run}'. Attempted logging new value '0.03'.`;
    expect(err(await c.post('runs/log-parameter', { run_id: run, key: 'lr', value: '0.03' }))).toEqual({ status: 400, code: 'INVALID_PARAMETER_VALUE', message: single });
    const b = await c.post('runs/log-batch', {
      run_id: run,
      params: [
        { key: 'a', value: '1' },
        { key: 'lr', value: '0.03' },
      ],
      metrics: [{ key: 'm', value: 1, timestamp: 1 }],
    });
    if (store === 'sqlite') {
      expect(err(b)).toEqual({
        status: 400,
        code: 'INVALID_PARAMETER_VALUE',
        message: `Changing param values is not allowed. Params were already logged='[{'key': 'lr', 'old_value': '0.01', 'new_value': '0.03'}]' for run ID='${run}'.`,
      });
      expect(c.server.run(run)!.params).toEqual({ lr: '0.01' });
    } else {
      expect(err(b)).toEqual({ status: 500, code: 'INTERNAL_ERROR', message: single });
      // the file store writes params one by one: 'a' is already there, the metric is not
      expect(c.server.run(run)!.params).toEqual({ lr: '0.01', a: '1' });
    }
    expect(c.server.run(run)!.metrics).toEqual([]);
  });
});

describe.each(STORES)('metrics (%s)', (store) => {
  let c: Client;
  let exp: string;
  beforeAll(async () => {
    c = await start({ store });
    exp = await c.experiment();
  });

  it('NaN / ±Infinity round trips', async () => {
    const run = await c.run(exp);
    await c.ok('runs/log-batch', {
      run_id: run,
      metrics: [
        { key: 'nan', value: 'NaN', timestamp: 1 },
        { key: 'pinf', value: 'Infinity', timestamp: 1 },
        { key: 'ninf', value: '-Infinity', timestamp: 1 },
      ],
    });
    const g = await c.get('runs/get', { run_id: run });
    const byKey = Object.fromEntries(g.json.run.data.metrics.map((m: any) => [m.key, m.value]));
    expect(byKey.nan).toBe('NaN');
    if (store === 'sqlite') {
      expect(byKey.pinf).toBe(1.7976931348623157e308);
      expect(byKey.ninf).toBe(-1.7976931348623157e308);
    } else {
      expect(byKey.pinf).toBe('Infinity');
      expect(byKey.ninf).toBe('-Infinity');
    }
    const h = await c.get('metrics/get-history', { run_id: run, metric_key: 'pinf' });
    expect(h.json.metrics[0].value).toBe(store === 'sqlite' ? 1.7976931348623157e308 : 'Infinity');
  });

  it('runs/get shows the latest point: max step, then max timestamp, then max value', async () => {
    const run = await c.run(exp);
    await c.ok('runs/log-batch', {
      run_id: run,
      metrics: [
        { key: 's', value: 1, timestamp: 100, step: 5 },
        { key: 's', value: 2, timestamp: 999, step: 4 },
        { key: 't', value: 1, timestamp: 10, step: 1 },
        { key: 't', value: 9, timestamp: 20, step: 1 },
        { key: 't', value: 5, timestamp: 30, step: 1 },
        { key: 'v', value: 7, timestamp: 10, step: 1 },
        { key: 'v', value: 3, timestamp: 10, step: 1 },
      ],
    });
    await c.ok('runs/log-metric', { run_id: run, key: 's', value: 0, timestamp: 1 }); // last logged, but step 0
    const g = await c.get('runs/get', { run_id: run });
    expect(g.json.run.data.metrics).toEqual([
      { key: 's', value: 1, timestamp: 100, step: 5 },
      { key: 't', value: 5, timestamp: 30, step: 1 },
      { key: 'v', value: 7, timestamp: 10, step: 1 },
    ]);
  });

  it('get-history: duplicates per store, no paging, unknown key → {}', async () => {
    const run = await c.run(exp);
    const p = { key: 'h', value: 0.5, timestamp: 5, step: 1 };
    await c.ok('runs/log-metric', { run_id: run, ...p });
    await c.ok('runs/log-metric', { run_id: run, ...p });
    await c.ok('runs/log-batch', { run_id: run, metrics: [p, { ...p, value: 0.25 }, { key: 'h', value: 1, timestamp: 2 }] });
    const h = await c.get('metrics/get-history', { run_id: run, metric_key: 'h', max_results: '1' });
    const values = h.json.metrics.map((m: any) => m.value);
    if (store === 'sqlite') expect(values.sort()).toEqual([0.25, 0.5, 1]);
    else expect(values).toEqual([0.5, 0.5, 0.5, 0.25, 1]);
    expect(h.json.next_page_token).toBeUndefined();
    expect((await c.get('metrics/get-history', { run_id: run, metric_key: 'nope' })).json).toEqual({});
    const big = await c.run(exp);
    await c.ok('runs/log-batch', { run_id: big, metrics: Array.from({ length: 1000 }, (_, i) => ({ key: 'x', value: i, timestamp: i, step: i })) });
    const all = await c.get('metrics/get-history', { run_id: big, metric_key: 'x', max_results: '10', page_token: 'abc' });
    expect(all.json.metrics).toHaveLength(1000);
  });
});

describe.each(STORES)('runs/search (%s)', (store) => {
  let c: Client;
  let exp: string;
  let parent: string;
  let children: string[];
  beforeAll(async () => {
    c = await start({ store });
    exp = await c.experiment();
    parent = await c.run(exp, { run_name: 'parent', start_time: 1000 });
    children = [];
    for (let i = 0; i < 5; i++) {
      const id = await c.run(exp, { run_name: `child-${i}`, start_time: 2000 + i, tags: [{ key: 'mlflow.parentRunId', value: parent }] });
      await c.ok('runs/log-batch', { run_id: id, params: [{ key: 'lr', value: i % 2 ? '0.1' : '0.01' }], metrics: [{ key: 'loss', value: i / 10, timestamp: 1 }] });
      children.push(id);
    }
    await c.ok('runs/update', { run_id: children[4], status: 'FINISHED' });
  });

  const ids = (r: Reply): string[] => (r.json.runs ?? []).map((x: any) => x.info.run_id);
  const search = (body: Record<string, unknown>) => c.post('runs/search', { experiment_ids: [exp], ...body });

  it.each([
    ['tags.mlflow.parentRunId', () => `tags.mlflow.parentRunId = '${parent}'`, [4, 3, 2, 1, 0]],
    ['backticked tag key', () => `tags.\`mlflow.parentRunId\` = '${parent}'`, [4, 3, 2, 1, 0]],
    ['attributes.run_name', () => "attributes.run_name = 'child-2'", [2]],
    ['run_name LIKE', () => "run_name LIKE 'child-%' and params.lr = '0.1'", [3, 1]],
    ['attributes.status', () => "attributes.status = 'FINISHED'", [4]],
    ['params.lr', () => "params.lr = '0.01'", [4, 2, 0]],
    ['metrics.loss <', () => 'metrics.loss < 0.25', [2, 1, 0]],
    ['combined', () => "params.lr = '0.01' and metrics.loss < 0.3 and attributes.status = 'RUNNING'", [2, 0]],
  ])('filter %s', async (_n, filter, expected) => {
    const r = await search({ filter: filter() });
    expect(r.status, r.text).toBe(200);
    expect(ids(r)).toEqual(expected.map((i) => children[i]));
  });

  it('default order is start_time DESC; order_by works', async () => {
    const all = await search({});
    expect(ids(all)).toEqual([...children].reverse().concat(parent));
    const asc = await search({ order_by: ['attributes.start_time ASC'] });
    expect(ids(asc)).toEqual([parent, ...children]);
    const loss = await search({ order_by: ['metrics.loss DESC'], filter: `tags.mlflow.parentRunId = '${parent}'` });
    expect(ids(loss)).toEqual([...children].reverse());
  });

  it('pages with max_results and a base64 offset token', async () => {
    const p1 = await search({ max_results: 2 });
    expect(ids(p1)).toHaveLength(2);
    expect(p1.json.next_page_token).toBe('eyJvZmZzZXQiOiAyfQ==');
    const p2 = await search({ max_results: 2, page_token: p1.json.next_page_token });
    const p3 = await search({ max_results: 2, page_token: p2.json.next_page_token });
    expect([...ids(p1), ...ids(p2), ...ids(p3)]).toEqual([...children].reverse().concat(parent));
    // sqlite hands out a token whenever a page is full; the file store only when more remain
    const exact = await search({ max_results: 6 });
    expect(exact.json.next_page_token === undefined).toBe(store === 'file');
    if (store === 'sqlite') expect(await search({ max_results: 6, page_token: exact.json.next_page_token }).then((r) => r.json)).toEqual({});
  });

  it('search with no hits returns {}; bad filter / max_results are 400', async () => {
    expect((await search({ filter: "params.lr = 'nope'" })).json).toEqual({});
    for (const filter of ['params.lr ==== 1', "params.lr = '1' or params.lr = '2'", 'metrics.loss <', 'nonsense']) {
      const bad = await search({ filter });
      expect(err(bad), filter).toMatchObject({ status: 400, code: 'INVALID_PARAMETER_VALUE', message: expect.stringMatching(/^Invalid clause\(s\) in filter string: /) });
    }
    const unquoted = await search({ filter: 'params.lr = abc' });
    expect(unquoted.json.message).toMatch(/^Parameter value is either not quoted/);
    const big = await search({ max_results: 50001 });
    expect(err(big)).toMatchObject({ status: 400, message: expect.stringMatching(/^Invalid value 50001 for parameter 'max_results' supplied/) });
  });
});

// ---------------------------------------------------------------------------------------------

function rawGet(url: string): Promise<{ status: number } | { error: string }> {
  return new Promise((resolve) => {
    const req = httpRequest(url, { agent: false }, (res) => {
      res.resume();
      res.on('end', () => resolve({ status: res.statusCode ?? 0 }));
    });
    req.on('error', (e: NodeJS.ErrnoException) => resolve({ error: e.code ?? e.message }));
    req.end();
  });
}

describe('fault injection and restarts', () => {
  let c: Client;
  beforeAll(async () => {
    c = await start();
  });
  afterEach(() => c.server.clearFaults());

  it('refuse closes the socket without an answer (status 0 recorded)', async () => {
    c.server.inject({ kind: 'refuse', path: '/health' });
    const r = await rawGet(c.server.url + '/health');
    expect(r).toEqual({ error: 'ECONNRESET' });
    expect(c.server.requests.at(-1)).toMatchObject({ path: '/health', status: 0 });
    expect(await rawGet(c.server.url + '/health')).toEqual({ status: 200 }); // one-shot
  });

  it('reset sends a TCP RST', async () => {
    c.server.inject({ kind: 'reset' });
    expect(await rawGet(c.server.url + '/version')).toEqual({ error: 'ECONNRESET' });
    await expect(fetch(c.server.url + '/version').then((r) => r.text())).resolves.toBe('2.12.2');
  });

  it('status 429 with Retry-After, repeated `times`, path filter', async () => {
    c.server.inject({ kind: 'status', status: 429, retryAfter: '2', times: 2, path: /experiments\/create$/ });
    const ok = await c.get('experiments/get', { experiment_id: '0' });
    expect(ok.status).toBe(200);
    for (let i = 0; i < 2; i++) {
      const r = await c.post('experiments/create', { name: 'throttled' });
      expect(r.status).toBe(429);
      expect(r.headers.get('retry-after')).toBe('2');
      expect(r.json.error_code).toBe('REQUEST_LIMIT_EXCEEDED');
    }
    expect((await c.post('experiments/create', { name: 'throttled' })).status).toBe(200);
    expect(c.server.experiments().filter((e) => e.name === 'throttled')).toHaveLength(1);
  });

  it('status 503 until cleared', async () => {
    c.server.inject({ kind: 'status', status: 503, times: Infinity, path: 'runs/' });
    for (let i = 0; i < 3; i++) expect((await c.get('runs/get', { run_id: 'x' })).status).toBe(503);
    c.server.clearFaults();
    expect((await c.get('runs/get', { run_id: 'x' })).status).toBe(404);
  });

  it('delay waits, then answers normally', async () => {
    c.server.inject({ kind: 'delay', ms: 150 });
    const t0 = Date.now();
    const r = await fetch(c.server.url + '/health');
    expect(await r.text()).toBe('OK');
    expect(Date.now() - t0).toBeGreaterThanOrEqual(140);
  });

  it('stop → ECONNREFUSED; restart keeps data on the same port; wipe loses it', async () => {
    const url = c.server.url;
    const id = await c.experiment('survivor');
    await c.server.stop();
    expect(await rawGet(url + '/health')).toEqual({ error: 'ECONNREFUSED' });
    await c.server.restart({ downForMs: 20 });
    expect(c.server.url).toBe(url);
    expect((await c.get('experiments/get', { experiment_id: id })).json.experiment.name).toBe('survivor');
    await c.server.restart({ wipe: true });
    expect(c.server.url).toBe(url);
    expect((await c.get('experiments/get', { experiment_id: id })).status).toBe(404);
    expect(c.server.experiments().map((e) => e.name)).toEqual(['Default']);
    expect(await c.experiment()).toBe('1');
  });
});

describe('auth', () => {
  let c: Client;
  beforeAll(async () => {
    c = await start();
  });

  it('basic and bearer; /health stays open', async () => {
    c.server.requireAuth({ basic: { username: 'u', password: 'p' }, bearer: 'tok' });
    const none = await c.get('experiments/get', { experiment_id: '0' });
    expect(none.status).toBe(401);
    expect(none.text).toBe(AUTH_401_BODY);
    expect(none.headers.get('www-authenticate')).toBe('Basic realm="mlflow"');
    const basic = 'Basic ' + Buffer.from('u:p').toString('base64');
    expect((await c.get('experiments/get', { experiment_id: '0' }, { headers: { Authorization: basic } })).status).toBe(200);
    expect((await c.get('experiments/get', { experiment_id: '0' }, { headers: { Authorization: 'Bearer tok' } })).status).toBe(200);
    expect((await c.get('experiments/get', { experiment_id: '0' }, { headers: { Authorization: 'Bearer nope' } })).status).toBe(401);
    expect((await fetch(c.server.url + '/health')).status).toBe(200);
    c.server.requireAuth(undefined);
    expect((await c.get('experiments/get', { experiment_id: '0' })).status).toBe(200);
  });
});

// Proxied artifacts, as the real 2.12.2 server answered them (checked with curl against it):
// PUT stores the raw body under --artifacts-destination, `?path=` lists basenames (file_size left
// out for directories and empty files), GET downloads, an unsafe path is 400 "Invalid path", a
// missing file is 500 INTERNAL_ERROR; artifacts/list gives run-relative paths and root_uri.
describe('mlflow-artifacts service', () => {
  let s: MlflowTestServer;
  beforeAll(async () => {
    s = await MlflowTestServer.start();
  });
  afterAll(async () => {
    await s.close();
  });
  const art = { prefix: '/api/2.0/mlflow-artifacts/artifacts', contentType: null };

  it('PUT, list, download; unsafe paths refused', async () => {
    const run = (await call(s.url, 'POST', 'runs/create', { experiment_id: '0' })).json.run.info;
    expect(run.artifact_uri).toBe(`mlflow-artifacts:/0/${run.run_id}/artifacts`);
    const base = `/0/${run.run_id}/artifacts`;
    expect((await call(s.url, 'PUT', `${base}/d/x.txt`, undefined, { ...art, raw: 'hello' })).json).toEqual({});
    expect((await call(s.url, 'PUT', `${base}/empty.txt`, undefined, { ...art, raw: '' })).status).toBe(200);
    expect((await call(s.url, 'PUT', `${base}/sp%20ace.txt`, undefined, { ...art, raw: 'x' })).status).toBe(200);
    // node:http with a raw path, not a URL: URL parsing would resolve the '..' segments away before sending.
    const rawPut = (path: string) =>
      new Promise<{ status: number; text: string }>((resolve, reject) => {
        const port = Number(new URL(s.url).port);
        const req = httpRequest({ host: '127.0.0.1', port, path: `${art.prefix}${path}`, method: 'PUT' }, (res) => {
          let text = '';
          res.on('data', (c: Buffer) => (text += c.toString()));
          res.on('end', () => resolve({ status: res.statusCode!, text }));
        });
        req.on('error', reject);
        req.end('h');
      });
    for (const bad of [`${base}/a%23b.txt`, `${base}/%2E%2E/x.txt`, `${base}/d/../../x.txt`]) {
      const r = await rawPut(bad);
      expect([r.status, JSON.parse(r.text)]).toEqual([400, { error_code: 'INVALID_PARAMETER_VALUE', message: 'Invalid path' }]);
    }
    expect((await call(s.url, 'GET', `?path=0/${run.run_id}/artifacts`, undefined, art)).json).toEqual({
      files: [{ path: 'd', is_dir: true }, { path: 'empty.txt', is_dir: false }, { path: 'sp ace.txt', is_dir: false, file_size: 1 }],
    });
    expect((await call(s.url, 'GET', `?path=0/${run.run_id}/artifacts/d`, undefined, art)).json).toEqual({ files: [{ path: 'x.txt', is_dir: false, file_size: 5 }] });
    expect((await call(s.url, 'GET', '?path=0/nothing', undefined, art)).json).toEqual({});
    const got = await call(s.url, 'GET', `${base}/d/x.txt`, undefined, art);
    expect([got.status, got.text, got.headers.get('content-disposition')]).toEqual([200, 'hello', 'attachment; filename=x.txt']);
    const missing = await call(s.url, 'GET', `${base}/missing.txt`, undefined, art);
    expect([missing.status, missing.json.error_code]).toEqual([500, 'INTERNAL_ERROR']);
    // Through the tracking API, as MlflowClient.list_artifacts and the UI's get-artifact read them.
    const list = await call(s.url, 'GET', `artifacts/list?run_id=${run.run_id}`);
    expect(list.json).toEqual({
      root_uri: run.artifact_uri,
      files: [{ path: 'd', is_dir: true }, { path: 'empty.txt', is_dir: false }, { path: 'sp ace.txt', is_dir: false, file_size: 1 }],
    });
    expect((await call(s.url, 'GET', `artifacts/list?run_id=${run.run_id}&path=d`)).json.files).toEqual([{ path: 'd/x.txt', is_dir: false, file_size: 5 }]);
    expect((await call(s.url, 'GET', `artifacts/list?run_id=${run.run_id}&path=nope`)).json).toEqual({ root_uri: run.artifact_uri });
    expect((await call(s.url, 'GET', `artifacts/list?run_id=${run.run_id}&path=../x`)).status).toBe(400);
    expect((await call(s.url, 'GET', `get-artifact?run_id=${run.run_id}&path=d/x.txt`, undefined, { prefix: '/' })).text).toBe('hello');
  });

  it('streams a large body to disk (stored bytes equal the sent ones)', async () => {
    const big = Buffer.alloc(8 << 20);
    for (let i = 0; i < big.length; i += 4096) big[i] = (i >> 12) & 255;
    const r = await fetch(`${s.url}/api/2.0/mlflow-artifacts/artifacts/0/r/artifacts/big.bin`, { method: 'PUT', body: big });
    expect(r.status).toBe(200);
    const { readFileSync } = await import('node:fs');
    expect(readFileSync(s.artifactFile('0/r/artifacts/big.bin')).equals(big)).toBe(true);
    expect(s.requests.at(-1)!.body).toBe(`<${8 << 20} bytes>`);
  });
});

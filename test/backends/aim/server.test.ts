// Tests of the local Aim remote-tracking server emulator (test/backends/aim/server.ts), with hand-built requests.
import { once } from 'node:events';
import { afterAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import {
  AimBlob,
  AimCustomObject,
  AimFloat,
  decodePath,
  encodeTree,
  pack,
  unpack,
  unpackTree,
} from '../../../runtime/backends/aim/encoding.js';
import { AimTestServer, type AimTestServerOptions } from './server.js';

const servers: AimTestServer[] = [];
afterAll(async () => {
  await Promise.all(servers.map((s) => s.stop()));
});

async function start(opts: AimTestServerOptions = {}): Promise<AimTestServer> {
  const s = await AimTestServer.start(opts);
  servers.push(s);
  return s;
}

const packed = (v: unknown): Uint8Array => pack(encodeTree([], v, { objectMarkers: 'empty' }));
const b64 = (v: unknown): string => Buffer.from(packed(v)).toString('base64');
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const HASH = 'a1b2c3d4e5f60718293a4b5c';

interface Reply {
  status: number;
  json: any;
  bytes: Uint8Array;
}

/** A hand-written Aim client talking to one server under one client uri. */
class Client {
  constructor(
    readonly s: AimTestServer,
    readonly uri = 'client-1',
  ) {}

  async call(method: 'GET' | 'POST', path: string, body?: unknown): Promise<Reply> {
    const res = await fetch(`http://127.0.0.1:${this.s.port}${path}`, {
      method,
      headers: body === undefined ? {} : { 'Content-Type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const bytes = new Uint8Array(await res.arrayBuffer());
    let json: any;
    try {
      json = JSON.parse(Buffer.from(bytes).toString('utf8'));
    } catch {
      json = undefined;
    }
    return { status: res.status, json, bytes };
  }

  getResource(type: string, kwargs: unknown, handler = ''): Promise<Reply> {
    return this.call('POST', `/tracking/${this.uri}/get-resource/`, { resource_handler: handler, resource_type: type, args: kwargs === undefined ? '' : b64(kwargs) });
  }

  async resource(type: string, kwargs: unknown, handler = ''): Promise<string> {
    const r = await this.getResource(type, kwargs, handler);
    expect(r.status, JSON.stringify(r.json)).toBe(200);
    return r.json.handler;
  }

  tree(sub = HASH, name = 'meta'): Promise<string> {
    return this.resource('TreeView', { name, sub, read_only: false, index: false, timeout: null });
  }

  read(handler: string, method: string, args: unknown[] = []): Promise<Reply> {
    return this.call('POST', `/tracking/${this.uri}/read-instruction/`, { resource_handler: handler, method_name: method, args: b64(args) });
  }

  /** read-instruction answered 200: the decoded result */
  async value(handler: string, method: string, args: unknown[] = []): Promise<unknown> {
    const r = await this.read(handler, method, args);
    expect(r.status, JSON.stringify(r.json)).toBe(200);
    return unpackTree(r.bytes);
  }

  async ws(): Promise<Ws> {
    const ws = new WebSocket(`ws://127.0.0.1:${this.s.port}/tracking/${this.uri}/write-instruction/`);
    await once(ws, 'open');
    return new Ws(ws);
  }
}

interface WriteResult {
  ok: boolean;
  exception?: any;
  closed: boolean;
  code?: number;
}

class Ws {
  constructor(readonly ws: WebSocket) {}

  /** Send one message of instructions; resolves on OK, or on close (with the exception sent before, if any). */
  write(instructions: unknown[]): Promise<WriteResult> {
    return new Promise((resolve) => {
      let reply: Buffer | undefined;
      const onMessage = (d: Buffer): void => {
        reply = d;
        if (d.toString() === 'OK') done({ ok: true, closed: false });
      };
      const onClose = (code: number): void => done({ ok: false, exception: reply ? unpackTree(reply) : undefined, closed: true, code });
      const done = (r: WriteResult): void => {
        this.ws.off('message', onMessage).off('close', onClose);
        resolve(r);
      };
      this.ws.on('message', onMessage).on('close', onClose);
      this.ws.send(packed(instructions));
    });
  }

  async ok(instructions: unknown[]): Promise<void> {
    const r = await this.write(instructions);
    expect(r, JSON.stringify(r.exception)).toMatchObject({ ok: true });
  }

  close(): void {
    this.ws.close();
  }
}

// ---------------------------------------------------------------------------------------------

describe('client endpoints', () => {
  it('status, version (also without trailing slash), 404 version, unknown path and wrong method', async () => {
    const s = await start();
    const c = new Client(s);
    expect(s.uri).toBe(`aim://127.0.0.1:${s.port}`);
    for (const p of ['/status/', '/status']) expect(await c.call('GET', p)).toMatchObject({ status: 200, json: { status: 'OK' } });
    for (const p of ['/client/get-version/', '/client/get-version']) expect(await c.call('GET', p)).toMatchObject({ status: 200, json: { version: '3.29.1' } });
    expect(await c.call('GET', '/nope/')).toMatchObject({ status: 404, json: { detail: 'Not Found' } });
    expect(await c.call('POST', '/status/', {})).toMatchObject({ status: 405, json: { detail: 'Method Not Allowed' } });
    const old = new Client(await start({ version: null }));
    expect(await old.call('GET', '/client/get-version/')).toMatchObject({ status: 404, json: { detail: 'Not Found' } });
    const newer = new Client(await start({ version: '4.0.0' }));
    expect((await newer.call('GET', '/client/get-version/')).json).toEqual({ version: '4.0.0' });
    expect(s.requests.map((r) => [r.method, r.path, r.status])).toContainEqual(['GET', '/status', 200]);
  });

  it('connect, reconnect, heartbeat, disconnect', async () => {
    const s = await start();
    const c = new Client(s, 'uri-a');
    for (const a of ['connect', 'heartbeat', 'heartbeat', 'reconnect']) {
      const r = await c.call('GET', `/client/${a}/uri-a/`);
      expect(r.status).toBe(200);
      expect(r.json).toBeNull();
    }
    await c.call('GET', '/client/reconnect/uri-b');
    expect([...s.clients]).toEqual(['uri-a', 'uri-b']);
    expect(s.heartbeats.get('uri-a')).toBe(2);
    await c.call('GET', '/client/disconnect/uri-a/');
    expect([...s.clients]).toEqual(['uri-b']);
  });
});

describe('get-resource', () => {
  it('every resource type; handlers are uuid4 unless given', async () => {
    const s = await start();
    const c = new Client(s);
    const meta = await c.tree();
    expect(meta).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    await c.tree(HASH, 'seqs');
    await c.resource('StructuredRun', { hash_: HASH, read_only: false, created_at: 1_700_000_000.5 });
    await c.resource('Repo', {});
    await c.resource('Repo', undefined); // args '' → no kwargs
    await c.resource('Lock', { run_hash: HASH });
    await c.resource('RunHeartbeat', { run_hash: HASH });
    expect(await c.resource('FileManager', {}, 'my-handler')).toBe('my-handler');
    expect(s.resources().map((r) => r.type)).toEqual(['TreeView', 'TreeView', 'StructuredRun', 'Repo', 'Repo', 'Lock', 'RunHeartbeat', 'FileManager']);
    expect(s.resources()[2]).toMatchObject({ clientUri: 'client-1', kwargs: { hash_: HASH, read_only: false, created_at: new AimFloat(1_700_000_000.5) } });
    expect(s.runs.get(HASH)).toEqual({ name: null, experiment: null, description: null, archived: false, createdAt: 1_700_000_000.5, tags: [], heartbeat: 'active' });
  });

  it('errors answer 400 with the Python exception; a failed get-resource drops its handler', async () => {
    const s = await start();
    const c = new Client(s);
    const ex = async (type: string, kwargs: unknown, handler = ''): Promise<unknown> => {
      const r = await c.getResource(type, kwargs, handler);
      expect(r.status).toBe(400);
      return r.json.exception;
    };
    expect(await ex('Nope', {})).toEqual({ module_name: 'builtins', class_name: 'KeyError', args: '["Nope"]', message: "'Nope'" });
    expect(await ex('TreeView', { name: 'meta', read_only: false, index: false, timeout: null })).toEqual({
      module_name: 'builtins',
      class_name: 'KeyError',
      args: '["sub"]',
      message: "'sub'",
    });
    expect(await ex('StructuredRun', { hash_: HASH })).toEqual({
      module_name: 'builtins',
      class_name: 'TypeError',
      args: `["get_structured_run() missing 2 required positional arguments: 'read_only' and 'created_at'"]`,
      message: "get_structured_run() missing 2 required positional arguments: 'read_only' and 'created_at'",
    });
    expect(await ex('Lock', {})).toMatchObject({ class_name: 'KeyError', args: '["run_hash"]' });
    expect(await ex('RunHeartbeat', {})).toMatchObject({ class_name: 'TypeError' });
    expect(await ex('Repo', { x: 1 })).toMatchObject({ class_name: 'TypeError', message: "get_repo() got an unexpected keyword argument 'x'" });
    expect(await ex('StructuredRun', { hash_: HASH, read_only: true, created_at: null })).toEqual({
      module_name: 'aim.sdk.errors',
      class_name: 'RepoIntegrityError',
      args: `["Missing props for Run ${HASH}"]`,
      message: `Missing props for Run ${HASH}`,
    });
    const r = await c.call('POST', '/tracking/client-1/get-resource/', { resource_handler: '', resource_type: 'Repo', args: null });
    expect(r.json.exception).toMatchObject({ class_name: 'TypeError', message: "object of type 'NoneType' has no len()" });
    const h = await c.resource('Repo', {});
    await ex('Lock', {}, h);
    expect(s.resources()).toEqual([]);
    expect(s.runs.size).toBe(0);
  });
});

describe('read-instruction and write-instruction on a TreeView', () => {
  it('collect of a missing path: KeyError; first_key/last_key: bare KeyError; other client: UnauthorizedRequestError', async () => {
    const s = await start();
    const c = new Client(s);
    const h = await c.tree();
    const r = await c.read(h, 'collect', [['attrs', 3], true, false]);
    expect(r.status).toBe(400);
    expect(r.json.exception).toEqual({
      module_name: 'builtins',
      class_name: 'KeyError',
      args: `["No key ['attrs', 3] is present."]`,
      message: `"No key ['attrs', 3] is present."`,
    });
    expect((await c.read(h, 'collect', ['x'])).json.exception.args).toBe(`["No key ('x',) is present."]`);
    expect((await c.read(h, 'first_key', [[]])).json.exception).toEqual({ module_name: 'builtins', class_name: 'KeyError', args: '[]', message: '' });
    expect((await c.read(h, 'nope', [])).json.exception).toMatchObject({ class_name: 'AttributeError', message: "'ContainerTreeView' object has no attribute 'nope'" });
    const other = new Client(s, 'client-2');
    expect((await other.read(h, 'collect', [[]])).json.exception).toEqual({
      module_name: 'aim.ext.transport.tracking',
      class_name: 'UnauthorizedRequestError',
      args: JSON.stringify([h]),
      message: h,
    });
    expect(await c.value(h, 'preload')).toBeNull();
    // None answers as one entry: empty key, value 0x00
    expect(Buffer.from((await c.read(h, 'preload')).bytes).toString('hex')).toBe('00000000' + '00' + '01000000' + '00');
  });

  it('__setitem__ of a nested dict, then collect; floats stay floats, markers only for empty dicts', async () => {
    const s = await start();
    const c = new Client(s);
    const h = await c.tree();
    const ws = await c.ws();
    const value = { hparams: { lr: new AimFloat(1), epochs: 3, tags: ['a', null], empty: {}, big: 1n << 60n }, note: 'é' };
    await ws.ok([[h, '__setitem__', [['meta', 'attrs'], value]]]);
    expect(s.messages).toHaveLength(1);
    expect(s.messages[0]!.instructions).toEqual([[h, '__setitem__', [['meta', 'attrs'], value]]]);
    expect(await c.value(h, 'collect', [['meta', 'attrs'], true, false])).toEqual({ hparams: { lr: 1, epochs: 3, tags: ['a', null], empty: {}, big: 1n << 60n }, note: 'é' });
    expect(await c.value(h, 'collect', [['meta', 'attrs', 'hparams', 'tags']])).toEqual(['a', null]);
    const rows = s.entries('meta', HASH).map((e) => [e.path.join('/'), e.bytes[0]]);
    expect(rows).toEqual([
      // sorted by key bytes, as RocksDB
      ['meta/attrs/hparams/big', 2],
      ['meta/attrs/hparams/empty', 7],
      ['meta/attrs/hparams/epochs', 2],
      ['meta/attrs/hparams/lr', 3],
      ['meta/attrs/hparams/tags', 6],
      ['meta/attrs/hparams/tags/0', 4],
      ['meta/attrs/hparams/tags/1', 0],
      ['meta/attrs/note', 4],
    ]);
    // the collect answer keeps the float type byte too
    const answer = unpack((await c.read(h, 'collect', [['meta', 'attrs', 'hparams', 'lr']])).bytes);
    expect(answer.map((e) => [decodePath(e.key), e.value[0]])).toEqual([[[], 3]]);
    expect(s.tree('meta', HASH)).toEqual({ meta: { attrs: await c.value(h, 'collect', [['meta', 'attrs']]) } });
    expect(await c.value(h, 'keys_eager', [['meta', 'attrs', 'hparams']])).toEqual(['big', 'empty', 'epochs', 'lr', 'tags']);
    expect(await c.value(h, 'items_eager', [['meta', 'attrs']])).toEqual([['hparams', expect.any(Object)], ['note', 'é']]);
    ws.close();
  });

  it('set replaces a subtree; __delitem__ and update', async () => {
    const s = await start();
    const c = new Client(s);
    const h = await c.tree();
    const ws = await c.ws();
    await ws.ok([
      [h, 'set', [['a'], { x: 1, y: { z: 2 } }, true]],
      [h, '__setitem__', [['b'], 'keep']],
    ]);
    await ws.ok([[h, 'set', [['a'], { w: 3 }, true]]]);
    expect(s.tree('meta', HASH)).toEqual({ a: { w: 3 }, b: 'keep' });
    await ws.ok([[h, 'set', ['a', 5, true]]]); // a bare key means (key,)
    expect(s.entries('meta', HASH).map((e) => e.path)).toEqual([['a'], ['b']]);
    await ws.ok([[h, 'update', [['u'], [['k1', 1], ['k2', { q: true }]]]]]);
    expect(s.tree('meta', HASH)).toEqual({ a: 5, b: 'keep', u: { k1: 1, k2: { q: true } } });
    await ws.ok([[h, '__delitem__', [['u', 'k2']]], [h, '__delitem__', ['a']]]);
    expect(s.tree('meta', HASH)).toEqual({ b: 'keep', u: { k1: 1 } });
    ws.close();
  });

  it('make_array + index writes; first_key/last_key/keys_eager; blob flag kept', async () => {
    const s = await start();
    const c = new Client(s);
    const h = await c.tree(HASH, 'seqs');
    const ws = await c.ws();
    const arr = ['v2', 'chunks', HASH, 'loss', 'val'];
    await ws.ok([[h, 'make_array', [arr]]]);
    await ws.ok([[h, '__setitem__', [[...arr, 1], new AimFloat(0.5)]], [h, '__setitem__', [[...arr, 0], new AimFloat(2)]]]);
    await ws.ok([[h, 'make_array', [arr]]]); // children untouched
    expect(await c.value(h, 'collect', [arr])).toEqual([2, 0.5]);
    expect(await c.value(h, 'first_key', [arr])).toBe(0);
    expect(await c.value(h, 'last_key', [arr])).toBe(1);
    expect(await c.value(h, 'keys_eager', [['v2', 'chunks', HASH]])).toEqual(['loss']);
    expect(s.entries('seqs', HASH).map((e) => e.bytes[0])).toEqual([6, 3, 3]);
    await ws.ok([[h, '__setitem__', [['text'], { _type: 'aim.text', data: new AimBlob('hello'), raw: new AimBlob(Uint8Array.of(1, 2)) }]]]);
    expect(s.entries('seqs', HASH).filter((e) => e.path[0] === 'text').map((e) => [e.path.join('/'), e.isBlob])).toEqual([
      ['text/_type', false],
      ['text/data', true],
      ['text/raw', true],
    ]);
    const answer = unpack((await c.read(h, 'collect', [['text']])).bytes);
    expect(answer.map((e) => e.isBlob)).toEqual([false, true, true]);
    ws.close();
  });

  it('an exception over the WebSocket is sent packed and closes the socket; earlier instructions stay applied', async () => {
    const s = await start();
    const c = new Client(s);
    const h = await c.tree();
    const ws = await c.ws();
    const r = await ws.write([
      [h, '__setitem__', [['x'], 1]],
      ['not-a-handler', '__setitem__', [['y'], 2]],
      [h, '__setitem__', [['z'], 3]],
    ]);
    expect(r).toMatchObject({ ok: false, closed: true });
    expect(r.exception).toEqual({ module_name: 'aim.ext.transport.tracking', class_name: 'UnauthorizedRequestError', args: '["not-a-handler"]', message: 'not-a-handler' });
    expect(s.tree('meta', HASH)).toEqual({ x: 1 });
    // another client may not use the handler either
    const ws2 = await new Client(s, 'client-2').ws();
    expect((await ws2.write([[h, '__setitem__', [['y'], 2]]])).exception).toMatchObject({ class_name: 'UnauthorizedRequestError' });
    expect((await new Client(s, 'client-2').call('GET', `/tracking/client-2/release-resource/${h}/`)).json.exception).toMatchObject({
      class_name: 'UnauthorizedRequestError',
    });
    expect(s.requests.filter((q) => q.path.endsWith('/write-instruction/')).map((q) => q.status)).toEqual([101, 101]);
  });

  it('aim.resource arguments are resolved (finalize into the index tree)', async () => {
    const s = await start();
    const c = new Client(s);
    const h = await c.tree();
    const idx = await c.resource('TreeView', { name: 'meta', sub: '', read_only: false, index: true, timeout: 10 });
    const ws = await c.ws();
    await ws.ok([[h, '__setitem__', [['chunks', HASH, 'end_time'], null]]]);
    await ws.ok([[h, 'finalize', [new AimCustomObject('aim.resource', { handler: idx })]]]);
    expect(s.tree('meta', '__index__')).toEqual({ chunks: { [HASH]: { end_time: null } } });
    const bad = await ws.write([[h, 'finalize', [new AimCustomObject('aim.resource', { handler: 'nope' })]]]);
    expect(bad.exception).toMatchObject({ class_name: 'UnauthorizedRequestError' });
  });
});

describe('runs, locks, heartbeats, repo, file manager', () => {
  it('StructuredRun setters over the WebSocket, attribute reads, tags', async () => {
    const s = await start();
    const c = new Client(s);
    const h = await c.resource('StructuredRun', { hash_: HASH, read_only: false, created_at: null });
    const before = Date.now() / 1000;
    expect(s.runs.get(HASH)!.createdAt).toBeLessThanOrEqual(before);
    const ws = await c.ws();
    await ws.ok([
      [h, 'name.setter', ['exp1']],
      [h, 'experiment.setter', ['ablation']],
      [h, 'description.setter', ['d']],
      [h, 'archived.setter', [true]],
      [h, 'add_tag', ['t1']],
      [h, 'add_tag', ['t2']],
      [h, 'add_tag', ['t1']],
    ]);
    expect(s.runs.get(HASH)).toMatchObject({ name: 'exp1', experiment: 'ablation', description: 'd', archived: true, tags: ['t1', 't2'], heartbeat: 'none' });
    expect(await c.value(h, 'name')).toBe('exp1');
    expect(await c.value(h, 'tags')).toEqual(['t1', 't2']);
    expect(await c.value(h, 'remove_tag', ['t1'])).toBe(true);
    const ct = unpack((await c.read(h, 'creation_time')).bytes);
    expect(ct[0]!.value[0]).toBe(3); // a Python float
    const r = await ws.write([[h, 'creation_time.setter', [1]]]);
    expect(r.exception).toMatchObject({ class_name: 'AttributeError' });
    // a second StructuredRun for the same hash finds the record
    await c.resource('StructuredRun', { hash_: HASH, read_only: true, created_at: null });
    expect(s.runs.get(HASH)!.name).toBe('exp1');
  });

  it('lock conflict between two clients; releasing the resource frees the lock; heartbeat stop', async () => {
    const s = await start();
    const a = new Client(s, 'client-a');
    const b = new Client(s, 'client-b');
    await a.resource('Repo', {}); // keeps the repo (and so every run lock's LockManager) alive, for b too
    const la = await a.resource('Lock', { run_hash: HASH });
    const lb = await b.resource('Lock', { run_hash: HASH });
    expect(await a.value(la, 'lock', [false])).toBeNull();
    expect(await a.value(la, 'lock', [false])).toBeNull(); // re-entrant for the holder
    expect(s.locks.get(HASH)).toBe(la);
    const r = await b.read(lb, 'lock', [false]);
    expect(r.status).toBe(400);
    expect(r.json.exception).toEqual({
      module_name: 'filelock',
      class_name: 'Timeout',
      args: JSON.stringify([HASH]),
      message: `The file lock '${HASH}' could not be acquired.`,
    });
    expect(await b.value(lb, 'release', [false])).toBeNull();
    expect(s.locks.get(HASH)).toBe(la);
    expect((await a.call('GET', `/tracking/client-a/release-resource/${la}`)).json).toBeNull();
    expect(s.locks.has(HASH)).toBe(false);
    expect(s.released).toEqual([la]);
    await b.value(lb, 'lock', [false]);
    expect(s.locks.get(HASH)).toBe(lb);
    const la2 = await a.resource('Lock', { run_hash: HASH });
    await a.value(la2, 'lock', [true]); // force
    expect(s.locks.get(HASH)).toBe(la2);

    const hb = await a.resource('RunHeartbeat', { run_hash: HASH });
    await a.resource('StructuredRun', { hash_: HASH, read_only: false, created_at: 1 });
    expect(s.runs.get(HASH)!.heartbeat).toBe('active');
    expect(await a.value(hb, 'stop')).toBeNull();
    expect(s.runs.get(HASH)!.heartbeat).toBe('stopped');
  });

  it("repo lifetime: lock() needs the repo that was live when the Lock was created (Aim's weakref to its LockManager)", async () => {
    const s = await start();
    const a = new Client(s, 'client-a');
    const b = new Client(s, 'client-b');
    const noneLock = { module_name: 'builtins', class_name: 'AttributeError', args: JSON.stringify(["'NoneType' object has no attribute 'lock'"]), message: "'NoneType' object has no attribute 'lock'" };
    // no Repo resource anywhere: get_lock's repo is collected at once
    const l0 = await a.resource('Lock', { run_hash: HASH });
    expect((await a.read(l0, 'lock', [false])).json.exception).toEqual(noneLock);
    // a Repo created later is a new repo object: the old Lock still fails
    const repoB = await b.resource('Repo', {});
    expect((await a.read(l0, 'lock', [false])).json.exception).toEqual(noneLock);
    // a Lock created while another client's Repo lives works; release() needs no repo
    const l1 = await a.resource('Lock', { run_hash: HASH });
    expect(await a.value(l1, 'lock', [false])).toBeNull();
    // re-creating the Repo under its handler keeps the same repo object
    await b.resource('Repo', {}, repoB);
    expect(await a.value(l1, 'lock', [false])).toBeNull();
    // the last Repo released: the repo is collected, lock() fails; release() still works
    await b.call('GET', `/tracking/client-b/release-resource/${repoB}/`);
    expect((await a.read(l1, 'lock', [false])).json.exception).toEqual(noneLock);
    expect(await a.value(l1, 'release', [false])).toBeNull();
    expect(s.locks.has(HASH)).toBe(false);
  });

  it('Repo list_all_runs / list_active_runs; FileManager touch and poll', async () => {
    const s = await start();
    const c = new Client(s);
    const other = 'ffffffffffffffffffffffff';
    const m1 = await c.tree(HASH);
    const m2 = await c.tree(other);
    await c.tree('000000000000000000000000'); // empty: not a run
    const ws = await c.ws();
    await ws.ok([
      [m1, '__setitem__', [['meta', 'chunks', HASH, 'end_time'], null]],
      [m2, '__setitem__', [['meta', 'chunks', other, 'end_time'], new AimFloat(1.7e9)]],
    ]);
    const repo = await c.resource('Repo', {});
    expect(await c.value(repo, 'list_all_runs')).toEqual([HASH, other]);
    expect(await c.value(repo, 'list_active_runs')).toEqual([HASH]);
    expect(s.runHashes()).toEqual([HASH, other]);
    const fm = await c.resource('FileManager', {});
    await ws.ok([
      [fm, 'touch', [`${HASH}-0001.check`, null]],
      [fm, 'touch', [`${HASH}-0002.check`, `${HASH}-*.check`]],
    ]);
    expect([...s.checkIns]).toEqual([`${HASH}-0002.check`]);
    expect(await c.value(fm, 'poll', [`${HASH}-*`])).toBe(`${HASH}-0002.check`);
    expect(await c.value(fm, 'poll', ['nothing*'])).toBeNull();
  });
});

describe('restart, keep-alive, faults', () => {
  it('restart keeps data, forgets clients/resources/locks; the same handler can be re-created', async () => {
    const s = await start();
    const c = new Client(s);
    await c.call('GET', '/client/connect/client-1/');
    await c.call('GET', '/client/heartbeat/client-1/');
    const h = await c.tree();
    const repo = await c.resource('Repo', {});
    const lock = await c.resource('Lock', { run_hash: HASH });
    await c.value(lock, 'lock', [false]);
    await c.resource('StructuredRun', { hash_: HASH, read_only: false, created_at: 5 });
    const ws = await c.ws();
    await ws.ok([[h, '__setitem__', [['k'], 'v']]]);
    const closed = once(ws.ws, 'close');
    const port = s.port;
    const restarting = s.restart({ downMs: 100 });
    await closed;
    await sleep(30);
    await expect(fetch(`http://127.0.0.1:${port}/status/`)).rejects.toThrow();
    await restarting;
    expect(s.port).toBe(port);
    expect(s.clients.size + s.heartbeats.size + s.locks.size + s.resources().length).toBe(0);
    expect((await c.read(h, 'collect', [[]])).json.exception.class_name).toBe('UnauthorizedRequestError');
    expect(await c.resource('TreeView', { name: 'meta', sub: HASH, read_only: false, index: false, timeout: null }, h)).toBe(h);
    expect(await c.value(h, 'collect', [[]])).toEqual({ k: 'v' });
    expect(s.runs.get(HASH)!.createdAt).toBe(5);
    // a Lock re-created before the Repo binds to a throwaway repo: re-create the Repo first, then the Lock
    await c.resource('Lock', { run_hash: HASH }, lock);
    expect((await c.read(lock, 'lock', [false])).json.exception.class_name).toBe('AttributeError');
    await c.resource('Repo', {}, repo);
    await c.resource('Lock', { run_hash: HASH }, lock);
    await c.value(lock, 'lock', [false]);
    expect(s.locks.get(HASH)).toBe(lock);
  });

  it('keep-alive: a client silent for clientKeepAliveMs loses its resources; clients without heartbeat are not watched', async () => {
    const s = await start({ clientKeepAliveMs: 100 });
    const a = new Client(s, 'client-a');
    const b = new Client(s, 'client-b');
    await a.call('GET', '/client/connect/client-a/');
    await a.call('GET', '/client/heartbeat/client-a/');
    const rb = await b.resource('Repo', {});
    const la = await a.resource('Lock', { run_hash: HASH });
    await a.value(la, 'lock', [false]);
    const hb = await a.resource('RunHeartbeat', { run_hash: HASH });
    await sleep(250);
    expect(s.resources().map((r) => r.handler)).toEqual([rb]);
    expect(s.released).toEqual([la, hb]);
    expect(s.locks.size).toBe(0);
    expect(s.clients.has('client-a')).toBe(false);
  });

  it('WebSocket faults: drop-before, drop-after, error', async () => {
    const s = await start();
    const c = new Client(s);
    const h = await c.tree();
    s.injectWsFault({ kind: 'drop-before', times: 2 });
    for (const v of [1, 2]) {
      const ws = await c.ws();
      expect(await ws.write([[h, '__setitem__', [['n'], v]]])).toEqual({ ok: false, exception: undefined, closed: true, code: 1006 });
    }
    expect(s.tree('meta', HASH)).toBeUndefined();
    s.injectWsFault({ kind: 'drop-after' });
    let ws = await c.ws();
    expect(await ws.write([[h, '__setitem__', [['n'], 3]]])).toMatchObject({ ok: false, exception: undefined, closed: true });
    expect(s.tree('meta', HASH)).toEqual({ n: 3 });
    s.injectWsFault({ kind: 'error' });
    ws = await c.ws();
    const r = await ws.write([[h, '__setitem__', [['n'], 4]]]);
    expect(r).toMatchObject({ ok: false, closed: true, code: 1000 });
    expect(r.exception).toEqual({ module_name: 'builtins', class_name: 'RuntimeError', args: '["Injected fault"]', message: 'Injected fault' });
    expect(s.tree('meta', HASH)).toEqual({ n: 3 });
    ws = await c.ws();
    await ws.ok([[h, '__setitem__', [['n'], 5]]]);
    expect(s.messages.map((m) => m.fault)).toEqual(['drop-before', 'drop-before', 'drop-after', 'error', undefined]);
    expect(s.messages.every((m) => m.instructions.length === 1 && m.bytes > 0)).toBe(true);
    ws.close();
  });

  it('WebSocket fault apply-then-1011: applied, closed 1011 without OK; a re-sent message is applied again', async () => {
    const s = await start();
    const c = new Client(s);
    const h = await c.tree();
    let ws = await c.ws();
    await ws.ok([[h, '__setitem__', [['n'], 1]]]);
    s.injectWsFault({ kind: 'apply-then-1011' });
    expect(await ws.write([[h, '__setitem__', [['n'], 2]], [h, 'make_array', [['a']]]])).toEqual({ ok: false, exception: undefined, closed: true, code: 1011 });
    expect(s.tree('meta', HASH)).toEqual({ n: 2, a: [] });
    ws = await c.ws();
    await ws.ok([[h, '__setitem__', [['n'], 2]], [h, 'make_array', [['a']]]]);
    expect(s.tree('meta', HASH)).toEqual({ n: 2, a: [] });
    expect(s.messages.map((m) => m.fault)).toEqual([undefined, 'apply-then-1011', undefined]);
    ws.close();
  });

  it('dropResources (the HeartbeatWatcher): later calls naming the handlers raise UnauthorizedRequestError, over HTTP and the WebSocket', async () => {
    const s = await start();
    const a = new Client(s, 'client-a');
    const b = new Client(s, 'client-b');
    const h = await a.tree();
    const hb = await b.tree();
    s.dropResources('client-a');
    expect(s.resources().map((r) => r.handler)).toEqual([hb]);
    const unauthorized = { module_name: 'aim.ext.transport.tracking', class_name: 'UnauthorizedRequestError', args: JSON.stringify([h]), message: h };
    const r = await a.read(h, 'collect', [[]]);
    expect([r.status, r.json.exception]).toEqual([400, unauthorized]);
    const ws = await a.ws();
    expect(await ws.write([[h, '__setitem__', [['n'], 1]]])).toEqual({ ok: false, exception: unauthorized, closed: true, code: 1000 });
    // re-created under the same handler, it works again
    expect(await a.resource('TreeView', { name: 'meta', sub: HASH, read_only: false, index: false, timeout: null }, h)).toBe(h);
    await (await a.ws()).ok([[h, '__setitem__', [['n'], 1]]]);
    expect(s.tree('meta', HASH)).toEqual({ n: 1 });
  });

  it('applyCostMsPerRecordByte: a message keeps the server busy for records × bytes × cost, and every other request waits', async () => {
    const s = await start({ applyCostMsPerRecordByte: 4e-6 });
    const c = new Client(s);
    const h = await c.tree();
    const ws = await c.ws();
    const big = Array.from({ length: 150 }, (_, i) => [h, '__setitem__', [['k', i], 'x'.repeat(100)]]);
    const write = ws.write(big);
    while (s.messages.length === 0) await sleep(1); // received: being applied now
    expect(s.tree('meta', HASH)).toBeUndefined();
    // answered only once the message was applied
    const status = await c.call('GET', '/status/').then((r) => ({ status: r.status, applied: s.tree('meta', HASH) !== undefined }));
    expect(status).toEqual({ status: 200, applied: true });
    expect((await write).ok).toBe(true);
    const [m] = s.messages;
    expect(m!.records).toBeGreaterThan(300);
    expect(m!.busyMs).toBeCloseTo(m!.records * m!.bytes * 4e-6, 6);
    // a message twice as long has twice the records and twice the bytes: four times the cost
    await ws.ok([...big, ...big.map(([hh, mm, [p, v]]) => [hh, mm, [['k2', (p as unknown[])[1]], v]])]);
    const m2 = s.messages[1]!;
    expect(m2.busyMs / m!.busyMs).toBeGreaterThan(3.8);
    ws.close();
  });

  it('HTTP faults apply before processing, to WebSocket upgrades too', async () => {
    const s = await start();
    const c = new Client(s);
    s.faults.inject({ kind: 'status', status: 503, path: 'get-resource' });
    const r = await c.getResource('Repo', {});
    expect(r).toMatchObject({ status: 503, json: { detail: 'Injected fault: HTTP 503' } });
    expect(s.resources()).toEqual([]);
    s.faults.inject({ kind: 'status', status: 502, path: 'write-instruction' });
    const ws = new WebSocket(`ws://127.0.0.1:${s.port}/tracking/client-1/write-instruction/`);
    const [err] = (await once(ws, 'error')) as [Error];
    expect(err.message).toMatch(/502/);
    s.faults.inject({ kind: 'refuse', path: '/client/' });
    await expect(c.call('GET', '/client/connect/client-1/')).rejects.toThrow();
    expect(s.clients.size).toBe(0);
    expect((await c.ws()).ws.readyState).toBe(WebSocket.OPEN);
    expect(s.requests.map((q) => q.status)).toEqual([503, 502, 0, 101]);
  });
});

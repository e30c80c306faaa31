// AimTracker against the local Aim 3.29.1 remote-tracking server emulator: the run tree must be
// exactly what Aim's Python SDK writes for the same calls (expected trees written out by hand from
// aim/sdk/{run,base_run,tracker}.py; hashes from test/backends/aim/hash-vectors.json, computed in Python).
import { once } from 'node:events';
import { spawn } from 'node:child_process';
import { createServer } from 'node:http';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { AimTracker, BackendError, ConfigError, Tracking, setWarningHandler } from '../../../generated/index.gen.js';
import { aimTuning } from '../../../runtime/backends/aim/index.js';
import { AimClient } from '../../../runtime/backends/aim/client.js';
import { hashAuto } from '../../../runtime/backends/aim/hash.js';
import { AimCustomObject, type AimPathElement, type AimValue } from '../../../runtime/backends/aim/encoding.js';
import { listSpools } from '../../../runtime/io/spool.js';
import { decodePngRgba } from '../../../runtime/io/image.js';
import { syncAll } from '../../../runtime/backends/sync.js';
import { ROOT, tempDir } from '../../support/helpers.js';
import { AimTestServer, type AimTestServerOptions } from './server.js';

const vectors = JSON.parse(readFileSync(new URL('./hash-vectors.json', import.meta.url), 'utf8')) as {
  numbers: { value: number; hash: string }[];
  values: { value: unknown; hash: string }[];
};
/** hash_auto(step) from the Python vectors. */
const H = (step: number): bigint => BigInt(vectors.numbers.find((v) => v.value === step)!.hash);
/** Context id of {} and of {subset: 'train'} from the Python vectors. */
const CTX0 = vectors.values.find((v) => JSON.stringify(v.value) === '{}')!.hash;
const CTX_TRAIN = vectors.values.find((v) => JSON.stringify(v.value) === '{"subset":"train"}')!.hash;

let server: AimTestServer;
let spoolDir: string;
let warnings: string[];
const saved = { ...aimTuning };
beforeEach(async () => {
  server = await AimTestServer.start();
  spoolDir = tempDir('aim-spool-');
  vi.stubEnv('TRACKSPEC_SPOOL_DIR', spoolDir);
  vi.stubEnv('RANK', undefined);
  vi.stubEnv('LOCAL_RANK', undefined);
  warnings = [];
  setWarningHandler((m) => warnings.push(m));
  Object.assign(aimTuning, { maxDelayMs: 20, baseDelayMs: 20, timeoutMs: 5000 });
});
afterEach(async () => {
  Object.assign(aimTuning, saved);
  vi.unstubAllEnvs();
  setWarningHandler(undefined);
  await server.stop();
});

/** The entries of a series array as step-key → value (keys as strings). */
function series(name: string, hash: string, path: AimPathElement[]): Record<string, unknown> {
  const prefix = JSON.stringify(path.map(String));
  const out: Record<string, unknown> = {};
  for (const e of server.entries(name, hash)) {
    const p = e.path.map(String);
    if (JSON.stringify(p.slice(0, path.length)) !== prefix) continue;
    const rest = p.slice(path.length);
    out[rest.join('/')] = e.value instanceof Uint8Array ? e.value : e.value;
  }
  return out;
}

function entriesOf(name: string, hash: string): { path: string; value: AimValue; isBlob: boolean }[] {
  return server.entries(name, hash).map((e) => ({ path: e.path.map(String).join('/'), value: e.value, isBlob: e.isBlob }));
}

describe('the run tree is what Aim writes', () => {
  it('Accelerate script: name, experiment, hparams, metrics with steps, a text, close', async () => {
    const t = new AimTracker({ run_name: 'exp1', logging_dir: server.uri, experiment: 'ablation' });
    await t.start();
    const hash = t.tracker.hash;
    expect(hash).toMatch(/^[0-9a-f]{24}$/);
    const hparams = { lr: 0.001, epochs: 3, opt: { name: 'adam', betas: [0.9, 0.999] }, note: null, amp: true };
    await t.storeInitConfiguration(hparams);
    const before = Date.now() / 1000;
    t.log({ loss: 0.5, acc: 1 }, 0);
    t.log({ loss: 0.25 }, 1);
    t.log({ loss: 0.75, note: 'hello' }, 2);
    await t.finish();
    const after = Date.now() / 1000;

    const meta = server.tree('meta', hash) as { meta: Record<string, unknown> };
    const chunk = (meta.meta['chunks'] as Record<string, Record<string, unknown>>)[hash]!;
    const endTime = chunk['end_time'] as number;
    expect(endTime).toBeGreaterThanOrEqual(before);
    expect(endTime).toBeLessThanOrEqual(after);
    const text = (s: string) => new AimCustomObject('aim.text', { data: s });
    expect(meta).toEqual({
      meta: {
        attrs: { hparams },
        contexts: { [CTX0]: {} },
        traces_types: { float: { [CTX0]: { loss: 1, acc: 1 } }, 'aim.text': { [CTX0]: { note: 1 } } },
        chunks: {
          [hash]: {
            attrs: { hparams },
            end_time: endTime,
            contexts: { [CTX0]: {} },
            traces: {
              [CTX0]: {
                loss: { dtype: 'float', version: 2, first: 0.5, first_step: 0, last: 0.75, last_step: 2, max: 0.75, min: 0.25 },
                acc: { dtype: 'float', version: 2, first: 1, first_step: 0, last: 1, last_step: 0, max: 1, min: 1 },
                note: { dtype: 'aim.text', version: 1, first: text('hello'), first_step: 2, last: text('hello'), last_step: 2 },
              },
            },
            typed_traces: { metric: { [CTX0]: { loss: 1, acc: 1 } }, texts: { [CTX0]: { note: 1 } } },
          },
        },
      },
    });

    // Type bytes: metric values and times are floats even when integral; steps, versions and flags are ints.
    const metaEntries = entriesOf('meta', hash);
    const typeOf = (p: string) => metaEntries.find((e) => e.path === p)?.value;
    expect(server.entries('meta', hash).find((e) => e.path.join('/') === `meta/chunks/${hash}/traces/${CTX0}/acc/first`)).toBeDefined();
    expect(rawType('meta', hash, ['meta', 'chunks', hash, 'traces', BigInt(CTX0), 'acc', 'first'])).toBe(3);
    expect(rawType('meta', hash, ['meta', 'chunks', hash, 'traces', BigInt(CTX0), 'acc', 'first_step'])).toBe(2);
    expect(rawType('meta', hash, ['meta', 'chunks', hash, 'end_time'])).toBe(3);
    expect(rawType('meta', hash, ['meta', 'attrs', 'hparams', 'epochs'])).toBe(2);
    expect(rawType('meta', hash, ['meta', 'attrs', 'hparams', 'lr'])).toBe(3);
    expect(typeOf(`meta/chunks/${hash}/traces/${CTX0}/note/first/data`)).toBe('hello');

    // Series: metrics under seqs/v2 keyed by hash_auto(step); the text under seqs (v1) keyed by step.
    const loss = series('seqs', hash, ['seqs', 'v2', 'chunks', hash, BigInt(CTX0), 'loss']);
    const k = (s: number) => H(s).toString();
    expect(Object.keys(loss).sort()).toEqual(
      ['step', 'val', 'epoch', 'time', ...[0, 1, 2].flatMap((s) => [`step/${k(s)}`, `val/${k(s)}`, `epoch/${k(s)}`, `time/${k(s)}`])].sort(),
    );
    expect(loss['step']).toEqual({ array: true });
    expect([0, 1, 2].map((s) => [loss[`val/${k(s)}`], loss[`step/${k(s)}`], loss[`epoch/${k(s)}`]])).toEqual([
      [0.5, 0, null],
      [0.25, 1, null],
      [0.75, 2, null],
    ]);
    for (const s of [0, 1, 2]) {
      expect(loss[`time/${k(s)}`]).toBeGreaterThanOrEqual(before);
      expect(loss[`time/${k(s)}`]).toBeLessThanOrEqual(after);
    }
    const note = entriesOf('seqs', hash).filter((e) => e.path.startsWith(`seqs/chunks/${hash}/${CTX0}/note/`));
    expect(note.map((e) => [e.path.slice(`seqs/chunks/${hash}/${CTX0}/note/`.length), e.isBlob])).toEqual([
      ['epoch', false],
      ['epoch/2', false],
      ['time', false],
      ['time/2', false],
      ['val', false],
      ['val/2', false],
      ['val/2/data', true],
    ]);
    expect(note[0]!.value).toEqual({ array: true });
    expect(note.find((e) => e.path.endsWith('val/2'))!.value).toEqual({ custom: 'aim.text' });

    // Structured run, lock, heartbeat, resources and the client connection.
    const run = server.runs.get(hash)!;
    expect(run).toMatchObject({ name: 'exp1', experiment: 'ablation', heartbeat: 'stopped' });
    expect(server.locks.has(hash)).toBe(false);
    expect(server.resources()).toEqual([]);
    expect(server.clients.size).toBe(0);
    const paths = server.requests.map((r) => `${r.method} ${r.path.replace(/[0-9a-f-]{36}/g, '<id>')}`);
    expect(paths.filter((p) => !p.includes('/heartbeat/'))).toEqual([
      'GET /status/',
      'GET /client/get-version/',
      'GET /client/connect/<id>/',
      'POST /tracking/<id>/get-resource/', // Repo, held until close (the run lock needs a live repo)
      'POST /tracking/<id>/get-resource/', // Lock
      'POST /tracking/<id>/read-instruction/', // lock(False)
      'POST /tracking/<id>/get-resource/', // TreeView meta
      'POST /tracking/<id>/get-resource/', // FileManager
      'POST /tracking/<id>/read-instruction/', // poll check-ins
      'POST /tracking/<id>/get-resource/', // RunHeartbeat
      'POST /tracking/<id>/get-resource/', // StructuredRun
      'POST /tracking/<id>/get-resource/', // TreeView seqs
      'GET /tracking/<id>/write-instruction/',
      'POST /tracking/<id>/read-instruction/', // heartbeat stop()
      'POST /tracking/<id>/read-instruction/', // lock release(False)
      ...Array<string>(6).fill('GET /tracking/<id>/release-resource/<id>/'),
      'GET /tracking/<id>/release-resource/<id>/', // Repo
      'GET /client/disconnect/<id>/',
    ]);
    // the client-side RunStatusReporter's 'starting' check-in
    expect([...server.checkIns]).toHaveLength(1);
    expect([...server.checkIns][0]).toMatch(new RegExp(`^${hash}-0000000000000001-starting-\\d{10}\\.\\d{2}-00000$`));
    expect(paths.some((p) => p.includes('/client/heartbeat/'))).toBe(true);
  });

  it('steps count per sequence when omitted; epoch and context kwargs as run.track takes them', async () => {
    const t = new AimTracker({ run_name: null, logging_dir: server.uri });
    await t.start();
    const hash = t.tracker.hash;
    t.log({ a: 1 });
    t.log({ a: 2, b: 5 });
    t.log({ a: 3 }, undefined, { epoch: 7, context: { subset: 'train' } });
    t.log({ a: 4 }, 7);
    t.log({ a: 5 }, 3); // lower than last: stored, last/last_step unchanged (as Aim)
    await t.finish();
    const traces = ((server.tree('meta', hash) as any).meta.chunks[hash].traces) as Record<string, Record<string, Record<string, unknown>>>;
    expect(traces[CTX0]!['a']).toMatchObject({ first_step: 0, last_step: 7, last: 4, max: 5, min: 1 });
    expect(traces[CTX0]!['b']).toMatchObject({ first_step: 0, last_step: 0 });
    expect(traces[CTX_TRAIN]!['a']).toMatchObject({ first_step: 0, last_step: 0, first: 3 });
    expect((server.tree('meta', hash) as any).meta.contexts[CTX_TRAIN]).toEqual({ subset: 'train' });
    const a = series('seqs', hash, ['seqs', 'v2', 'chunks', hash, BigInt(CTX0), 'a']);
    expect([0, 1, 7, 3].map((s) => a[`step/${H(s)}`])).toEqual([0, 1, 7, 3]);
    const train = series('seqs', hash, ['seqs', 'v2', 'chunks', hash, BigInt(CTX_TRAIN), 'a']);
    expect(train[`epoch/${H(0)}`]).toBe(7);
    expect(server.runs.get(hash)!.name).toBeNull();
  });

  it('values outside the value rules are skipped with one warning per key (null, arrays, objects)', async () => {
    const t = new AimTracker({ logging_dir: server.uri });
    await t.start();
    t.log({ n: null, arr: [1, 2], obj: { a: 1 }, ok: 2 }, 0);
    t.log({ n: null, ok: 3 }, 1);
    await t.finish();
    const traces = (server.tree('meta', t.tracker.hash) as any).meta.chunks[t.tracker.hash].traces[CTX0];
    expect(Object.keys(traces)).toEqual(['ok']);
    expect(warnings.filter((w) => w.includes('skipped "n"'))).toHaveLength(1);
    expect(warnings.join('\n')).toMatch(/skipped "arr": an array is not supported/);
    expect(warnings.join('\n')).toMatch(/skipped "obj"/);
  });

  it('a value whose type does not match its sequence is skipped with a warning (Aim sequences are homogeneous)', async () => {
    const t = new AimTracker({ logging_dir: server.uri });
    await t.start();
    t.log({ x: 1 }, 0);
    t.log({ x: 'text' }, 1);
    await t.finish();
    expect(warnings.join('\n')).toMatch(/cannot log a string to 'x': the Aim sequence holds float values/);
    const traces = (server.tree('meta', t.tracker.hash) as any).meta.chunks[t.tracker.hash].traces[CTX0];
    expect(traces.x.last_step).toBe(0);
  });

  it('logImages: aim.Image objects (PNG blob, PIL mode, caption) under seqs/chunks, one or a list per key', async () => {
    const t = new AimTracker({ logging_dir: server.uri });
    await t.start();
    const hash = t.tracker.hash;
    const rgb = { data: Uint8Array.from({ length: 2 * 3 * 3 }, (_, i) => i * 10), height: 2, width: 3, channels: 3 };
    const grey = { data: Uint8Array.of(0, 255), height: 1, width: 2, channels: 1 };
    t.logImages({ sample: rgb }, 5, { aim_image: { caption: 'epoch 5' }, track: { epoch: 2 } });
    t.logImages({ batch: [grey, rgb] }, 0);
    t.logImages({ sample: [grey] }, 6); // a list on a single-image sequence: skipped with a warning
    await t.finish();
    const chunk = (server.tree('meta', hash) as any).meta.chunks[hash];
    expect(chunk.traces[CTX0].sample).toMatchObject({ dtype: 'aim.image', version: 1, first_step: 5, last_step: 5 });
    expect(chunk.traces[CTX0].batch).toMatchObject({ dtype: 'list(aim.image)', version: 1, record_max_length: 2 });
    expect(chunk.typed_traces.images[CTX0]).toEqual({ sample: 1, batch: 1 });
    expect(warnings.join('\n')).toMatch(/cannot log a list of images to 'sample': the Aim sequence holds aim\.image values/);
    const base = `seqs/chunks/${hash}/${CTX0}/sample/`;
    const sample = entriesOf('seqs', hash).filter((e) => e.path.startsWith(`${base}val/5`));
    expect(sample.map((e) => [e.path.slice(base.length), e.isBlob])).toEqual([
      ['val/5', false],
      ['val/5/caption', false],
      ['val/5/data', true],
      ['val/5/format', false],
      ['val/5/height', false],
      ['val/5/mode', false],
      ['val/5/source', false],
      ['val/5/width', false],
    ]);
    const field = (k: string) => sample.find((e) => e.path.endsWith(`/${k}`))!.value;
    expect([field('caption'), field('format'), field('mode'), field('source'), field('width'), field('height')]).toEqual(['epoch 5', 'png', 'RGB', 'PIL.Image', 3, 2]);
    const png = field('data') as Uint8Array;
    const decoded = decodePngRgba(png);
    expect([decoded.width, decoded.height]).toEqual([3, 2]);
    expect(Array.from(decoded.data.subarray(0, 8))).toEqual([0, 10, 20, 255, 30, 40, 50, 255]);
    expect(series('seqs', hash, ['seqs', 'chunks', hash, BigInt(CTX0), 'sample'])['epoch/5']).toBe(2);
    const batch = entriesOf('seqs', hash).filter((e) => e.path.startsWith(`seqs/chunks/${hash}/${CTX0}/batch/val/0`));
    expect(batch.filter((e) => e.path.endsWith('/mode')).map((e) => e.value)).toEqual(['L', 'RGB']);
    expect(batch[0]!.value).toEqual({ array: true });
  });

  it('log_system_params records __system_params like Aim (secrets masked)', async () => {
    vi.stubEnv('MY_API_KEY', 'do-not-send');
    vi.stubEnv('PLAIN_SETTING', 'kept');
    const t = new AimTracker({ logging_dir: server.uri, log_system_params: true, system_tracking_interval: 10 });
    await t.start();
    await t.finish();
    const attrs = (server.tree('meta', t.tracker.hash) as any).meta.chunks[t.tracker.hash].attrs;
    const sp = attrs.__system_params;
    expect(Object.keys(sp).sort()).toEqual(['arguments', 'env_variables', 'executable', 'git_info', 'packages']);
    expect(sp.env_variables.PLAIN_SETTING).toBe('kept');
    expect(sp.env_variables.MY_API_KEY).toBeUndefined();
    expect(sp.executable).toBe(process.execPath);
    expect(sp.packages['@noble/hashes']).toBe('2.4.0');
    expect(warnings.join('\n')).toMatch(/system_tracking_interval is accepted for compatibility and ignored/);
  });

  it('resume with run_hash: sequences continue, attrs kept, unknown hash and a locked run refused', async () => {
    const t1 = new AimTracker({ run_name: 'first', logging_dir: server.uri });
    await t1.start();
    const hash = t1.tracker.hash;
    await t1.storeInitConfiguration({ lr: 0.1 });
    t1.log({ loss: 3 });
    t1.log({ loss: 2 });
    await t1.finish();

    const t2 = new AimTracker({ logging_dir: server.uri, run_hash: hash });
    await t2.start();
    // a second writer of the same run is refused while t2 holds the lock
    const t3 = new AimTracker({ logging_dir: server.uri, run_hash: hash });
    await expect(t3.start()).rejects.toThrow(/run [0-9a-f]{24} is locked by another writer/);
    // the refused writer released what it had taken and disconnected
    expect(server.resources().map((r) => r.type).sort()).toEqual(['FileManager', 'Lock', 'Repo', 'RunHeartbeat', 'StructuredRun', 'TreeView', 'TreeView']);
    expect(server.clients.size).toBe(1);
    t2.log({ loss: 1 });
    t2.log({ loss: 5 });
    await t2.finish();
    const chunk = (server.tree('meta', hash) as any).meta.chunks[hash];
    expect(chunk.attrs).toEqual({ hparams: { lr: 0.1 } });
    expect(chunk.traces[CTX0].loss).toMatchObject({ first: 3, first_step: 0, last: 5, last_step: 3, min: 1, max: 5 });
    const loss = series('seqs', hash, ['seqs', 'v2', 'chunks', hash, BigInt(CTX0), 'loss']);
    expect([0, 1, 2, 3].map((s) => loss[`val/${H(s)}`])).toEqual([3, 2, 1, 5]);
    // check-in numbering continues; the older 'starting' check-in was cleaned up
    expect([...server.checkIns].filter((c) => c.startsWith(hash)).map((c) => c.split('-')[1])).toEqual(['0000000000000002']);

    const bad = new AimTracker({ logging_dir: server.uri, run_hash: 'ffffffffffffffffffffffff' });
    const err = await bad.start().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConfigError);
    expect(String(err)).toMatch(/run_hash 'ffffffffffffffffffffffff' is not a run of the Aim repository served at aim:\/\/127\.0\.0\.1:\d+/);
  });
});

describe('configuration and compatibility', () => {
  it('a server that is not Aim fails fast with a clear error (GET /status/ must answer {"status": "OK"}), no retries', async () => {
    const seen: string[] = [];
    const other = createServer((req, res) => {
      seen.push(`${req.method} ${req.url}`);
      res.writeHead(404, { 'Content-Type': 'text/html' }).end('<html>File not found</html>');
    });
    await new Promise<void>((r) => other.listen(0, '127.0.0.1', r));
    try {
      const port = (other.address() as { port: number }).port;
      const err = await new AimTracker({ logging_dir: `aim://127.0.0.1:${port}`, retry_deadline_secs: 30 }).start().catch((e: unknown) => e);
      expect(err).toBeInstanceOf(BackendError);
      expect(String(err)).toMatch(/http:\/\/127\.0\.0\.1:\d+ is not an Aim tracking server: GET \/status\/ answered HTTP 404 <html>File not found<\/html> instead of \{"status": "OK"\}\. logging_dir must be the address of `aim server`/);
      expect(seen).toEqual(['GET /status/']);
    } finally {
      await new Promise((r) => other.close(r));
    }
  });

  it('a directory logging_dir is a ConfigError explaining aim server --repo and the URI to pass; nothing is written', async () => {
    const dir = tempDir('aim-repo-');
    const t = new AimTracker({ logging_dir: dir });
    const err = await t.start().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).message).toContain(`aim server --repo ${dir}`);
    expect((err as ConfigError).message).toContain("logging_dir: 'aim://<host>:53800'");
    expect(server.requests).toHaveLength(0);
    const err2 = await new AimTracker({ logging_dir: 'aim://host:1/sub' }).start().catch((e: unknown) => e);
    expect(String(err2)).toMatch(/must be aim:\/\/host:port/);
  });

  it('refuses Aim 4 and pre-3.19 servers; warns about a newer 3.x', async () => {
    await server.stop();
    server = await AimTestServer.start({ version: '4.0.0' });
    await expect(new AimTracker({ logging_dir: server.uri }).start()).rejects.toThrow(/is version 4\.0\.0; trackspec speaks Aim 3\.x/);
    await server.stop();
    server = await AimTestServer.start({ version: null });
    await expect(new AimTracker({ logging_dir: server.uri }).start()).rejects.toThrow(/older than 3\.19/);
    await server.stop();
    server = await AimTestServer.start({ version: '3.30.2' });
    const t = new AimTracker({ logging_dir: server.uri });
    await t.start();
    await t.finish();
    expect(warnings.join('\n')).toMatch(/Aim 3\.30\.2, newer than the 3\.29\.1 protocol/);
    expect(t.tracker.serverVersion).toBe('3.30.2');
  });

  it('the client heartbeat runs while the tracker is open', async () => {
    aimTuning.heartbeatMs = 50;
    const t = new AimTracker({ logging_dir: server.uri });
    await t.start();
    await new Promise((r) => setTimeout(r, 300));
    await t.finish();
    expect([...server.heartbeats.values()][0]).toBeGreaterThanOrEqual(3);
  });

  it('works through Tracking (project_name → run name, log kwargs under "aim")', async () => {
    const tr = new Tracking({ log_with: 'aim', project_dir: server.uri });
    await tr.initTrackers('proj', { bs: 8 });
    tr.log({ loss: 0.1 }, 0, { aim: { epoch: 1 } });
    await tr.endTraining();
    const hash = server.runHashes()[0]!;
    expect(server.runs.get(hash)!.name).toBe('proj');
    expect((server.tree('meta', hash) as any).meta.attrs.hparams).toEqual({ bs: 8 });
    expect(series('seqs', hash, ['seqs', 'v2', 'chunks', hash, BigInt(CTX0), 'loss'])[`epoch/${H(0)}`]).toBe(1);
  });
});

/** The type byte of the value stored at `path`. */
function rawType(name: string, hash: string, path: AimPathElement[]): number | undefined {
  const want = path.map(String).join('/');
  const e = server.entries(name, hash).find((x) => x.path.map(String).join('/') === want);
  if (!e) return undefined;
  const v = e.value;
  if (v === null) return 0;
  if (typeof v === 'boolean') return 1;
  if (typeof v === 'string') return 4;
  if (typeof v === 'number' || typeof v === 'bigint') return e.bytes[0];
  return undefined;
}

describe('faults: nothing lost, nothing duplicated', () => {
  async function run(fault: (step: number, t: AimTracker) => Promise<void> | void, options: { retry_deadline_secs?: number } = {}) {
    const t = new AimTracker({ run_name: 'faulty', logging_dir: server.uri, retry_deadline_secs: options.retry_deadline_secs ?? 20 });
    await t.start();
    for (let s = 0; s < 200; s++) {
      t.log({ loss: 1 / (s + 1), acc: s / 200 }, s);
      if (s % 50 === 25) {
        await fault(s, t);
        await new Promise((r) => setTimeout(r, 30));
      }
    }
    return t;
  }
  function expectComplete(hash: string) {
    const loss = series('seqs', hash, ['seqs', 'v2', 'chunks', hash, BigInt(CTX0), 'loss']);
    for (let s = 0; s < 200; s++) expect(loss[`val/${hashKey(s)}`]).toBeCloseTo(1 / (s + 1), 12);
    const vals = Object.keys(loss).filter((k) => k.startsWith('val/'));
    expect(vals).toHaveLength(200);
    const chunk = (server.tree('meta', hash) as any).meta.chunks[hash];
    expect(chunk.traces[CTX0].loss).toMatchObject({ last_step: 199, first_step: 0, max: 1 });
    expect(chunk.end_time).toBeGreaterThan(0);
  }

  it('dropped WebSocket before and after the server applied a message (ambiguous) are retried', async () => {
    const t = await run((s) => server.injectWsFault({ kind: s < 100 ? 'drop-before' : 'drop-after', times: 2 }));
    await t.finish();
    expectComplete(t.tracker.hash);
    // every fault was met: 4 messages dropped unapplied, 4 applied but never acknowledged (then re-sent)
    expect(server.messages.filter((m) => m.fault === 'drop-before')).toHaveLength(4);
    expect(server.messages.filter((m) => m.fault === 'drop-after')).toHaveLength(4);
    expect(t.tracker.spoolPath).toBeUndefined();
  });

  it('a server restart mid-run: reconnect, resources re-created under their handlers (the Repo first), lock taken again', async () => {
    const t = await run(async () => {
      await server.restart({ downMs: 150 });
    });
    await t.flush();
    expect(server.locks.has(t.tracker.hash)).toBe(true);
    await t.finish();
    expectComplete(t.tracker.hash);
    const i = server.requests.findIndex((r) => r.path.includes('/client/reconnect/'));
    expect(i).toBeGreaterThan(0);
    // the run lock binds to the repo live when it is created: the Repo comes back before the Lock
    const recreated = server.requests.slice(i).filter((r) => r.path.endsWith('/get-resource/')).map((r) => (r.body as { resource_type: string }).resource_type);
    expect(recreated.slice(0, 2)).toEqual(['Repo', 'Lock']);
  });

  it("the server dropped the client's resources (HeartbeatWatcher) mid-run and before finish(): the write re-creates them and is re-sent", async () => {
    const t = await run(async (s, tr) => {
      if (s >= 100) return;
      server.dropResources();
      await tr.flush(); // recovered before the next drop
    });
    await t.flush();
    expect(server.locks.has(t.tracker.hash)).toBe(true); // taken again
    server.dropResources(); // before finish(): its end-time write meets UnauthorizedRequestError
    await t.finish();
    expectComplete(t.tracker.hash);
    expect(server.runs.get(t.tracker.hash)!.heartbeat).toBe('stopped');
    expect(server.locks.has(t.tracker.hash)).toBe(false);
    expect(server.resources()).toEqual([]);
    expect(server.requests.filter((r) => r.path.includes('/client/reconnect/'))).toHaveLength(3);
    expect(t.tracker.spoolPath).toBeUndefined();
  });

  it('a read meeting UnauthorizedRequestError (the heartbeat stop or lock release in finish()) reconnects, re-creates and runs again', async () => {
    const client = await AimClient.open(`127.0.0.1:${server.port}`);
    const lock = await client.getResource('Lock', { run_hash: 'abcdefabcdefabcdefabcdef' });
    await client.read(lock, 'lock', [false]);
    server.dropResources();
    expect(server.locks.size).toBe(0);
    expect(await client.read(lock, 'release', [false])).toBeNull();
    expect(server.requests.filter((r) => r.path.includes('/client/reconnect/'))).toHaveLength(1);
    expect(server.resources().map((r) => [r.type, r.handler])).toEqual([
      ['Repo', client.repoHandler],
      ['Lock', lock],
    ]);
    // a handler this client does not hold is not retried
    await expect(client.read('not-a-handler', 'collect')).rejects.toThrow(/collect\(\): the server raised aim\.ext\.transport\.tracking\.UnauthorizedRequestError: not-a-handler/);
    await client.releaseAll();
    await client.close();
    expect(server.resources()).toEqual([]);
    expect(server.clients.size).toBe(0);
  });

  it('1011 after applying without OK (keepalive timeout): the message is re-sent and the read-back is identical to a run without faults', async () => {
    const workload = async (fault: boolean): Promise<string> => {
      const t = new AimTracker({ run_name: 'same', logging_dir: server.uri, retry_deadline_secs: 20 });
      await t.start();
      await t.storeInitConfiguration({ lr: 0.5 });
      for (let s = 0; s < 200; s++) {
        t.log({ loss: 1 / (s + 1), acc: s / 200 }, s);
        if (s % 50 === 25) {
          if (fault) server.injectWsFault({ kind: 'apply-then-1011', times: 2 });
          await new Promise((r) => setTimeout(r, 30));
        }
      }
      t.log({ loss: 5 }, 10); // an older step: last/max must stay as in the clean run
      await t.finish();
      return t.tracker.hash;
    };
    const clean = await workload(false);
    const faulty = await workload(true);
    expect(server.messages.filter((m) => m.fault === 'apply-then-1011')).toHaveLength(8);
    // the same data, but for the run hash and the times
    const normal = (hash: string) =>
      ['meta', 'seqs'].flatMap((tree) =>
        server.entries(tree, hash).map((e) => {
          const p = e.path.map((x) => (x === hash ? 'H' : String(x)));
          return [p.join('/'), p.includes('time') || p.at(-1) === 'end_time' ? typeof e.value : e.value];
        }),
      );
    expect(normal(faulty)).toEqual(normal(clean));
    expect(Object.keys(series('seqs', faulty, ['seqs', 'v2', 'chunks', faulty, BigInt(CTX0), 'loss'])).filter((k) => k.startsWith('val/'))).toHaveLength(200);
  });

  it('past the retry deadline writes go to the spool; trackspec sync completes the run on the server', async () => {
    const t = new AimTracker({ run_name: 'spooled', logging_dir: server.uri, retry_deadline_secs: 0.3 });
    await t.start();
    const hash = t.tracker.hash;
    for (let s = 0; s < 100; s++) t.log({ loss: 1 / (s + 1), acc: s / 200 }, s);
    await t.flush();
    const back = server.restart({ downMs: 1500 }); // longer than the deadline; keeps what it stored
    for (let s = 100; s < 200; s++) t.log({ loss: 1 / (s + 1), acc: s / 200 }, s);
    await expect(t.flush()).rejects.toThrow(/unreachable; \d+ write message\(s\) of run [0-9a-f]{24} are safe in .*trackspec sync/);
    await expect(t.finish()).rejects.toThrow(BackendError);
    expect(t.tracker.online).toBe(false);
    expect(warnings.join('\n')).toMatch(/continues in the spool/);
    const spools = await listSpools(spoolDir, 'aim');
    expect(spools).toHaveLength(1);
    await back;
    const lines: string[] = [];
    const summary = await syncAll(spoolDir, { out: (l) => lines.push(l) });
    expect(summary.failed).toEqual([]);
    expect(summary.sent).toBe(spools[0]!.pending);
    expectComplete(hash);
    expect(server.runs.get(hash)!.name).toBe('spooled');
    expect(lines[0]).toContain(`Aim run ${hash}`);
  });

  it('write messages stay within maxMessageBytes (16 KiB); an instruction larger than that goes alone; applied in order', async () => {
    expect(aimTuning.maxMessageBytes).toBe(16 << 10);
    const t = await run((s, tr) => {
      // noise does not compress: a PNG of ~30 KB, one instruction
      let x = s + 1;
      const data = Uint8Array.from({ length: 100 * 100 * 3 }, () => {
        x ^= x << 13;
        x ^= x >>> 17;
        x ^= x << 5;
        return x & 255;
      });
      tr.logImages({ big: { data, width: 100, height: 100, channels: 3 } }, s);
    });
    await t.finish();
    expectComplete(t.tracker.hash);
    const over = server.messages.filter((m) => m.bytes > aimTuning.maxMessageBytes);
    // per image: its value, and the trace's `last` (and `first` for the first): each alone
    expect(over.length).toBe(4 * 2 + 1);
    for (const m of over) expect(m.instructions).toHaveLength(1);
    const within = server.messages.filter((m) => m.bytes <= aimTuning.maxMessageBytes);
    expect(within.length).toBeGreaterThan(50); // ~400 points of ~4.4 KB in messages of at most 16 KiB
    const images = (server.tree('meta', t.tracker.hash) as any).meta.chunks[t.tracker.hash].traces[CTX0].big;
    expect(images).toMatchObject({ first_step: 25, last_step: 175 });
  });

  it('a busy server (applying a large message) is waited for while the socket is open: no reconnect, no re-send', async () => {
    await server.stop();
    server = await AimTestServer.start({ applyCostMsPerRecordByte: 7e-6 } satisfies AimTestServerOptions);
    // messages of 64 KiB that keep the server busy ~0.6 s each, longer than every HTTP timeout
    Object.assign(aimTuning, { maxMessageBytes: 64 << 10, timeoutMs: 300, slowAckMs: 100 });
    const t = new AimTracker({ run_name: 'busy', logging_dir: server.uri, retry_deadline_secs: 20 });
    await t.start();
    for (let s = 0; s < 30; s++) t.log({ loss: 1 / (s + 1), acc: s / 200 }, s);
    await t.flush();
    await t.finish();
    expect(Math.max(...server.messages.map((m) => m.busyMs))).toBeGreaterThan(300);
    expect(server.requests.filter((r) => r.path.includes('/client/reconnect/'))).toEqual([]);
    expect(server.requests.filter((r) => r.path.endsWith('/write-instruction/'))).toHaveLength(1);
    const loss = series('seqs', t.tracker.hash, ['seqs', 'v2', 'chunks', t.tracker.hash, BigInt(CTX0), 'loss']);
    expect(Object.keys(loss).filter((k) => k.startsWith('val/'))).toHaveLength(30);
    expect(warnings.filter((w) => /has not answered a \d+-byte write for 0\.1 s \(still applying it/.test(w))).toHaveLength(1);
  });

  it('a server error answer fails flush() with the server exception, nothing else lost', async () => {
    const t = new AimTracker({ logging_dir: server.uri });
    await t.start();
    server.injectWsFault({ kind: 'error' });
    t.log({ loss: 1 }, 0);
    await expect(t.flush()).rejects.toThrow(/the server raised RuntimeError/);
    t.log({ loss: 2 }, 1);
    await t.finish().catch(() => undefined);
  });
});

/** hash_auto(step) for steps beyond the Python vectors: checked against them in hash.test.ts. */
function hashKey(s: number): string {
  return hashAuto(s).toString();
}

describe('server unreachable', () => {
  it('at start: the run is created in the spool and trackspec sync creates it on the server', async () => {
    const port = server.port;
    await server.stop();
    const t = new AimTracker({ run_name: 'offline-run', logging_dir: `aim://127.0.0.1:${port}`, experiment: 'e', retry_deadline_secs: 0.2 });
    await t.start();
    const hash = t.tracker.hash;
    await t.storeInitConfiguration({ lr: 1 }).catch(() => undefined);
    for (let s = 0; s < 20; s++) t.log({ loss: s }, s);
    await expect(t.finish()).rejects.toThrow(/trackspec sync/);
    expect(warnings.join('\n')).toMatch(/is unreachable .*run [0-9a-f]{24} is written to the spool/);
    server = await AimTestServer.start({ port });
    const summary = await syncAll(spoolDir, { out: () => undefined });
    expect(summary.failed).toEqual([]);
    const chunk = (server.tree('meta', hash) as any).meta.chunks[hash];
    expect(chunk.attrs).toEqual({ hparams: { lr: 1 } });
    expect(chunk.traces[CTX0].loss).toMatchObject({ first_step: 0, last_step: 19, last: 19 });
    expect(chunk.end_time).toBeGreaterThan(0);
    expect(server.runs.get(hash)).toMatchObject({ name: 'offline-run', experiment: 'e' });
    expect(Object.keys(series('seqs', hash, ['seqs', 'v2', 'chunks', hash, BigInt(CTX0), 'loss'])).filter((k) => k.startsWith('val/'))).toHaveLength(20);
    // a second sync has nothing left to do
    expect((await syncAll(spoolDir, { out: () => undefined })).sent).toBe(0);
    expect(server.resources()).toEqual([]);
  });

  it('resume needs the server: a clear BackendError', async () => {
    const port = server.port;
    await server.stop();
    const t = new AimTracker({ logging_dir: `aim://127.0.0.1:${port}`, run_hash: 'abcdefabcdefabcdefabcdef', retry_deadline_secs: 0.1 });
    await expect(t.start()).rejects.toThrow(/cannot resume run abcdefabcdefabcdefabcdef: the Aim server at aim:\/\/127\.0\.0\.1:\d+ is unreachable/);
    server = await AimTestServer.start();
  });
});

describe('process death', () => {
  async function child(serverUp: boolean): Promise<{ hash: string; stderr: string }> {
    const dir = tempDir();
    const script = join(dir, 'child.mts');
    writeFileSync(
      script,
      `import { AimTracker } from ${JSON.stringify(join(ROOT, 'generated', 'index.gen.ts'))};
import { aimTuning } from ${JSON.stringify(join(ROOT, 'runtime', 'backends', 'aim', 'index.ts'))};
aimTuning.maxDelayMs = 60_000;
const t = new AimTracker({ run_name: 'dying', logging_dir: ${JSON.stringify(server.uri)} });
await t.start();
process.stdout.write(t.tracker.hash + '\\n');
for (let i = 0; i < 50; i++) t.log({ loss: i }, i);
setTimeout(() => process.kill(process.pid, 'SIGTERM'), 300); setInterval(() => {}, 1000);
`,
    );
    const proc = spawn(process.execPath, ['--import', 'tsx', script], { cwd: ROOT, env: { ...process.env, TRACKSPEC_SPOOL_DIR: spoolDir }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    proc.stdout.on('data', (d: Buffer) => {
      stdout += d.toString();
      if (!serverUp) server.injectWsFault({ kind: 'drop-before', times: Infinity });
    });
    proc.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const [, signal] = (await once(proc, 'close')) as [number | null, string | null];
    expect(signal).toBe('SIGTERM');
    const hash = stdout.trim().split('\n')[0]!;
    expect(hash, stderr).toMatch(/^[0-9a-f]{24}$/);
    return { hash, stderr };
  }

  it('SIGTERM: the pending values and the end time are sent at exit; the run is closed as finish() would', async () => {
    const { hash, stderr } = await child(true);
    expect(stderr).not.toMatch(/saved to/);
    const chunk = (server.tree('meta', hash) as any).meta.chunks[hash];
    expect(chunk.traces[CTX0].loss).toMatchObject({ last_step: 49 });
    expect(chunk.end_time).toBeGreaterThan(0);
    expect(server.runs.get(hash)).toMatchObject({ name: 'dying', heartbeat: 'stopped' });
    expect(server.locks.has(hash)).toBe(false);
    expect(server.resources()).toEqual([]);
    expect(server.clients.size).toBe(0);
    expect(await listSpools(spoolDir, 'aim')).toEqual([]);
  }, 30_000);

  it('SIGTERM with the server not answering: the writes and the end time go to the spool; sync completes the run', async () => {
    const { hash, stderr } = await child(false);
    expect(stderr).toMatch(/not yet acknowledged .* were saved to/);
    server.clearWsFaults();
    const summary = await syncAll(spoolDir, { out: () => undefined });
    expect(summary.failed).toEqual([]);
    const chunk = (server.tree('meta', hash) as any).meta.chunks[hash];
    expect(chunk.traces[CTX0].loss).toMatchObject({ last_step: 49 });
    expect(chunk.end_time).toBeGreaterThan(0);
  }, 30_000);
});

// MLflow artifacts, figures, images and tables: proxied uploads to the local MLflow test server
// (bytes read back from its artifact store and through its list/get endpoints), the local file
// store, bad input, files that change while they are sent, the spool and `trackspec sync`.
import { appendFileSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { BackendError, ConfigError, MLflowTracker, setWarningHandler, ValidationError } from '../../../generated/index.gen.js';
import { syncSpools } from '../../../runtime/backends/mlflow/sync.js';
import { pyJsonDumps } from '../../../runtime/backends/mlflow/index.js';
import { decodePngRgba } from '../../../runtime/io/image.js';
import { tempDir } from '../../support/helpers.js';
import { MlflowTestServer } from './server.js';

const ENV = ['MLFLOW_TRACKING_URI', 'MLFLOW_EXPERIMENT_NAME', 'MLFLOW_RUN_ID', 'MLFLOW_TAGS', 'MLFLOW_NESTED_RUN', 'MLFLOW_TRACKING_TOKEN',
  'MLFLOW_TRACKING_USERNAME', 'MLFLOW_TRACKING_PASSWORD', 'MLFLOW_TRACKING_INSECURE_TLS', 'RANK', 'LOCAL_RANK'];
let server: MlflowTestServer;
let spoolDir: string;
let work: string;
let warnings: string[];
beforeEach(async () => {
  for (const v of ENV) vi.stubEnv(v, undefined);
  spoolDir = tempDir('spool-');
  work = tempDir('art-src-');
  vi.stubEnv('TRACKSPEC_SPOOL_DIR', spoolDir);
  warnings = [];
  setWarningHandler((m) => warnings.push(m));
  server = await MlflowTestServer.start();
});
afterEach(async () => {
  vi.unstubAllEnvs();
  setWarningHandler(undefined);
  await server.close();
});

const rgb = (w: number, h: number, seed = 1) => {
  const data = new Uint8Array(w * h * 3);
  for (let i = 0; i < data.length; i++) data[i] = (i * 7 + seed * 13) & 255;
  return { data, width: w, height: h, channels: 3 };
};

/** The run's artifact root on the test server (mlflow-artifacts:/<exp>/<run>/artifacts → a folder). */
function serverRoot(t: MLflowTracker): string {
  const uri = t.tracker.artifactUri;
  expect(uri).toMatch(/^mlflow-artifacts:\/\d+\/[0-9a-f]{32}\/artifacts$/);
  return server.artifactFile(uri.replace('mlflow-artifacts:/', ''));
}

async function get(path: string): Promise<{ status: number; text: string; bytes: Buffer }> {
  const res = await fetch(`${server.url}${path}`);
  const bytes = Buffer.from(await res.arrayBuffer());
  return { status: res.status, text: bytes.toString('utf8'), bytes };
}

describe('tracking server (proxied artifacts)', () => {
  it('logArtifact / logArtifacts / logFigure: PUT to mlflow-artifacts, listed and downloaded byte for byte', async () => {
    writeFileSync(join(work, 'config.yaml'), 'lr: 0.1\n');
    const bin = Buffer.alloc(300_000);
    for (let i = 0; i < bin.length; i++) bin[i] = (i * 31) & 255;
    writeFileSync(join(work, 'weights.bin'), bin);
    const dir = join(work, 'outputs');
    mkdirSync(join(dir, 'sub', 'deeper'), { recursive: true });
    writeFileSync(join(dir, 'a.txt'), 'A');
    writeFileSync(join(dir, 'sub', 'b.txt'), 'B');
    writeFileSync(join(dir, 'sub', 'deeper', 'c.txt'), '');
    const t = new MLflowTracker({ tracking_uri: server.url, experiment_name: 'art' });
    await t.start();
    t.logArtifact(join(work, 'config.yaml'));
    t.logArtifact(join(work, 'weights.bin'), 'checkpoints/epoch-1');
    t.logArtifacts(dir, 'outputs');
    t.logArtifacts(dir);
    t.logFigure(rgb(8, 5), 'plots/fig.png');
    await t.flush();
    const runId = t.tracker.runId;
    const root = serverRoot(t);
    expect(readFileSync(join(root, 'config.yaml'), 'utf8')).toBe('lr: 0.1\n');
    expect(readFileSync(join(root, 'checkpoints', 'epoch-1', 'weights.bin')).equals(bin)).toBe(true);
    for (const base of ['outputs/', '']) {
      expect(readFileSync(join(root, `${base}a.txt`), 'utf8')).toBe('A');
      expect(readFileSync(join(root, `${base}sub/b.txt`), 'utf8')).toBe('B');
      expect(readFileSync(join(root, `${base}sub/deeper/c.txt`), 'utf8')).toBe('');
    }
    const fig = decodePngRgba(readFileSync(join(root, 'plots', 'fig.png')));
    expect([fig.width, fig.height]).toEqual([8, 5]);
    expect([...fig.data.slice(0, 4)]).toEqual([13, 20, 27, 255]);
    // The uploads were PUTs to the proxied artifact API, with the run's path.
    const puts = server.requests.filter((r) => r.method === 'PUT');
    expect(puts.every((r) => r.path.startsWith(`/api/2.0/mlflow-artifacts/artifacts/${t.tracker.experimentId}/${runId}/artifacts/`))).toBe(true);
    expect(puts.every((r) => r.status === 200)).toBe(true);
    // Listed through the tracking API as MlflowClient.list_artifacts reads it, and downloadable.
    const list = JSON.parse((await get(`/api/2.0/mlflow/artifacts/list?run_id=${runId}`)).text);
    expect(list.root_uri).toBe(t.tracker.artifactUri);
    expect(list.files.map((f: { path: string }) => f.path)).toEqual(['a.txt', 'checkpoints', 'config.yaml', 'outputs', 'plots', 'sub']);
    expect(list.files.find((f: { path: string }) => f.path === 'config.yaml')).toEqual({ path: 'config.yaml', is_dir: false, file_size: 8 });
    const sub = JSON.parse((await get(`/api/2.0/mlflow/artifacts/list?run_id=${runId}&path=checkpoints/epoch-1`)).text);
    expect(sub.files).toEqual([{ path: 'checkpoints/epoch-1/weights.bin', is_dir: false, file_size: 300_000 }]);
    expect((await get(`/get-artifact?run_id=${runId}&path=checkpoints/epoch-1/weights.bin`)).bytes.equals(bin)).toBe(true);
    await t.finish();
    expect(server.run(runId)!.info.status).toBe('FINISHED');
  });

  it('log*() returns before the upload; flush() waits for it', async () => {
    writeFileSync(join(work, 'f.txt'), 'x');
    server.inject({ kind: 'delay', path: '/mlflow-artifacts/', ms: 300 });
    const t = new MLflowTracker({ tracking_uri: server.url });
    await t.start();
    t.logArtifact(join(work, 'f.txt'));
    expect(existsSync(join(serverRoot(t), 'f.txt'))).toBe(false);
    await t.flush();
    expect(readFileSync(join(serverRoot(t), 'f.txt'), 'utf8')).toBe('x');
    await t.finish();
  });

  it('logImages: images/<key>%step%<s>%timestamp%<ms>%<uuid>.png + %compressed.webp, tag mlflow.loggedImages', async () => {
    const t = new MLflowTracker({ tracking_uri: server.url });
    await t.start();
    t.logImages({ sample: rgb(600, 300), 'a.b c': [rgb(4, 4, 2), rgb(4, 4, 3)] }, 7, { timestamp: 1700000000123 });
    await t.flush();
    const files = readdirSync(join(serverRoot(t), 'images')).sort();
    expect(files).toHaveLength(6);
    const re = /^(sample|a\.b c)%step%7%timestamp%1700000000123%[0-9a-f-]{36}(\.png|%compressed\.webp)$/;
    expect(files.every((f) => re.test(f))).toBe(true);
    const png = files.find((f) => f.startsWith('sample') && f.endsWith('.png'))!;
    const img = decodePngRgba(readFileSync(join(serverRoot(t), 'images', png)));
    expect([img.width, img.height]).toEqual([600, 300]);
    const webp = readFileSync(join(serverRoot(t), 'images', png.replace(/\.png$/, '%compressed.webp')));
    expect(webp.subarray(0, 4).toString()).toBe('RIFF');
    expect(webp.subarray(8, 16).toString()).toBe('WEBPVP8L');
    // 600x300 → 256x128, as compress_image_size: 14 bits each of width-1 and height-1 after the 0x2f signature.
    const bits = webp.readUInt32LE(21);
    expect([(bits & 0x3fff) + 1, ((bits >>> 14) & 0x3fff) + 1]).toEqual([256, 128]);
    expect(server.run(t.tracker.runId)!.tags['mlflow.loggedImages']).toBe('True');
    expect(() => t.logImages({ 'bad*key': rgb(1, 1) })).toThrow(ValidationError);
    expect(() => t.logImages({ 'a/b': rgb(1, 1) })).toThrow(/'#', which a tracking server refuses/);
    expect(() => t.logImages({ k: { data: new Uint8Array(2), width: 1, height: 1, channels: 3 } })).toThrow(ValidationError);
    await t.finish();
  });

  it('logTable: JSON with columns and data, appended on a second call, tag mlflow.loggedArtifacts', async () => {
    const t = new MLflowTracker({ tracking_uri: server.url });
    await t.start();
    t.logTable('eval/results', { columns: ['input', 'score'], data: [['a', 0.5], ['b', NaN]] });
    t.logTable('eval/results', { columns: ['score', 'extra'], data: [[1, true]] });
    t.logTable('other.json', { columns: ['x'], data: [[1]] });
    await t.flush();
    const root = serverRoot(t);
    expect(JSON.parse(readFileSync(join(root, 'eval', 'results.json'), 'utf8'))).toEqual({
      columns: ['input', 'score', 'extra'],
      data: [['a', 0.5, null], ['b', null, null], [null, 1, true]],
    });
    expect(JSON.parse(readFileSync(join(root, 'other.json'), 'utf8'))).toEqual({ columns: ['x'], data: [[1]] });
    expect(server.run(t.tracker.runId)!.tags['mlflow.loggedArtifacts']).toBe('[{"path": "eval/results.json", "type": "table"}, {"path": "other.json", "type": "table"}]');
    expect(() => t.logTable('a:b', { columns: ['x'], data: [] })).toThrow(/contains ":"/);
    expect(() => t.logTable('t', { columns: ['x'], data: [[1, 2]] })).toThrow(/row 0 has 2 cells for 1 columns/);
    expect(() => t.logTable('t', { data: [[1]] })).toThrow(ValidationError);
    await t.finish();
  });

  it('bad input is a ValidationError at the call, naming the path', async () => {
    writeFileSync(join(work, 'f.txt'), 'x');
    const t = new MLflowTracker({ tracking_uri: server.url });
    await t.start();
    expect(() => t.logArtifact(join(work, 'missing.txt'))).toThrow(ValidationError);
    expect(() => t.logArtifact(join(work, 'missing.txt'))).toThrow(/missing\.txt does not exist/);
    expect(() => t.logArtifact(work)).toThrow(/is a directory; use logArtifacts\(\)/);
    expect(() => t.logArtifacts(join(work, 'f.txt'))).toThrow(/is not a directory/);
    expect(() => t.logArtifacts(join(work, 'nope'))).toThrow(/nope does not exist/);
    expect(() => t.logArtifact(join(work, 'f.txt'), '../up')).toThrow(/artifactPath "\.\.\/up" contains a '\.\.' segment/);
    expect(() => t.logArtifact(join(work, 'f.txt'), 'a/../../b')).toThrow(ValidationError);
    expect(() => t.logArtifact(join(work, 'f.txt'), '/abs')).toThrow(/is an absolute path/);
    expect(() => t.logFigure(rgb(2, 2), '../fig.png')).toThrow(ValidationError);
    expect(() => t.logFigure(rgb(2, 2), '')).toThrow(ValidationError);
    expect(() => t.logFigure(new Uint8Array([1, 2, 3]), 'f.png')).toThrow(/not a PNG/);
    await t.finish();
    expect(server.requests.filter((r) => r.method === 'PUT')).toHaveLength(0);
  });

  it('retried like metrics: 503s and a dropped connection, then stored once', async () => {
    writeFileSync(join(work, 'f.bin'), Buffer.alloc(70_000, 7));
    server.inject({ kind: 'status', status: 503, path: '/mlflow-artifacts/', times: 2 });
    server.inject({ kind: 'refuse', path: '/mlflow-artifacts/' });
    const t = new MLflowTracker({ tracking_uri: server.url });
    await t.start();
    t.logArtifact(join(work, 'f.bin'));
    await t.flush();
    expect(readFileSync(join(serverRoot(t), 'f.bin')).equals(Buffer.alloc(70_000, 7))).toBe(true);
    expect(server.requests.filter((r) => r.method === 'PUT').length).toBe(4);
    await t.finish();
  });

  it('a 4xx fails fast: flush() rejects with a BackendError naming the file', async () => {
    writeFileSync(join(work, 'f.txt'), 'x');
    server.inject({ kind: 'status', status: 403, path: '/mlflow-artifacts/' });
    const t = new MLflowTracker({ tracking_uri: server.url });
    await t.start();
    t.logArtifact(join(work, 'f.txt'), 'dir');
    const err = await t.flush().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BackendError);
    expect((err as Error).message).toContain(`${join(work, 'f.txt')} (→ dir/f.txt)`);
    expect((err as Error).message).toMatch(/403/);
    await t.flush(); // reported once
    await t.finish();
  });

  it('a file deleted before its upload: flush() names it', async () => {
    writeFileSync(join(work, 'gone.txt'), 'x');
    server.inject({ kind: 'delay', path: '/mlflow-artifacts/', ms: 50 });
    const t = new MLflowTracker({ tracking_uri: server.url });
    await t.start();
    t.logArtifact(join(work, 'f0.txt'.replace('f0', 'gone')));
    rmSync(join(work, 'gone.txt'));
    await expect(t.flush()).rejects.toThrow(/gone\.txt.*deleted before the upload/);
    await t.finish();
  });

  it('a file that changes while it is uploaded is sent again once; a second change fails loudly', async () => {
    const f = join(work, 'growing.log');
    writeFileSync(f, 'line 1\n');
    let changes = 1;
    server.onArtifactPut = () => {
      if (changes-- > 0) appendFileSync(f, 'line 2\n');
    };
    const t = new MLflowTracker({ tracking_uri: server.url });
    await t.start();
    t.logArtifact(f);
    await t.flush();
    expect(readFileSync(join(serverRoot(t), 'growing.log'), 'utf8')).toBe('line 1\nline 2\n');
    expect(server.requests.filter((r) => r.method === 'PUT')).toHaveLength(2);

    changes = 2;
    t.logArtifact(f, 'again');
    const err = await t.flush().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BackendError);
    expect((err as Error).message).toMatch(/growing\.log changed while it was uploaded as artifact again\/growing\.log, twice/);
    expect(server.requests.filter((r) => r.method === 'PUT')).toHaveLength(4);
    await t.finish();
  });

  it('unreachable past the deadline: copied into the spool (survives deleting the source); sync uploads it exactly once', async () => {
    const f = join(work, 'model.bin');
    const bytes = Buffer.alloc(200_000);
    for (let i = 0; i < bytes.length; i++) bytes[i] = (i * 17) & 255;
    writeFileSync(f, bytes);
    const t = new MLflowTracker({ tracking_uri: server.url, retry_deadline_secs: 0.3, write_ahead: false });
    await t.start();
    const runId = t.tracker.runId;
    const root = serverRoot(t);
    server.inject({ kind: 'status', status: 503, times: Infinity });
    t.logArtifact(f, 'ckpt');
    t.logTable('tbl', { columns: ['a'], data: [[1]] });
    const err = await t.flush().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BackendError);
    expect((err as Error).message).toContain(`${f} (→ ckpt/model.bin): server unreachable, kept in the spool`);
    expect((err as Error).message).toContain(`trackspec sync ${spoolDir}`);
    rmSync(f); // the spool holds a copy
    await t.finish().catch(() => undefined);
    const copies = readdirSync(join(spoolDir, 'mlflow', 'artifacts'));
    expect(copies.length).toBe(2);
    server.clearFaults();
    const lines: string[] = [];
    const summary = await syncSpools(spoolDir, { out: (l) => lines.push(l) });
    expect(summary.failed).toEqual([]);
    expect(readFileSync(join(root, 'ckpt', 'model.bin')).equals(bytes)).toBe(true);
    expect(JSON.parse(readFileSync(join(root, 'tbl.json'), 'utf8'))).toEqual({ columns: ['a'], data: [[1]] });
    expect(server.run(runId)!.tags['mlflow.loggedArtifacts']).toBe('[{"path": "tbl.json", "type": "table"}]');
    expect(server.run(runId)!.info.status).toBe('FINISHED');
    const puts = server.requests.filter((r) => r.method === 'PUT' && r.status === 200);
    expect(puts.map((r) => r.path.split('/artifacts/').pop()).sort()).toEqual(['ckpt/model.bin', 'tbl.json']);
    expect(readdirSync(join(spoolDir, 'mlflow', 'artifacts'))).toEqual([]); // copies removed once uploaded
    // A second sync has nothing left to do.
    const again = await syncSpools(spoolDir, { out: () => undefined });
    expect(again.sent).toBe(0);
    expect(server.requests.filter((r) => r.method === 'PUT' && r.status === 200)).toHaveLength(2);
  });

  it('sync refuses a spooled copy whose bytes changed (sha256), naming it', async () => {
    const f = join(work, 'a.bin');
    writeFileSync(f, 'original');
    const t = new MLflowTracker({ tracking_uri: server.url, retry_deadline_secs: 0.2, write_ahead: false });
    await t.start();
    server.inject({ kind: 'status', status: 503, path: '/mlflow-artifacts/', times: Infinity });
    t.logArtifact(f);
    await t.finish().catch(() => undefined);
    const [copy] = readdirSync(join(spoolDir, 'mlflow', 'artifacts'));
    writeFileSync(join(spoolDir, 'mlflow', 'artifacts', copy!), 'tampered');
    server.clearFaults();
    const summary = await syncSpools(spoolDir, { out: () => undefined });
    expect(summary.failed).toHaveLength(1);
    expect(summary.failed[0]!.error).toMatch(/is damaged: 8 bytes, sha256 [0-9a-f]{64}, expected 8 bytes/);
    expect(summary.failed[0]!.error).toContain(f);
  });

  it('an artifact root the client would write itself (s3://) is a ConfigError naming the scheme', async () => {
    writeFileSync(join(work, 'f.txt'), 'x');
    const t = new MLflowTracker({ tracking_uri: server.url, experiment_name: 's3exp', logging_dir: 's3://bucket/prefix' });
    await t.start();
    expect(t.tracker.artifactUri).toMatch(/^s3:\/\/bucket\/prefix\//);
    expect(() => t.logArtifact(join(work, 'f.txt'))).toThrow(ConfigError);
    expect(() => t.logArtifact(join(work, 'f.txt'))).toThrow(/uses 's3:'.*What works: a tracking server that proxies artifacts/);
    t.log({ loss: 1 }, 0); // metrics still work
    await t.finish();
  });

  it('an experiment with a local artifact location: the server-side directory is written directly', async () => {
    const loc = tempDir('art-loc-');
    writeFileSync(join(work, 'f.txt'), 'local');
    const t = new MLflowTracker({ tracking_uri: server.url, experiment_name: 'localloc', logging_dir: loc });
    await t.start();
    t.logArtifact(join(work, 'f.txt'), 'd');
    await t.finish();
    expect(readFileSync(join(loc, t.tracker.runId, 'artifacts', 'd', 'f.txt'), 'utf8')).toBe('local');
    const list = JSON.parse((await get(`/api/2.0/mlflow/artifacts/list?run_id=${t.tracker.runId}&path=d`)).text);
    expect(list.files).toEqual([{ path: 'd/f.txt', is_dir: false, file_size: 5 }]);
  });
});

describe('local file store', () => {
  it('copied into <run>/artifacts/…; figures, images, tables and their tags', async () => {
    const store = tempDir('mlruns-');
    writeFileSync(join(work, 'notes.md'), '# hi\n');
    mkdirSync(join(work, 'd', 'e'), { recursive: true });
    writeFileSync(join(work, 'd', 'e', 'x.txt'), 'X');
    const t = new MLflowTracker({ tracking_uri: store, experiment_name: 'fs' });
    await t.start();
    t.logArtifact(join(work, 'notes.md'));
    t.logArtifacts(join(work, 'd'), 'tree');
    t.logFigure(rgb(3, 2), 'figs/a.png');
    t.logImages({ 'x/y': rgb(2, 2) }, 3);
    t.logTable('t', { columns: ['c'], data: [['v']] });
    await t.finish();
    const run = join(store, t.tracker.experimentId, t.tracker.runId);
    expect(t.tracker.artifactUri).toBe(`file://${join(run, 'artifacts')}`);
    expect(readFileSync(join(run, 'artifacts', 'notes.md'), 'utf8')).toBe('# hi\n');
    expect(readFileSync(join(run, 'artifacts', 'tree', 'e', 'x.txt'), 'utf8')).toBe('X');
    expect(decodePngRgba(readFileSync(join(run, 'artifacts', 'figs', 'a.png'))).width).toBe(3);
    const images = readdirSync(join(run, 'artifacts', 'images'));
    expect(images.filter((f) => /^x#y%step%3%timestamp%\d+%[0-9a-f-]{36}(\.png|%compressed\.webp)$/.test(f))).toHaveLength(2);
    expect(JSON.parse(readFileSync(join(run, 'artifacts', 't.json'), 'utf8'))).toEqual({ columns: ['c'], data: [['v']] });
    expect(readFileSync(join(run, 'tags', 'mlflow.loggedImages'), 'utf8')).toBe('True');
    expect(readFileSync(join(run, 'tags', 'mlflow.loggedArtifacts'), 'utf8')).toBe('[{"path": "t.json", "type": "table"}]');
    // No temporary files left behind.
    const all = readdirSync(join(run, 'artifacts'), { recursive: true }) as string[];
    expect(all.filter((p) => p.endsWith('.tmp'))).toEqual([]);
  });

  it('a file store artifact copy that fails names the file (flush rejects)', async () => {
    const store = tempDir('mlruns-');
    writeFileSync(join(work, 'f.txt'), 'x');
    const t = new MLflowTracker({ tracking_uri: store });
    await t.start();
    const artifacts = join(store, t.tracker.experimentId, t.tracker.runId, 'artifacts');
    writeFileSync(join(artifacts, 'blocker'), 'a file where a folder is needed');
    t.logArtifact(join(work, 'f.txt'), 'blocker');
    await expect(t.flush()).rejects.toThrow(new RegExp(`${join(work, 'f.txt')} \\(→ blocker/f\\.txt\\)`));
    await t.finish();
  });
});

describe('helpers', () => {
  it("pyJsonDumps prints as Python's json.dumps", () => {
    expect(pyJsonDumps([{ path: 'é.json', type: 'table' }])).toBe('[{"path": "\\u00e9.json", "type": "table"}]');
    expect(pyJsonDumps({ a: [1, 2.5, null, true] })).toBe('{"a": [1, 2.5, null, true]}');
  });

  it('rank ≠ 0: artifact methods are no-ops', async () => {
    vi.stubEnv('RANK', '1');
    const t = new MLflowTracker({ tracking_uri: server.url });
    await t.start();
    t.logArtifact('/does/not/exist');
    t.logFigure(new Uint8Array(1), '../x');
    await t.finish();
    expect(server.requests).toHaveLength(0);
  });
});

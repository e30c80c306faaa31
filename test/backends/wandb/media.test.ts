// W&B media: logImages / logTable offline (.wandb FilesRecord + files/ + history values as the
// Python SDK writes them), online (CreateRunFiles → PUT with upload headers → file_stream `uploaded`,
// retries, expired URLs, byte budget, spool at finish), trackspec sync, table cell rules.
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ValidationError, WandBTracker } from '../../../generated/index.gen.js';
import { findOfflineRuns, parseValueJson, readWandbFile } from '../../../runtime/backends/wandb/offline.js';
import { UPLOAD_LIMITS } from '../../../runtime/backends/wandb/upload.js';
import { ENCODE_POOL, encodeInWorker } from '../../../runtime/backends/wandb/encode-pool.js';
import { copyImage } from '../../../runtime/backends/wandb/media.js';
import type { ImageData } from '../../../runtime/core/driver.js';
import { toValueJson } from '../../../runtime/backends/wandb/offline.js';
import { encodePng } from '../../../runtime/io/image.js';
import { decodePngRgba } from '../../../runtime/io/image.js';
import { syncAll } from '../../../runtime/backends/sync.js';
import { WandbTestServer, parseWandbJson } from './server.js';
import { runDyingChild, wandbTestSetup, wandbTestTeardown } from './setup.js';

let server: WandbTestServer;
let dir: string;
let warnings: string[];
const limits = { ...UPLOAD_LIMITS };
beforeEach(async () => {
  ({ server, dir, warnings } = await wandbTestSetup('wandb-media-'));
});
afterEach(async () => {
  Object.assign(UPLOAD_LIMITS, limits);
  await wandbTestTeardown(server);
});

function image(w: number, h: number, channels: number, seed = 1) {
  const data = new Uint8Array(w * h * channels);
  for (let i = 0; i < data.length; i++) data[i] = (i * 7 + seed * 13) & 0xff;
  return { data, width: w, height: h, channels };
}
const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

/** The offline run's history rows, FilesRecord paths and files dir. */
async function readOffline(root: string) {
  const [file] = await findOfflineRuns(root);
  const { records, damaged } = await readWandbFile(file!);
  expect(damaged).toEqual([]);
  return {
    file: file!,
    filesDir: join(dirname(file!), 'files'),
    history: records.filter((r) => r.kind === 'history').map((r) => r.items!),
    files: records.filter((r) => r.kind === 'files').flatMap((r) => r.files!),
    kinds: records.map((r) => r.kind),
  };
}

/** Every image's result from the encoding worker, in order. */
function encodeAll(imgs: readonly ImageData[]) {
  return new Promise<({ png: Buffer; sha256: string } | undefined)[]>((resolve) => {
    const out: ({ png: Buffer; sha256: string } | undefined)[] = [];
    let left = imgs.length;
    encodeInWorker(imgs, [], (i, r) => {
      out[i] = r;
      if (--left === 0) resolve(out);
    });
  });
}

describe('encoding', () => {
  it('the worker thread gives the same PNG bytes and sha256 as the shared encoder; without it the run encodes in-thread', async () => {
    const imgs = [image(5, 3, 1), image(4, 4, 2), image(7, 2, 3), image(3, 3, 4)];
    const got = await encodeAll(imgs);
    imgs.forEach((img, i) => {
      expect(got[i]!.png.equals(encodePng(img))).toBe(true);
      expect(got[i]!.sha256).toBe(sha(encodePng(img)));
    });
    // Copies in the shared slabs are read by the worker in place, mixed with private pixels in one batch.
    const copies = imgs.map((img) => copyImage(img, 'k'));
    expect(copies.every((c) => c.data.buffer instanceof SharedArrayBuffer)).toBe(true);
    const mixed = [copies[0]!, imgs[1]!, copies[2]!, copies[3]!];
    const got2 = await encodeAll(mixed);
    imgs.forEach((img, i) => expect(got2[i]!.png.equals(encodePng(img))).toBe(true));
    // With a target the worker writes the PNG itself (<dir>/<name><sha256[:20]>.png) and says so.
    const target = { dir: join(dir, 'files'), name: 'media/images/k_3_' };
    const got3 = await new Promise<{ png: Buffer; sha256: string; onDisk?: string } | undefined>((resolve) => encodeInWorker([copies[2]!], [target], (_i, r) => resolve(r)));
    expect(got3!.onDisk).toBe(target.dir);
    expect(readFileSync(join(target.dir, `media/images/k_3_${got3!.sha256.slice(0, 20)}.png`)).equals(encodePng(imgs[2]!))).toBe(true);
    // A target it cannot write (a file where the directory should be): not written, the caller writes it.
    writeFileSync(join(dir, 'blocker'), 'x');
    const got4 = await new Promise<{ onDisk?: string } | undefined>((resolve) => encodeInWorker([copies[2]!], [{ dir: join(dir, 'blocker'), name: 'media/images/k_3_' }], (_i, r) => resolve(r)));
    expect(got4).toBeDefined();
    expect(got4!.onDisk).toBeUndefined();
    ENCODE_POOL.enabled = false;
    try {
      const t = new WandBTracker({ run_name: 'proj', mode: 'offline', dir });
      await t.start();
      t.logImages({ a: imgs[2]! });
      await t.finish();
      const { history } = await readOffline(dir);
      expect((history[0]!.a as { sha256: string }).sha256).toBe(got[2]!.sha256);
    } finally {
      ENCODE_POOL.enabled = true;
    }
  });
});

describe('encoding worker priority', () => {
  it.runIf(process.platform === 'linux')('the encoding worker thread runs at nice 19; the other threads keep their priority', async () => {
    await new Promise<void>((resolve) => encodeInWorker([image(2, 2, 3)], [], () => resolve()));
    const { readdirSync } = await import('node:fs');
    const nice = (tid: string) => Number(readFileSync(`/proc/self/task/${tid}/stat`, 'utf8').split(') ')[1]!.split(' ')[16]);
    const all = readdirSync('/proc/self/task').map(nice);
    expect(all).toContain(19);
    expect(all.filter((n) => n !== 19).length).toBeGreaterThan(0); // only that thread was lowered
  });
});

describe('checks', () => {
  it('logImages: an invalid image is a ValidationError at its pointer, and nothing of the call is logged', async () => {
    const t = new WandBTracker({ run_name: 'proj', mode: 'offline', dir });
    await t.start();
    const bad = { data: new Uint8Array(5), width: 2, height: 2, channels: 3 };
    let err: unknown;
    try {
      t.logImages({ ok: image(2, 2, 3), list: [image(2, 2, 3), bad] });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ValidationError);
    expect((err as ValidationError).message).toBe('invalid image at /list/1: data has 5 bytes, expected height*width*channels = 12');
    expect(() => t.logImages({ one: { ...bad, channels: 5 } })).toThrow('invalid image at /one: channels must be 1, 2, 3 or 4');
    expect(() => t.logTable('tab', { columns: ['a', 'img'], data: [[1, image(1, 1, 1)], [2, bad]] })).toThrow('invalid image at /data/1/1');
    t.log({ after: 1 });
    await t.finish();
    const { history, files } = await readOffline(dir);
    expect(history.map((h) => Object.keys(h).filter((k) => !k.startsWith('_')))).toEqual([['after']]);
    expect(files).toEqual([]);
  });

  it('history values: native JSON for plain values, bare NaN/Infinity and bigints as W&B writes them', () => {
    expect(toValueJson({ a: [1, 'x', null, { b: true }] })).toBe('{"a":[1,"x",null,{"b":true}]}');
    expect(toValueJson({ a: [1, NaN, { b: -Infinity }], c: 10n })).toBe('{"a":[1,NaN,{"b":-Infinity}],"c":10}');
    expect(toValueJson(Infinity)).toBe('Infinity');
    expect(toValueJson(undefined)).toBe('null');
    expect(toValueJson({ toJSON: () => ({ v: NaN }) })).toBe('{"v":NaN}');
  });
});

describe('offline media', () => {
  it('logImages: image-file / images/separated values, PNGs under files/media/images, FilesRecord entries; one log per key', async () => {
    const t = new WandBTracker({ run_name: 'proj', mode: 'offline', dir });
    await t.start();
    const a = image(4, 3, 3, 1);
    t.logImages({ single: a }, undefined, { caption: 'first' });
    a.data.fill(0); // the caller reuses its buffer: what was logged must not change
    t.logImages({ list: [image(2, 2, 1, 2), image(3, 2, 4, 3)], other: image(1, 1, 2) }); // two keys, no step: two steps
    t.logImages({ at: image(2, 2, 3), at2: image(2, 2, 3, 9) }, 10); // explicit step: one row
    await t.finish();
    const { history, files, filesDir } = await readOffline(dir);
    expect(history.map((h) => h._step)).toEqual([0, 1, 2, 10]);
    const single = history[0]!.single as Record<string, unknown>;
    expect(Object.keys(single)).toEqual(['caption', '_type', 'sha256', 'size', 'path', 'format', 'width', 'height']);
    expect(single).toMatchObject({ caption: 'first', _type: 'image-file', format: 'png', width: 4, height: 3 });
    expect(single.path).toBe(`media/images/single_0_${(single.sha256 as string).slice(0, 20)}.png`);
    const png = readFileSync(join(filesDir, single.path as string));
    expect(sha(png)).toBe(single.sha256);
    expect(png.length).toBe(single.size);
    expect(Buffer.from(decodePngRgba(png).data.subarray(0, 4))).toEqual(Buffer.from([13, 20, 27, 255])); // original pixels
    const list = history[1]!.list as Record<string, unknown>;
    expect(list).toMatchObject({ _type: 'images/separated', width: 2, height: 2, format: 'png', count: 2 });
    expect(list).not.toHaveProperty('captions');
    expect((list.filenames as string[]).every((p) => p.startsWith('media/images/list_1_'))).toBe(true);
    expect(history[2]!.other).toMatchObject({ _type: 'image-file', width: 1, height: 1 });
    expect(Object.keys(history[3]!).filter((k) => !k.startsWith('_')).sort()).toEqual(['at', 'at2']);
    const all = [single.path, ...(list.filenames as string[]), (history[2]!.other as { path: string }).path, (history[3]!.at as { path: string }).path, (history[3]!.at2 as { path: string }).path];
    expect(files.sort()).toEqual([...all].sort());
    for (const p of all) expect(existsSync(join(filesDir, p as string))).toBe(true);
  });

  it('logTable: table-file value and the table JSON (NaN/Infinity bare, image cells as image-file values with their own files)', async () => {
    const t = new WandBTracker({ run_name: 'proj', mode: 'offline', dir });
    await t.start();
    t.log({ loss: 1 });
    t.logTable('eval/preds', { columns: ['x', 's', 'b', 'n', 'img'], data: [[1.5, 'a', true, null, image(2, 2, 3)], [NaN, 'b', false, Infinity, null], [-Infinity, '', true, 0, image(1, 1, 1)]] });
    await t.finish();
    const { history, files, filesDir } = await readOffline(dir);
    const v = history[1]!['eval/preds'] as Record<string, unknown>;
    expect(Object.keys(v)).toEqual(['_type', 'sha256', 'size', 'path', 'ncols', 'nrows', 'log_mode']);
    expect(v).toMatchObject({ _type: 'table-file', ncols: 5, nrows: 3, log_mode: 'IMMUTABLE' });
    expect(v.path).toBe(`media/table/eval/preds_1_${(v.sha256 as string).slice(0, 20)}.table.json`);
    const text = readFileSync(join(filesDir, v.path as string), 'utf8');
    expect(sha(Buffer.from(text))).toBe(v.sha256);
    expect(text).toContain('[NaN,"b",false,Infinity,null]');
    const parsed = parseValueJson(text) as { columns: string[]; data: unknown[][] };
    expect(parsed.columns).toEqual(['x', 's', 'b', 'n', 'img']);
    const cell = parsed.data[0]![4] as Record<string, unknown>;
    expect(cell).toMatchObject({ _type: 'image-file', format: 'png', width: 2, height: 2 });
    expect(sha(readFileSync(join(filesDir, cell.path as string)))).toBe(cell.sha256);
    expect(files).toEqual(expect.arrayContaining([v.path, cell.path]));
  });

  it('table cells: another type or a ragged row is a ValidationError naming row and column; nothing is logged', async () => {
    const t = new WandBTracker({ run_name: 'proj', mode: 'offline', dir });
    await t.start();
    expect(() => t.logTable('t', { columns: ['a', 'b'], data: [[1, 2], [3, { x: 1 }]] })).toThrow(/row 1, column 1 \("b"\) is an object/);
    expect(() => t.logTable('t', { columns: ['a', 'b'], data: [[1, 2], [3]] })).toThrow(/row 1 has 1 cells but there are 2 columns/);
    expect(() => t.logTable('t', { columns: ['a'], data: [[undefined]] })).toThrow(ValidationError);
    expect(() => t.logTable('t', { columns: ['a'], data: [[[1, 2]]] })).toThrow(/row 0, column 0 \("a"\) is an array/);
    expect(() => t.logImages({ '..': image(1, 1, 3) })).not.toThrow(); // '..' becomes '__' as W&B
    await t.finish();
    const { history } = await readOffline(dir);
    expect(history.map((h) => Object.keys(h).filter((k) => !k.startsWith('_')))).toEqual([['..']]);
    expect((history[0]!['..'] as { path: string }).path).toMatch(/^media\/images\/___0_[0-9a-f]{20}\.png$/);
  });

  it('trackspec sync uploads the offline files through CreateRunFiles and PUT, and reports them as uploaded', async () => {
    const t = new WandBTracker({ run_name: 'proj', mode: 'offline', dir });
    await t.start();
    t.logImages({ img: image(8, 8, 3) });
    t.logTable('tab', { columns: ['a'], data: [[1], [NaN]] });
    await t.finish();
    const { runId } = t.tracker;
    const summary = await syncAll(dir, { out: () => undefined });
    expect(summary.failed).toEqual([]);
    const run = server.run('test-entity', 'proj', runId)!;
    expect(run.problems).toEqual([]);
    expect(server.mediaProblems('test-entity', 'proj', runId)).toEqual([]);
    expect(run.history).toHaveLength(2);
    expect(run.uploaded.sort()).toEqual(Object.keys(run.files).sort());
    // the image, the table, and the summary and config files wandb-core adds at finish
    expect(Object.keys(run.files).filter((p) => !p.startsWith('media/')).sort()).toEqual(['config.yaml', 'wandb-summary.json']);
    expect(Object.keys(run.files)).toHaveLength(4);
    expect(parseWandbJson(server.fileContent('test-entity', 'proj', runId, 'wandb-summary.json')!.toString('utf8'))).toEqual(run.summary);
    expect(run.complete).toBe(true);
  });
});

describe('online media', () => {
  const entity = 'test-entity';
  it('CreateRunFiles, PUT of each file with the returned upload headers, uploaded in file_stream, before complete', async () => {
    const t = new WandBTracker({ run_name: 'proj', dir });
    await t.start();
    t.logImages({ a: image(8, 8, 3), b: [image(4, 4, 1), image(4, 4, 4)] }, undefined, { caption: ['x', 'y'] });
    t.logTable('tab', { columns: ['n', 'img'], data: [[1, image(2, 2, 3)], [NaN, null]] }, 7);
    t.log({ loss: 1 });
    await t.finish();
    const { runId } = t.tracker;
    const run = server.run(entity, 'proj', runId)!;
    expect(run.problems).toEqual([]);
    expect(server.problems).toEqual([]);
    expect(server.mediaProblems(entity, 'proj', runId)).toEqual([]);
    expect(run.history.map((h) => h.row._step)).toEqual([0, 1, 7]); // log() without a step merges into step 7 (W&B)
    expect(run.history[2]!.row.loss).toBe(1);
    expect(run.history[1]!.row.b).toMatchObject({ _type: 'images/separated', count: 2, captions: ['x', 'y'] });
    expect(Object.keys(run.files)).toHaveLength(7); // a, b×2, the table, its image cell, wandb-summary.json, config.yaml; the table, its image cell
    expect([...run.uploaded].sort()).toEqual(Object.keys(run.files).sort());
    const puts = server.requests.filter((r) => r.method === 'PUT');
    expect(puts.every((r) => r.headers['x-upload-secret'] && r.headers.authorization === undefined)).toBe(true);
    // every upload is reported before the final post with complete
    const posts = server.requests.filter((r) => r.path.endsWith('/file_stream'));
    const lastUploaded = posts.findLastIndex((r) => Array.isArray((r.body as { uploaded?: unknown }).uploaded));
    const completeAt = posts.findIndex((r) => (r.body as { complete?: boolean }).complete === true);
    expect(lastUploaded).toBeGreaterThanOrEqual(0);
    expect(lastUploaded).toBeLessThan(completeAt);
  });

  it('a PUT answered 503 / 429 is retried; a refused (expired) URL is asked for again', async () => {
    server.inject({ kind: 'status', path: '/upload/', status: 503, times: 2 });
    server.inject({ kind: 'status', path: '/upload/', status: 429, retryAfter: '0', times: 1 });
    const t = new WandBTracker({ run_name: 'proj', dir });
    await t.start();
    t.logImages({ a: image(8, 8, 3) });
    await t.flush();
    await t.finish();
    const { runId } = t.tracker;
    expect(server.mediaProblems(entity, 'proj', runId)).toEqual([]);
    // the image's PUT (503, 503, 429, 200), then the finish files' (wandb-summary.json, config.yaml)
    expect(server.requests.filter((r) => r.method === 'PUT').map((r) => r.status)).toEqual([503, 503, 429, 200, 200, 200]);

    server.expiredUrls = 1; // the first URL has expired when the PUT arrives
    const t2 = new WandBTracker({ run_name: 'proj', dir });
    await t2.start();
    t2.logImages({ a: image(8, 8, 3, 5) });
    await t2.finish();
    const run2 = server.run(entity, 'proj', t2.tracker.runId)!;
    expect(server.mediaProblems(entity, 'proj', t2.tracker.runId)).toEqual([]);
    expect(run2.createRunFilesCalls).toBe(3); // the image, its URL asked for again, the finish files
    expect(server.requests.filter((r) => r.method === 'PUT').slice(6, 8).map((r) => r.status)).toEqual([403, 200]);
  });

  it('a PUT to a URL the server did not issue, or without the upload headers, is refused', async () => {
    const res = await fetch(`${server.url}/upload/deadbeef`, { method: 'PUT', body: 'x' });
    expect(res.status).toBe(403);
    expect(server.problems).toEqual(['PUT /upload/deadbeef: not an upload URL this server issued']);
    server.seedRun(entity, 'proj', 'r1', 0);
    const gql = await fetch(`${server.url}/graphql`, {
      method: 'POST',
      headers: { authorization: server.authorization, 'content-type': 'application/json' },
      body: JSON.stringify({ operationName: 'CreateRunFiles', query: 'mutation CreateRunFiles { x }', variables: { entity, project: 'proj', run: 'r1', files: ['media/a.png'] } }),
    });
    const url = ((await gql.json()) as { data: { createRunFiles: { files: { uploadUrl: string }[] } } }).data.createRunFiles.files[0]!.uploadUrl;
    expect((await fetch(url, { method: 'PUT', body: 'x' })).status).toBe(403); // no X-Upload-Secret
    expect(server.run(entity, 'proj', 'r1')!.files).toEqual({});
    // with the header: stored; a history value whose sha256/size do not match is reported
    const secret = ((await (await fetch(`${server.url}/graphql`, {
      method: 'POST',
      headers: { authorization: server.authorization, 'content-type': 'application/json' },
      body: JSON.stringify({ operationName: 'CreateRunFiles', query: 'mutation CreateRunFiles { x }', variables: { entity, project: 'proj', run: 'r1', files: ['media/b.png'] } }),
    })).json()) as { data: { createRunFiles: { uploadHeaders: string[]; files: { uploadUrl: string }[] } } }).data.createRunFiles;
    const [hk, hv] = secret.uploadHeaders[0]!.split(': ');
    expect((await fetch(secret.files[0]!.uploadUrl, { method: 'PUT', body: 'xyz', headers: { [hk!]: hv! } })).status).toBe(200);
    const row = { _step: 0, _runtime: 0, _timestamp: 1, b: { _type: 'image-file', path: 'media/b.png', size: 4, sha256: sha(Buffer.from('xyz')) } };
    await fetch(`${server.url}/files/${entity}/proj/r1/file_stream`, {
      method: 'POST',
      headers: { authorization: server.authorization, 'content-type': 'application/json' },
      body: JSON.stringify({ files: { 'wandb-history.jsonl': { offset: 0, content: [JSON.stringify(row)] } } }),
    });
    expect(server.mediaProblems(entity, 'proj', 'r1')).toEqual(['history line 0 "b": media/b.png not reported in uploaded', 'history line 0 "b": size 4 but the file has 3 bytes']);
  });

  it('memory is bounded by the byte budget: files past it wait on disk and are uploaded from there', async () => {
    UPLOAD_LIMITS.budgetBytes = 1;
    const t = new WandBTracker({ run_name: 'proj', dir });
    await t.start();
    for (let i = 0; i < 5; i++) t.logImages({ img: image(16, 16, 3, i) });
    await t.finish();
    const { runId } = t.tracker;
    expect(server.mediaProblems(entity, 'proj', runId)).toEqual([]);
    const run = server.run(entity, 'proj', runId)!;
    expect(Object.keys(run.files)).toHaveLength(7); // 5 images, wandb-summary.json, config.yaml
    const [runDir] = (await import('node:fs')).readdirSync(join(dir, 'wandb')).filter((n) => n.startsWith('run-'));
    for (const p of Object.keys(run.files)) expect(existsSync(join(dir, 'wandb', runDir!, 'files', p))).toBe(true);
  });

  it('a file not uploaded by finish() after the deadline is kept for trackspec sync, which uploads it without duplicating rows', async () => {
    server.inject({ kind: 'status', path: '/upload/', status: 503, times: Infinity });
    const t = new WandBTracker({ run_name: 'proj', dir, retry_deadline_secs: 1 });
    await t.start();
    t.logImages({ img: image(8, 8, 3) });
    t.logTable('tab', { columns: ['a'], data: [[1]] });
    await t.finish();
    const { runId } = t.tracker;
    let run = server.run(entity, 'proj', runId)!;
    expect(run.complete).toBe(true);
    expect(run.history).toHaveLength(2);
    expect(run.files).toEqual({});
    expect(warnings.join('\n')).toMatch(/4 run file\(s\) were not uploaded before the deadline.*trackspec sync/); // 2 media + the finish files
    server.clearFaults();
    const summary = await syncAll(dir, { out: () => undefined });
    expect(summary.failed).toEqual([]);
    run = server.run(entity, 'proj', runId)!;
    expect(run.history).toHaveLength(2);
    expect(run.problems).toEqual([]);
    expect(server.mediaProblems(entity, 'proj', runId)).toEqual([]);
    expect((await syncAll(dir, { out: () => undefined })).spools).toBe(0); // nothing left to sync
  });

  it('process.exit() without finish(): files not uploaded yet are kept on disk for trackspec sync', async () => {
    server.inject({ kind: 'status', path: '/upload/', status: 503, times: Infinity });
    const { entity: ent, runId } = await runDyingChild(dir, `t.logImages({ img: { data: new Uint8Array(48).fill(9), width: 4, height: 4, channels: 3 } });
setTimeout(() => process.exit(0), 50);`);
    expect(server.run(ent, 'dying', runId)).toMatchObject({ complete: true, files: {} });
    server.clearFaults();
    expect((await syncAll(dir, { out: () => undefined })).failed).toEqual([]);
    expect(server.mediaProblems(ent, 'dying', runId)).toEqual([]);
    expect(server.run(ent, 'dying', runId)!.history).toHaveLength(1);
  }, 30_000);

  it("mode 'disabled': logImages and logTable are no-ops", async () => {
    const t = new WandBTracker({ run_name: 'proj', mode: 'disabled', dir });
    await t.start();
    t.logImages({ a: image(2, 2, 3) });
    t.logTable('t', { columns: ['a'], data: [[1]] });
    await t.finish();
    expect(existsSync(join(dir, 'wandb'))).toBe(false);
  });
});

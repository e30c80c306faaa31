// Comet images, tables and assets (issue 17): multipart upload-asset requests checked by the local
// test server (file part, metadata part, query fields), bytes decoded back, spool copies and sync.
import { mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { BackendError, CometMLTracker, ValidationError } from '../../../generated/index.gen.js';
import { syncAll } from '../../../runtime/backends/sync.js';
import { decodePngRgba } from '../../../runtime/io/image.js';
import { tempDir } from '../../support/helpers.js';
import { cometTestSetup, cometTestTeardown } from './setup.js';
import { CometTestServer } from './server.js';

let server: CometTestServer;
let offline: string;
let warnings: string[];
beforeEach(async () => {
  ({ server, offline, warnings } = await cometTestSetup('comet-offline-', { heartbeatMs: 300 }));
});
afterEach(async () => {
  await cometTestTeardown(server);
});

const rgb = (h: number, w: number, seed: number) => {
  const data = new Uint8Array(h * w * 3);
  for (let i = 0; i < data.length; i++) data[i] = (i * 7 + seed) & 255;
  return { data, height: h, width: w, channels: 3 };
};
const rgbaOf = (img: ReturnType<typeof rgb>) => {
  const out = new Uint8Array(img.height * img.width * 4);
  for (let p = 0; p < img.height * img.width; p++) {
    out.set(img.data.subarray(p * 3, p * 3 + 3), p * 4);
    out[p * 4 + 3] = 255;
  }
  return out;
};

describe('logImages', () => {
  it('uploads each image as multipart upload-asset with type=image and the query fields; the caption goes in the metadata part', async () => {
    const t = new CometMLTracker({ run_name: 'p', offline_directory: offline });
    await t.start();
    const a = rgb(4, 5, 1);
    const b = [rgb(2, 3, 2), rgb(3, 2, 3)];
    t.logImages({ sample: a, grid: b }, 7, { caption: 'epoch 7' });
    t.logImages({ plain: rgb(1, 1, 9) });
    await t.finish();
    const e = server.experiment(t.tracker.experimentKey!)!;
    expect(e.assets.map((x) => [x.type, x.fileName, x.extension, x.step, x.overwrite, x.metadata, x.partFilename, x.partType])).toEqual([
      ['image', 'sample.png', 'png', 7, false, { caption: 'epoch 7' }, 'sample.png', 'image/png'],
      ['image', 'grid_0.png', 'png', 7, false, { caption: 'epoch 7' }, 'grid_0.png', 'image/png'],
      ['image', 'grid_1.png', 'png', 7, false, { caption: 'epoch 7' }, 'grid_1.png', 'image/png'],
      ['image', 'plain.png', 'png', null, false, null, 'plain.png', 'image/png'],
    ]);
    const back = decodePngRgba(e.assets[0]!.bytes);
    expect([back.height, back.width]).toEqual([4, 5]);
    expect(Buffer.from(back.data).equals(Buffer.from(rgbaOf(a)))).toBe(true);
    expect(Buffer.from(decodePngRgba(e.assets[2]!.bytes).data).equals(Buffer.from(rgbaOf(b[1]!)))).toBe(true);
    const up = server.requests.filter((r) => r.path.endsWith('/upload-asset'));
    expect(up.every((r) => r.status === 200)).toBe(true);
    expect(Object.keys(up[0]!.query).sort()).toEqual(['experimentKey', 'extension', 'fileName', 'overwrite', 'step', 'type']);
    expect(up[0]!.query).toMatchObject({ experimentKey: t.tracker.experimentKey, type: 'image', fileName: 'sample.png', extension: 'png', step: '7', overwrite: 'false' });
    expect(String(up[0]!.headers['content-type'])).toMatch(/^multipart\/form-data; boundary=/);
    expect(up.some((r) => r.path.includes('upload-image'))).toBe(false);
  });

  it('an image of the wrong shape is a ValidationError naming the key; nothing is sent', async () => {
    const t = new CometMLTracker({ run_name: 'p', offline_directory: offline });
    await t.start();
    const err = (() => {
      try {
        t.logImages({ good: rgb(2, 2, 0), bad: { data: new Uint8Array(5), height: 2, width: 2, channels: 3 } });
      } catch (e) {
        return e;
      }
    })() as ValidationError;
    expect(err).toBeInstanceOf(ValidationError);
    expect(err.message).toContain('/bad');
    expect(err.message).toContain('expected height*width*channels = 12');
    await t.finish();
    expect(server.experiment(t.tracker.experimentKey!)!.assets).toEqual([]);
  });
});

describe('logTable', () => {
  it('is a dataframe CSV asset with RFC 4180 quoting', async () => {
    const t = new CometMLTracker({ run_name: 'p', offline_directory: offline });
    await t.start();
    t.logTable('results', { columns: ['name', 'note', 'score', 'ok'], data: [['a,b', 'he said "hi"', 1.5, true], ['line\nbreak', '', null, false], ['plain', 'x', -2, true]] }, 4);
    await t.finish();
    const [asset] = server.experiment(t.tracker.experimentKey!)!.assets;
    expect(asset).toMatchObject({ type: 'dataframe', fileName: 'results.csv', extension: 'csv', step: 4, metadata: null, partFilename: 'results.csv', partType: 'text/csv' });
    expect(asset!.bytes.toString('utf8')).toBe('name,note,score,ok\r\n"a,b","he said ""hi""",1.5,True\r\n"line\nbreak",,,False\r\nplain,x,-2,True\r\n');
  });

  it('a cell that is not a scalar is a ValidationError naming the row and column', async () => {
    const t = new CometMLTracker({ run_name: 'p', offline_directory: offline });
    await t.start();
    expect(() => t.logTable('t', { columns: ['a', 'b'], data: [[1, 2], [3, { x: 1 }]] })).toThrow(/row 1, column "b": cells must be scalars/);
    expect(() => t.logTable('t', { columns: ['a', 'b'], data: [[1]] })).toThrow(ValidationError);
    expect(() => t.logTable('../t', { columns: ['a'], data: [] })).toThrow(/name "\.\.\/t"/);
    await t.finish();
  });
});

describe('logAsset and artifacts', () => {
  it('streams a file from disk as an asset (name and step), and logArtifact/logArtifacts/logFigure as assets/images', async () => {
    const dir = tempDir('comet-assets-');
    const big = randomBytes(3 * 1024 * 1024 + 17);
    writeFileSync(join(dir, 'weights.bin'), big);
    mkdirSync(join(dir, 'tree', 'sub'), { recursive: true });
    writeFileSync(join(dir, 'tree', 'a.txt'), 'A');
    writeFileSync(join(dir, 'tree', 'sub', 'b.json'), '{"b":1}');
    const t = new CometMLTracker({ run_name: 'p', offline_directory: offline });
    await t.start();
    t.tracker.logAsset(join(dir, 'weights.bin'));
    t.tracker.logAsset(join(dir, 'weights.bin'), { name: 'ckpt/model.bin', step: 12 });
    t.logArtifact(join(dir, 'tree', 'a.txt'), 'docs');
    t.logArtifacts(join(dir, 'tree'));
    t.logFigure(rgb(2, 2, 5), 'plots/fig.png');
    await t.finish();
    const e = server.experiment(t.tracker.experimentKey!)!;
    expect(e.assets.map((x) => [x.type, x.fileName, x.extension, x.step, x.partFilename])).toEqual([
      ['asset', 'weights.bin', 'bin', null, 'weights.bin'],
      ['asset', 'ckpt/model.bin', 'bin', 12, 'model.bin'],
      ['asset', 'docs/a.txt', 'txt', null, 'a.txt'],
      ['asset', 'a.txt', 'txt', null, 'a.txt'],
      ['asset', 'sub/b.json', 'json', null, 'b.json'],
      ['image', 'plots/fig.png', 'png', null, 'fig.png'],
    ]);
    expect(e.assets[0]!.bytes.equals(big)).toBe(true);
    expect(e.assets[1]!.bytes.equals(big)).toBe(true);
    expect(e.assets[4]!.bytes.toString()).toBe('{"b":1}');
  });

  it('bad input: a missing file, a directory, a bad name or step are ValidationErrors naming the argument', async () => {
    const dir = tempDir('comet-assets-');
    writeFileSync(join(dir, 'f.txt'), 'x');
    const t = new CometMLTracker({ run_name: 'p', offline_directory: offline });
    await t.start();
    const catchIt = (f: () => void) => {
      try {
        f();
      } catch (e) {
        return e as Error;
      }
      throw new Error('no error');
    };
    const missing = catchIt(() => t.tracker.logAsset(join(dir, 'nope.txt')));
    expect(missing).toBeInstanceOf(ValidationError);
    expect(missing.message).toMatch(/logAsset\(\): localPath ".*nope\.txt" does not exist/);
    expect(catchIt(() => t.tracker.logAsset(dir)).message).toMatch(/localPath ".*" is not a file/);
    expect(catchIt(() => t.tracker.logAsset(join(dir, 'f.txt'), { name: '../up.txt' })).message).toMatch(/name "\.\.\/up\.txt" is not a usable asset name/);
    expect(catchIt(() => t.tracker.logAsset(join(dir, 'f.txt'), { step: -1 })).message).toMatch(/step must be a non-negative integer/);
    expect(catchIt(() => t.logArtifact(join(dir, 'missing.bin'))).message).toMatch(/logArtifact\(\): localPath ".*missing\.bin" does not exist/);
    expect(catchIt(() => t.logArtifacts(join(dir, 'f.txt'))).message).toMatch(/localDir ".*f\.txt" is not a directory/);
    await t.finish();
    expect(server.experiment(t.tracker.experimentKey!)!.assets).toEqual([]);
  });
});

describe('offline and unreachable: copies in the spool, sync rebuilds the multipart bodies', () => {
  it('offline: images, tables and assets are copied into the spool (the source may be deleted) and uploaded by sync', async () => {
    const dir = tempDir('comet-assets-');
    const payload = randomBytes(200_000);
    writeFileSync(join(dir, 'data.bin'), payload);
    const t = new CometMLTracker({ run_name: 'p', online: false, offline_directory: offline });
    await t.start();
    const img = rgb(3, 3, 4);
    t.logImages({ pic: img }, 2, { caption: 'c' });
    t.logTable('tab', { columns: ['x'], data: [[1], ['a"b']] });
    t.tracker.logAsset(join(dir, 'data.bin'), { name: 'data.bin', step: 5 });
    t.log({ loss: 1 }, 1);
    await t.finish();
    rmSync(dir, { recursive: true, force: true });
    expect(readdirSync(join(offline, 'comet_ml', 'files'))).toHaveLength(3);
    expect(server.experiments()).toHaveLength(0);
    const summary = await syncAll(offline, { out: () => undefined });
    expect(summary.failed).toEqual([]);
    const [e] = server.experiments();
    expect(e!.metrics).toHaveLength(1);
    expect(e!.assets.map((a) => [a.type, a.fileName, a.step, a.metadata])).toEqual([
      ['image', 'pic.png', 2, { caption: 'c' }],
      ['dataframe', 'tab.csv', null, null],
      ['asset', 'data.bin', 5, null],
    ]);
    expect(Buffer.from(decodePngRgba(e!.assets[0]!.bytes).data).equals(Buffer.from(rgbaOf(img)))).toBe(true);
    expect(e!.assets[1]!.bytes.toString()).toBe('x\r\n1\r\n"a""b"\r\n');
    expect(e!.assets[2]!.bytes.equals(payload)).toBe(true);
    expect(readdirSync(join(offline, 'comet_ml', 'files'))).toEqual([]);
    expect((await syncAll(offline, { out: () => undefined })).spools).toBe(0);
    expect(server.experiments()[0]!.assets).toHaveLength(3);
  });

  it('unreachable: the asset is kept with a copy, finish() says where, sync uploads it to the same experiment', async () => {
    const dir = tempDir('comet-assets-');
    writeFileSync(join(dir, 'notes.txt'), 'hello comet');
    const t = new CometMLTracker({ run_name: 'p', offline_directory: offline, retry_deadline_secs: 0.3 });
    await t.start();
    const key = t.tracker.experimentKey!;
    await server.stop();
    t.tracker.logAsset(join(dir, 'notes.txt'));
    const err = (await t.finish().catch((e: unknown) => e)) as BackendError;
    expect(err).toBeInstanceOf(BackendError);
    expect(err.message).toContain('trackspec sync');
    rmSync(join(dir, 'notes.txt'));
    await server.restart();
    const summary = await syncAll(offline, { out: () => undefined });
    expect(summary.failed).toEqual([]);
    const e = server.experiment(key)!;
    expect(e.assets.map((a) => [a.fileName, a.bytes.toString()])).toEqual([['notes.txt', 'hello comet']]);
    expect(readdirSync(join(offline, 'comet_ml', 'files'))).toEqual([]); // copies removed once uploaded
  }, 20_000);
});

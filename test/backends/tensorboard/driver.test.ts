import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { BackendError } from '../../../runtime/core/errors.js';
import {
  EXPERIMENT_TAG,
  HParamDataType,
  SESSION_END_TAG,
  SESSION_START_TAG,
  SessionStatus,
  decodeHParamsPluginData,
  decodePngRgba,
  driver,
  listEventFiles,
  scalarOf,
  textOf,
  type DecodedEvent,
  type DecodedValue,
  type TensorBoardDriverOptions,
} from '../../../runtime/backends/tensorboard/index.js';
import { ctxStub, onlyEventFile, protocDecode, protocDecodeFile, protocEvents, readAll, requireProtoc, tmpDir } from './helpers.js';

function opts(logging_dir: string, extra: Partial<TensorBoardDriverOptions> = {}): TensorBoardDriverOptions {
  return { run_name: 'run', logging_dir, flush_secs: 120, max_queue: 10, filename_suffix: '', ...extra };
}

function values(events: DecodedEvent[]): Array<{ step: number; v: DecodedValue }> {
  return events.flatMap((e) => (e.summary ?? []).map((v) => ({ step: e.step, v })));
}

function series(events: DecodedEvent[], tag: string): Array<[number, number | undefined]> {
  return values(events)
    .filter((x) => x.v.tag === tag)
    .map((x) => [x.step, scalarOf(x.v)]);
}

describe('TensorBoard driver', () => {
  it('creates <logging_dir>/<run_name> and returns the SummaryWriter as handle', async () => {
    const root = tmpDir();
    const d = await driver.start(opts(root, { run_name: 'exp/one' }), ctxStub());
    expect(driver.available).toBe(true);
    expect(path.dirname(d.handle.path)).toBe(path.join(root, 'exp/one'));
    await d.finish();
  });

  it('logs numbers, booleans, NaN/±Inf as float scalars in one Event per call', async () => {
    const root = tmpDir();
    const d = await driver.start(opts(root), ctxStub());
    const v = { loss: 0.9, acc: 1, flag: true, off: false, nan: NaN, pinf: Infinity, ninf: -Infinity, big: 1e40 };
    d.log(v, 5, undefined);
    v.loss = 0.5; // caller may reuse the object after log() returned
    await d.finish();
    const file = onlyEventFile(path.join(root, 'run'));
    const events = readAll(file);
    expect(events).toHaveLength(2);
    const ev = events[1]!;
    expect(ev.step).toBe(5);
    expect(ev.summary!.map((x) => x.tag)).toEqual(['loss', 'acc', 'flag', 'off', 'nan', 'pinf', 'ninf', 'big']);
    const got = Object.fromEntries(ev.summary!.map((x) => [x.tag, x.simpleValue]));
    expect(got.loss).toBe(Math.fround(0.9));
    expect(got.acc).toBe(1);
    expect(got.flag).toBe(1);
    expect(got.off).toBe(0);
    expect(got.nan).toBeNaN();
    expect(got.pinf).toBe(Infinity);
    expect(got.ninf).toBe(-Infinity);
    expect(got.big).toBe(Infinity); // float32 overflow
    if (requireProtoc()) {
      const text = protocEvents(protocDecodeFile(file))[1]!;
      expect(text).toMatch(/tag: "loss"\s+simple_value: 0.9/);
      expect(text).toMatch(/tag: "nan"\s+simple_value: nan/);
      expect(text).toMatch(/tag: "pinf"\s+simple_value: inf/);
      expect(text).toMatch(/tag: "ninf"\s+simple_value: -inf/);
      expect(text).toMatch(/tag: "off"\s+simple_value: 0/);
    }
  });

  it('auto step: starts at 0, +1 per step-less call, explicit step s continues at s+1', async () => {
    const root = tmpDir();
    const d = await driver.start(opts(root), ctxStub());
    d.log({ x: 1 }, undefined, undefined); // 0
    d.log({ x: 2 }, undefined, undefined); // 1
    d.log({ x: 3 }, 10, undefined); // 10
    d.log({ x: 4 }, undefined, undefined); // 11
    d.logImages!({ im: { data: new Uint8Array([1]), height: 1, width: 1, channels: 1 } }, undefined, undefined); // 12
    d.log({ x: 5 }, undefined, undefined); // 13
    d.log({ x: 6 }, 3, undefined); // 3
    d.log({ x: 7 }, undefined, undefined); // 4
    await d.finish();
    const events = readAll(onlyEventFile(path.join(root, 'run')));
    expect(series(events, 'x')).toEqual([
      [0, 1], [1, 2], [10, 3], [11, 4], [13, 5], [3, 6], [4, 7],
    ]);
    expect(values(events).find((x) => x.v.tag === 'im')!.step).toBe(12);
  });

  it('writes strings with the text plugin (metadata on the first value only)', async () => {
    const root = tmpDir();
    const d = await driver.start(opts(root), ctxStub());
    d.log({ note: 'héllo *md*', loss: 1 }, 1, undefined);
    d.log({ note: 'second' }, 2, undefined);
    await d.finish();
    const file = onlyEventFile(path.join(root, 'run'));
    const texts = values(readAll(file)).filter((x) => x.v.tag === 'note');
    expect(texts.map((x) => [x.step, textOf(x.v)])).toEqual([[1, 'héllo *md*'], [2, 'second']]);
    expect(texts[0]!.v.metadata?.pluginName).toBe('text');
    expect(texts[1]!.v.metadata).toBeUndefined();
    for (const t of texts) {
      expect(t.v.tensor!.dtype).toBe(7);
      expect(t.v.tensor!.shape).toEqual([]);
    }
    if (requireProtoc()) {
      const ev = protocEvents(protocDecodeFile(file));
      expect(ev[1]).toContain('string_val: "h\\303\\251llo *md*"');
      expect(ev[2]).toContain('string_val: "second"');
    }
  });

  it('writes {k: number} objects with add_scalars semantics (one sub-run per key, tag = key)', async () => {
    const root = tmpDir();
    const d = await driver.start(opts(root), ctxStub());
    d.log({ 'loss/parts': { train: 0.5, val: 0.75, ok: true }, top: 1 }, 4, undefined);
    d.log({ 'loss/parts': { train: 0.25, val: 0.5, ok: false } }, 5, undefined);
    await d.finish();
    const run = path.join(root, 'run');
    const dirs = fs.readdirSync(run, { withFileTypes: true }).filter((e) => e.isDirectory()).map((e) => e.name).sort();
    expect(dirs).toEqual(['loss_parts_ok', 'loss_parts_train', 'loss_parts_val']);
    expect(series(readAll(onlyEventFile(path.join(run, 'loss_parts_train'))), 'loss/parts')).toEqual([[4, 0.5], [5, 0.25]]);
    expect(series(readAll(onlyEventFile(path.join(run, 'loss_parts_val'))), 'loss/parts')).toEqual([[4, 0.75], [5, 0.5]]);
    expect(series(readAll(onlyEventFile(path.join(run, 'loss_parts_ok'))), 'loss/parts')).toEqual([[4, 1], [5, 0]]);
    const main = readAll(onlyEventFile(run));
    expect(series(main, 'top')).toEqual([[4, 1]]);
    expect(values(main).some((x) => x.v.tag === 'loss/parts')).toBe(false);
  });

  it('stores hparams (session_start_info now; session_end_info SUCCESS on finish, no per-run experiment) and hparams.yml', async () => {
    const root = tmpDir();
    const ctx = ctxStub();
    const d = await driver.start(opts(root), ctx);
    const config = {
      lr: 0.001,
      epochs: 3,
      name: 'resnet',
      amp: false,
      nothing: null,
      layers: [64, 128],
      optim: { kind: 'adam', betas: { b1: 0.9 } },
    };
    await d.storeInitConfiguration(config);
    const run = path.join(root, 'run');
    expect(parseYaml(fs.readFileSync(path.join(run, 'hparams.yml'), 'utf8'))).toEqual(config);
    expect(ctx.warnings.some((w) => w.includes('nothing'))).toBe(true);

    // Before finish: session_start_info is on disk (storeInitConfiguration flushes).
    let hp = values(readAll(onlyEventFile(run))).filter((x) => x.v.metadata?.pluginName === 'hparams');
    expect(hp.map((x) => x.v.tag)).toEqual([SESSION_START_TAG]);
    const start = decodeHParamsPluginData(hp[0]!.v.metadata!.pluginContent!);
    expect(start.version).toBe(0);
    expect(start.sessionStartInfo!.hparams).toEqual({
      lr: 0.001,
      epochs: 3,
      name: 'resnet',
      amp: false,
      layers: '[64,128]',
      'optim/kind': 'adam',
      'optim/betas/b1': 0.9,
    });
    expect(Math.abs(start.sessionStartInfo!.startTimeSecs! - Date.now() / 1000)).toBeLessThan(10);

    d.log({ loss: 1, acc: 0.5 }, 1, undefined);
    d.log({ parts: { a: 1 } }, 1, undefined);
    await d.finish();

    const file = onlyEventFile(run);
    hp = values(readAll(file)).filter((x) => x.v.metadata?.pluginName === 'hparams');
    // No _hparams_/experiment: TensorBoard builds the experiment from every run's session_start_info.
    expect(hp.map((x) => x.v.tag)).toEqual([SESSION_START_TAG, SESSION_END_TAG]);
    expect(hp.some((x) => x.v.tag === EXPERIMENT_TAG)).toBe(false);
    const end = decodeHParamsPluginData(hp[1]!.v.metadata!.pluginContent!);
    expect(end.sessionEndInfo!.status).toBe(SessionStatus.SUCCESS);

    if (requireProtoc()) {
      const startText = protocDecode('tensorboard.HParamsPluginData', hp[0]!.v.metadata!.pluginContent!);
      expect(startText).toMatch(/key: "amp"\s+value \{\s+bool_value: false/);
      expect(startText).toMatch(/key: "lr"\s+value \{\s+number_value: 0.001/);
      expect(startText).toMatch(/key: "name"\s+value \{\s+string_value: "resnet"/);
      const endText = protocDecode('tensorboard.HParamsPluginData', hp[1]!.v.metadata!.pluginContent!);
      expect(endText).toContain('status: STATUS_SUCCESS');
    }
  });

  it('writes images as PNG image summaries (single → tag; array → tag/image/i)', async () => {
    const root = tmpDir();
    const ctx = ctxStub();
    const d = await driver.start(opts(root), ctx);
    const rgb = { data: Uint8Array.from([255, 0, 0, 0, 255, 0, 0, 0, 255, 10, 20, 30]), height: 2, width: 2, channels: 3 };
    const grey = { data: Uint8Array.from([0, 128, 255]), height: 1, width: 3, channels: 1 };
    const rgba = { data: Uint8Array.from([1, 2, 3, 4]), height: 1, width: 1, channels: 4 };
    const bad = { data: new Uint8Array(5), height: 2, width: 2, channels: 3 };
    d.logImages!({ rgb, many: [grey, rgba], broken: bad }, 7, undefined);
    await d.finish();
    expect(ctx.warnings.some((w) => w.includes("'broken'"))).toBe(true);
    const ev = readAll(onlyEventFile(path.join(root, 'run')));
    const imgs = values(ev).filter((x) => x.v.image);
    expect(imgs.map((x) => [x.step, x.v.tag])).toEqual([
      [7, 'rgb'],
      [7, 'many/image/0'],
      [7, 'many/image/1'],
    ]);
    const toRgba = (img: { data: Uint8Array; channels: number }): number[] => {
      const out: number[] = [];
      for (let i = 0; i < img.data.length; i += img.channels) {
        const px = Array.from(img.data.subarray(i, i + img.channels));
        if (img.channels === 1) out.push(px[0]!, px[0]!, px[0]!, 255);
        else if (img.channels === 3) out.push(...px, 255);
        else out.push(...px);
      }
      return out;
    };
    for (const [i, src] of [rgb, grey, rgba].entries()) {
      const im = imgs[i]!.v.image!;
      expect([im.height, im.width, im.colorspace]).toEqual([src.height, src.width, src.channels]);
      const png = decodePngRgba(im.encodedImage);
      expect([png.height, png.width]).toEqual([src.height, src.width]);
      expect(Array.from(png.data)).toEqual(toRgba(src));
    }
  });

  it('surfaces an unwritable logging dir as BackendError from start()', async () => {
    const root = tmpDir();
    const blocker = path.join(root, 'file');
    fs.writeFileSync(blocker, 'x');
    const err = await driver.start(opts(blocker), ctxStub()).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BackendError);
    expect((err as BackendError).backend).toBe('tensorboard');
    expect((err as BackendError).code).toBe('ENOTDIR');
    expect(listEventFiles(root)).toEqual([]);
  });

  it('surfaces a failing add_scalars sub-run as BackendError from flush(), keeping other data', async () => {
    const root = tmpDir();
    const d = await driver.start(opts(root), ctxStub());
    fs.writeFileSync(path.join(root, 'run', 'm_a'), 'blocker'); // sub-run dir name taken by a file
    d.log({ x: 1, m: { a: 1 } }, 1, undefined);
    await expect(d.flush()).rejects.toBeInstanceOf(BackendError);
    d.log({ x: 2 }, 2, undefined);
    await d.finish();
    expect(series(readAll(onlyEventFile(path.join(root, 'run'))), 'x')).toEqual([[1, 1], [2, 2]]);
  });

  it('surfaces write failures from flush() as BackendError without corrupting the file', async () => {
    const root = tmpDir();
    const d = await driver.start(opts(root), ctxStub());
    d.log({ x: 1 }, 1, undefined);
    await d.flush();
    // Simulate the fd going bad: close it underneath the writer.
    const file = d.handle.path;
    const fdHolder = (d.handle as unknown as { file: { fd: number } }).file;
    const realFd = fdHolder.fd;
    fdHolder.fd = 1 << 20; // EBADF
    d.log({ x: 2 }, 2, undefined);
    await expect(d.flush()).rejects.toMatchObject({ name: 'BackendError', code: 'EBADF' });
    fdHolder.fd = realFd; // recovered: the retry writes what was buffered
    d.log({ x: 3 }, 3, undefined);
    await d.finish();
    expect(series(readAll(file), 'x')).toEqual([[1, 1], [2, 2], [3, 3]]);
  });
});

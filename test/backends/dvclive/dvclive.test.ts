import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { BackendError, ConfigError, DVCLiveTracker, Tracking, ValidationError } from '../../../generated/index.gen.js';
import { setWarningHandler } from '../../../runtime/core/warnings.js';
import { decodePngRgba } from '../../../runtime/io/image.js';
import { runCli, tempDir } from '../../support/helpers.js';
import { decode, FIXTURES, listFiles } from './helpers.js';

let warnings: string[];
let restore: ReturnType<typeof setWarningHandler>;
beforeEach(() => {
  warnings = [];
  restore = setWarningHandler((m) => void warnings.push(m));
});
afterEach(() => {
  setWarningHandler(restore);
});

/** A tracker writing to <tmp>/dvclive with dvc.yaml at <tmp>/dvc.yaml (dvclive's default layout). */
async function tracker(extra: Record<string, unknown> = {}, root = tempDir('dvclive-')) {
  const t = new DVCLiveTracker({ dir: path.join(root, 'dvclive'), dvcyaml: path.join(root, 'dvc.yaml'), ...extra });
  await t.start();
  return { t, root, dir: path.join(root, 'dvclive') };
}

function fixtureBytes(name: string, root: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const f of listFiles(root)) out[f] = fs.readFileSync(path.join(root, f), 'utf8');
  return out;
}

describe('DVCLive: the files dvclive 3.49.0 writes', () => {
  it("an Accelerate-style run is byte-identical to upstream's (fixtures/accelerate-run)", async () => {
    const { t, root } = await tracker({ run_name: 'ignored' });
    await t.storeInitConfiguration({ lr: 0.001, layers: 4, optimizer: 'adam' });
    for (let s = 0; s < 5; s++) t.log({ loss: 1 / (s + 1), acc: s / 5 });
    await t.finish();
    expect(fixtureBytes('ours', root)).toEqual(fixtureBytes('upstream', path.join(FIXTURES, 'accelerate-run')));
  });

  it('explicit steps give the same files (live.step = s, then next_step)', async () => {
    const { t, root } = await tracker();
    await t.storeInitConfiguration({ lr: 0.001, layers: 4, optimizer: 'adam' });
    for (let s = 0; s < 5; s++) t.log({ loss: 1 / (s + 1), acc: s / 5 }, s);
    await t.finish();
    expect(fixtureBytes('ours', root)).toEqual(fixtureBytes('upstream', path.join(FIXTURES, 'accelerate-run')));
  });

  it('edge values are spelled as upstream writes them (fixtures/values-run)', async () => {
    const { t, root, dir } = await tracker();
    await t.storeInitConfiguration({ lr: 1e-5, layers: 4, name: 'yes', opt: { beta: [0.9, 0.999], eps: null }, flag: true, empty: '' });
    t.log({ 'train/loss': 0.5, tiny: 1e-7, big: 1e16, whole: 3, flag: true }, 0);
    t.log({ 'train/loss': NaN, 'train/acc': Infinity, neg: -Infinity, flag: false });
    t.log({ 'train/loss': 0.25, whole: -0 }, 5);
    await t.finish();
    const want = fixtureBytes('upstream', path.join(FIXTURES, 'values-run'));
    const got = fixtureBytes('ours', root);
    expect(Object.keys(got)).toEqual(Object.keys(want));
    for (const f of Object.keys(want)) {
      if (f === 'dvclive/params.yaml') continue; // YAML spelling differs (0.00001 vs 1e-05); compared decoded below
      expect(got[f], f).toBe(want[f]);
    }
    expect(decode(dir).params).toEqual(decode(path.join(FIXTURES, 'values-run', 'dvclive')).params);
  });
});

describe('DVCLive: steps as Accelerate', () => {
  it('every log() advances the step; an explicit step sets it (0, 1, 3)', async () => {
    const { t, dir } = await tracker();
    t.log({ x: 1 });
    t.log({ x: 2 });
    t.log({ x: 3 }, 3);
    await t.finish();
    const d = decode(dir);
    expect(d.plots.x).toEqual([
      [0, '1.0'],
      [1, '2.0'],
      [3, '3.0'],
    ]);
    expect(d.metrics).toEqual({ x: 3, step: 3 });
    expect(t.tracker.step).toBe(3);
  });

  it('a log() whose values were all skipped still advances the step', async () => {
    const { t, dir } = await tracker();
    t.log({ skipped: null });
    t.log({ x: 1 });
    await t.finish();
    expect(decode(dir).plots.x).toEqual([[1, '1.0']]);
    expect(warnings.filter((w) => w.includes('"skipped"'))).toHaveLength(1);
  });

  it('kwargs: timestamp adds the timestamp column, plot: false keeps a value out of the TSV', async () => {
    const { t, dir } = await tracker();
    const before = Date.now();
    t.log({ a: 1 }, undefined, { timestamp: true });
    t.log({ a: 2, b: 7 }, undefined, { timestamp: true, plot: false });
    await t.finish();
    const d = decode(dir);
    expect(d.headers.a).toEqual(['timestamp', 'step', 'a']);
    expect(d.plots.a).toEqual([[0, '1.0']]);
    expect(d.plots.b).toBeUndefined();
    expect(d.metrics).toEqual({ a: 2, step: 1, b: 7 });
    const ts = Number(fs.readFileSync(path.join(dir, 'plots/metrics/a.tsv'), 'utf8').split('\n')[1]!.split('\t')[0]);
    expect(ts).toBeGreaterThanOrEqual(before);
    expect(ts).toBeLessThanOrEqual(Date.now());
  });
});

describe('DVCLive: dvc.yaml', () => {
  it('dvcyaml inside the directory: one entry each, however many steps (upstream appends duplicates)', async () => {
    const root = tempDir('dvclive-');
    const dir = path.join(root, 'run');
    const t = new DVCLiveTracker({ dir, dvcyaml: path.join(dir, 'dvc.yaml') });
    await t.start();
    await t.storeInitConfiguration({ a: 1 });
    for (let s = 0; s < 3; s++) {
      t.log({ loss: s });
      await t.flush();
    }
    await t.finish();
    expect(decode(dir, path.join(dir, 'dvc.yaml')).dvcYaml).toEqual({
      params: ['params.yaml'],
      metrics: ['metrics.json'],
      plots: [{ 'plots/metrics': { x: 'step' } }],
    });
  });

  it("keeps other tools' content and entries, and replaces its own stale ones", async () => {
    const root = tempDir('dvclive-');
    fs.writeFileSync(
      path.join(root, 'dvc.yaml'),
      '# my pipeline\nstages:\n  train:\n    cmd: python train.py\nmetrics:\n- other/metrics.json\n- dvclive/old.json\nplots:\n- dvclive/plots/metrics:\n    x: step\n',
    );
    const { t } = await tracker({}, root);
    t.log({ loss: 1 });
    await t.finish();
    const text = fs.readFileSync(path.join(root, 'dvc.yaml'), 'utf8');
    expect(text).toContain('# my pipeline');
    expect(decode(path.join(root, 'dvclive'), path.join(root, 'dvc.yaml')).dvcYaml).toEqual({
      stages: { train: { cmd: 'python train.py' } },
      metrics: ['other/metrics.json', 'dvclive/metrics.json'],
      plots: [{ 'dvclive/plots/metrics': { x: 'step' } }],
    });
  });

  it('dvcyaml: false writes none; a file not named dvc.yaml is a ConfigError naming the option', async () => {
    const { t, root } = await tracker({ dvcyaml: false });
    t.log({ a: 1 });
    await t.finish();
    expect(fs.existsSync(path.join(root, 'dvc.yaml'))).toBe(false);
    const bad = new DVCLiveTracker({ dir: path.join(root, 'x'), dvcyaml: path.join(root, 'pipeline.yaml') });
    const err = await bad.start().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).option).toBe('dvcyaml');
    expect((err as Error).message).toMatch(/named dvc\.yaml/);
  });

  it('an unparsable dvc.yaml is a BackendError naming it; the metrics are still written', async () => {
    const root = tempDir('dvclive-');
    fs.writeFileSync(path.join(root, 'dvc.yaml'), 'stages: [unclosed\n');
    const { t, dir } = await tracker({}, root);
    t.log({ a: 1 });
    const err = await t.finish().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BackendError);
    expect((err as Error).message).toContain(path.join(root, 'dvc.yaml'));
    expect(decode(dir).plots.a).toEqual([[0, '1.0']]);
    expect(fs.readFileSync(path.join(root, 'dvc.yaml'), 'utf8')).toBe('stages: [unclosed\n');
  });
});

describe('DVCLive: bad input', () => {
  it.each(['../escape', '/abs', 'a//b', 'a/./b', 'a/../../b', 'trail/', '', 'nul\0x'])('metric name %j is a ValidationError naming it; nothing is written outside', async (name) => {
    const { t, root, dir } = await tracker();
    t.log({ ok: 1 });
    const err = (() => {
      try {
        t.log({ [name]: 1 });
      } catch (e) {
        return e;
      }
    })();
    expect(err).toBeInstanceOf(ValidationError);
    expect((err as Error).message).toContain(JSON.stringify(name));
    t.log({ ok: 2 });
    await t.finish();
    expect(listFiles(root)).toEqual(['dvc.yaml', 'dvclive/metrics.json', 'dvclive/plots/metrics/ok.tsv']);
    expect(decode(dir).plots.ok).toEqual([
      [0, '1.0'],
      [1, '2.0'],
    ]);
  });

  it('a name that is both a value and a group in metrics.json is a ValidationError', async () => {
    const { t } = await tracker();
    t.log({ train: 1 });
    expect(() => t.log({ 'train/loss': 1 })).toThrow(/"train\/loss" conflicts with "train"/);
    t.log({ 'eval/loss': 1 });
    expect(() => t.log({ eval: 1 })).toThrow(ValidationError);
    await t.finish();
  });

  it('values Accelerate skips are warned once per key; config values that are not JSON-like are a ValidationError', async () => {
    const { t, dir } = await tracker();
    t.log({ a: [1, 2], b: { x: 1 }, c: 1 });
    t.log({ a: [1], c: 2 });
    expect(warnings.filter((w) => w.includes('"a"'))).toHaveLength(1);
    expect(warnings.filter((w) => w.includes('"b"'))).toHaveLength(1);
    await expect(t.storeInitConfiguration({ when: new Date(0) })).rejects.toThrow(ValidationError);
    await expect(t.storeInitConfiguration({ nested: { when: new Map() } })).rejects.toThrow(/\/nested\/when is a Map/);
    await t.storeInitConfiguration({ ok: 1 });
    await t.finish();
    expect(decode(dir).params).toEqual({ ok: 1 });
  });

  it('a failed write rejects flush() with a BackendError naming the file; nothing is lost and the next write catches up', async () => {
    const { t, dir } = await tracker();
    t.log({ loss: 1 });
    await t.flush();
    const file = path.join(dir, 'plots/metrics/loss.tsv');
    fs.rmSync(file);
    fs.mkdirSync(file); // appending now fails (EISDIR)
    t.log({ loss: 2 });
    const err = await t.flush().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BackendError);
    expect((err as Error).message).toContain(file);
    fs.rmdirSync(file);
    fs.writeFileSync(file, 'step\tloss\n0\t1.0\n');
    t.log({ loss: 3 });
    await t.finish();
    expect(decode(dir).plots.loss).toEqual([
      [0, '1.0'],
      [1, '2.0'],
      [2, '3.0'],
    ]);
  });
});

describe('DVCLive: start, resume, images', () => {
  it("start() clears dvclive's files in dir (not others) unless resuming", async () => {
    const { t, dir } = await tracker();
    await t.storeInitConfiguration({ a: 1 });
    t.log({ old: 1 });
    await t.finish();
    fs.writeFileSync(path.join(dir, 'keep.txt'), 'mine');
    fs.writeFileSync(path.join(dir, 'dvc.yaml'), 'x: 1\n');
    const t2 = new DVCLiveTracker({ dir, dvcyaml: false });
    await t2.start();
    await t2.finish();
    expect(listFiles(dir)).toEqual(['keep.txt', 'metrics.json']);
  });

  it('resume (or DVCLIVE_RESUME=true) continues after the last step, appends to the TSVs and keeps params', async () => {
    const { t, dir, root } = await tracker();
    await t.storeInitConfiguration({ a: 1 });
    t.log({ loss: 1 });
    t.log({ loss: 2 });
    await t.finish();
    process.env.DVCLIVE_RESUME = 'true';
    try {
      const t2 = new DVCLiveTracker({ dir, dvcyaml: path.join(root, 'dvc.yaml') });
      expect(t2.options.resume).toBe(true);
      await t2.start();
      await t2.storeInitConfiguration({ b: 2 });
      t2.log({ loss: 3 });
      await t2.finish();
    } finally {
      delete process.env.DVCLIVE_RESUME;
    }
    const d = decode(dir);
    expect(d.plots.loss).toEqual([
      [0, '1.0'],
      [1, '2.0'],
      [2, '3.0'],
    ]);
    expect(d.params).toEqual({ a: 1, b: 2 });
    expect(d.metrics).toEqual({ loss: 3, step: 2 });
  });

  it('removes temporaries left by a dead process at start()', async () => {
    const root = tempDir('dvclive-');
    const dir = path.join(root, 'dvclive');
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(path.join(dir, '.metrics.json.999999999.tmp'), '{');
    const { t } = await tracker({ resume: true }, root);
    await t.finish();
    expect(fs.existsSync(path.join(dir, '.metrics.json.999999999.tmp'))).toBe(false);
  });

  it('logImages writes PNGs under plots/images and lists them in dvc.yaml', async () => {
    const { t, dir, root } = await tracker();
    const img = { data: new Uint8Array([255, 0, 0, 0, 255, 0]), height: 1, width: 2, channels: 3 };
    t.logImages({ sample: img, grid: [img, img] });
    expect(() => t.logImages({ 'x.jpg': img })).toThrow(/must end in \.png/);
    expect(() => t.logImages({ '../x': img })).toThrow(ValidationError);
    await t.finish();
    expect(listFiles(path.join(dir, 'plots/images'))).toEqual(['grid/0.png', 'grid/1.png', 'sample.png']);
    const png = decodePngRgba(fs.readFileSync(path.join(dir, 'plots/images/sample.png')));
    expect([png.width, png.height, ...png.data.slice(0, 4)]).toEqual([2, 1, 255, 0, 0, 255]);
    expect(decode(dir, path.join(root, 'dvc.yaml')).dvcYaml).toEqual({ plots: ['dvclive/plots/images'] }); // no metrics entry: the summary is empty, as upstream
  });
});

describe('DVCLive in Tracking', () => {
  it("'all' includes dvclive, and init_kwargs reach it", async () => {
    const root = tempDir('dvclive-');
    const tr = new Tracking({ log_with: 'all', logging_dir: root });
    expect(tr.logWith.map((e) => ('trackerName' in e ? e.trackerName : e.name))).toContain('dvclive');
    const tr2 = new Tracking({ log_with: ['dvclive'] });
    await tr2.initTrackers('proj', { lr: 0.1 }, { dvclive: { dir: path.join(root, 'd'), dvcyaml: false } });
    tr2.log({ loss: 0.5 }, 2);
    await tr2.endTraining();
    expect(decode(path.join(root, 'd'))).toMatchObject({ params: { lr: 0.1 }, metrics: { loss: 0.5, step: 2 } });
  });
});

describe('DVCLive config files', () => {
  it('trackspec validate accepts dvclive options and names a wrong one', () => {
    const root = tempDir('dvclive-cfg-');
    const good = path.join(root, 'good.yaml');
    fs.writeFileSync(good, 'project_name: p\nlog_with: [dvclive]\ninit_kwargs:\n  dvclive: { dir: out, dvcyaml: false, resume: true }\n');
    expect(runCli(['validate', good])).toMatchObject({ code: 0 });
    const bad = path.join(root, 'bad.yaml');
    fs.writeFileSync(bad, 'project_name: p\nlog_with: [dvclive]\ninit_kwargs:\n  dvclive: { dri: out, resume: maybe }\n');
    const r = runCli(['validate', bad]);
    expect(r.code).toBe(1);
    expect(r.stdout).toContain('/init_kwargs/dvclive/dri  unknown dvclive option "dri"; did you mean "dir"?');
    expect(r.stdout).toContain('/init_kwargs/dvclive/resume  must be boolean');
  }, 60_000);
});

describe('DVCLive text metrics', () => {
  it('log() skips strings with one warning per key (they would break dvclive\'s Studio reader); Live.logMetric still writes them csv-quoted', async () => {
    const { t, dir } = await tracker();
    t.log({ note: 'a', x: 1 });
    t.log({ note: 'b', x: 2 });
    expect(warnings.filter((w) => w.includes('"note"'))).toHaveLength(1);
    t.tracker.logMetric('text', 'a\tb "q"');
    t.tracker.nextStep();
    await t.finish();
    expect(decode(dir).plots.note).toBeUndefined();
    expect(fs.readFileSync(path.join(dir, 'plots/metrics/text.tsv'), 'utf8')).toBe('step\ttext\n2\t"a\tb ""q"""\n');
    expect(decode(dir).plots.text).toEqual([[2, 'a\tb "q"']]);
  });
});

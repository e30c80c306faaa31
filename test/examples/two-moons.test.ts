import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runDemo } from '../../examples/two-moons.js';
import { ConfigError } from '../../runtime/core/errors.js';
import {
  SESSION_END_TAG,
  SESSION_START_TAG,
  SessionStatus,
  decodeHParamsPluginData,
  decodePngRgba,
  listEventFiles,
  readEvents,
  scalarOf,
  textOf,
  type DecodedEvent,
  type DecodedValue,
} from '../../runtime/backends/tensorboard/index.js';
import { setWarningHandler } from '../../runtime/core/warnings.js';

const SEED = 7;
const STEPS = 300;
const EVAL_STEPS = Array.from({ length: 13 }, (_, i) => i * 25); // 0, 25, ..., 300
const IMAGE_STEPS = [0, 100, 200, 300];

/** Every decoded event of the event files directly in `dir`, asserting each file reads cleanly. */
async function eventsIn(dir: string): Promise<DecodedEvent[]> {
  const files = listEventFiles(dir);
  expect(files.length, `event files in ${dir}`).toBeGreaterThan(0);
  const out: DecodedEvent[] = [];
  for (const f of files) {
    const r = await readEvents(f);
    expect(r.error, `read error in ${f}`).toBeUndefined();
    out.push(...r.events);
  }
  return out;
}

function valuesOf(events: DecodedEvent[], tag: string): Array<{ step: number; v: DecodedValue }> {
  return events.flatMap((e) => (e.summary ?? []).filter((v) => v.tag === tag).map((v) => ({ step: e.step, v })));
}

/** The scalar series of `tag` as step → value. */
function series(events: DecodedEvent[], tag: string): Map<number, number> {
  const m = new Map<number, number>();
  for (const { step, v } of valuesOf(events, tag)) {
    const x = scalarOf(v);
    expect(x, `${tag}@${step} is a scalar`).toBeTypeOf('number');
    expect(m.has(step), `${tag} logged once at step ${step}`).toBe(false);
    m.set(step, x!);
  }
  return m;
}

const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
const range = (a: number, b: number) => Array.from({ length: b - a + 1 }, (_, i) => a + i);

/** The demo also logs to an MLflow file store; keep it out of the working directory. */
const MLRUNS = fs.mkdtempSync(path.join(os.tmpdir(), 'trackspec-demo-mlruns-'));
// ...and its spool lookups away from the user's real spool directory.
process.env.TRACKSPEC_SPOOL_DIR = fs.mkdtempSync(path.join(os.tmpdir(), 'trackspec-demo-spool-'));

describe('trackspec demo', () => {
  let logdir: string;
  let first: Awaited<ReturnType<typeof runDemo>>;
  let firstLines: string[];
  let firstSeconds: number;
  let events: DecodedEvent[];
  const warnings: string[] = [];
  let restoreWarnings: ReturnType<typeof setWarningHandler>;

  beforeAll(async () => {
    restoreWarnings = setWarningHandler((m) => void warnings.push(m));
    logdir = fs.mkdtempSync(path.join(os.tmpdir(), 'trackspec-demo-test-'));
    firstLines = [];
    const t0 = performance.now();
    first = await runDemo({ mlruns: MLRUNS, logdir, seed: SEED, out: (l) => void firstLines.push(l) });
    firstSeconds = (performance.now() - t0) / 1000;
    events = await eventsIn(first.runDir);
  });

  afterAll(() => {
    setWarningHandler(restoreWarnings);
    fs.rmSync(logdir, { recursive: true, force: true });
  });

  it('writes to <logdir>/trackspec-demo quickly and without warnings', () => {
    expect(first.runDir).toBe(path.join(path.resolve(logdir), 'trackspec-demo'));
    expect(first.steps).toBe(STEPS);
    expect(firstSeconds).toBeLessThan(5);
    expect(warnings).toEqual([]);
    expect(fs.existsSync(path.join(first.runDir, 'hparams.yml'))).toBe(true);
  });

  it('logs train/loss and train/accuracy at every step 1..steps', () => {
    for (const tag of ['train/loss', 'train/accuracy']) {
      expect([...series(events, tag).keys()].sort((a, b) => a - b), tag).toEqual(range(1, STEPS));
    }
    const acc = [...series(events, 'train/accuracy').values()];
    expect(acc.every((a) => a >= 0 && a <= 1)).toBe(true);
  });

  it('train loss goes clearly down', () => {
    const loss = series(events, 'train/loss');
    const start = mean(range(1, 20).map((s) => loss.get(s)!));
    const end = mean(range(STEPS - 19, STEPS).map((s) => loss.get(s)!));
    expect(loss.get(STEPS)!).toBeLessThan(0.6 * loss.get(1)!);
    expect(end).toBeLessThan(0.6 * start);
    const evalLoss = series(events, 'eval/loss');
    expect(evalLoss.get(STEPS)!).toBeLessThan(0.6 * evalLoss.get(0)!);
  });

  it('evaluates on the held-out split at step 0, every 25 steps and at the end', () => {
    for (const tag of ['eval/loss', 'eval/accuracy']) {
      expect([...series(events, tag).keys()].sort((a, b) => a - b), tag).toEqual(EVAL_STEPS);
    }
    const acc = series(events, 'eval/accuracy').get(STEPS)!;
    expect(acc).toBeGreaterThan(0.8);
    // The result reports the final eval metrics (event values are float32).
    expect(first.finalAccuracy).toBeCloseTo(acc, 5);
    expect(first.finalLoss).toBeCloseTo(series(events, 'eval/loss').get(STEPS)!, 5);
  });

  it('writes the nested loss/accuracy objects as add_scalars sub-runs', async () => {
    for (const [metric, split] of [
      ['loss', 'train'],
      ['loss', 'eval'],
      ['accuracy', 'train'],
      ['accuracy', 'eval'],
    ] as const) {
      const dir = path.join(first.runDir, `${metric}_${split}`);
      expect(fs.statSync(dir).isDirectory(), dir).toBe(true);
      const sub = series(await eventsIn(dir), metric);
      expect([...sub.keys()].sort((a, b) => a - b), dir).toEqual(EVAL_STEPS);
      if (split === 'eval') expect(sub.get(STEPS)).toBe(series(events, `eval/${metric}`).get(STEPS));
    }
  });

  it('records the hyperparameters as an hparams session', () => {
    const [start] = valuesOf(events, SESSION_START_TAG);
    expect(start, 'session_start_info').toBeDefined();
    expect(start!.v.metadata?.pluginName).toBe('hparams');
    const hp = decodeHParamsPluginData(start!.v.metadata!.pluginContent!).sessionStartInfo?.hparams;
    expect(hp).toMatchObject({
      dataset: 'two_moons',
      optimizer: 'adam',
      lr: 0.03,
      hidden_units: 16,
      batch_size: 32,
      steps: STEPS,
      seed: SEED,
    });
    const [end] = valuesOf(events, SESSION_END_TAG);
    expect(decodeHParamsPluginData(end!.v.metadata!.pluginContent!).sessionEndInfo?.status).toBe(SessionStatus.SUCCESS);
    expect(fs.readFileSync(path.join(first.runDir, 'hparams.yml'), 'utf8')).toContain('optimizer: adam');
  });

  it('logs a summary text once and decision-boundary images', () => {
    const texts = valuesOf(events, 'summary');
    expect(texts).toHaveLength(1);
    expect(texts[0]!.step).toBe(STEPS);
    expect(texts[0]!.v.metadata?.pluginName).toBe('text');
    expect(textOf(texts[0]!.v)).toMatch(/\| eval \| 0\.\d+ \| \d+\.\d%/);

    const images = valuesOf(events, 'decision_boundary');
    expect(images.map((x) => x.step)).toEqual(IMAGE_STEPS);
    for (const { v } of images) {
      expect(v.image).toMatchObject({ height: 128, width: 128, colorspace: 3 });
      const png = decodePngRgba(v.image!.encodedImage);
      expect([png.width, png.height]).toEqual([128, 128]);
    }
  });

  it('prints a short report ending with the tensorboard command', () => {
    expect(firstLines.length).toBeGreaterThanOrEqual(4);
    expect(firstLines.length).toBeLessThanOrEqual(15);
    const text = firstLines.join('\n');
    expect(text).toContain(path.join(logdir, 'trackspec-demo'));
    expect(text).toMatch(/final train: loss 0\.\d+, accuracy \d+\.\d% \| eval: loss 0\.\d+, accuracy \d+\.\d%/);
    expect(firstLines.at(-2)!.trim()).toBe(`tensorboard --logdir ${logdir}`);
    expect(firstLines.at(-1)!.trim()).toBe(`mlflow ui --backend-store-uri ${MLRUNS}`);
  });

  it('logs the same run to the MLflow file store (experiment trackspec-demo)', () => {
    const exps = fs.readdirSync(MLRUNS).filter((d) => d !== '0' && fs.existsSync(path.join(MLRUNS, d, 'meta.yaml')));
    const exp = exps.find((d) => fs.readFileSync(path.join(MLRUNS, d, 'meta.yaml'), 'utf8').includes('name: trackspec-demo'))!;
    expect(exp).toBeDefined();
    const runs = fs.readdirSync(path.join(MLRUNS, exp)).filter((d) => /^[0-9a-f]{32}$/.test(d));
    const withName = runs.find((r) => fs.readFileSync(path.join(MLRUNS, exp, r, 'tags', 'mlflow.runName'), 'utf8') === 'trackspec-demo')!;
    const dir = path.join(MLRUNS, exp, withName);
    const loss = fs.readFileSync(path.join(dir, 'metrics', 'train', 'loss'), 'utf8').trimEnd().split('\n');
    expect(loss).toHaveLength(300);
    expect(fs.readFileSync(path.join(dir, 'params', 'optimizer'), 'utf8')).toBe('adam');
    expect(fs.readFileSync(path.join(dir, 'meta.yaml'), 'utf8')).toMatch(/^status: 3$/m);
  });

  it('puts a second run in trackspec-demo-2, with identical results for the same seed', async () => {
    const lines: string[] = [];
    const second = await runDemo({ mlruns: MLRUNS, logdir, seed: SEED, out: (l) => void lines.push(l) });
    expect(second.runDir).toBe(path.join(path.resolve(logdir), 'trackspec-demo-2'));
    expect(listEventFiles(second.runDir)).toHaveLength(1);
    expect(listEventFiles(first.runDir)).toHaveLength(1); // the first run is untouched
    expect(second.finalLoss).toBe(first.finalLoss);
    expect(second.finalAccuracy).toBe(first.finalAccuracy);
    const other = await runDemo({ mlruns: MLRUNS, logdir, seed: SEED + 1, steps: 30, out: () => {} });
    expect(other.runDir).toBe(path.join(path.resolve(logdir), 'trackspec-demo-3'));
  });

  it('reuses a run directory that holds no event files', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'trackspec-demo-test-'));
    try {
      fs.mkdirSync(path.join(dir, 'trackspec-demo'));
      const r = await runDemo({ mlruns: MLRUNS, logdir: dir, steps: 24, out: () => {} });
      expect(r.runDir).toBe(path.join(path.resolve(dir), 'trackspec-demo'));
      expect(r.steps).toBe(24);
      expect([...series(await eventsIn(r.runDir), 'eval/loss').keys()].sort((a, b) => a - b)).toEqual(range(0, 12).map((i) => 2 * i));
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('rejects bad options with a ConfigError before writing anything', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'trackspec-demo-test-'));
    try {
      await expect(runDemo({ mlruns: MLRUNS, logdir: dir, steps: 0, out: () => {} })).rejects.toThrow(ConfigError);
      await expect(runDemo({ mlruns: MLRUNS, logdir: dir, steps: 2.5, out: () => {} })).rejects.toThrow(/steps must be an integer/);
      await expect(runDemo({ mlruns: MLRUNS, logdir: dir, seed: -1, out: () => {} })).rejects.toThrow(/seed/);
      expect(fs.readdirSync(dir)).toEqual([]);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

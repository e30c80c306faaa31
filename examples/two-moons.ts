/**
 * `trackspec demo`: a newcomer's first run, right after install, no network and no Python.
 *
 * Trains a small MLP (2 → 16 → 1, tanh, sigmoid output, binary cross-entropy) with Adam written by
 * hand on a synthetic "two moons" dataset drawn from a seeded PRNG, and logs it through the public
 * SDK exactly as a user would:
 *
 * - `new Tracking({ log_with: 'tensorboard', logging_dir })` + `initTrackers(runName, hyperparams)`
 *   → `hparams.yml` and TensorBoard's HParams dashboard;
 * - every step: `train/loss`, `train/accuracy` (the minibatch, before its update);
 * - every `evalEvery` steps (and at step 0 and the last step): `eval/loss`, `eval/accuracy` on the
 *   held-out split, plus nested `{ loss: { train, eval }, accuracy: { train, eval } }` (full splits)
 *   → add_scalars sub-runs `loss_train`, `loss_eval`, `accuracy_train`, `accuracy_eval`, so train
 *   and eval share one chart;
 * - a picture of the decision boundary (`decision_boundary`, RGB) at step 0, every ~steps/3 steps
 *   and at the end, via `getTracker('tensorboard').logImages`;
 * - a markdown `summary` text at the end; then `endTraining()`.
 *
 * Everything is deterministic for a given seed (data, initialisation, minibatch order).
 * The run directory is `<logdir>/trackspec-demo`, or `trackspec-demo-2`, `-3`, ... when that one
 * already holds event files, so re-running never mixes two runs.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';
import { ConfigError, Tracking, type GeneralTracker, type ImageData, type ImageLogger } from '../generated/index.gen.js';

export interface DemoOptions {
  /** Root directory of the runs (what `tensorboard --logdir` is pointed at). Default `./runs`. */
  logdir?: string;
  /** Optimisation steps (minibatches). Default 300. */
  steps?: number;
  /** Seed of the data, the initialisation and the minibatch order. Default 42. */
  seed?: number;
  /** Where progress lines go. Default `console.log`. */
  out?: (line: string) => void;
  /** MLflow file store the demo also logs to (`mlflow ui --backend-store-uri ./mlruns`). Default `./mlruns`; null: TensorBoard only. */
  mlruns?: string | null;
}

const DEFAULT_MLRUNS = './mlruns';

export interface DemoResult {
  /** The run directory the event files were written to (absolute). */
  runDir: string;
  /** Loss on the held-out (eval) split after the last step. */
  finalLoss: number;
  /** Accuracy (0..1) on the held-out (eval) split after the last step. */
  finalAccuracy: number;
  /** Steps trained. */
  steps: number;
}

const RUN_NAME = 'trackspec-demo';
const DEFAULT_LOGDIR = './runs';
const DEFAULT_STEPS = 300;
const DEFAULT_SEED = 42;
const MAX_STEPS = 1_000_000;

const N_TRAIN = 400;
const N_EVAL = 200;
const NOISE = 0.2;
const HIDDEN = 16;
const BATCH = 32;
const LR = 0.03;
const BETA1 = 0.9;
const BETA2 = 0.999;
const EPS = 1e-8;
const IMAGE_SIZE = 128;

// ---------------------------------------------------------------------------------------------
// Data

/** mulberry32: a tiny, fast, seedable 32-bit PRNG. Returns floats in [0, 1). */
function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Standard normal sample (Box–Muller). */
function gaussian(rand: () => number): number {
  const u = 1 - rand(); // (0, 1]: log(u) is finite
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * rand());
}

interface Dataset {
  /** Row-major n×2 points. */
  x: Float64Array;
  /** Labels 0/1. */
  y: Uint8Array;
  n: number;
}

/** Two interleaving half circles (scikit-learn's make_moons), shuffled, with Gaussian noise. */
function makeMoons(n: number, noise: number, rand: () => number): Dataset {
  const x = new Float64Array(n * 2);
  const y = new Uint8Array(n);
  for (let i = 0; i < n; i++) {
    const label = i % 2;
    const t = Math.PI * rand();
    const px = label === 0 ? Math.cos(t) : 1 - Math.cos(t);
    const py = label === 0 ? Math.sin(t) : 0.5 - Math.sin(t);
    x[2 * i] = px + noise * gaussian(rand);
    x[2 * i + 1] = py + noise * gaussian(rand);
    y[i] = label;
  }
  return { x, y, n };
}

function permutation(n: number, rand: () => number): Uint32Array {
  const p = new Uint32Array(n);
  for (let i = 0; i < n; i++) p[i] = i;
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    const t = p[i]!;
    p[i] = p[j]!;
    p[j] = t;
  }
  return p;
}

// ---------------------------------------------------------------------------------------------
// Model: 2 → HIDDEN (tanh) → 1 (logit), all parameters in one flat vector for Adam.

class Mlp {
  readonly params: Float64Array;
  readonly grads: Float64Array;
  private readonly w1: Float64Array; // HIDDEN×2
  private readonly b1: Float64Array; // HIDDEN
  private readonly w2: Float64Array; // HIDDEN
  private readonly b2: Float64Array; // 1
  private readonly gw1: Float64Array;
  private readonly gb1: Float64Array;
  private readonly gw2: Float64Array;
  private readonly gb2: Float64Array;
  private readonly h = new Float64Array(HIDDEN);
  /** Input standardisation (train-set mean/std), so the raw moons coordinates can be fed in. */
  private readonly mean: [number, number];
  private readonly std: [number, number];

  constructor(rand: () => number, train: Dataset) {
    const size = HIDDEN * 2 + HIDDEN + HIDDEN + 1;
    this.params = new Float64Array(size);
    this.grads = new Float64Array(size);
    const views = (a: Float64Array) => {
      let o = 0;
      const take = (k: number) => a.subarray(o, (o += k));
      return [take(HIDDEN * 2), take(HIDDEN), take(HIDDEN), take(1)] as const;
    };
    [this.w1, this.b1, this.w2, this.b2] = views(this.params);
    [this.gw1, this.gb1, this.gw2, this.gb2] = views(this.grads);
    // Glorot-uniform hidden weights; a small output layer, so every seed starts near p = 0.5
    // (loss ≈ ln 2); zero biases.
    const l1 = Math.sqrt(6 / (2 + HIDDEN));
    for (let i = 0; i < this.w1.length; i++) this.w1[i] = (2 * rand() - 1) * l1;
    const l2 = 0.1 * Math.sqrt(6 / (HIDDEN + 1));
    for (let i = 0; i < this.w2.length; i++) this.w2[i] = (2 * rand() - 1) * l2;

    const mean: [number, number] = [0, 0];
    const sq: [number, number] = [0, 0];
    for (let i = 0; i < train.n; i++) {
      for (let d = 0; d < 2; d++) {
        const v = train.x[2 * i + d]!;
        mean[d] += v;
        sq[d] += v * v;
      }
    }
    mean[0] /= train.n;
    mean[1] /= train.n;
    this.mean = mean;
    this.std = [Math.sqrt(sq[0] / train.n - mean[0] ** 2) || 1, Math.sqrt(sq[1] / train.n - mean[1] ** 2) || 1];
  }

  /** Logit for a raw point; leaves the hidden activations in `this.h`. */
  forward(px: number, py: number): number {
    const a = (px - this.mean[0]) / this.std[0];
    const b = (py - this.mean[1]) / this.std[1];
    const { w1, b1, w2, h } = this;
    let z = this.b2[0]!;
    for (let j = 0; j < HIDDEN; j++) {
      const hj = Math.tanh(w1[2 * j]! * a + w1[2 * j + 1]! * b + b1[j]!);
      h[j] = hj;
      z += w2[j]! * hj;
    }
    return z;
  }

  /** Accumulate d(loss)/d(params) for one point, given dLoss/dLogit, after `forward` on it. */
  private backward(px: number, py: number, dz: number): void {
    const a = (px - this.mean[0]) / this.std[0];
    const b = (py - this.mean[1]) / this.std[1];
    const { w2, h, gw1, gb1, gw2 } = this;
    this.gb2[0] += dz;
    for (let j = 0; j < HIDDEN; j++) {
      const hj = h[j]!;
      gw2[j] += dz * hj;
      const dpre = dz * w2[j]! * (1 - hj * hj);
      gb1[j] += dpre;
      gw1[2 * j] += dpre * a;
      gw1[2 * j + 1] += dpre * b;
    }
  }

  /** Mean BCE loss and accuracy of a minibatch; fills `grads` with the mean gradient. */
  lossAndGrad(data: Dataset, idx: ArrayLike<number>): { loss: number; accuracy: number } {
    this.grads.fill(0);
    let loss = 0;
    let correct = 0;
    const n = idx.length;
    for (let k = 0; k < n; k++) {
      const i = idx[k]!;
      const px = data.x[2 * i]!;
      const py = data.x[2 * i + 1]!;
      const y = data.y[i]!;
      const z = this.forward(px, py);
      loss += bce(z, y);
      if ((z > 0 ? 1 : 0) === y) correct++;
      this.backward(px, py, (sigmoid(z) - y) / n);
    }
    return { loss: loss / n, accuracy: correct / n };
  }

  /** Mean BCE loss and accuracy over a whole split (no gradients). */
  evaluate(data: Dataset): { loss: number; accuracy: number } {
    let loss = 0;
    let correct = 0;
    for (let i = 0; i < data.n; i++) {
      const z = this.forward(data.x[2 * i]!, data.x[2 * i + 1]!);
      loss += bce(z, data.y[i]!);
      if ((z > 0 ? 1 : 0) === data.y[i]) correct++;
    }
    return { loss: loss / data.n, accuracy: correct / data.n };
  }
}

function sigmoid(z: number): number {
  return z >= 0 ? 1 / (1 + Math.exp(-z)) : Math.exp(z) / (1 + Math.exp(z));
}

/** Binary cross-entropy of a logit, numerically stable. */
function bce(z: number, y: number): number {
  return Math.max(z, 0) - z * y + Math.log1p(Math.exp(-Math.abs(z)));
}

class Adam {
  private readonly m: Float64Array;
  private readonly v: Float64Array;
  private t = 0;
  constructor(
    private readonly params: Float64Array,
    private readonly grads: Float64Array,
    private readonly lr: number,
  ) {
    this.m = new Float64Array(params.length);
    this.v = new Float64Array(params.length);
  }
  step(): void {
    this.t++;
    const c1 = 1 - BETA1 ** this.t;
    const c2 = 1 - BETA2 ** this.t;
    const { params, grads, m, v } = this;
    for (let i = 0; i < params.length; i++) {
      const g = grads[i]!;
      m[i] = BETA1 * m[i]! + (1 - BETA1) * g;
      v[i] = BETA2 * v[i]! + (1 - BETA2) * g * g;
      params[i] -= (this.lr * (m[i]! / c1)) / (Math.sqrt(v[i]! / c2) + EPS);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Decision-boundary picture: background tinted by P(class 1), boundary line, training points.

const X_RANGE: [number, number] = [-1.6, 2.6];
const Y_RANGE: [number, number] = [-1.2, 1.7];
const BLUE: [number, number, number] = [31, 119, 180];
const ORANGE: [number, number, number] = [255, 127, 14];

function decisionBoundary(model: Mlp, train: Dataset, size: number): ImageData {
  const data = new Uint8Array(size * size * 3);
  const put = (r: number, c: number, rgb: readonly number[]) => {
    if (r < 0 || c < 0 || r >= size || c >= size) return;
    const o = (r * size + c) * 3;
    data[o] = rgb[0]!;
    data[o + 1] = rgb[1]!;
    data[o + 2] = rgb[2]!;
  };
  const probs = new Float64Array(size * size);
  for (let r = 0; r < size; r++) {
    const py = Y_RANGE[1] - ((r + 0.5) / size) * (Y_RANGE[1] - Y_RANGE[0]);
    for (let c = 0; c < size; c++) {
      const px = X_RANGE[0] + ((c + 0.5) / size) * (X_RANGE[1] - X_RANGE[0]);
      const p = sigmoid(model.forward(px, py));
      probs[r * size + c] = p;
      // Mix the class colours by p, then wash towards white (stronger tint where confident).
      const tint = 0.18 + 0.3 * Math.abs(2 * p - 1);
      put(r, c, [0, 1, 2].map((k) => Math.round(255 + (p * ORANGE[k]! + (1 - p) * BLUE[k]! - 255) * tint)));
    }
  }
  // Boundary: pixels where the predicted class differs from the right or lower neighbour.
  for (let r = 0; r < size; r++) {
    for (let c = 0; c < size; c++) {
      const here = probs[r * size + c]! > 0.5;
      const right = c + 1 < size && probs[r * size + c + 1]! > 0.5 !== here;
      const down = r + 1 < size && probs[(r + 1) * size + c]! > 0.5 !== here;
      if (right || down) put(r, c, [60, 60, 60]);
    }
  }
  for (let i = 0; i < train.n; i++) {
    const c = Math.floor(((train.x[2 * i]! - X_RANGE[0]) / (X_RANGE[1] - X_RANGE[0])) * size);
    const r = Math.floor(((Y_RANGE[1] - train.x[2 * i + 1]!) / (Y_RANGE[1] - Y_RANGE[0])) * size);
    const rgb = (train.y[i] ? ORANGE : BLUE).map((v) => Math.round(v * 0.85));
    put(r, c, rgb);
    put(r, c + 1, rgb);
    put(r + 1, c, rgb);
    put(r + 1, c + 1, rgb);
  }
  return { data, height: size, width: size, channels: 3 };
}

// ---------------------------------------------------------------------------------------------
// Run directory

/** Whether `dir` or one of its direct subdirectories (add_scalars sub-runs) holds event files. */
function hasEventFiles(dir: string, depth = 1): boolean {
  let entries: fs.Dirent[];
  try {
    entries = fs.readdirSync(dir, { withFileTypes: true });
  } catch {
    return false;
  }
  return entries.some(
    (e) => (e.isFile() && e.name.includes('tfevents')) || (depth > 0 && e.isDirectory() && hasEventFiles(path.join(dir, e.name), depth - 1)),
  );
}

/** `trackspec-demo`, or the first of `trackspec-demo-2`, `-3`, ... that is free (absent, or a directory without event files). */
function pickRunName(logdir: string): string {
  for (let i = 1; ; i++) {
    const name = i === 1 ? RUN_NAME : `${RUN_NAME}-${i}`;
    const dir = path.join(logdir, name);
    let stat: fs.Stats | undefined;
    try {
      stat = fs.statSync(dir);
    } catch {
      return name;
    }
    if (stat.isDirectory() && !hasEventFiles(dir)) return name;
  }
}

function shellQuote(s: string): string {
  return /^[\w@%+=:,./-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}

function checkInteger(name: string, v: number, min: number, max: number): void {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
    throw new ConfigError(`demo: ${name} must be an integer from ${min} to ${max}, got ${String(v)}`, { option: name });
  }
}

function isImageLogger(t: unknown): t is ImageLogger {
  return typeof (t as { logImages?: unknown } | null)?.logImages === 'function';
}

const pct = (x: number) => `${(100 * x).toFixed(1)}%`;

// ---------------------------------------------------------------------------------------------

/**
 * Train the demo model and log it to TensorBoard under `<logdir>/trackspec-demo[-N]`.
 * Rejects with `ConfigError` on bad options and with `BackendError` if the files cannot be written.
 */
export async function runDemo(options: DemoOptions = {}): Promise<DemoResult> {
  const logdir = options.logdir ?? DEFAULT_LOGDIR;
  const steps = options.steps ?? DEFAULT_STEPS;
  const seed = options.seed ?? DEFAULT_SEED;
  const out = options.out ?? ((line: string) => console.log(line));
  if (typeof logdir !== 'string' || logdir === '') throw new ConfigError('demo: logdir must be a non-empty path', { option: 'logdir' });
  checkInteger('steps', steps, 1, MAX_STEPS);
  checkInteger('seed', seed, 0, 0xffffffff);

  const started = performance.now();
  const evalEvery = Math.max(1, Math.round(steps / 12));
  const imageEvery = Math.max(1, Math.round(steps / 3));
  const reportEvery = Math.max(evalEvery, Math.ceil(steps / 3 / evalEvery) * evalEvery);

  const rand = mulberry32(seed);
  const train = makeMoons(N_TRAIN, NOISE, rand);
  const evalSet = makeMoons(N_EVAL, NOISE, rand);
  const model = new Mlp(rand, train);
  const adam = new Adam(model.params, model.grads, LR);

  const runName = pickRunName(logdir);
  const runDir = path.resolve(logdir, runName);
  const shownRunDir = path.join(logdir, runName);

  const hyperparams = {
    dataset: 'two_moons',
    n_train: N_TRAIN,
    n_eval: N_EVAL,
    noise: NOISE,
    model: `mlp 2-${HIDDEN}-1`,
    hidden_units: HIDDEN,
    activation: 'tanh',
    loss: 'binary_cross_entropy',
    optimizer: 'adam',
    lr: LR,
    beta1: BETA1,
    beta2: BETA2,
    batch_size: BATCH,
    steps,
    eval_every: evalEvery,
    seed,
  };

  out(
    `trackspec demo: training an MLP 2-${HIDDEN}-1 (tanh) with Adam (lr ${LR}, batch ${BATCH}) for ${steps} steps ` +
      `on "two moons" (${N_TRAIN} train / ${N_EVAL} eval points, seed ${seed})`,
  );
  out(`  logging to ${shownRunDir} with the TensorBoard tracker`);

  const mlruns = options.mlruns === undefined ? DEFAULT_MLRUNS : options.mlruns;
  const tr = new Tracking({ log_with: mlruns === null ? ['tensorboard'] : ['tensorboard', 'mlflow'], logging_dir: logdir });
  // The local MLflow file store; mlflow's experiment is named after the demo, the run after the TensorBoard run.
  await tr.initTrackers(runName, hyperparams, mlruns === null ? {} : { mlflow: { tracking_uri: mlruns, experiment_name: 'trackspec-demo', run_name: runName } });
  const tb = tr.getTracker('tensorboard') as GeneralTracker;
  const images = isImageLogger(tb) ? tb : undefined;

  let evalMetrics = { loss: NaN, accuracy: NaN };
  let trainMetrics = { loss: NaN, accuracy: NaN };
  // Flat metrics go to every tracker; the add_scalars comparison is TensorBoard's alone (MLflow
  // would skip a nested value with a warning).
  const evaluate = (step: number, values: Record<string, number>): void => {
    trainMetrics = model.evaluate(train);
    evalMetrics = model.evaluate(evalSet);
    values['eval/loss'] = evalMetrics.loss;
    values['eval/accuracy'] = evalMetrics.accuracy;
    tb.log({ loss: { train: trainMetrics.loss, eval: evalMetrics.loss }, accuracy: { train: trainMetrics.accuracy, eval: evalMetrics.accuracy } }, step);
    if (step % reportEvery === 0 || step === steps) {
      out(
        `  step ${String(step).padStart(String(steps).length)}  ` +
          `train loss ${trainMetrics.loss.toFixed(3)} acc ${pct(trainMetrics.accuracy).padStart(6)}  ` +
          `eval loss ${evalMetrics.loss.toFixed(3)} acc ${pct(evalMetrics.accuracy).padStart(6)}`,
      );
    }
  };
  const picture = (step: number): void => {
    if (images && (step % imageEvery === 0 || step === steps)) {
      images.logImages({ decision_boundary: decisionBoundary(model, train, IMAGE_SIZE) }, step);
    }
  };

  try {
    // Step 0: the untrained model.
    const initial: Record<string, number> = {};
    evaluate(0, initial);
    tr.log(initial, 0);
    picture(0);

    let order = permutation(train.n, rand);
    let cursor = 0;
    const batch = new Uint32Array(BATCH);
    for (let step = 1; step <= steps; step++) {
      for (let k = 0; k < BATCH; k++) {
        if (cursor === train.n) {
          order = permutation(train.n, rand);
          cursor = 0;
        }
        batch[k] = order[cursor++]!;
      }
      const { loss, accuracy } = model.lossAndGrad(train, batch);
      adam.step();
      const values: Record<string, number> = { 'train/loss': loss, 'train/accuracy': accuracy };
      if (step % evalEvery === 0 || step === steps) evaluate(step, values);
      tr.log(values, step);
      picture(step);
    }

    const seconds = (performance.now() - started) / 1000;
    tb.log(
      {
        summary: [
          `**trackspec demo** — MLP 2-${HIDDEN}-1 (tanh), Adam lr ${LR}, batch ${BATCH}, ${steps} steps, two moons (seed ${seed}).`,
          '',
          '| split | loss | accuracy |',
          '|---|---|---|',
          `| train | ${trainMetrics.loss.toFixed(4)} | ${pct(trainMetrics.accuracy)} |`,
          `| eval | ${evalMetrics.loss.toFixed(4)} | ${pct(evalMetrics.accuracy)} |`,
          '',
          `Trained in ${seconds.toFixed(2)} s in plain TypeScript.`,
        ].join('\n'),
      },
      steps,
    );
  } catch (err) {
    await tr.endTraining().catch(() => undefined);
    throw err;
  }
  await tr.endTraining();

  const seconds = (performance.now() - started) / 1000;
  out(`Done in ${seconds.toFixed(2)} s.`);
  out(
    `  final train: loss ${trainMetrics.loss.toFixed(4)}, accuracy ${pct(trainMetrics.accuracy)}` +
      ` | eval: loss ${evalMetrics.loss.toFixed(4)}, accuracy ${pct(evalMetrics.accuracy)}`,
  );
  out(`  event files: ${shownRunDir}  (scalars, loss/accuracy sub-runs, decision-boundary images, hparams, summary text)`);
  if (mlruns !== null) out(`  MLflow run: ${mlruns} (experiment "trackspec-demo", run "${runName}")`);
  out('View them with (pip install tensorboard):');
  out(`  tensorboard --logdir ${shellQuote(logdir)}`);
  if (mlruns !== null) out(`  mlflow ui --backend-store-uri ${shellQuote(mlruns)}`);

  return { runDir, finalLoss: evalMetrics.loss, finalAccuracy: evalMetrics.accuracy, steps };
}

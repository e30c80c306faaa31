/**
 * `Live`: dvclive 3.49.0's writer, in Node. The same files, names and formats as upstream's `Live`
 * (see the README's DVCLive section), written crash-safely and off the hot path:
 *
 * - `logMetric()` / `nextStep()` only record values in memory (O(1), no I/O, no formatting).
 * - A write pass (at most every `WRITE_DELAY_MS`, on `flush()`/`end()`, and synchronously at process
 *   exit, SIGINT and SIGTERM) appends whole TSV lines to `plots/metrics/<name>.tsv` (header when the
 *   file is new), then replaces `metrics.json` and `dvc.yaml` atomically (temp file + rename).
 *   The order keeps metrics.json from naming a step the TSVs do not have yet.
 * - A process killed at any instant leaves files that dvclive's and DVC's readers parse: complete
 *   TSV lines, and the previous or the next metrics.json / params.yaml / dvc.yaml, never a torn one.
 *
 * All writes are synchronous inside the write pass, so the exit hook can never interleave with a
 * half-done pass.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { ImageData } from '../../core/driver.js';
import { BackendError, ValidationError, wrapBackendError } from '../../core/errors.js';
import { removeStaleTemps, writeFileAtomicSync } from '../../io/atomic-file.js';
import { registerExitHook } from '../../io/exit-hooks.js';
import { lazy } from '../../io/lazy.js';
import { checkImage, encodePng } from '../../io/image.js';
import { pyJsonDumps, type JsonTokenTree } from '../../io/python-repr.js';
import {
  checkName,
  conflict,
  EOL,
  foreignToken,
  isOwnEntry,
  jsonToken,
  relPosix,
  tsvCell,
  type DvcYamlEntry,
  type DvcYamlSections,
  type MetricValue,
} from './format.js';
import { checkJsonLike } from '../../core/values.js';

/** Longest time a logged value waits in memory before the write pass puts it on disk. */
export const WRITE_DELAY_MS = 100;
/** TSV rows held in memory before `nextStep()` runs the write pass itself (bounds memory in tight loops). */
export const MAX_PENDING_ROWS = 100_000;

const BACKEND = 'dvclive';

export interface LiveOptions {
  /** Output directory (dvclive's `dir`). */
  dir: string;
  /** Continue a previous run in `dir` instead of clearing it. */
  resume: boolean;
  /** Where dvc.yaml goes; `null` for none. Relative paths are resolved against the working directory. */
  dvcyaml: string | null;
  /** Called with a message when a background write fails (once per distinct failure). */
  onWriteError?: (err: BackendError) => void;
}

export interface LogMetricOptions {
  /** Add dvclive's `timestamp` column (milliseconds since the epoch). */
  timestamp?: boolean;
  /** false: only the summary (metrics.json), no TSV row. */
  plot?: boolean;
}

class MetricState {
  /** Pending TSV rows, flat: timestamp (or -1), step, value. */
  pending: unknown[] = [];
  queued = false;
  headerKnown = false;
  last: MetricValue = 0;
  constructor(
    readonly name: string,
    readonly file: string,
    readonly column: string,
  ) {}
}

/** A summary leaf read from a previous run's metrics.json (resume). */
class ForeignLeaf {
  constructor(readonly token: string) {}
}

const STEP_LEAF = Symbol('step');
type SummaryNode = MetricState | ForeignLeaf | typeof STEP_LEAF | SummaryTree;
type SummaryTree = Map<string, SummaryNode>;

type ParamValue = unknown;

const fail = (message: string, err: unknown): BackendError => wrapBackendError(BACKEND, message, err);

export class Live {
  /** Absolute output directory. */
  readonly dir: string;
  /** Absolute path of dvc.yaml, or null when none is written. */
  readonly dvcFile: string | null;
  readonly #onWriteError: ((err: BackendError) => void) | undefined;
  #step: number | null = null;
  #summaryStep: number | null = null;
  readonly #metrics = new Map<string, MetricState>();
  readonly #summary: SummaryTree = new Map();
  readonly #queue: MetricState[] = [];
  readonly #params: Record<string, ParamValue> = {};
  #hasParams = false;
  readonly #images = new Map<string, Buffer>();
  #imagesLogged = false;
  #pendingRows = 0;
  #summaryDirty = false;
  #paramsDirty = false;
  #lastDvcYaml: string | undefined;
  #timer: NodeJS.Timeout | undefined;
  #error: BackendError | undefined;
  #lastReported: string | undefined;
  #ended = false;
  readonly #touched = new Set<string>();
  readonly #unhook: () => void;

  constructor(options: LiveOptions) {
    this.dir = path.resolve(options.dir);
    this.dvcFile = options.dvcyaml === null ? null : path.resolve(options.dvcyaml);
    this.#onWriteError = options.onWriteError;
    try {
      fs.mkdirSync(this.dir, { recursive: true });
      removeStaleTemps(this.dir);
      if (this.dvcFile) removeStaleTemps(path.dirname(this.dvcFile));
      if (options.resume) this.#resume();
      else this.#cleanup();
    } catch (err) {
      throw fail(`cannot prepare the dvclive directory ${this.dir}`, err);
    }
    this.#unhook = registerExitHook(() => {
      try {
        this.#writePass();
      } catch {
        // reported through flush()/end(); at exit there is no one left to tell
      }
    });
  }

  get plotsDir(): string {
    return path.join(this.dir, 'plots');
  }
  get metricsFile(): string {
    return path.join(this.dir, 'metrics.json');
  }
  get paramsFile(): string {
    return path.join(this.dir, 'params.yaml');
  }

  /** The current step (dvclive's `Live.step`: 0 before anything set it). */
  get step(): number {
    return this.#step ?? 0;
  }
  set step(value: number) {
    this.#step = value;
  }

  /** A copy of the params logged so far (what params.yaml holds). */
  get params(): Record<string, unknown> {
    return structuredClone(this.#params);
  }

  #cleanup(): void {
    for (const sub of ['metrics', 'images', 'custom', 'sklearn']) fs.rmSync(path.join(this.plotsDir, sub), { recursive: true, force: true });
    for (const f of [this.metricsFile, this.paramsFile, path.join(this.dir, 'report.html'), path.join(this.dir, 'report.md')]) fs.rmSync(f, { force: true });
    for (const name of fs.readdirSync(this.dir)) {
      if (name.endsWith('dvc.yaml')) fs.rmSync(path.join(this.dir, name), { force: true });
    }
  }

  #resume(): void {
    if (fs.existsSync(this.paramsFile)) {
      const { parse } = requireYaml();
      const loaded = parse(fs.readFileSync(this.paramsFile, 'utf8')) as unknown;
      if (loaded && typeof loaded === 'object' && !Array.isArray(loaded)) Object.assign(this.#params, loaded);
      this.#hasParams = Object.keys(this.#params).length > 0;
    }
    if (fs.existsSync(this.metricsFile)) {
      const latest = JSON.parse(fs.readFileSync(this.metricsFile, 'utf8')) as Record<string, unknown>;
      const load = (obj: Record<string, unknown>, into: SummaryTree, top: boolean): void => {
        for (const [k, v] of Object.entries(obj)) {
          if (top && k === 'step') into.set(k, STEP_LEAF);
          else if (v !== null && typeof v === 'object' && !Array.isArray(v)) {
            const sub: SummaryTree = new Map();
            load(v as Record<string, unknown>, sub, false);
            into.set(k, sub);
          } else into.set(k, new ForeignLeaf(foreignToken(v)));
        }
      };
      load(latest, this.#summary, true);
      // dvclive continues at the step after the last one written (upstream does not advance when
      // that step is 0, and logs step 0 twice; a resumed run here always continues after it).
      if (typeof latest.step === 'number') {
        this.#summaryStep = latest.step;
        this.#step = latest.step + 1;
      } else this.#step = 0;
    }
  }

  #newMetric(name: string): MetricState {
    checkName('DVCLiveTracker.log()', 'metric', name);
    const parts = name.split('/');
    let node: SummaryTree = this.#summary;
    for (let i = 0; i < parts.length - 1; i++) {
      const seg = parts[i]!;
      const next = node.get(seg);
      if (next === undefined) {
        const sub: SummaryTree = new Map();
        node.set(seg, sub);
        node = sub;
      } else if (next instanceof Map) node = next;
      else conflict('DVCLiveTracker.log()', name, parts.slice(0, i + 1).join('/'));
    }
    const leaf = parts[parts.length - 1]!;
    const existing = node.get(leaf);
    if (existing instanceof Map) conflict('DVCLiveTracker.log()', name, `${name}/…`);
    const file = path.join(this.plotsDir, 'metrics', ...parts) + '.tsv';
    const m = new MetricState(name, file, leaf);
    node.set(leaf, m);
    this.#metrics.set(name, m);
    return m;
  }

  /**
   * dvclive's `log_metric(name, val, timestamp=False, plot=True)`: a TSV row at the current step
   * (unless `plot` is false) and the latest value in metrics.json. No I/O happens here.
   */
  logMetric(name: string, val: MetricValue, opts?: LogMetricOptions): void {
    const m = this.#metrics.get(name) ?? this.#newMetric(name);
    m.last = val;
    if (opts?.plot !== false) {
      m.pending.push(opts?.timestamp === true ? Date.now() : -1, this.#step ?? 0, val);
      this.#pendingRows++;
      if (!m.queued) {
        m.queued = true;
        this.#queue.push(m);
      }
    }
    this.#summaryDirty = true;
    if (this.#timer === undefined) this.#schedule();
  }

  /** dvclive's `next_step()`: the summary records the current step, which then advances by one. */
  nextStep(): void {
    if (this.#step === null) this.#step = 0;
    if (this.#summaryStep === null && !this.#summary.has('step')) this.#summary.set('step', STEP_LEAF);
    this.#summaryStep = this.#step;
    this.#step += 1;
    this.#summaryDirty = true;
    if (this.#pendingRows >= MAX_PENDING_ROWS) {
      try {
        this.#writePass();
      } catch {
        // kept in #error, reported by flush()/end(); the rows stay queued
      }
    } else if (this.#timer === undefined) this.#schedule();
  }

  /** dvclive's `log_params`: merged into params.yaml (replaced atomically at the next write). */
  logParams(params: Readonly<Record<string, unknown>>): void {
    checkJsonLike('DVCLiveTracker.storeInitConfiguration()', params, 'params.yaml holds numbers, strings, booleans, null, arrays and plain objects');
    Object.assign(this.#params, structuredClone(params));
    this.#hasParams = Object.keys(this.#params).length > 0;
    this.#paramsDirty = true;
  }

  /** dvclive's `log_image`: `plots/images/<name>` (PNG; `.png` is added to a name without a suffix). */
  logImage(name: string, image: ImageData): void {
    const file = /\.[A-Za-z0-9]+$/.test(name) ? name : `${name}.png`;
    checkName('DVCLiveTracker.logImages()', 'image', file);
    if (!file.toLowerCase().endsWith('.png')) {
      throw new ValidationError(`DVCLiveTracker.logImages(): image name ${JSON.stringify(name)} must end in .png (or have no suffix): images are written as PNG`, [
        { pointer: `/${name.replace(/~/g, '~0').replace(/\//g, '~1')}`, code: 'bad-name', message: 'images are written as PNG' },
      ]);
    }
    checkImage(image, name);
    this.#images.set(file, encodePng(image));
    this.#imagesLogged = true;
    if (this.#timer === undefined) this.#schedule();
  }

  #schedule(): void {
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      try {
        this.#writePass();
      } catch {
        // kept in #error, reported by flush()/end()
      }
    }, WRITE_DELAY_MS);
    this.#timer.unref();
  }

  #summaryTree(tree: SummaryTree = this.#summary): JsonTokenTree {
    const out: JsonTokenTree = new Map();
    for (const [k, v] of tree) {
      if (v === STEP_LEAF) {
        if (this.#summaryStep !== null) out.set(k, String(this.#summaryStep));
      } else if (v instanceof MetricState) out.set(k, jsonToken(v.last));
      else if (v instanceof ForeignLeaf) out.set(k, v.token);
      else out.set(k, this.#summaryTree(v));
    }
    return out;
  }

  #dvcYamlSections(): DvcYamlSections {
    const base = path.dirname(this.dvcFile!);
    const s: DvcYamlSections = {};
    if (this.#hasParams) s.params = [relPosix(this.paramsFile, base)];
    if (this.#metrics.size > 0 || this.#summary.size > 0) s.metrics = [relPosix(this.metricsFile, base)];
    const plots: DvcYamlEntry[] = [];
    if (fs.existsSync(path.join(this.plotsDir, 'metrics'))) plots.push({ [relPosix(path.join(this.plotsDir, 'metrics'), base)]: { x: 'step' } });
    if (this.#imagesLogged) plots.push(relPosix(path.join(this.plotsDir, 'images'), base));
    if (plots.length > 0) s.plots = plots;
    return s;
  }

  #writeDvcYaml(force: boolean): void {
    const file = this.dvcFile;
    if (file === null) return;
    const sections = this.#dvcYamlSections();
    const key = JSON.stringify(sections);
    if (!force && key === this.#lastDvcYaml) return;
    const yaml = requireYaml();
    const relDir = relPosix(this.dir, path.dirname(file));
    let text: string;
    if (!fs.existsSync(file)) {
      text = yaml.stringify(sections, { indentSeq: false, singleQuote: true });
    } else {
      const doc = yaml.parseDocument(fs.readFileSync(file, 'utf8'));
      if (doc.errors.length > 0) throw new BackendError(BACKEND, `cannot update ${file}: it is not valid YAML (${doc.errors[0]!.message}); fix or remove it`);
      const root = doc.toJS() as unknown;
      if (root !== null && root !== undefined && (typeof root !== 'object' || Array.isArray(root))) {
        throw new BackendError(BACKEND, `cannot update ${file}: its top level is not a mapping; fix or remove it`);
      }
      if (root === null || root === undefined) doc.contents = doc.createNode({}) as never;
      for (const k of ['params', 'metrics', 'plots'] as const) {
        const old = (root as Record<string, unknown> | null)?.[k];
        const keep = Array.isArray(old) ? old.filter((e) => !isOwnEntry(e, relDir)) : [];
        const next = [...keep, ...(sections[k] ?? [])];
        if (next.length > 0) doc.set(k, doc.createNode(next));
        else if (doc.has(k)) doc.delete(k);
      }
      text = doc.toString({ indentSeq: false, singleQuote: true });
    }
    fs.mkdirSync(path.dirname(file), { recursive: true });
    writeFileAtomicSync(file, text);
    this.#lastDvcYaml = key;
  }

  /** Put everything recorded so far on disk (synchronously). Throws the first failure. */
  #writePass(final = false): void {
    let first: BackendError | undefined;
    const note = (err: BackendError): void => {
      first ??= err;
    };
    // 1. TSV rows: whole lines, appended.
    const queue = this.#queue.splice(0);
    this.#pendingRows = 0;
    for (const m of queue) {
      const rows = m.pending;
      try {
        let chunk = '';
        if (!m.headerKnown) {
          fs.mkdirSync(path.dirname(m.file), { recursive: true });
          if (!fs.existsSync(m.file)) chunk = (rows[0] !== -1 ? `timestamp\tstep\t` : 'step\t') + tsvCell(m.column) + EOL;
        }
        for (let i = 0; i < rows.length; i += 3) {
          const ts = rows[i] as number;
          chunk += (ts !== -1 ? `${ts}\t` : '') + `${rows[i + 1] as number}\t${tsvCell(rows[i + 2] as MetricValue)}${EOL}`;
        }
        fs.appendFileSync(m.file, chunk);
        m.headerKnown = true;
        m.pending = [];
        m.queued = false;
        this.#touched.add(m.file);
      } catch (err) {
        this.#queue.push(m);
        this.#pendingRows += rows.length / 3;
        note(fail(`cannot append to ${m.file}`, err));
      }
    }
    // 2. Images (each replaced atomically).
    for (const [name, png] of [...this.#images]) {
      const file = path.join(this.plotsDir, 'images', ...name.split('/'));
      try {
        fs.mkdirSync(path.dirname(file), { recursive: true });
        writeFileAtomicSync(file, png);
        this.#images.delete(name);
      } catch (err) {
        note(fail(`cannot write ${file}`, err));
      }
    }
    // 3. params.yaml, metrics.json, dvc.yaml: replaced atomically.
    if (this.#paramsDirty) {
      try {
        writeFileAtomicSync(this.paramsFile, requireYaml().stringify(this.#params, { indentSeq: false, singleQuote: true, nullStr: '' }), { fsync: final });
        this.#paramsDirty = false;
      } catch (err) {
        note(fail(`cannot write ${this.paramsFile}`, err));
      }
    }
    if ((this.#summaryDirty || final) && first === undefined) {
      try {
        writeFileAtomicSync(this.metricsFile, `${pyJsonDumps(this.#summaryTree())}\n`, { fsync: final });
        this.#summaryDirty = false;
      } catch (err) {
        note(fail(`cannot write ${this.metricsFile}`, err));
      }
    }
    if (first === undefined) {
      try {
        this.#writeDvcYaml(final);
      } catch (err) {
        note(fail(`cannot write ${this.dvcFile}`, err));
      }
    }
    if (first !== undefined) {
      this.#error = first;
      if (first.message !== this.#lastReported) {
        this.#lastReported = first.message;
        this.#onWriteError?.(first);
      }
      throw first;
    }
    this.#error = undefined;
  }

  /** Write everything logged so far now. Throws a BackendError when a write fails (nothing is dropped: the next pass retries). */
  flush(): void {
    if (this.#timer !== undefined) {
      clearTimeout(this.#timer);
      this.#timer = undefined;
    }
    this.#writePass();
  }

  /** The failure of the last background write, if it has not succeeded since. */
  get writeError(): BackendError | undefined {
    return this.#error;
  }

  /**
   * dvclive's `end()`: the summary keeps the last step written, then metrics.json, params.yaml and
   * dvc.yaml are written one last time and made durable (fsync).
   */
  end(): void {
    if (this.#ended) return;
    if (this.#timer !== undefined) {
      clearTimeout(this.#timer);
      this.#timer = undefined;
    }
    if (this.#summaryStep !== null) this.#step = this.#summaryStep;
    this.#writePass(true);
    for (const f of this.#touched) {
      try {
        const fd = fs.openSync(f, 'r');
        try {
          fs.fsyncSync(fd);
        } finally {
          fs.closeSync(fd);
        }
      } catch {
        // best effort: the data is written, only durability across power loss is at stake
      }
    }
    this.#ended = true;
    this.#unhook();
  }
}

/** `yaml`, loaded on first use (writes happen in synchronous passes, so it is required, not imported). */
const requireYaml = lazy<typeof import('yaml')>('yaml');

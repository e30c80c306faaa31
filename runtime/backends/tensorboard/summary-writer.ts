/**
 * `SummaryWriter`: a typed, SummaryWriter-like API writing TensorBoard tfevents files.
 *
 * - One event file per writer, `events.out.tfevents.<10-digit seconds>.<hostname>.<pid>.<n><suffix>`
 *   (`n` is a process-wide counter; files are opened with O_EXCL, so two writers never share a file).
 * - First record: `file_version: "brain.Event:2"`. With `purgeStep: S` the file starts like
 *   tensorboardX's (`file_version` at step S, then `session_log START` at step S).
 * - Scalars are legacy `simple_value` (float32) values, which both TensorBoard loaders (Python and
 *   the Rust data server) keep. NaN and ±Infinity are written as float32 NaN/±Inf.
 * - Writes are buffered in memory and written with `fs.writeSync` (whole records) when the buffer
 *   passes `bufferBytes` (default 1 MiB), every `flushSecs` (unref'd timer), on `flush()`, on
 *   `close()` and at process exit / SIGINT / SIGTERM (see `runtime/io/exit-hooks.ts`).
 *   `flush()` and `close()` also fdatasync.
 * - `maxQueue` is accepted for torch/tensorboardX compatibility. There it bounds the queue between
 *   `add_*` and a writer thread; here events are encoded synchronously into a byte buffer bounded
 *   by `bufferBytes`, so `maxQueue` has no further effect.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { ImageData } from '../../core/driver.js';
import { BackendError, ConfigError, ValidationError } from '../../core/errors.js';
import { escapePointer } from '../../core/humanize.js';
import { diskMessage } from '../../io/spool.js';
import { registerExitHook } from '../../io/exit-hooks.js';
import {
  EXPERIMENT_TAG,
  HPARAMS_PLUGIN,
  SESSION_END_TAG,
  SESSION_START_TAG,
  SessionStatus,
  encodeExperiment,
  encodeSessionEndInfo,
  encodeSessionStartInfo,
  flattenHparams,
  type HParamValue,
  type MetricName,
} from './hparams.js';
import { encodePng } from '../../io/image.js';
import { pathNameProblem, resolveInside } from '../../io/safe-path.js';
import { ProtoWriter, utf8, varintSize } from './proto.js';
import { RecordFile } from './record-file.js';

const BACKEND = 'tensorboard';

export interface SummaryWriterOptions {
  /** Seconds between periodic flushes (default 120; 0 disables the timer). */
  flushSecs?: number;
  /** Accepted for compatibility (default 10); see the module doc. */
  maxQueue?: number;
  /** Appended to event file names (default ''). */
  filenameSuffix?: string;
  /** If set, the file starts with `file_version` and `session_log START` at this step. */
  purgeStep?: number | null;
  /** Buffer size in bytes that triggers a write (default 1 MiB). */
  bufferBytes?: number;
}

/** Values accepted by `addValues` (already filtered by the spec's value rules). */
export type LogValues = Readonly<Record<string, unknown>>;

let fileCounter = 0;
const hostname = os.hostname();

const TEXT_METADATA = new ProtoWriter().message(1, (p) => p.string(1, 'text')).finish();

/** Pre-encoded `Summary.value` entry for a scalar tag: `0A <len> 0A <taglen> <tag> 15`; 4 bytes follow. */
function scalarEntry(tag: string): Uint8Array {
  const t = utf8(tag);
  const valueLen = 1 + varintSize(t.length) + t.length + 5;
  const w = new ProtoWriter(t.length + 16);
  w.varint(0x0a).varint(valueLen).varint(0x0a).varint(t.length);
  const head = w.finish();
  const out = new Uint8Array(head.length + t.length + 1);
  out.set(head, 0);
  out.set(t, head.length);
  out[out.length - 1] = 0x15;
  return out;
}

/** Write a varint (int64 semantics) at `pos` in `buf`; returns the new position. */
function putVarint(buf: Buffer, pos: number, n: number): number {
  if (n >= 0 && n < 0x80000000) {
    while (n >= 0x80) {
      buf[pos++] = (n & 0x7f) | 0x80;
      n >>>= 7;
    }
    buf[pos++] = n;
    return pos;
  }
  let v = BigInt.asUintN(64, BigInt(Math.trunc(n)));
  while (v >= 0x80n) {
    buf[pos++] = Number(v & 0x7fn) | 0x80;
    v >>= 7n;
  }
  buf[pos++] = Number(v);
  return pos;
}

function stepVarintSize(step: number): number {
  if (step >= 0) return varintSize(step);
  return 10;
}

function toStep(step: number | undefined): number {
  if (step === undefined || step === null) return 0;
  if (!Number.isFinite(step)) return 0;
  return Math.trunc(step);
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  if (v === null || typeof v !== 'object') return false;
  const proto = Object.getPrototypeOf(v) as unknown;
  return proto === Object.prototype || proto === null;
}

function wrapError(message: string, cause: unknown): BackendError {
  if (cause instanceof BackendError) return cause;
  const code = (cause as { code?: unknown } | null)?.code;
  const detail = cause instanceof Error ? diskMessage(cause) : String(cause); // says so when the disk is full
  return new BackendError(BACKEND, `${message}: ${detail}`, {
    cause,
    ...(typeof code === 'string' ? { code } : {}),
  });
}

/**
 * Why `suffix` cannot end an event file name, or undefined. It must keep the name one file in the
 * run directory: no '/', '\\' or NUL.
 */
export function filenameSuffixProblem(suffix: string): string | undefined {
  if (/[/\\\0]/.test(suffix)) return "must not contain '/', '\\' or NUL: it ends the event file's name";
  return undefined;
}

/**
 * The add_scalars sub-run directory for `mainTag` and key `k`: `<mainTag with '/' → '_'>_<k>`
 * (torch's naming; a '/' in `k` nests, as in torch). Throws ValidationError naming the key when the
 * name would leave the run directory or be the run directory itself.
 */
function subRunName(mainTag: string, k: string): string {
  const name = `${mainTag.replace(/\//g, '_')}_${k}`;
  const problem = pathNameProblem(name);
  if (problem !== undefined) {
    const pointer = `/${escapePointer(mainTag)}/${escapePointer(k)}`;
    throw new ValidationError(`tensorboard: add_scalars key ${JSON.stringify(k)} of ${JSON.stringify(mainTag)} names the sub-run directory ${JSON.stringify(name)}, which ${problem}`, [
      { pointer, code: 'path', message: `sub-run directory ${JSON.stringify(name)} ${problem}` },
    ]);
  }
  return name;
}

/** Create `dir` (recursively) and a fresh event file in it; returns the open RecordFile. */
function openEventFile(dir: string, suffix: string, bufferBytes: number): RecordFile {
  try {
    fs.mkdirSync(dir, { recursive: true });
  } catch (err) {
    throw wrapError(`cannot create the run directory ${dir}`, err);
  }
  const secs = String(Math.floor(Date.now() / 1000)).padStart(10, '0');
  for (;;) {
    const name = `events.out.tfevents.${secs}.${hostname}.${process.pid}.${fileCounter++}${suffix}`;
    const file = path.join(dir, name);
    try {
      const fd = fs.openSync(file, 'ax');
      return new RecordFile(file, fd, { bufferBytes });
    } catch (err) {
      if ((err as { code?: unknown }).code === 'EEXIST') continue;
      throw wrapError(`cannot create the event file ${file}`, err);
    }
  }
}

export class SummaryWriter {
  /** The run directory this writer writes into. */
  readonly logdir: string;
  private readonly file: RecordFile;
  private readonly options: Required<Omit<SummaryWriterOptions, 'purgeStep'>> & { purgeStep: number | null };
  private readonly scalarEntries = new Map<string, Uint8Array>();
  private readonly metadataWritten = new Set<string>();
  private readonly children = new Map<string, SummaryWriter>();
  private readonly childErrors: unknown[] = [];
  private timer: NodeJS.Timeout | undefined;
  private unregisterExit: (() => void) | undefined;
  private closing: Promise<void> | undefined;
  private reportedDrops = 0;
  private hparamSession: { hparams: Map<string, HParamValue> } | undefined;
  /** Reusable scratch for addValues (avoid per-call allocation). */
  private readonly scratchEntries: Uint8Array[] = [];
  private readonly scratchNums: number[] = [];
  private readonly scratchObjects: string[] = [];

  /**
   * Create `logdir` (recursively) and a new event file in it, and write the `file_version` record.
   * Throws `BackendError` if the directory or file cannot be created.
   */
  constructor(logdir: string, options: SummaryWriterOptions = {}, internal?: { child: boolean }) {
    const suffixProblem = filenameSuffixProblem(options.filenameSuffix ?? '');
    if (suffixProblem !== undefined) {
      throw new ConfigError(`SummaryWriter: filenameSuffix ${JSON.stringify(options.filenameSuffix)} ${suffixProblem}`, { option: 'filenameSuffix' });
    }
    this.logdir = logdir;
    this.options = {
      flushSecs: options.flushSecs ?? 120,
      maxQueue: options.maxQueue ?? 10,
      filenameSuffix: options.filenameSuffix ?? '',
      purgeStep: options.purgeStep ?? null,
      bufferBytes: options.bufferBytes ?? 1 << 20,
    };
    this.file = openEventFile(logdir, this.options.filenameSuffix, this.options.bufferBytes);
    const now = Date.now() / 1000;
    const purge = this.options.purgeStep;
    const header = new ProtoWriter().double(1, now);
    if (purge !== null && purge !== 0) header.uint(2, Math.trunc(purge));
    header.string(3, 'brain.Event:2');
    this.file.writeRecord(header.finish());
    if (purge !== null) {
      // Two SessionLog.START records: TensorBoard's plugin event accumulator (what the server uses)
      // ignores the first START of a run, the legacy loader purges on either.
      for (let i = 0; i < 2; i++) {
        const start = new ProtoWriter().double(1, now);
        if (purge !== 0) start.uint(2, Math.trunc(purge));
        start.message(7, (s) => s.uint(1, 1));
        this.file.writeRecord(start.finish());
      }
    }
    try {
      this.file.flushSync();
    } catch (err) {
      throw wrapError(`cannot write ${this.file.path}`, err);
    }
    if (!internal?.child) {
      if (this.options.flushSecs > 0) {
        this.timer = setInterval(() => this.flushQuietly(), this.options.flushSecs * 1000);
        this.timer.unref();
      }
      this.unregisterExit = registerExitHook(() => this.flushQuietly());
    }
  }

  /** Path of this writer's event file. */
  get path(): string {
    return this.file.path;
  }

  /** Whether `close()` was called. */
  get closed(): boolean {
    return this.closing !== undefined;
  }

  /** Bytes written to this writer's file so far (children excluded). */
  get bytesOnDisk(): number {
    return this.file.bytesOnDisk;
  }

  private checkOpen(): void {
    if (this.closing) throw new BackendError(BACKEND, `SummaryWriter for ${this.logdir} is closed`);
  }

  private wallTime(walltime: number | undefined): number {
    return walltime !== undefined && Number.isFinite(walltime) ? walltime : Date.now() / 1000;
  }

  private entryFor(tag: string): Uint8Array {
    let e = this.scalarEntries.get(tag);
    if (e === undefined) {
      e = scalarEntry(tag);
      this.scalarEntries.set(tag, e);
    }
    return e;
  }

  /**
   * Write one Event whose Summary holds `entries` (pre-encoded scalar heads, each followed by the
   * float in `nums`) and `extra` (complete encoded `Summary.Value` messages). Hot path.
   */
  private writeEvent(
    entries: readonly Uint8Array[],
    nums: readonly number[],
    count: number,
    extra: readonly Uint8Array[] | undefined,
    step: number,
    walltime: number,
  ): void {
    let summaryLen = 0;
    for (let i = 0; i < count; i++) summaryLen += entries[i]!.length + 4;
    if (extra) for (const x of extra) summaryLen += 1 + varintSize(x.length) + x.length;
    const f = this.file;
    let pos = f.beginRecord(9 + 11 + 1 + 5 + summaryLen);
    const buf = f.buf;
    buf[pos] = 0x09;
    f.view.setFloat64(pos + 1, walltime, true);
    pos += 9;
    if (step !== 0) {
      buf[pos++] = 0x10;
      pos = putVarint(buf, pos, step);
    }
    buf[pos++] = 0x2a;
    pos = putVarint(buf, pos, summaryLen);
    const view = f.view;
    for (let i = 0; i < count; i++) {
      const e = entries[i]!;
      const n = e.length;
      if (n <= 32) {
        for (let j = 0; j < n; j++) buf[pos + j] = e[j]!;
      } else buf.set(e, pos);
      pos += n;
      view.setFloat32(pos, nums[i]!, true);
      pos += 4;
    }
    if (extra) {
      for (const x of extra) {
        buf[pos++] = 0x0a;
        pos = putVarint(buf, pos, x.length);
        buf.set(x, pos);
        pos += x.length;
      }
    }
    f.used = pos;
    f.endRecord();
  }

  /** Write an Event holding complete encoded `Summary.Value`s. */
  private writeValues(values: readonly Uint8Array[], step: number, walltime: number): void {
    this.writeEvent(this.scratchEntries, this.scratchNums, 0, values, step, walltime);
  }

  /** `add_scalar`: one Event with `Value { tag, simple_value }`. Booleans are 1/0. */
  addScalar(tag: string, value: number | boolean, step?: number, walltime?: number): void {
    this.checkOpen();
    const entries = this.scratchEntries;
    const nums = this.scratchNums;
    entries[0] = this.entryFor(tag);
    nums[0] = typeof value === 'boolean' ? (value ? 1 : 0) : Number(value);
    this.writeEvent(entries, nums, 1, undefined, toStep(step), this.wallTime(walltime));
  }

  /**
   * `add_scalars` (torch semantics): for each key `k`, the scalar is written with tag `mainTag` by a
   * child writer in the sub-run directory `<logdir>/<mainTag with '/' → '_'>_<k>`.
   */
  addScalars(mainTag: string, values: Readonly<Record<string, number | boolean>>, step?: number, walltime?: number): void {
    this.checkOpen();
    const s = toStep(step);
    const wt = this.wallTime(walltime);
    this.checkSubRuns(mainTag, values);
    const prefix = mainTag.replace(/\//g, '_');
    for (const k in values) {
      const v = values[k];
      if (typeof v !== 'number' && typeof v !== 'boolean') continue;
      this.child(`${prefix}_${k}`).addScalar(mainTag, v, s, wt);
    }
  }

  /** Throws ValidationError (before anything is written) when a key names a sub-run outside the run directory. */
  private checkSubRuns(mainTag: string, values: Readonly<Record<string, unknown>>): void {
    const prefix = mainTag.replace(/\//g, '_');
    for (const k in values) {
      if (!this.children.has(`${prefix}_${k}`)) subRunName(mainTag, k);
    }
  }

  private child(name: string): SummaryWriter {
    let c = this.children.get(name);
    if (c === undefined) {
      const dir = resolveInside(this.logdir, name, (problem) => new ValidationError(`tensorboard: sub-run directory ${JSON.stringify(name)} ${problem}`, [{ pointer: '', code: 'path', message: problem }]));
      c = new SummaryWriter(dir, { ...this.options, purgeStep: this.options.purgeStep }, { child: true });
      this.children.set(name, c);
    }
    return c;
  }

  private textValue(tag: string, text: string): Uint8Array {
    const w = new ProtoWriter(text.length + tag.length + 32);
    w.string(1, tag);
    if (!this.metadataWritten.has(tag)) {
      w.bytes(9, TEXT_METADATA);
      this.metadataWritten.add(tag);
    }
    w.message(8, (t) => {
      t.uint(1, 7); // DT_STRING
      t.bytes(2, new Uint8Array(0)); // rank 0
      t.bytes(8, utf8(text));
    });
    return w.finish();
  }

  /**
   * Text plugin value: rank-0 `DT_STRING` tensor with `text` plugin metadata (on the first value
   * of the tag). The tag is used as given (tensorboardX appends `/text_summary`; we do not).
   */
  addText(tag: string, text: string, step?: number, walltime?: number): void {
    this.checkOpen();
    this.writeValues([this.textValue(tag, String(text))], toStep(step), this.wallTime(walltime));
  }

  /** Image summary (`Summary.Image`, PNG-encoded). Throws `ValidationError` on a malformed image. */
  addImage(tag: string, image: ImageData, step?: number, walltime?: number): void {
    this.checkOpen();
    this.addImages([[tag, image]], step, walltime);
  }

  /** Several images in one Event. The PNGs are encoded before anything is written. */
  addImages(images: ReadonlyArray<readonly [string, ImageData]>, step?: number, walltime?: number): void {
    this.checkOpen();
    const values = images.map(([tag, image]) => {
      const png = encodePng(image);
      return new ProtoWriter(png.length + tag.length + 32)
        .string(1, tag)
        .message(4, (im) => {
          im.uint(1, image.height).uint(2, image.width).uint(3, image.channels).bytes(4, png);
        })
        .finish();
    });
    if (values.length > 0) this.writeValues(values, toStep(step), this.wallTime(walltime));
  }

  /**
   * Driver fast path: one Event for all numbers/booleans (simple values) and strings (text values)
   * in `values`, plus `addScalars(key, obj)` for each plain-object value. Other types are ignored.
   * Nothing referencing `values` is kept.
   */
  addValues(values: LogValues, step?: number, walltime?: number): void {
    this.checkOpen();
    const entries = this.scratchEntries;
    const nums = this.scratchNums;
    let count = 0;
    let extra: Uint8Array[] | undefined;
    let objects = 0;
    for (const key in values) {
      const v = values[key];
      if (typeof v === 'number') {
        entries[count] = this.entryFor(key);
        nums[count++] = v;
      } else if (typeof v === 'boolean') {
        entries[count] = this.entryFor(key);
        nums[count++] = v ? 1 : 0;
      } else if (typeof v === 'string') {
        (extra ??= []).push(this.textValue(key, v));
      } else if (isPlainObject(v)) {
        this.scratchObjects[objects++] = key;
      }
    }
    // Sub-run names are checked before anything of this call is written.
    for (let i = 0; i < objects; i++) {
      const key = this.scratchObjects[i]!;
      this.checkSubRuns(key, values[key] as Record<string, unknown>);
    }
    const s = toStep(step);
    const wt = this.wallTime(walltime);
    if (count > 0 || extra) this.writeEvent(entries, nums, count, extra, s, wt);
    for (let i = 0; i < objects; i++) {
      const key = this.scratchObjects[i]!;
      try {
        this.addScalars(key, values[key] as Record<string, number | boolean>, s, wt);
      } catch (err) {
        // Child directory/file creation failed: reported by the next flush().
        this.childErrors.push(err);
      }
    }
  }

  private writeHparamsValue(tag: string, content: Uint8Array, walltime: number): void {
    const value = new ProtoWriter(content.length + 64)
      .string(1, tag)
      .message(9, (m) => m.message(1, (p) => p.string(1, HPARAMS_PLUGIN).bytes(2, content)))
      .finish();
    this.writeValues([value], 0, walltime);
  }

  /**
   * Start an hparams session in this run: writes `_hparams_/session_start_info` with the flattened
   * `hparams` (see `hparams.ts` for the value mapping). Returns the keys omitted (null/undefined).
   */
  startHparamsSession(hparams: Readonly<Record<string, unknown>>): { omitted: string[] } {
    this.checkOpen();
    const flat = flattenHparams(hparams);
    const now = Date.now() / 1000;
    this.writeHparamsValue(SESSION_START_TAG, encodeSessionStartInfo(flat.hparams, now), now);
    if (this.hparamSession) for (const [k, v] of flat.hparams) this.hparamSession.hparams.set(k, v);
    else this.hparamSession = { hparams: flat.hparams };
    return { omitted: flat.omitted };
  }

  /** Whether `startHparamsSession` was called. */
  get hasHparamsSession(): boolean {
    return this.hparamSession !== undefined;
  }

  /**
   * End the hparams session: writes `_hparams_/session_end_info` with `status`.
   *
   * No `_hparams_/experiment` is written unless `metrics` is given: TensorBoard uses the first run
   * that has one as the experiment of the whole log directory, so one per run hides every other
   * run's hparams and metrics (tensorflow/tensorboard#5596). Without it TensorBoard builds the
   * experiment from all session_start_info records and scalar tags, which is what users expect.
   */
  endHparamsSession(status: SessionStatus = SessionStatus.SUCCESS, metrics?: readonly MetricName[]): void {
    this.checkOpen();
    const session = this.hparamSession ?? { hparams: new Map<string, HParamValue>() };
    const now = Date.now() / 1000;
    if (metrics) this.writeHparamsValue(EXPERIMENT_TAG, encodeExperiment(session.hparams, metrics, now), now);
    this.writeHparamsValue(SESSION_END_TAG, encodeSessionEndInfo(status, now), now);
  }

  /** Every scalar series written so far, as hparams metric names (group = sub-run directory). */
  scalarMetricNames(): MetricName[] {
    const out: MetricName[] = [];
    for (const tag of this.scalarEntries.keys()) out.push({ group: '', tag });
    for (const [name, child] of this.children)
      for (const tag of child.scalarEntries.keys()) out.push({ group: name, tag });
    return out;
  }

  /**
   * `add_hparams`: writes experiment, session_start_info and session_end_info (SUCCESS) into this
   * run, then each metric as a scalar at `step` (default 0). Unlike torch, no extra sub-run is made.
   */
  addHparams(
    hparams: Readonly<Record<string, unknown>>,
    metrics: Readonly<Record<string, number>> = {},
    step?: number,
  ): void {
    this.checkOpen();
    const flat = flattenHparams(hparams);
    const now = Date.now() / 1000;
    const names: MetricName[] = Object.keys(metrics).map((tag) => ({ group: '', tag }));
    this.writeHparamsValue(EXPERIMENT_TAG, encodeExperiment(flat.hparams, names, now), now);
    this.writeHparamsValue(SESSION_START_TAG, encodeSessionStartInfo(flat.hparams, now), now);
    this.writeHparamsValue(SESSION_END_TAG, encodeSessionEndInfo(SessionStatus.SUCCESS, now), now);
    for (const [k, v] of Object.entries(metrics)) this.addScalar(k, v, step, now);
  }

  private flushQuietly(): void {
    try {
      this.flushSync();
    } catch {
      // Kept for the next flush()/close(), which reports it.
    }
  }

  /**
   * Write all buffered records of this writer and its children with `fs.writeSync`. Throws
   * `BackendError` on failure (the data stays buffered for a retry).
   */
  flushSync(): void {
    let first: unknown;
    for (const f of [this.file, ...[...this.children.values()].map((c) => c.file)]) {
      if (f.closed) continue;
      try {
        f.flushSync(true);
      } catch (err) {
        first ??= wrapError(`cannot write ${f.path}`, err);
      }
    }
    if (first === undefined) {
      let dropped = this.file.droppedRecords;
      for (const c of this.children.values()) dropped += c.file.droppedRecords;
      if (dropped > this.reportedDrops) {
        first = new BackendError(
          BACKEND,
          `${dropped - this.reportedDrops} event(s) under ${this.logdir} were dropped because writes kept failing and the buffer was full`,
        );
        this.reportedDrops = dropped;
      }
    }
    if (first === undefined && this.childErrors.length > 0) {
      first = wrapError('cannot create an add_scalars sub-run', this.childErrors.shift());
    }
    if (first !== undefined) throw first;
  }

  /** Write everything buffered and fdatasync. Rejects with `BackendError` on failure. */
  async flush(): Promise<void> {
    this.flushSync();
    const files = [this.file, ...[...this.children.values()].map((c) => c.file)].filter((f) => !f.closed);
    try {
      await Promise.all(files.map((f) => f.sync()));
    } catch (err) {
      throw wrapError(`cannot sync ${this.logdir}`, err);
    }
  }

  /** Flush, fdatasync and close this writer and its children. Idempotent. */
  close(): Promise<void> {
    this.closing ??= this.doClose();
    return this.closing;
  }

  private async doClose(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    try {
      this.flushSync();
      for (const f of [this.file, ...[...this.children.values()].map((c) => c.file)]) await f.close();
    } catch (err) {
      // Keep the exit hook: it retries writing what is still buffered at exit.
      throw wrapError(`cannot close ${this.logdir}`, err);
    }
    for (const c of this.children.values()) c.closing = Promise.resolve();
    this.unregisterExit?.();
    this.unregisterExit = undefined;
  }
}

/**
 * W&B offline runs: `run-<id>.wandb` transaction logs that `wandb sync` uploads.
 *
 * Layout (as the Python SDK / wandb-core): `<root>/wandb/offline-run-YYYYMMDD_HHMMSS-<id>/` (or
 * `<root>/.wandb/...` when that directory exists), holding `run-<id>.wandb` and `files/`. The
 * timestamp is the run's start time in *local* time, like W&B (`datetime.fromtimestamp`). After an
 * upload, an empty `run-<id>.wandb.synced` marker is created next to the file.
 *
 * Records (serialized `wandb_internal.Record`, schema in `wandb.proto` next to this module) are
 * numbered from 1: header → run (with the initial config) → config / history / summary … → exit →
 * final → footer. Values are JSON text (`value_json`); non-finite numbers are written as `NaN`,
 * `Infinity` and `-Infinity` like W&B's Python SDK, and read back as numbers.
 *
 * protobufjs and the schema are loaded on first use (creating a writer or reading a file).
 */
import { existsSync, mkdirSync, readFileSync, statSync } from 'node:fs';
import { mkdir, readFile, readdir, stat, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { lazy } from '../../io/lazy.js';
import { TransactionLogWriter, readTransactionLog } from './transaction-log.js';

type Protobuf = typeof import('protobufjs');
type PbType = import('protobufjs').Type;

const protobuf = lazy<Protobuf>('protobufjs');

export interface WandbRunInfo {
  runId: string;
  entity: string;
  project: string;
  displayName?: string | null;
  notes?: string | null;
  tags?: string[] | null;
  group?: string | null;
  jobType?: string | null;
  /** Plain values; written as ConfigItems `{key, value_json}`. */
  config: Record<string, unknown>;
  startTimeMs: number;
  host?: string;
  startingStep?: number;
  resumed?: boolean;
}

export interface DecodedWandbRecord {
  num: number;
  kind: 'header' | 'run' | 'config' | 'history' | 'summary' | 'files' | 'exit' | 'final' | 'footer' | 'other';
  /** files: the FilesItem paths (relative to the run's `files/` directory). */
  files?: string[];
  /** For kind 'run' (config decoded from JSON). */
  run?: WandbRunInfo;
  /** config/history/summary: key → parsed `value_json` (`nested_key` joined with '/'). */
  items?: Record<string, unknown>;
  /** history: `step.num`. */
  step?: number;
  /** exit */
  exitCode?: number;
  runtime?: number;
  /** header: `version_info.producer` / `min_consumer`. */
  producer?: string;
  minConsumer?: string;
}

/** Lowest wandb version that reads the files written here (HeaderRecord.version_info.min_consumer). */
export const MIN_CONSUMER = '0.70.0';

// ---- schema ------------------------------------------------------------------------------------

let recordType: PbType | undefined;

/** Where the schema is: next to this module (the build copies it next to the bundle too). */
function protoPath(): string {
  const p = fileURLToPath(new URL('./wandb.proto', import.meta.url));
  if (existsSync(p)) return p;
  throw new Error(`wandb.proto not found next to ${fileURLToPath(import.meta.url)}`);
}

/** The `wandb_internal.Record` type (field names as in the .proto: snake_case). */
export function wandbRecordType(): PbType {
  if (!recordType) {
    const root = new (protobuf().Root)().loadSync(protoPath(), { keepCase: true });
    recordType = root.lookupType('wandb_internal.Record');
  }
  return recordType;
}

let version: string | undefined;

/** trackspec's version, from the package.json above this module ('unknown' if none is found). */
export function trackspecVersion(): string {
  if (version !== undefined) return version;
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    try {
      const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { name?: unknown; version?: unknown };
      if (pkg.name === 'trackspec' && typeof pkg.version === 'string') return (version = pkg.version);
    } catch {
      // no (readable) package.json here
    }
    const up = dirname(dir);
    if (up === dir) return (version = 'unknown');
    dir = up;
  }
}

// ---- JSON values -------------------------------------------------------------------------------

/**
 * JSON text of a value as W&B writes it: JSON.stringify semantics, except that non-finite numbers
 * become `NaN` / `Infinity` / `-Infinity` (Python's json) and bigints become integer literals.
 */
export function toValueJson(value: unknown): string {
  // Native JSON.stringify unless the value holds a non-finite number or a bigint (JSON.stringify
  // would write null / throw): then the encoder below, which writes them as W&B does.
  let plain = true;
  const fast = JSON.stringify(value, (_k, v: unknown) => {
    if (typeof v === 'number' ? !Number.isFinite(v) : typeof v === 'bigint') {
      plain = false;
      return null;
    }
    return v;
  });
  if (plain) return fast ?? 'null';
  return encodeJson(value, new Set()) ?? 'null';
}

function encodeJson(value: unknown, seen: Set<object>): string | undefined {
  switch (typeof value) {
    case 'number':
      if (Number.isFinite(value)) return JSON.stringify(value);
      return Number.isNaN(value) ? 'NaN' : value > 0 ? 'Infinity' : '-Infinity';
    case 'bigint':
      return value.toString();
    case 'string':
    case 'boolean':
      return JSON.stringify(value);
    case 'undefined':
    case 'function':
    case 'symbol':
      return undefined;
  }
  if (value === null) return 'null';
  const obj = value as object & { toJSON?: unknown };
  if (typeof obj.toJSON === 'function') return encodeJson((obj.toJSON as () => unknown)(), seen);
  if (seen.has(obj)) throw new TypeError('cannot serialize a circular structure to JSON');
  seen.add(obj);
  try {
    if (Array.isArray(obj)) return `[${obj.map((v) => encodeJson(v, seen) ?? 'null').join(',')}]`;
    const parts: string[] = [];
    for (const [k, v] of Object.entries(obj)) {
      const s = encodeJson(v, seen);
      if (s !== undefined) parts.push(`${JSON.stringify(k)}:${s}`);
    }
    return `{${parts.join(',')}}`;
  } finally {
    seen.delete(obj);
  }
}

const NON_FINITE = '\u0000trackspec-nonfinite:';

/** Parse `value_json`, accepting the bare `NaN`/`Infinity`/`-Infinity` tokens W&B writes. Unparseable text is returned as is. */
export function parseValueJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    // fall through
  }
  const marked = text.replace(/"(?:[^"\\]|\\.)*"|-?Infinity|NaN/g, (m) => (m.startsWith('"') ? m : JSON.stringify(NON_FINITE + m)));
  try {
    return JSON.parse(marked, (_k, v: unknown) => (typeof v === 'string' && v.startsWith(NON_FINITE) ? Number(v.slice(NON_FINITE.length)) : v));
  } catch {
    return text;
  }
}

interface Item {
  key: string;
  value_json: string;
}

function itemsOf(values: Record<string, unknown>): Item[] {
  const out: Item[] = [];
  for (const [key, value] of Object.entries(values)) {
    if (value === undefined) continue;
    out.push({ key, value_json: toValueJson(value) });
  }
  return out;
}

// ---- writer ------------------------------------------------------------------------------------

function pad(n: number, width = 2): string {
  return String(n).padStart(width, '0');
}

/** `YYYYMMDD_HHMMSS` in local time (W&B's `%Y%m%d_%H%M%S` of `datetime.fromtimestamp`). */
export function wandbTimestamp(ms: number): string {
  const d = new Date(ms);
  return `${d.getFullYear()}${pad(d.getMonth() + 1)}${pad(d.getDate())}_${pad(d.getHours())}${pad(d.getMinutes())}${pad(d.getSeconds())}`;
}

/** `<root>/.wandb` if that directory exists, else `<root>/wandb` (W&B's `wandb_dir`). */
export function wandbDir(root: string): string {
  const hidden = join(root, '.wandb');
  try {
    if (statSync(hidden).isDirectory()) return hidden;
  } catch {
    // absent
  }
  return join(root, 'wandb');
}

function timestampOf(ms: number): { seconds: number; nanos: number } {
  let seconds = Math.floor(ms / 1000);
  let nanos = Math.round((ms - seconds * 1000) * 1e6);
  if (nanos >= 1e9) {
    seconds += 1;
    nanos -= 1e9;
  }
  return { seconds, nanos };
}

function runRecord(run: WandbRunInfo): Record<string, unknown> {
  const r: Record<string, unknown> = {
    run_id: run.runId,
    entity: run.entity,
    project: run.project,
    config: { update: itemsOf(run.config) },
    start_time: timestampOf(run.startTimeMs),
  };
  if (run.group != null) r.run_group = run.group;
  if (run.jobType != null) r.job_type = run.jobType;
  if (run.displayName != null) r.display_name = run.displayName;
  if (run.notes != null) r.notes = run.notes;
  if (run.tags != null && run.tags.length > 0) r.tags = [...run.tags];
  if (run.host != null) r.host = run.host;
  if (run.startingStep != null) r.starting_step = run.startingStep;
  if (run.resumed) r.resumed = true;
  return r;
}

export class OfflineRunWriter {
  /** The `.wandb` file. */
  readonly path: string;
  /** The `offline-run-…` directory. */
  readonly runDir: string;
  readonly #log: TransactionLogWriter;
  readonly #type: PbType;
  #num = 0;
  #exited = false;

  private constructor(runDir: string, path: string, log: TransactionLogWriter, type: PbType) {
    this.runDir = runDir;
    this.path = path;
    this.#log = log;
    this.#type = type;
  }

  /**
   * Create `<root>/wandb/offline-run-YYYYMMDD_HHMMSS-<id>/run-<id>.wandb` (`<root>/.wandb/…` if
   * that exists; timestamp = run start in local time, like W&B) and its `files/` directory, write
   * the header record (producer `trackspec <version>`, min_consumer 0.70.0) and the run record (with
   * the initial config), and flush them to disk.
   */
  static async create(root: string, run: WandbRunInfo): Promise<OfflineRunWriter> {
    wandbRecordType(); // fail before creating directories if the schema cannot be loaded
    const runDir = runDirFor(root, run, false);
    await mkdir(join(runDir, 'files'), { recursive: true });
    const writer = OfflineRunWriter.#start(runDir, run);
    await writer.flush();
    return writer;
  }

  /**
   * `create`, synchronously (for process-exit hooks, and online runs). `online`: the directory is
   * `run-YYYYMMDD_HHMMSS-<id>` as W&B's client names the transaction log of an online run.
   */
  static createSync(root: string, run: WandbRunInfo, online = false): OfflineRunWriter {
    wandbRecordType();
    const runDir = runDirFor(root, run, online);
    mkdirSync(join(runDir, 'files'), { recursive: true });
    const writer = OfflineRunWriter.#start(runDir, run);
    writer.flushSync();
    return writer;
  }

  static #start(runDir: string, run: WandbRunInfo): OfflineRunWriter {
    const type = wandbRecordType();
    const path = join(runDir, `run-${run.runId}.wandb`);
    const writer = new OfflineRunWriter(runDir, path, TransactionLogWriter.open(path), type);
    writer.#append({ header: { version_info: { producer: `trackspec ${trackspecVersion()}`, min_consumer: MIN_CONSUMER } } });
    writer.#append({ run: runRecord(run) });
    return writer;
  }

  /** ConfigRecord with one `update` item per key. */
  config(update: Record<string, unknown>): void {
    this.#append({ config: { update: itemsOf(update) } });
  }

  /**
   * HistoryRecord: one item per key of `row` (which already holds `_step`, `_runtime`, `_timestamp`),
   * `step.num = step`. Encoded by hand (the hot path of online write-ahead): the same bytes
   * protobufjs writes for `{num, history: {item: [{key, value_json}], step: {num}}}`.
   */
  history(row: Record<string, unknown>, step: number): void {
    if (this.#exited) throw new Error(`the W&B offline run ${this.path} has already exited`);
    if (this.#log.closed) throw new Error(`the W&B offline run ${this.path} is closed`);
    // Keys and JSON values are almost always ASCII: then the record is built as a latin1 string
    // (one char per byte) and converted once. Anything else goes through protobufjs.
    let items = '';
    for (const key in row) {
      const v = row[key];
      if (v === undefined) continue;
      const json = typeof v === 'number' && Number.isFinite(v) ? `${v}` : toValueJson(v);
      if (NON_ASCII.test(key) || NON_ASCII.test(json)) {
        this.#append({ history: { item: itemsOf(row), step: { num: step } } });
        return;
      }
      const item = `\x0a${varint(key.length)}${key}\x82\x01${varint(json.length)}${json}`;
      items += `\x0a${varint(item.length)}${item}`;
    }
    const stepMsg = step > 0 ? `\x08${varint(step)}` : '';
    const hist = `${items}\x12${varint(stepMsg.length)}${stepMsg}`;
    this.#log.append(Buffer.from(`\x08${varint(this.#num + 1)}\x12${varint(hist.length)}${hist}`, 'latin1'));
    this.#num++;
  }

  /**
   * FilesRecord: run files (relative to `files/`, `/`-separated) with policy NOW and no type, as the
   * Python SDK publishes media (`interface.py` publish_files); `wandb sync` uploads them from `files/`.
   */
  files(paths: readonly string[]): void {
    if (paths.length > 0) this.#append({ files: { files: paths.map((path) => ({ path })) } });
  }

  /** SummaryRecord with one `update` item per key. */
  summary(update: Record<string, unknown>): void {
    this.#append({ summary: { update: itemsOf(update) } });
  }

  /** RunExitRecord (runtime in whole seconds), then FinalRecord and FooterRecord. Only once. */
  exit(exitCode: number, runtimeSec: number): void {
    if (this.#exited) throw new Error(`the W&B offline run ${this.path} has already exited`);
    this.#append({ exit: { exit_code: exitCode | 0, runtime: Math.max(0, Math.round(runtimeSec)) } });
    this.#append({ final: {} });
    this.#append({ footer: {} });
    this.#exited = true;
  }

  /** Write everything buffered and fsync. */
  flush(): Promise<void> {
    return this.#log.flush();
  }

  /** Synchronous flush, for process-exit hooks. */
  flushSync(): void {
    this.#log.flushSync();
  }

  close(): Promise<void> {
    return this.#log.close();
  }

  #append(record: Record<string, unknown>): void {
    if (this.#exited) throw new Error(`the W&B offline run ${this.path} has already exited`);
    if (this.#log.closed) throw new Error(`the W&B offline run ${this.path} is closed`);
    const msg = this.#type.fromObject({ num: this.#num + 1, ...record });
    this.#log.append(this.#type.encode(msg).finish());
    this.#num++;
  }
}

export function runDirFor(root: string, run: WandbRunInfo, online: boolean): string {
  return join(wandbDir(root), `${online ? 'run' : 'offline-run'}-${wandbTimestamp(run.startTimeMs)}-${run.runId}`);
}

const NON_ASCII = /[^\x00-\x7f]/;
const SMALL_VARINTS = Array.from({ length: 128 }, (_, i) => String.fromCharCode(i));

/** A non-negative integer (up to 2^53) as a protobuf varint, one char per byte. */
function varint(n: number): string {
  if (n < 128) return SMALL_VARINTS[n]!;
  let out = '';
  while (n >= 128) {
    out += String.fromCharCode((n % 128) | 0x80);
    n = Math.floor(n / 128);
  }
  return out + String.fromCharCode(n);
}

// ---- reader ------------------------------------------------------------------------------------

interface PbItem {
  key?: string;
  nested_key?: string[];
  value_json?: string;
}

function decodeItems(list: PbItem[] | undefined): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const it of list ?? []) {
    const key = it.nested_key && it.nested_key.length > 0 ? it.nested_key.join('/') : (it.key ?? '');
    out[key] = parseValueJson(it.value_json ?? '');
  }
  return out;
}

interface PbRun {
  run_id?: string;
  entity?: string;
  project?: string;
  config?: { update?: PbItem[] };
  run_group?: string;
  job_type?: string;
  display_name?: string;
  notes?: string;
  tags?: string[];
  host?: string;
  starting_step?: number;
  start_time?: { seconds?: number; nanos?: number };
  resumed?: boolean;
}

function decodeRun(r: PbRun): WandbRunInfo {
  const run: WandbRunInfo = {
    runId: r.run_id ?? '',
    entity: r.entity ?? '',
    project: r.project ?? '',
    config: decodeItems(r.config?.update),
    startTimeMs: (r.start_time?.seconds ?? 0) * 1000 + (r.start_time?.nanos ?? 0) / 1e6,
  };
  if (r.display_name) run.displayName = r.display_name;
  if (r.notes) run.notes = r.notes;
  if (r.tags && r.tags.length > 0) run.tags = r.tags;
  if (r.run_group) run.group = r.run_group;
  if (r.job_type) run.jobType = r.job_type;
  if (r.host) run.host = r.host;
  if (r.starting_step) run.startingStep = r.starting_step;
  if (r.resumed) run.resumed = true;
  return run;
}

interface PbRecord {
  num?: number;
  record_type?: string;
  header?: { version_info?: { producer?: string; min_consumer?: string } };
  run?: PbRun;
  config?: { update?: PbItem[] };
  summary?: { update?: PbItem[] };
  history?: { item?: PbItem[]; step?: { num?: number } };
  files?: { files?: { path?: string }[] };
  exit?: { exit_code?: number; runtime?: number };
}

/** Decode one serialized `wandb_internal.Record`. */
export function decodeWandbRecord(payload: Uint8Array): DecodedWandbRecord {
  const type = wandbRecordType();
  const obj = type.toObject(type.decode(payload), { longs: Number, enums: String, oneofs: true }) as PbRecord;
  const num = typeof obj.num === 'number' ? obj.num : 0;
  switch (obj.record_type) {
    case 'header':
      return { num, kind: 'header', producer: obj.header?.version_info?.producer ?? '', minConsumer: obj.header?.version_info?.min_consumer ?? '' };
    case 'run':
      return { num, kind: 'run', run: decodeRun(obj.run ?? {}) };
    case 'config':
      return { num, kind: 'config', items: decodeItems(obj.config?.update) };
    case 'summary':
      return { num, kind: 'summary', items: decodeItems(obj.summary?.update) };
    case 'history':
      return { num, kind: 'history', items: decodeItems(obj.history?.item), step: obj.history?.step?.num ?? 0 };
    case 'files':
      return { num, kind: 'files', files: (obj.files?.files ?? []).map((f) => f.path ?? '') };
    case 'exit':
      return { num, kind: 'exit', exitCode: obj.exit?.exit_code ?? 0, runtime: obj.exit?.runtime ?? 0 };
    case 'final':
      return { num, kind: 'final' };
    case 'footer':
      return { num, kind: 'footer' };
    default:
      return { num, kind: 'other' };
  }
}

/**
 * Read a `.wandb` file: every intact record, decoded. Damage in the middle of the file is skipped
 * (resynchronising by block as W&B's reader does) and listed in `damaged` with byte ranges;
 * `error` is why reading stopped early (a bad header, a torn tail). Kinds are the framing kinds
 * (`header`, `checksum`, `truncated`, `padding`, `sequence`) or `decode` (a record that is not a
 * valid `wandb_internal.Record`; it is skipped).
 */
export async function readWandbFile(path: string): Promise<{
  records: DecodedWandbRecord[];
  damaged: { offset: number; to: number; kind: string; message: string }[];
  error?: { offset: number; kind: string; message: string };
}> {
  const log = readTransactionLog(await readFile(path));
  const records: DecodedWandbRecord[] = [];
  const damaged: { offset: number; to: number; kind: string; message: string }[] = [...log.damaged];
  for (let i = 0; i < log.records.length; i++) {
    try {
      records.push(decodeWandbRecord(log.records[i]!));
    } catch (e) {
      const at = log.offsets[i]!;
      damaged.push({ offset: at, to: log.offsets[i + 1] ?? at + log.records[i]!.length, kind: 'decode', message: `record at offset ${at} is not a wandb_internal.Record: ${(e as Error).message}` });
    }
  }
  damaged.sort((a, b) => a.offset - b.offset);
  return log.error ? { records, damaged, error: log.error } : { records, damaged };
}

// ---- finding runs ------------------------------------------------------------------------------

async function isDir(p: string): Promise<boolean> {
  try {
    return (await stat(p)).isDirectory();
  } catch {
    return false;
  }
}

async function listDir(p: string): Promise<string[]> {
  try {
    return (await readdir(p)).sort();
  } catch {
    return [];
  }
}

/** The `.wandb` files directly in a run directory. */
async function runFiles(dir: string): Promise<string[]> {
  return (await listDir(dir)).filter((n) => n.endsWith('.wandb')).map((n) => join(dir, n));
}

/** `.wandb` files of the `offline-run-*` directories directly below `dir`. */
async function offlineRunsIn(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const name of await listDir(dir)) {
    if (name.startsWith('offline-run-') && (await isDir(join(dir, name)))) out.push(...(await runFiles(join(dir, name))));
  }
  return out;
}

/**
 * Offline runs under `path` — a root holding `wandb/` or `.wandb/`, a `wandb/` directory itself, an
 * `offline-run-*` directory (or any directory holding `.wandb` files), or a `.wandb` file — except
 * those with a `.synced` marker next to the `.wandb` file. Returns `.wandb` paths, sorted; [] if
 * `path` does not exist.
 */
export async function findOfflineRuns(path: string): Promise<string[]> {
  let st;
  try {
    st = await stat(path);
  } catch {
    return [];
  }
  let found: string[];
  if (st.isFile()) {
    found = path.endsWith('.wandb') ? [path] : [];
  } else {
    const set = new Set<string>([
      ...(await runFiles(path)),
      ...(await offlineRunsIn(path)),
      ...(await offlineRunsIn(join(path, 'wandb'))),
      ...(await offlineRunsIn(join(path, '.wandb'))),
    ]);
    found = [...set];
  }
  const out: string[] = [];
  for (const f of found) {
    if (basename(f).startsWith('.')) continue;
    try {
      await stat(`${f}.synced`);
    } catch {
      out.push(f);
    }
  }
  return out.sort();
}

/** Create the empty `<file>.synced` marker W&B writes after uploading a run. */
export async function markSynced(wandbFile: string): Promise<void> {
  await writeFile(`${wandbFile}.synced`, '');
}

/**
 * MLflow's file store (`mlruns/`), written directly in the layout MLflow 2.x reads
 * (`mlflow ui --backend-store-uri ./mlruns`):
 *   <root>/<exp_id>/meta.yaml, tags/<key>
 *   <root>/<exp_id>/<run_id>/meta.yaml, metrics/<key> ("<ts> <value> <step>" lines), params/<key>, tags/<key>
 * Keys containing '/' become subdirectories. meta.yaml files are replaced atomically (write + rename);
 * every file is guarded by an in-process lock so concurrent trackers never interleave writes.
 */
import { closeSync, fstatSync, ftruncateSync, mkdirSync, openSync, readSync, renameSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { userInfo } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { BackendError, ValidationError } from '../../core/errors.js';
import { escapePointer } from '../../core/humanize.js';
import { pathNameProblem } from '../../io/safe-path.js';
import { walkFiles } from '../../io/fs-util.js';
import { lazy } from '../../io/lazy.js';
import { diskMessage } from '../../io/spool.js';

const crypto = lazy<typeof import('node:crypto')>('node:crypto');
import { experimentIdProblem, keyProblem, pyFloatRepr, runIdProblem } from './keys.js';
import { PARAM_IMMUTABLE, type ExperimentInfo, type MlflowKV, type MlflowMetric, type MlflowStore, type RunData, type RunInfo, type RunStatus } from './store.js';

const STATUS_CODE: Record<RunStatus, number> = { RUNNING: 1, SCHEDULED: 2, FINISHED: 3, FAILED: 4, KILLED: 5 };
const STATUS_NAME = Object.fromEntries(Object.entries(STATUS_CODE).map(([k, v]) => [v, k])) as Record<number, RunStatus>;

type Yaml = typeof import('yaml');
let yamlModule: Promise<Yaml> | undefined;
const yaml = () => (yamlModule ??= import('yaml'));

/** Per-path promise chains shared by every FileStore in the process. */
const locks = new Map<string, Promise<unknown>>();
function withLock<T>(path: string, fn: () => Promise<T>): Promise<T> {
  const prev = locks.get(path) ?? Promise.resolve();
  const next = prev.then(fn, fn);
  const settled = next.catch(() => undefined);
  locks.set(path, settled);
  void settled.then(() => {
    if (locks.get(path) === settled) locks.delete(path);
  });
  return next;
}

/** Write `path` whole or not at all: a temp file, renamed over it; the temp file is removed on failure. */
async function atomicWrite(path: string, text: string): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  const tmp = `${path}.${process.pid}.${crypto().randomBytes(4).toString('hex')}.tmp`;
  try {
    await writeFile(tmp, text);
    await rename(tmp, path);
  } catch (e) {
    await rm(tmp, { force: true }).catch(() => undefined);
    throw fileError(path, e);
  }
}

/** An fs error naming the file (and saying when the disk is full); the original is the cause. */
class FileWriteError extends Error {
  readonly code: string | undefined;
  constructor(path: string, cause: unknown) {
    super(`${path}: ${diskMessage(cause)}`, { cause });
    this.code = (cause as NodeJS.ErrnoException).code;
  }
}
function fileError(path: string, e: unknown): Error {
  return e instanceof BackendError || e instanceof FileWriteError ? (e as Error) : new FileWriteError(path, e);
}

function fail(message: string, e: unknown): BackendError {
  return e instanceof BackendError ? e : new BackendError('mlflow', `${message}: ${(e as Error).message}`, { cause: e, code: (e as NodeJS.ErrnoException).code });
}

/**
 * Thrown by `logBatch` when some metric lines could not be appended (e.g. the disk is full): the
 * files hold whole lines only (a failed append is cut back to where it started), and `unwritten`
 * lists the metrics that are not in them, to be retried.
 */
export class MetricWriteError extends BackendError {
  readonly unwritten: MlflowMetric[];
  /** The message without the `mlflow: ` prefix. */
  readonly detail: string;
  constructor(detail: string, cause: unknown, unwritten: MlflowMetric[]) {
    super('mlflow', detail, { cause, code: (cause as NodeJS.ErrnoException).code });
    this.name = 'MetricWriteError';
    this.detail = detail;
    this.unwritten = unwritten;
  }
}

/**
 * If `fd`'s file does not end in a newline (a torn line from a crash or an old failed write), cut
 * it back to just after its last newline, so the next line is not glued onto the torn one.
 */
function repairTornLine(fd: number, _path: string): void {
  const size = fstatSync(fd).size;
  if (size === 0) return;
  const one = Buffer.alloc(1);
  readSync(fd, one, 0, 1, size - 1);
  if (one[0] === 0x0a) return;
  const CHUNK = 64 * 1024;
  let end = size;
  while (end > 0) {
    const start = Math.max(0, end - CHUNK);
    const buf = Buffer.alloc(end - start);
    readSync(fd, buf, 0, buf.length, start);
    const nl = buf.lastIndexOf(0x0a);
    if (nl >= 0) {
      ftruncateSync(fd, start + nl + 1);
      return;
    }
    end = start;
  }
  ftruncateSync(fd, 0);
}

/** Append whole lines to a metric file: on a failed write the file is cut back to its previous size. */
function appendLinesSync(path: string, text: string): void {
  const fd = openSync(path, 'a+');
  try {
    repairTornLine(fd, path); // one pread: another process may have crashed mid-line
    const before = fstatSync(fd).size;
    const buf = Buffer.from(text);
    try {
      let off = 0;
      while (off < buf.length) off += writeSync(fd, buf, off, buf.length - off);
    } catch (e) {
      try {
        ftruncateSync(fd, before);
      } catch {
        // could not cut back: repaired before the next append
      }
      throw e;
    }
  } finally {
    closeSync(fd);
  }
}

/**
 * Every name that becomes a path in the store is checked before anything is written: keys by
 * MLflow's own rules (which also keep them inside their folder), then by the shared containment
 * check; run and experiment ids by MLflow's id patterns. Throws ValidationError naming the name.
 */
function checkNames(where: string, names: { runId?: string; experimentId?: string; keys?: Iterable<string> }): void {
  const issues: { pointer: string; code: string; message: string }[] = [];
  const add = (pointer: string, code: string, message: string) => issues.push({ pointer, code, message });
  if (names.runId !== undefined) {
    const p = runIdProblem(names.runId);
    if (p) add('/run_id', 'mlflow-run-id', `run id ${JSON.stringify(names.runId)} ${p}`);
  }
  if (names.experimentId !== undefined) {
    const p = experimentIdProblem(names.experimentId);
    if (p) add('/experiment_id', 'mlflow-experiment-id', `experiment id ${JSON.stringify(names.experimentId)} ${p}`);
  }
  for (const key of names.keys ?? []) {
    const p = keyProblem(key) ?? pathNameProblem(key);
    if (p) add(`/${escapePointer(key)}`, 'mlflow-key', `${JSON.stringify(key)} ${p}`);
  }
  if (issues.length > 0) throw new ValidationError(`mlflow: ${where}: ${issues.map((i) => i.message).join('; ')}`, issues);
}

function* keysOf(batch: { metrics?: MlflowMetric[]; params?: MlflowKV[]; tags?: MlflowKV[] }): Iterable<string> {
  const seen = new Set<string>();
  for (const list of [batch.metrics, batch.params, batch.tags]) {
    for (const x of list ?? []) {
      if (!seen.has(x.key)) {
        seen.add(x.key);
        yield x.key;
      }
    }
  }
}

/** Resolve a path or file: URI to the store root directory. */
export function fileStoreRoot(uri: string): string {
  if (uri.startsWith('file:')) return resolve(new URL(uri).pathname);
  return resolve(uri);
}

export class FileStore implements MlflowStore {
  readonly root: string;
  readonly target: string;

  constructor(uri: string) {
    this.root = fileStoreRoot(uri);
    this.target = this.root;
  }

  async #dump(value: Record<string, unknown>): Promise<string> {
    return (await yaml()).stringify(value, { lineWidth: 0 });
  }

  async #readYaml(path: string): Promise<Record<string, unknown> | undefined> {
    try {
      return (await yaml()).parse(await readFile(path, 'utf8')) as Record<string, unknown>;
    } catch {
      return undefined;
    }
  }

  /** MLflow creates the Default experiment (id 0) in a new store. */
  async #ensureRoot(): Promise<void> {
    await withLock(join(this.root, '0', 'meta.yaml'), async () => {
      const meta = join(this.root, '0', 'meta.yaml');
      if (await this.#readYaml(meta)) return;
      const now = Date.now();
      await atomicWrite(
        meta,
        await this.#dump({
          artifact_location: pathToFileURL(join(this.root, '0')).href,
          creation_time: now,
          experiment_id: '0',
          last_update_time: now,
          lifecycle_stage: 'active',
          name: 'Default',
        }),
      );
    });
  }

  async #experiments(): Promise<(ExperimentInfo & { lifecycle: string })[]> {
    let entries: string[] = [];
    try {
      entries = await readdir(this.root);
    } catch {
      return [];
    }
    const out: (ExperimentInfo & { lifecycle: string })[] = [];
    for (const e of entries) {
      if (e.startsWith('.') || e === 'models') continue;
      const meta = await this.#readYaml(join(this.root, e, 'meta.yaml'));
      if (!meta || typeof meta.name !== 'string') continue;
      out.push({ experimentId: String(meta.experiment_id), name: meta.name, artifactLocation: String(meta.artifact_location ?? ''), lifecycle: String(meta.lifecycle_stage) });
    }
    return out;
  }

  async getExperimentByName(name: string): Promise<ExperimentInfo | undefined> {
    try {
      await this.#ensureRoot();
      const found = (await this.#experiments()).find((x) => x.name === name && x.lifecycle === 'active');
      return found && { experimentId: found.experimentId, name: found.name, artifactLocation: found.artifactLocation };
    } catch (e) {
      throw fail(`cannot read the file store ${this.root}`, e);
    }
  }

  createExperiment(name: string, artifactLocation: string | null, tags: MlflowKV[]): Promise<string> {
    // One lock for all creations in this store: two trackers creating the same name get one experiment.
    try {
      checkNames('createExperiment', { keys: tags.map((t) => t.key) });
    } catch (e) {
      return Promise.reject(e);
    }
    return withLock(join(this.root, '.create-experiment'), async () => {
      try {
        const existing = await this.getExperimentByName(name);
        if (existing) return existing.experimentId;
        const id = String(crypto().randomInt(100_000_000, 999_999_999)) + String(crypto().randomInt(100_000_000, 999_999_999));
        const dir = join(this.root, id);
        for (const t of tags) await atomicWrite(join(dir, 'tags', t.key), t.value);
        const now = Date.now();
        await atomicWrite(
          join(dir, 'meta.yaml'),
          await this.#dump({
            artifact_location: artifactLocation ?? pathToFileURL(dir).href,
            creation_time: now,
            experiment_id: id,
            last_update_time: now,
            lifecycle_stage: 'active',
            name,
          }),
        );
        return id;
      } catch (e) {
        throw fail(`cannot create experiment ${JSON.stringify(name)} in ${this.root}`, e);
      }
    });
  }

  #runDir(experimentId: string, runId: string): string {
    return join(this.root, experimentId, runId);
  }

  async #findRun(runId: string): Promise<{ dir: string; meta: Record<string, unknown> } | undefined> {
    checkNames('run lookup', { runId });
    let entries: string[] = [];
    try {
      entries = await readdir(this.root);
    } catch {
      return undefined;
    }
    for (const e of entries) {
      const meta = await this.#readYaml(join(this.root, e, runId, 'meta.yaml'));
      if (meta) return { dir: join(this.root, e, runId), meta };
    }
    return undefined;
  }

  async createRun(request: { experimentId: string; startTime: number; runName: string | null; tags: MlflowKV[] }): Promise<RunInfo> {
    checkNames('createRun', { experimentId: request.experimentId, keys: request.tags.map((t) => t.key) });
    const runId = crypto().randomBytes(16).toString('hex');
    const dir = this.#runDir(request.experimentId, runId);
    const runName = request.runName ?? `run-${runId.slice(0, 8)}`;
    try {
      await mkdir(join(dir, 'metrics'), { recursive: true });
      await mkdir(join(dir, 'params'), { recursive: true });
      await mkdir(join(dir, 'artifacts'), { recursive: true });
      const tags = [...request.tags];
      if (!tags.some((t) => t.key === 'mlflow.runName')) tags.push({ key: 'mlflow.runName', value: runName });
      for (const t of tags) await atomicWrite(join(dir, 'tags', t.key), t.value);
      const info: RunInfo = {
        runId,
        experimentId: request.experimentId,
        runName,
        status: 'RUNNING',
        artifactUri: pathToFileURL(join(dir, 'artifacts')).href,
        startTime: request.startTime,
      };
      await this.#writeRunMeta(dir, info, null);
      return info;
    } catch (e) {
      throw fail(`cannot create a run in ${dir}`, e);
    }
  }

  async #writeRunMeta(dir: string, info: RunInfo, endTime: number | null): Promise<void> {
    await atomicWrite(
      join(dir, 'meta.yaml'),
      await this.#dump({
        artifact_uri: info.artifactUri,
        end_time: endTime,
        entry_point_name: '',
        experiment_id: info.experimentId,
        lifecycle_stage: 'active',
        run_id: info.runId,
        run_name: info.runName,
        run_uuid: info.runId,
        source_name: '',
        source_type: 4,
        source_version: '',
        start_time: info.startTime,
        status: STATUS_CODE[info.status],
        tags: [],
        user_id: userInfo().username,
      }),
    );
  }

  async #readKV(dir: string): Promise<Record<string, string>> {
    const out: Record<string, string> = {};
    for (const p of await walkFiles(dir, (n) => !n.endsWith('.tmp'))) out[p.slice(dir.length + 1).split('\\').join('/')] = await readFile(p, 'utf8');
    return out;
  }

  #info(meta: Record<string, unknown>): RunInfo {
    return {
      runId: String(meta.run_id),
      experimentId: String(meta.experiment_id),
      runName: String(meta.run_name ?? ''),
      status: STATUS_NAME[Number(meta.status)] ?? 'RUNNING',
      artifactUri: String(meta.artifact_uri ?? ''),
      startTime: Number(meta.start_time ?? 0),
    };
  }

  async getRun(runId: string): Promise<RunData | undefined> {
    const found = await this.#findRun(runId);
    if (!found) return undefined;
    return { info: this.#info(found.meta), params: await this.#readKV(join(found.dir, 'params')), tags: await this.#readKV(join(found.dir, 'tags')) };
  }

  async updateRun(runId: string, status: RunStatus, endTime?: number): Promise<void> {
    const found = await this.#findRun(runId);
    if (!found) throw new BackendError('mlflow', `Run '${runId}' not found in ${this.root}`, { code: 'RESOURCE_DOES_NOT_EXIST', status: 404 });
    await withLock(join(found.dir, 'meta.yaml'), async () => {
      const meta = (await this.#readYaml(join(found.dir, 'meta.yaml'))) ?? found.meta;
      const info = { ...this.#info(meta), status };
      await this.#writeRunMeta(found.dir, info, endTime ?? ((meta.end_time as number | null) ?? null));
    });
  }

  /** Synchronous status update for process-exit paths. */
  updateRunSync(runDir: string, info: RunInfo, status: RunStatus, endTime: number): void {
    // Dynamic yaml is not available synchronously; meta.yaml is simple enough to print by hand here.
    const q = (s: string) => `'${s.replace(/'/g, "''")}'`;
    const text = [
      `artifact_uri: ${q(info.artifactUri)}`,
      `end_time: ${endTime}`,
      `entry_point_name: ''`,
      `experiment_id: ${q(info.experimentId)}`,
      'lifecycle_stage: active',
      `run_id: ${info.runId}`,
      `run_name: ${q(info.runName)}`,
      `run_uuid: ${info.runId}`,
      `source_name: ''`,
      'source_type: 4',
      `source_version: ''`,
      `start_time: ${info.startTime}`,
      `status: ${STATUS_CODE[status]}`,
      'tags: []',
      `user_id: ${q(userInfo().username)}`,
      '',
    ].join('\n');
    const tmp = join(runDir, `meta.yaml.${process.pid}.exit.tmp`);
    try {
      writeFileSync(tmp, text);
      renameSync(tmp, join(runDir, 'meta.yaml'));
    } catch (e) {
      rmSync(tmp, { force: true });
      throw fileError(join(runDir, 'meta.yaml'), e);
    }
  }

  /** Synchronous metric append for process-exit paths (whole lines, as logBatch). */
  appendMetricsSync(runDir: string, metrics: readonly MlflowMetric[]): void {
    const byKey = new Map<string, string>();
    for (const m of metrics) byKey.set(m.key, `${byKey.get(m.key) ?? ''}${m.timestamp} ${pyFloatRepr(m.value)} ${m.step}\n`);
    for (const [key, text] of byKey) {
      const path = join(runDir, 'metrics', key);
      try {
        mkdirSync(dirname(path), { recursive: true });
        appendLinesSync(path, text);
      } catch (e) {
        throw fileError(path, e);
      }
    }
  }

  runDir(info: RunInfo): string {
    return this.#runDir(info.experimentId, info.runId);
  }

  async logBatch(runId: string, batch: { metrics?: MlflowMetric[]; params?: MlflowKV[]; tags?: MlflowKV[] }): Promise<void> {
    checkNames('logBatch', { runId, keys: keysOf(batch) });
    const found = await this.#cachedRunDir(runId);
    try {
      if (batch.params?.length) {
        for (const p of batch.params) {
          const path = join(found, 'params', p.key);
          await withLock(path, async () => {
            const old = await readFile(path, 'utf8').catch(() => undefined);
            if (old !== undefined && old !== p.value) {
              throw new BackendError(
                'mlflow',
                `${PARAM_IMMUTABLE}: ${JSON.stringify(p.key)} is ${JSON.stringify(old)}, not ${JSON.stringify(p.value)}`,
                { code: 'INVALID_PARAMETER_VALUE', status: 400 },
              );
            }
            if (old === undefined) await atomicWrite(path, p.value);
          });
        }
      }
      if (batch.tags?.length) for (const t of batch.tags) await withLock(join(found, 'tags', t.key), () => atomicWrite(join(found, 'tags', t.key), t.value));
    } catch (e) {
      throw fail(`cannot write to run ${runId} in ${this.root}`, e);
    }
    if (batch.metrics?.length) await this.#appendMetrics(runId, found, batch.metrics);
  }

  /** Append metric lines, one file per key; whole lines only; failures name the file and keep the unwritten metrics. */
  async #appendMetrics(runId: string, runDir: string, metrics: MlflowMetric[]): Promise<void> {
    const byKey = new Map<string, MlflowMetric[]>();
    for (const m of metrics) {
      let list = byKey.get(m.key);
      if (!list) byKey.set(m.key, (list = []));
      list.push(m);
    }
    const unwritten: MlflowMetric[] = [];
    let first: unknown;
    await Promise.all(
      [...byKey].map(([key, list]) => {
        const path = join(runDir, 'metrics', key);
        return withLock(path, async () => {
          let text = '';
          for (const m of list) text += `${m.timestamp} ${pyFloatRepr(m.value)} ${m.step}\n`;
          try {
            await mkdir(dirname(path), { recursive: true });
            appendLinesSync(path, text);
          } catch (e) {
            for (const m of list) unwritten.push(m);
            first ??= fileError(path, e);
          }
        });
      }),
    );
    if (first !== undefined) {
      throw new MetricWriteError(`cannot write to run ${runId} in ${this.root}: metric file ${(first as Error).message}`, (first as Error).cause ?? first, unwritten);
    }
  }

  readonly #runDirs = new Map<string, string>();
  async #cachedRunDir(runId: string): Promise<string> {
    let dir = this.#runDirs.get(runId);
    if (!dir) {
      const found = await this.#findRun(runId);
      if (!found) throw new BackendError('mlflow', `Run '${runId}' not found in ${this.root}`, { code: 'RESOURCE_DOES_NOT_EXIST', status: 404 });
      dir = found.dir;
      this.#runDirs.set(runId, dir);
    }
    return dir;
  }

  async metricHistory(runId: string, key: string): Promise<MlflowMetric[]> {
    const dir = await this.#cachedRunDir(runId);
    const text = await readFile(join(dir, 'metrics', key), 'utf8').catch(() => '');
    return text
      .split('\n')
      .filter((l) => l.trim() !== '')
      .map((l) => {
        const [ts, v, step] = l.trim().split(' ');
        const value = v === 'nan' ? NaN : v === 'inf' ? Infinity : v === '-inf' ? -Infinity : Number(v);
        return { key, timestamp: Number(ts), value, step: Number(step ?? 0) };
      });
  }

  async close(): Promise<void> {}
}


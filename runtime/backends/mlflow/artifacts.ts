/**
 * MLflow artifacts: where a run's artifact URI puts the bytes, and the background uploads.
 *
 * - `mlflow-artifacts:/<exp>/<run>/artifacts` (a tracking server proxying artifacts, the 2.x default)
 *   → `PUT /api/2.0/mlflow-artifacts/artifacts/<exp>/<run>/artifacts/<path>` on the tracking server
 *   (or on the host the URI names), the body streamed from disk with backpressure; an `http(s)://`
 *   artifact URI is PUT to the same way (MLflow's HttpArtifactRepository).
 * - `file:` URIs and plain paths (the file store's `<run>/artifacts`, or a server whose artifact root
 *   is a local directory) → copied there (`copyFile`, then an atomic rename).
 * - Any other scheme (`s3://`, `gs://`, `wasbs://`, `hdfs://`, ...) would need the client to write to
 *   that store itself: a ConfigError naming the scheme and what works.
 *
 * Uploads run in the background (`ArtifactUploads.add`), at most 2 at a time, in order per destination
 * path; each request is retried like metrics (withRetry, the MLflow classification, the run's
 * deadline). A local file is stat'ed before and after it is sent: if it changed meanwhile, it is sent
 * again once, and a second change fails loudly. Failures are collected and reported by `settle()`
 * (the driver's flush()/finish()), naming the file.
 */
import { createReadStream, createWriteStream, statSync, type Stats } from 'node:fs';
import { copyFile, mkdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import { dirname, posix, resolve as resolvePath } from 'node:path';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { fileURLToPath } from 'node:url';
import { BackendError, ConfigError, ValidationError } from '../../core/errors.js';
import { HttpClient, httpError } from '../../io/http.js';
import { lazy } from '../../io/lazy.js';
import { withRetry, type RetryPolicy } from '../../io/retry.js';
import { pathNameProblem, resolveInside } from '../../io/safe-path.js';
import { classifyMlflowError } from './rest-store.js';

const crypto = lazy<typeof import('node:crypto')>('node:crypto');

const SCHEME = /^([a-zA-Z][a-zA-Z0-9+.-]*):/;
const ARTIFACTS_API = '/api/2.0/mlflow-artifacts/artifacts';

/** Where a run's artifacts go. */
export type ArtifactTarget =
  | { kind: 'local'; root: string; uri: string }
  | { kind: 'http'; client: HttpClient; base: string; uri: string; own: boolean };

export interface RestAccess {
  /** The tracking server's client (its path prefix is kept for every request). */
  http: HttpClient;
  url: string;
  headers: Record<string, string>;
  insecure: boolean;
}

/**
 * The target of a run's artifact URI. `rest` is the tracking server (undefined for the file store).
 * Throws ConfigError for artifact stores the client would have to write itself.
 */
export function artifactTarget(artifactUri: string, rest: RestAccess | undefined): ArtifactTarget {
  const scheme = SCHEME.exec(artifactUri)?.[1]?.toLowerCase();
  if (scheme === undefined || scheme.length === 1 /* C:\ */) return { kind: 'local', root: resolvePath(artifactUri), uri: artifactUri };
  if (scheme === 'file') return { kind: 'local', root: fileURLToPath(artifactUri), uri: artifactUri };
  if (scheme === 'mlflow-artifacts' || scheme === 'http' || scheme === 'https') {
    if (scheme === 'mlflow-artifacts' && !rest) {
      throw new ConfigError(
        `MLflowTracker: the run's artifact URI ${artifactUri} is served by a tracking server (mlflow-artifacts:), but this run is in a local file store; log to that server (tracking_uri or MLFLOW_TRACKING_URI = http(s)://host:port)`,
        { option: 'tracking_uri' },
      );
    }
    const u = new URL(artifactUri);
    if (scheme === 'mlflow-artifacts') {
      const tracking = new URL(rest!.url);
      // MLflow's MlflowArtifactsRepository.resolve_uri: the tracking server's scheme and path prefix, the URI's host if it names one.
      const base = `${ARTIFACTS_API}/${u.pathname}`.replace(/\/\/+/g, '/').replace(/\/$/, '');
      if (!u.host || u.host === tracking.host) return { kind: 'http', client: rest!.http, base, uri: artifactUri, own: false };
      const client = new HttpClient({ baseUrl: `${tracking.protocol}//${u.host}${tracking.pathname}`, headers: rest!.headers, insecureTls: rest!.insecure, backend: 'mlflow' });
      return { kind: 'http', client, base, uri: artifactUri, own: true };
    }
    const client = new HttpClient({ baseUrl: u.origin, headers: rest?.headers ?? {}, insecureTls: rest?.insecure ?? false, backend: 'mlflow' });
    return { kind: 'http', client, base: u.pathname.replace(/\/$/, ''), uri: artifactUri, own: true };
  }
  throw new ConfigError(
    `MLflowTracker: the run's artifact location ${artifactUri} uses '${scheme}:', a store the client would have to write to itself, which trackspec does not do. ` +
      `What works: a tracking server that proxies artifacts (mlflow-artifacts: URIs; \`mlflow server\` does by default in MLflow 2.x, ` +
      `and keeps them in ${scheme}:// with --artifacts-destination ${scheme}://...), or a local directory (a file store, or an experiment created with logging_dir set to a local path)`,
    { option: 'logging_dir' },
  );
}

/** Why an artifact path (relative, posix) cannot be used, or undefined. `root`: may name the artifact root itself. */
export function artifactPathProblem(p: string, root: boolean): string | undefined {
  if (typeof p !== 'string') return 'must be a string';
  if (p.includes('\\')) return "contains '\\'; use '/' between folders";
  if (p.includes('#')) return "contains '#', which the tracking server refuses in artifact paths";
  if (p.split('/').includes('..')) return "contains a '..' segment; give a path below the run's artifact root";
  return pathNameProblem(p, { root });
}

/** The run-relative posix path, or a ValidationError naming `what`. */
export function checkArtifactPath(where: string, what: string, p: string | undefined, root: boolean): string {
  if (p === undefined || p === null) return '';
  const problem = artifactPathProblem(p, root);
  if (problem) throw new ValidationError(`MLflowTracker.${where}: ${what} ${JSON.stringify(p)} ${problem}`, [{ pointer: `/${what}`, code: 'artifact-path', message: problem }]);
  return posix.normalize(p).replace(/^\.\/?$/, '').replace(/\/$/, '');
}

/** stat a local path the caller named, or a ValidationError naming it. */
export function checkLocal(where: string, what: string, path: string, kind: 'file' | 'dir'): Stats {
  if (typeof path !== 'string' || path === '') throw new ValidationError(`MLflowTracker.${where}: ${what} must be a non-empty path`, [{ pointer: `/${what}`, code: 'path', message: 'must be a non-empty path' }]);
  let st: Stats;
  try {
    st = statSync(path);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'does not exist' : `cannot be read (${code ?? (e as Error).message})`;
    throw new ValidationError(`MLflowTracker.${where}: ${what} ${path} ${why}`, [{ pointer: `/${what}`, code: 'path', message: why }]);
  }
  if (kind === 'file' && !st.isFile()) {
    const why = st.isDirectory() ? 'is a directory; use logArtifacts() for a directory' : 'is not a regular file';
    throw new ValidationError(`MLflowTracker.${where}: ${what} ${path} ${why}`, [{ pointer: `/${what}`, code: 'path', message: why }]);
  }
  if (kind === 'dir' && !st.isDirectory()) {
    const why = 'is not a directory; use logArtifact() for a file';
    throw new ValidationError(`MLflowTracker.${where}: ${what} ${path} ${why}`, [{ pointer: `/${what}`, code: 'path', message: why }]);
  }
  return st;
}

const MIME: Record<string, string> = {
  json: 'application/json',
  png: 'image/png',
  webp: 'image/webp',
  jpg: 'image/jpeg',
  jpeg: 'image/jpeg',
  txt: 'text/plain',
  csv: 'text/csv',
  html: 'text/html',
  yaml: 'application/x-yaml',
  yml: 'application/x-yaml',
};
const mimeOf = (rel: string) => MIME[posix.extname(rel).slice(1).toLowerCase()] ?? 'application/octet-stream';

/** URL path of one artifact under a target's base (each segment percent-encoded). */
function putPath(base: string, rel: string): string {
  return `${base}/${rel.split('/').map(encodeURIComponent).join('/')}`;
}

/** The source of an artifact: a local file (streamed) or bytes made here (figures, images, tables). */
export type ArtifactSource = { file: string } | { bytes: Uint8Array };

/** Whether a file's identity and contents changed between two stats (size, mtime, inode). */
const changed = (a: Stats, b: Stats) => a.size !== b.size || a.mtimeMs !== b.mtimeMs || a.ino !== b.ino || a.ctimeMs !== b.ctimeMs;

function fileGone(file: string, e: unknown): BackendError {
  const code = (e as NodeJS.ErrnoException).code;
  return new BackendError('mlflow', `cannot read ${file} to upload it (${code === 'ENOENT' ? 'it was deleted before the upload' : ((e as Error).message ?? code)}); keep the file until flush() resolves`, { cause: e, code });
}

async function statSource(file: string): Promise<Stats> {
  try {
    return await stat(file);
  } catch (e) {
    throw fileGone(file, e);
  }
}

/**
 * Send one artifact to a target (retried per `policy`). A file that changed while it was sent is sent
 * again once; a second change is a BackendError.
 */
export async function sendArtifact(target: ArtifactTarget, rel: string, source: ArtifactSource, policy: Partial<RetryPolicy>): Promise<void> {
  if ('bytes' in source) {
    if (target.kind === 'local') return writeLocal(target.root, rel, source.bytes);
    return withRetry(
      async () => {
        const res = await target.client.request('PUT', putPath(target.base, rel), { body: source.bytes, headers: { 'content-type': mimeOf(rel) }, timeoutMs: 0 });
        if (res.status < 200 || res.status >= 300) throw httpError('mlflow', `upload artifact ${rel}`, res);
      },
      { policy, classify: classifyMlflowError, backend: 'mlflow' },
    );
  }
  const file = source.file;
  for (let attempt = 1; ; attempt++) {
    const before = await statSource(file);
    if (target.kind === 'local') {
      const dest = destination(target.root, rel);
      const tmp = `${dest}.${process.pid}.${crypto().randomBytes(4).toString('hex')}.tmp`;
      try {
        await mkdir(dirname(dest), { recursive: true });
        await copyFile(file, tmp);
        const after = await statSource(file);
        if (!changed(before, after)) {
          await rename(tmp, dest);
          return;
        }
      } catch (e) {
        await rm(tmp, { force: true }).catch(() => undefined);
        if (e instanceof BackendError) throw e;
        throw new BackendError('mlflow', `cannot copy ${file} to ${dest}: ${(e as Error).message}`, { cause: e, code: (e as NodeJS.ErrnoException).code });
      }
      await rm(tmp, { force: true });
    } else {
      await withRetry(
        async () => {
          const size = before.size;
          const body = size === 0 ? new Uint8Array(0) : createReadStream(file, { start: 0, end: size - 1, highWaterMark: 1 << 20 });
          try {
            const res = await target.client.request('PUT', putPath(target.base, rel), {
              body,
              headers: { 'content-type': mimeOf(rel), 'content-length': String(size) },
              timeoutMs: 0,
            });
            if (res.status < 200 || res.status >= 300) throw httpError('mlflow', `upload ${file} as artifact ${rel}`, res);
          } finally {
            if ('destroy' in body) body.destroy();
          }
        },
        { policy, classify: classifyMlflowError, backend: 'mlflow' },
      );
      if (!changed(before, await statSource(file))) return;
    }
    if (attempt >= 2) {
      throw new BackendError(
        'mlflow',
        `${file} changed while it was uploaded as artifact ${rel}, twice (size or modification time differ before and after); ` +
          `the stored copy may mix old and new contents. Log it again once nothing writes to it`,
        { code: 'ARTIFACT_CHANGED' },
      );
    }
  }
}

function destination(root: string, rel: string): string {
  return resolveInside(root, rel, (problem) => new ValidationError(`mlflow: artifact path ${JSON.stringify(rel)} ${problem}`, [{ pointer: '/artifactPath', code: 'artifact-path', message: problem }]));
}

async function writeLocal(root: string, rel: string, bytes: Uint8Array): Promise<void> {
  const dest = destination(root, rel);
  const tmp = `${dest}.${process.pid}.${crypto().randomBytes(4).toString('hex')}.tmp`;
  try {
    await mkdir(dirname(dest), { recursive: true });
    await writeFile(tmp, bytes);
    await rename(tmp, dest);
  } catch (e) {
    await rm(tmp, { force: true }).catch(() => undefined);
    throw new BackendError('mlflow', `cannot write artifact ${dest}: ${(e as Error).message}`, { cause: e, code: (e as NodeJS.ErrnoException).code });
  }
}

/**
 * Copy an artifact's bytes to `dest` (the spool's copy), hashing them on the way (the file is
 * streamed, never read whole). Returns size and sha256 (hex) of what was copied.
 */
export async function copyWithDigest(source: ArtifactSource, dest: string): Promise<{ size: number; sha256: string }> {
  await mkdir(dirname(dest), { recursive: true, mode: 0o700 });
  const hash = crypto().createHash('sha256');
  let size = 0;
  if ('bytes' in source) {
    hash.update(source.bytes);
    await writeFile(dest, source.bytes, { mode: 0o600 });
    size = source.bytes.byteLength;
  } else {
    const tap = new Transform({
      transform(chunk: Buffer, _enc, done) {
        hash.update(chunk);
        size += chunk.length;
        done(null, chunk);
      },
    });
    await pipeline(createReadStream(source.file, { highWaterMark: 1 << 20 }), tap, createWriteStream(dest, { mode: 0o600 }));
  }
  return { size, sha256: hash.digest('hex') };
}

/** sha256 (hex) and size of a file, streamed. */
export async function fileDigest(file: string): Promise<{ size: number; sha256: string }> {
  const hash = crypto().createHash('sha256');
  let size = 0;
  for await (const chunk of createReadStream(file, { highWaterMark: 1 << 20 })) {
    hash.update(chunk as Buffer);
    size += (chunk as Buffer).length;
  }
  return { size, sha256: hash.digest('hex') };
}

/** One failed background job, as flush()/finish() report it. */
export interface ArtifactFailure {
  /** The local file (or a description of generated bytes). */
  what: string;
  rel: string;
  error: unknown;
}

/**
 * Background jobs with at most `concurrency` running, in order per key (a destination path), and
 * their failures kept for `settle()`.
 */
export class ArtifactUploads {
  readonly #concurrency: number;
  #running = 0;
  readonly #waiting: (() => void)[] = [];
  readonly #pending = new Set<Promise<void>>();
  readonly #chains = new Map<string, Promise<void>>();
  #failures: ArtifactFailure[] = [];

  constructor(concurrency = 2) {
    this.#concurrency = concurrency;
  }

  /** Jobs not yet settled. */
  get pending(): number {
    return this.#pending.size;
  }

  /** Queue `job` after the previous job with the same `key`; its failure is recorded for settle(). */
  add(key: string, what: string, rel: string, job: () => Promise<void>): void {
    const prev = this.#chains.get(key) ?? Promise.resolve();
    const run = prev.then(async () => {
      await this.#slot();
      try {
        await job();
      } catch (error) {
        this.#failures.push({ what, rel, error });
      } finally {
        this.#release();
      }
    });
    this.#chains.set(key, run);
    this.#pending.add(run);
    void run.then(() => {
      this.#pending.delete(run);
      if (this.#chains.get(key) === run) this.#chains.delete(key);
    });
  }

  async #slot(): Promise<void> {
    if (this.#running < this.#concurrency) {
      this.#running++;
      return;
    }
    await new Promise<void>((r) => this.#waiting.push(r));
  }

  #release(): void {
    const next = this.#waiting.shift();
    if (next) next();
    else this.#running--;
  }

  /** Wait for every queued job (also those queued meanwhile); returns and forgets the failures. */
  async settle(): Promise<ArtifactFailure[]> {
    while (this.#pending.size > 0) await Promise.all([...this.#pending]);
    const out = this.#failures;
    this.#failures = [];
    return out;
  }
}

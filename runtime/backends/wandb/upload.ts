/**
 * Run-file uploads as wandb-core 0.28.2 does them (`runfiles/uploader.go`, `filetransfer/`):
 *
 * 1. GraphQL `CreateRunFiles(entity, project, run, files)` for a batch of paths (relative to the run's
 *    files directory) → `uploadHeaders` ("Key: Value" strings) and `files[{name, uploadUrl}]`; a
 *    response with a different number of files drops the batch, a null `uploadUrl` skips that file;
 * 2. `PUT uploadUrl` with the raw bytes and the parsed upload headers (no Authorization, no
 *    Content-Type), retried on connection errors, 429 and 5xx (not 501) with backoff; a PUT refused
 *    with 400/401/403/404 (an expired or otherwise unusable URL) asks CreateRunFiles for a new URL,
 *    up to `urlRenewals` times;
 * 3. the uploaded paths are reported in a file_stream post `{uploaded: [paths]}`.
 *
 * Runs in the background. Memory: file bytes are held while the total stays under `budgetBytes`; a
 * file past it is written to the files directory and read back when its turn comes.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { BackendError } from '../../core/errors.js';
import { HttpClient, HttpStatusError, HttpTransportError, httpError } from '../../io/http.js';
import { withRetry, type RetryDecision } from '../../io/retry.js';
import { resolveInside } from '../../io/safe-path.js';
import type { MediaFile } from './media.js';

export interface CreateRunFilesResult {
  uploadHeaders: string[] | null;
  files: { name: string; uploadUrl: string | null }[];
}

/** What the uploader needs from the run's connection (GraphQL and file_stream, with their own retries). */
export interface UploadTransport {
  createRunFiles(paths: string[]): Promise<CreateRunFilesResult>;
  reportUploaded(paths: string[]): Promise<void>;
}

/** Mutable for tests. */
export const UPLOAD_LIMITS = {
  /** File bytes held in memory at most; past it files wait on disk. */
  budgetBytes: 64 << 20,
  /** Paths per CreateRunFiles call. */
  batch: 100,
  /** PUTs at once (wandb-core allows 128). */
  concurrency: 8,
  /** New URLs asked for a file whose URL was refused. */
  urlRenewals: 3,
  /** PUT retries (wandb-core: 20). */
  maxRetries: 20,
};

export const CREATE_RUN_FILES = `mutation CreateRunFiles($entity: String!, $project: String!, $run: String!, $files: [String!]!) {
  createRunFiles(input: {entityName: $entity, projectName: $project, runName: $run, files: $files}) {
    runID
    uploadHeaders
    files { name uploadUrl }
  }
}`;

/** "Key: Value" strings → headers (split at the first ':', trimmed), as wandb-core's task_default.go. */
export function parseUploadHeaders(list: readonly string[] | null | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const h of list ?? []) {
    const i = h.indexOf(':');
    if (i <= 0) continue;
    out[h.slice(0, i).trim().toLowerCase()] = h.slice(i + 1).trim();
  }
  return out;
}

/** wandb-core's PUT policy: connection errors, 429, 5xx except 501 are retried; other statuses are not. */
function classifyPut(e: unknown): RetryDecision {
  if (e instanceof HttpTransportError) return e.code === 'ECLOSED' ? { retry: false } : { retry: true };
  if (e instanceof HttpStatusError && (e.status === 429 || (e.status >= 500 && e.status !== 501) || e.status < 200)) {
    return e.retryAfterMs !== undefined ? { retry: true, afterMs: e.retryAfterMs } : { retry: true };
  }
  return { retry: false };
}

/** A refused URL (expired or unusable): ask for a new one. */
const URL_REFUSED = new Set([400, 401, 403, 404]);

export class MediaUploader {
  readonly #t: UploadTransport;
  readonly #filesDir: string;
  readonly #deadlineMs: number;
  readonly #warn: (m: string) => void;
  readonly #queue: MediaFile[] = [];
  /** Every file added and not uploaded yet (queued, in flight or failed). */
  readonly #pending = new Set<MediaFile>();
  readonly #clients = new Map<string, HttpClient>();
  #held = 0;
  #running: Promise<void> | undefined;
  #stopped = false;
  /** Files uploaded (and reported). */
  uploaded = 0;
  /** Bytes held in memory now (for tests). */
  get heldBytes(): number {
    return this.#held;
  }

  readonly #persist: boolean;
  readonly #onUploaded: ((files: MediaFile[]) => void) | undefined;

  /**
   * `persist`: write every file to the files directory when it is added (its bytes stay in memory
   * within the budget), so that a killed process leaves it on disk for `trackspec sync` (the
   * write-ahead lists it). `onUploaded`: files uploaded and reported.
   */
  constructor(t: UploadTransport, filesDir: string, options: { deadlineMs: number; warn: (m: string) => void; persist?: boolean; onUploaded?: (files: MediaFile[]) => void }) {
    this.#t = t;
    this.#filesDir = filesDir;
    this.#deadlineMs = options.deadlineMs;
    this.#warn = options.warn;
    this.#persist = options.persist === true;
    this.#onUploaded = options.onUploaded;
  }

  /** Where a run file lives on disk. */
  localPath(f: MediaFile): string {
    return resolveInside(this.#filesDir, f.path, (p) => new BackendError('wandb', `run file ${JSON.stringify(f.path)} ${p}`));
  }

  /** Queue files for upload (returns at once; the upload runs in the background). */
  add(files: readonly MediaFile[]): void {
    for (const f of files) {
      if (this.#pending.has(f)) continue;
      if (f.bytes && this.#held + f.size > UPLOAD_LIMITS.budgetBytes) this.#spill(f);
      else if (f.bytes) {
        if (this.#persist && f.onDisk !== this.#filesDir) this.#write(f);
        this.#held += f.size;
      }
      this.#pending.add(f);
      this.#queue.push(f);
    }
    this.#kick();
  }

  /** Write a file to the files directory and drop its bytes from memory. */
  #spill(f: MediaFile): void {
    if (!f.bytes) return;
    if (f.onDisk !== this.#filesDir) this.#write(f); // not already there (written by the encoding worker, or persisted)
    f.bytes = undefined;
  }

  #write(f: MediaFile): void {
    const p = this.localPath(f);
    mkdirSync(dirname(p), { recursive: true });
    writeFileSync(p, f.bytes!);
    f.onDisk = this.#filesDir;
  }

  #release(f: MediaFile): void {
    if (f.bytes) this.#held -= f.size;
    f.bytes = undefined;
    this.#pending.delete(f);
  }

  #kick(): void {
    if (this.#running || this.#stopped || this.#queue.length === 0) return;
    this.#running = this.#loop().finally(() => {
      this.#running = undefined;
      this.#kick();
    });
  }

  async #loop(): Promise<void> {
    while (this.#queue.length > 0 && !this.#stopped) {
      const batch = this.#queue.splice(0, UPLOAD_LIMITS.batch);
      try {
        await this.#uploadBatch(batch);
      } catch (e) {
        this.#warn(`wandb: could not upload ${batch.length} run file(s) (${(e as Error).message}); they are kept for \`trackspec sync\``);
      }
    }
  }

  async #uploadBatch(batch: MediaFile[]): Promise<void> {
    let todo = batch;
    for (let round = 0; todo.length > 0 && round <= UPLOAD_LIMITS.urlRenewals && !this.#stopped; round++) {
      const res = await this.#t.createRunFiles(todo.map((f) => f.path));
      const list = Array.isArray(res?.files) ? res.files : [];
      if (list.length !== todo.length) throw new BackendError('wandb', `CreateRunFiles answered ${list.length} file(s) for ${todo.length}`);
      const headers = parseUploadHeaders(res.uploadHeaders);
      const urls = new Map(list.map((f) => [f.name, f.uploadUrl]));
      const refused: MediaFile[] = [];
      const done: MediaFile[] = [];
      let next = 0;
      const worker = async (): Promise<void> => {
        while (next < todo.length) {
          const f = todo[next++]!;
          const url = urls.get(f.path);
          if (!url) {
            this.#warn(`wandb: the server gave no upload URL for ${f.path}; it was not uploaded`);
            continue;
          }
          try {
            await this.#put(url, headers, f);
            done.push(f);
          } catch (e) {
            if (e instanceof HttpStatusError && URL_REFUSED.has(e.status)) refused.push(f);
            else this.#warn(`wandb: uploading ${f.path} failed (${(e as Error).message}); it is kept for \`trackspec sync\``);
          }
        }
      };
      await Promise.all(Array.from({ length: Math.min(UPLOAD_LIMITS.concurrency, todo.length) }, worker));
      if (done.length > 0) {
        await this.#t.reportUploaded(done.map((f) => f.path));
        for (const f of done) this.#release(f);
        this.uploaded += done.length;
        this.#onUploaded?.(done);
      }
      todo = refused;
    }
    if (todo.length > 0) this.#warn(`wandb: the upload URL of ${todo.map((f) => f.path).join(', ')} was refused ${UPLOAD_LIMITS.urlRenewals + 1} times; kept for \`trackspec sync\``);
  }

  #client(url: URL): HttpClient {
    let c = this.#clients.get(url.origin);
    if (!c) {
      c = new HttpClient({ baseUrl: url.origin, backend: 'wandb', proxyFromEnv: true });
      this.#clients.set(url.origin, c);
    }
    return c;
  }

  async #put(uploadUrl: string, headers: Record<string, string>, f: MediaFile): Promise<void> {
    const url = new URL(uploadUrl);
    const client = this.#client(url);
    let retries = 0;
    await withRetry(
      async () => {
        const body = f.bytes ?? (await readFile(this.localPath(f)));
        const res = await client.request('PUT', `${url.pathname}${url.search}`, { body, headers: { ...headers, 'user-agent': 'trackspec (wandb)' }, timeoutMs: 0 });
        if (res.status < 200 || res.status >= 300) throw httpError('wandb', `PUT ${f.path}`, res);
      },
      {
        backend: 'wandb',
        policy: { deadlineMs: this.#deadlineMs },
        classify: (e) => (++retries > UPLOAD_LIMITS.maxRetries ? { retry: false } : classifyPut(e)),
      },
    );
  }

  /**
   * Wait until every queued file is uploaded, or `waitMs` passed; then stop. Returns the files not
   * uploaded, all written to the files directory (the caller records them for `trackspec sync`).
   */
  async drain(waitMs: number): Promise<MediaFile[]> {
    const until = Date.now() + waitMs;
    while ((this.#running || this.#queue.length > 0) && Date.now() < until && !this.#stopped) {
      this.#kick();
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([this.#running, new Promise((r) => (timer = setTimeout(r, Math.max(1, until - Date.now()))))]);
      clearTimeout(timer);
      if (!this.#running && this.#queue.length === 0) break;
    }
    this.#stopped = true;
    const left = [...this.#pending];
    for (const f of left) this.#spill(f);
    this.#held = 0;
    return left;
  }

  /** At process exit: stop, write every file not uploaded to the files directory, return them. */
  abandon(): MediaFile[] {
    this.#stopped = true;
    const left = [...this.#pending];
    for (const f of left) this.#spill(f);
    this.#held = 0;
    return left;
  }

  async close(): Promise<void> {
    this.#stopped = true;
    await Promise.all([...this.#clients.values()].map((c) => c.close()));
  }
}

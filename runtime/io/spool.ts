/**
 * A durable, append-only spool of records a network backend could not deliver (server down, retry
 * deadline passed, process exiting), and its replay.
 *
 * Location (`defaultSpoolDir`): `$TRACKSPEC_SPOOL_DIR`, else `$XDG_STATE_HOME/trackspec/spool`
 * (when `XDG_STATE_HOME` is an absolute path, per the XDG spec), else
 * `~/.local/state/trackspec/spool`. Blank variables count as unset. Directories are created 0700.
 *
 * Files: `<dir>/<backend>/<timestamp>-<pid>-<random>.spool`, mode 0600, framed with
 * `framing.ts` (length + CRC-32 per frame). Frame payloads start with a type byte:
 * - `H` + JSON header (`{spool: 1, backend, target, created, meta}`), first and once;
 * - `R` + JSON record, numbered 0, 1, 2, ... in file order (the sequence numbers `append` returns);
 * - `A` + JSON `{acked: n}`: records `0 .. n-1` were delivered (written by `replaySpool`).
 *
 * Writing: `append()` encodes the records, writes them with one synchronous `write` (so appends and
 * `appendSync` from an exit hook can never interleave or reorder) and resolves after an
 * asynchronous `fdatasync` (concurrent appends share one). `appendSync` also syncs synchronously.
 * A crash mid-append leaves a torn tail that readers detect by CRC and ignore (reported).
 *
 * Locking: a live writer holds `<file>.lock` (its pid) from `create` to `close`; `replaySpool`
 * takes the same lock, so a spool is never replayed while its writer is alive or by two replayers
 * at once. A lock whose pid is dead is stale and taken over (best effort: pid reuse can make a
 * stale lock look live; delete the `.lock` file by hand then).
 *
 * Replay: `replaySpool` sends unacked records in order, in chunks, appending an fsync'd ack after
 * each successful send, so a rerun resumes after the last ack. A torn tail is cut off (truncated)
 * before the first ack is appended (otherwise the acks would sit behind unreadable bytes). When
 * every record is acked, the file is **renamed to `<file>.done`** (kept for inspection; `.done`
 * files are ignored by `listSpools` and can be deleted at any time), or deleted with
 * `{ removeDone: true }`.
 *
 * Exactly-once: a crash between a successful send and its ack resends that one chunk on the next
 * replay (at-least-once delivery). The backend driver must make replayed chunks idempotent or
 * de-duplicate against the server; the spool does not.
 */
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { BackendError } from '../core/errors.js';
import { describeRanges, encodeFrames, fileSource, scanFrameFile, type DamagedRange } from './framing.js';

export type { DamagedRange } from './framing.js';
import { lazy } from './lazy.js';

const crypto = lazy<typeof import('node:crypto')>('node:crypto');

/** What one `trackspec sync` pass over a directory did (every backend reports the same shape). */
export interface SyncSummary {
  spools: number;
  sent: number;
  duplicates: number;
  failed: { path: string; error: string }[];
}

export interface SpoolHeader {
  backend: string;
  /** e.g. the server URL WITHOUT credentials (userinfo is stripped on write anyway). */
  target: string;
  created: number;
  meta?: Record<string, unknown>;
}

export interface SpoolInfo {
  path: string;
  header: SpoolHeader;
  records: number;
  acked: number;
  pending: number;
  tornTail: boolean;
  /** Damaged byte ranges in the middle of the file (the records there are lost; the rest is readable). */
  damaged: DamagedRange[];
  /** File size in bytes. */
  bytes?: number;
  /** Pid holding the lock (a live writer or replayer), when the lock is live. */
  lockedBy?: number;
}

const TYPE_HEADER = 0x48; // 'H'
const TYPE_RECORD = 0x52; // 'R'
const TYPE_ACK = 0x41; // 'A'
const SPOOL_EXT = '.spool';

/** Where spools live: $TRACKSPEC_SPOOL_DIR, else $XDG_STATE_HOME/trackspec/spool, else ~/.local/state/trackspec/spool. */
export function defaultSpoolDir(env: NodeJS.ProcessEnv = process.env): string {
  const explicit = env.TRACKSPEC_SPOOL_DIR?.trim();
  if (explicit) return path.resolve(explicit);
  const xdg = env.XDG_STATE_HOME?.trim();
  if (xdg && path.isAbsolute(xdg)) return path.join(xdg, 'trackspec', 'spool');
  const home = env.HOME?.trim() || os.homedir();
  return path.join(home, '.local', 'state', 'trackspec', 'spool');
}

/** Remove URL userinfo (and token-like query parameters) from a target string. */
export function stripCredentials(target: string): string {
  let out = target;
  try {
    const u = new URL(target);
    if (u.username || u.password) {
      u.username = '';
      u.password = '';
    }
    for (const key of [...u.searchParams.keys()]) {
      if (/token|key|secret|password|auth/i.test(key)) u.searchParams.set(key, '***');
    }
    out = u.toString();
    if (!target.endsWith('/') && out.endsWith('/') && u.pathname === '/') out = out.slice(0, -1);
  } catch {
    // not a URL: drop anything that looks like userinfo (scheme://user:pass@host).
    out = target.replace(/^([a-z][a-z0-9+.-]*:\/\/)[^/@]*@/i, '$1');
  }
  return out;
}

function payload(type: number, json: string): Buffer {
  const b = Buffer.allocUnsafe(1 + Buffer.byteLength(json));
  b[0] = type;
  b.write(json, 1);
  return b;
}

function recordPayload(record: unknown): Buffer {
  const json = JSON.stringify(record);
  if (json === undefined) throw new TypeError('spool: record is not JSON-serialisable');
  return payload(TYPE_RECORD, json);
}

function pidAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function readLockPid(lockPath: string): number | undefined {
  try {
    const pid = Number.parseInt(fs.readFileSync(lockPath, 'utf8').trim(), 10);
    return Number.isFinite(pid) ? pid : undefined;
  } catch {
    return undefined;
  }
}

/** The pid of a live lock holder, or undefined (no lock, or stale). */
function liveLockHolder(file: string): number | undefined {
  const pid = readLockPid(`${file}.lock`);
  return pid !== undefined && pidAlive(pid) ? pid : undefined;
}

/** Take `<file>.lock` for this process; throws a BackendError when a live process holds it. */
function acquireLock(file: string, backend: string): () => void {
  const lockPath = `${file}.lock`;
  for (let tries = 0; tries < 3; tries++) {
    try {
      const fd = fs.openSync(lockPath, 'wx', 0o600);
      fs.writeSync(fd, `${process.pid}\n`);
      fs.closeSync(fd);
      let released = false;
      return () => {
        if (released) return;
        released = true;
        try {
          if (readLockPid(lockPath) === process.pid) fs.unlinkSync(lockPath);
        } catch {
          // already gone
        }
      };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') {
        throw new BackendError(backend, `spool ${file}: cannot create lock file: ${(err as Error).message}`, { cause: err });
      }
      const holder = readLockPid(lockPath);
      if (holder !== undefined && pidAlive(holder)) {
        throw new BackendError(
          backend,
          `spool ${file} is in use by process ${holder} (its writer or another replay); ` +
            `if that process is not trackspec, delete ${lockPath}`,
        );
      }
      try {
        fs.unlinkSync(lockPath); // stale
      } catch {
        // raced with someone else: retry
      }
    }
  }
  throw new BackendError(backend, `spool ${file}: could not take the lock ${lockPath}`);
}

function fsyncDir(dir: string): void {
  try {
    const fd = fs.openSync(dir, 'r');
    try {
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
  } catch {
    // not supported on this platform/file system: best effort
  }
}

/** An fs error's message, saying plainly when the disk is full (ENOSPC) or the quota is used up (EDQUOT). */
export function diskMessage(err: unknown): string {
  const code = (err as NodeJS.ErrnoException).code;
  const msg = (err as Error).message;
  if (code === 'ENOSPC') return `the disk is full (${msg}); free some space`;
  if (code === 'EDQUOT') return `the disk quota is used up (${msg}); free some space or raise the quota`;
  return msg;
}

function writeAllSync(fd: number, buf: Buffer): void {
  let off = 0;
  while (off < buf.length) off += fs.writeSync(fd, buf, off, buf.length - off);
}

/**
 * Append `buf` to an O_APPEND file; if the write fails part-way (ENOSPC, EIO), cut the file back
 * to its previous size so later appends do not land behind a damaged frame.
 */
function appendAllSync(fd: number, buf: Buffer): void {
  const before = fs.fstatSync(fd).size;
  try {
    writeAllSync(fd, buf);
  } catch (err) {
    try {
      fs.ftruncateSync(fd, before);
    } catch {
      // the reader will see a torn tail and stop there
    }
    throw err;
  }
}

const CREATE_FLAGS = fs.constants.O_CREAT | fs.constants.O_EXCL | fs.constants.O_WRONLY | fs.constants.O_APPEND;

export class Spool {
  readonly path: string;
  readonly header: SpoolHeader;
  private fd: number;
  private nextSeq = 0;
  /** Bytes in the file (this writer is its only appender while it holds the lock). */
  private size: number;
  private closed = false;
  private readonly releaseLock: () => void;
  // fdatasync coalescing: one in flight; appends arriving meanwhile share the next one.
  private syncing: Promise<void> | undefined;
  private nextSync: Promise<void> | undefined;

  private constructor(file: string, header: SpoolHeader, fd: number, releaseLock: () => void) {
    this.path = file;
    this.header = header;
    this.fd = fd;
    this.releaseLock = releaseLock;
    this.size = fs.fstatSync(fd).size;
  }

  /** Create a new spool file `<dir>/<backend>/<timestamp>-<pid>-<random>.spool` (mode 0600), header first, fsync'd. */
  static async create(dir: string, header: SpoolHeader): Promise<Spool> {
    return Spool.createSync(dir, header);
  }

  /** Synchronous `create` (for the write-ahead timer and exit paths). */
  static createSync(dir: string, header: SpoolHeader): Spool {
    const backend = header.backend;
    if (!/^[A-Za-z0-9_.-]+$/.test(backend)) throw new BackendError(backend, `spool: invalid backend name '${backend}'`);
    const sub = path.join(dir, backend);
    const clean: SpoolHeader = { backend, target: stripCredentials(header.target), created: header.created };
    if (header.meta !== undefined) clean.meta = header.meta;
    try {
      fs.mkdirSync(sub, { recursive: true, mode: 0o700 });
    } catch (err) {
      throw new BackendError(backend, `spool: cannot create ${sub}: ${(err as Error).message}`, { cause: err });
    }
    const name = `${Date.now()}-${process.pid}-${crypto().randomBytes(4).toString('hex')}${SPOOL_EXT}`;
    const file = path.join(sub, name);
    const release = acquireLock(file, backend);
    let fd: number | undefined;
    try {
      fd = fs.openSync(file, CREATE_FLAGS, 0o600);
      fs.fchmodSync(fd, 0o600); // whatever the umask
      writeAllSync(fd, encodeFrames([payload(TYPE_HEADER, JSON.stringify({ spool: 1, ...clean }))]));
      fs.fdatasyncSync(fd);
      fsyncDir(sub);
    } catch (err) {
      if (fd !== undefined) fs.closeSync(fd);
      release();
      throw new BackendError(backend, `spool: cannot create ${file}: ${diskMessage(err)}`, { cause: err });
    }
    return new Spool(file, clean, fd, release);
  }

  /**
   * Synchronous, self-contained append for process-exit paths: append `records` to `existing` when
   * given and usable (its lock is ours or free), else write a new spool file under `dir` atomically
   * (written as `.tmp`, fsync'd, renamed). Returns the path written to.
   */
  static appendSyncTo(existing: string | undefined, dir: string, header: SpoolHeader, records: unknown[]): string {
    const backend = header.backend;
    const frames = encodeFrames(records.map(recordPayload));
    if (existing !== undefined && fs.existsSync(existing)) {
      let release: (() => void) | undefined;
      let usable = readLockPid(`${existing}.lock`) === process.pid;
      if (!usable) {
        try {
          release = acquireLock(existing, backend);
          usable = true;
        } catch {
          usable = false; // being replayed elsewhere: write a new file instead
        }
      }
      if (usable) {
        try {
          const fd = fs.openSync(existing, 'a');
          try {
            appendAllSync(fd, frames);
            fs.fdatasyncSync(fd);
          } finally {
            fs.closeSync(fd);
          }
          return existing;
        } catch (err) {
          throw new BackendError(backend, `spool ${existing}: write failed: ${diskMessage(err)}`, { cause: err });
        } finally {
          release?.();
        }
      }
    }
    if (!/^[A-Za-z0-9_.-]+$/.test(backend)) throw new BackendError(backend, `spool: invalid backend name '${backend}'`);
    const sub = path.join(dir, backend);
    const clean: SpoolHeader = { backend, target: stripCredentials(header.target), created: header.created };
    if (header.meta !== undefined) clean.meta = header.meta;
    const file = path.join(sub, `${Date.now()}-${process.pid}-${crypto().randomBytes(4).toString('hex')}${SPOOL_EXT}`);
    const tmp = `${file}.tmp`;
    try {
      fs.mkdirSync(sub, { recursive: true, mode: 0o700 });
      const fd = fs.openSync(tmp, 'wx', 0o600);
      try {
        fs.fchmodSync(fd, 0o600);
        writeAllSync(fd, encodeFrames([payload(TYPE_HEADER, JSON.stringify({ spool: 1, ...clean }))]));
        writeAllSync(fd, frames);
        fs.fdatasyncSync(fd);
      } finally {
        fs.closeSync(fd);
      }
      fs.renameSync(tmp, file);
      fsyncDir(sub);
    } catch (err) {
      try {
        fs.rmSync(tmp, { force: true });
      } catch {
        // ignore
      }
      throw new BackendError(backend, `spool: cannot write ${file}: ${diskMessage(err)}`, { cause: err });
    }
    return file;
  }

  /** Records appended so far. */
  get records(): number {
    return this.nextSeq;
  }

  /** Append encoded frames with one write; returns the file offset they start at. */
  private writeFrames(buf: Buffer): number {
    if (this.closed) throw new BackendError(this.header.backend, `spool ${this.path}: append after close()`);
    const at = this.size;
    try {
      appendAllSync(this.fd, buf);
    } catch (err) {
      throw new BackendError(this.header.backend, `spool ${this.path}: write failed: ${diskMessage(err)}`, { cause: err });
    }
    this.size = at + buf.length;
    return at;
  }

  private write(records: readonly unknown[]): number[] {
    if (this.closed) throw new BackendError(this.header.backend, `spool ${this.path}: append after close()`);
    if (records.length === 0) return [];
    this.writeFrames(encodeFrames(records.map(recordPayload)));
    const first = this.nextSeq;
    this.nextSeq += records.length;
    const seqs = new Array<number>(records.length);
    for (let i = 0; i < records.length; i++) seqs[i] = first + i;
    return seqs;
  }

  /** Append records (JSON-serialisable) as one durable write + fsync; returns their sequence numbers. */
  async append(records: unknown[]): Promise<number[]> {
    const seqs = this.write(records);
    if (seqs.length > 0) await this.sync();
    return seqs;
  }

  /**
   * Write-ahead: append groups of records with one write (synchronous) and start a background
   * fdatasync; returns each group's byte range `[from, to)` in the file (for `ack`).
   */
  writeGroups(groups: readonly (readonly unknown[])[]): { ranges: [number, number][]; synced: Promise<void> } {
    const payloads: Buffer[] = [];
    const sizes: number[] = [];
    for (const g of groups) {
      let bytes = 0;
      for (const r of g) {
        const p = recordPayload(r);
        payloads.push(p);
        bytes += 8 + p.length;
      }
      sizes.push(bytes);
    }
    const ranges: [number, number][] = [];
    if (payloads.length === 0) return { ranges: groups.map(() => [this.size, this.size]), synced: Promise.resolve() };
    let at = this.writeFrames(encodeFrames(payloads));
    for (const n of sizes) {
      ranges.push([at, at + n]);
      at += n;
    }
    this.nextSeq += payloads.length;
    return { ranges, synced: this.sync() };
  }

  /**
   * Mark the records in these byte ranges done (delivered): one ack frame, written synchronously
   * (it survives a SIGKILL; it is fsync'd with the next sync). Replays skip done records.
   */
  ack(ranges: readonly (readonly [number, number])[]): void {
    if (ranges.length === 0 || this.closed) return;
    this.writeFrames(encodeFrames([payload(TYPE_ACK, JSON.stringify({ done: mergeRanges(ranges) }))]));
  }

  /** Synchronous variant for process-exit paths (write + fdatasync, both blocking). */
  appendSync(records: unknown[]): number[] {
    const seqs = this.write(records);
    if (seqs.length > 0) {
      try {
        fs.fdatasyncSync(this.fd);
      } catch (err) {
        throw new BackendError(this.header.backend, `spool ${this.path}: fsync failed: ${(err as Error).message}`, { cause: err });
      }
    }
    return seqs;
  }

  private sync(): Promise<void> {
    if (!this.syncing) {
      this.syncing = this.syncOnce().finally(() => {
        this.syncing = undefined;
      });
      return this.syncing;
    }
    // A sync is in flight but may have started before our write: wait for the next one.
    this.nextSync ??= this.syncing.then(
      () => this.startNext(),
      () => this.startNext(),
    );
    return this.nextSync;
  }

  private startNext(): Promise<void> {
    this.nextSync = undefined;
    return this.sync();
  }

  private syncOnce(): Promise<void> {
    return new Promise((resolve, reject) => {
      fs.fdatasync(this.fd, (err) => {
        if (err) reject(new BackendError(this.header.backend, `spool ${this.path}: fsync failed: ${err.message}`, { cause: err }));
        else resolve();
      });
    });
  }

  /** Wait for pending syncs, close the file and release the lock. Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    try {
      await this.nextSync;
      await this.syncing;
    } catch {
      // reported to the append that awaited it
    }
    try {
      fs.closeSync(this.fd);
    } finally {
      this.fd = -1;
      this.releaseLock();
    }
  }

  /** Synchronous close for exit paths (no final sync beyond what appendSync did). */
  closeSync(): void {
    if (this.closed) return;
    this.closed = true;
    try {
      fs.closeSync(this.fd);
    } catch {
      // ignore
    } finally {
      this.fd = -1;
      this.releaseLock();
    }
  }
}

// --- reading -------------------------------------------------------------------------------------

interface ScanResult {
  header: SpoolHeader | undefined;
  records: number;
  /** Records already delivered (acked). */
  acked: number;
  /** Offset just past the last intact frame. */
  end: number;
  size: number;
  tornTail: boolean;
  damaged: DamagedRange[];
  /** Whether record `i` (at file offset `offset`) is done. */
  isDone: (index: number, offset: number) => boolean;
}

/** A spool payload starts with a type byte and JSON: used to reject false frame candidates when resynchronising. */
function plausiblePayload(head: Buffer): boolean {
  if (head.length < 2) return false;
  const t = head[0];
  if (t !== TYPE_HEADER && t !== TYPE_RECORD && t !== TYPE_ACK) return false;
  const c = head[1]!;
  return c === 0x7b /* { */ || c === 0x5b /* [ */ || c === 0x22 /* " */ || c === 0x2d || (c >= 0x30 && c <= 0x39) || c === 0x74 || c === 0x66 || c === 0x6e;
}

/** Merged, sorted byte ranges `[from, to)` with a membership test. */
class RangeSet {
  private starts: number[] = [];
  private ends: number[] = [];
  private raw: [number, number][] = [];
  private built = true;
  add(from: number, to: number): void {
    if (to > from) {
      this.raw.push([from, to]);
      this.built = false;
    }
  }
  private build(): void {
    this.raw.sort((a, b) => a[0] - b[0]);
    const s: number[] = [];
    const e: number[] = [];
    for (const [a, b] of this.raw) {
      if (s.length && a <= e[e.length - 1]!) e[e.length - 1] = Math.max(e[e.length - 1]!, b);
      else {
        s.push(a);
        e.push(b);
      }
    }
    this.starts = s;
    this.ends = e;
    this.raw = s.map((a, i) => [a, e[i]!]);
    this.built = true;
  }
  has(x: number): boolean {
    if (!this.built) this.build();
    let lo = 0;
    let hi = this.starts.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if (this.starts[mid]! <= x) {
        if (x < this.ends[mid]!) return true;
        lo = mid + 1;
      } else hi = mid - 1;
    }
    return false;
  }
}

/**
 * Read a spool file: its header, record count, acks (both the prefix form `{acked: n}` and the
 * byte-range form `{done: [[from, to], ...]}`), damaged ranges and torn tail. With `onRecord`, a
 * second pass calls it (awaited) for each record that is not done, with its frame's byte range.
 */
async function scan(
  file: string,
  onRecord?: (json: Buffer, index: number, offset: number, end: number) => void | Promise<void>,
): Promise<ScanResult> {
  const fh = await fsp.open(file, 'r');
  try {
    const size = (await fh.stat()).size;
    const src = fileSource(fh, size);
    let header: SpoolHeader | undefined;
    let records = 0;
    let prefix = 0;
    const done = new RangeSet();
    const offsets: number[] = [];
    const res = await scanFrameFile(
      src,
      (f, offset) => {
        const type = f[0];
        if (type === TYPE_HEADER && header === undefined && records === 0) {
          const h = JSON.parse(f.subarray(1).toString('utf8')) as SpoolHeader & { spool?: number };
          header = { backend: h.backend, target: h.target, created: h.created };
          if (h.meta !== undefined) header.meta = h.meta;
        } else if (type === TYPE_RECORD) {
          offsets.push(offset);
          records++;
        } else if (type === TYPE_ACK) {
          const a = JSON.parse(f.subarray(1).toString('utf8')) as { acked?: number; done?: [number, number][] };
          if (typeof a.acked === 'number' && a.acked > prefix) prefix = a.acked;
          if (Array.isArray(a.done)) for (const r of a.done) if (Array.isArray(r) && typeof r[0] === 'number' && typeof r[1] === 'number') done.add(r[0], r[1]);
        }
      },
      { plausible: plausiblePayload },
    );
    const isDone = (index: number, offset: number) => index < prefix || done.has(offset);
    let acked = 0;
    for (let i = 0; i < offsets.length; i++) if (isDone(i, offsets[i]!)) acked++;
    if (onRecord && acked < records) {
      let index = 0;
      await scanFrameFile(
        src,
        async (f, offset, end) => {
          if (f[0] !== TYPE_RECORD) return;
          const i = index++;
          if (!isDone(i, offset)) await onRecord(f.subarray(1), i, offset, end);
        },
        { plausible: plausiblePayload },
      );
    }
    return { header, records, acked, end: res.end, size, tornTail: res.tornFrom !== undefined, damaged: res.damaged, isDone };
  } finally {
    await fh.close();
  }
}

/** Every `.spool` file under `dir` (one backend's subfolder, or all), oldest first. */
export async function listSpools(dir: string, backend?: string): Promise<SpoolInfo[]> {
  let backends: string[];
  if (backend !== undefined) {
    backends = [backend];
  } else {
    try {
      backends = (await fsp.readdir(dir, { withFileTypes: true })).filter((e) => e.isDirectory()).map((e) => e.name);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw err;
    }
  }
  const out: SpoolInfo[] = [];
  for (const b of backends.sort()) {
    let names: string[];
    try {
      names = (await fsp.readdir(path.join(dir, b))).filter((n) => n.endsWith(SPOOL_EXT)).sort();
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue;
      throw err;
    }
    for (const name of names) {
      const file = path.join(dir, b, name);
      let s: ScanResult;
      try {
        s = await scan(file);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue; // replayed meanwhile
        throw err;
      }
      if (!s.header) continue; // crashed before its header was durable: nothing in it
      const info: SpoolInfo = {
        path: file,
        header: s.header,
        records: s.records,
        acked: s.acked,
        pending: s.records - s.acked,
        tornTail: s.tornTail,
        damaged: s.damaged,
        bytes: s.size,
      };
      const holder = liveLockHolder(file);
      if (holder !== undefined) info.lockedBy = holder;
      out.push(info);
    }
  }
  return out;
}

export interface ReplayOptions {
  /** Records per `send` call, default 1000. */
  chunk?: number;
  onProgress?: (done: number, total: number) => void;
  /** Delete the file when everything is acked instead of renaming it to `.done`. */
  removeDone?: boolean;
}

/**
 * Thrown by `replaySpool` when a spool had damaged bytes in the middle: every intact record was
 * sent and acked (`sent`), the file is kept as `<file>.damaged` for inspection.
 */
export class SpoolDamagedError extends BackendError {
  readonly sent: number;
  readonly ranges: DamagedRange[];
  readonly keptAs: string;
  constructor(backend: string, file: string, keptAs: string, ranges: DamagedRange[], sent: number) {
    super(
      backend,
      `spool ${file} is damaged at ${describeRanges(ranges)}: the records there are lost; ` +
        `every intact record (${sent} sent now) was uploaded; the file is kept as ${keptAs}`,
    );
    this.name = 'SpoolDamagedError';
    this.sent = sent;
    this.ranges = ranges;
    this.keptAs = keptAs;
  }
}

/**
 * Replay records that are not done, in order, in chunks of `chunk`, calling send; after each
 * successful send, append an ack of those records' byte ranges (fsync'd) so a rerun resumes after
 * it. A torn tail is cut off (reported). Damaged bytes in the middle are skipped (resynchronising
 * to the next intact frame) and every intact record is sent; the file is then kept as
 * `<file>.damaged` and a `SpoolDamagedError` names the damaged ranges. Otherwise, when all records
 * are done, the file is renamed to `<file>.done` (or deleted with `removeDone`). A send rejection
 * stops the replay and is rethrown (acks so far are kept, the file stays).
 */
export async function replaySpool(
  file: string,
  send: (records: unknown[], header: SpoolHeader) => Promise<void>,
  options: ReplayOptions = {},
): Promise<{ sent: number; skipped: number; tornTail: boolean; damaged: DamagedRange[] }> {
  const chunkSize = Math.max(1, Math.floor(options.chunk ?? 1000));
  const backend = path.basename(path.dirname(file));
  const release = acquireLock(file, backend);
  try {
    const first = await scan(file);
    const header = first.header;
    if (!header) {
      throw new BackendError(backend, `spool ${file}: no readable header (not a trackspec spool, or torn at creation)`);
    }
    const total = first.records - first.acked;
    const fd = fs.openSync(file, 'r+');
    try {
      if (first.tornTail) {
        // Only bytes that run to the physical end of the file: intact frames never move.
        fs.ftruncateSync(fd, first.end);
        fs.fdatasyncSync(fd);
      }
      let done = 0;
      let batch: unknown[] = [];
      let ranges: [number, number][] = [];
      let writePos = first.end;
      const ack = (acked: [number, number][]): void => {
        const buf = encodeFrames([payload(TYPE_ACK, JSON.stringify({ done: mergeRanges(acked) }))]);
        let off = 0;
        while (off < buf.length) off += fs.writeSync(fd, buf, off, buf.length - off, writePos + off);
        writePos += buf.length;
        fs.fdatasyncSync(fd);
      };
      const flushBatch = async (): Promise<void> => {
        if (batch.length === 0) return;
        const records = batch;
        const acked = ranges;
        batch = [];
        ranges = [];
        await send(records, header);
        done += records.length;
        ack(acked);
        options.onProgress?.(done, total);
      };
      if (total > 0) {
        await scan(file, async (json, _i, offset, end) => {
          // The second pass reads the file as it was (acks appended meanwhile are past first.end's records).
          batch.push(JSON.parse(json.toString('utf8')));
          ranges.push([offset, end]);
          if (batch.length >= chunkSize) await flushBatch();
        });
        await flushBatch();
      }
    } finally {
      fs.closeSync(fd);
    }
    if (first.damaged.length > 0) {
      const keptAs = `${file}.damaged`;
      await fsp.rename(file, keptAs);
      fsyncDir(path.dirname(file));
      throw new SpoolDamagedError(backend, file, keptAs, first.damaged, total);
    }
    if (options.removeDone) await fsp.rm(file, { force: true });
    else await fsp.rename(file, `${file}.done`);
    fsyncDir(path.dirname(file));
    return { sent: total, skipped: first.acked, tornTail: first.tornTail, damaged: [] };
  } finally {
    release();
  }
}

/** Sort and merge byte ranges. */
export function mergeRanges(ranges: readonly (readonly [number, number])[]): [number, number][] {
  const sorted = [...ranges].sort((a, b) => a[0] - b[0]);
  const out: [number, number][] = [];
  for (const [a, b] of sorted) {
    const last = out[out.length - 1];
    if (last && a <= last[1]) last[1] = Math.max(last[1], b);
    else out.push([a, b]);
  }
  return out;
}

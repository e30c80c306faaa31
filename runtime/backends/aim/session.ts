/**
 * The Aim run session behind `driver.start` (loaded on first use, so importing the SDK does not pay
 * for the hashing, WebSocket and child-process modules). See index.ts for the behaviour.
 */
import { execFileSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import type { DriverContext, ImageData, TrackerDriver, Values } from '../../core/driver.js';
import { aimTuning, parseAimUri, type AimDriverOptions, type AimRunHandle } from './config.js';
import { checkImage, encodePng } from '../../io/image.js';
import { Batcher } from '../../io/batcher.js';
import { BackendError, ConfigError, TrackspecError } from '../../core/errors.js';
import { registerExitHook } from '../../io/exit-hooks.js';
import { sendWsSync } from '../../io/exit-post.js';
import { HttpTransportError } from '../../io/http.js';
import { RetryDeadlineError, withRetry } from '../../io/retry.js';
import { defaultSpoolDir } from '../../io/spool.js';
import { WriteAhead } from '../../io/write-ahead.js';
import { AimClient, AimServerError } from './client.js';
import { AimRunState, MessageWriter, checkInName, makeContext, type AimContext, type AimImage, type RunHandlers, type Trackable } from './run.js';

const BACKEND = 'aim';
const NO_KWARGS = Object.freeze({ epoch: null, ctx: makeContext(undefined) });
/** PIL's mode for an HWC uint8 image with 1..4 channels. */
const PIL_MODE: Record<number, string> = { 1: 'L', 2: 'LA', 3: 'RGB', 4: 'RGBA' };

/** A new run hash as Aim makes one: 24 hex characters of a uuid4. */
export function newRunHash(): string {
  return randomUUID().replace(/-/g, '').slice(0, 24);
}

/** One queued unit of work, expanded into instructions when its batch is sent. */
type Queued =
  | { t: 'log'; v: Record<string, number | boolean | string>; step: number | undefined; epoch: number | null; ctx: AimContext; ts: number; n: number }
  | { t: 'images'; v: Record<string, { images: AimImage[]; list: boolean }>; step: number | undefined; epoch: number | null; ctx: AimContext; ts: number; n: number }
  | { t: 'attr'; key: string; value: unknown }
  | { t: 'end'; ts: number };

/** Spool record: one write message (base64). */
interface SpoolRecord {
  m: string;
}

function spoolRecords(message: Uint8Array): SpoolRecord[] {
  return [{ m: Buffer.from(message.buffer, message.byteOffset, message.byteLength).toString('base64') }];
}

export interface AimSpoolMeta {
  hash: string;
  handlers: RunHandlers;
  name: string | null;
  experiment: string | null;
}

function isUnreachable(e: unknown): boolean {
  return e instanceof HttpTransportError || e instanceof RetryDeadlineError;
}

function systemParams(): Record<string, unknown> {
  const mask = ['secret', 'key', 'token', 'password'];
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (v !== undefined && !mask.some((m) => k.toLowerCase().includes(m))) env[k] = v;
  }
  const packages: Record<string, string> = {};
  try {
    const pkg = JSON.parse(readFileSync(path.resolve('package.json'), 'utf8')) as Record<string, Record<string, string> | undefined>;
    for (const name of Object.keys({ ...pkg['dependencies'], ...pkg['devDependencies'] })) {
      try {
        packages[name] = (JSON.parse(readFileSync(path.resolve('node_modules', name, 'package.json'), 'utf8')) as { version: string }).version;
      } catch {
        // not installed
      }
    }
  } catch {
    // no package.json in the current directory
  }
  const git: Record<string, string> = {};
  const run = (args: string[]): string | undefined => {
    try {
      return execFileSync('git', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], timeout: 5000 }).trim();
    } catch {
      return undefined;
    }
  };
  if (run(['rev-parse', '--is-inside-work-tree']) === 'true') {
    const branch = run(['rev-parse', '--abbrev-ref', 'HEAD']);
    const remote = run(['config', '--get', 'remote.origin.url']);
    const commit = run(['log', '--pretty=format:%h/%ad/%an', '--date=iso-strict', '-1']);
    if (branch !== undefined) git['branch'] = branch;
    if (remote !== undefined) git['remote_origin_url'] = remote;
    if (commit !== undefined) {
      const [hash, date, author] = commit.split('/');
      Object.assign(git, { commit: { hash, timestamp: date ? Date.parse(date) / 1000 : null, author } });
    }
  }
  return { packages, env_variables: env, git_info: git, executable: process.execPath, arguments: [...process.argv] };
}

/** A run's resources by role, as Aim's SDK requests them: [resource type, kwargs]. */
function runResource(role: keyof RunHandlers, hash: string): [string, Record<string, unknown>] {
  if (role === 'props') return ['StructuredRun', { hash_: hash, read_only: false, created_at: null }];
  if (role === 'files') return ['FileManager', {}];
  return ['TreeView', { name: role, sub: hash, read_only: false, index: false, timeout: null }];
}

/** Create (or re-create) one of the run's resources under its handler. */
async function getRunResource(client: AimClient, role: keyof RunHandlers, hash: string, handlers: RunHandlers): Promise<void> {
  const [type, kwargs] = runResource(role, hash);
  await client.getResource(type, kwargs, { handler: handlers[role]! });
}

/** Handlers chosen here (the server accepts them), so a sync can re-create the same resources. */
function newHandlers(withFiles: boolean): RunHandlers {
  return { meta: randomUUID(), props: randomUUID(), seqs: randomUUID(), ...(withFiles ? { files: randomUUID() } : {}) };
}

/** The run's resources, for `trackspec sync`. */
export async function createRunResources(client: AimClient, hash: string, handlers: RunHandlers): Promise<void> {
  for (const role of ['meta', 'props', 'seqs', 'files'] as const) if (handlers[role]) await getRunResource(client, role, hash, handlers);
}

/** The run's handlers in the order they are released at the end. */
export function runHandlerList(h: RunHandlers): string[] {
  return [h.seqs, h.props, h.files, h.meta].filter((x): x is string => x !== undefined);
}

class AimRunDriver implements TrackerDriver<AimRunHandle> {
  readonly handle: AimRunHandle;
  readonly #ctx: DriverContext;
  readonly #state: AimRunState;
  readonly #batcher: Batcher<Queued>;
  readonly #spoolDir: string;
  readonly #deadlineMs: number;
  readonly #meta: AimSpoolMeta;
  readonly #uri: string;
  #client: AimClient | undefined;
  #extra: { lock?: string; heartbeat?: string };
  /**
   * The spool: with write_ahead, every encoded message is pushed here and written ahead every
   * flush interval unless acknowledged first; messages given up on (unreachable, over the memory
   * cap) are kept in it for `trackspec sync`. File order is encoding order, which is the order the
   * server must apply them in.
   */
  readonly #wal: WriteAhead<Uint8Array>;
  readonly #walOn: boolean;
  /** Encoded messages not yet acknowledged, in order; the head may be in flight. */
  #outbox: Uint8Array[] = [];
  #outboxBytes = 0;
  #pumping: Promise<void> | undefined;
  /** A batch being encoded (taken at exit if the process ends meanwhile). */
  #encoding: Queued[] | undefined;
  /** The first server-side error of a write (reported once by flush()/finish()). */
  #writeError: { error: unknown } | undefined;
  /** Why the rest of the run goes to the spool, once it does. */
  #offline: 'unreachable' | 'overflow' | undefined;
  #finished = false;
  #unregisterExit: () => void;

  constructor(uri: string, client: AimClient | undefined, state: AimRunState, meta: AimSpoolMeta, extra: { lock?: string; heartbeat?: string }, options: AimDriverOptions, ctx: DriverContext) {
    this.#uri = uri;
    this.#client = client;
    this.#state = state;
    this.#meta = meta;
    this.#extra = extra;
    this.#ctx = ctx;
    this.#spoolDir = defaultSpoolDir();
    this.#deadlineMs = options.retry_deadline_secs * 1000;
    if (!client) this.#offline = 'unreachable';
    const intervalMs = options.flush_interval_secs * 1000;
    this.#walOn = options.write_ahead;
    this.#wal = new WriteAhead<Uint8Array>({
      dir: this.#spoolDir,
      header: () => this.#spoolHeader(),
      intervalMs,
      records: spoolRecords,
      onError: (e) => ctx.warnOnce('spool:error', `aim: could not write ahead to the spool in ${this.#spoolDir}: ${(e as Error).message}`),
    });
    const self = this;
    this.handle = {
      hash: state.hash,
      uri,
      name: meta.name,
      experiment: meta.experiment,
      get serverVersion() {
        return self.#client?.serverVersion ?? '';
      },
      get online() {
        return self.#client !== undefined && self.#offline === undefined;
      },
      get spoolPath() {
        return self.#wal.kept > 0 ? self.#wal.path : undefined;
      },
    };
    this.#batcher = new Batcher<Queued>({
      maxBatch: aimTuning.valuesPerMessage,
      weight: (q) => (q.t === 'log' ? q.n : 1),
      maxDelayMs: Math.min(aimTuning.maxDelayMs, intervalMs),
      maxPending: 2_000_000,
      send: async (items) => {
        // Encode on a later turn of the event loop, never inside the log() call that filled the
        // batch. Delivery is not awaited: encoding keeps up even while the server is away, so the
        // write-ahead sees every message.
        this.#encoding = items;
        await new Promise<void>((r) => setImmediate(r));
        if (this.#encoding !== items) return; // taken by the exit path
        this.#encoding = undefined;
        this.#enqueue(this.#expand(items));
      },
      onFailed: async () => undefined,
    });
    this.#unregisterExit = registerExitHook(() => this.#atExit());
  }

  /**
   * Expand queued work into write messages (mutates the run state, in queue order), each at most
   * aimTuning.maxMessageBytes (see config.ts for why they are small); the server applies the
   * instructions in order either way.
   */
  #expand(items: readonly Queued[]): Uint8Array[] {
    const w = new MessageWriter(aimTuning.maxMessageBytes);
    const track = (name: string, t: Trackable, it: { step: number | undefined; epoch: number | null; ctx: AimContext; ts: number }): void => {
      const problem = this.#state.track(w, name, t, it.step, it.epoch, it.ctx, it.ts / 1000);
      if (problem) this.#ctx.warnOnce(`dtype:${name}`, `aim: ${problem}; value skipped`);
    };
    for (const it of items) {
      if (it.t === 'attr') this.#state.setAttr(w, it.key, it.value);
      else if (it.t === 'end') this.#state.setEndTime(w, it.ts / 1000);
      else if (it.t === 'images') {
        for (const name in it.v) track(name, { kind: 'images', value: it.v[name]!.images, list: it.v[name]!.list }, it);
      } else {
        for (const name in it.v) {
          const v = it.v[name]!;
          track(name, typeof v === 'string' ? { kind: 'text', value: v } : { kind: 'metric', value: typeof v === 'boolean' ? (v ? 1 : 0) : v }, it);
        }
      }
    }
    return w.finish();
  }

  /** Queue encoded messages for delivery, in order (write-ahead: pushed to the spool's queue too). */
  #enqueue(messages: Uint8Array[]): void {
    if (messages.length === 0) return;
    if (this.#walOn) for (const m of messages) this.#wal.push(m);
    if (this.#offline) {
      this.#wal.keep(messages);
      return;
    }
    for (const m of messages) {
      this.#outbox.push(m);
      this.#outboxBytes += m.byteLength;
    }
    if (this.#outboxBytes > aimTuning.maxUnsentBytes) {
      this.#goOffline('overflow');
      return;
    }
    this.#pumping ??= this.#pump().finally(() => {
      this.#pumping = undefined;
    });
  }

  /** The rest of the run goes to the spool: every message not yet acknowledged, in order, then all later ones. */
  #goOffline(why: 'unreachable' | 'overflow'): void {
    this.#offline ??= why;
    const rest = this.#outbox;
    this.#outbox = [];
    this.#outboxBytes = 0;
    const where = `upload later with \`trackspec sync ${this.#spoolDir}\``;
    if (why === 'overflow') {
      this.#ctx.warn(`aim: values are logged faster than the server at ${this.#uri} applies them (${aimTuning.maxUnsentBytes} bytes of write messages waiting); the rest of run ${this.#state.hash} goes to the spool (${where})`);
    }
    this.#wal.keep(rest);
  }

  /**
   * Deliver the outbox head first, one message in flight (the server applies them in order).
   * Acknowledgements are marked in the spool 64 at a time (and when the outbox empties): one ack
   * frame per write message costs more than the write-ahead itself; a SIGKILL before the mark
   * only makes `trackspec sync` apply those messages again, in order, which changes nothing.
   */
  async #pump(): Promise<void> {
    const done = this.#delivered;
    const mark = (): void => this.#markDelivered();
    while (this.#outbox.length > 0 && this.#client) {
      const m = this.#outbox[0]!;
      try {
        await this.#send(this.#client, m);
        done.push(m);
        if (done.length >= 64) mark();
      } catch (e) {
        mark();
        if (isUnreachable(e)) {
          const client = this.#client;
          this.#client = undefined;
          this.#ctx.warn(`aim: the server at ${this.#uri} is unreachable (${(e as Error).message}); run ${this.#state.hash} continues in the spool (upload later with \`trackspec sync ${this.#spoolDir}\`)`);
          void client?.close({ disconnect: false }).catch(() => undefined);
          this.#goOffline('unreachable');
          return;
        }
        // The server refused this one (reported by flush()/finish()); not replayable, the rest follow.
        this.#writeError ??= { error: e };
        if (this.#walOn) this.#wal.acked([m]);
      }
      if (this.#outbox[0] === m) {
        this.#outbox.shift();
        this.#outboxBytes -= m.byteLength;
      }
    }
    mark();
  }

  /** One message, retried with reconnects until the deadline. */
  async #send(client: AimClient, message: Uint8Array): Promise<void> {
    await withRetry(
      async (attempt) => {
        if (attempt > 1) await client.reconnect();
        await client.write(message);
      },
      { policy: { deadlineMs: this.#deadlineMs, baseDelayMs: aimTuning.baseDelayMs }, backend: BACKEND },
    );
  }

  /** Delivered messages whose acknowledgement is not yet marked in the spool. */
  readonly #delivered: Uint8Array[] = [];

  #markDelivered(): void {
    if (this.#delivered.length === 0) return;
    const done = this.#delivered.splice(0);
    if (this.#walOn) this.#wal.acked(done);
  }

  /** Wait until everything encoded so far was delivered or kept; throws the first server-side error. */
  async #drain(): Promise<void> {
    while (this.#pumping) await this.#pumping;
    const failed = this.#writeError;
    if (failed) {
      this.#writeError = undefined;
      throw failed.error;
    }
  }

  /** The run's first messages (start): sent before start() returns, or kept in the spool. */
  async startWrites(messages: Uint8Array[]): Promise<void> {
    this.#enqueue(messages);
    await this.#drain();
  }

  #spoolHeader() {
    return { backend: BACKEND, target: this.#uri, created: Date.now(), meta: { ...this.#meta } as unknown as Record<string, unknown> };
  }

  /** What flush()/finish() say when writes are kept in the spool. */
  #keptMessage(finished: boolean): string {
    const why =
      this.#offline === 'overflow'
        ? `values were logged faster than the server at ${this.#uri} applies them`
        : finished
          ? `finished with the server at ${this.#uri} unreachable`
          : `the server at ${this.#uri} is unreachable`;
    return `${why}; ${this.#wal.kept} write message(s) of run ${this.#state.hash} are safe in ${this.#wal.path} — upload them with \`trackspec sync ${this.#spoolDir}\``;
  }

  /** What closes the run after its last write (as `run.close()`): heartbeat stop, lock release, then every resource released. */
  #closing(): { reads: { handler: string; method: string; args: unknown[] }[]; release: string[] } {
    const { heartbeat, lock } = this.#extra;
    return {
      reads: [...(heartbeat ? [{ handler: heartbeat, method: 'stop', args: [] }] : []), ...(lock ? [{ handler: lock, method: 'release', args: [false] }] : [])],
      release: [...runHandlerList(this.#meta.handlers), ...[heartbeat, lock].filter((x): x is string => x !== undefined)],
    };
  }

  /**
   * Process exit without finish(): send what was not acknowledged plus the run's end time
   * synchronously (a child process), then close the run as finish() would; if the server does not
   * take them (or the run already went to the spool), keep them in the spool for `trackspec sync`.
   */
  #atExit(): void {
    if (this.#finished && this.#batcher.pending === 0 && this.#encoding === undefined && this.#outbox.length === 0) return;
    const items = [...(this.#encoding ?? []), ...this.#batcher.takePending()];
    this.#encoding = undefined;
    if (!this.#finished) items.push({ t: 'end', ts: Date.now() });
    this.#finished = true; // once: the hook may run for beforeExit and again for exit
    // the messages not acknowledged (the head may be in flight: re-sending it is harmless), then the queue
    this.#markDelivered(); // before anything is re-sent or saved: the spool must not replay them after later ones
    const fresh = this.#expand(items);
    const messages = [...this.#outbox.splice(0), ...fresh];
    this.#outboxBytes = 0;
    const client = this.#offline ? undefined : this.#client;
    if (client && messages.length > 0) {
      const { reads, release } = this.#closing();
      if (sendWsSync(client.wsUrl, messages, { after: client.closingCalls(reads, release) })) {
        this.#wal.settleAtExit(messages, true);
        return;
      }
    }
    try {
      const file = this.#wal.settleAtExit(messages, false);
      if (file) process.stderr.write(`trackspec: Aim run ${this.#state.hash}: ${this.#wal.unacked} write message(s) not yet acknowledged by ${this.#uri} were saved to ${file}; upload with \`trackspec sync ${this.#spoolDir}\`\n`);
    } catch (e) {
      process.stderr.write(`trackspec: could not save the last Aim writes at exit: ${(e as Error).message}\n`);
    }
  }

  /** `run.track`'s keyword arguments: epoch (integer) and context (dict). */
  #trackKwargs(kwargs: Readonly<Values> | undefined, where: string): { epoch: number | null; ctx: AimContext } {
    let epoch: number | null = null;
    let ctx = makeContext(undefined);
    if (kwargs) {
      for (const k in kwargs) {
        const kv = kwargs[k];
        if (k === 'epoch' && (kv === null || Number.isSafeInteger(kv))) epoch = (kv as number | null) ?? null;
        else if (k === 'context' && (kv === null || (typeof kv === 'object' && !Array.isArray(kv)))) ctx = makeContext((kv ?? undefined) as Record<string, unknown> | undefined);
        else this.#ctx.warnOnce(`kwarg:${where}:${k}`, `aim: ${where} kwarg '${k}' is not supported (run.track takes epoch: integer and context: dict) and was ignored`);
      }
    }
    return { epoch, ctx };
  }

  /**
   * As Accelerate's AimTracker.log_images: each value becomes `aim.Image(img, caption=…)` tracked
   * under its key; kwargs `{aim_image: {caption}, track: {epoch, context}}`. An array of images is
   * tracked as one list value (`list(aim.image)`). Images are PNG-encoded here (PIL's default format).
   */
  logImages(values: Readonly<Record<string, ImageData | ImageData[]>>, step: number | undefined, kwargs: Readonly<Values> | undefined): void {
    if (this.#finished) throw new TrackspecError('AimTracker.logImages() after finish()');
    let caption = '';
    let track: Readonly<Values> | undefined;
    for (const k in kwargs ?? {}) {
      const kv = kwargs![k] as Record<string, unknown> | undefined;
      if (k === 'aim_image' && kv && typeof kv === 'object') {
        for (const ik in kv) {
          if (ik === 'caption' && typeof kv[ik] === 'string') caption = kv[ik];
          else if (ik === 'format' && typeof kv[ik] === 'string' && kv[ik].toLowerCase() === 'png') continue;
          else this.#ctx.warnOnce(`aim_image:${ik}`, `aim: aim_image option '${ik}' is not supported (trackspec stores PNG; caption is supported) and was ignored`);
        }
      } else if (k === 'track' && kv && typeof kv === 'object') track = kv;
      else this.#ctx.warnOnce(`kwarg:logImages:${k}`, `aim: logImages kwarg '${k}' is not supported (expected {aim_image: {caption}, track: {epoch, context}}) and was ignored`);
    }
    const { epoch, ctx } = this.#trackKwargs(track, 'track');
    const v: Record<string, { images: AimImage[]; list: boolean }> = {};
    let n = 0;
    for (const key in values) {
      const raw = values[key]!;
      const list = Array.isArray(raw);
      const images: AimImage[] = [];
      try {
        for (const [i, img] of (list ? raw : [raw]).entries()) {
          checkImage(img, list ? `${key}/${i}` : key);
          images.push({ png: encodePng(img), width: img.width, height: img.height, mode: PIL_MODE[img.channels]!, caption });
        }
      } catch (e) {
        this.#ctx.warn(`aim: image '${key}' skipped: ${(e as Error).message}`);
        continue;
      }
      v[key] = { images, list };
      n += images.length;
    }
    if (n > 0) this.#batcher.push({ t: 'images', v, step, epoch, ctx, ts: Date.now(), n });
  }

  log(values: Readonly<Values>, step: number | undefined, kwargs: Readonly<Values> | undefined): void {
    if (this.#finished) throw new TrackspecError('AimTracker.log() after finish()');
    const { epoch, ctx } = kwargs ? this.#trackKwargs(kwargs, 'log') : NO_KWARGS;
    let n = 0;
    for (const _ in values) n++;
    // a shallow spread keeps the caller's object shape (fast); values are primitives (the spec's value rules)
    if (n > 0) this.#batcher.push({ t: 'log', v: { ...values } as Record<string, number | boolean | string>, step, epoch, ctx, ts: Date.now(), n });
  }

  async storeInitConfiguration(values: Readonly<Values>): Promise<void> {
    this.#batcher.push({ t: 'attr', key: 'hparams', value: structuredClone(values) });
    await this.flush();
  }

  async flush(): Promise<void> {
    await this.#batcher.flush();
    await this.#drain();
    if (this.#wal.kept > 0) throw new BackendError(BACKEND, this.#keptMessage(false));
  }

  async finish(): Promise<void> {
    if (this.#finished) return;
    this.#finished = true;
    this.#batcher.push({ t: 'end', ts: Date.now() });
    let failure: unknown;
    try {
      await this.#batcher.close();
      await this.#drain();
    } catch (e) {
      failure = e;
    }
    this.#unregisterExit();
    try {
      await this.#wal.close();
    } catch (e) {
      failure ??= e;
    }
    const client = this.#client;
    if (client) {
      try {
        const { reads, release } = this.#closing();
        // (Over the memory cap, the rest of the run and its end time are in the spool for `trackspec
        // sync`; the run is closed here all the same.)
        for (const r of reads) await client.read(r.handler, r.method, r.args);
        for (const h of release) await client.release(h);
        await client.close();
      } catch (e) {
        failure ??= e instanceof TrackspecError ? e : new BackendError(BACKEND, `closing the run: ${(e as Error).message}`, { cause: e });
        await client.close({ disconnect: false }).catch(() => undefined);
      }
    }
    if (failure) throw failure;
    if (this.#wal.kept > 0) throw new BackendError(BACKEND, this.#keptMessage(true));
  }
}

async function startOnline(client: AimClient, options: AimDriverOptions, ctx: DriverContext, uri: string): Promise<AimRunDriver> {
  let hash: string;
  if (options.run_hash) {
    const runs = (await client.read(client.repoHandler, 'list_all_runs')) as unknown;
    if (!Array.isArray(runs) || !runs.includes(options.run_hash)) {
      throw new ConfigError(`AimTracker: run_hash '${options.run_hash}' is not a run of the Aim repository served at ${uri} (Aim raises MissingRunError); leave run_hash unset to start a new run`, { option: 'run_hash' });
    }
    hash = options.run_hash;
  } else {
    hash = newRunHash();
  }
  const lock = await client.getResource('Lock', { run_hash: hash });
  const takeLock = async (): Promise<void> => {
    try {
      await client.read(lock, 'lock', [false]);
    } catch (e) {
      if (e instanceof AimServerError && e.className === 'Timeout') {
        throw new BackendError(BACKEND, `run ${hash} is locked by another writer (is it still running?); Aim allows one writer per run`, { cause: e });
      }
      throw e;
    }
  };
  await takeLock();
  const handlers = newHandlers(true);
  await getRunResource(client, 'meta', hash, handlers);
  const state = new AimRunState(hash, handlers);
  // RunStatusReporter: continue the run's check-in numbering (a resumed run has some)
  await getRunResource(client, 'files', hash, handlers);
  const lastCheckIn = await client.read(handlers.files!, 'poll', [checkInName(hash, '*', '*', '*', '*')]);
  const lastIdx = typeof lastCheckIn === 'string' ? parseInt(lastCheckIn.split('-').at(-4) ?? '0', 10) || 0 : 0;
  let hasAttrs = false;
  if (options.run_hash) {
    const metaRun = ['meta', 'chunks', hash];
    let traces: unknown = {};
    try {
      traces = await client.read(handlers.meta, 'collect', [[...metaRun, 'traces'], true, false]);
    } catch (e) {
      if (!(e instanceof AimServerError && e.className === 'KeyError')) throw e;
    }
    for (const byName of Object.values((traces ?? {}) as Record<string, Record<string, Record<string, unknown>>>)) {
      for (const [name, info] of Object.entries(byName ?? {})) {
        if (['float', 'float64', 'int'].includes(String(info?.['dtype'] ?? 'float')) && (info?.['version'] ?? 1) === 1) {
          throw new BackendError(BACKEND, `run ${hash} has metrics in Aim's pre-3.11 format ('${name}'); upgrade the repository first: \`aim storage --repo <repo> upgrade 3.11+ '*'\``);
        }
      }
    }
    state.loadTraces(traces);
    try {
      await client.read(handlers.meta, 'first_key', [[...metaRun, 'attrs']]);
      hasAttrs = true;
    } catch (e) {
      if (!(e instanceof AimServerError && e.className === 'KeyError')) throw e;
    }
  }
  const heartbeat = await client.getResource('RunHeartbeat', { run_hash: hash });
  await getRunResource(client, 'props', hash, handlers);
  await getRunResource(client, 'seqs', hash, handlers);
  const meta: AimSpoolMeta = { hash, handlers, name: options.run_name, experiment: options.experiment };
  const d = new AimRunDriver(uri, client, state, meta, { lock, heartbeat }, options, ctx);
  // A restarted server lost the lock with the resources: take it again after re-creating it.
  client.setReinit(lock, takeLock);
  await d.startWrites(firstMessages(state, options, !hasAttrs, lastIdx));
  return d;
}

/** What `Run(...)` + `run.name = …` write before any value (one message unless __system_params is large). */
function firstMessages(state: AimRunState, options: AimDriverOptions, newAttrs: boolean, lastCheckIn = 0): Uint8Array[] {
  const w = new MessageWriter(aimTuning.maxMessageBytes);
  state.touchStarting(w, lastCheckIn, Date.now() / 1000);
  if (newAttrs) state.initAttrs(w);
  state.setEndTime(w, null);
  if (options.experiment) state.setProp(w, 'experiment', options.experiment);
  if (options.log_system_params) state.setAttr(w, '__system_params', systemParams());
  if (options.run_name !== null) state.setProp(w, 'name', options.run_name);
  return w.finish();
}

/** `driver.start` (index.ts loads this module on first use). */
export async function startAim(options: AimDriverOptions, ctx: DriverContext): Promise<TrackerDriver<AimRunHandle>> {
  {
    const { address, uri } = parseAimUri(options.logging_dir);
    if (options.system_tracking_interval !== null) {
      ctx.warnOnce('system_tracking_interval', 'aim: system_tracking_interval is accepted for compatibility and ignored (trackspec collects no system metrics)');
    }
    let client: AimClient;
    try {
      client = await withRetry(() => AimClient.open(address, { heartbeatMs: aimTuning.heartbeatMs, timeoutMs: aimTuning.timeoutMs, ackTimeoutMs: aimTuning.ackTimeoutMs, slowAckMs: aimTuning.slowAckMs, warn: (m) => ctx.warn(m) }), {
        policy: { deadlineMs: options.retry_deadline_secs * 1000, baseDelayMs: aimTuning.baseDelayMs },
        backend: BACKEND,
      });
    } catch (e) {
      if (!isUnreachable(e)) throw e instanceof TrackspecError ? e : new BackendError(BACKEND, (e as Error).message, { cause: e });
      if (options.run_hash) {
        throw new BackendError(BACKEND, `cannot resume run ${options.run_hash}: the Aim server at ${uri} is unreachable (${(e as Error).message}). Start \`aim server\` and retry.`, { cause: e });
      }
      // Never lose a run: create it in the spool; `trackspec sync` creates it on the server.
      const hash = newRunHash();
      const handlers = newHandlers(false);
      const state = new AimRunState(hash, handlers);
      const meta: AimSpoolMeta = { hash, handlers, name: options.run_name, experiment: options.experiment };
      const d = new AimRunDriver(uri, undefined, state, meta, {}, options, ctx);
      ctx.warn(`aim: the server at ${uri} is unreachable (${(e as Error).message}); run ${hash} is written to the spool (upload later with \`trackspec sync ${defaultSpoolDir()}\`)`);
      await d.startWrites(firstMessages(state, options, true));
      return d;
    }
    try {
      return await startOnline(client, options, ctx, uri);
    } catch (e) {
      await client.releaseAll();
      await client.close().catch(() => undefined);
      if (e instanceof TrackspecError) throw e;
      throw new BackendError(BACKEND, (e as Error).message, { cause: e });
    }
  }
}


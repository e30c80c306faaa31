/**
 * Write-ahead for the network backends: what `log()` queued and the server has not acknowledged is
 * written to the durable spool in the background, so a SIGKILL loses at most the last interval and
 * `trackspec sync` replays the rest.
 *
 * - `push(item)` (from `log()`): O(1), one array push. Nothing is encoded or written there.
 * - Every `intervalMs` (an unref'd timer), the items pushed since the last tick that are not yet
 *   acknowledged are encoded with `records(item)` and appended to the spool with one write (the
 *   fdatasync runs in the background). The spool file is created on the first such write.
 * - `acked(items)` (a batch the server accepted): items already written get one ack frame naming
 *   their byte ranges (written synchronously, so it survives a SIGKILL), items not yet written are
 *   only remembered, and never written. With a healthy server most items are acked before the
 *   next tick, so the spool sees one small write per interval.
 * - `keep(items)` (a batch that failed for good, or items above the in-memory cap): written now and
 *   never acked, so `trackspec sync` uploads them.
 * - `ackedPart(item, n)` (with `partial`): the first `n` records of an item were delivered (a backend
 *   that sends one record per request, as Comet). Written items get an ack of just those records;
 *   items not yet written are later written without them. A crash then re-sends at most the one
 *   record in flight instead of the whole item.
 * - `ready(item)` (optional): an item whose records cannot be built cheaply yet (W&B: a row whose
 *   images are still being encoded in the background) is left for a later tick, with every item
 *   queued after it, so the spool keeps queue order and a tick never does that work on the
 *   logging thread. `close()` and `keep()` write everything.
 * - `close()`: writes what is left; if every record in the spool was acknowledged, the spool is
 *   deleted, else it stays (the caller reports it).
 *
 * A crash between a server's acceptance and the ack write re-sends those records on replay; the
 * backend's replay makes that idempotent (MLflow de-duplicates against the server's history, W&B
 * writes history lines at fixed offsets).
 */
import { unlinkSync } from 'node:fs';
import * as fsp from 'node:fs/promises';
import { Spool, type SpoolHeader } from './spool.js';

export interface WriteAheadOptions<T> {
  /** Spool directory (the backend's subfolder is added). */
  dir: string;
  /** The spool header, built when the file is first needed. */
  header: () => SpoolHeader;
  /** Flush interval (the backend's flush_interval_secs). */
  intervalMs: number;
  /** The spool records one queued item stands for. */
  records: (item: T) => unknown[];
  /** Called once when the spool file exists (e.g. to report its path). */
  onOpen?: (spool: Spool) => void;
  /** A background write failed (e.g. the disk is full); the items stay queued for the next tick. */
  onError?: (error: unknown) => void;
  /** Track byte ranges per record, so `ackedPart` can mark part of an item done. */
  partial?: boolean;
  /** Whether an item's records can be built now; the timer's tick stops at the first that cannot. */
  ready?: (item: T) => boolean;
}

/** Where a written item's records are: `bounds[i]..bounds[i+1]` per record (partial) or one range; `d` of them acked. */
interface Placed {
  /** Records of the item delivered before it was written (not in the file). */
  first: number;
  /** Records written. */
  n: number;
  bounds: number[];
  /** Written records acked so far (partial). */
  d: number;
}

/** Marks an item acknowledged before it was written (the value is the WriteAhead that owns it). */
const ACKED = Symbol('trackspec.writeAhead.acked');

export class WriteAhead<T extends object> {
  readonly #opts: WriteAheadOptions<T>;
  /** Items pushed since the last tick (some may be acked by now). */
  #queue: T[] = [];
  /** Items to write at once (failed batches, spill-over), before the next tick. */
  #urgent: T[] = [];
  /** Acked before they were written: marked on the item (cheaper than a WeakSet on the hot path). */
  #ackedEarly = {
    add: (it: T): void => {
      (it as Record<symbol, unknown>)[ACKED] = this;
    },
    has: (it: T): boolean => (it as Record<symbol, unknown>)[ACKED] === this,
  };
  /** Written items → their byte range(s) in the spool. */
  #where = new WeakMap<T, Placed>();
  /** Partial mode: records of an item delivered while it was not written yet. */
  #partDone = new WeakMap<T, number>();
  /** Written and not acked / kept for good. */
  #kept = new WeakSet<T>();
  #spool: Spool | undefined;
  #timer: NodeJS.Timeout | undefined;
  #written = 0;
  #ackedWritten = 0;
  #keptCount = 0;
  #closed = false;
  #lastError: unknown;

  constructor(options: WriteAheadOptions<T>) {
    this.#opts = options;
  }

  /** Path of the spool file, once one was needed. */
  get path(): string | undefined {
    return this.#spool?.path;
  }

  /** Records written and not acknowledged (what `trackspec sync` would upload). */
  get unacked(): number {
    return this.#written - this.#ackedWritten;
  }

  /** Records handed over for good (failed batches, spill-over). */
  get kept(): number {
    return this.#keptCount;
  }

  /** Queue one item (from log()): O(1). */
  push(item: T): void {
    this.#queue.push(item);
    if (this.#timer === undefined && !this.#closed) {
      this.#timer = setInterval(() => this.tick(false), this.#opts.intervalMs);
      this.#timer.unref();
    }
  }

  /** The server accepted these items. */
  acked(items: readonly T[]): void {
    const ranges: [number, number][] = [];
    let n = 0;
    for (const it of items) {
      const p = this.#where.get(it);
      if (p === undefined) this.#ackedEarly.add(it);
      else if (!this.#kept.has(it)) {
        this.#where.delete(it);
        const from = p.bounds[p.bounds.length === 2 ? 0 : p.d]!;
        const to = p.bounds[p.bounds.length - 1]!;
        if (to > from) ranges.push([from, to]);
        n += p.n - p.d;
      }
    }
    this.#ack(ranges, n);
  }

  /**
   * Partial mode: the first `done` records of `item` (as `records(item)` lists them) were delivered.
   * Written ones get an ack frame now; an item not yet written is written later without them.
   */
  ackedPart(item: T, done: number): void {
    if (this.#kept.has(item)) return;
    const p = this.#where.get(item);
    if (p === undefined) {
      if (done > (this.#partDone.get(item) ?? 0)) this.#partDone.set(item, done);
      return;
    }
    const j = Math.min(done - p.first, p.n);
    if (j <= p.d || p.bounds.length !== p.n + 1) return;
    const range: [number, number] = [p.bounds[p.d]!, p.bounds[j]!];
    const n = j - p.d;
    p.d = j;
    if (j === p.n) {
      this.#where.delete(item);
      this.#ackedEarly.add(item);
    }
    this.#ack([range], n);
  }

  #ack(ranges: [number, number][], n: number): void {
    if (ranges.length > 0 && this.#spool) {
      try {
        this.#spool.ack(ranges);
        this.#ackedWritten += n;
      } catch (e) {
        this.#opts.onError?.(e); // not fatal: a replay de-duplicates
      }
    }
  }

  /** Items given to keepSoon() and not kept yet. */
  #keepSoon: T[] = [];

  /**
   * keep(), for items that arrive in bursts (a batcher's overflow past its in-memory cap): all that
   * arrive in one synchronous pass are kept together in a microtask, after `before()` (e.g. a warning).
   */
  keepSoon(items: readonly T[], before?: () => void): void {
    this.#keepSoon.push(...items);
    if (this.#keepSoon.length !== items.length) return;
    queueMicrotask(() => {
      const moving = this.takeKeepSoon();
      if (moving.length === 0) return;
      before?.();
      this.keep(moving);
    });
  }

  /** The items keepSoon() has not kept yet, taken (exit paths settle them with the rest). */
  takeKeepSoon(): T[] {
    const list = this.#keepSoon;
    this.#keepSoon = [];
    return list;
  }

  /** Keep these items for `trackspec sync` (never sent by this process): written at once. */
  keep(items: readonly T[]): void {
    for (const it of items) {
      if (this.#kept.has(it) || this.#ackedEarly.has(it)) continue;
      this.#kept.add(it);
      const p = this.#where.get(it);
      if (p) this.#keptCount += p.n - p.d;
      else {
        this.#keptCount += this.#opts.records(it).length - (this.#opts.partial ? (this.#partDone.get(it) ?? 0) : 0);
        this.#urgent.push(it);
      }
    }
    this.tick();
  }

  /** Records that are not log() items (params, a final status, ...): appended now and fsync'd, never acked. */
  async appendRecords(records: unknown[]): Promise<void> {
    if (records.length === 0) return;
    const spool = this.#open();
    const { synced } = spool.writeGroups([records]);
    this.#written += records.length;
    this.#keptCount += records.length;
    await synced;
  }

  /**
   * Write what is queued and not acked (synchronous write; fsync in the background). Returns the
   * number of records written. Errors go to `onError` (the items stay queued). With `all` false
   * (the timer), the queue is written up to the first item that is not `ready`; the rest stays queued.
   */
  tick(all = true): number {
    const items: T[] = [];
    const taken = new Set<T>();
    let rest: T[] = [];
    const take = (list: T[], gated: boolean) => {
      for (let i = 0; i < list.length; i++) {
        const it = list[i]!;
        if (this.#ackedEarly.has(it) || this.#where.has(it) || taken.has(it)) continue;
        if (gated && this.#opts.ready && !this.#opts.ready(it)) {
          rest = list.slice(i);
          return;
        }
        taken.add(it);
        items.push(it);
      }
    };
    take(this.#urgent, false);
    take(this.#queue, !all);
    if (items.length === 0) {
      this.#urgent = [];
      this.#queue = rest;
      return 0;
    }
    try {
      const spool = this.#open();
      const partial = this.#opts.partial === true;
      const lists: unknown[][] = [];
      const firsts: number[] = [];
      const groups: unknown[][] = [];
      for (const it of items) {
        let recs = this.#opts.records(it);
        const k = partial ? (this.#partDone.get(it) ?? 0) : 0;
        if (k > 0) recs = recs.slice(k);
        lists.push(recs);
        firsts.push(k);
        if (partial) for (const r of recs) groups.push([r]);
        else groups.push(recs);
      }
      const { ranges, synced } = spool.writeGroups(groups);
      synced.catch((e: unknown) => this.#opts.onError?.(e));
      let n = 0;
      let g = 0;
      for (let i = 0; i < items.length; i++) {
        const recs = lists[i]!;
        let bounds: number[];
        if (partial) {
          bounds = recs.map((_, j) => ranges[g + j]![0]);
          bounds.push(recs.length > 0 ? ranges[g + recs.length - 1]![1] : 0);
          g += recs.length;
        } else {
          bounds = [...ranges[i]!];
        }
        this.#where.set(items[i]!, { first: firsts[i]!, n: recs.length, bounds, d: 0 });
        n += recs.length;
      }
      this.#written += n;
      this.#urgent = [];
      this.#queue = rest;
      this.#lastError = undefined;
      return n;
    } catch (e) {
      if (this.#lastError === undefined) this.#opts.onError?.(e);
      this.#lastError = e;
      return 0;
    }
  }

  /** Whether this item's records are in the spool (written, not acked). */
  written(item: T): boolean {
    return this.#where.has(item);
  }

  #open(): Spool {
    if (!this.#spool) {
      this.#spool = Spool.createSync(this.#opts.dir, this.#opts.header());
      this.#opts.onOpen?.(this.#spool);
    }
    return this.#spool;
  }

  /**
   * Stop the timer; write what is left unless `discardQueue`; close the spool and delete it when
   * everything in it was acknowledged. Returns the spool path when it is kept.
   */
  async close(): Promise<string | undefined> {
    this.#closed = true;
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = undefined;
    this.tick();
    const spool = this.#spool;
    if (!spool) return undefined;
    await spool.close();
    if (this.unacked === 0 && this.#lastError === undefined) {
      await fsp.rm(spool.path, { force: true });
      return undefined;
    }
    return spool.path;
  }

  /**
   * Synchronous end for exit paths. `items` are the ones still unsettled (queued, in flight).
   * `delivered`: they (and `extra`) reached the server — written ones are acked; else the items
   * not yet written and the `extra` records are appended (fsync'd). Returns the spool path when
   * records are kept in it.
   */
  settleAtExit(items: readonly T[], delivered: boolean, extra: unknown[] = []): string | undefined {
    this.#closed = true;
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = undefined;
    if (delivered) {
      this.acked(items);
    } else {
      const records: unknown[] = [];
      for (const it of [...this.#urgent, ...this.#queue, ...items]) {
        if (this.#ackedEarly.has(it) || this.#where.has(it)) continue;
        this.#where.set(it, { first: 0, n: 0, bounds: [0, 0], d: 0 });
        const k = this.#opts.partial ? (this.#partDone.get(it) ?? 0) : 0;
        const recs = this.#opts.records(it);
        for (let i = k; i < recs.length; i++) records.push(recs[i]);
      }
      for (const r of extra) records.push(r);
      if (records.length > 0) {
        const spool = this.#open();
        spool.appendSync(records);
        this.#written += records.length;
      }
    }
    const spool = this.#spool;
    spool?.closeSync();
    if (spool && this.unacked === 0) {
      try {
        unlinkSync(spool.path);
      } catch {
        // already gone
      }
      return undefined;
    }
    return spool?.path;
  }

  /** The open spool (exit paths append to it synchronously). */
  get spool(): Spool | undefined {
    return this.#spool;
  }
}

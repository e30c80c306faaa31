/**
 * A background batching queue with bounded memory, shared by the network backends.
 *
 * `push()` is synchronous and O(1): the item is appended to the batch being filled; a full batch
 * (`maxBatch` items) is queued for sending at once; a partial batch is sent when `maxDelayMs` have
 * passed since its first item (or at `flush()`). Up to `concurrency` sends run at a time (default 1,
 * which keeps batches in push order). While all send slots are busy, the batch being filled keeps
 * growing up to `maxBatch`, so a slow server gets fewer, fuller requests.
 *
 * Memory: `pending` counts items pushed and not yet settled (queued or in flight). A push that
 * would take `pending` above `maxPending` hands the item to `overflow` synchronously instead (e.g.
 * a spool's buffer); without `overflow` the item is kept anyway (never dropped, push never blocks)
 * and one warning is printed.
 *
 * No item is lost: every item is either sent (`send` resolved), handed to `onFailed` (`send`
 * rejected: called exactly once per failed batch), or handed to `overflow`. Invariant:
 * `pushed === sent + failed + overflowed + pending`.
 *
 * Timers are unref'd: a Batcher never keeps the process alive; call `flush()`/`close()` (or spool
 * synchronously from an exit hook using `takePending()`).
 */
import { TrackspecError } from '../core/errors.js';
import { warn } from '../core/warnings.js';

export interface BatcherOptions<T> {
  /** Items per send, e.g. 1000 (with `weight`: total weight per send). */
  maxBatch: number;
  /**
   * Weight of one item (default 1): for items that carry several records, e.g. one log() call's
   * metrics. A batch is cut before an item that would take it over `maxBatch`; an item heavier
   * than `maxBatch` travels alone (the sender splits it).
   */
  weight?: (item: T) => number;
  /** A partial batch is sent after this long, e.g. 1000. */
  maxDelayMs: number;
  /** Items held in memory; beyond it, items go to `overflow` (never dropped, never blocks push). */
  maxPending: number;
  /** Sends in flight, default 1 (order-preserving); >1 allowed. */
  concurrency?: number;
  /** Usually withRetry(...) inside; a rejection = the batch failed for good. */
  send: (batch: T[]) => Promise<void>;
  /** E.g. spool it; called once per failed batch. */
  onFailed: (batch: T[], error: unknown) => Promise<void>;
  /** Called synchronously with items that exceed maxPending (e.g. append to spool buffer). */
  overflow?: (items: T[]) => void;
}

export interface BatcherStats {
  pushed: number;
  /** Items whose batch `send` resolved. */
  sent: number;
  /** Items whose batch `send` rejected (handed to `onFailed`). */
  failed: number;
  /** Batches handed to `send`. */
  batches: number;
  /** Items handed to `overflow` (or taken back with `takePending()`). */
  overflowed: number;
}

export class Batcher<T> {
  private readonly maxBatch: number;
  private readonly maxDelayMs: number;
  private readonly maxPending: number;
  private readonly concurrency: number;
  private readonly sendFn: (batch: T[]) => Promise<void>;
  private readonly onFailed: (batch: T[], error: unknown) => Promise<void>;
  private readonly overflowFn: ((items: T[]) => void) | undefined;
  private readonly weightFn: ((item: T) => number) | undefined;

  /** The batch being filled, and its weight. */
  private current: T[] = [];
  private currentWeight = 0;
  /** Cut batches waiting for a send slot, oldest first. */
  private ready: T[][] = [];
  private readyHead = 0;
  private inFlight = 0;
  private pendingCount = 0;
  private timer: NodeJS.Timeout | undefined;
  /** The current partial batch is older than maxDelayMs: send it as soon as a slot frees. */
  private due = false;
  private closed = false;
  private warnedUnbounded = false;

  // Flush bookkeeping: batches are numbered when cut; `lowWater` is the lowest unsettled number.
  private nextSeq = 0;
  private lowWater = 0;
  private readonly settledAhead = new Set<number>();
  private waiters: { target: number; resolve: () => void }[] = [];
  private firstError: { error: unknown } | undefined;

  private readonly counters: BatcherStats = { pushed: 0, sent: 0, failed: 0, batches: 0, overflowed: 0 };
  private readonly onTimer = (): void => {
    this.timer = undefined;
    if (this.current.length === 0) return;
    this.due = true;
    this.pump();
  };

  constructor(options: BatcherOptions<T>) {
    if (!(options.maxBatch >= 1)) throw new TypeError('Batcher: maxBatch must be >= 1');
    if (!(options.maxDelayMs >= 0)) throw new TypeError('Batcher: maxDelayMs must be >= 0');
    if (!(options.maxPending >= 1)) throw new TypeError('Batcher: maxPending must be >= 1');
    this.maxBatch = Math.floor(options.maxBatch);
    this.maxDelayMs = options.maxDelayMs;
    this.maxPending = options.maxPending;
    this.concurrency = Math.max(1, Math.floor(options.concurrency ?? 1));
    this.sendFn = options.send;
    this.onFailed = options.onFailed;
    this.overflowFn = options.overflow;
    this.weightFn = options.weight;
  }

  /** Queue one item. O(1), synchronous; throws only after `close()`. */
  push(item: T): void {
    if (this.closed) throw new TrackspecError('Batcher: push() after close()');
    this.counters.pushed++;
    if (this.pendingCount >= this.maxPending) {
      if (this.overflowFn) {
        this.counters.overflowed++;
        this.overflowFn([item]);
        return;
      }
      this.warnUnbounded();
    }
    this.pendingCount++;
    if (this.weightFn) {
      const w = this.weightFn(item);
      if (this.current.length > 0 && this.currentWeight + w > this.maxBatch) {
        this.cut();
        this.pump();
      }
      this.currentWeight += w;
    } else this.currentWeight++;
    const cur = this.current;
    cur.push(item);
    if (this.currentWeight >= this.maxBatch) {
      this.cut();
      this.pump();
    } else if (cur.length === 1 && this.timer === undefined) {
      this.startTimer();
    }
  }

  /** Queue several items (one `overflow` call for the part above `maxPending`). */
  pushMany(items: T[]): void {
    if (this.closed) throw new TrackspecError('Batcher: pushMany() after close()');
    const n = items.length;
    let room = this.overflowFn ? Math.max(0, this.maxPending - this.pendingCount) : n;
    if (room > n) room = n;
    for (let i = 0; i < room; i++) this.push(items[i]!);
    if (room < n) {
      const rest = items.slice(room);
      this.counters.pushed += rest.length;
      this.counters.overflowed += rest.length;
      this.overflowFn!(rest);
    }
  }

  /** Items pushed and not yet settled (queued or in flight). */
  get pending(): number {
    return this.pendingCount;
  }

  get stats(): BatcherStats {
    return { ...this.counters };
  }

  /**
   * Send everything pending now; resolve when all sends so far settled (including `onFailed` of
   * failed ones); reject with the first error of a batch that failed since the last flush.
   */
  async flush(): Promise<void> {
    if (this.current.length > 0) this.cut();
    this.pump();
    const target = this.nextSeq - 1;
    if (this.lowWater <= target) {
      await new Promise<void>((resolve) => this.waiters.push({ target, resolve }));
    }
    const failed = this.firstError;
    if (failed) {
      this.firstError = undefined;
      throw failed.error;
    }
  }

  /** flush, stop timers; further push() throws. Idempotent. */
  async close(): Promise<void> {
    this.closed = true;
    try {
      await this.flush();
    } finally {
      if (this.timer) clearTimeout(this.timer);
      this.timer = undefined;
    }
  }

  /**
   * Take every item not yet handed to `send` (queued batches and the batch being filled), in order,
   * removing them from the queue (they count as settled). For synchronous exit paths: spool them
   * with `Spool.appendSync`. In-flight batches are not included (their outcome is still pending).
   * Counted in `stats.overflowed` so the invariant above holds.
   */
  takePending(): T[] {
    if (this.current.length > 0) this.cut();
    const out: T[] = [];
    while (this.readyHead < this.ready.length) {
      const batch = this.ready[this.readyHead]!;
      this.ready[this.readyHead++] = undefined as unknown as T[];
      for (const x of batch) out.push(x);
      this.pendingCount -= batch.length;
      this.settle(this.seqOfReady(batch));
    }
    this.ready = [];
    this.readyHead = 0;
    this.counters.overflowed += out.length;
    return out;
  }

  // --- internals -------------------------------------------------------------------------------

  private readonly seqs = new WeakMap<T[], number>();

  private seqOfReady(batch: T[]): number {
    return this.seqs.get(batch)!;
  }

  private warnUnbounded(): void {
    if (this.warnedUnbounded) return;
    this.warnedUnbounded = true;
    warn(`batching queue holds more than ${this.maxPending} items and has no overflow: memory grows until the backend catches up`);
  }

  private startTimer(): void {
    const t = setTimeout(this.onTimer, this.maxDelayMs);
    t.unref();
    this.timer = t;
  }

  /** Move the batch being filled to the ready queue. */
  private cut(): void {
    const batch = this.current;
    this.current = [];
    this.currentWeight = 0;
    this.due = false;
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
    this.seqs.set(batch, this.nextSeq++);
    this.ready.push(batch);
  }

  private pump(): void {
    while (this.inFlight < this.concurrency) {
      if (this.readyHead < this.ready.length) {
        const batch = this.ready[this.readyHead]!;
        this.ready[this.readyHead++] = undefined as unknown as T[];
        if (this.readyHead > 1024 && this.readyHead * 2 > this.ready.length) {
          this.ready = this.ready.slice(this.readyHead);
          this.readyHead = 0;
        }
        this.start(batch);
      } else if (this.current.length > 0 && this.due) {
        this.cut();
      } else {
        return;
      }
    }
  }

  private start(batch: T[]): void {
    this.inFlight++;
    this.counters.batches++;
    const seq = this.seqs.get(batch)!;
    let p: Promise<void>;
    try {
      p = this.sendFn(batch);
    } catch (err) {
      p = Promise.reject(err);
    }
    Promise.resolve(p).then(
      () => {
        this.counters.sent += batch.length;
        this.done(batch, seq);
      },
      (err: unknown) => {
        this.counters.failed += batch.length;
        let handled: Promise<void>;
        try {
          handled = Promise.resolve(this.onFailed(batch, err));
        } catch (e) {
          handled = Promise.reject(e);
        }
        handled.then(
          () => {
            this.firstError ??= { error: err };
            this.done(batch, seq);
          },
          (e2: unknown) => {
            // onFailed itself failed: report that (the items are in neither place).
            this.firstError ??= { error: new AggregateError([err, e2], 'batch send failed and onFailed failed too') };
            this.done(batch, seq);
          },
        );
      },
    );
  }

  private done(batch: T[], seq: number): void {
    this.inFlight--;
    this.pendingCount -= batch.length;
    this.settle(seq);
    this.pump();
  }

  private settle(seq: number): void {
    if (seq === this.lowWater) {
      this.lowWater++;
      while (this.settledAhead.delete(this.lowWater)) this.lowWater++;
    } else {
      this.settledAhead.add(seq);
    }
    if (this.waiters.length > 0) {
      const still: typeof this.waiters = [];
      for (const w of this.waiters) {
        if (this.lowWater > w.target) w.resolve();
        else still.push(w);
      }
      this.waiters = still;
    }
  }
}

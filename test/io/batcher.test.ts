import { describe, expect, it } from 'vitest';
import { Batcher } from '../../runtime/io/batcher.js';

const tick = () => new Promise((r) => setImmediate(r));
const delay = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('Batcher', () => {
  it('sends full batches of maxBatch at once and the rest at flush', async () => {
    const batches: number[][] = [];
    const b = new Batcher<number>({ maxBatch: 10, maxDelayMs: 10_000, maxPending: 1000, send: async (x) => void batches.push(x), onFailed: async () => undefined });
    for (let i = 0; i < 25; i++) b.push(i);
    await tick();
    expect(batches.map((x) => x.length)).toEqual([10, 10]);
    expect(b.pending).toBe(5);
    await b.flush();
    expect(batches.map((x) => x.length)).toEqual([10, 10, 5]);
    expect(batches.flat()).toEqual(Array.from({ length: 25 }, (_, i) => i));
    expect(b.pending).toBe(0);
    expect(b.stats).toEqual({ pushed: 25, sent: 25, failed: 0, batches: 3, overflowed: 0 });
  });

  it('sends a partial batch after maxDelayMs (timer)', async () => {
    const batches: number[][] = [];
    const b = new Batcher<number>({ maxBatch: 100, maxDelayMs: 30, maxPending: 1000, send: async (x) => void batches.push(x), onFailed: async () => undefined });
    b.push(1);
    b.push(2);
    await delay(5);
    expect(batches).toEqual([]);
    await delay(60);
    expect(batches).toEqual([[1, 2]]);
    b.push(3);
    await delay(60);
    expect(batches).toEqual([[1, 2], [3]]);
    await b.close();
  });

  it('concurrency 1 preserves order and keeps one send in flight; the filling batch grows while busy', async () => {
    const batches: number[][] = [];
    let inFlight = 0;
    let maxInFlight = 0;
    const b = new Batcher<number>({
      maxBatch: 50,
      maxDelayMs: 1,
      maxPending: 100_000,
      send: async (x) => {
        inFlight++;
        maxInFlight = Math.max(maxInFlight, inFlight);
        await delay(Math.random() * 5);
        batches.push(x);
        inFlight--;
      },
      onFailed: async () => undefined,
    });
    let i = 0;
    for (let round = 0; round < 20; round++) {
      const n = Math.floor(Math.random() * 40);
      for (let k = 0; k < n; k++) b.push(i++);
      await delay(1);
    }
    await b.flush();
    expect(maxInFlight).toBe(1);
    expect(batches.flat()).toEqual(Array.from({ length: i }, (_, k) => k));
    for (const x of batches) expect(x.length).toBeLessThanOrEqual(50);
  });

  it('concurrency > 1 runs sends in parallel, never more than asked', async () => {
    let inFlight = 0;
    let maxInFlight = 0;
    const got: number[] = [];
    const b = new Batcher<number>({
      maxBatch: 10,
      maxDelayMs: 1000,
      maxPending: 100_000,
      concurrency: 4,
      send: async (x) => {
        inFlight++;
        maxInFlight = Math.max(maxInFlight, inFlight);
        await delay(5);
        got.push(...x);
        inFlight--;
      },
      onFailed: async () => undefined,
    });
    for (let i = 0; i < 200; i++) b.push(i);
    await b.flush();
    expect(maxInFlight).toBe(4);
    expect(got.sort((a, c) => a - c)).toEqual(Array.from({ length: 200 }, (_, k) => k));
  });

  it('failed batches reach onFailed exactly once and flush rejects with the first error, once', async () => {
    const failed: number[][] = [];
    let n = 0;
    const b = new Batcher<number>({
      maxBatch: 5,
      maxDelayMs: 1000,
      maxPending: 1000,
      send: async (x) => {
        n++;
        if (n === 2 || n === 3) throw new Error(`send ${n} failed`);
        void x;
      },
      onFailed: async (batch, err) => {
        await delay(2);
        failed.push(batch);
        expect((err as Error).message).toMatch(/send [23] failed/);
      },
    });
    for (let i = 0; i < 20; i++) b.push(i);
    await expect(b.flush()).rejects.toThrow('send 2 failed');
    expect(failed).toEqual([
      [5, 6, 7, 8, 9],
      [10, 11, 12, 13, 14],
    ]);
    expect(b.stats).toMatchObject({ pushed: 20, sent: 10, failed: 10, batches: 4 });
    // The error was reported; the next flush is clean.
    await expect(b.flush()).resolves.toBeUndefined();
    await b.close();
    expect(failed).toHaveLength(2);
  });

  it('a synchronous throw in send and a failing onFailed are both reported', async () => {
    const b = new Batcher<number>({
      maxBatch: 2,
      maxDelayMs: 1000,
      maxPending: 10,
      send: () => {
        throw new Error('sync');
      },
      onFailed: async () => {
        throw new Error('spool full');
      },
    });
    b.push(1);
    b.push(2);
    const err = await b.flush().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(AggregateError);
    expect((err as AggregateError).errors.map((e: Error) => e.message)).toEqual(['sync', 'spool full']);
  });

  it('items above maxPending go to overflow synchronously (push never blocks, nothing dropped)', async () => {
    const overflowed: number[] = [];
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const sent: number[] = [];
    const b = new Batcher<number>({
      maxBatch: 10,
      maxDelayMs: 1000,
      maxPending: 30,
      send: async (x) => {
        await gate;
        sent.push(...x);
      },
      onFailed: async () => undefined,
      overflow: (items) => overflowed.push(...items),
    });
    for (let i = 0; i < 40; i++) b.push(i);
    expect(b.pending).toBe(30);
    expect(overflowed).toEqual([30, 31, 32, 33, 34, 35, 36, 37, 38, 39]);
    b.pushMany([40, 41, 42]);
    expect(overflowed.slice(-3)).toEqual([40, 41, 42]);
    release();
    await b.flush();
    expect(sent).toEqual(Array.from({ length: 30 }, (_, k) => k));
    expect(b.stats).toEqual({ pushed: 43, sent: 30, failed: 0, batches: 3, overflowed: 13 });
    b.pushMany([1, 2, 3]);
    expect(b.pending).toBe(3);
    await b.close();
  });

  it('without overflow, items beyond maxPending are kept (one warning)', async () => {
    const { setWarningHandler } = await import('../../runtime/core/warnings.js');
    const warnings: string[] = [];
    const prev = setWarningHandler((m) => warnings.push(m));
    try {
      const sent: number[] = [];
      const b = new Batcher<number>({ maxBatch: 100, maxDelayMs: 1000, maxPending: 5, send: async (x) => void sent.push(...x), onFailed: async () => undefined });
      for (let i = 0; i < 12; i++) b.push(i);
      await b.close();
      expect(sent).toHaveLength(12);
      expect(warnings).toHaveLength(1);
    } finally {
      setWarningHandler(prev);
    }
  });

  it('close: flushes, then push throws; close and flush are idempotent', async () => {
    const sent: number[] = [];
    const b = new Batcher<number>({ maxBatch: 100, maxDelayMs: 1000, maxPending: 1000, send: async (x) => void sent.push(...x), onFailed: async () => undefined });
    b.pushMany([1, 2, 3]);
    await b.close();
    expect(sent).toEqual([1, 2, 3]);
    expect(() => b.push(4)).toThrow(/after close/);
    expect(() => b.pushMany([4])).toThrow(/after close/);
    await b.close();
    await b.flush();
  });

  it('flush waits for sends already in flight', async () => {
    let done = false;
    const b = new Batcher<number>({
      maxBatch: 1,
      maxDelayMs: 1000,
      maxPending: 1000,
      send: async () => {
        await delay(20);
        done = true;
      },
      onFailed: async () => undefined,
    });
    b.push(1);
    await b.flush();
    expect(done).toBe(true);
  });

  it('takePending returns queued items in order and keeps the invariant', async () => {
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const b = new Batcher<number>({ maxBatch: 3, maxDelayMs: 1000, maxPending: 1000, send: () => gate, onFailed: async () => undefined });
    for (let i = 0; i < 10; i++) b.push(i);
    // [0,1,2] in flight; [3..5], [6..8] queued; [9] filling.
    expect(b.takePending()).toEqual([3, 4, 5, 6, 7, 8, 9]);
    expect(b.pending).toBe(3);
    release();
    await b.flush();
    const s = b.stats;
    expect(s.pushed).toBe(s.sent + s.failed + s.overflowed + b.pending);
  });

  it('never loses an item across 100k pushes with random failures and overflow', async () => {
    const seen = new Uint8Array(100_000);
    let sentItems = 0;
    let failedItems = 0;
    let overflowItems = 0;
    let onFailedCalls = 0;
    let maxBatchSeen = 0;
    const b = new Batcher<number>({
      maxBatch: 1000,
      maxDelayMs: 2,
      maxPending: 20_000,
      concurrency: 3,
      send: async (batch) => {
        maxBatchSeen = Math.max(maxBatchSeen, batch.length);
        await new Promise((r) => setImmediate(r));
        if (Math.random() < 0.2) throw new Error('random failure');
        for (const x of batch) seen[x]!++;
        sentItems += batch.length;
      },
      onFailed: async (batch) => {
        onFailedCalls++;
        for (const x of batch) seen[x]!++;
        failedItems += batch.length;
      },
      overflow: (items) => {
        for (const x of items) seen[x]!++;
        overflowItems += items.length;
      },
    });
    for (let i = 0; i < 100_000; i++) {
      if (i % 7 === 0) b.pushMany([i]);
      else b.push(i);
      if (i % 10_000 === 0) await tick();
    }
    await b.close().catch(() => undefined);
    expect(sentItems + failedItems + overflowItems).toBe(100_000);
    expect(seen.every((c) => c === 1)).toBe(true);
    expect(maxBatchSeen).toBeLessThanOrEqual(1000);
    const s = b.stats;
    expect(s).toMatchObject({ pushed: 100_000, sent: sentItems, failed: failedItems, overflowed: overflowItems });
    expect(onFailedCalls).toBeGreaterThan(0);
    expect(overflowItems).toBeGreaterThan(0);
    expect(b.pending).toBe(0);
  });
});

describe('weighted batches', () => {
  it('cuts a batch before an item that would take it over maxBatch; heavy items travel alone', async () => {
    const sent: number[][] = [];
    const b = new Batcher<number>({
      maxBatch: 10,
      weight: (n) => n,
      maxDelayMs: 10_000,
      maxPending: 1000,
      send: async (batch) => void sent.push(batch),
      onFailed: async () => undefined,
    });
    for (const n of [3, 3, 3, 3, 4, 12, 2, 8, 1]) b.push(n);
    await b.close();
    expect(sent).toEqual([[3, 3, 3], [3, 4], [12], [2, 8], [1]]);
    expect(sent.every((batch) => batch.length === 1 || batch.reduce((a, x) => a + x, 0) <= 10)).toBe(true);
  });
});

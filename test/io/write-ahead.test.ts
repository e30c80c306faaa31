// WriteAhead's `ready` gate: the timer's tick writes the queue up to the first item that is not
// ready (W&B: a row whose images the worker is still encoding), keeps queue order in the spool, and
// never builds records for an item that is not ready; close() writes everything.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { listSpools, replaySpool } from '../../runtime/io/spool.js';
import { WriteAhead } from '../../runtime/io/write-ahead.js';

const roots: string[] = [];
afterAll(() => {
  for (const r of roots) fs.rmSync(r, { recursive: true, force: true });
});

interface Item {
  n: number;
  ready: boolean;
}

describe('WriteAhead ready gate', () => {
  it('a timer tick stops at the first item that is not ready; later ticks write the rest in order; close() writes everything', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'trackspec-wa-'));
    roots.push(dir);
    const built: [number, boolean][] = [];
    const wa = new WriteAhead<Item>({
      dir,
      header: () => ({ backend: 'wandb', target: 'http://127.0.0.1:1', created: 1, meta: {} }),
      intervalMs: 60_000,
      records: (it) => {
        built.push([it.n, it.ready]);
        return [it.ready ? { o: it.n } : { o: it.n, forced: true }];
      },
      ready: (it) => it.ready,
    });
    const items = Array.from({ length: 5 }, (_, n) => ({ n, ready: n !== 2 }));
    for (const it of items) wa.push(it);
    expect(wa.tick(false)).toBe(2); // 0 and 1; item 2 is not ready, so 3 and 4 wait behind it
    expect(wa.tick(false)).toBe(0);
    items[2]!.ready = true;
    const late = { n: 5, ready: false };
    wa.push(late);
    expect(wa.tick(false)).toBe(3); // 2, 3, 4 in order; 5 waits
    expect(built.every(([, ready]) => ready)).toBe(true); // no records were built for an unready item
    wa.acked([items[0]!]);
    const kept = await wa.close(); // forced: item 5 is written as it is
    expect(built.map(([n]) => n)).toEqual([0, 1, 2, 3, 4, 5]);
    const [info] = await listSpools(dir, 'wandb');
    expect(info).toMatchObject({ path: kept, records: 6, acked: 1, pending: 5 });
    const got: unknown[] = [];
    await replaySpool(kept!, async (records) => {
      got.push(...records);
    });
    expect(got).toEqual([{ o: 1 }, { o: 2 }, { o: 3 }, { o: 4 }, { o: 5, forced: true }]);
  });
});

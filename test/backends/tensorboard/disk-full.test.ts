// Issue 13.1 (TensorBoard part): on a full disk TensorBoard fails cleanly: a BackendError naming the
// event file and saying the disk is full, an event file of whole records only (read by readEvents),
// and nothing lost once space is back. Uses a real 256 KiB tmpfs when this process may mount one
// (root), else injects ENOSPC (after a partial write) into fs.writeSync.
import * as fs from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { BackendError, TensorBoardTracker, setWarningHandler } from '../../../generated/index.gen.js';
import { readEventsSync, scalarOf } from '../../../runtime/backends/tensorboard/reader.js';
import { tempDir } from '../../support/helpers.js';
import { smallDisk, type SmallDisk } from '../../support/small-disk.js';
import { onlyEventFile } from './helpers.js';


let disk: SmallDisk;
beforeEach(() => {
  setWarningHandler(() => undefined);
  disk = smallDisk({ sizeKiB: 256, leftKiB: 32, injectedBytes: 20_000, prefix: 'tb-disk-' });
});
afterEach(() => {
  setWarningHandler(undefined);
  disk.dispose();
});

/** Steps of the `loss` scalars in a decoded file. */
function lossSteps(file: string): { steps: number[]; error: string | undefined } {
  const r = readEventsSync(file);
  const steps: number[] = [];
  for (const e of r.events) for (const v of e.summary ?? []) if (v.tag === 'loss' && scalarOf(v) !== undefined) steps.push(e.step);
  return { steps, error: r.error?.message };
}

describe('TensorBoard on a full disk (issue 13.1)', () => {
  it('flush() rejects with a BackendError naming the event file and saying the disk is full; the file keeps whole records; nothing is lost once space is back', async () => {
    const t = new TensorBoardTracker({ run_name: 'full', logging_dir: disk.dir, flush_secs: 3600 });
    await t.start();
    t.log({ loss: 0 }, 0);
    await t.flush();
    const file = onlyEventFile(join(disk.dir, 'full'));
    disk.fill();
    let err: unknown;
    let last = 0;
    for (let s = 1; s <= 100_000 && err === undefined; s++) {
      t.log({ loss: s, acc: s / 2 }, s);
      last = s;
      if (s % 500 === 0) err = await t.flush().catch((e: unknown) => e);
    }
    expect(err, `disk kind ${disk.kind}`).toBeInstanceOf(BackendError);
    expect((err as Error).message).toContain(file);
    expect((err as Error).message).toMatch(/the disk is full/);
    // While the disk is full, the file holds whole records only: readEvents reads it to the end.
    const during = lossSteps(file);
    if (process.env.TRACKSPEC_KEEP_FULL_FILE) fs.copyFileSync(file, process.env.TRACKSPEC_KEEP_FULL_FILE);
    expect(during.error).toBeUndefined();
    expect(during.steps).toEqual(during.steps.map((_, i) => i));
    expect(during.steps.length).toBeLessThan(last + 1);

    disk.free();
    await t.finish();
    const after = lossSteps(file);
    expect(after.error).toBeUndefined();
    expect(after.steps).toEqual(Array.from({ length: last + 1 }, (_, i) => i)); // every step, once
  }, 60_000);
});

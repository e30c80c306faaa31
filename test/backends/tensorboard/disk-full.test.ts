// Issue 13.1 (TensorBoard part): on a full disk TensorBoard fails cleanly: a BackendError naming the
// event file and saying the disk is full, an event file of whole records only (read by readEvents),
// and nothing lost once space is back. Uses a real 256 KiB tmpfs when this process may mount one
// (root), else injects ENOSPC (after a partial write) into fs.writeSync.
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import { createRequire, syncBuiltinESMExports } from 'node:module';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { BackendError, TensorBoardTracker, setWarningHandler } from '../../../generated/index.gen.js';
import { readEventsSync, scalarOf } from '../../../runtime/backends/tensorboard/reader.js';
import { tempDir } from '../../support/helpers.js';
import { onlyEventFile } from './helpers.js';

interface SmallDisk {
  dir: string;
  kind: 'tmpfs' | 'injected';
  fill(): void;
  free(): void;
  dispose(): void;
}

function smallDisk(): SmallDisk {
  const dir = tempDir('tb-disk-');
  try {
    if (process.getuid?.() !== 0 || process.env.TRACKSPEC_TEST_INJECT_ENOSPC) throw new Error('not root, or injection asked for');
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=256k', 'tmpfs', dir], { stdio: 'ignore' });
    const filler = join(dir, 'filler');
    return {
      dir,
      kind: 'tmpfs',
      fill() {
        const fd = fs.openSync(filler, 'w');
        const block = Buffer.alloc(4096, 1);
        try {
          for (;;) fs.writeSync(fd, block);
        } catch {
          // full
        }
        fs.closeSync(fd);
        fs.truncateSync(filler, fs.statSync(filler).size - 8 * 4096); // a few KiB left
      },
      free: () => fs.rmSync(filler, { force: true }),
      dispose: () => execFileSync('umount', ['-l', dir], { stdio: 'ignore' }),
    };
  } catch {
    const cjsFs = createRequire(import.meta.url)('node:fs') as typeof fs;
    const orig = cjsFs.writeSync;
    const origOpen = cjsFs.openSync;
    const fdPath = new Map<number, string>();
    let full = false;
    let budget = 0;
    cjsFs.openSync = function (p: fs.PathLike, ...rest: unknown[]) {
      const fd = (origOpen as (...a: unknown[]) => number).call(cjsFs, p, ...rest);
      fdPath.set(fd, String(p));
      return fd;
    } as typeof fs.openSync;
    cjsFs.writeSync = function (fd: number, buf: Uint8Array, off?: number, len?: number, pos?: number) {
      if (full && (fdPath.get(fd) ?? '').startsWith(dir)) {
        const n = Math.min(budget, len ?? buf.length);
        budget -= n;
        // a partial write first (as a real file system does when the last blocks run out), then ENOSPC
        if (n > 0) return (orig as (...a: unknown[]) => number).call(cjsFs, fd, buf, off ?? 0, Math.max(1, Math.floor(n / 2)), pos);
        throw Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC', errno: -28, syscall: 'write' });
      }
      return (orig as (...a: unknown[]) => number).call(cjsFs, fd, buf, off, len, pos);
    } as unknown as typeof fs.writeSync;
    syncBuiltinESMExports();
    return {
      dir,
      kind: 'injected',
      fill() {
        full = true;
        budget = 20_000;
      },
      free() {
        full = false;
      },
      dispose() {
        cjsFs.writeSync = orig;
        cjsFs.openSync = origOpen;
        syncBuiltinESMExports();
      },
    };
  }
}

let disk: SmallDisk;
beforeEach(() => {
  setWarningHandler(() => undefined);
  disk = smallDisk();
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

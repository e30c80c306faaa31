/**
 * A small disk for disk-full tests: a real tmpfs when this process may mount one (root), else a
 * temp directory whose fs.writeSync calls fail with ENOSPC (after one partial write, as a real file
 * system does when its last blocks run out) while `fill()` is in effect.
 * TRACKSPEC_TEST_INJECT_ENOSPC=1 forces the injected kind.
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import { createRequire, syncBuiltinESMExports } from 'node:module';
import { join } from 'node:path';
import { tempDir } from './helpers.js';

export interface SmallDisk {
  dir: string;
  kind: 'tmpfs' | 'injected';
  /** Use up the space, leaving `leftKiB` (tmpfs) or `injectedBytes` of writes (injected). */
  fill(): void;
  free(): void;
  dispose(): void;
}

export function smallDisk(options: { sizeKiB: number; leftKiB: number; injectedBytes: number; prefix?: string }): SmallDisk {
  const dir = tempDir(options.prefix ?? 'disk-');
  try {
    if (process.getuid?.() !== 0 || process.env.TRACKSPEC_TEST_INJECT_ENOSPC) throw new Error('not root, or injection asked for');
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${options.sizeKiB}k`, 'tmpfs', dir], { stdio: 'ignore' });
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
        fs.truncateSync(filler, Math.max(0, fs.statSync(filler).size - options.leftKiB * 1024));
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
        budget = options.injectedBytes;
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

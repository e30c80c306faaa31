/**
 * Crash-safe file replacement shared by the file-writing backends: the new content goes to a
 * temporary file in the same directory (`.<name>.<pid>.tmp`), which is then renamed over the
 * target, so a reader (or a process killed at any instant) sees either the old or the new file,
 * never a torn one. A failed write removes its temporary file; temporaries left by a process that
 * was killed between the write and the rename are removed by `removeStaleTemps`.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

const TEMP = /^\.(.+)\.(\d+)\.tmp$/;

function tempPath(target: string): string {
  return path.join(path.dirname(target), `.${path.basename(target)}.${process.pid}.tmp`);
}

/** Write `data` to `target` atomically (temp file + rename). `fsync` also makes it durable across power loss. */
export function writeFileAtomicSync(target: string, data: string | Uint8Array, opts: { fsync?: boolean } = {}): void {
  const tmp = tempPath(target);
  try {
    if (opts.fsync) {
      const fd = fs.openSync(tmp, 'w');
      try {
        fs.writeFileSync(fd, data);
        fs.fsyncSync(fd);
      } finally {
        fs.closeSync(fd);
      }
    } else {
      fs.writeFileSync(tmp, data);
    }
    fs.renameSync(tmp, target);
  } catch (err) {
    try {
      fs.rmSync(tmp, { force: true });
    } catch {
      // the original error matters more
    }
    throw err;
  }
}

function alive(pid: number): boolean {
  if (pid === process.pid) return true;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Remove the temporaries `writeFileAtomicSync` left in `dir` when their process died before the
 * rename (only those of processes no longer running). Returns the paths removed.
 */
export function removeStaleTemps(dir: string): string[] {
  let names: string[];
  try {
    names = fs.readdirSync(dir);
  } catch {
    return [];
  }
  const removed: string[] = [];
  for (const name of names) {
    const m = TEMP.exec(name);
    if (!m || alive(Number(m[2]))) continue;
    const p = path.join(dir, name);
    try {
      fs.rmSync(p, { force: true });
      removed.push(p);
    } catch {
      // not ours to fight over
    }
  }
  return removed;
}

import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { exitHookCount, registerExitHook } from '../../../runtime/io/exit-hooks.js';
import { SummaryWriter, readEventsSync, scalarOf, type DecodedEvent } from '../../../runtime/backends/tensorboard/index.js';
import { REPO, onlyEventFile, readAll, tmpDir } from './helpers.js';

const CHILD = path.join(REPO, 'test/backends/tensorboard/fixtures/exit-child.ts');

function runChild(
  mode: string,
  dir: string,
  signal?: NodeJS.Signals,
  delayMs = 0,
): Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', CHILD, mode, dir], { cwd: REPO, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (b: Buffer) => {
      stdout += b.toString();
      if (signal && stdout.includes('ready\n') && !child.killed) {
        if (delayMs > 0) setTimeout(() => child.kill(signal), delayMs);
        else child.kill(signal);
      }
    });
    child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
    child.on('error', reject);
    child.on('close', (code, sig) => resolve({ code, signal: sig, stdout, stderr }));
  });
}

function scalars(events: DecodedEvent[], tag: string): number[] {
  return events.flatMap((e) => (e.summary ?? []).filter((v) => v.tag === tag).map((v) => scalarOf(v)!));
}

function expectChildData(dir: string): void {
  const run = path.join(dir, 'run');
  const events = readAll(onlyEventFile(run));
  expect(scalars(events, 'loss')).toEqual(Array.from({ length: 100 }, (_, i) => i));
  expect(scalars(readAll(onlyEventFile(path.join(run, 'parts_a'))), 'parts')).toEqual([1]);
  expect(fs.readFileSync(path.join(run, 'hparams.yml'), 'utf8')).toContain('lr: 0.5');
}

describe('flushing', () => {
  it('flushes periodically every flushSecs (timer does not need flush())', async () => {
    const dir = tmpDir();
    const w = new SummaryWriter(dir, { flushSecs: 0.05 });
    w.addScalar('x', 1, 1);
    expect(readEventsSync(w.path).events).toHaveLength(1); // only file_version so far: buffered
    await new Promise((r) => setTimeout(r, 250));
    expect(scalars(readAll(w.path), 'x')).toEqual([1]);
    await w.close();
  });

  it('writes whole records once the buffer passes bufferBytes, without flush()', async () => {
    const dir = tmpDir();
    const w = new SummaryWriter(dir, { flushSecs: 0, bufferBytes: 4096 });
    for (let i = 0; i < 1000; i++) w.addScalar('loss', i, i);
    const r = readEventsSync(w.path);
    expect(r.error).toBeUndefined(); // the file ends on a record boundary
    expect(r.events.length).toBeGreaterThan(100);
    await w.close();
    expect(scalars(readAll(w.path), 'loss')).toHaveLength(1000);
  });

  it('registers an exit hook per open writer and removes it on close', async () => {
    const before = exitHookCount();
    const w = new SummaryWriter(tmpDir(), { flushSecs: 0 });
    expect(exitHookCount()).toBe(before + 1);
    await w.close();
    expect(exitHookCount()).toBe(before);
    const un = registerExitHook(() => undefined);
    expect(exitHookCount()).toBe(before + 1);
    un();
    expect(exitHookCount()).toBe(before);
  });
});

describe('flush on process exit (child processes, no finish())', () => {
  it('natural exit (event loop drains)', async () => {
    const dir = tmpDir();
    const r = await runChild('natural', dir);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expectChildData(dir);
  });

  it('process.exit(3)', async () => {
    const dir = tmpDir();
    const r = await runChild('exit', dir);
    expect(r.code).toBe(3);
    expectChildData(dir);
  });

  it('SIGTERM: flushes, then dies from the signal (not swallowed)', async () => {
    const dir = tmpDir();
    const r = await runChild('sigterm', dir, 'SIGTERM');
    expect(r.signal).toBe('SIGTERM');
    expectChildData(dir);
  });

  it('SIGINT: flushes, then dies from the signal', async () => {
    const dir = tmpDir();
    const r = await runChild('sigint', dir, 'SIGINT');
    expect(r.signal).toBe('SIGINT');
    expectChildData(dir);
  });

  it('SIGTERM with an application handler: flushes and leaves the decision to the app', async () => {
    const dir = tmpDir();
    const r = await runChild('sigterm-handled', dir, 'SIGTERM');
    expect(r.stdout).toContain('handled');
    expect(r.code).toBe(7);
    expectChildData(dir);
  });

  it('SIGKILL (no hook can run): the file reads cleanly up to the last written record', async () => {
    const dir = tmpDir();
    const r = await runChild('sigkill-loop', dir, 'SIGKILL');
    expect(r.signal).toBe('SIGKILL');
    const res = readEventsSync(onlyEventFile(path.join(dir, 'run')));
    if (res.error) expect(res.error.kind).toBe('truncated');
    const loss = scalars(res.events, 'loss');
    expect(loss.length).toBeGreaterThan(20_000); // buffer-full writes happened before the kill
    expect(loss.length).toBeLessThan(60_100); // the unwritten tail was lost, as expected for SIGKILL
    expect(loss.slice(0, 100)).toEqual(Array.from({ length: 100 }, (_, i) => i));
    // Steps are contiguous: nothing in the middle lost or corrupted.
    // (the child logs loss = step for steps 0..99, then 101, 102, ...)
    const firstGap = loss.findIndex((v, i) => v !== Math.fround(i < 100 ? i : i + 1));
    expect(firstGap).toBe(-1);
  });
});

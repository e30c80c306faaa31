import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { DVCLiveTracker } from '../../../generated/index.gen.js';
import { ROOT, tempDir } from '../../support/helpers.js';
import { decode, listFiles } from './helpers.js';

const CHILD = path.join(ROOT, 'test/backends/dvclive/fixtures/child.ts');

function runChild(mode: string, root: string, signal: NodeJS.Signals, delayMs: number): Promise<{ signal: NodeJS.Signals | null; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', CHILD, mode, root], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (b: Buffer) => {
      stdout += b.toString();
      if (stdout.includes('ready\n') && !child.killed) setTimeout(() => child.kill(signal), delayMs);
    });
    child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
    child.on('error', reject);
    child.on('close', (_code, sig) => resolve({ signal: sig, stderr }));
  });
}

describe('DVCLive crash safety', () => {
  it.each([0, 7, 23])('SIGKILL mid-run (after %i ms) leaves files that parse, consistent with each other', async (delay) => {
    const root = tempDir('dvclive-kill-');
    const r = await runChild('loop', root, 'SIGKILL', delay);
    expect(r.signal, r.stderr).toBe('SIGKILL');
    const dir = path.join(root, 'dvclive');
    const d = decode(dir, path.join(root, 'dvc.yaml')); // throws on a torn TSV line or a torn JSON/YAML file
    expect(d.params).toEqual({ lr: 0.5, mode: 'loop' });
    const metrics = d.metrics as { step: number };
    expect(metrics.step).toBeGreaterThanOrEqual(200);
    // Each TSV is a contiguous prefix (no row lost in the middle, none doubled; a kill between two
    // files' appends leaves one a pass ahead of another), and metrics.json, written after the TSVs,
    // is never ahead of any of them.
    for (const name of ['loss', 'acc', 'eval/loss', 'note']) {
      const steps = d.plots[name]!.map(([s]) => s);
      expect(steps, name).toEqual(steps.map((_, i) => i));
      expect(steps.at(-1)!, name).toBeGreaterThanOrEqual(metrics.step);
    }
    expect(d.dvcYaml).toEqual({ params: ['dvclive/params.yaml'], metrics: ['dvclive/metrics.json'], plots: [{ 'dvclive/plots/metrics': { x: 'step' } }] });
    // A temporary may survive a kill between write and rename; the next start removes it.
    const t = new DVCLiveTracker({ dir, dvcyaml: path.join(root, 'dvc.yaml'), resume: true });
    await t.start();
    t.log({ loss: -1 });
    await t.finish();
    expect(listFiles(root).filter((f) => f.endsWith('.tmp'))).toEqual([]);
    expect(decode(dir).plots.loss!.at(-1)).toEqual([metrics.step + 1, '-1.0']);
  }, 30_000);

  it('SIGTERM: the exit hook writes everything logged', async () => {
    const root = tempDir('dvclive-term-');
    const r = await runChild('sigterm', root, 'SIGTERM', 0);
    expect(r.signal).toBe('SIGTERM');
    const d = decode(path.join(root, 'dvclive'));
    expect(d.plots.loss).toHaveLength(500);
    expect(d.metrics).toEqual({ loss: 499, step: 499 });
  }, 30_000);
});

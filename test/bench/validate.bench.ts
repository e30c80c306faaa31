/**
 * `trackspec validate` on large maps (run after `npm run build`; uses the built CLI in dist/), wall
 * time, median of 3, against the same command on a 3-line file measured in the same run (process
 * start, SDK and yaml import). Two shapes of one map of N keys (N = 10k, 20k, 40k, 80k):
 * - `config:` with N valid keys (parse + duplicate-key check + validation);
 * - N unknown top-level keys (every key an issue: humanize, did-you-mean, located, printed).
 * The doubling ratios show the growth: ~2 is linear, ~4 quadratic.
 *
 * Before (main at ae0e1df, `node --import tsx cli/main.ts validate`, this shared 2-core machine,
 * user CPU): valid keys 10k 1.6 s, 20k 3.9 s, 40k 12.1 s, 80k 43.1 s; unknown keys 10k 2.1 s,
 * 20k 6.8 s, 40k 23.9 s, 80k 81.9 s (issue 13 had 1.2 / 3.5 / 11.8 / 42 s). The causes were the
 * yaml library's `uniqueKeys` check (every key compared with every earlier one) and a scan of the
 * map per located issue. After, same command: valid 0.76 / 0.88 / 1.03 / 1.50 s, unknown 0.82 /
 * 1.08 / 1.30 / 1.93 s (tsx start-up included). Most of what remains at 80k is the yaml library's
 * own parse (~1 s for 1.5 MB here).
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { BenchRow } from './tensorboard.bench.js';

const ROOT = resolve(import.meta.dirname, '..', '..');
const CLI = join(ROOT, 'dist', 'cli', 'main.js');

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

/** Median wall and CPU (user + system) ms of `trackspec validate FILE`, CPU read in the child at exit. */
function measure(file: string, expectCode: number, cpuHook: string, runs = 3): { wall: number; cpu: number } {
  const walls: number[] = [];
  const cpus: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    const r = spawnSync(process.execPath, ['--require', cpuHook, CLI, 'validate', '--max-bytes', String(64 * 1024 * 1024), file], { encoding: 'utf8', maxBuffer: 1 << 30 });
    walls.push(performance.now() - t0);
    if (r.status !== expectCode) throw new Error(`validate ${file}: exit ${r.status}: ${r.stderr.slice(0, 500)}`);
    const m = /CPU_MS (\d+(?:\.\d+)?)/.exec(r.stderr);
    if (!m) throw new Error('no CPU figure from the child');
    cpus.push(Number(m[1]));
  }
  return { wall: median(walls), cpu: median(cpus) };
}

export default async function bench(): Promise<BenchRow[]> {
  const rows: BenchRow[] = [];
  const dir = mkdtempSync(join(tmpdir(), 'trackspec-validate-bench-'));
  try {
    const cpuHook = join(dir, 'cpu.cjs');
    writeFileSync(cpuHook, "process.on('exit', () => { const u = process.cpuUsage(); require('fs').writeSync(2, `\\nCPU_MS ${(u.user + u.system) / 1000}\\n`); });\n");
    const small = join(dir, 'small.yaml');
    writeFileSync(small, 'project_name: x\nlog_with: tensorboard\nconfig: {lr: 0.001}\n');
    const base = measure(small, 0, cpuHook, 5);
    rows.push({ name: 'baseline: validate a 3-line file (process start + imports), wall', value: Math.round(base.wall), unit: 'ms' });
    rows.push({ name: 'baseline: validate a 3-line file, CPU (user + system)', value: Math.round(base.cpu), unit: 'ms' });
    for (const shape of ['valid', 'unknown'] as const) {
      let prev: number | undefined;
      for (const n of [10_000, 20_000, 40_000, 80_000]) {
        const file = join(dir, `${shape}-${n}.yaml`);
        let text = shape === 'valid' ? 'project_name: x\nlog_with: tensorboard\nconfig:\n' : 'project_name: x\nlog_with: tensorboard\n';
        const indent = shape === 'valid' ? '  ' : '';
        const lines: string[] = [];
        for (let i = 0; i < n; i++) lines.push(`${indent}key_${i}: ${i}\n`);
        text += lines.join('');
        writeFileSync(file, text);
        const t = measure(file, shape === 'valid' ? 0 : 1, cpuHook);
        const label = shape === 'valid' ? `config map of ${n / 1000}k valid keys` : `${n / 1000}k unknown keys (each reported)`;
        rows.push({ name: `validate ${label} (${(text.length / 1e6).toFixed(1)} MB), wall`, value: Math.round(t.wall), unit: 'ms', ...(n === 80_000 ? { goal: '<= 1000' } : {}) });
        rows.push({ name: `  CPU (user + system; the wall figure on a machine nobody else uses)`, value: Math.round(t.cpu), unit: 'ms', ...(n === 80_000 ? { goal: '<= 1000' } : {}) });
        if (prev !== undefined) rows.push({ name: `  CPU ratio to half the keys (2 = linear, 4 = quadratic)`, value: +(t.cpu / prev).toFixed(2), unit: 'x' });
        prev = t.cpu;
      }
    }
    return rows;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  for (const r of await bench()) console.log(`${r.name}: ${r.value} ${r.unit}${r.goal ? ` (goal ${r.goal})` : ''}`);
}

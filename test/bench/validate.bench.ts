/**
 * `trackspec validate` on large maps (run after `npm run build`; uses the built CLI in dist/), wall
 * time, median of 3, against the same command on a 3-line file measured in the same run (process
 * start, SDK and parser import). Two shapes of one map of N keys (N = 10k, 20k, 40k, 80k):
 * - `config:` with N valid keys (parse + validation; no positions are computed);
 * - N unknown top-level keys (every key an issue: humanize, did-you-mean, located, printed).
 * At 80k, also the SDK's `loadTrackingConfig` (the built bundle) on the same file, in a fresh process.
 * The doubling ratios show the growth: ~2 is linear, ~4 quadratic.
 *
 * History, on this shared 2-core machine (wall varies with the load; CPU is user + system):
 * 1. main at ae0e1df, `node --import tsx cli/main.ts validate`: valid keys 10k 1.6 s, 20k 3.9 s,
 *    40k 12.1 s, 80k 43.1 s; unknown keys 10k 2.1 s, 20k 6.8 s, 40k 23.9 s, 80k 81.9 s (issue 13 had
 *    1.2 / 3.5 / 11.8 / 42 s): the `yaml` library's `uniqueKeys` check and a scan of the map per issue.
 * 2. Linear since 8a7e314, but the `yaml` library's own parse of 1.5 MB (CST + composer, GC-heavy)
 *    took 0.4–1.5 s. This bench on main at 34fba3b (built, load average ~4): 80k valid keys 2,287 ms
 *    wall / 1,378 ms CPU; 80k unknown keys 1,654 / 1,759 ms; loadTrackingConfig 80k valid
 *    1,166 / 1,304 ms, 80k unknown 3,264 / 2,891 ms (it parsed and validated twice).
 * 3. Now (decision in runtime/core/README.md, "Config files: the parser"): js-yaml 5.5.0's event
 *    parser, the value built from the same events, the position index built from them only when an
 *    issue needs locating; loadTrackingConfig parses and validates once. Same run conditions, right
 *    after (2): 80k valid keys 474 ms wall / 368 ms CPU; 80k unknown keys 1,864 ms wall (the machine
 *    was busy: wall was twice CPU) / 1,037 ms CPU; loadTrackingConfig 80k valid 436 / 346 ms, 80k
 *    unknown 960 / 901 ms. Direct runs of the two builds interleaved (load average ~10), CPU:
 *    valid 80k 1.37 s → 0.39 s, unknown 80k 1.9 s → 1.0 s. What remains in the unknown case is
 *    ~0.15 s process start, ~0.15 s parse, ~0.2 s humanize (did-you-mean for each key), GC and
 *    printing 80,000 lines (13 MB).
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

/** Median wall and CPU (user + system) ms of `trackspec validate FILE` (or of `args` run by node), CPU read in the child at exit. */
function measure(file: string, expectCode: number, cpuHook: string, runs = 3, args = [CLI, 'validate', '--max-bytes', String(64 * 1024 * 1024), file]): { wall: number; cpu: number } {
  const walls: number[] = [];
  const cpus: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    const r = spawnSync(process.execPath, ['--require', cpuHook, ...args], { encoding: 'utf8', maxBuffer: 1 << 30 });
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
    const loader = join(dir, 'load.mjs');
    writeFileSync(
      loader,
      `import { loadTrackingConfig, ValidationError } from ${JSON.stringify(pathToFileURL(join(ROOT, 'dist', 'bundle', 'trackspec.js')).href)};\n` +
        `try { await loadTrackingConfig(process.argv[2]); } catch (e) { if (!(e instanceof ValidationError)) throw e; process.exitCode = 1; }\n`,
    );
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
        if (n === 80_000) {
          // The SDK's loadTrackingConfig (the built bundle) on the same file: exit 0 when it loads, 1 on a ValidationError.
          const load = measure(file, shape === 'valid' ? 0 : 1, cpuHook, 3, [loader, file]);
          rows.push({ name: `loadTrackingConfig on the same file (process start + SDK import included), wall`, value: Math.round(load.wall), unit: 'ms', goal: '<= 1000' });
          rows.push({ name: `  CPU (user + system)`, value: Math.round(load.cpu), unit: 'ms', goal: '<= 1000' });
        }
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

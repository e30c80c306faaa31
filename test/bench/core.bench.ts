/**
 * Core benchmark (run after `npm run build`; uses the built CLI and bundle in dist/):
 * - `trackspec generate` (fresh output dir) and `generate --check` wall time, median of 5, with the
 *   cost of merely importing the emitters (ts-morph etc.) measured in the same run as a floor;
 * - cold import of the SDK (`import('trackspec')` in a fresh process), median of 15, against a
 *   bare `import()` of an empty module in the same way; and which heavy modules that loaded;
 * - generated validator throughput (option objects/s), and full constructor cost.
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

function wall(args: string[], runs: number): number {
  const times: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    const r = spawnSync(process.execPath, args, { cwd: ROOT, encoding: 'utf8' });
    times.push(performance.now() - t0);
    if (r.status !== 0) throw new Error(`${args.join(' ')} failed: ${r.stderr}${r.stdout}`);
  }
  return median(times);
}

/** ms for `import(spec)` measured inside a fresh node process. */
function coldImport(spec: string, runs: number, dir: string): { ms: number; loaded: string[] } {
  const probe = join(dir, 'probe.mjs');
  writeFileSync(
    probe,
    `import { createRequire } from 'node:module';
const t0 = performance.now();
await import(${JSON.stringify(spec)});
const ms = performance.now() - t0;
const cache = Object.keys(createRequire(import.meta.url).cache);
const heavy = ['ts-morph', 'json-schema-to-typescript', 'handlebars', 'typescript', 'prettier', 'yaml', 'pngjs', 'ajv/dist/core', 'ajv/dist/ajv'];
const loaded = heavy.filter((h) => cache.some((p) => p.includes('/node_modules/' + h + '/')));
console.log(JSON.stringify({ ms, loaded }));`,
  );
  const results: { ms: number; loaded: string[] }[] = [];
  try {
    for (let i = 0; i < runs; i++) {
      const r = spawnSync(process.execPath, [probe], { cwd: ROOT, encoding: 'utf8' });
      if (r.status !== 0) throw new Error(r.stderr);
      results.push(JSON.parse(r.stdout) as { ms: number; loaded: string[] });
    }
  } finally {
    rmSync(probe, { force: true }); // the package's own probe sits in the checkout (to import 'trackspec' by name)
  }
  return { ms: median(results.map((r) => r.ms)), loaded: [...new Set(results.flatMap((r) => r.loaded))] };
}

export default async function bench(): Promise<BenchRow[]> {
  const rows: BenchRow[] = [];
  const tmp = mkdtempSync(join(tmpdir(), 'trackspec-bench-'));
  const out = mkdtempSync(join(ROOT, '.check-bench-'));
  try {
    const floor = wall(['-e', "Promise.all([import('ts-morph'), import('json-schema-to-typescript'), import('handlebars'), import('ajv')])"], 5);
    rows.push({ name: 'floor: node + import of the emitters (ts-morph, json-schema-to-typescript, handlebars, ajv)', value: Math.round(floor), unit: 'ms' });
    const fresh: number[] = [];
    for (let i = 0; i < 5; i++) {
      rmSync(out, { recursive: true, force: true });
      fresh.push(wall([CLI, 'generate', '--no-cache', '--out', out], 1));
    }
    rows.push({ name: 'trackspec generate, emitters run (fresh output dir, --no-cache), wall', value: Math.round(median(fresh)), unit: 'ms', goal: '<= 1000' });
    const checkCold = wall([CLI, 'generate', '--check', '--no-cache'], 5);
    rows.push({ name: 'trackspec generate --check, emitters run (--no-cache), wall', value: Math.round(checkCold), unit: 'ms', goal: '<= 1000' });
    rows.push({ name: 'ratio --check (emitters run) / emitter-import floor', value: +(checkCold / floor).toFixed(2), unit: 'x' });
    wall([CLI, 'generate', '--out', out], 1); // fills the output cache for this output dir
    const genWarm = wall([CLI, 'generate', '--out', out], 5);
    rows.push({ name: 'trackspec generate, output current (served by the output cache), wall', value: Math.round(genWarm), unit: 'ms', goal: '<= 1000' });
    wall([CLI, 'generate', '--check'], 1);
    const checkWarm = wall([CLI, 'generate', '--check'], 5);
    rows.push({ name: 'trackspec generate --check (served by the output cache), wall', value: Math.round(checkWarm), unit: 'ms', goal: '<= 1000' });

    writeFileSync(join(tmp, 'empty.mjs'), 'export {};\n');
    const base = coldImport(pathToFileURL(join(tmp, 'empty.mjs')).href, 15, tmp);
    const sdk = coldImport('trackspec', 15, ROOT);
    rows.push({ name: 'baseline: cold import() of an empty module', value: +base.ms.toFixed(1), unit: 'ms' });
    rows.push({ name: "cold import('trackspec')", value: +sdk.ms.toFixed(1), unit: 'ms', goal: '<= 40' });
    rows.push({ name: 'heavy modules loaded by the SDK import (should be none)', value: sdk.loaded.length, unit: sdk.loaded.join(',') || 'none' });

    const { validateMLflowOptions, validateTrackingConfig, MLflowTracker, setWarningHandler } = await import(pathToFileURL(join(ROOT, 'dist', 'bundle', 'trackspec.js')).href);
    void setWarningHandler;
    const objects = Array.from({ length: 1000 }, (_, i) => ({
      experiment_name: `exp-${i}`,
      run_name: i % 2 ? null : `run-${i}`,
      tags: { team: 'vision', idx: i },
      nested_run: i % 3 === 0,
      tracking_uri: 'http://127.0.0.1:5000',
    }));
    const N = 2_000_000;
    let ok = 0;
    for (let i = 0; i < 200_000; i++) ok += validateMLflowOptions(objects[i % 1000]) ? 1 : 0;
    let t0 = performance.now();
    for (let i = 0; i < N; i++) ok += validateMLflowOptions(objects[i % 1000]) ? 1 : 0;
    const perSec = N / ((performance.now() - t0) / 1000);
    rows.push({ name: 'validateMLflowOptions throughput', value: Math.round(perSec), unit: 'objects/s', goal: '>= 1000000' });
    const cfg = { project_name: 'p', log_with: ['tensorboard', 'mlflow'], logging_dir: './runs', init_kwargs: { mlflow: { tags: { a: 'b' } }, tensorboard: { flush_secs: 30 } } };
    t0 = performance.now();
    for (let i = 0; i < N / 4; i++) ok += validateTrackingConfig(cfg) ? 1 : 0;
    rows.push({ name: 'validateTrackingConfig throughput', value: Math.round(N / 4 / ((performance.now() - t0) / 1000)), unit: 'objects/s' });
    t0 = performance.now();
    const M = 100_000;
    for (let i = 0; i < M; i++) new MLflowTracker(objects[i % 1000]);
    rows.push({ name: 'new MLflowTracker(options) incl. env resolution + validation', value: Math.round(M / ((performance.now() - t0) / 1000)), unit: 'objects/s' });
    if (ok === 0) throw new Error('validators rejected everything');
    return rows;
  } finally {
    rmSync(tmp, { recursive: true, force: true });
    rmSync(out, { recursive: true, force: true });
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  for (const r of await bench()) console.log(`${r.name}: ${r.value} ${r.unit}${r.goal ? ` (goal ${r.goal})` : ''}`);
}

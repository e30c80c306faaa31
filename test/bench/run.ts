/**
 * `npm run bench`: builds first (see package.json), then runs every test/bench/*.bench.ts and prints
 * one table. Figures with a goal are marked ok/MISS; baselines measured in the same run sit beside them.
 */
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { BenchRow } from './tensorboard.bench.js';

const dir = import.meta.dirname;
const only = process.argv.slice(2);
const files = readdirSync(dir).filter((f) => f.endsWith('.bench.ts') && (only.length === 0 || only.some((o) => f.includes(o)))).sort();

function meets(row: BenchRow): string {
  if (!row.goal) return '';
  const m = /^(<=|>=)\s*([\d.]+)$/.exec(row.goal);
  if (!m) return '';
  const ok = m[1] === '<=' ? row.value <= Number(m[2]) : row.value >= Number(m[2]);
  return ok ? 'ok' : 'MISS';
}

console.log(`node ${process.version}, ${process.platform}/${process.arch}`);
for (const file of files) {
  const mod = (await import(pathToFileURL(join(dir, file)).href)) as { default: () => Promise<BenchRow[]> };
  console.log(`\n## ${file.replace(/\.bench\.ts$/, '')}`);
  for (const row of await mod.default()) {
    const status = meets(row);
    console.log(`  ${row.name.padEnd(78)} ${String(row.value).padStart(12)} ${row.unit}${row.goal ? `  (goal ${row.goal}${status ? `: ${status}` : ''})` : ''}`);
  }
}

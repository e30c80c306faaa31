/**
 * Install footprint (runs `npm pack`, so it builds): the tarball installed into an empty project, as
 * a user who only logs runs gets it; then the same project with the generator's toolchain added
 * (what `trackspec generate` needs), as the comparison in the same run.
 */
import { statSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { installTarball, packTarball, ROOT } from '../support/pack.js';
import type { BenchRow } from './tensorboard.bench.js';

export default async function bench(): Promise<BenchRow[]> {
  const tarball = packTarball();
  const pkg = installTarball(tarball);
  const peers = (await import(pathToFileURL(`${ROOT}/package.json`).href, { with: { type: 'json' } })).default as { peerDependencies: Record<string, string> };
  const withGen = installTarball(tarball, Object.entries(peers.peerDependencies).map(([n, v]) => `${n}@${v}`));
  const mb = (b: number) => +(b / 1024 / 1024).toFixed(1);
  return [
    { name: 'tarball size', value: +(statSync(tarball).size / 1024).toFixed(0), unit: 'KiB' },
    { name: 'consumer install (npm install trackspec.tgz in an empty project): node_modules', value: mb(pkg.bytes), unit: 'MB', goal: '<= 16' },
    { name: 'consumer install: packages added', value: pkg.packages, unit: 'packages' },
    { name: 'consumer install: install-script warnings', value: pkg.installScriptWarnings.length, unit: pkg.installScriptWarnings.join('; ') || 'none', goal: '<= 0' },
    { name: 'baseline: the same install plus the generator toolchain (optional peers)', value: mb(withGen.bytes), unit: 'MB' },
    { name: 'baseline: packages added with the generator toolchain', value: withGen.packages, unit: 'packages' },
  ];
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  for (const r of await bench()) console.log(`${r.name}: ${r.value} ${r.unit}${r.goal ? ` (goal ${r.goal})` : ''}`);
}

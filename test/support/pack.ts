/**
 * The package as a user gets it: `npm pack` this repository (prepack builds dist/), then
 * `npm install` the tarball into an empty project. Used by test/package.test.ts (assertions) and
 * test/bench/package.bench.ts (figures). Installs prefer npm's cache (`--prefer-offline`), which `npm ci`
 * in this repository has filled; the registry is asked only for what the cache lacks.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

export const ROOT = resolve(import.meta.dirname, '..', '..');

export interface InstalledPackage {
  /** The consumer project (node_modules/trackspec inside). */
  project: string;
  tarball: string;
  /** npm's own "added N packages" count. */
  packages: number;
  /** Disk usage of the project's node_modules, bytes (du -sk × 1024). */
  bytes: number;
  /** npm's `install-scripts` warning lines (packages whose install scripts npm held back). */
  installScriptWarnings: string[];
  /** Top-level names in node_modules (scopes expanded). */
  modules: string[];
}

export function npm(args: string[], cwd: string): { code: number | null; out: string } {
  const r = spawnSync('npm', args, { cwd, encoding: 'utf8', env: { ...process.env, npm_config_update_notifier: 'false', npm_config_fund: 'false', npm_config_audit: 'false' } });
  return { code: r.status, out: `${r.stdout}\n${r.stderr}` };
}

/** Pack the repository once (builds dist/ through prepack). */
export function packTarball(): string {
  const dest = mkdtempSync(join(tmpdir(), 'trackspec-pack-'));
  const r = npm(['pack', '--pack-destination', dest], ROOT);
  if (r.code !== 0) throw new Error(`npm pack failed:\n${r.out}`);
  const tgz = readdirSync(dest).find((f) => f.endsWith('.tgz'));
  if (!tgz) throw new Error(`npm pack wrote no tarball:\n${r.out}`);
  return join(dest, tgz);
}

/** Install the tarball (plus `extra` packages) into a new empty project. */
export function installTarball(tarball: string, extra: string[] = []): InstalledPackage {
  const project = mkdtempSync(join(tmpdir(), 'trackspec-consumer-'));
  writeFileSync(join(project, 'package.json'), JSON.stringify({ name: 'consumer', version: '1.0.0', private: true, type: 'module' }));
  const r = npm(['install', '--prefer-offline', tarball, ...extra], project);
  if (r.code !== 0) throw new Error(`npm install of ${tarball} failed:\n${r.out}`);
  const added = /added (\d+) packages?/.exec(r.out);
  const du = execFileSync('du', ['-sk', join(project, 'node_modules')], { encoding: 'utf8' });
  const modules: string[] = [];
  for (const name of readdirSync(join(project, 'node_modules'))) {
    if (name.startsWith('.')) continue;
    if (name.startsWith('@')) for (const sub of readdirSync(join(project, 'node_modules', name))) modules.push(`${name}/${sub}`);
    else modules.push(name);
  }
  return {
    project,
    tarball,
    packages: added ? Number(added[1]) : NaN,
    bytes: Number(du.split(/\s/)[0]) * 1024,
    installScriptWarnings: r.out.split('\n').filter((l) => /install-scripts?/i.test(l) && /\(\w+: /.test(l)),
    modules: modules.sort(),
  };
}

/** A scratch directory inside the consumer project. */
export function consumerDir(pkg: InstalledPackage, name: string): string {
  const dir = join(pkg.project, name);
  mkdirSync(dir, { recursive: true });
  return dir;
}

// The architecture as rules: which folder may import which, no import cycles, what the SDK may
// depend on, and a README in every top folder. Read from the sources themselves.
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { builtinModules } from 'node:module';
import { dirname, join, relative, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';

const ROOT = resolve(import.meta.dirname, '..');
const SOURCE_DIRS = ['runtime', 'generated', 'generator', 'cli', 'examples'];
const TOOLCHAIN = ['ts-morph', 'json-schema-to-typescript', 'handlebars', 'ajv', 'typescript', 'prettier'];

function walk(dir: string): string[] {
  return readdirSync(join(ROOT, dir), { withFileTypes: true }).flatMap((d) => {
    const rel = `${dir}/${d.name}`;
    return d.isDirectory() ? walk(rel) : /\.(ts|js|mjs)$/.test(d.name) ? [rel] : [];
  });
}

const files = SOURCE_DIRS.flatMap(walk);

/** Import specifiers of a file: static, re-exports, side-effect and dynamic imports (also `import type`). */
function specifiers(file: string): string[] {
  const text = readFileSync(join(ROOT, file), 'utf8').replace(/\/\*[\s\S]*?\*\/|^\s*\/\/.*$/gm, '');
  const out: string[] = [];
  for (const m of text.matchAll(/(?:^|[\s;])(?:import|export)\s[^'"`;]*?from\s*['"]([^'"]+)['"]|(?:^|[\s;])import\s*['"]([^'"]+)['"]|\bimport\(\s*['"]([^'"]+)['"]\s*\)/gm)) out.push(m[1] ?? m[2] ?? m[3]!);
  // Modules loaded on first use: lazy('pkg') (runtime/io/lazy.ts) and require('pkg').
  for (const m of text.matchAll(/\b(?:lazy(?:<[^>]*>)?|require)\(\s*['"]([^'"]+)['"]\s*\)/g)) if (!m[1]!.startsWith('.')) out.push(m[1]!);
  return out;
}

/** Resolve a relative specifier to a repository file ('.js' written for a '.ts' source). */
function resolveRelative(from: string, spec: string): string | undefined {
  const target = relative(ROOT, resolve(ROOT, dirname(from), spec)).split('\\').join('/');
  for (const c of [target, target.replace(/\.js$/, '.ts'), `${target}/index.ts`]) if (existsSync(join(ROOT, c)) && files.includes(c)) return c;
  return undefined;
}

function layer(file: string): string {
  if (file === 'runtime/index.ts') return 'runtime';
  if (file === 'runtime/backends/sync.ts') return 'backends';
  const m = /^runtime\/(core|io)\//.exec(file);
  if (m) return m[1]!;
  const b = /^runtime\/backends\/([^/]+)\//.exec(file);
  if (b) return `backend:${b[1]}`;
  return file.split('/')[0]!;
}

/** What each layer may import (besides itself). */
function allowed(from: string, to: string, toFile: string): boolean {
  if (from === to) return true;
  switch (from) {
    case 'core':
      return false;
    case 'io':
      return to === 'core';
    case 'backends':
    case 'runtime':
      return to === 'core' || to === 'io' || to.startsWith('backend:');
    case 'generated':
      return to === 'runtime' || (to.startsWith('backend:') && toFile.endsWith('/index.ts'));
    case 'generator':
      return to === 'core' || to === 'io';
    case 'examples':
      return toFile === 'generated/index.gen.ts';
    case 'cli':
      return to !== 'test';
    default:
      return from.startsWith('backend:') && (to === 'core' || to === 'io');
  }
}

const edges = new Map<string, string[]>();
const bare = new Map<string, string[]>();
for (const f of files) {
  const rel: string[] = [];
  const pkgs: string[] = [];
  for (const s of specifiers(f)) {
    if (s.startsWith('.')) {
      const t = resolveRelative(f, s);
      if (t) rel.push(t);
    } else pkgs.push(s);
  }
  edges.set(f, rel);
  bare.set(f, pkgs);
}

describe('layout', () => {
  it('finds the sources and their imports', () => {
    expect(files.length).toBeGreaterThan(60);
    expect(edges.get('runtime/backends/mlflow/index.ts')).toContain('runtime/core/errors.ts');
  });

  it('imports flow one way: generated → runtime backends → io → core; the generator uses only core and io', () => {
    const bad: string[] = [];
    for (const [f, targets] of edges) for (const t of targets) if (!allowed(layer(f), layer(t), t)) bad.push(`${f} → ${t}`);
    expect(bad).toEqual([]);
  });

  it('has no import cycles (static or dynamic imports)', () => {
    const cycles: string[] = [];
    const state = new Map<string, 'open' | 'done'>();
    const stack: string[] = [];
    const visit = (f: string) => {
      state.set(f, 'open');
      stack.push(f);
      for (const t of edges.get(f) ?? []) {
        if (state.get(t) === 'open') cycles.push([...stack.slice(stack.indexOf(t)), t].join(' → '));
        else if (!state.has(t)) visit(t);
      }
      stack.pop();
      state.set(f, 'done');
    };
    for (const f of files) if (!state.has(f)) visit(f);
    expect(cycles).toEqual([]);
  });

  it('the SDK (runtime/, generated/) imports only node builtins and its declared dependencies, never the generator toolchain', () => {
    const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { dependencies: Record<string, string> };
    const builtins = new Set(builtinModules);
    const bad: string[] = [];
    for (const [f, specs] of bare) {
      if (!f.startsWith('runtime/') && !f.startsWith('generated/')) continue;
      for (const s of specs) {
        const name = s.startsWith('@') ? s.split('/').slice(0, 2).join('/') : s.split('/')[0]!;
        if (s.startsWith('node:') || builtins.has(name)) continue;
        if (TOOLCHAIN.includes(name) || !(name in pkg.dependencies)) bad.push(`${f}: ${s}`);
      }
    }
    expect(bad).toEqual([]);
  });

  it('every top folder says what it owns', () => {
    for (const dir of ['spec', 'generator', 'generated', 'runtime', 'runtime/core', 'runtime/io', 'runtime/backends', 'cli', 'examples', 'test']) {
      expect(existsSync(join(ROOT, dir, 'README.md')), `${dir}/README.md`).toBe(true);
    }
  });
});

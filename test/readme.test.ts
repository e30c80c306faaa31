// The README's TypeScript examples compile against the real SDK types.
import { readFileSync, writeFileSync, mkdtempSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { spawnSync } from 'node:child_process';
import { expect, it } from 'vitest';

const ROOT = resolve(import.meta.dirname, '..');

it('every ```ts block in README.md type-checks', () => {
  const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
  const blocks = [...readme.matchAll(/```ts\n([\s\S]*?)```/g)].map((m) => m[1]!);
  expect(blocks.length).toBeGreaterThanOrEqual(2);
  const dir = mkdtempSync(join(ROOT, '.check-readme-'));
  try {
    blocks.forEach((code, i) => {
      const body = code.replaceAll("from 'trackspec'", `from '../generated/index.gen.js'`);
      writeFileSync(join(dir, `block${i}.ts`), `declare const pixels: Uint8Array;\nexport {};\n${body}`);
    });
    writeFileSync(
      join(dir, 'tsconfig.json'),
      JSON.stringify({ extends: '../tsconfig.json', compilerOptions: { noEmit: true, noUnusedLocals: false }, include: ['*.ts'] }),
    );
    const r = spawnSync(process.execPath, [join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', join(dir, 'tsconfig.json')], { encoding: 'utf8' });
    expect(r.stdout + r.stderr).toBe('');
    expect(r.status).toBe(0);
  } finally {
    spawnSync('rm', ['-rf', dir]);
  }
}, 60_000);

// The packaged SDK as users import it: build, then import 'trackspec' in a fresh Node process.
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { beforeAll, expect, it } from 'vitest';

const ROOT = resolve(import.meta.dirname, '..');

beforeAll(() => {
  execFileSync('npm', ['run', '--silent', 'build'], { cwd: ROOT, stdio: 'pipe' });
}, 180_000);

it("import('trackspec') and 'trackspec/runtime' work in real ESM, share classes, and load no generator or backend library", () => {
  const dir = mkdtempSync(join(tmpdir(), 'trackspec-pkg-'));
  const probe = join(ROOT, '.probe-package.mjs');
  writeFileSync(
    probe,
    `import { createRequire } from 'node:module';
const sdk = await import('trackspec');
const runtime = await import('trackspec/runtime');
const cache = Object.keys(createRequire(import.meta.url).cache).join('\\n');
const heavy = ['ts-morph', 'json-schema-to-typescript', 'handlebars', 'typescript', 'prettier', 'undici', 'pngjs', 'yaml/'].filter((h) => cache.includes('/node_modules/' + h));
const t = new sdk.TensorBoardTracker({ run_name: 'r', logging_dir: ${JSON.stringify(dir)} });
await t.start();
t.log({ loss: 1 }, 0);
await t.finish();
console.log(JSON.stringify({
  names: ['TensorBoardTracker', 'WandBTracker', 'CometMLTracker', 'AimTracker', 'MLflowTracker', 'GeneralTracker', 'Tracking', 'loadTrackingConfig', 'TrackspecError', 'ConfigError', 'ValidationError', 'BackendError'].filter((n) => typeof sdk[n] !== 'function'),
  shared: sdk.GeneralTracker === runtime.GeneralTracker && sdk.ConfigError === runtime.ConfigError,
  heavy,
}));`,
  );
  try {
    const r = spawnSync(process.execPath, [probe], { cwd: ROOT, encoding: 'utf8' });
    expect(r.stderr).toBe('');
    expect(JSON.parse(r.stdout)).toEqual({ names: [], shared: true, heavy: [] });
    const cli = spawnSync(process.execPath, [join(ROOT, 'dist', 'generator', 'cli.js'), 'validate', join(ROOT, 'test/fixtures/configs/valid.yaml')], { encoding: 'utf8' });
    expect(cli.status).toBe(0);
  } finally {
    spawnSync('rm', ['-f', probe]);
  }
}, 60_000);

it('the trackspec bin is executable and runs', () => {
  const r = spawnSync(join(ROOT, 'dist', 'generator', 'cli.js'), ['--version'], { encoding: 'utf8' });
  expect(r.error).toBeUndefined();
  expect(r.status).toBe(0);
  expect(r.stdout.trim()).toMatch(/^\d+\.\d+\.\d+$/);
});

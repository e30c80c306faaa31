// The package as users install it: `npm pack`, then `npm install` of the tarball into an empty
// project, and the SDK, the bin and `trackspec generate` used from there.
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { ROOT, consumerDir, installTarball, npm, packTarball, type InstalledPackage } from './support/pack.js';

const GENERATOR_TOOLCHAIN = ['ts-morph', '@ts-morph/common', 'typescript', 'prettier', 'lodash', 'handlebars', 'json-schema-to-typescript', 'ajv'];

let pkg: InstalledPackage;

beforeAll(() => {
  pkg = installTarball(packTarball());
}, 300_000);

function bin(args: string[], cwd = pkg.project) {
  return spawnSync(join(pkg.project, 'node_modules', '.bin', 'trackspec'), args, { cwd, encoding: 'utf8', env: { ...process.env, NO_COLOR: '1' } });
}

describe('installing the tarball', () => {
  it('brings no generator toolchain, runs no install script, and stays under 16 MB', () => {
    expect(pkg.installScriptWarnings).toEqual([]);
    for (const name of GENERATOR_TOOLCHAIN) expect(pkg.modules).not.toContain(name);
    expect(pkg.bytes).toBeLessThanOrEqual(16 * 1024 * 1024);
  });

  it("import('trackspec') and 'trackspec/runtime' work in real ESM, share classes, and load no generator or backend library nor heavy builtin (crypto, child_process, sqlite, ...)", () => {
    const dir = consumerDir(pkg, 'probe');
    const probe = join(pkg.project, 'probe.mjs');
    writeFileSync(
      probe,
      `import { createRequire } from 'node:module';
const sdk = await import('trackspec');
const builtins = process.moduleLoadList.filter((m) => /^NativeModule (crypto|child_process|zlib|sqlite|worker_threads|http|https|net|tls)$/.test(m));
const runtime = await import('trackspec/runtime');
const validators = await import('trackspec/validators');
const cache = Object.keys(createRequire(import.meta.url).cache).join('\\n');
const heavy = ['ts-morph', 'json-schema-to-typescript', 'handlebars', 'typescript', 'prettier', 'ajv', 'undici', 'pngjs', 'yaml/'].filter((h) => cache.includes('/node_modules/' + h));
const t = new sdk.TensorBoardTracker({ run_name: 'r', logging_dir: ${JSON.stringify(dir)} });
await t.start();
t.log({ loss: 1 }, 0);
await t.finish();
console.log(JSON.stringify({
  names: ['TensorBoardTracker', 'WandBTracker', 'CometMLTracker', 'AimTracker', 'MLflowTracker', 'GeneralTracker', 'Tracking', 'loadTrackingConfig', 'TrackspecError', 'ConfigError', 'ValidationError', 'BackendError'].filter((n) => typeof sdk[n] !== 'function'),
  shared: sdk.GeneralTracker === runtime.GeneralTracker && sdk.ConfigError === runtime.ConfigError,
  validators: [validators.validateMLflowOptions({ tags: { a: 'b' } }), validators.validateMLflowOptions({ tagz: 1 }), validators.validateTensorBoardOptions({ run_name: '', logging_dir: 'x' })],
  written: (await sdk.readEvents((await import('node:fs')).readdirSync(${JSON.stringify(join(dir, 'r'))}).map((f) => ${JSON.stringify(join(dir, 'r'))} + '/' + f)[0])).events.length,
  heavy,
  builtins,
}));`,
    );
    const r = spawnSync(process.execPath, [probe], { cwd: pkg.project, encoding: 'utf8' });
    expect(r.stderr).toBe('');
    expect(JSON.parse(r.stdout)).toEqual({ names: [], shared: true, validators: [true, false, false], written: 2, heavy: [], builtins: [] });
  }, 60_000);

  it('the trackspec bin runs: --version, validate with located errors and exit codes', () => {
    const v = bin(['--version']);
    expect(v.error).toBeUndefined();
    expect(v.stdout.trim()).toBe((JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }).version);
    expect(bin(['validate', join(ROOT, 'test/fixtures/configs/valid.yaml')]).status).toBe(0);
    const bad = bin(['validate', join(ROOT, 'test/fixtures/configs/invalid.yaml')]);
    expect(bad.status).toBe(1);
    expect(bad.stdout).toMatch(/invalid\.yaml:\d+:\d+ {2}error/);
  });
});

describe('trackspec generate from the installed package', () => {
  function userSpec(): { spec: string; out: string } {
    const fixtures = consumerDir(pkg, 'trackers');
    cpSync(join(ROOT, 'test/fixtures/custom-spec'), join(fixtures, 'spec'), { recursive: true });
    cpSync(join(ROOT, 'test/fixtures/custom-driver'), join(fixtures, 'custom-driver'), { recursive: true });
    const spec = join(fixtures, 'spec', 'echo.json');
    writeFileSync(spec, readFileSync(spec, 'utf8').replace('"../../../spec/meta.schema.json"', '"../../node_modules/trackspec/spec/meta.schema.json"'));
    return { spec: join(fixtures, 'spec'), out: join(fixtures, 'out') };
  }

  it('without the generator toolchain: says what to install, exit 2, writes nothing', () => {
    const { spec, out } = userSpec();
    const r = bin(['generate', '--spec', spec, '--out', out]);
    expect(r.status).toBe(2);
    expect(r.stderr).toContain("trackspec generate needs the generator's toolchain");
    expect(r.stderr).toMatch(/npm install --save-dev ajv@8\.20\.0 handlebars@4\.7\.10 json-schema-to-typescript@16\.0\.0 ts-morph@28\.0\.0/);
    expect(r.stderr).not.toMatch(/at .*\.js:\d+/); // no stack trace
    expect(existsSync(out)).toBe(false);
  });

  it('with the toolchain installed as the message says: a user spec gives typed classes importing trackspec/runtime', () => {
    const peers = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { peerDependencies: Record<string, string> };
    const add = npm(['install', '--prefer-offline', '--save-dev', ...Object.entries(peers.peerDependencies).map(([n, v]) => `${n}@${v}`)], pkg.project);
    expect(add.code, add.out).toBe(0);
    const { spec, out } = userSpec();
    const r = bin(['generate', '--spec', spec, '--out', out]);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(readFileSync(join(out, 'echo.gen.ts'), 'utf8')).toContain("from 'trackspec/runtime'");
    expect(readFileSync(join(out, 'validators.gen.js'), 'utf8')).toContain('from "trackspec/runtime"');
    expect(bin(['generate', '--check', '--spec', spec, '--out', out]).status).toBe(0);
  }, 120_000);
});

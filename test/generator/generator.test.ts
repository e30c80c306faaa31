// The generator: determinism, --check, write-if-changed, spec errors, user spec directories.
import { spawnSync } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it, onTestFinished } from 'vitest';
import { generate } from '../../generator/generate.js';
import { SpecError } from '../../generator/load.js';
import { HEADER_TEXT } from '../../generator/paths.js';
import { ROOT, runCli, tempDir } from '../support/helpers.js';

const SPEC = join(ROOT, 'spec');
const GENERATED = join(ROOT, 'generated');

describe('output', () => {
  it('the committed generated/ is exactly what the spec produces', async () => {
    const r = await generate({ check: true });
    expect({ stale: r.stale, missing: r.missing, extra: r.extra }).toEqual({ stale: [], missing: [], extra: [] });
    expect(r.files).toEqual([
      'README.md', 'aim.gen.ts', 'aim.options.gen.ts', 'comet_ml.gen.ts', 'comet_ml.options.gen.ts', 'config.gen.ts',
      'dvclive.gen.ts', 'dvclive.options.gen.ts', 'index.gen.ts', 'manifest.json', 'mlflow.gen.ts', 'mlflow.options.gen.ts', 'tensorboard.gen.ts',
      'tensorboard.options.gen.ts', 'tracking-config.schema.json', 'trackio.gen.ts', 'trackio.options.gen.ts', 'validators.gen.d.ts', 'validators.gen.js',
      'wandb.gen.ts', 'wandb.options.gen.ts',
    ]);
  });

  it('every generated file starts with the one fixed header (JSON: first $comment member)', () => {
    for (const name of readdirSync(GENERATED)) {
      const text = readFileSync(join(GENERATED, name), 'utf8');
      const first = text.split('\n')[0]!;
      if (name.endsWith('.json')) expect(JSON.parse(text).$comment, name).toBe(HEADER_TEXT);
      else if (name.endsWith('.md')) expect(first, name).toBe(`<!-- ${HEADER_TEXT} -->`);
      else expect(first, name).toBe(`// ${HEADER_TEXT}`);
      expect(text, name).not.toMatch(/\r|[ \t]+\n|\d{4}-\d\d-\d\dT\d\d:/); // LF, no trailing blanks, no timestamps
    }
  });

  it('the manifest records the spec hash, exact emitter versions and file hashes', () => {
    const m = JSON.parse(readFileSync(join(GENERATED, 'manifest.json'), 'utf8'));
    expect(m.specHash).toMatch(/^[0-9a-f]{64}$/);
    const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8'));
    for (const e of ['ajv', 'handlebars', 'json-schema-to-typescript', 'ts-morph']) {
      // The emitters are optional peers of the SDK, pinned exactly, and the repository develops with the same versions.
      expect(m.emitters[e]).toBe(pkg.peerDependencies[e]);
      expect(m.emitters[e]).toBe(pkg.devDependencies[e]);
      expect(pkg.dependencies[e]).toBeUndefined();
    }
    expect(Object.keys(m.files)).toContain('validators.gen.js');
  });

  it('option types have literal unions, no enums, no stray index signatures', () => {
    const wandb = readFileSync(join(GENERATED, 'wandb.options.gen.ts'), 'utf8');
    expect(wandb).toMatch(/mode\?: \("online" \| "offline" \| "disabled"\)/);
    expect(wandb).not.toMatch(/\benum\b/);
    expect(wandb).not.toMatch(/\[k: string\]: unknown/);
  });

  it('is byte-identical across runs (idempotent) and does not rewrite unchanged files', async () => {
    const out = tempDir();
    await generate({ outDir: out });
    const first = Object.fromEntries(readdirSync(out).map((n) => [n, readFileSync(join(out, n), 'utf8')]));
    const old = new Date(2000, 0, 1);
    for (const n of readdirSync(out)) utimesSync(join(out, n), old, old);
    const r = await generate({ outDir: out });
    expect([...r.stale, ...r.missing, ...r.extra]).toEqual([]);
    for (const n of readdirSync(out)) {
      expect(readFileSync(join(out, n), 'utf8')).toBe(first[n]);
      expect(statSync(join(out, n)).mtime.getFullYear()).toBe(2000);
    }
  });
});

describe('--check', () => {
  it('catches stale, missing and extra files, with exit codes', () => {
    // A sibling of generated/, so relative imports in the output are the same.
    const out = mkdtempSync(join(ROOT, '.check-'));
    onTestFinished(() => rmSync(out, { recursive: true, force: true }));
    cpSync(GENERATED, out, { recursive: true });
    expect(runCli(['generate', '--check', '--out', out]).code).toBe(0);
    writeFileSync(join(out, 'mlflow.gen.ts'), readFileSync(join(out, 'mlflow.gen.ts'), 'utf8').replace('experiment_name', 'experiment'));
    rmSync(join(out, 'README.md'));
    writeFileSync(join(out, 'stray.gen.ts'), `// ${HEADER_TEXT}\n`);
    const r = runCli(['generate', '--check', '--out', out]);
    expect(r.code).toBe(1);
    const lines = r.stdout.split('\n');
    expect(lines.some((l) => /^stale +.*mlflow\.gen\.ts$/.test(l))).toBe(true);
    expect(lines.some((l) => /^missing +.*README\.md$/.test(l))).toBe(true);
    expect(lines.some((l) => /^extra +.*stray\.gen\.ts$/.test(l))).toBe(true);
    expect(r.stdout).toContain('run `trackspec generate');
    // generate repairs it and removes the stray generated file
    expect(runCli(['generate', '--out', out]).code).toBe(0);
    expect(runCli(['generate', '--check', '--out', out]).code).toBe(0);
  }, 60_000);

  it('usage errors exit 2', () => {
    const r = runCli(['generate', '--chek']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('usage:');
  });
});

describe('spec validation', () => {
  function brokenSpec(edit: (doc: string) => string): string {
    const dir = tempDir();
    cpSync(SPEC, dir, { recursive: true });
    const p = join(dir, 'backends', 'mlflow.json');
    writeFileSync(p, edit(readFileSync(p, 'utf8')));
    return dir;
  }

  it('reports file:line:col  /pointer  message against the meta-schema', async () => {
    const dir = brokenSpec((s) => s.replace('"main_process_only": true', '"main_process_only": "yes"').replace('"parse": "json"', '"parse": "yaml"'));
    const err = await generate({ specDir: dir, outDir: tempDir(), check: true }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SpecError);
    const issues = (err as SpecError).issues.map((i) => `${i.file.slice(dir.length)}:${i.line}:${i.col}  ${i.pointer}  ${i.message}`);
    expect(issues).toEqual([
      '/backends/mlflow.json:10:24  /main_process_only  must be boolean, got string "yes"',
      expect.stringMatching(/^\/backends\/mlflow\.json:\d+:\d+  \/options\/properties\/tags\/x-env\/0\/parse  must be one of "string", "boolean", "integer", "number", "json", "list"; got "yaml"$/),
    ]);
  });

  it('semantic problems are located too, and the CLI exits 1 writing nothing', () => {
    const dir = brokenSpec((s) => s.replace('"project_name_option": "experiment_name"', '"project_name_option": "experiment"').replace('"default": false', '"default": "no"'));
    const out = tempDir();
    const r = runCli(['generate', '--spec', dir, '--out', out]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/mlflow\.json:\d+:\d+  \/project_name_option  project_name_option "experiment" is not an option of this backend/);
    expect(r.stderr).toMatch(/mlflow\.json:\d+:\d+  \/options\/properties\/nested_run\/default  default "no" does not match the option's own schema/);
    expect(readdirSync(out)).toEqual([]);
  }, 30_000);

  it('unknown keys get a did-you-mean', async () => {
    const dir = brokenSpec((s) => s.replace('"requires_logging_directory"', '"requires_loging_directory"'));
    const err = (await generate({ specDir: dir, outDir: tempDir(), check: true }).catch((e: unknown) => e)) as SpecError;
    expect(err.issues.map((i) => i.message)).toContain('unknown key "requires_loging_directory"; did you mean "requires_logging_directory"?');
  });
});

describe("a user's own spec directory", () => {
  it('a spec for a new backend plus a driver module gives a typed tracker class (snapshots are real .ts files)', async () => {
    const fixture = join(ROOT, 'test', 'fixtures');
    const out = tempDir();
    // Generated into a temp dir next to the committed snapshot's location so relative imports match.
    const r = await generate({ specDir: join(fixture, 'custom-spec'), outDir: join(fixture, 'custom-out'), check: true });
    expect({ stale: r.stale, missing: r.missing, extra: r.extra }).toEqual({ stale: [], missing: [], extra: [] });
    expect(r.model!.backends.map((b) => [b.name, b.className, b.driverImport])).toEqual([['echo', 'EchoTracker', '../custom-driver/echo-driver.js']]);
    // Outside the package, generated code imports the runtime by package name.
    const elsewhere = await generate({ specDir: join(fixture, 'custom-spec'), outDir: out });
    expect(readFileSync(join(out, 'echo.gen.ts'), 'utf8')).toContain("from 'trackspec/runtime'");
    expect(elsewhere.files).toContain('echo.gen.ts');
  });
});

describe('generated validators in real Node ESM', () => {
  it('import and validate in a node ESM process (no require shim; ajv itself is not needed)', () => {
    // The runtime it imports is TypeScript here, hence tsx; test/package.test.ts runs the built copy in plain node.
    expect(readFileSync(join(GENERATED, 'validators.gen.js'), 'utf8')).not.toMatch(/\brequire\(|from "ajv/);
    const dir = tempDir();
    const script = join(dir, 'check.mjs');
    writeFileSync(
      script,
      `import { validateMLflowOptions, validateTrackingConfig, validateWandBOptions } from ${JSON.stringify(join(GENERATED, 'validators.gen.js'))};
const out = {
  ok: validateMLflowOptions({ experiment_name: 'x', tags: { a: 'b' } }),
  bad: validateMLflowOptions({ nested_run: 'yes' }),
  keyword: validateMLflowOptions.errors?.[0]?.keyword,
  enumBad: validateWandBOptions({ mode: 'shared' }),
  config: validateTrackingConfig({ project_name: 'p', log_with: ['mlflow'], init_kwargs: { mlflow: { nested_run: true } } }),
  unique: validateTrackingConfig({ project_name: 'p', log_with: ['mlflow', 'mlflow'] }),
};
console.log(JSON.stringify(out));`,
    );
    const r = spawnSync(process.execPath, ['--import', 'tsx', script], { encoding: 'utf8', cwd: ROOT });
    expect(r.stderr).toBe('');
    expect(JSON.parse(r.stdout)).toEqual({ ok: true, bad: false, keyword: 'type', enumBad: false, config: true, unique: false });
  });
});

describe('output cache (CLI)', () => {
  it('a second --check is answered from the cache, and still catches a stale file', () => {
    const out = mkdtempSync(join(ROOT, '.check-'));
    onTestFinished(() => rmSync(out, { recursive: true, force: true }));
    expect(runCli(['generate', '--out', out]).code).toBe(0);
    const warm = runCli(['generate', '--check', '--out', out]);
    expect(warm.code).toBe(0);
    writeFileSync(join(out, 'aim.gen.ts'), '// edited by hand\n');
    writeFileSync(join(out, 'new.gen.ts'), '');
    const r = runCli(['generate', '--check', '--out', out]);
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/^stale +.*aim\.gen\.ts$/m);
    expect(r.stdout).toMatch(/^extra +.*new\.gen\.ts$/m);
    // running the emitters gives the same answer as the cache
    const noCache = runCli(['generate', '--check', '--no-cache', '--out', out]);
    expect(noCache.stdout).toBe(r.stdout);
  }, 60_000);
});

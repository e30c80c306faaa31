/**
 * The pipeline: load → validate → model → emit → format (in-process) → compare/write.
 * Output is byte-identical across runs and machines: sorted inputs, LF, no timestamps, pinned emitters.
 */
import { createHash } from 'node:crypto';
import { mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname, extname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { walkFiles } from '../runtime/io/fs-util.js';
import { loadSpec } from './load.js';
import { buildModel, type ModelIR } from './model.js';
import { HEADER_TEXT, packageRoot } from './paths.js';
import { trackingConfigSchema } from './emit/config-schema.js';
import { emitConfigType, emitOptionTypes } from './emit/types.js';
import { emitValidators, type AjvCtor, type StandaloneFn } from './emit/validators.js';
import { TS_STAGE_WORKER, type TsStageInput, type TsStageOutput } from './emit/typescript-stage.js';
import { emitDocs } from './emit/docs.js';

export interface GenerateOptions {
  /** Spec directory (default: this package's spec/). */
  specDir?: string;
  /** Output directory (default: this package's generated/). */
  outDir?: string;
  /** Compare only; write nothing. */
  check?: boolean;
  /**
   * Use the output cache (node_modules/.cache/trackspec): when the spec, the generator's own code,
   * the emitter versions and the output location are byte-identical to a previous run, the
   * expected output hashes are known and the emitters need not be loaded. The CLI enables it.
   */
  cache?: boolean;
}

export interface GenerateResult {
  outDir: string;
  /** Every file the spec produces, sorted. */
  files: string[];
  /** Files whose content on disk differs (check) or was rewritten (generate). */
  stale: string[];
  /** Files absent on disk (check) or created (generate). */
  missing: string[];
  /** Files on disk the spec does not produce (check) or that were removed (generate). */
  extra: string[];
  /** The model (absent when the result came from the output cache). */
  model?: ModelIR;
  /** True when the result was decided from the output cache without running the emitters. */
  cached: boolean;
  /** Milliseconds per stage. */
  timings: Record<string, number>;
}

/** The docs templates: generator/templates in the sources, dist/generator/templates once built. */
const TEMPLATES = fileURLToPath(new URL('./templates/', import.meta.url));

const EMITTERS = ['ajv', 'handlebars', 'json-schema-to-typescript', 'ts-morph'] as const;

function sortKeys(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(sortKeys);
  if (v === null || typeof v !== 'object') return v;
  return Object.fromEntries(Object.keys(v).sort().map((k) => [k, sortKeys((v as Record<string, unknown>)[k])]));
}

function json(v: unknown): string {
  return `${JSON.stringify(v, null, 2)}\n`;
}

/** Everything the output is a function of, hashed: spec files, generator code, emitter versions, output location. */
async function inputsKey(root: string, specDir: string, outDir: string, versions: Record<string, string>): Promise<string> {
  const hash = createHash('sha256').update('trackspec-generate-v1\0');
  const here = dirname(fileURLToPath(import.meta.url));
  const files = [
    ...(await walkFiles(specDir, (n) => n.endsWith('.json'))),
    join(root, 'spec', 'base.json'),
    join(root, 'spec', 'meta.schema.json'),
    ...(await walkFiles(here, (n) => /\.(ts|js|mjs|hbs)$/.test(n) && !n.endsWith('.d.ts'))),
    ...(await walkFiles(TEMPLATES)),
  ];
  for (const f of files) hash.update(f).update('\0').update(await readFile(f)).update('\0');
  hash.update(JSON.stringify(versions)).update(relative(root, outDir));
  return hash.digest('hex');
}

interface CacheFile {
  entries: { key: string; files: Record<string, string> }[];
}

function cachePath(root: string): string {
  return join(root, 'node_modules', '.cache', 'trackspec', 'generate.json');
}

async function readCache(root: string): Promise<CacheFile> {
  try {
    return JSON.parse(await readFile(cachePath(root), 'utf8')) as CacheFile;
  } catch {
    return { entries: [] };
  }
}

async function diskState(outDir: string, expected: Record<string, string>) {
  const existing = (await readdir(outDir, { withFileTypes: true }).catch(() => [])).filter((d) => d.isFile()).map((d) => d.name);
  const stale: string[] = [];
  const missing: string[] = [];
  for (const name of Object.keys(expected).sort()) {
    const text = await readFile(join(outDir, name)).catch(() => undefined);
    if (text === undefined) missing.push(name);
    else if (createHash('sha256').update(text).digest('hex') !== expected[name]) stale.push(name);
  }
  const extra = existing.filter((n) => !(n in expected)).sort();
  return { stale, missing, extra };
}

function emitterVersions(root: string): Record<string, string> {
  const require = createRequire(join(root, 'package.json'));
  const versions: Record<string, string> = {};
  for (const e of EMITTERS) versions[e] = (require(`${e}/package.json`) as { version: string }).version;
  return versions;
}

interface TsStage {
  run(input: TsStageInput): Promise<TsStageOutput>;
  stop(): void;
}

/** Start the worker of emit/typescript-stage.ts (it begins loading ts-morph at once). */
function startTsStage(): TsStage {
  const stageUrl = new URL(`./emit/typescript-stage${extname(fileURLToPath(import.meta.url))}`, import.meta.url);
  // From the TypeScript sources (tsx, vitest) the worker registers tsx before loading the stage.
  const worker = stageUrl.pathname.endsWith('.ts')
    ? new Worker(
        `import(${JSON.stringify(import.meta.resolve('tsx/esm/api'))}).then((tsx) => { tsx.register(); return import(${JSON.stringify(stageUrl.href)}); });`,
        { eval: true, workerData: TS_STAGE_WORKER },
      )
    : new Worker(stageUrl, { workerData: TS_STAGE_WORKER });
  worker.unref();
  const failed = new Promise<never>((_, reject) => {
    worker.once('error', reject);
    worker.once('exit', (code) => reject(new Error(`the ts-morph worker exited (code ${code}) before answering`)));
  });
  failed.catch(() => undefined);
  return {
    async run(input) {
      const answer = new Promise<{ ok?: TsStageOutput; error?: string }>((res) => worker.once('message', res));
      worker.postMessage(input);
      const reply = await Promise.race([answer, failed]);
      if (reply.error !== undefined) throw new Error(`ts-morph stage failed: ${reply.error}`);
      return reply.ok!;
    },
    stop() {
      void worker.terminate();
    },
  };
}

export async function generate(options: GenerateOptions = {}): Promise<GenerateResult> {
  const timings: Record<string, number> = {};
  let t0 = performance.now();
  const lap = (name: string) => {
    const now = performance.now();
    timings[name] = Math.round((now - t0) * 10) / 10;
    t0 = now;
  };
  const root = packageRoot();
  const specDir = resolve(options.specDir ?? join(root, 'spec'));
  const outDir = resolve(options.outDir ?? join(root, 'generated'));

  let key: string | undefined;
  if (options.cache) {
    key = await inputsKey(root, specDir, outDir, emitterVersions(root));
    const hit = (await readCache(root)).entries.find((e) => e.key === key);
    if (hit) {
      const state = await diskState(outDir, hit.files);
      lap('cache');
      const current = state.stale.length + state.missing.length + state.extra.length === 0;
      if (options.check || current) {
        return { outDir, files: Object.keys(hit.files).sort(), ...state, cached: true, timings };
      }
    }
  }

  // ts-morph loads in a worker thread while this thread loads the spec and runs the other emitters.
  const tsStage = startTsStage();
  try {
    return await emitAndCompare({ root, specDir, outDir, check: options.check ?? false, key, lap, timings, tsStage });
  } finally {
    tsStage.stop();
  }
}

async function emitAndCompare(ctx: {
  root: string;
  specDir: string;
  outDir: string;
  check: boolean;
  key: string | undefined;
  lap: (name: string) => void;
  timings: Record<string, number>;
  tsStage: TsStage;
}): Promise<GenerateResult> {
  const { root, specDir, outDir, key, lap, timings } = ctx;
  // The emitters are CommonJS: require() them. import() of a CommonJS module first scans its source
  // for named exports (cjs-module-lexer).
  const requireEmitter = createRequire(import.meta.url);
  const template = readFile(join(TEMPLATES, 'README.md.hbs'), 'utf8');
  const spec = await loadSpec(specDir);
  lap('load+validate');
  const model = buildModel(spec, outDir);
  lap('model');
  const jstt = requireEmitter('json-schema-to-typescript') as typeof import('json-schema-to-typescript');
  const AjvClass = (requireEmitter('ajv') as { Ajv: AjvCtor }).Ajv;
  const standaloneModule = requireEmitter('ajv/dist/standalone') as { default: StandaloneFn };
  const hb = requireEmitter('handlebars') as typeof import('handlebars');
  lap('import emitters');

  const out = new Map<string, string>();
  const configSchema = trackingConfigSchema(model);
  for (const [name, text] of await emitOptionTypes(model, jstt.compile)) out.set(name, text);
  out.set('config.gen.ts', await emitConfigType(model, configSchema, jstt.compile));
  lap('emit types');
  const validators = emitValidators(model, configSchema, AjvClass, standaloneModule.default);
  out.set('validators.gen.d.ts', validators.dts);
  // Every TypeScript output so far goes to the ts-morph stage, which adds the classes and formats all.
  const tsDone = ctx.tsStage.run({ model, texts: [...out] });
  out.set('validators.gen.js', validators.js);
  lap('emit validators');
  out.set('README.md', emitDocs(model, hb, await template));
  out.set('tracking-config.schema.json', json(configSchema));
  // ajv's standalone output is printed canonically already (and large): like the other non-TypeScript
  // outputs it only gets the whitespace rules.
  for (const [name, text] of out) {
    if (!name.endsWith('.ts')) out.set(name, text.replace(/\r\n/g, '\n').replace(/[ \t]+$/gm, '').replace(/\n*$/, '\n'));
  }
  lap('emit docs+schema');
  const { files: tsFiles, typescriptVersion } = await tsDone;
  for (const [name, text] of tsFiles) out.set(name, text);
  lap('emit classes+format (ts-morph worker)');

  const require = createRequire(join(root, 'package.json'));
  const versions = emitterVersions(root);
  versions['typescript (bundled by ts-morph)'] = typescriptVersion;
  const fileHashes: Record<string, string> = {};
  for (const name of [...out.keys()].sort()) fileHashes[name] = createHash('sha256').update(out.get(name)!).digest('hex');
  out.set(
    'manifest.json',
    json({
      $comment: HEADER_TEXT,
      ...(sortKeys({
        specHash: model.specHash,
        generator: { trackspec: (require('./package.json') as { version: string }).version },
        emitters: versions,
        files: fileHashes,
      }) as object),
    }),
  );

  const names = [...out.keys()].sort();
  let existing: string[] = [];
  try {
    existing = (await readdir(outDir, { withFileTypes: true })).filter((d) => d.isFile()).map((d) => d.name);
  } catch {
    existing = [];
  }
  const stale: string[] = [];
  const missing: string[] = [];
  for (const name of names) {
    let current: string | undefined;
    try {
      current = await readFile(join(outDir, name), 'utf8');
    } catch {
      current = undefined;
    }
    if (current === undefined) missing.push(name);
    else if (current !== out.get(name)) stale.push(name);
  }
  const extra = existing.filter((n) => !out.has(n)).sort();
  lap('compare');

  if (!ctx.check) {
    await mkdir(outDir, { recursive: true });
    for (const name of [...stale, ...missing]) await writeFile(join(outDir, name), out.get(name)!);
    for (const name of extra) {
      const text = await readFile(join(outDir, name), 'utf8').catch(() => '');
      if (text.includes(HEADER_TEXT)) await rm(join(outDir, name));
    }
    lap('write');
  }
  if (key) {
    const hashes = Object.fromEntries(names.map((n) => [n, createHash('sha256').update(out.get(n)!).digest('hex')]));
    const cache = await readCache(root);
    cache.entries = [{ key, files: hashes }, ...cache.entries.filter((e) => e.key !== key)].slice(0, 8);
    await mkdir(dirname(cachePath(root)), { recursive: true }).catch(() => undefined);
    await writeFile(cachePath(root), JSON.stringify(cache)).catch(() => undefined);
  }
  return { outDir, files: names, stale, missing, extra, model, cached: false, timings };
}

#!/usr/bin/env node
/**
 * The `trackspec` command line: a thin front over the library.
 *   trackspec generate [--spec DIR] [--out DIR] [--check]
 *   trackspec validate FILE... [--format text|json|github]
 * Heavy modules (the generator's emitters, the SDK) are loaded only by the command that needs them.
 */
import { readFile } from 'node:fs/promises';
import { relative } from 'node:path';
import { parseArgs } from 'node:util';

const USAGE = `usage:
  trackspec generate [--spec DIR] [--out DIR] [--check] [--no-cache]
      Regenerate the SDK from a spec directory (default: this package's spec/ → generated/).
      --check writes nothing: exit 1 listing stale, missing and extra files, 0 when current.
      --no-cache always runs the emitters (the cache in node_modules/.cache/trackspec only skips
      them when the spec, the generator's code and the emitter versions are byte-identical).
  trackspec validate FILE... [--format text|json|github]
      Check tracker config files (YAML or JSON). Exit 0 valid, 1 invalid, 2 usage or unreadable file.
  trackspec sync [DIR]
      Upload records spooled while a server was unreachable or logged offline: MLflow spools
      (default DIR: $TRACKSPEC_SPOOL_DIR, else $XDG_STATE_HOME/trackspec/spool, else
      ~/.local/state/trackspec/spool: MLflow and Aim), Comet offline directories (e.g.
      .cometml-runs) and W&B offline runs. Resumable.
      Exit 0 when everything was uploaded, 1 when a spool could not be.
  trackspec demo [--logdir DIR] [--mlruns DIR | --no-mlflow] [--steps N] [--seed N]
      Train a small model on synthetic data and log it to TensorBoard (default ./runs) and to an
      MLflow file store (default ./mlruns).
  trackspec --help | --version`;

class UsageError extends Error {}

function color(code: string, s: string, stream: NodeJS.WriteStream): string {
  if (process.env.NO_COLOR !== undefined && process.env.NO_COLOR !== '') return s;
  if (!stream.isTTY) return s;
  return `\u001b[${code}m${s}\u001b[0m`;
}

async function cmdGenerate(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: { spec: { type: 'string' }, out: { type: 'string' }, check: { type: 'boolean', default: false }, 'no-cache': { type: 'boolean', default: false } },
    allowPositionals: false,
  });
  const [{ generate }, { SpecError, formatSpecIssue }] = await Promise.all([import('./generate.js'), import('./load.js')]);
  let result;
  try {
    result = await generate({ specDir: values.spec, outDir: values.out, check: values.check, cache: !values['no-cache'] });
  } catch (e) {
    if (e instanceof SpecError) {
      for (const i of e.issues) process.stderr.write(`${formatSpecIssue(i)}\n`);
      process.stderr.write(`trackspec generate: the spec has ${e.issues.length} problem(s); nothing was written\n`);
      return 1;
    }
    throw e;
  }
  const out = relative(process.cwd(), result.outDir) || '.';
  if (values.check) {
    const problems = [
      ...result.stale.map((f) => `stale    ${out}/${f}`),
      ...result.missing.map((f) => `missing  ${out}/${f}`),
      ...result.extra.map((f) => `extra    ${out}/${f}`),
    ];
    if (problems.length === 0) {
      process.stdout.write(`${out}/ is up to date with the spec (${result.files.length} files)\n`);
      return 0;
    }
    for (const p of problems) process.stdout.write(`${p}\n`);
    process.stdout.write(`${out}/ is not what the spec produces (${problems.length} file(s)); run \`trackspec generate${values.spec ? ` --spec ${values.spec}` : ''}${values.out ? ` --out ${values.out}` : ''}\` (npm run generate) and commit the result\n`);
    return 1;
  }
  const changed = result.stale.length + result.missing.length + result.extra.length;
  process.stdout.write(
    changed === 0
      ? `${out}/ already up to date (${result.files.length} files)\n`
      : `${out}/: ${result.missing.length} created, ${result.stale.length} updated, ${result.extra.length} removed (${result.files.length} files)\n`,
  );
  return 0;
}

async function cmdValidate(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    options: { format: { type: 'string', default: 'text' } },
    allowPositionals: true,
  });
  const format = values.format!;
  if (!['text', 'json', 'github'].includes(format)) throw new UsageError(`unknown --format ${JSON.stringify(format)}; use text, json or github`);
  if (positionals.length === 0) throw new UsageError('validate needs at least one FILE');
  const [{ checkConfigText }, sdk] = await Promise.all([import('../runtime/config-file.js'), import('../generated/index.gen.js')]);
  const schema = await sdk.loadTrackingConfigSchema();
  type Row = { file: string; line: number; col: number; severity: string; code: string; pointer: string; message: string };
  const rows: Row[] = [];
  let unreadable = false;
  for (const file of positionals) {
    let text: string;
    try {
      text = await readFile(file, 'utf8');
    } catch (e) {
      process.stderr.write(`trackspec validate: cannot read ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}\n`);
      unreadable = true;
      continue;
    }
    const result = await checkConfigText(file, text, sdk.validateTrackingConfig, schema);
    rows.push(...result.issues);
  }
  if (format === 'json') {
    process.stdout.write(`${JSON.stringify(rows.map((r) => ({ file: r.file, line: r.line, col: r.col, severity: r.severity, code: r.code, pointer: r.pointer, message: r.message })), null, 2)}\n`);
  } else if (format === 'github') {
    const esc = (s: string) => s.replace(/%/g, '%25').replace(/\r/g, '%0D').replace(/\n/g, '%0A');
    const escProp = (s: string) => esc(s).replace(/:/g, '%3A').replace(/,/g, '%2C');
    for (const r of rows) process.stdout.write(`::error file=${escProp(r.file)},line=${r.line},col=${r.col},title=${escProp(r.code)}::${esc(`${r.pointer || '/'} ${r.message}`)}\n`);
  } else {
    for (const r of rows) {
      process.stdout.write(`${r.file}:${r.line}:${r.col}  ${color('31', 'error', process.stdout)}  ${r.pointer || '/'}  ${r.message}\n`);
    }
    const files = positionals.length;
    if (rows.length === 0 && !unreadable) process.stderr.write(`${files} file(s) valid\n`);
    else if (rows.length > 0) process.stderr.write(`${rows.length} problem(s) in ${new Set(rows.map((r) => r.file)).size} of ${files} file(s)\n`);
  }
  if (unreadable) return 2;
  return rows.length > 0 ? 1 : 0;
}

async function cmdSync(args: string[]): Promise<number> {
  const { positionals } = parseArgs({ args, options: {}, allowPositionals: true });
  if (positionals.length > 1) throw new UsageError('sync takes at most one DIR');
  const [{ syncAll }, { defaultSpoolDir }] = await Promise.all([import('../runtime/sync.js'), import('../runtime/spool.js')]);
  const dir = positionals[0] ?? defaultSpoolDir();
  const summary = await syncAll(dir);
  process.stdout.write(
    summary.spools === 0
      ? `nothing to upload in ${dir}\n`
      : `${summary.spools} spool(s): ${summary.sent} record(s) uploaded, ${summary.duplicates} already on the server skipped, ${summary.failed.length} spool(s) failed\n`,
  );
  return summary.failed.length > 0 ? 1 : 0;
}

async function cmdDemo(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: { logdir: { type: 'string' }, mlruns: { type: 'string' }, 'no-mlflow': { type: 'boolean', default: false }, steps: { type: 'string' }, seed: { type: 'string' } },
    allowPositionals: false,
  });
  const num = (name: string, v: string | undefined) => {
    if (v === undefined) return undefined;
    if (!/^\d+$/.test(v)) throw new UsageError(`--${name} must be a non-negative integer, got ${JSON.stringify(v)}`);
    return Number(v);
  };
  const { runDemo } = await import('./demo.js');
  await runDemo({
    logdir: values.logdir,
    mlruns: values['no-mlflow'] ? null : values.mlruns,
    steps: num('steps', values.steps),
    seed: num('seed', values.seed),
  });
  return 0;
}

export async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  try {
    switch (command) {
      case 'generate':
        return await cmdGenerate(rest);
      case 'validate':
        return await cmdValidate(rest);
      case 'demo':
        return await cmdDemo(rest);
      case 'sync':
        return await cmdSync(rest);
      case '--version':
      case '-v': {
        const pkg = JSON.parse(await readFile(new URL('../../package.json', import.meta.url), 'utf8').catch(() => readFile(new URL('../package.json', import.meta.url), 'utf8'))) as { version: string };
        process.stdout.write(`${pkg.version}\n`);
        return 0;
      }
      case undefined:
      case '--help':
      case '-h':
      case 'help':
        process.stdout.write(`${USAGE}\n`);
        return command === undefined ? 2 : 0;
      default:
        throw new UsageError(`unknown command ${JSON.stringify(command)}`);
    }
  } catch (e) {
    if (e instanceof UsageError || (e as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) {
      process.stderr.write(`trackspec: ${(e as Error).message}\n${USAGE}\n`);
      return 2;
    }
    throw e;
  }
}

const invokedDirectly = process.argv[1] !== undefined && import.meta.url === (await import('node:url')).pathToFileURL((await import('node:fs')).realpathSync(process.argv[1])).href;
if (invokedDirectly) {
  main(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
    },
    (e: unknown) => {
      process.stderr.write(`trackspec: internal error: ${(e as Error)?.stack ?? String(e)}\n`);
      process.exitCode = 2;
    },
  );
}

/** `trackspec generate`: run the generator (spec → generated/), or with --check report stale output. */
import { createRequire } from 'node:module';
import { join, relative } from 'node:path';
import { parseArgs } from 'node:util';
import { packageRoot } from '../../generator/paths.js';

/**
 * The generator's toolchain is an optional peer of the SDK (logging runs does not need it). When a
 * piece is missing, say which and how to install it, with the exact versions the output is pinned to.
 */
export function missingToolchain(root = packageRoot()): string | undefined {
  const pkg = createRequire(join(root, 'package.json'))('./package.json') as { peerDependencies?: Record<string, string> };
  const peers = Object.entries(pkg.peerDependencies ?? {});
  const resolveFrom = createRequire(join(root, 'package.json'));
  const missing = peers.filter(([name]) => {
    try {
      resolveFrom.resolve(`${name}/package.json`);
      return false;
    } catch {
      return true;
    }
  });
  if (missing.length === 0) return undefined;
  return (
    `trackspec generate needs the generator's toolchain, which installing the SDK does not bring; missing: ${missing.map(([n]) => n).join(', ')}.\n` +
    `Install it next to trackspec (the versions are pinned so that generated files are byte-stable):\n` +
    `  npm install --save-dev ${peers.map(([n, v]) => `${n}@${v}`).join(' ')}\n`
  );
}

export async function cmdGenerate(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: { spec: { type: 'string' }, out: { type: 'string' }, check: { type: 'boolean', default: false }, 'no-cache': { type: 'boolean', default: false } },
    allowPositionals: false,
  });
  const missing = missingToolchain();
  if (missing) {
    process.stderr.write(missing);
    return 2;
  }
  const [{ generate }, { SpecError, formatSpecIssue }] = await Promise.all([import('../../generator/generate.js'), import('../../generator/load.js')]);
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

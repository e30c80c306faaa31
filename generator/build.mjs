// Build after `tsc -p tsconfig.build.json` (which emits dist/ and the .d.ts files):
// 1. copy the generated files tsc does not emit (ajv validators, their typings, JSON) and the
//    generator's templates into dist/;
// 2. bundle the SDK entry points ('trackspec' and 'trackspec/runtime', sharing one chunk so class
//    identity is the same through both) so importing the SDK reads a few files instead of ~40.
import { chmodSync, copyFileSync, mkdirSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';


const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const copyDir = (from, to, filter) => {
  mkdirSync(to, { recursive: true });
  for (const name of readdirSync(from)) if (filter(name)) copyFileSync(join(from, name), join(to, name));
};
copyDir(join(root, 'generated'), join(root, 'dist', 'generated'), (n) => /\.(js|d\.ts|json)$/.test(n));
copyDir(join(root, 'generator', 'templates'), join(root, 'dist', 'generator', 'templates'), () => true);
copyDir(join(root, 'runtime', 'tensorboard'), join(root, 'dist', 'runtime', 'tensorboard'), (n) => n.endsWith('.proto'));
copyDir(join(root, 'runtime', 'wandb'), join(root, 'dist', 'runtime', 'wandb'), (n) => n.endsWith('.proto'));

rmSync(join(root, 'dist', 'bundle'), { recursive: true, force: true });
await build({
  entryPoints: { trackspec: join(root, 'generated', 'index.gen.ts'), runtime: join(root, 'runtime', 'index.ts') },
  outdir: join(root, 'dist', 'bundle'),
  bundle: true,
  splitting: true,
  format: 'esm',
  platform: 'node',
  target: 'node20',
  // Every dependency stays external except ajv, of which the SDK only uses two tiny standalone
  // helpers: loading them through the CommonJS loader costs more than the rest of the SDK.
  external: Object.keys(JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')).dependencies).filter((d) => d !== 'ajv'),
  chunkNames: 'shared-[hash]',
  logLevel: 'warning',
});
// The SDK reads its config schema, and the W&B record schema, next to itself.
copyFileSync(join(root, 'generated', 'tracking-config.schema.json'), join(root, 'dist', 'bundle', 'tracking-config.schema.json'));
copyFileSync(join(root, 'runtime', 'wandb', 'wandb.proto'), join(root, 'dist', 'bundle', 'wandb.proto'));
// The `trackspec` bin must be executable (tsc writes files without the x bit).
chmodSync(join(root, 'dist', 'generator', 'cli.js'), 0o755);

// Build after `tsc -p tsconfig.build.json` (which emits dist/ and the .d.ts files):
// 1. copy the generated files tsc does not emit (ajv validators, their typings, JSON) and the
//    generator's templates into dist/;
// 2. bundle the SDK entry points ('trackspec', 'trackspec/runtime' and 'trackspec/validators', sharing
//    chunks so class identity is the same through all of them) so importing the SDK reads a few files
//    instead of ~40.
import { copyFileSync, mkdirSync, readFileSync, readdirSync, rmSync } from 'node:fs';
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
copyDir(join(root, 'runtime', 'backends', 'wandb'), join(root, 'dist', 'runtime', 'backends', 'wandb'), (n) => n.endsWith('.proto'));

rmSync(join(root, 'dist', 'bundle'), { recursive: true, force: true });
await build({
  entryPoints: {
    trackspec: join(root, 'generated', 'index.gen.ts'),
    runtime: join(root, 'runtime', 'index.ts'),
    validators: join(root, 'generated', 'validators.gen.js'),
  },
  outdir: join(root, 'dist', 'bundle'),
  bundle: true,
  splitting: true,
  format: 'esm',
  platform: 'node',
  target: 'node20',
  // Every dependency stays external (installed with the SDK, loaded on first use).
  external: Object.keys(JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')).dependencies),
  chunkNames: 'shared-[hash]',
  logLevel: 'warning',
});
// The SDK reads its config schema, and the W&B record schema, next to itself.
copyFileSync(join(root, 'generated', 'tracking-config.schema.json'), join(root, 'dist', 'bundle', 'tracking-config.schema.json'));
copyFileSync(join(root, 'runtime', 'backends', 'wandb', 'wandb.proto'), join(root, 'dist', 'bundle', 'wandb.proto'));

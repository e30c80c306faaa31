// Build after `tsc -p tsconfig.build.json` (which emits dist/ and the .d.ts files):
// 1. copy the generated files tsc does not emit (ajv validators, their typings, JSON) and the
//    generator's templates into dist/;
// 2. bundle the SDK entry points ('trackspec' and 'trackspec/runtime', sharing one chunk so class
//    identity is the same through both) so importing the SDK reads a few files instead of ~40.
import { copyFileSync, mkdirSync, readdirSync } from 'node:fs';
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

await build({
  entryPoints: { trackspec: join(root, 'generated', 'index.gen.ts'), runtime: join(root, 'runtime', 'index.ts') },
  outdir: join(root, 'dist', 'bundle'),
  bundle: true,
  splitting: true,
  format: 'esm',
  platform: 'node',
  target: 'node20',
  // Runtime dependencies stay external, except ajv's two tiny standalone helpers: loading them
  // through the CommonJS loader costs more than the rest of the SDK.
  external: ['yaml', 'pngjs', '@node-rs/crc32', '@aws-crypto/crc32c', 'ts-morph', 'json-schema-to-typescript', 'handlebars'],
  chunkNames: 'shared-[hash]',
  logLevel: 'warning',
});
// The SDK reads its config schema next to itself.
copyFileSync(join(root, 'generated', 'tracking-config.schema.json'), join(root, 'dist', 'bundle', 'tracking-config.schema.json'));

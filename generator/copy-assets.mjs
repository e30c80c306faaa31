// Build step after tsc: copy the generated files tsc does not emit (ajv validators, their typings,
// JSON schema, manifest) next to the compiled SDK in dist/generated/.
import { copyFileSync, mkdirSync, readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const from = join(root, 'generated');
const to = join(root, 'dist', 'generated');
mkdirSync(to, { recursive: true });
for (const name of readdirSync(from)) {
  if (/\.(js|d\.ts|json)$/.test(name)) copyFileSync(join(from, name), join(to, name));
}
mkdirSync(join(root, 'dist', 'generator', 'templates'), { recursive: true });
for (const name of readdirSync(join(root, 'generator', 'templates'))) {
  copyFileSync(join(root, 'generator', 'templates', name), join(root, 'dist', 'generator', 'templates', name));
}

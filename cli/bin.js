#!/usr/bin/env node
// The `trackspec` executable. An installed package runs the compiled CLI (dist/cli/main.js). A source
// checkout (cli/main.ts beside this file; the published package has no .ts sources) runs the
// TypeScript sources through tsx, so the repository's commands work right after `npm ci`, with no
// build step and never from a stale build.
import { existsSync } from 'node:fs';

const source = new URL('./main.ts', import.meta.url);
let cli;
if (existsSync(source)) {
  const { register } = await import('tsx/esm/api');
  register();
  cli = await import(source.href);
} else {
  cli = await import(new URL('../dist/cli/main.js', import.meta.url).href);
}
cli.run(process.argv.slice(2));

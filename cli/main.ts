#!/usr/bin/env node
/**
 * The `trackspec` command line: a thin front over the library, one module per command in
 * commands/. Each command loads what it needs when it runs (the generator's emitters only for
 * `generate`, the SDK only for the commands that use it), so `trackspec --help` stays instant.
 */
import { readFile } from 'node:fs/promises';
import { USAGE, UsageError } from './usage.js';

const COMMANDS: Record<string, () => Promise<(args: string[]) => Promise<number>>> = {
  generate: async () => (await import('./commands/generate.js')).cmdGenerate,
  validate: async () => (await import('./commands/validate.js')).cmdValidate,
  sync: async () => (await import('./commands/sync.js')).cmdSync,
  demo: async () => (await import('./commands/demo.js')).cmdDemo,
};

export async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  try {
    if (command !== undefined && Object.hasOwn(COMMANDS, command)) return await (await COMMANDS[command]!())(rest);
    switch (command) {
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
if (invokedDirectly) run(process.argv.slice(2));

/** Run the CLI as a process: set the exit code; an unexpected error is an internal error (exit 2). */
export function run(argv: string[]): void {
  main(argv).then(
    (code) => {
      process.exitCode = code;
    },
    (e: unknown) => {
      process.stderr.write(`trackspec: internal error: ${(e as Error)?.stack ?? String(e)}\n`);
      process.exitCode = 2;
    },
  );
}

/**
 * The ts-morph stage: the tracker classes, then one formatter pass over every TypeScript output.
 * Loading ts-morph (with its bundled TypeScript compiler) is the largest single cost of a cold
 * `trackspec generate`, so generate.ts runs this stage in a worker thread that starts loading
 * ts-morph at once, while the main thread loads the spec and runs the other emitters.
 */
import { createRequire } from 'node:module';
import { parentPort, workerData } from 'node:worker_threads';
import type { ModelIR } from '../model.js';
import { TS_HEADER } from '../paths.js';
import { emitClasses } from './classes.js';

type TsMorph = typeof import('ts-morph');

export interface TsStageInput {
  model: ModelIR;
  /** TypeScript outputs of the other emitters, to format with the classes. */
  texts: [string, string][];
}

export interface TsStageOutput {
  /** Every TypeScript output, formatted: the inputs' and the classes'. */
  files: [string, string][];
  typescriptVersion: string;
}

/** Marks a worker started for this stage (generate.ts passes it as workerData). */
export const TS_STAGE_WORKER = 'trackspec-ts-stage';

export function runTsStage(tsMorph: TsMorph, input: TsStageInput): TsStageOutput {
  const project = new tsMorph.Project({
    useInMemoryFileSystem: true,
    skipLoadingLibFiles: true,
    manipulationSettings: {
      indentationText: tsMorph.IndentationText.TwoSpaces,
      quoteKind: tsMorph.QuoteKind.Single,
      newLineKind: tsMorph.NewLineKind.LineFeed,
      useTrailingCommas: true,
    },
  });
  const files = new Map(input.texts);
  for (const [name, text] of emitClasses(input.model, tsMorph, project)) files.set(name, text);
  for (const [name, text] of files) {
    const body = text.startsWith(TS_HEADER) ? text : `${TS_HEADER}\n\n${text}`;
    const sf = project.createSourceFile(`/fmt/${name}`, body, { overwrite: true });
    sf.formatText({ indentSize: 2, tabSize: 2, convertTabsToSpaces: true, ensureNewLineAtEndOfFile: true, semicolons: tsMorph.ts.SemicolonPreference.Insert });
    files.set(name, sf.getFullText().replace(/\r\n/g, '\n').replace(/[ \t]+$/gm, ''));
  }
  return { files: [...files], typescriptVersion: tsMorph.ts.version };
}

// As the worker: load ts-morph now (CommonJS: require() skips the named-export scan an import() does),
// then answer the one request.
if (workerData === TS_STAGE_WORKER && parentPort) {
  const port = parentPort;
  const tsMorph = createRequire(import.meta.url)('ts-morph') as TsMorph;
  port.once('message', (input: TsStageInput) => {
    try {
      port.postMessage({ ok: runTsStage(tsMorph, input) });
    } catch (e) {
      port.postMessage({ error: (e as Error)?.stack ?? String(e) });
    }
  });
}

/**
 * Precompiled ajv validators (standalone code). ajv's ESM output still calls require() for its
 * runtime helpers, which fails in real Node ESM; those calls are rewritten to imports here.
 */
import type { ModelIR } from '../model.js';
import { TS_HEADER } from '../paths.js';

export type AjvCtor = typeof import('ajv').Ajv;
export type StandaloneFn = (ajv: InstanceType<AjvCtor>, refs: Record<string, string>) => string;

/** Annotations validation never reads; ajv would inline them into the output. */
const ANNOTATIONS = new Set(['description', 'title', 'default', '$comment']);

function lean(schema: unknown): unknown {
  if (Array.isArray(schema)) return schema.map(lean);
  if (schema === null || typeof schema !== 'object') return schema;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(schema)) {
    if (ANNOTATIONS.has(k) && typeof v !== 'object') continue;
    out[k] = k === 'properties' || k === 'definitions' ? Object.fromEntries(Object.entries(v as object).map(([pk, pv]) => [pk, lean(pv)])) : lean(v);
  }
  return out;
}

export function emitValidators(
  model: ModelIR,
  configSchema: Record<string, unknown>,
  Ajv: AjvCtor,
  standaloneCode: StandaloneFn,
): { js: string; dts: string } {
  const ajv = new Ajv({ allErrors: true, strict: true, allowUnionTypes: true, code: { source: true, esm: true, lines: true, optimize: true } });
  const exportsMap: Record<string, string> = {};
  for (const b of model.backends) {
    ajv.addSchema(lean(b.optionsSchema) as object);
    exportsMap[b.validatorName] = b.optionsSchema.$id as string;
  }
  const { $comment: _c, ...cfg } = configSchema;
  ajv.addSchema({ ...(lean(cfg) as object), $id: 'trackspec:tracking-config' });
  exportsMap.validateTrackingConfig = 'trackspec:tracking-config';
  const sorted = Object.fromEntries(Object.entries(exportsMap).sort(([a], [b]) => (a < b ? -1 : 1)));
  let code = standaloneCode(ajv, sorted);
  const imports: string[] = [];
  const ids = new Map<string, string>();
  code = code.replace(/require\("([^"]+)"\)(\.default|\.[A-Za-z_$][\w$]*)?/g, (_m, spec: string, member: string | undefined) => {
    const file = spec.endsWith('.js') ? spec : `${spec}.js`;
    let id = ids.get(file);
    if (!id) {
      id = `runtime_${ids.size}`;
      ids.set(file, id);
      imports.push(`import ${id} from ${JSON.stringify(file)};`);
    }
    // The default import of a CommonJS module is its module.exports object.
    return member === undefined || member === '.default' ? `(${id}.default ?? ${id})` : `${id}${member}`;
  });
  code = code.replace(/^"use strict";\s*/, '');
  const js = `${TS_HEADER}\n${imports.join('\n')}${imports.length ? '\n' : ''}${code.trim()}\n`;
  const dtsLines = [TS_HEADER, "import type { ValidateFunction } from 'ajv';"];
  for (const b of model.backends) dtsLines.push(`import type { ${b.optionsType} } from './${b.optionsFile.replace(/\.ts$/, '.js')}';`);
  dtsLines.push("import type { TrackingConfig } from './config.gen.js';", '');
  for (const name of Object.keys(sorted)) {
    const b = model.backends.find((x) => x.validatorName === name);
    const type = b ? b.optionsType : 'TrackingConfig';
    const what = b ? `${b.className} options` : 'a tracker config file (TrackingConfig)';
    dtsLines.push(`/** Precompiled validator for ${what}. */`, `export declare const ${name}: ValidateFunction<${type}>;`);
  }
  return { js, dts: `${dtsLines.join('\n')}\n` };
}

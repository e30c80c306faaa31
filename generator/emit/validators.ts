/**
 * Precompiled ajv validators (standalone code). ajv's output calls require() for a few runtime
 * helpers of ajv's own; those calls are rewritten to the runtime's copies (runtime/core/validation.ts),
 * so the SDK runs without ajv installed. A helper the runtime does not provide stops the generator.
 */
import type { ModelIR } from '../model.js';
import { TS_HEADER } from '../paths.js';

export type AjvCtor = typeof import('ajv').Ajv;
export type StandaloneFn = (ajv: InstanceType<AjvCtor>, refs: Record<string, string>) => string;

/** ajv's runtime helper modules and the runtime's functions that stand in for them. */
const RUNTIME_HELPERS: Record<string, string> = { 'ajv/dist/runtime/ucs2length': 'ucs2length', 'ajv/dist/runtime/equal': 'deepEqual' };

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
  const used = new Set<string>();
  code = code.replace(/require\("([^"]+)"\)(\.default)?/g, (_m, spec: string) => {
    const helper = RUNTIME_HELPERS[spec.replace(/\.js$/, '')];
    if (!helper) throw new Error(`the validators need ajv's runtime helper ${spec}, which trackspec's runtime does not provide (runtime/core/validation.ts)`);
    used.add(helper);
    return helper;
  });
  const imports = used.size ? [`import { ${[...used].sort().join(', ')} } from ${JSON.stringify(model.runtimeImport)};`] : [];
  code = code.replace(/^"use strict";\s*/, '');
  const js = `${TS_HEADER}\n${imports.join('\n')}${imports.length ? '\n' : ''}${code.trim()}\n`;
  const dtsLines = [TS_HEADER, `import type { ValidateFunction } from ${JSON.stringify(model.runtimeImport)};`];
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

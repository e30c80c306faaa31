/** Option types via json-schema-to-typescript (pinned), one file per backend plus the config type. */
import type { ModelIR } from '../model.js';
import { TS_HEADER } from '../paths.js';

type Compile = typeof import('json-schema-to-typescript').compile;

const OPTIONS = {
  bannerComment: '',
  format: false,
  additionalProperties: false,
  declareExternallyReferenced: true,
  enableConstEnums: false,
  strictIndexSignatures: true,
  unknownAny: true,
} as const;

export async function emitOptionTypes(model: ModelIR, compile: Compile): Promise<Map<string, string>> {
  const files = new Map<string, string>();
  for (const b of model.backends) {
    const body = await compile(structuredClone(b.optionsSchema) as never, b.optionsType, OPTIONS);
    const defaulted = b.options.filter((o) => o.hasDefault).map((o) => `'${o.name}'`);
    const resolved = defaulted.length
      ? `export type ${b.resolvedOptionsType} = ${b.optionsType} & Required<Pick<${b.optionsType}, ${defaulted.join(' | ')}>>;`
      : `export type ${b.resolvedOptionsType} = ${b.optionsType};`;
    files.set(
      b.optionsFile,
      `${TS_HEADER}\n\n${body.trim()}\n\n/** ${b.optionsType} after env resolution: options with a default are always present. */\n${resolved}\n`,
    );
  }
  return files;
}

/** TrackingConfig: the config-file shape, with init_kwargs typed by each backend's options. */
export async function emitConfigType(model: ModelIR, configSchema: Record<string, unknown>, compile: Compile): Promise<string> {
  const schema = structuredClone(configSchema) as Record<string, any>;
  delete schema.$comment;
  delete schema.definitions;
  for (const b of model.backends) {
    schema.properties.init_kwargs.properties[b.name] = { tsType: `Partial<${b.optionsType}>` };
  }
  const body = await compile(schema as never, 'TrackingConfig', OPTIONS);
  const imports = model.backends.map((b) => `import type { ${b.optionsType} } from './${b.optionsFile.replace(/\.ts$/, '.js')}';`).join('\n');
  return `${TS_HEADER}\n\n${imports}\n\n${body.trim()}\n`;
}

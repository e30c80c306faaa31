/**
 * Stage 3: the one intermediate model. Every naming decision, default and environment-variable
 * precedence is made here and nowhere else; emitters only print what the model says.
 */
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { dirname, relative, resolve, sep } from 'node:path';
import { Ajv } from 'ajv';
import type { EnvParse } from '../runtime/core/env.js';
import type { ValueAction, ValueKind } from '../runtime/core/values.js';
import { SpecError, type LoadedSpec, type SpecDoc, type SpecIssue } from './load.js';
import { packageRoot } from './paths.js';

export const VALUE_KINDS: readonly ValueKind[] = ['number', 'boolean', 'string', 'null', 'array', 'numeric_object', 'object', 'other'];

export interface EnvIR {
  var: string;
  parse: EnvParse;
  /** Decided here from the spec's precedence rule: true → env wins over an explicit option. */
  overrides: boolean;
}

export interface OptionIR {
  name: string;
  description: string;
  /** Description plus where the value comes from, for JSDoc and docs. */
  doc: string;
  required: boolean;
  hasDefault: boolean;
  default: unknown;
  env: EnvIR[];
  secret: boolean;
  jsonString: boolean;
  /** JSON Schema without x- extension keywords. */
  schema: Record<string, unknown>;
  /** Human-readable type for docs, e.g. `string \| null`. */
  typeText: string;
}

export interface ValueRuleIR {
  action: ValueAction;
  doc: string;
}

export interface BackendIR {
  name: string;
  order: number | null;
  className: string;
  /** `MLflow` for `MLflowTracker`. */
  stem: string;
  optionsType: string;
  resolvedOptionsType: string;
  validatorName: string;
  /** Generated file names (no directory). */
  classFile: string;
  optionsFile: string;
  title: string;
  description: string;
  specFile: string;
  requiresLoggingDirectory: boolean;
  mainProcessOnly: boolean;
  projectNameOption: string;
  capabilities: { log_images: boolean; log_table: boolean; artifacts: boolean };
  valueRules: { log: Record<ValueKind, ValueRuleIR>; storeInitConfiguration: Record<ValueKind, ValueRuleIR> };
  options: OptionIR[];
  /** Import specifier of the driver module, relative to the output directory. */
  driverImport: string;
  driverExport: string;
  /** The clean options schema (for ajv and json-schema-to-typescript). */
  optionsSchema: Record<string, unknown>;
}

export interface ModelIR {
  base: {
    description: string;
    properties: Record<string, string>;
    methods: Record<string, { signature: string; doc: string }>;
    valueKinds: Record<ValueKind, string>;
    step: string;
    precedence: { rule: string; badValue: string };
  };
  backends: BackendIR[];
  /** Import specifier of the runtime entry from the output directory. */
  runtimeImport: string;
  specHash: string;
}

function stripExtensions(schema: unknown): unknown {
  if (Array.isArray(schema)) return schema.map(stripExtensions);
  if (schema === null || typeof schema !== 'object') return schema;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(schema)) {
    if (k.startsWith('x-')) continue;
    out[k] = k === 'properties' || k === 'definitions' ? Object.fromEntries(Object.entries(v as object).map(([pk, pv]) => [pk, stripExtensions(pv)])) : stripExtensions(v);
  }
  return out;
}

function typeText(schema: Record<string, unknown>): string {
  if (Array.isArray(schema.enum)) return schema.enum.map((v) => JSON.stringify(v)).join(' \\| ');
  if (Array.isArray(schema.anyOf)) return (schema.anyOf as Record<string, unknown>[]).map(typeText).join(' \\| ');
  const t = schema.type;
  const one = (x: unknown): string => {
    if (x === 'array') {
      const items = schema.items as Record<string, unknown> | undefined;
      return `${items ? typeText(items) : 'unknown'}[]`;
    }
    if (x === 'object') return 'object';
    return String(x);
  };
  if (Array.isArray(t)) return t.map(one).join(' \\| ');
  if (t !== undefined) return one(t);
  return 'unknown';
}

function importSpecifier(fromDir: string, target: string): string {
  let rel = relative(fromDir, target).split(sep).join('/');
  if (!rel.startsWith('.')) rel = `./${rel}`;
  return rel.replace(/\.(m|c)?ts$/, (_m, p: string | undefined) => `.${p ?? ''}js`);
}

function stemOf(className: string): string {
  return className.replace(/Tracker$/, '');
}

function describeOption(opt: Omit<OptionIR, 'doc' | 'typeText'>): string {
  const lines = [opt.description];
  if (opt.env.length > 0) {
    const env = opt.env.map((e) => `\`${e.var}\` (${e.parse}${e.overrides ? ', overrides an explicit option as upstream' : ''})`);
    lines.push(`Environment: ${env.join(', then ')}.`);
  }
  if (opt.required) lines.push('Required.');
  else if (opt.hasDefault && !opt.secret) lines.push(`Default: \`${JSON.stringify(opt.default)}\`.`);
  return lines.join('\n\n');
}

export function buildModel(spec: LoadedSpec, outDir: string): ModelIR {
  const issues: SpecIssue[] = [];
  const at = (doc: SpecDoc, pointer: string, message: string) =>
    issues.push({ file: doc.path, ...doc.located.locate(pointer, false), pointer, message });
  const ajv = new Ajv({ allErrors: true, strict: true, allowUnionTypes: true });

  const baseData = spec.base.data as {
    description: string;
    properties: Record<string, string>;
    methods: Record<string, { signature: string; doc: string }>;
    value_kinds: Record<ValueKind, string>;
    step?: string;
    env_precedence: { rule: string; bad_value: string };
  };

  const backends: BackendIR[] = [];
  const seenNames = new Map<string, SpecDoc>();
  const seenClasses = new Map<string, SpecDoc>();
  for (const doc of spec.backends) {
    const d = doc.data as Record<string, any>;
    const name = d.name as string;
    if (seenNames.has(name)) at(doc, '/name', `backend name ${JSON.stringify(name)} is also used by ${seenNames.get(name)!.path}`);
    seenNames.set(name, doc);
    if (seenClasses.has(d.class_name)) at(doc, '/class_name', `class name ${d.class_name} is also used by ${seenClasses.get(d.class_name)!.path}`);
    seenClasses.set(d.class_name, doc);

    const props = d.options.properties as Record<string, Record<string, unknown>>;
    const required = new Set<string>((d.options.required as string[] | undefined) ?? []);
    for (const r of required) if (!(r in props)) at(doc, '/options/required', `required option ${JSON.stringify(r)} is not declared in options.properties`);
    if (!(d.project_name_option in props)) {
      at(doc, '/project_name_option', `project_name_option ${JSON.stringify(d.project_name_option)} is not an option of this backend`);
    }
    if (d.requires_logging_directory && !('logging_dir' in props)) {
      at(doc, '/requires_logging_directory', 'a backend that requires a logging directory must declare a logging_dir option');
    }
    const envSeen = new Map<string, string>();
    const options: OptionIR[] = [];
    for (const [optName, raw] of Object.entries(props)) {
      const env: EnvIR[] = ((raw['x-env'] as { var: string; parse: EnvParse; overrides_option?: boolean }[] | undefined) ?? []).map((e, i) => {
        if (envSeen.has(e.var)) at(doc, `/options/properties/${optName}/x-env/${i}/var`, `${e.var} already feeds option ${envSeen.get(e.var)}`);
        envSeen.set(e.var, optName);
        // The precedence rule of spec/base.json, applied: only variables marked overrides_option beat an explicit option.
        return { var: e.var, parse: e.parse, overrides: e.overrides_option === true };
      });
      const schema = stripExtensions(raw) as Record<string, unknown>;
      const hasDefault = 'default' in raw;
      if (hasDefault) {
        try {
          const ok = ajv.validate(schema, raw.default);
          if (!ok) at(doc, `/options/properties/${optName}/default`, `default ${JSON.stringify(raw.default)} does not match the option's own schema: ${ajv.errorsText()}`);
        } catch (e) {
          at(doc, `/options/properties/${optName}`, `invalid JSON Schema: ${(e as Error).message}`);
        }
      }
      if (required.has(optName) && hasDefault) at(doc, `/options/properties/${optName}/default`, 'a required option cannot have a default');
      const base = {
        name: optName,
        description: raw.description as string,
        required: required.has(optName),
        hasDefault,
        default: raw.default,
        env,
        secret: raw['x-secret'] === true,
        jsonString: raw['x-json-string'] === true,
        schema,
      };
      options.push({ ...base, doc: describeOption(base), typeText: typeText(schema) });
    }

    const driverModule = d.driver.module as string;
    let driverImport: string;
    if (driverModule.startsWith('.')) {
      const target = resolve(dirname(doc.path), driverModule);
      if (!existsSync(target)) at(doc, '/driver/module', `driver module not found: ${target}`);
      driverImport = importSpecifier(outDir, target);
    } else {
      driverImport = driverModule;
    }

    const stem = stemOf(d.class_name);
    const rules = (t: Record<ValueKind, ValueRuleIR>) => Object.fromEntries(VALUE_KINDS.map((k) => [k, { action: t[k].action, doc: t[k].doc }])) as Record<ValueKind, ValueRuleIR>;
    const optionsSchema: Record<string, unknown> = {
      $id: `trackspec:options:${name}`,
      title: `${stem}Options`,
      description: `Constructor options of ${d.class_name} (${d.title}).`,
      type: 'object',
      additionalProperties: false,
      ...(required.size > 0 ? { required: [...required] } : {}),
      properties: Object.fromEntries(options.map((o) => [o.name, { ...o.schema, description: o.doc }])),
    };
    backends.push({
      name,
      order: (d.order as number | undefined) ?? null,
      className: d.class_name,
      stem,
      optionsType: `${stem}Options`,
      resolvedOptionsType: `Resolved${stem}Options`,
      validatorName: `validate${stem}Options`,
      classFile: `${name}.gen.ts`,
      optionsFile: `${name}.options.gen.ts`,
      title: d.title,
      description: d.description,
      specFile: doc.rel,
      requiresLoggingDirectory: d.requires_logging_directory,
      mainProcessOnly: d.main_process_only,
      projectNameOption: d.project_name_option,
      capabilities: { ...d.capabilities },
      valueRules: { log: rules(d.value_rules.log), storeInitConfiguration: rules(d.value_rules.store_init_configuration) },
      options,
      driverImport,
      driverExport: d.driver.export,
      optionsSchema,
    });
  }
  if (backends.length === 0) issues.push({ file: spec.dir, line: 1, col: 1, pointer: '', message: 'the spec declares no backend' });
  if (issues.length > 0) throw new SpecError(issues);

  backends.sort((a, b) => (a.order ?? Infinity) - (b.order ?? Infinity) || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));

  const root = packageRoot();
  const insidePackage = !relative(root, resolve(outDir)).startsWith('..');
  const runtimeImport = insidePackage ? importSpecifier(outDir, resolve(root, 'runtime', 'index.ts')) : 'trackspec/runtime';

  const hash = createHash('sha256');
  for (const f of [...spec.files].sort((a, b) => (a.rel < b.rel ? -1 : 1))) {
    hash.update(f.rel).update('\0').update(f.text.replace(/\r\n/g, '\n')).update('\0');
  }

  return {
    base: {
      description: baseData.description,
      properties: baseData.properties,
      methods: baseData.methods,
      valueKinds: baseData.value_kinds,
      step: baseData.step ?? '',
      precedence: { rule: baseData.env_precedence.rule, badValue: baseData.env_precedence.bad_value },
    },
    backends,
    runtimeImport,
    specHash: hash.digest('hex'),
  };
}

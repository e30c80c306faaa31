/**
 * Option resolution for generated tracker classes: explicit options, environment variables and
 * defaults are combined by the table the generator emitted (the decision of which variable wins is
 * made in the generator's model; this module only applies it), then validated once.
 */
import type { ErrorObject } from './validation.js';
import { ConfigError } from './errors.js';
import { parseEnv, readEnv, EXPECTED_FORM, type Env, type EnvParse } from './env.js';
import { humanizeErrors, pointerSegments } from './humanize.js';
import { isPlainObject } from './values.js';
import { printAs, redactOptions } from './redact.js';

export interface EnvSource {
  readonly var: string;
  readonly parse: EnvParse;
  /** true: the variable wins over an explicit option (upstream behaviour for MLflow's four). */
  readonly overrides: boolean;
}

export interface OptionDescriptor {
  readonly name: string;
  readonly env: readonly EnvSource[];
  /** Absent: the option has no default (stays undefined). */
  readonly default?: unknown;
  readonly secret?: boolean;
  /** A string value is JSON-parsed into an object. */
  readonly jsonString?: boolean;
}

/** An ajv standalone validator. */
export interface Validator {
  (data: unknown): boolean;
  errors?: ErrorObject[] | null;
}

function clone<T>(v: T): T {
  return v !== null && typeof v === 'object' ? structuredClone(v) : v;
}

function where(className: string, desc: OptionDescriptor, envVar: string | undefined): string {
  if (envVar) return `${envVar} (for option ${desc.name})`;
  const alt = desc.env.map((e) => e.var);
  return `option ${JSON.stringify(desc.name)}${alt.length ? ` (can also be set with ${alt.join(', ')})` : ''}`;
}

/**
 * Resolve options for a tracker class. Throws ConfigError for unknown options (with did-you-mean),
 * wrong types (naming the option and the env vars that could also set it) and unparsable env vars.
 */
export function resolveOptions<R>(
  className: string,
  descriptors: readonly OptionDescriptor[],
  input: unknown,
  validate: Validator,
  env: Env = process.env,
): R {
  if (input === undefined || input === null) input = {};
  if (!isPlainObject(input)) {
    throw new ConfigError(`${className}: options must be a plain object, got ${Array.isArray(input) ? 'an array' : typeof input}`);
  }
  const resolved: Record<string, unknown> = {};
  for (const k in input) if (input[k] !== undefined) resolved[k] = input[k];
  const fromEnv = new Map<string, string>();
  for (const d of descriptors) {
    const explicit = resolved[d.name] !== undefined;
    for (const e of d.env) {
      if (explicit && !e.overrides) break;
      const raw = readEnv(env, e.var);
      if (raw === undefined) continue;
      try {
        resolved[d.name] = parseEnv(e.var, raw, e.parse, d.secret);
      } catch (err) {
        throw new ConfigError(`${className}: ${(err as Error).message}`, { option: d.name, envVar: e.var });
      }
      fromEnv.set(d.name, e.var);
      break;
    }
    if (resolved[d.name] === undefined && 'default' in d) resolved[d.name] = clone(d.default);
    if (d.jsonString && typeof resolved[d.name] === 'string') {
      const src = fromEnv.get(d.name);
      try {
        resolved[d.name] = JSON.parse(resolved[d.name] as string);
      } catch (e) {
        throw new ConfigError(
          `${className}: ${where(className, d, src)} must be an object or a JSON object string; the string is not valid JSON (${(e as Error).message})`,
          { option: d.name, envVar: src },
        );
      }
    }
    if (d.jsonString && resolved[d.name] != null && !isPlainObject(resolved[d.name])) {
      const src = fromEnv.get(d.name);
      throw new ConfigError(
        `${className}: ${where(className, d, src)} must be a JSON object (${src ? EXPECTED_FORM.json + ' object' : 'e.g. {"team": "a"}'})`,
        { option: d.name, envVar: src },
      );
    }
  }
  if (!validate(resolved)) {
    const byName = new Map(descriptors.map((d) => [d.name, d]));
    const schema = { properties: Object.fromEntries(descriptors.map((d) => [d.name, true])) };
    const issues = humanizeErrors(validate.errors, { data: resolved, schema, noun: () => 'option' });
    const lines: string[] = [];
    let first: { option?: string; envVar?: string } = {};
    for (const issue of issues) {
      const top = pointerSegments(issue.pointer)[0];
      const d = top === undefined ? undefined : byName.get(top);
      if (!d) {
        lines.push(issue.message);
        first = lines.length === 1 ? { option: top } : first;
        continue;
      }
      const envVar = fromEnv.get(d.name);
      const msg = d.secret ? issue.message.replace(/; got .*$|, got .*$/, ' (value not shown)') : issue.message;
      const rest = issue.pointer.split('/').length > 2 ? ` at ${issue.pointer}` : '';
      lines.push(`${where(className, d, envVar)}${rest}: ${msg}`);
      if (lines.length === 1) first = { option: d.name, envVar };
    }
    throw new ConfigError(
      lines.length === 1 ? `${className}: ${lines[0]}` : `${className}: invalid options:\n  - ${lines.join('\n  - ')}`,
      { ...first, issues },
    );
  }
  // Printing the options (console.log, util.inspect, JSON.stringify) never shows secrets.
  const secrets = new Set(descriptors.filter((d) => d.secret).map((d) => d.name));
  printAs(resolved, () => redactOptions(resolved, secrets));
  return resolved as R;
}

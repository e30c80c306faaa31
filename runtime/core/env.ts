/**
 * Environment-variable reading and parsing, shared by every backend.
 * The precedence rule itself is stated in spec/base.json and decided per variable by the generator;
 * this module only reads and parses.
 */
import { ConfigError } from './errors.js';

export type EnvParse = 'string' | 'boolean' | 'integer' | 'number' | 'json' | 'list';
export type Env = Readonly<Record<string, string | undefined>>;

/** Read a variable; unset, empty and whitespace-only all count as unset (undefined). */
export function readEnv(env: Env, name: string): string | undefined {
  const raw = env[name];
  if (raw === undefined) return undefined;
  const trimmed = raw.trim();
  return trimmed === '' ? undefined : trimmed;
}

const TRUE = new Set(['true', '1', 'yes', 'on', 'y', 't']);
const FALSE = new Set(['false', '0', 'no', 'off', 'n', 'f']);

export const EXPECTED_FORM: Readonly<Record<EnvParse, string>> = {
  string: 'a string',
  boolean: 'a boolean (true/false, 1/0, yes/no, on/off)',
  integer: 'an integer',
  number: 'a number',
  json: 'JSON',
  list: 'a comma-separated list',
};

function bad(name: string, parse: EnvParse, shown: string, detail?: string): ConfigError {
  return new ConfigError(
    `environment variable ${name} must be ${EXPECTED_FORM[parse]}; got ${shown}${detail ? ` (${detail})` : ''}. ` +
      `Fix or unset ${name}.`,
    { envVar: name },
  );
}

/**
 * Parse a (non-empty) variable value as declared in the spec. `secret` values are never echoed.
 * Throws ConfigError naming the variable and the expected form.
 */
export function parseEnv(name: string, value: string, parse: EnvParse, secret = false): unknown {
  const shown = secret ? 'a value that does not parse' : JSON.stringify(value);
  switch (parse) {
    case 'string':
      return value;
    case 'boolean': {
      const v = value.toLowerCase();
      if (TRUE.has(v)) return true;
      if (FALSE.has(v)) return false;
      throw bad(name, parse, shown);
    }
    case 'integer': {
      if (!/^[+-]?\d+$/.test(value)) throw bad(name, parse, shown);
      const n = Number(value);
      if (!Number.isSafeInteger(n)) throw bad(name, parse, shown, 'out of range');
      return n;
    }
    case 'number': {
      const n = Number(value);
      if (Number.isNaN(n)) throw bad(name, parse, shown);
      return n;
    }
    case 'json':
      try {
        return JSON.parse(value);
      } catch (e) {
        throw bad(name, parse, shown, (e as Error).message);
      }
    case 'list':
      return value
        .split(',')
        .map((s) => s.trim())
        .filter((s) => s !== '');
  }
}

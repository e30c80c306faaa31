/**
 * Value classification and the spec's value rules for `log` and `storeInitConfiguration`.
 * This sits on the hot path of `log()`: no allocation unless a value is dropped.
 */
import { ValidationError } from './errors.js';
import type { Values } from './driver.js';

export type ValueKind = 'number' | 'boolean' | 'string' | 'null' | 'array' | 'numeric_object' | 'object' | 'other';
export type ValueAction = 'accept' | 'warn' | 'error';
export type ValueRuleTable = Readonly<Record<ValueKind, ValueAction>>;

export function isPlainObject(v: unknown): v is Record<string, unknown> {
  if (v === null || typeof v !== 'object') return false;
  const proto = Object.getPrototypeOf(v);
  return proto === Object.prototype || proto === null;
}

function isNumericObject(v: Record<string, unknown>): boolean {
  let n = 0;
  for (const k in v) {
    const t = typeof v[k];
    if (t !== 'number' && t !== 'boolean') return false;
    n++;
  }
  return n > 0;
}

export function valueKind(v: unknown): ValueKind {
  switch (typeof v) {
    case 'number':
      return 'number';
    case 'boolean':
      return 'boolean';
    case 'string':
      return 'string';
    case 'undefined':
      return 'null';
    case 'object':
      if (v === null) return 'null';
      if (Array.isArray(v)) return 'array';
      if (isPlainObject(v)) return isNumericObject(v) ? 'numeric_object' : 'object';
      return 'other';
    default:
      return 'other';
  }
}

/** "a"/"an" + noun. */
function article(noun: string): string {
  return `${/^[aeiou]/i.test(noun) ? 'an' : 'a'} ${noun}`;
}

function describe(kind: ValueKind, v: unknown): string {
  if (kind === 'numeric_object') return 'an object of numbers';
  if (kind !== 'other') return article(kind);
  if (typeof v === 'object' && v !== null) return article(v.constructor?.name ?? 'non-plain object');
  return article(typeof v);
}

export interface RuleContext {
  /** e.g. `MLflowTracker.log()` */
  readonly where: string;
  warnOnce(key: string, message: string): void;
}

/**
 * Apply a rule table. Returns `values` itself when every value is accepted, else a filtered copy.
 * Throws ValidationError listing every value whose kind the backend rejects.
 */
export function applyValueRules(values: Values, table: ValueRuleTable, ctx: RuleContext): Values {
  let out: Values | undefined;
  let errors: { pointer: string; code: string; message: string }[] | undefined;
  for (const key in values) {
    const v = values[key];
    const kind = valueKind(v);
    const action = table[kind];
    if (action === 'accept') {
      if (out !== undefined) out[key] = v;
      continue;
    }
    if (out === undefined) {
      out = {};
      for (const k in values) {
        if (k === key) break;
        out[k] = values[k];
      }
    }
    if (action === 'warn') {
      ctx.warnOnce(
        `${ctx.where}\u0000${key}`,
        `${ctx.where}: skipped ${JSON.stringify(key)}: ${describe(kind, v)} is not supported by this backend (warned once per key)`,
      );
    } else {
      (errors ??= []).push({
        pointer: `/${key.replace(/~/g, '~0').replace(/\//g, '~1')}`,
        code: 'unsupported-value',
        message: `${JSON.stringify(key)} is ${describe(kind, v)}, which this backend does not accept`,
      });
    }
  }
  if (errors) {
    throw new ValidationError(`${ctx.where}: ${errors.map((e) => e.message).join('; ')}`, errors);
  }
  return out ?? values;
}

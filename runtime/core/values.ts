/**
 * Value classification and the spec's value rules for `log` and `storeInitConfiguration`.
 * This sits on the hot path of `log()`: no allocation unless a value is dropped.
 */
import { ValidationError } from './errors.js';
import type { Values } from './driver.js';
import { escapePointer } from './humanize.js';

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

const EXIT = Symbol('exit');

/**
 * The JSON pointer (below the value) of the first reference that closes a cycle, e.g. `/self`, or
 * undefined when `v` contains no cycle. Shared references that do not close a cycle are fine.
 * Iterative, so deep values cannot overflow the stack.
 */
export function cyclePath(v: object): string | undefined {
  const onPath = new Set<object>([v]);
  const pathObjects: object[] = [v];
  const names: string[] = [];
  const stack: Array<[unknown, string] | typeof EXIT> = [];
  const enter = (o: object) => {
    stack.push(EXIT);
    const keys = Object.keys(o);
    for (let i = keys.length - 1; i >= 0; i--) stack.push([(o as Record<string, unknown>)[keys[i]!], keys[i]!]);
  };
  enter(v);
  while (stack.length > 0) {
    const top = stack.pop()!;
    if (top === EXIT) {
      onPath.delete(pathObjects.pop()!);
      names.pop();
      continue;
    }
    const [child, name] = top;
    if (child === null || typeof child !== 'object') continue;
    if (onPath.has(child)) return `/${[...names, name].map((n) => n.replace(/~/g, '~0').replace(/\//g, '~1')).join('/')}`;
    if (!Array.isArray(child) && !isPlainObject(child)) continue;
    onPath.add(child);
    pathObjects.push(child);
    names.push(name);
    enter(child);
  }
  return undefined;
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
    let kind = valueKind(v);
    let action = table[kind];
    let cycle: string | undefined;
    if (action === 'accept' && (kind === 'object' || kind === 'array') && (cycle = cyclePath(v as object)) !== undefined) {
      // A value that contains itself cannot be stored by any backend: it follows the rule for
      // values the backend cannot represent ('other').
      kind = 'other';
      action = table.other;
    }
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
    const what = cycle !== undefined ? `a cyclic ${Array.isArray(v) ? 'array' : 'object'} (it contains itself at ${JSON.stringify(cycle)})` : describe(kind, v);
    if (action === 'warn') {
      ctx.warnOnce(
        `${ctx.where}\u0000${key}`,
        `${ctx.where}: skipped ${JSON.stringify(key)}: ${what} is not supported by this backend (warned once per key)`,
      );
    } else {
      (errors ??= []).push({
        pointer: `/${key.replace(/~/g, '~0').replace(/\//g, '~1')}`,
        code: cycle !== undefined ? 'cyclic-value' : 'unsupported-value',
        message: `${JSON.stringify(key)} is ${what}, which this backend ${cycle !== undefined ? 'cannot store' : 'does not accept'}`,
      });
    }
  }
  if (errors) {
    throw new ValidationError(`${ctx.where}: ${errors.map((e) => e.message).join('; ')}`, errors);
  }
  return out ?? values;
}

/**
 * Throw a ValidationError naming the first value under `v` that is not JSON-like: numbers, strings,
 * booleans, null/undefined, arrays and plain objects, without cycles. `holds` ends the message: what
 * the destination can store (e.g. "params.yaml holds numbers, strings, ...").
 */
export function checkJsonLike(where: string, v: unknown, holds: string, pointer = '', seen = new Set<object>()): void {
  if (v === null || v === undefined || typeof v === 'number' || typeof v === 'string' || typeof v === 'boolean') return;
  if (typeof v === 'object' && !seen.has(v)) {
    const proto = Object.getPrototypeOf(v);
    if (Array.isArray(v) || proto === Object.prototype || proto === null) {
      seen.add(v);
      if (Array.isArray(v)) v.forEach((x, i) => checkJsonLike(where, x, holds, `${pointer}/${i}`, seen));
      else for (const [k, x] of Object.entries(v)) checkJsonLike(where, x, holds, `${pointer}/${escapePointer(k)}`, seen);
      seen.delete(v);
      return;
    }
  }
  const what = typeof v === 'object' ? (seen.has(v as object) ? 'a circular reference' : `a ${(v as object).constructor?.name ?? 'non-plain object'}`) : `a ${typeof v}`;
  const message = `${pointer || '/'} is ${what}; ${holds}`;
  throw new ValidationError(`${where}: ${message}`, [{ pointer, code: 'unsupported-value', message }]);
}

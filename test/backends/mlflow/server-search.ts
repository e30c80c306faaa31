// Search filter / order_by / page token handling for the MLflow test server (subset of SearchUtils).
import { MlflowError, invalidParam } from './server-proto.js';

export type Entity = 'metric' | 'parameter' | 'tag' | 'attribute';
export interface Clause {
  type: Entity;
  key: string;
  comparator: string;
  value: string | number | string[];
}

const ENTITY_ALIASES: Record<string, Entity> = {
  metric: 'metric',
  metrics: 'metric',
  param: 'parameter',
  params: 'parameter',
  parameter: 'parameter',
  parameters: 'parameter',
  tag: 'tag',
  tags: 'tag',
  attribute: 'attribute',
  attributes: 'attribute',
  attr: 'attribute',
  run: 'attribute',
};

interface Cursor {
  s: string;
  i: number;
}

function skipWs(c: Cursor): void {
  while (c.i < c.s.length && /\s/.test(c.s[c.i]!)) c.i++;
}

function readQuoted(c: Cursor): string | undefined {
  const q = c.s[c.i];
  if (q !== "'" && q !== '"' && q !== '`') return undefined;
  const end = c.s.indexOf(q, c.i + 1);
  if (end < 0) return undefined;
  const v = c.s.slice(c.i + 1, end);
  c.i = end + 1;
  return v;
}

const bad = (filter: string): MlflowError => invalidParam(`Invalid clause(s) in filter string: '${filter}'`);

function readIdentifier(c: Cursor, filter: string, defaultType: Entity): { type: Entity; key: string } {
  const start = c.i;
  const m = /^[A-Za-z_][\w]*/.exec(c.s.slice(c.i));
  if (!m) {
    const q = readQuoted(c);
    if (q === undefined) throw bad(filter);
    return { type: defaultType, key: q };
  }
  const word = m[0];
  const ent = ENTITY_ALIASES[word.toLowerCase()];
  if (ent && c.s[c.i + word.length] === '.') {
    c.i += word.length + 1;
    const q = readQuoted(c);
    if (q !== undefined) return { type: ent, key: q };
    const km = /^[\w.\-/:]+/u.exec(c.s.slice(c.i));
    if (!km) throw bad(filter);
    c.i += km[0].length;
    return { type: ent, key: km[0] };
  }
  const km = /^[\w.]+/.exec(c.s.slice(start))!;
  c.i = start + km[0].length;
  if (km[0].includes('.')) {
    const entity = km[0].split('.')[0]!;
    throw invalidParam(`Invalid entity type '${entity}'. Valid values are ['metric', 'parameter', 'tag', 'attribute', 'dataset']`);
  }
  return { type: defaultType, key: km[0] };
}

function readComparator(c: Cursor, filter: string): string {
  const rest = c.s.slice(c.i);
  const m = /^(!=|>=|<=|=|<|>)/.exec(rest) ?? /^(not\s+in|ilike|like|in)\b/i.exec(rest);
  if (!m) throw bad(filter);
  c.i += m[0].length;
  return m[0].toUpperCase().replace(/\s+/, ' ');
}

function readValue(c: Cursor, filter: string): { v: string | number | string[]; quoted: boolean } {
  if (c.s[c.i] === '(') {
    c.i++;
    const list: string[] = [];
    for (;;) {
      skipWs(c);
      const q = c.s[c.i] === "'" || c.s[c.i] === '"' ? readQuoted(c) : undefined;
      if (q === undefined) throw bad(filter);
      list.push(q);
      skipWs(c);
      if (c.s[c.i] === ',') {
        c.i++;
        continue;
      }
      if (c.s[c.i] === ')') {
        c.i++;
        break;
      }
      throw bad(filter);
    }
    return { v: list, quoted: true };
  }
  if (c.s[c.i] === "'" || c.s[c.i] === '"') {
    const q = readQuoted(c);
    if (q === undefined) throw bad(filter);
    return { v: q, quoted: true };
  }
  const m = /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?/.exec(c.s.slice(c.i));
  if (m) {
    c.i += m[0].length;
    return { v: Number(m[0]), quoted: false };
  }
  const w = /^[\w.]+(?=\s|$)/u.exec(c.s.slice(c.i));
  if (!w) throw bad(filter);
  c.i += w[0].length;
  return { v: w[0], quoted: false };
}

export interface AttrSpec {
  strings: string[];
  numbers: string[];
}

export const RUN_ATTRS: AttrSpec = {
  strings: ['run_id', 'run_name', 'status', 'user_id', 'artifact_uri', 'lifecycle_stage'],
  numbers: ['start_time', 'end_time'],
};
export const EXPERIMENT_ATTRS: AttrSpec = {
  strings: ['name'],
  numbers: ['creation_time', 'last_update_time'],
};

export function parseFilter(filter: string | undefined, attrs: AttrSpec, allowed: Entity[]): Clause[] {
  if (!filter || !filter.trim()) return [];
  const c: Cursor = { s: filter, i: 0 };
  const out: Clause[] = [];
  for (;;) {
    skipWs(c);
    const { type, key } = readIdentifier(c, filter, 'attribute');
    if (!allowed.includes(type)) throw bad(filter);
    skipWs(c);
    const comparator = readComparator(c, filter);
    skipWs(c);
    const { v, quoted } = readValue(c, filter);
    if (type === 'metric') {
      if (!['=', '!=', '<', '<=', '>', '>='].includes(comparator)) {
        throw invalidParam(`Invalid comparator '${comparator}' not one of '['>', '>=', '!=', '=', '<', '<=']'`);
      }
      if (typeof v !== 'number') throw invalidParam(`Expected numeric value type for metric. Found ${String(v)}`);
    } else if (type === 'attribute') {
      if (attrs.numbers.includes(key)) {
        if (typeof v !== 'number') throw invalidParam(`Expected numeric value type for numeric attribute: ${key}. Found ${String(v)}`);
      } else if (attrs.strings.includes(key)) {
        if (!quoted) {
          throw invalidParam(
            `Value is either not quoted or unidentified quote types used for string value ${String(v)}. Use either single or double quotes.`,
          );
        }
        const okCmp = key === 'run_id' ? ['=', '!=', 'IN', 'NOT IN', 'LIKE', 'ILIKE'] : ['=', '!=', 'LIKE', 'ILIKE'];
        if (!okCmp.includes(comparator)) throw invalidParam(`Invalid comparator '${comparator}' not one of '${JSON.stringify(okCmp)}'`);
      } else {
        const valid = [...attrs.strings, ...attrs.numbers];
        throw invalidParam(`Invalid attribute key '${key}' specified. Valid keys are '${JSON.stringify(valid)}'`);
      }
    } else {
      if (!quoted || Array.isArray(v)) {
        const what = type === 'parameter' ? 'Parameter' : 'Tag';
        throw invalidParam(
          `${what} value is either not quoted or unidentified quote types used for string value ${String(v)}. Use either single or double quotes.`,
        );
      }
      if (!['=', '!=', 'LIKE', 'ILIKE'].includes(comparator)) {
        throw invalidParam(`Invalid comparator '${comparator}' not one of '['!=', '=', 'LIKE', 'ILIKE']'`);
      }
    }
    out.push({ type, key, comparator, value: v });
    skipWs(c);
    if (c.i >= c.s.length) break;
    const and = /^and\b/i.exec(c.s.slice(c.i));
    if (!and) throw bad(filter);
    c.i += and[0].length;
  }
  return out;
}

function likeToRegExp(pattern: string, flags: string): RegExp {
  let re = '';
  for (const ch of pattern) {
    if (ch === '%') re += '[\\s\\S]*';
    else if (ch === '_') re += '[\\s\\S]';
    else re += ch.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
  }
  return new RegExp(`^${re}$`, flags);
}

export function compare(actual: string | number | undefined, comparator: string, expected: Clause['value']): boolean {
  if (actual === undefined) return false; // SQL semantics: a missing value never matches
  if (Array.isArray(expected)) {
    const hit = expected.includes(String(actual));
    return comparator === 'IN' ? hit : !hit;
  }
  switch (comparator) {
    case '=':
      return actual === expected;
    case '!=':
      return actual !== expected;
    case '<':
      return actual < expected;
    case '<=':
      return actual <= expected;
    case '>':
      return actual > expected;
    case '>=':
      return actual >= expected;
    case 'LIKE':
      return likeToRegExp(String(expected), 'u').test(String(actual));
    case 'ILIKE':
      return likeToRegExp(String(expected), 'iu').test(String(actual));
    default:
      return false;
  }
}

export interface OrderKey {
  type: Entity;
  key: string;
  asc: boolean;
}

export function parseOrderBy(items: string[] | undefined, attrs: AttrSpec, allowed: Entity[]): OrderKey[] {
  return (items ?? []).map((raw) => {
    const m = /^(.*?)(?:\s+(ASC|DESC))?\s*$/i.exec(raw.trim())!;
    const c: Cursor = { s: m[1]!.trim(), i: 0 };
    let id: { type: Entity; key: string };
    try {
      id = readIdentifier(c, raw, 'attribute');
    } catch {
      throw invalidParam(`Invalid order_by clause '${raw}'. Could not be parsed.`);
    }
    if (c.i !== c.s.length || !allowed.includes(id.type)) throw invalidParam(`Invalid order_by clause '${raw}'. Could not be parsed.`);
    if (id.type === 'attribute' && ![...attrs.strings, ...attrs.numbers, 'experiment_id'].includes(id.key)) {
      throw invalidParam(`Invalid attribute key '${id.key}' specified. Valid keys are '${JSON.stringify([...attrs.strings, ...attrs.numbers])}'`);
    }
    return { ...id, asc: (m[2] ?? 'ASC').toUpperCase() === 'ASC' };
  });
}

/** Compare two values for ordering; undefined (missing) sorts last regardless of direction. */
export function orderCompare(a: string | number | undefined, b: string | number | undefined, asc: boolean): number {
  if (a === undefined && b === undefined) return 0;
  if (a === undefined) return 1;
  if (b === undefined) return -1;
  const an = typeof a === 'number' && Number.isNaN(a);
  const bn = typeof b === 'number' && Number.isNaN(b);
  if (an || bn) return an && bn ? 0 : an ? 1 : -1;
  const r = a < b ? -1 : a > b ? 1 : 0;
  return asc ? r : -r;
}

export function createPageToken(offset: number): string {
  return Buffer.from(JSON.stringify({ offset }).replace(':', ': ')).toString('base64');
}

export function parsePageToken(token: string | undefined): number {
  if (!token) return 0;
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(token) || token.length % 4 !== 0) {
    throw invalidParam('Invalid page token, could not base64-decode');
  }
  const decoded = Buffer.from(token, 'base64').toString('utf8');
  let parsed: unknown;
  try {
    parsed = JSON.parse(decoded);
  } catch {
    throw invalidParam(`Invalid page token, decoded value=b'${decoded}'`);
  }
  const off = parsed !== null && typeof parsed === 'object' ? (parsed as Record<string, unknown>).offset : undefined;
  if (!off) throw invalidParam(`Invalid page token, parsed value=${JSON.stringify(parsed)}`);
  const n = Number(off);
  if (!Number.isInteger(n)) throw invalidParam(`Invalid page token, not stringable ${String(off)}`);
  return n;
}

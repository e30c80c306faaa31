/**
 * Turns ajv's raw errors into one readable issue per real problem: did-you-mean for unknown keys,
 * expected-vs-actual for types, and anyOf/oneOf fan-out collapsed to the best match.
 * Used by option validation (constructors), `loadTrackingConfig`, `trackspec validate` and the
 * generator's own spec validation.
 */
import type { ErrorObject } from './validation.js';
import type { ValidationIssue } from './errors.js';

export interface HumanizeContext {
  /** The validated data, to show actual values and types. */
  data: unknown;
  /** The JSON Schema the data was validated against, to list known keys for did-you-mean. */
  schema?: unknown;
  /** Noun for a key at a pointer: "option", "key", ... Default "key". */
  noun?: (parentPointer: string) => string;
}

export function escapePointer(segment: string): string {
  if (!segment.includes('~') && !segment.includes('/')) return segment;
  return segment.replace(/~/g, '~0').replace(/\//g, '~1');
}

export function pointerSegments(pointer: string): string[] {
  if (pointer === '') return [];
  const segs = pointer.slice(1).split('/');
  if (!pointer.includes('~')) return segs;
  return segs.map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'));
}

export function valueAt(data: unknown, pointer: string): unknown {
  let cur: unknown = data;
  for (const seg of pointerSegments(pointer)) {
    if (cur === null || typeof cur !== 'object') return undefined;
    cur = (cur as Record<string, unknown>)[seg];
  }
  return cur;
}

/** JSON type name of a value as JSON Schema sees it. */
export function jsonType(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'array';
  if (typeof v === 'number') return Number.isInteger(v) ? 'integer' : 'number';
  return typeof v;
}

/** levenshtein's one row, reused (a new typed array per call was most of humanizing 80,000 unknown keys). */
let row = new Uint32Array(64);

/** Edit distance of a and b, or `limit + 1` as soon as it must exceed `limit`. */
function levenshtein(a: string, b: string, limit: number): number {
  if (Math.abs(a.length - b.length) > limit) return limit + 1;
  if (row.length < b.length + 1) row = new Uint32Array(b.length + 1);
  const prev = row;
  for (let j = 0; j <= b.length; j++) prev[j] = j;
  for (let i = 1; i <= a.length; i++) {
    let diag = prev[0]!;
    prev[0] = i;
    let rowMin = i;
    for (let j = 1; j <= b.length; j++) {
      const tmp = prev[j]!;
      const v = Math.min(prev[j]! + 1, prev[j - 1]! + 1, diag + (a.charCodeAt(i - 1) === b.charCodeAt(j - 1) ? 0 : 1));
      prev[j] = v;
      if (v < rowMin) rowMin = v;
      diag = tmp;
    }
    if (rowMin > limit) return limit + 1;
  }
  return prev[b.length]!;
}

interface Candidate {
  name: string;
  lower: string;
  bare: string;
}

const candidate = (name: string): Candidate => {
  const lower = name.toLowerCase();
  return { name, lower, bare: lower.replace(/[-_]/g, '') };
};

function closest(word: string, candidates: readonly Candidate[]): string | undefined {
  let best: string | undefined;
  const limit = Math.max(2, Math.floor(word.length / 3));
  let bestScore = limit + 1;
  const lw = word.toLowerCase();
  const bare = lw.replace(/[-_]/g, '');
  for (const c of candidates) {
    const score = c.bare === bare ? 0 : levenshtein(lw, c.lower, bestScore - 1);
    if (score < bestScore) {
      bestScore = score;
      best = c.name;
    }
  }
  return best;
}

/** The closest candidate within a small edit distance, or undefined. */
export function didYouMean(word: string, candidates: Iterable<string>): string | undefined {
  return closest(word, [...candidates].map(candidate));
}

function schemaAt(schema: unknown, schemaPath: string): unknown {
  if (!schemaPath.startsWith('#')) return undefined;
  return valueAt(schema, schemaPath.slice(1));
}

function show(v: unknown): string {
  if (typeof v === 'string') return JSON.stringify(v.length > 60 ? `${v.slice(0, 57)}...` : v);
  if (v === undefined) return 'nothing';
  try {
    const s = JSON.stringify(v);
    return s.length > 60 ? `${s.slice(0, 57)}...` : s;
  } catch {
    return String(v);
  }
}

function parentSchemaPath(schemaPath: string): string {
  return schemaPath.slice(0, schemaPath.lastIndexOf('/'));
}

/** Known keys at an additionalProperties error's schema path, computed once per path per call (thousands of unknown keys share one). */
const knownCache = new WeakMap<HumanizeContext, Map<string, { known: Candidate[]; list: string }>>();
function knownKeys(ctx: HumanizeContext, schemaPath: string): { known: Candidate[]; list: string } {
  let cache = knownCache.get(ctx);
  if (!cache) knownCache.set(ctx, (cache = new Map()));
  const parentPath = parentSchemaPath(schemaPath);
  let entry = cache.get(parentPath);
  if (!entry) {
    const parent = schemaAt(ctx.schema, parentPath) as { properties?: object } | undefined;
    const known = parent?.properties ? Object.keys(parent.properties) : [];
    entry = { known: known.map(candidate), list: known.map((k) => JSON.stringify(k)).join(', ') };
    cache.set(parentPath, entry);
  }
  return entry;
}

/** ctx.noun for a parent pointer, once per pointer per call. */
const nounCache = new WeakMap<HumanizeContext, Map<string, string>>();
function nounOf(ctx: HumanizeContext, parent: string): string {
  if (!ctx.noun) return 'key';
  let cache = nounCache.get(ctx);
  if (!cache) nounCache.set(ctx, (cache = new Map()));
  let n = cache.get(parent);
  if (n === undefined) cache.set(parent, (n = ctx.noun(parent)));
  return n;
}

function single(e: ErrorObject, ctx: HumanizeContext): ValidationIssue {
  const noun = ctx.noun ?? (() => 'key');
  const p = e.params as Record<string, unknown>;
  switch (e.keyword) {
    case 'additionalProperties': {
      const key = String(p.additionalProperty);
      const { known, list } = knownKeys(ctx, e.schemaPath);
      const guess = closest(key, known);
      const hint = guess ? `; did you mean ${JSON.stringify(guess)}?` : known.length > 0 ? `; expected one of ${list}` : '';
      return {
        pointer: `${e.instancePath}/${escapePointer(key)}`,
        code: 'unknown-key',
        message: `unknown ${nounOf(ctx, e.instancePath)} ${JSON.stringify(key)}${hint}`,
      };
    }
    case 'required':
      return {
        pointer: e.instancePath,
        code: 'missing',
        message: `missing required ${noun(e.instancePath)} ${JSON.stringify(String(p.missingProperty))}`,
      };
    case 'type': {
      const actual = valueAt(ctx.data, e.instancePath);
      const expected = Array.isArray(p.type) ? (p.type as string[]).join(' or ') : String(p.type);
      return {
        pointer: e.instancePath,
        code: 'type',
        message: `must be ${expected}, got ${jsonType(actual)} ${show(actual)}`,
      };
    }
    case 'enum': {
      const actual = valueAt(ctx.data, e.instancePath);
      const allowed = (p.allowedValues as unknown[]).map((v) => JSON.stringify(v)).join(', ');
      return { pointer: e.instancePath, code: 'enum', message: `must be one of ${allowed}; got ${show(actual)}` };
    }
    case 'const': {
      const actual = valueAt(ctx.data, e.instancePath);
      return {
        pointer: e.instancePath,
        code: 'const',
        message: `must be ${JSON.stringify(p.allowedValue)}; got ${show(actual)}`,
      };
    }
    default: {
      const actual = valueAt(ctx.data, e.instancePath);
      return {
        pointer: e.instancePath,
        code: e.keyword,
        message: `${e.message ?? 'is invalid'}; got ${show(actual)}`,
      };
    }
  }
}

interface Group {
  errors: ErrorObject[];
  depth: number;
}

/** Convert ajv errors to issues, one per problem, in document order of first appearance. */
export function humanizeErrors(errors: readonly ErrorObject[] | null | undefined, ctx: HumanizeContext): ValidationIssue[] {
  if (!errors || errors.length === 0) return [];
  let list = [...errors];
  const out: ValidationIssue[] = [];
  // Collapse combinators outermost first (shortest schemaPath).
  const combinators = list
    .filter((e) => e.keyword === 'anyOf' || e.keyword === 'oneOf')
    .sort((a, b) => a.schemaPath.length - b.schemaPath.length);
  for (const c of combinators) {
    if (!list.includes(c)) continue;
    const prefix = `${c.schemaPath}/`;
    const branchErrors = list.filter((e) => e.schemaPath.startsWith(prefix));
    const groups = new Map<string, Group>();
    for (const e of branchErrors) {
      const idx = e.schemaPath.slice(prefix.length).split('/')[0]!;
      const g = groups.get(idx) ?? { errors: [], depth: 0 };
      g.errors.push(e);
      g.depth = Math.max(g.depth, e.instancePath.length);
      groups.set(idx, g);
    }
    list = list.filter((e) => e !== c && !e.schemaPath.startsWith(prefix));
    const all = [...groups.values()];
    const shallowTypeOnly = all.every((g) =>
      g.errors.every((e) => e.instancePath === c.instancePath && (e.keyword === 'type' || e.keyword === 'const' || e.keyword === 'enum')),
    );
    if (shallowTypeOnly || all.length === 0) {
      const expected = new Set<string>();
      for (const g of all)
        for (const e of g.errors) {
          const p = e.params as Record<string, unknown>;
          if (e.keyword === 'type') for (const t of ([] as unknown[]).concat(p.type)) expected.add(String(t));
          else if (e.keyword === 'const') expected.add(JSON.stringify(p.allowedValue));
          else for (const v of p.allowedValues as unknown[]) expected.add(JSON.stringify(v));
        }
      const actual = valueAt(ctx.data, c.instancePath);
      out.push({
        pointer: c.instancePath,
        code: 'type',
        message: `must be ${[...expected].join(' or ') || 'one of the allowed forms'}, got ${jsonType(actual)} ${show(actual)}`,
      });
      continue;
    }
    const best = all.sort((a, b) => b.depth - a.depth || a.errors.length - b.errors.length)[0]!;
    // Re-insert the best branch's errors; nested combinators inside it are handled by recursion.
    for (const issue of humanizeErrors(best.errors, ctx)) out.push(issue);
  }
  for (const e of list) out.push(single(e, ctx));
  // Deduplicate identical issues (ajv can report the same problem through several paths).
  const seen = new Set<string>();
  return out.filter((i) => {
    const k = `${i.pointer}\u0000${i.message}`;
    if (seen.has(k)) return false;
    seen.add(k);
    return true;
  });
}

/**
 * Tracker config files (YAML or JSON): parsing with source positions, validation with the generated
 * validator, and issues located as FILE:LINE:COL. Used by `loadTrackingConfig` and `trackspec validate`.
 * The YAML library is loaded on first use so importing the SDK stays cheap.
 */
import { open } from 'node:fs/promises';
import { ConfigError, ValidationError, type ValidationIssue } from './errors.js';
import { humanizeErrors, pointerSegments } from './humanize.js';
import type { Validator } from './options.js';

export interface LocatedIssue extends ValidationIssue {
  file: string;
  /** 1-based. */
  line: number;
  /** 1-based. */
  col: number;
  severity: 'error';
}

export interface CheckResult {
  /** The parsed document (when it parsed). */
  data?: unknown;
  issues: LocatedIssue[];
}

type YamlModule = typeof import('yaml');
let yamlModule: Promise<YamlModule> | undefined;
const loadYaml = () => (yamlModule ??= import('yaml'));

type YamlNode = import('yaml').Node | import('yaml').Pair | null | undefined;
type YamlMap = import('yaml').YAMLMap<unknown, unknown>;
type YamlPair = import('yaml').Pair<unknown, unknown>;

/** The property name a map key becomes in the parsed object. */
function keyName(yaml: YamlModule, key: unknown): string {
  return yaml.isScalar(key) ? String(key.value) : String(key);
}

/**
 * Index of each map's pairs by key, built once per map on first lookup, so locating N issues in a
 * map of N keys is linear (a scan per issue was quadratic: 80,000 keys took 42 s).
 */
function pairIndex(yaml: YamlModule, cache: WeakMap<YamlMap, Map<string, YamlPair>>, map: YamlMap): Map<string, YamlPair> {
  let index = cache.get(map);
  if (!index) {
    index = new Map();
    for (const p of map.items) {
      const k = keyName(yaml, p.key);
      if (!index.has(k)) index.set(k, p);
    }
    cache.set(map, index);
  }
  return index;
}

/** Position of the node at `pointer`; `atKey` points at the key of the last segment instead of its value. */
function locate(
  yaml: YamlModule,
  doc: import('yaml').Document,
  lineCounter: import('yaml').LineCounter,
  cache: WeakMap<YamlMap, Map<string, YamlPair>>,
  pointer: string,
  atKey: boolean,
): { line: number; col: number } {
  let node: YamlNode = doc.contents;
  let offset = (doc.contents as import('yaml').Node | null)?.range?.[0] ?? 0;
  const segs = pointerSegments(pointer);
  for (let i = 0; i < segs.length; i++) {
    const seg = segs[i]!;
    const last = i === segs.length - 1;
    if (yaml.isMap(node)) {
      const pair = pairIndex(yaml, cache, node).get(seg);
      if (!pair) break;
      const keyNode = pair.key as import('yaml').Node | null;
      if (last && atKey && keyNode?.range) {
        offset = keyNode.range[0];
        break;
      }
      node = pair.value as YamlNode;
      const r = (node as import('yaml').Node | null)?.range ?? keyNode?.range;
      if (r) offset = r[0];
    } else if (yaml.isSeq(node)) {
      node = node.items[Number(seg)] as YamlNode;
      const r = (node as import('yaml').Node | null)?.range;
      if (r) offset = r[0];
    } else break;
  }
  const pos = lineCounter.linePos(offset);
  return { line: pos.line, col: pos.col };
}

/**
 * Repeated keys in any map, found with one Set per map (the yaml library's own `uniqueKeys` check
 * compares every pair with every earlier one: quadratic). Keys are compared as the property names
 * they become, so `1` and `"1"` clash too (one would silently overwrite the other). Iterative, so a
 * deeply nested document cannot overflow the stack here.
 */
function duplicateKeys(yaml: YamlModule, root: unknown): { offset: number; key: string }[] {
  const found: { offset: number; key: string }[] = [];
  const stack: unknown[] = [root];
  const seen = new Set<unknown>();
  while (stack.length > 0) {
    const node = stack.pop();
    if (seen.has(node)) continue;
    seen.add(node);
    if (yaml.isMap(node)) {
      const keys = new Set<string>();
      for (const p of node.items) {
        const k = keyName(yaml, p.key);
        if (keys.has(k)) found.push({ offset: (p.key as import('yaml').Node | null)?.range?.[0] ?? 0, key: k });
        else keys.add(k);
        stack.push(p.value);
      }
    } else if (yaml.isSeq(node)) {
      for (const item of node.items) stack.push(item);
    }
  }
  return found.sort((a, b) => a.offset - b.offset);
}

/** A parse problem: `code` is `parse`, `duplicate-key`, `alias-limit` or `too-deep`. */
export interface ParseProblem {
  line: number;
  col: number;
  code: string;
  message: string;
}

export interface Located {
  /** The parsed document (undefined when it did not parse). */
  data: unknown;
  /** Parse errors, located. */
  errors: ParseProblem[];
  /** 1-based position of the value at `pointer` (or of its key, with atKey). */
  locate(pointer: string, atKey: boolean): { line: number; col: number };
}

const STACK_OVERFLOW = /Maximum call stack size exceeded/;

/**
 * Parse YAML or JSON text keeping source positions. Never throws on bad input: syntax errors,
 * repeated keys, alias bombs (more alias expansions than the yaml library's `maxAliasCount`) and
 * nesting too deep for the parser are all returned as located errors.
 */
export async function parseLocated(text: string): Promise<Located> {
  const yaml = await loadYaml();
  const lineCounter = new yaml.LineCounter();
  const doc = yaml.parseDocument(text, { lineCounter, uniqueKeys: false, prettyErrors: false });
  const at = (offset: number) => lineCounter.linePos(offset);
  const cache = new WeakMap<YamlMap, Map<string, YamlPair>>();
  const result = (data: unknown, errors: ParseProblem[]): Located => ({
    data,
    errors,
    locate: (pointer, atKey) => locate(yaml, doc, lineCounter, cache, pointer, atKey),
  });
  const errors: ParseProblem[] = doc.errors.map((e) => {
    const pos = at(e.pos[0]);
    const message = e.message.split('\n')[0]!;
    if (STACK_OVERFLOW.test(message)) return { ...pos, code: 'too-deep', message: 'nesting too deep for the parser' };
    return { ...pos, code: 'parse', message };
  });
  if (errors.length > 0) return result(undefined, errors);
  const dups = duplicateKeys(yaml, doc.contents);
  if (dups.length > 0) {
    return result(
      undefined,
      dups.map((d) => ({ ...at(d.offset), code: 'duplicate-key', message: `Map keys must be unique; ${JSON.stringify(d.key)} is repeated` })),
    );
  }
  try {
    return result(doc.toJS(), []);
  } catch (e) {
    if (e instanceof ReferenceError && /alias/i.test(e.message)) {
      // An alias bomb ("billion laughs"): report where the first alias is, not the library's stack.
      let offset = 0;
      yaml.visit(doc, {
        Alias(_key, node) {
          offset = node.range?.[0] ?? 0;
          return yaml.visit.BREAK;
        },
      });
      return result(undefined, [
        { ...at(offset), code: 'alias-limit', message: 'too many alias expansions (a YAML alias bomb?); the limit is 100 per document' },
      ]);
    }
    if (e instanceof RangeError && STACK_OVERFLOW.test(e.message)) {
      return result(undefined, [{ ...at(0), code: 'too-deep', message: 'nesting too deep for the parser' }]);
    }
    throw e;
  }
}

/**
 * The largest config file read by default: 8 MiB. Tracker configs are a few KiB; the limit keeps a
 * wrong file (a log, a dataset) from taking minutes and gigabytes. Raise it with `maxBytes`
 * (`trackspec validate --max-bytes N`).
 */
export const DEFAULT_MAX_CONFIG_BYTES = 8 * 1024 * 1024;

export interface ReadConfigOptions {
  /** Files larger than this many bytes are refused (default DEFAULT_MAX_CONFIG_BYTES). */
  maxBytes?: number;
  /** How to tell the user to raise the limit (default "the maxBytes option"). */
  limitName?: string;
}

/**
 * Read a config file as UTF-8 text, refusing files over the size limit (checked before reading)
 * and binary files (a NUL byte, or bytes that are not UTF-8), without quoting their bytes.
 * Returns the text, or the one located issue that stops it from being checked. Errors reading the
 * file itself (ENOENT, EACCES, ...) are thrown as they are.
 */
export async function readConfigText(file: string, options: ReadConfigOptions = {}): Promise<{ text: string } | { issue: LocatedIssue }> {
  const maxBytes = options.maxBytes ?? DEFAULT_MAX_CONFIG_BYTES;
  const issue = (code: string, message: string) => ({ issue: { file, line: 1, col: 1, severity: 'error' as const, code, pointer: '', message } });
  const handle = await open(file, 'r');
  let bytes: Buffer;
  try {
    const size = (await handle.stat()).size;
    if (size > maxBytes) return issue('too-large', tooLarge(size, maxBytes, options.limitName));
    // Read at most maxBytes + 1: a file can grow after stat, and pipes or /proc files report size 0.
    const chunks: Buffer[] = [];
    let n = 0;
    for (;;) {
      const chunk = Buffer.allocUnsafe(Math.min(Math.max(size + 1 - n, 65536), maxBytes + 1 - n));
      const { bytesRead } = await handle.read(chunk, 0, chunk.length, null);
      if (bytesRead === 0) break;
      chunks.push(chunk.subarray(0, bytesRead));
      n += bytesRead;
      if (n > maxBytes) return issue('too-large', tooLarge(n, maxBytes, options.limitName));
    }
    bytes = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, n);
  } finally {
    await handle.close();
  }
  const nul = bytes.indexOf(0);
  if (nul >= 0) return issue('binary', `not a text file (a NUL byte at byte offset ${nul}); a config file is YAML or JSON text`);
  try {
    return { text: new TextDecoder('utf-8', { fatal: true }).decode(bytes) };
  } catch {
    return issue('binary', 'not UTF-8 text; a config file is YAML or JSON text in UTF-8');
  }
}

function tooLarge(size: number, maxBytes: number, limitName = 'the maxBytes option'): string {
  return `file is ${size} bytes, over the ${maxBytes}-byte limit for config files; raise it with ${limitName} if this really is a config file`;
}

/**
 * Parse and validate one config file's text. `schema` is the JSON Schema the validator was built
 * from (for did-you-mean on unknown keys).
 */
export async function checkConfigText(file: string, text: string, validate: Validator, schema: unknown): Promise<CheckResult> {
  const parsed = await parseLocated(text);
  if (parsed.errors.length > 0) {
    return {
      issues: parsed.errors.map((e) => ({ file, line: e.line, col: e.col, severity: 'error', code: e.code, pointer: '', message: e.message })),
    };
  }
  const data = parsed.data;
  let valid: boolean;
  try {
    valid = validate(data) as boolean;
  } catch (e) {
    if (e instanceof RangeError && STACK_OVERFLOW.test(e.message)) {
      return { issues: [{ file, line: 1, col: 1, severity: 'error', code: 'too-deep', pointer: '', message: 'nesting too deep to validate' }] };
    }
    throw e;
  }
  if (valid) return { data, issues: [] };
  const noun = (parent: string) => {
    const segs = pointerSegments(parent);
    if (segs.length === 0) return 'key';
    if (segs.length === 1 && segs[0] === 'init_kwargs') return 'backend';
    if (segs.length === 2 && segs[0] === 'init_kwargs') return `${segs[1]} option`;
    return 'key';
  };
  const issues = humanizeErrors(validate.errors, { data, schema, noun }).map((issue): LocatedIssue => {
    const pos = parsed.locate(issue.pointer, issue.code === 'unknown-key');
    return { pointer: issue.pointer, code: issue.code, message: issue.message, file, line: pos.line, col: pos.col, severity: 'error' };
  });
  const order = (a: LocatedIssue, b: LocatedIssue) => a.line - b.line || a.col - b.col;
  let sorted = true;
  for (let i = 1; i < issues.length && sorted; i++) sorted = order(issues[i - 1]!, issues[i]!) <= 0;
  if (!sorted) issues.sort(order);
  return { data, issues };
}

/** Issue codes that say the file is not a config document at all (or one we refuse to expand). */
const NOT_A_CONFIG = new Set(['too-large', 'binary', 'alias-limit', 'too-deep']);

const listIssues = (issues: readonly LocatedIssue[]) => issues.map((i) => `  ${i.file}:${i.line}:${i.col}  ${i.pointer || '/'}  ${i.message}`).join('\n');

/**
 * Read, parse and validate a config file. A file over the size limit, a binary file, an alias bomb
 * or nesting too deep is a ConfigError; an invalid document is a ValidationError; both list located
 * issues.
 */
export async function loadConfigFile<T>(path: string, validate: Validator, loadSchema: () => Promise<unknown>, options: ReadConfigOptions = {}): Promise<T> {
  const read = await readConfigText(path, options);
  if ('issue' in read) throw new ConfigError(`${path}: not a readable tracker config:\n${listIssues([read.issue])}`, { issues: [read.issue] });
  const text = read.text;
  // The schema is only needed to explain failures; validate first without it.
  let result = await checkConfigText(path, text, validate, undefined);
  if (result.issues.length > 0 && result.issues.some((i) => i.code === 'unknown-key')) {
    result = await checkConfigText(path, text, validate, await loadSchema());
  }
  if (result.issues.some((i) => NOT_A_CONFIG.has(i.code))) {
    throw new ConfigError(`${path}: not a readable tracker config:\n${listIssues(result.issues)}`, { issues: result.issues });
  }
  if (result.issues.length > 0) {
    throw new ValidationError(`${path}: invalid tracker config:\n${listIssues(result.issues)}`, result.issues);
  }
  return result.data as T;
}

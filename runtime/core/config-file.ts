/**
 * Tracker config files (YAML or JSON): parsing with source positions, validation with the generated
 * validator, and issues located as FILE:LINE:COL. Used by `loadTrackingConfig` and `trackspec validate`.
 * The YAML library is loaded on first use so importing the SDK stays cheap.
 */
import { readFile } from 'node:fs/promises';
import { ValidationError, type ValidationIssue } from './errors.js';
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

/** Position of the node at `pointer`; `atKey` points at the key of the last segment instead of its value. */
function locate(
  yaml: YamlModule,
  doc: import('yaml').Document,
  lineCounter: import('yaml').LineCounter,
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
      const pair = node.items.find((p) => (yaml.isScalar(p.key) ? String(p.key.value) : String(p.key)) === seg);
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

export interface Located {
  /** The parsed document (undefined when it did not parse). */
  data: unknown;
  /** Parse errors, located. */
  errors: { line: number; col: number; message: string }[];
  /** 1-based position of the value at `pointer` (or of its key, with atKey). */
  locate(pointer: string, atKey: boolean): { line: number; col: number };
}

/** Parse YAML or JSON text keeping source positions. */
export async function parseLocated(text: string): Promise<Located> {
  const yaml = await loadYaml();
  const lineCounter = new yaml.LineCounter();
  const doc = yaml.parseDocument(text, { lineCounter, uniqueKeys: true, prettyErrors: false });
  const errors = doc.errors.map((e) => {
    const pos = lineCounter.linePos(e.pos[0]);
    return { line: pos.line, col: pos.col, message: e.message.split('\n')[0]! };
  });
  return {
    data: errors.length ? undefined : doc.toJS(),
    errors,
    locate: (pointer, atKey) => locate(yaml, doc, lineCounter, pointer, atKey),
  };
}

/**
 * Parse and validate one config file's text. `schema` is the JSON Schema the validator was built
 * from (for did-you-mean on unknown keys).
 */
export async function checkConfigText(file: string, text: string, validate: Validator, schema: unknown): Promise<CheckResult> {
  const parsed = await parseLocated(text);
  if (parsed.errors.length > 0) {
    return {
      issues: parsed.errors.map((e) => ({ file, line: e.line, col: e.col, severity: 'error', code: 'parse', pointer: '', message: e.message })),
    };
  }
  const data = parsed.data;
  if (validate(data)) return { data, issues: [] };
  const noun = (parent: string) => {
    const segs = pointerSegments(parent);
    if (segs.length === 0) return 'key';
    if (segs.length === 1 && segs[0] === 'init_kwargs') return 'backend';
    if (segs.length === 2 && segs[0] === 'init_kwargs') return `${segs[1]} option`;
    return 'key';
  };
  const issues = humanizeErrors(validate.errors, { data, schema, noun }).map((issue): LocatedIssue => {
    const pos = parsed.locate(issue.pointer, issue.code === 'unknown-key');
    return { ...issue, file, line: pos.line, col: pos.col, severity: 'error' };
  });
  issues.sort((a, b) => a.line - b.line || a.col - b.col);
  return { data, issues };
}

/** Read, parse and validate a config file; throws ValidationError listing located issues. */
export async function loadConfigFile<T>(path: string, validate: Validator, loadSchema: () => Promise<unknown>): Promise<T> {
  const text = await readFile(path, 'utf8');
  // The schema is only needed to explain failures; validate first without it.
  let result = await checkConfigText(path, text, validate, undefined);
  if (result.issues.length > 0 && result.issues.some((i) => i.code === 'unknown-key')) {
    result = await checkConfigText(path, text, validate, await loadSchema());
  }
  if (result.issues.length > 0) {
    throw new ValidationError(
      `${path}: invalid tracker config:\n${result.issues.map((i) => `  ${i.file}:${i.line}:${i.col}  ${i.pointer || '/'}  ${i.message}`).join('\n')}`,
      result.issues,
    );
  }
  return result.data as T;
}

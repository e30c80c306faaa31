/**
 * Tracker config files (YAML or JSON): parsing with source positions, validation with the generated
 * validator, and issues located as FILE:LINE:COL. Used by `loadTrackingConfig`, `trackspec validate` and
 * the generator's spec loader. js-yaml is loaded on first use so importing the SDK stays cheap.
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

type JsYaml = typeof import('js-yaml');
type YamlEvent = import('js-yaml').Event;
type Schema = import('js-yaml').Schema;
let jsYamlModule: Promise<JsYaml> | undefined;
const loadJsYaml = () => (jsYamlModule ??= import('js-yaml'));

/**
 * Deepest nesting of collections accepted. Tracker configs nest a few levels; js-yaml's parser
 * recurses (~1,600 levels fit the default stack), and the parser used before gave out at ~850.
 */
const MAX_DEPTH = 1000;
/** Alias expansions allowed per document, counted as the `yaml` library counted them (its `maxAliasCount`). */
const MAX_ALIAS_COUNT = 100;

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

/** Offset → 1-based line and column (UTF-16 code units, as the `yaml` library's LineCounter); the line table is built on first use. */
function lineCounter(text: string): (offset: number) => { line: number; col: number } {
  let starts: number[] | undefined;
  return (offset) => {
    if (!starts) {
      starts = [0];
      for (let i = text.indexOf('\n'); i >= 0; i = text.indexOf('\n', i + 1)) starts.push(i + 1);
    }
    let lo = 0;
    let hi = starts.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (starts[mid]! <= offset) lo = mid;
      else hi = mid - 1;
    }
    return { line: lo + 1, col: offset - starts[lo]! + 1 };
  };
}

/**
 * One document as js-yaml's flat event list (the parser's output, with source offsets), and what
 * locating, duplicate keys and the alias limit need from it. Event `i` is a node; its subtree runs to
 * `end(i)` (a POP for collections), so its next sibling is `end(i) + 1`. Everything is built on first
 * use, in time linear in the events.
 */
class EventDoc {
  private ends: Int32Array | undefined;
  private readonly maps = new Map<number, Map<string, number>>();
  private readonly seqs = new Map<number, number[]>();
  private readonly dashes = new Map<number, number[]>();
  private implicitFirst: Set<string> | null | undefined;
  private targets: Map<number, number> | undefined;
  /** js-yaml's constants, held here: reading them through the module namespace on every event was slow. */
  private readonly E: JsYaml['EVENT_ID'];
  private readonly S: JsYaml['SCALAR_STYLE'];
  private readonly scalarValue: JsYaml['getScalarValue'];

  constructor(
    private readonly y: JsYaml,
    private readonly text: string,
    readonly events: YamlEvent[],
    /** Index of the document's DOCUMENT event. */
    private readonly docIndex: number,
    private readonly schema: Schema,
  ) {
    this.E = y.EVENT_ID;
    this.S = y.SCALAR_STYLE;
    this.scalarValue = y.getScalarValue;
  }

  /** Index of the root node, or -1 for an empty document. */
  get root(): number {
    const i = this.docIndex + 1;
    return i < this.events.length && this.events[i]!.type !== this.E.POP ? i : -1;
  }

  /** Index of the last event of the node at `i` (its POP for a collection). */
  end(i: number): number {
    if (!this.ends) {
      const E = this.E;
      const ends = new Int32Array(this.events.length);
      const open: number[] = [];
      for (let j = 0; j < this.events.length; j++) {
        const t = this.events[j]!.type;
        if (t === E.SCALAR || t === E.ALIAS) ends[j] = j;
        else if (t === E.POP) ends[open.pop()!] = j;
        else open.push(j);
      }
      this.ends = ends;
    }
    return this.ends[i]!;
  }

  /** Where the node at `i` starts, as the `yaml` library's `range[0]`: the quote, the `|`/`>`, the `*`, the `[`/`{`, the first key or `-`. -1 for an empty scalar without anchor or tag. */
  offset(i: number): number {
    const ev = this.events[i]!;
    const E = this.E;
    const S = this.S;
    switch (ev.type) {
      case E.SCALAR:
        if (ev.valueStart < 0) return Math.max(ev.anchorEnd, ev.tagEnd); // empty: after its props, if any
        if (ev.style === S.SINGLE_QUOTED || ev.style === S.DOUBLE_QUOTED) return ev.valueStart - 1;
        if (ev.style === S.LITERAL_BLOCK || ev.style === S.FOLDED_BLOCK) return this.blockIndicator(i);
        return ev.valueStart;
      case E.ALIAS:
        return ev.anchorStart - 1;
      case E.MAPPING:
      case E.SEQUENCE:
        return ev.start;
      default:
        return -1;
    }
  }

  /**
   * The `|` or `>` of a block scalar: its content starts on the line after the header, so the
   * indicator is the first `|`/`>` on the header line after whatever precedes it there (the key, a
   * `-`, the scalar's own anchor and tag); only a comment can follow it.
   */
  private blockIndicator(i: number): number {
    const ev = this.events[i] as import('js-yaml').ScalarEvent;
    const text = this.text;
    const headerEnd = ev.valueStart - 1;
    let lo = text.lastIndexOf('\n', headerEnd - 1) + 1;
    lo = Math.max(lo, ev.anchorEnd, ev.tagEnd);
    for (let j = i - 1; j >= 0; j--) {
      const prev = this.events[j]!;
      const E = this.E;
      if (prev.type === E.SCALAR) lo = Math.max(lo, prev.valueEnd, prev.anchorEnd, prev.tagEnd);
      else if (prev.type === E.ALIAS) lo = Math.max(lo, prev.anchorEnd);
      else if (prev.type === E.MAPPING || prev.type === E.SEQUENCE) lo = Math.max(lo, prev.start, prev.anchorEnd, prev.tagEnd);
      else continue;
      break;
    }
    for (let j = lo; j < headerEnd; j++) {
      const c = text.charCodeAt(j);
      if (c === 0x7c /* | */ || c === 0x3e /* > */) return j;
    }
    return ev.valueStart;
  }

  /** An empty value is where the `yaml` library put it: after the `:` that follows its key and any blanks (-1 if no `:` does). */
  private emptyValue(key: number): number {
    const ev = this.events[key]!;
    const E = this.E;
    let j: number;
    if (ev.type === E.SCALAR) j = ev.valueEnd + (ev.style === this.S.SINGLE_QUOTED || ev.style === this.S.DOUBLE_QUOTED ? 1 : 0);
    else if (ev.type === E.ALIAS) j = ev.anchorEnd;
    else return -1;
    if (j < 0) return -1;
    const text = this.text;
    while (j < text.length && (text[j] === ' ' || text[j] === '\t' || text[j] === '\r' || text[j] === '\n')) j++;
    if (text[j] !== ':') return -1;
    j++;
    while (text[j] === ' ' || text[j] === '\t') j++;
    return j;
  }

  /**
   * An empty item of a block sequence is where the `yaml` library put it: after its `-` and any
   * blanks. The sequence's dashes are the first one (its start) and every later line whose first
   * non-blank is a `-` in the same column, up to a line that starts further left or with something
   * else in that column; found once per sequence.
   */
  private emptyItem(seq: number, item: number): number {
    let dashes = this.dashes.get(seq);
    if (!dashes) {
      const text = this.text;
      const start = (this.events[seq] as import('js-yaml').SequenceEvent).start;
      const col = start - (text.lastIndexOf('\n', start - 1) + 1);
      const isDash = (j: number) => text[j] === '-' && (j + 1 === text.length || /\s/.test(text[j + 1]!));
      dashes = [start];
      for (let ls = text.indexOf('\n', start) + 1; ls > 0 && ls < text.length; ls = text.indexOf('\n', ls) + 1) {
        let j = ls;
        while (text[j] === ' ') j++;
        if (text[j] === '\n' || text[j] === '\r' || text[j] === '#' || j === text.length) continue; // blank or comment line
        if (j - ls < col) break;
        if (j - ls === col) {
          if (!isDash(j)) break;
          dashes.push(j);
        }
      }
      this.dashes.set(seq, dashes);
    }
    let j = dashes[item];
    if (j === undefined) return -1;
    j++;
    while (this.text[j] === ' ' || this.text[j] === '\t') j++;
    return j;
  }

  /** The property name the key at `i` becomes (js-yaml's object maps use `String(key)`); undefined for a collection key. */
  keyName(i: number): string | undefined {
    const y = this.y;
    const ev = this.events[i]!;
    if (ev.type === this.E.ALIAS) {
      const t = this.aliasTargets().get(i);
      return t !== undefined && this.events[t]!.type === this.E.SCALAR ? this.keyName(t) : undefined;
    }
    if (ev.type !== this.E.SCALAR) return undefined;
    const source = this.scalarValue(this.text, ev);
    if (ev.tagStart < 0 && (ev.style !== this.S.PLAIN || !this.mayResolve(source))) return source;
    // A plain key that may be a null, bool, int or float, or a tagged key: resolve it as js-yaml does.
    try {
      const value = y.constructFromEvents([this.events[this.docIndex]!, ev, { type: this.E.POP }], { source: this.text, schema: this.schema })[0];
      return value !== null && typeof value === 'object' ? undefined : String(value);
    } catch {
      return source; // js-yaml's own construction reports it
    }
  }

  /** For each alias event, the event it refers to: the last node before it with that anchor. */
  aliasTargets(): Map<number, number> {
    if (!this.targets) {
      const E = this.E;
      const targets = new Map<number, number>();
      const byName = new Map<string, number>();
      for (let i = 0; i < this.events.length; i++) {
        const ev = this.events[i]!;
        if (ev.type === E.ALIAS) {
          const t = byName.get(this.text.slice(ev.anchorStart, ev.anchorEnd));
          if (t !== undefined) targets.set(i, t);
        } else if ((ev.type === E.SCALAR || ev.type === E.MAPPING || ev.type === E.SEQUENCE) && ev.anchorStart >= 0) {
          byName.set(this.text.slice(ev.anchorStart, ev.anchorEnd), i);
        }
      }
      this.targets = targets;
    }
    return this.targets;
  }

  /** Whether a plain scalar could resolve to something other than a string in this schema (by its first character). */
  private mayResolve(source: string): boolean {
    if (this.implicitFirst === undefined) {
      let first: Set<string> | null = new Set();
      for (const tag of this.schema.tags) {
        if (tag.nodeKind !== 'scalar' || !tag.implicit || tag.tagName === 'tag:yaml.org,2002:str') continue;
        if (tag.implicitFirstChars === null) first = null;
        else if (first) for (const c of tag.implicitFirstChars) first.add(c);
      }
      this.implicitFirst = first;
    }
    return this.implicitFirst === null || this.implicitFirst.has(source.charAt(0));
  }

  /** Key index of the mapping at `m`: property name → event index of its (first) key. */
  mapIndex(m: number): Map<string, number> {
    let index = this.maps.get(m);
    if (!index) {
      index = new Map();
      const POP = this.E.POP;
      for (let k = m + 1; this.events[k]!.type !== POP; k = this.end(this.end(k) + 1) + 1) {
        const name = this.keyName(k);
        if (name !== undefined && !index.has(name)) index.set(name, k);
      }
      this.maps.set(m, index);
    }
    return index;
  }

  /** Event indexes of the items of the sequence at `s`. */
  seqItems(s: number): number[] {
    let items = this.seqs.get(s);
    if (!items) {
      items = [];
      const POP = this.E.POP;
      for (let k = s + 1; this.events[k]!.type !== POP; k = this.end(k) + 1) items.push(k);
      this.seqs.set(s, items);
    }
    return items;
  }

  /** Offset of the node at `pointer`, or of its key with `atKey` (as the `yaml`-based locator did). */
  locate(pointer: string, atKey: boolean): number {
    const E = this.E;
    let node = this.root;
    if (node < 0) return 0;
    let offset = Math.max(this.offset(node), 0);
    const segs = pointerSegments(pointer);
    for (let i = 0; i < segs.length; i++) {
      const seg = segs[i]!;
      const type = this.events[node]!.type;
      if (type === E.MAPPING) {
        const key = this.mapIndex(node).get(seg);
        if (key === undefined) break;
        if (i === segs.length - 1 && atKey) return Math.max(this.offset(key), offset);
        node = this.end(key) + 1;
        let at = this.offset(node);
        if (at < 0) at = this.emptyValue(key);
        offset = at >= 0 ? at : Math.max(this.offset(key), offset);
      } else if (type === E.SEQUENCE) {
        const seqIndex = node;
        const seq = this.events[node] as import('js-yaml').SequenceEvent;
        const item = this.seqItems(node)[Number(seg)];
        if (item === undefined) break;
        node = item;
        let at = this.offset(node);
        if (at < 0 && seq.style === this.y.COLLECTION_STYLE.BLOCK) at = this.emptyItem(seqIndex, Number(seg));
        if (at >= 0) offset = at;
      } else break;
    }
    return offset;
  }

  /** The first key that is a mapping or a sequence (js-yaml's object maps refuse them), or -1. */
  firstComplexKey(): number {
    const { MAPPING, SEQUENCE, POP } = this.E;
    for (let m = 0; m < this.events.length; m++) {
      if (this.events[m]!.type !== MAPPING) continue;
      for (let k = m + 1; this.events[k]!.type !== POP; k = this.end(this.end(k) + 1) + 1) {
        const t = this.events[k]!.type;
        if (t === MAPPING || t === SEQUENCE) return k;
      }
    }
    return -1;
  }

  /** Repeated keys in every mapping (keys compared as the property names they become, so `1` and `"1"` clash), in document order. */
  duplicateKeys(): { offset: number; key: string }[] {
    const found: { offset: number; key: string }[] = [];
    const { MAPPING, POP } = this.E;
    for (let m = 0; m < this.events.length; m++) {
      if (this.events[m]!.type !== MAPPING) continue;
      const seen = new Set<string>();
      for (let k = m + 1; this.events[k]!.type !== POP; k = this.end(this.end(k) + 1) + 1) {
        const name = this.keyName(k);
        if (name === undefined) continue;
        if (seen.has(name)) found.push({ offset: this.offset(k), key: name });
        else seen.add(name);
      }
    }
    return found.sort((a, b) => a.offset - b.offset);
  }

  /**
   * The first alias, when the document expands aliases more than MAX_ALIAS_COUNT times by the rule
   * of the `yaml` library used before (Document.toJS's `maxAliasCount`: each anchor counts its
   * aliases, weighted by the largest such count inside it), so the same documents are refused.
   * js-yaml itself expands aliases by reference, cheaply, but whatever walks the value afterwards
   * (validation, logging the config) would not. Linear: each anchor's weight is computed once.
   */
  aliasBomb(): number | undefined {
    const E = this.E;
    const events = this.events;
    let first = -1;
    for (let i = 0; i < events.length && first < 0; i++) if (events[i]!.type === E.ALIAS) first = i;
    if (first < 0) return undefined;
    const target = this.aliasTargets();
    const data = new Map<number, { count: number; aliasCount: number; weighed: boolean }>();
    const weigh = (t: number): number => {
      const ev = events[t]!;
      if (ev.type === E.SCALAR) return 1;
      let max = 0;
      for (let j = t + 1; j < this.end(t); j++) {
        const leaf = events[j]!;
        let c = 0;
        if (leaf.type === E.SCALAR) c = 1;
        else if (leaf.type === E.ALIAS) {
          const d = data.get(target.get(j) ?? -1);
          c = d ? d.count * d.aliasCount : 0;
        }
        if (c > max) max = c;
      }
      return max;
    };
    for (let i = 0; i < events.length; i++) {
      const ev = events[i]!;
      if (ev.type === E.ALIAS) {
        const d = data.get(target.get(i) ?? -1);
        if (!d) continue;
        d.count += 1;
        if (!d.weighed) {
          d.aliasCount = weigh(target.get(i)!);
          d.weighed = true;
        }
        if (d.count * d.aliasCount > MAX_ALIAS_COUNT) return first;
      } else if ((ev.type === E.SCALAR || ev.type === E.MAPPING || ev.type === E.SEQUENCE) && ev.anchorStart >= 0) {
        data.set(i, { count: 1, aliasCount: 0, weighed: false });
      }
    }
    return undefined;
  }
}

function yamlProblem(y: JsYaml, e: unknown, at: (offset: number) => { line: number; col: number }): ParseProblem | undefined {
  if (e instanceof RangeError && STACK_OVERFLOW.test(e.message)) return { ...at(0), code: 'too-deep', message: 'nesting too deep for the parser' };
  if (!(e instanceof y.YAMLException)) return undefined;
  let offset = e.mark?.position ?? 0;
  if (offset > 0 && e.mark?.buffer[offset - 1] === '*') offset--; // an alias: at its `*`, not its name
  const pos = at(offset);
  if (e.reason.startsWith('nesting exceeded maxDepth')) return { ...pos, code: 'too-deep', message: 'nesting too deep for the parser' };
  return { ...pos, code: 'parse', message: e.reason };
}

/**
 * Parse YAML or JSON text keeping source positions. Never throws on bad input: syntax errors,
 * repeated keys, alias bombs (by the `yaml` library's `maxAliasCount` rule, 100) and nesting deeper
 * than 1,000 levels are all returned as located errors.
 *
 * One parse, linear in the text: js-yaml's parser emits a flat list of events with source offsets,
 * js-yaml builds the value from those events (YAML 1.2 core schema; 1.1 under a `%YAML 1.1`
 * directive), and positions are worked out from the same events only when something asks for one
 * (an issue to locate, a repeated key).
 */
export async function parseLocated(text: string): Promise<Located> {
  const y = await loadJsYaml();
  const at = lineCounter(text);
  const failed = (errors: ParseProblem[]): Located => ({ data: undefined, errors, locate: () => at(0) });
  let events: YamlEvent[];
  try {
    events = y.parseEvents(text, { maxDepth: MAX_DEPTH + 1 }); // js-yaml counts the document as a level
  } catch (e) {
    const problem = yamlProblem(y, e, at);
    if (!problem) throw e;
    return failed([problem]);
  }
  const E = y.EVENT_ID;
  let second = -1;
  for (let i = 1; i < events.length; i++) {
    if (events[i]!.type === E.DOCUMENT) {
      second = i;
      break;
    }
  }
  if (second > 0) return failed([{ ...at(secondDocument(y, text, events, second)), code: 'parse', message: 'more than one YAML document (a second "---"); a config file is one document' }]);
  if (events.length === 0) return { data: null, errors: [], locate: () => at(0) };
  const docEvent = events[0] as import('js-yaml').DocumentEvent;
  const schema = docEvent.directives.some((d) => d.kind === 'yaml' && d.version === '1.1') ? y.YAML11_SCHEMA : y.CORE_SCHEMA;
  const doc = new EventDoc(y, text, events, 0, schema);
  const locate = (pointer: string, atKey: boolean) => at(doc.locate(pointer, atKey));
  let data: unknown;
  try {
    data = y.constructFromEvents(events, { source: text, schema })[0] ?? null;
  } catch (e) {
    if (e instanceof y.YAMLException && e.reason === 'duplicated mapping key') {
      // js-yaml stops at the first; list them all.
      const dups = doc.duplicateKeys();
      if (dups.length > 0) {
        return failed(dups.map((d) => ({ ...at(d.offset), code: 'duplicate-key', message: `Map keys must be unique; ${JSON.stringify(d.key)} is repeated` })));
      }
    }
    const problem = yamlProblem(y, e, at);
    if (!problem) throw e;
    if (e instanceof y.YAMLException && e.reason.includes('complex keys')) {
      // js-yaml points at the map; point at the key.
      const key = doc.firstComplexKey();
      if (key >= 0) Object.assign(problem, at(doc.offset(key)));
    }
    return failed([problem]);
  }
  const bomb = doc.aliasBomb();
  if (bomb !== undefined) {
    return failed([{ ...at(doc.offset(bomb)), code: 'alias-limit', message: `too many alias expansions (a YAML alias bomb?); the limit is ${MAX_ALIAS_COUNT} per document` }]);
  }
  return { data, errors: [], locate };
}

/** Offset of the second document's `---` (or of its first node). */
function secondDocument(y: JsYaml, text: string, events: YamlEvent[], second: number): number {
  const doc = new EventDoc(y, text, events, 0, y.CORE_SCHEMA);
  let before = 0;
  for (let i = 0; i < second; i++) before = Math.max(before, doc.offset(i));
  let content = text.length;
  for (let i = second + 1; i < events.length && events[i]!.type !== y.EVENT_ID.DOCUMENT; i++) {
    const o = doc.offset(i);
    if (o >= 0) {
      content = o;
      break;
    }
  }
  const marker = text.lastIndexOf('---', content);
  return marker > before ? marker : content < text.length ? content : before;
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
  return check(file, text, validate, () => schema);
}

/** checkConfigText, asking for the schema only once the document has failed validation (with ajv's errors). */
async function check(
  file: string,
  text: string,
  validate: Validator,
  schemaFor: (errors: NonNullable<Validator['errors']>) => unknown,
): Promise<CheckResult> {
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
  const schema = await schemaFor(validate.errors ?? []);
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
  // The schema is only needed for did-you-mean on unknown keys: load it only then (one parse, one validation).
  const result = await check(path, text, validate, (errors) => (errors.some((e) => e.keyword === 'additionalProperties') ? loadSchema() : undefined));
  if (result.issues.some((i) => NOT_A_CONFIG.has(i.code))) {
    throw new ConfigError(`${path}: not a readable tracker config:\n${listIssues(result.issues)}`, { issues: result.issues });
  }
  if (result.issues.length > 0) {
    throw new ValidationError(`${path}: invalid tracker config:\n${listIssues(result.issues)}`, result.issues);
  }
  return result.data as T;
}

/**
 * How dvclive 3.49.0 spells things on disk: metric names as paths, TSV cells (Python's `str()` and
 * `csv.DictWriter(delimiter="\t")` quoting), metrics.json tokens (Python's `json.dump`), and the
 * dvc.yaml entries `make_dvcyaml` writes.
 */
import * as os from 'node:os';
import * as path from 'node:path';
import { ValidationError } from '../../core/errors.js';
import { pyFloatRepr, pyJsonString } from '../../io/python-repr.js';

/** Values a metric can hold (dvclive's `Metric.could_log`: int, float, str; bool is an int in Python). */
export type MetricValue = number | boolean | string;

/** Line terminator of dvclive's TSV writer (`os.linesep`). */
export const EOL = os.EOL;

const MAX_SEGMENT_BYTES = 250;

function pointer(key: string): string {
  return `/${key.replace(/~/g, '~0').replace(/\//g, '~1')}`;
}

/**
 * Why `name` cannot be a dvclive metric or image name (it becomes a path under `plots/`), or
 * undefined when it can. Every segment must be a plain file name: no empty, `.` or `..` segment,
 * no leading `/`, no NUL, and on Windows no `\` or `:`.
 */
export function nameProblem(name: string): string | undefined {
  if (name.length === 0) return 'is empty';
  if (name.includes('\0')) return 'contains a NUL character';
  if (process.platform === 'win32' && /[\\:]/.test(name)) return "contains '\\' or ':', which are path separators on Windows";
  for (const seg of name.split('/')) {
    if (seg === '' || seg === '.' || seg === '..') {
      return `would leave plots/ or name another file when used as a path (segment '${seg}'): no '..', '.', leading or trailing '/', or '//'`;
    }
    if (Buffer.byteLength(seg) > MAX_SEGMENT_BYTES) return `has a path segment longer than ${MAX_SEGMENT_BYTES} bytes`;
  }
  return undefined;
}

/** Throw the ValidationError for a bad metric or image name. */
export function checkName(where: string, what: string, name: string): void {
  const problem = nameProblem(name);
  if (problem === undefined) return;
  throw new ValidationError(`${where}: ${what} name ${JSON.stringify(name)} ${problem}`, [
    { pointer: pointer(name), code: 'bad-name', message: `${JSON.stringify(name)} ${problem}` },
  ]);
}

/** Throw the ValidationError for a name whose place in metrics.json is taken. */
export function conflict(where: string, name: string, other: string): never {
  const message = `metric ${JSON.stringify(name)} conflicts with ${JSON.stringify(other)}: metrics.json nests names at '/', so one name cannot be both a value and a group`;
  throw new ValidationError(`${where}: ${message}`, [{ pointer: pointer(name), code: 'name-conflict', message }]);
}

/**
 * A TSV cell as dvclive writes it: Python's `str()` of the value, csv-quoted when needed. Booleans
 * are written as the ints 1/0: dvclive would write `True`/`False`, which its own Studio reader
 * (`_cast_to_numbers`) cannot parse.
 */
export function tsvCell(v: MetricValue): string {
  if (typeof v === 'number') return pyFloatRepr(v);
  if (typeof v === 'boolean') return v ? '1' : '0';
  if (v.includes('\t') || v.includes('"') || v.includes('\n') || v.includes('\r')) return `"${v.replace(/"/g, '""')}"`;
  return v;
}

/** A metric value as a metrics.json token (NaN/±Infinity as the strings dvclive stores). */
export function jsonToken(v: MetricValue): string {
  if (typeof v === 'number') {
    if (Number.isNaN(v)) return '"nan"';
    if (v === Infinity) return '"inf"';
    if (v === -Infinity) return '"-inf"';
    return pyFloatRepr(v);
  }
  if (typeof v === 'boolean') return v ? '1' : '0';
  return pyJsonString(v);
}

/** A value read back from an existing metrics.json (resume), as a token. */
export function foreignToken(v: unknown): string {
  if (typeof v === 'number') return Number.isInteger(v) ? String(v) : pyFloatRepr(v);
  if (typeof v === 'string') return pyJsonString(v);
  return JSON.stringify(v) ?? 'null';
}

/** `dvclive.utils.rel_path`: POSIX path of `p` relative to `from`. */
export function relPosix(p: string, from: string): string {
  return path.relative(from, p).split(path.sep).join('/') || '.';
}

export type DvcYamlEntry = string | Record<string, Record<string, string>>;

export interface DvcYamlSections {
  params?: DvcYamlEntry[];
  metrics?: DvcYamlEntry[];
  plots?: DvcYamlEntry[];
}

/** The path an entry names (a string, or the single key of a one-key object). */
export function entryPath(e: unknown): string | undefined {
  if (typeof e === 'string') return e;
  if (e !== null && typeof e === 'object' && !Array.isArray(e)) {
    const keys = Object.keys(e);
    if (keys.length === 1) return keys[0];
  }
  return undefined;
}

/**
 * Whether an existing dvc.yaml entry is one of ours (replaced at every update). dvclive checks
 * whether `<relpath(dir)>/` occurs in the entry, which never matches when dvc.yaml is inside the
 * directory (relpath `.`) and so appends duplicates at every step (an upstream bug); here an entry
 * is ours when it lies under the directory, or, for a dvc.yaml inside it, names one of its files.
 */
export function isOwnEntry(e: unknown, relDir: string): boolean {
  const p = entryPath(e);
  if (p === undefined) return false;
  if (relDir === '.') return p === 'params.yaml' || p === 'metrics.json' || p === 'plots/metrics' || p === 'plots/images';
  return p.startsWith(`${relDir}/`);
}

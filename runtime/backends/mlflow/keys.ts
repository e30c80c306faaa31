/**
 * MLflow's client-visible rules, checked before anything is sent: key syntax, limits, and how
 * values are written (params as Python's str(), file-store floats as Python's repr()).
 */
import { pyFloatRepr } from '../../io/python-repr.js';

export const MAX_KEY_LENGTH = 250;
export const MAX_PARAM_VALUE_LENGTH = 6000;
export const MAX_TAG_VALUE_LENGTH = 5000;
export const MAX_METRICS_PER_BATCH = 1000;
export const MAX_PARAMS_PER_BATCH = 100;
export const MAX_TAGS_PER_BATCH = 100;
export const MAX_ENTRIES_PER_BATCH = 1000;

const KEY_CHARS = /^[/\p{L}\p{N}_.\- ]*$/u; // Python's Unicode \w, plus / . - space

/** Why `key` is not a valid MLflow metric/param/tag key, or undefined when it is. */
export function keyProblem(key: string): string | undefined {
  if (key.length === 0) return 'is empty';
  if (key.length > MAX_KEY_LENGTH) return `has length ${key.length}, over MLflow's limit of ${MAX_KEY_LENGTH}`;
  if (!KEY_CHARS.test(key)) {
    return 'may only contain alphanumerics, underscores (_), dashes (-), periods (.), spaces ( ) and slashes (/)';
  }
  const norm = normpath(key);
  if (norm !== key || norm === '.' || norm.startsWith('..') || norm.startsWith('/')) {
    return `must not resolve to another name when treated as a path (it resolves to '${norm}'): no '..', leading '/', '//', '/./' or trailing '/'`;
  }
  return undefined;
}

/** MLflow's `_RUN_ID_REGEX` (`^[a-zA-Z0-9][\w\-]{0,255}$`, Python's Unicode `\w`), without Python's `$` quirk of allowing a final newline. */
export const RUN_ID_PATTERN = /^[a-zA-Z0-9][\p{L}\p{N}_-]{0,255}$/u;
/** MLflow's `_EXPERIMENT_ID_REGEX` (`^[a-zA-Z0-9][\w\-]{0,63}$`). */
export const EXPERIMENT_ID_PATTERN = /^[a-zA-Z0-9][\p{L}\p{N}_-]{0,63}$/u;

/** Why `id` is not a valid MLflow run id (MLflow's `_validate_run_id`), or undefined when it is. */
export function runIdProblem(id: string): string | undefined {
  if (RUN_ID_PATTERN.test(id)) return undefined;
  return "is not a valid MLflow run id: a letter or digit, then up to 255 letters, digits, '_' or '-' (MLflow's ids are 32 hex digits)";
}

/** Why `id` is not a valid MLflow experiment id (MLflow's `_validate_experiment_id`), or undefined when it is. */
export function experimentIdProblem(id: string): string | undefined {
  if (EXPERIMENT_ID_PATTERN.test(id)) return undefined;
  return "is not a valid MLflow experiment id: a letter or digit, then up to 63 letters, digits, '_' or '-'";
}

/** Python's posixpath.normpath, which MLflow compares keys against. */
function normpath(path: string): string {
  if (path === '') return '.';
  const initial = path.startsWith('/') ? (path.startsWith('//') && !path.startsWith('///') ? 2 : 1) : 0;
  const out: string[] = [];
  for (const comp of path.split('/')) {
    if (comp === '' || comp === '.') continue;
    if (comp !== '..' || (initial === 0 && out.length === 0) || (out.length > 0 && out[out.length - 1] === '..')) out.push(comp);
    else if (out.length > 0) out.pop();
  }
  const joined = '/'.repeat(initial) + out.join('/');
  return joined || '.';
}

/** Python's repr() of a float, as the file store writes metric values (one implementation, shared). */
export { pyFloatRepr };

/** A param value as Python's str() would render it (MLflow stores params as strings). */
export function paramString(v: unknown): string {
  if (v === null || v === undefined) return 'None';
  if (v === true) return 'True';
  if (v === false) return 'False';
  if (typeof v === 'number') return Number.isInteger(v) && Math.abs(v) < 1e16 ? String(v) : pyFloatRepr(v);
  if (typeof v === 'string') return v;
  return JSON.stringify(v) ?? String(v);
}

/** A metric value on the REST wire: finite numbers as numbers, the rest as MLflow's strings. */
export function wireMetricValue(v: number): number | string {
  if (Number.isFinite(v)) return v;
  if (Number.isNaN(v)) return 'NaN';
  return v > 0 ? 'Infinity' : '-Infinity';
}

/**
 * Identity of a logged point for de-duplication. sqlite-backed servers store ±Infinity as ±DBL_MAX,
 * so both spellings are the same point.
 */
export function metricPointKey(timestamp: number, step: number, value: number): string {
  const v = Number.isNaN(value) ? 'nan' : Math.abs(value) >= Number.MAX_VALUE ? (value > 0 ? 'inf' : '-inf') : String(value);
  return `${timestamp}|${step}|${v}`;
}

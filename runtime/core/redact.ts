/**
 * What printing a tracker or its options may show: options the spec marks `x-secret` (API keys) are
 * replaced by `[redacted]`, and credentials inside URL strings (`user:password@`, and query
 * parameters named like token/key/secret/password/auth) by `***`. Used by `util.inspect` /
 * `console.log` and `JSON.stringify` of resolved options and of trackers.
 */

export const REDACTED = '[redacted]';

const INSPECT = Symbol.for('nodejs.util.inspect.custom');
const URL_WITH_USERINFO = /^([a-z][a-z0-9+.-]*:\/\/)([^/?#@\s]*@)/i;
const SECRET_PARAM = /([?&][^=&#]*(?:token|key|secret|password|auth)[^=&#]*=)([^&#]*)/gi;

/** `s` with URL credentials replaced by `***`; other strings unchanged. */
export function redactUrl(s: string): string {
  if (!s.includes('://')) return s;
  return s.replace(URL_WITH_USERINFO, '$1***@').replace(SECRET_PARAM, '$1***');
}

function redactValue(v: unknown, depth: number): unknown {
  if (typeof v === 'string') return redactUrl(v);
  if (depth > 8 || v === null || typeof v !== 'object') return v;
  if (Array.isArray(v)) return v.map((x) => redactValue(x, depth + 1));
  const out: Record<string, unknown> = {};
  for (const [k, x] of Object.entries(v)) out[k] = redactValue(x, depth + 1);
  return out;
}

/** A copy of `options` safe to print: secret options redacted (when set), URL credentials hidden. */
export function redactOptions(options: Readonly<Record<string, unknown>>, secrets: ReadonlySet<string>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(options)) {
    out[k] = secrets.has(k) && v !== null && v !== undefined ? REDACTED : redactValue(v, 0);
  }
  return out;
}

/**
 * Give `target` non-enumerable `toJSON` and `util.inspect.custom` methods that show `view()`
 * instead of the object itself. Property access is unchanged (drivers still read the real values).
 */
export function printAs(target: object, view: () => unknown): void {
  Object.defineProperty(target, 'toJSON', { value: view, enumerable: false, configurable: true, writable: true });
  Object.defineProperty(target, INSPECT, { value: view, enumerable: false, configurable: true, writable: true });
}

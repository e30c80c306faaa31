/**
 * How Python writes values, for backends whose files are read by Python tools: `repr()` of a float,
 * `str()` of a value, and `json.dumps(..., indent=N)` (ensure_ascii) of a JSON token tree.
 */

/** Python's repr() (and str()) of a float: `1.0`, `0.5`, `1e-07`, `1e+16`, `nan`, `inf`, `-inf`. */
export function pyFloatRepr(n: number): string {
  if (Number.isNaN(n)) return 'nan';
  if (n === Infinity) return 'inf';
  if (n === -Infinity) return '-inf';
  if (Object.is(n, -0)) return '-0.0';
  const abs = n < 0 ? -n : n;
  // Fast paths: where JavaScript's shortest round-trip form is already Python's.
  if (abs >= 1e-4 && abs < 1e16) {
    if (Number.isInteger(n)) return `${n}.0`;
    return String(n);
  }
  const [mantissa, expPart] = n.toExponential().split('e') as [string, string];
  const exp = Number(expPart);
  const neg = mantissa.startsWith('-');
  const digits = mantissa.replace('-', '').replace('.', '');
  let body: string;
  if (exp < -4 || exp >= 16) {
    const m = digits.length > 1 ? `${digits[0]}.${digits.slice(1)}` : digits;
    body = `${m}e${exp < 0 ? '-' : '+'}${String(Math.abs(exp)).padStart(2, '0')}`;
  } else if (exp < 0) {
    body = `0.${'0'.repeat(-exp - 1)}${digits}`;
  } else if (digits.length <= exp + 1) {
    body = `${digits}${'0'.repeat(exp + 1 - digits.length)}.0`;
  } else {
    body = `${digits.slice(0, exp + 1)}.${digits.slice(exp + 1)}`;
  }
  return neg ? `-${body}` : body;
}

/** A JSON string literal as Python's json.dumps writes it with ensure_ascii=True (the default). */
export function pyJsonString(s: string): string {
  return JSON.stringify(s).replace(/[^\x20-\x7e]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/** A tree whose leaves are JSON tokens already formatted (`1.0`, `"nan"`, `true`). */
export type JsonTokenTree = Map<string, string | JsonTokenTree>;

/** Python's `json.dumps(tree, indent=indent)`: `",\n"` between items, `": "` after keys, `{}` when empty. */
export function pyJsonDumps(tree: JsonTokenTree, indent = 4, level = 0): string {
  if (tree.size === 0) return '{}';
  const pad = ' '.repeat(indent * (level + 1));
  const parts: string[] = [];
  for (const [k, v] of tree) parts.push(`${pad}${pyJsonString(k)}: ${typeof v === 'string' ? v : pyJsonDumps(v, indent, level + 1)}`);
  return `{\n${parts.join(',\n')}\n${' '.repeat(indent * level)}}`;
}

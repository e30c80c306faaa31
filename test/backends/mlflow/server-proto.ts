// Helpers for the MLflow test server: Python-style repr/str (error messages quote Python values),
// an emulation of protobuf's json_format.ParseDict as MLflow 2.12 uses it (ordered, stops at the first
// type error, unknown fields ignored) and MLflow's name/length validators.

export class MlflowError extends Error {
  constructor(
    readonly errorCode: string,
    message: string,
    readonly httpStatus: number = STATUS_BY_CODE[errorCode] ?? 500,
  ) {
    super(message);
  }
}

/** An exception MLflow does not catch: Flask answers with its HTML 500 page. */
export class UncaughtError extends Error {}

export const STATUS_BY_CODE: Record<string, number> = {
  INVALID_PARAMETER_VALUE: 400,
  RESOURCE_ALREADY_EXISTS: 400,
  BAD_REQUEST: 400,
  RESOURCE_DOES_NOT_EXIST: 404,
  ABORTED: 409,
  RESOURCE_CONFLICT: 409,
  REQUEST_LIMIT_EXCEEDED: 429,
  INTERNAL_ERROR: 500,
  INVALID_STATE: 500,
  NOT_IMPLEMENTED: 501,
  TEMPORARILY_UNAVAILABLE: 503,
  UNAUTHENTICATED: 401,
  PERMISSION_DENIED: 403,
};

export const invalidParam = (message: string): MlflowError => new MlflowError('INVALID_PARAMETER_VALUE', message);

// ---------------------------------------------------------------------------------------------
// Python repr / str of JSON values

export function pyFloatRepr(x: number): string {
  if (Number.isNaN(x)) return 'nan';
  if (x === Infinity) return 'inf';
  if (x === -Infinity) return '-inf';
  if (Number.isInteger(x) && Math.abs(x) < 1e16) return String(x); // JSON ints are Python ints
  const a = Math.abs(x);
  if (a !== 0 && (a < 1e-4 || a >= 1e16)) {
    const [m, e] = x.toExponential().split('e') as [string, string];
    const sign = e.startsWith('-') ? '-' : '+';
    const digits = e.replace(/^[+-]/, '').padStart(2, '0');
    return `${m}e${sign}${digits}`;
  }
  return String(x);
}

export function pyStrRepr(s: string): string {
  const quote = s.includes("'") && !s.includes('"') ? '"' : "'";
  let out = quote;
  for (const ch of s) {
    const cp = ch.codePointAt(0)!;
    if (ch === '\\') out += '\\\\';
    else if (ch === quote) out += '\\' + quote;
    else if (ch === '\n') out += '\\n';
    else if (ch === '\r') out += '\\r';
    else if (ch === '\t') out += '\\t';
    else if (cp < 0x20 || (cp >= 0x7f && cp < 0xa0)) out += '\\x' + cp.toString(16).padStart(2, '0');
    else out += ch;
  }
  return out + quote;
}

export function pyRepr(v: unknown): string {
  if (v === null || v === undefined) return 'None';
  if (v === true) return 'True';
  if (v === false) return 'False';
  if (typeof v === 'number') return pyFloatRepr(v);
  if (typeof v === 'string') return pyStrRepr(v);
  if (Array.isArray(v)) return '[' + v.map(pyRepr).join(', ') + ']';
  if (typeof v === 'object') {
    return '{' + Object.entries(v as Record<string, unknown>).map(([k, x]) => `${pyStrRepr(k)}: ${pyRepr(x)}`).join(', ') + '}';
  }
  return String(v);
}

/** Python `str(x)` (what an f-string interpolates). */
export function pyStr(v: unknown): string {
  return typeof v === 'string' ? v : pyRepr(v);
}

export function pyTypeName(v: unknown): string {
  if (v === null || v === undefined) return 'NoneType';
  if (typeof v === 'boolean') return 'bool';
  if (typeof v === 'number') return Number.isInteger(v) ? 'int' : 'float';
  if (typeof v === 'string') return 'str';
  if (Array.isArray(v)) return 'list';
  return 'dict';
}

/** Python code-point length. */
export const pyLen = (s: string): number => {
  let n = 0;
  for (const _ of s) n++;
  return n;
};
const pySlice = (s: string, n: number): string => [...s].slice(0, n).join('');

// ---------------------------------------------------------------------------------------------
// proto-JSON parsing (google.protobuf.json_format.ParseDict, ignore_unknown_fields=True)

export type FieldType =
  | 'string'
  | 'int64'
  | 'int32'
  | 'double'
  | 'bool'
  | { enum: Record<string, number> }
  | { message: MessageSchema };
export interface FieldSpec {
  type: FieldType;
  repeated?: boolean;
}
export type MessageSchema = Record<string, FieldSpec>;
export type Parsed = Record<string, unknown>;

class ParseError extends Error {}

const INT_RE = /^[+-]?\d+(?:_\d+)*$/;
const FLOAT_RE = /^[+-]?(?:(?:\d+(?:_\d+)*)?\.?\d+(?:_\d+)*|\d+(?:_\d+)*\.)(?:[eE][+-]?\d+(?:_\d+)*)?$/;

/** Python float(str). */
export function pyFloatFromString(raw: string): number | undefined {
  const s = raw.trim();
  const low = s.toLowerCase();
  const m = /^([+-]?)(inf|infinity|nan)$/.exec(low);
  if (m) return m[2] === 'nan' ? NaN : m[1] === '-' ? -Infinity : Infinity;
  if (!FLOAT_RE.test(s)) return undefined;
  return Number(s.replaceAll('_', ''));
}

function convertInteger(v: unknown, bits: 32 | 64): number {
  let n: number;
  if (typeof v === 'boolean') throw new ParseError(`Bool value ${v ? 'True' : 'False'} is not acceptable for integer field.`);
  if (typeof v === 'number') {
    if (!Number.isInteger(v)) throw new ParseError(`Couldn't parse integer: ${pyFloatRepr(v)}.`);
    n = v;
  } else if (typeof v === 'string') {
    if (v.includes(' ')) throw new ParseError(`Couldn't parse integer: "${v}".`);
    if (!INT_RE.test(v)) throw new ParseError(`invalid literal for int() with base 10: ${pyStrRepr(v)}`);
    n = Number(v.replaceAll('_', ''));
  } else throw new ParseError('not an integer');
  const lim = bits === 32 ? 2 ** 31 : 2 ** 63;
  if (n >= lim || n < -lim) throw new ParseError(`Value out of range: ${n}`);
  return n;
}

function convertScalar(v: unknown, t: FieldType, name: string): unknown {
  if (t === 'string') {
    if (typeof v !== 'string') throw new ParseError(`expected string or bytes-like object`);
    return v;
  }
  if (t === 'int64' || t === 'int32') return convertInteger(v, t === 'int64' ? 64 : 32);
  if (t === 'double') {
    if (typeof v === 'number') return v;
    if (typeof v === 'boolean') return v ? 1 : 0; // Python float(True)
    if (typeof v === 'string') {
      if (v === 'NaN') return NaN;
      if (v === 'Infinity') return Infinity;
      if (v === '-Infinity') return -Infinity;
      const f = pyFloatFromString(v);
      if (f === undefined) throw new ParseError(`Couldn't parse float: ${v}`);
      return f;
    }
    throw new ParseError(`Couldn't parse float: ${pyStr(v)}`);
  }
  if (t === 'bool') {
    if (typeof v !== 'boolean') throw new ParseError('Expected true or false without quotes.');
    return v;
  }
  if ('enum' in t) {
    if (typeof v === 'string' && v in t.enum) return v;
    if (typeof v === 'number' && Number.isInteger(v)) {
      const name2 = Object.entries(t.enum).find(([, n]) => n === v)?.[0];
      if (name2) return name2;
    }
    throw new ParseError(`Invalid enum value ${pyStr(v)} for enum type ${name}`);
  }
  return parseMessageInto(v, t.message, {});
}

function parseMessageInto(js: unknown, schema: MessageSchema, out: Parsed): Parsed {
  if (js === null || typeof js !== 'object' || Array.isArray(js)) throw new ParseError('Message must be a JSON object');
  for (const [name, value] of Object.entries(js as Record<string, unknown>)) {
    const spec = schema[name];
    if (!spec) continue; // ignore_unknown_fields
    if (value === null) {
      delete out[name];
      continue;
    }
    if (spec.repeated) {
      if (!Array.isArray(value)) throw new ParseError(`repeated field ${name} must be in [] which is ${pyStr(value)}.`);
      const list: unknown[] = [];
      out[name] = list;
      for (const item of value) {
        if (item === null) throw new ParseError('null is not allowed to be used as an element in a repeated field.');
        if (typeof spec.type === 'object' && 'message' in spec.type) {
          // The sub-message is added before it is filled: a failure leaves a partial element.
          const sub: Parsed = {};
          list.push(sub);
          parseMessageInto(item, spec.type.message, sub);
        } else list.push(convertScalar(item, spec.type, name));
      }
    } else if (typeof spec.type === 'object' && 'message' in spec.type) {
      const sub: Parsed = {};
      out[name] = sub;
      parseMessageInto(value, spec.type.message, sub);
    } else {
      out[name] = convertScalar(value, spec.type, name);
    }
  }
  return out;
}

/** MLflow's `_stringify_all_experiment_ids` (mutates, like upstream). */
export function stringifyExperimentIds(x: unknown): void {
  if (Array.isArray(x)) {
    x.forEach(stringifyExperimentIds);
    return;
  }
  if (x === null || typeof x !== 'object') return;
  const o = x as Record<string, unknown>;
  for (const [k, v] of Object.entries(o)) {
    if (k === 'experiment_id') o[k] = pyStr(v);
    else if (k === 'experiment_ids' && Array.isArray(v)) o[k] = v.map(pyStr);
    else if (!['params', 'tags', 'metrics'].includes(k)) stringifyExperimentIds(v);
  }
}

/** Returns the parsed (possibly partial) message and whether parsing completed. */
export function parseDict(js: Record<string, unknown>, schema: MessageSchema): { msg: Parsed; ok: boolean } {
  stringifyExperimentIds(js);
  const msg: Parsed = {};
  try {
    parseMessageInto(js, schema, msg);
    return { msg, ok: true };
  } catch (e) {
    if (e instanceof ParseError) return { msg, ok: false };
    throw e;
  }
}

// ---------------------------------------------------------------------------------------------
// Handler-level schema validation (`_get_request_message(..., schema=...)`)

export type Check = 'required' | 'string' | 'intlike' | 'floatlike' | 'array' | ((v: unknown) => boolean);
const TYPE_CHECKS = new Set<Check>(['string', 'intlike', 'floatlike', 'array']);

function runCheck(c: Check, v: unknown): boolean {
  switch (c) {
    case 'required':
      return v !== null && v !== undefined && v !== '';
    case 'string':
      return typeof v === 'string';
    case 'intlike':
      // Python int(x): accepts ints, floats (truncating) and integer strings
      return (typeof v === 'number' && Number.isFinite(v)) || typeof v === 'boolean' || (typeof v === 'string' && INT_RE.test(v.trim()));
    case 'floatlike':
      return typeof v === 'number' || typeof v === 'boolean' || (typeof v === 'string' && pyFloatFromString(v) !== undefined);
    case 'array':
      return Array.isArray(v);
    default:
      return c(v);
  }
}

export function validateSchema(json: Record<string, unknown>, schema: Record<string, Check[]>, parseOk: boolean): void {
  for (const [key, checks] of Object.entries(schema)) {
    if (!(key in json) && !checks.includes('required')) continue;
    let value = json[key];
    if (key === 'run_id' && (value === undefined || value === null) && 'run_uuid' in json) value = json.run_uuid;
    for (const c of checks) {
      if (TYPE_CHECKS.has(c) && parseOk) continue;
      if (runCheck(c, value)) continue;
      const msg =
        c === 'required'
          ? `Missing value for required parameter '${key}'.`
          : `Invalid value ${pyStr(value)} for parameter '${key}' supplied. Hint: Value was of type '${pyTypeName(value)}'.`;
      throw invalidParam(msg + ' See the API docs for more information about request parameters.');
    }
  }
}

// ---------------------------------------------------------------------------------------------
// mlflow/utils/validation.py

export const MAX_METRICS_PER_BATCH = 1000;
export const MAX_PARAMS_TAGS_PER_BATCH = 100;
export const MAX_ENTITIES_PER_BATCH = 1000;
export const MAX_PARAM_VAL_LENGTH = 6000;
export const MAX_TAG_VAL_LENGTH = 5000;
export const MAX_EXPERIMENT_TAG_VAL_LENGTH = 5000;
export const MAX_ENTITY_KEY_LENGTH = 250;

// Python `re.match(r"^[/\w.\- ]*$")`: Unicode \w, and `$` also matches before a final "\n".
const VALID_NAME = /^[/\p{L}\p{N}_.\- ]*\n?$/u;
const RUN_ID = /^[a-zA-Z0-9][\p{L}\p{N}_-]{0,255}\n?$/u;
const BAD_CHARACTERS_MESSAGE =
  'Names may only contain alphanumerics, underscores (_), dashes (-), periods (.), spaces ( ), and slashes (/).';

/** posixpath.normpath */
export function normpath(p: string): string {
  if (p === '') return '.';
  let initial = p.startsWith('/') ? 1 : 0;
  if (initial && p.startsWith('//') && !p.startsWith('///')) initial = 2;
  const out: string[] = [];
  for (const comp of p.split('/')) {
    if (comp === '' || comp === '.') continue;
    if (comp !== '..' || (!initial && out.length === 0) || (out.length > 0 && out[out.length - 1] === '..')) out.push(comp);
    else if (out.length) out.pop();
  }
  const r = '/'.repeat(initial) + out.join('/');
  return r || '.';
}

export function pathNotUnique(name: string): boolean {
  const norm = normpath(name);
  return norm !== name || norm === '.' || norm.startsWith('..') || norm.startsWith('/');
}

function validateName(kind: 'parameter' | 'metric' | 'tag', name: string): void {
  if (!VALID_NAME.test(name)) throw invalidParam(`Invalid ${kind} name: '${name}'. ${BAD_CHARACTERS_MESSAGE}`);
  if (pathNotUnique(name)) {
    throw invalidParam(
      `Invalid ${kind} name: '${name}'. Names may be treated as files in certain cases, and must not resolve to other names when treated as such. This name would resolve to '${normpath(name)}'`,
    );
  }
}

export function validateLength(entity: string, limit: number, value: string, truncate = false): string {
  const n = pyLen(value);
  if (n <= limit) return value;
  if (truncate) return pySlice(value, limit);
  throw invalidParam(`${entity} '${pySlice(value, 250)}' had length ${n}, which exceeded length limit of ${limit}`);
}

export function validateMetricKey(key: string): void {
  validateName('metric', key);
  validateLength('Metric name', MAX_ENTITY_KEY_LENGTH, key);
}

/** Python `str(float)`. */
export const pyFloatStr = (x: number): string => (Number.isInteger(x) && Math.abs(x) < 1e16 ? `${x}.0` : pyFloatRepr(x));

/** `_validate_metric`: key rules, then a non-negative timestamp. */
export function validateMetric(key: string, value: number, timestamp: number): void {
  validateMetricKey(key);
  if (timestamp < 0) {
    throw invalidParam(
      `Got invalid timestamp ${timestamp} for metric '${key}' (value=${pyFloatStr(value)}). Timestamp must be a nonnegative long (64-bit integer) `,
    );
  }
}
export function validateParam(key: string, value: string, truncate: boolean): string {
  validateName('parameter', key);
  validateLength('Param key', MAX_ENTITY_KEY_LENGTH, key);
  return validateLength('Param value', MAX_PARAM_VAL_LENGTH, value, truncate);
}
export function validateTag(key: string, value: string, truncate: boolean, limit = MAX_TAG_VAL_LENGTH): string {
  validateName('tag', key);
  validateLength('Tag key', MAX_ENTITY_KEY_LENGTH, key);
  return limit === Infinity ? value : validateLength('Tag value', limit, value, truncate);
}
export function validateRunId(runId: string): void {
  if (!RUN_ID.test(runId)) throw invalidParam(`Invalid run ID: '${runId}'`);
}
export function validateBatchLimits(m: number, p: number, t: number): void {
  const check = (entity: string, limit: number, n: number): void => {
    if (n > limit) {
      throw invalidParam(
        `A batch logging request can contain at most ${limit} ${entity}. Got ${n} ${entity}. Please split up ${entity} across multiple requests and try again.`,
      );
    }
  };
  check('metrics', MAX_METRICS_PER_BATCH, m);
  check('params', MAX_PARAMS_TAGS_PER_BATCH, p);
  check('tags', MAX_PARAMS_TAGS_PER_BATCH, t);
  check('metrics, params, and tags', MAX_ENTITIES_PER_BATCH, m + p + t);
}

/**
 * HParams plugin encoding (`tensorboard.hparams.HParamsPluginData`, plugin name `hparams`).
 *
 * Value mapping (documented in the README):
 * - number → `number_value` / `DATA_TYPE_FLOAT64` (bigint → number when safe, else string);
 * - boolean → `bool_value` / `DATA_TYPE_BOOL`;
 * - string → `string_value` / `DATA_TYPE_STRING`;
 * - plain nested objects are flattened with `/`-joined keys (`{opt: {lr: 1}}` → `opt/lr`);
 * - arrays → their JSON text (`[1,2]` → `"[1,2]"`, a string hparam);
 * - `Date` → ISO string; functions → their name; other objects → `String(value)`;
 * - `null` / `undefined` → omitted from the hparams plugin (as tensorboardX does with `None`);
 *   they are kept in `hparams.yml`.
 */
import { ProtoWriter, fromUtf8, ProtoReader, WIRE_FIXED64 } from './proto.js';

export type HParamValue = number | boolean | string;

export const HPARAMS_PLUGIN = 'hparams';
export const EXPERIMENT_TAG = '_hparams_/experiment';
export const SESSION_START_TAG = '_hparams_/session_start_info';
export const SESSION_END_TAG = '_hparams_/session_end_info';

export enum HParamDataType {
  UNSET = 0,
  STRING = 1,
  BOOL = 2,
  FLOAT64 = 3,
}

export enum SessionStatus {
  UNKNOWN = 0,
  SUCCESS = 1,
  FAILURE = 2,
  RUNNING = 3,
}

export interface MetricName {
  /** Run subdirectory relative to the session's run ('' for the run itself). */
  group: string;
  tag: string;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  if (v === null || typeof v !== 'object') return false;
  const proto = Object.getPrototypeOf(v) as unknown;
  return proto === Object.prototype || proto === null;
}

/** Flatten config values to hparams (see module doc). `omitted` lists keys dropped (null/undefined). */
export function flattenHparams(values: Readonly<Record<string, unknown>>): {
  hparams: Map<string, HParamValue>;
  omitted: string[];
} {
  const hparams = new Map<string, HParamValue>();
  const omitted: string[] = [];
  const visit = (prefix: string, obj: Readonly<Record<string, unknown>>, seen: Set<object>): void => {
    for (const [k, v] of Object.entries(obj)) {
      const key = prefix ? `${prefix}/${k}` : k;
      if (v === null || v === undefined) omitted.push(key);
      else if (typeof v === 'number' || typeof v === 'boolean' || typeof v === 'string') hparams.set(key, v);
      else if (typeof v === 'bigint')
        hparams.set(key, Number.isSafeInteger(Number(v)) ? Number(v) : v.toString());
      else if (Array.isArray(v)) hparams.set(key, safeJson(v));
      else if (v instanceof Date) hparams.set(key, Number.isNaN(v.getTime()) ? String(v) : v.toISOString());
      else if (typeof v === 'function') hparams.set(key, v.name || '<function>');
      else if (isPlainObject(v)) {
        if (seen.has(v)) hparams.set(key, '[Circular]');
        else {
          seen.add(v);
          visit(key, v, seen);
          seen.delete(v);
        }
      } else hparams.set(key, String(v));
    }
  };
  visit('', values, new Set([values]));
  return { hparams, omitted };
}

function safeJson(v: unknown): string {
  try {
    return JSON.stringify(v, (_k, x: unknown) => (typeof x === 'bigint' ? x.toString() : x)) ?? String(v);
  } catch {
    return String(v);
  }
}

function writeProtoValue(w: ProtoWriter, v: HParamValue): void {
  // google.protobuf.Value oneof kind: number_value 2, string_value 3, bool_value 4.
  if (typeof v === 'number') w.double(2, v);
  else if (typeof v === 'boolean') w.bool(4, v);
  else w.string(3, v);
}

function dataType(v: HParamValue): HParamDataType {
  return typeof v === 'number' ? HParamDataType.FLOAT64 : typeof v === 'boolean' ? HParamDataType.BOOL : HParamDataType.STRING;
}

/** `HParamsPluginData { version 0, session_start_info { hparams, start_time_secs } }`. */
export function encodeSessionStartInfo(hparams: ReadonlyMap<string, HParamValue>, startTimeSecs: number): Uint8Array {
  const w = new ProtoWriter();
  w.uint(1, 0);
  w.message(3, (s) => {
    for (const [k, v] of hparams) {
      s.message(1, (e) => {
        e.string(1, k);
        e.message(2, (pv) => writeProtoValue(pv, v));
      });
    }
    s.double(5, startTimeSecs);
  });
  return w.finish();
}

/** `HParamsPluginData { version 0, experiment { hparam_infos, metric_infos, time_created_secs } }`. */
export function encodeExperiment(
  hparams: ReadonlyMap<string, HParamValue>,
  metrics: readonly MetricName[],
  timeCreatedSecs: number,
): Uint8Array {
  const w = new ProtoWriter();
  w.uint(1, 0);
  w.message(2, (x) => {
    x.double(3, timeCreatedSecs);
    for (const [k, v] of hparams) {
      x.message(4, (h) => {
        h.string(1, k);
        h.uint(4, dataType(v));
      });
    }
    for (const m of metrics) {
      x.message(5, (mi) => {
        mi.message(1, (n) => {
          if (m.group) n.string(1, m.group);
          n.string(2, m.tag);
        });
      });
    }
  });
  return w.finish();
}

/** `HParamsPluginData { version 0, session_end_info { status, end_time_secs } }`. */
export function encodeSessionEndInfo(status: SessionStatus, endTimeSecs: number): Uint8Array {
  const w = new ProtoWriter();
  w.uint(1, 0);
  w.message(4, (e) => {
    e.uint(1, status);
    e.double(2, endTimeSecs);
  });
  return w.finish();
}

// ---------------------------------------------------------------------------------------------
// Decoding (reader side)

export interface DecodedHParamInfo {
  name: string;
  type: HParamDataType;
}
export interface DecodedHParamsPluginData {
  version: number;
  experiment?: {
    timeCreatedSecs?: number;
    hparamInfos: DecodedHParamInfo[];
    metricInfos: MetricName[];
  };
  sessionStartInfo?: {
    hparams: Record<string, HParamValue | null>;
    startTimeSecs?: number;
    groupName?: string;
  };
  sessionEndInfo?: { status: SessionStatus; endTimeSecs?: number };
}

function decodeProtoValue(b: Uint8Array): HParamValue | null {
  let out: HParamValue | null = null;
  const r = new ProtoReader(b);
  r.each((field, wire) => {
    if (field === 2 && wire === WIRE_FIXED64) out = r.double();
    else if (field === 3) out = fromUtf8(r.lenDelimited());
    else if (field === 4) out = r.int64() !== 0;
    else if (field === 1) {
      r.int64();
      out = null;
    }
  });
  return out;
}

/** Decode `HParamsPluginData` (strict: throws `ProtoDecodeError` on malformed bytes). */
export function decodeHParamsPluginData(content: Uint8Array): DecodedHParamsPluginData {
  const out: DecodedHParamsPluginData = { version: 0 };
  const r = new ProtoReader(content);
  r.each((field) => {
    if (field === 1) out.version = r.int64();
    else if (field === 2) {
      const exp = { hparamInfos: [] as DecodedHParamInfo[], metricInfos: [] as MetricName[] } as NonNullable<
        DecodedHParamsPluginData['experiment']
      >;
      const x = new ProtoReader(r.lenDelimited());
      x.each((f) => {
        if (f === 3) exp.timeCreatedSecs = x.double();
        else if (f === 4) {
          const info: DecodedHParamInfo = { name: '', type: HParamDataType.UNSET };
          const h = new ProtoReader(x.lenDelimited());
          h.each((hf) => {
            if (hf === 1) info.name = fromUtf8(h.lenDelimited());
            else if (hf === 4) info.type = h.int64();
          });
          exp.hparamInfos.push(info);
        } else if (f === 5) {
          const name: MetricName = { group: '', tag: '' };
          const mi = new ProtoReader(x.lenDelimited());
          mi.each((mf) => {
            if (mf === 1) {
              const n = new ProtoReader(mi.lenDelimited());
              n.each((nf) => {
                if (nf === 1) name.group = fromUtf8(n.lenDelimited());
                else if (nf === 2) name.tag = fromUtf8(n.lenDelimited());
              });
            }
          });
          exp.metricInfos.push(name);
        }
      });
      out.experiment = exp;
    } else if (field === 3) {
      const start: NonNullable<DecodedHParamsPluginData['sessionStartInfo']> = { hparams: {} };
      const s = new ProtoReader(r.lenDelimited());
      s.each((f) => {
        if (f === 1) {
          const e = new ProtoReader(s.lenDelimited());
          let key = '';
          let value: HParamValue | null = null;
          e.each((ef) => {
            if (ef === 1) key = fromUtf8(e.lenDelimited());
            else if (ef === 2) value = decodeProtoValue(e.lenDelimited());
          });
          start.hparams[key] = value;
        } else if (f === 4) start.groupName = fromUtf8(s.lenDelimited());
        else if (f === 5) start.startTimeSecs = s.double();
      });
      out.sessionStartInfo = start;
    } else if (field === 4) {
      const end: NonNullable<DecodedHParamsPluginData['sessionEndInfo']> = { status: SessionStatus.UNKNOWN };
      const e = new ProtoReader(r.lenDelimited());
      e.each((f) => {
        if (f === 1) end.status = e.int64();
        else if (f === 2) end.endTimeSecs = e.double();
      });
      out.sessionEndInfo = end;
    }
  });
  return out;
}

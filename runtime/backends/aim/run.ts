/**
 * What Aim's Python SDK writes for a run, replayed as write instructions (`aim/sdk/run.py`,
 * `aim/sdk/base_run.py`, `aim/sdk/tracker.py`, `aim/storage/treeviewproxy.py`):
 *
 * Trees (per run hash `h`; `meta` and `seqs` are the run's two TreeView resources):
 * - `meta/chunks/h/attrs` = {} at creation (when the run has no attrs yet), also `meta/attrs`;
 *   `run[key] = v` sets both `meta/chunks/h/attrs/key` and `meta/attrs/key`.
 * - `meta/chunks/h/end_time` = None at creation, the close time (float seconds) at close.
 * - per sequence (context id `c` = hash_auto(context dict), name `n`), first value:
 *   `seqs/v2/chunks/h/c/n/{step,val,epoch,time}` arrays allocated (`make_array`; metrics), or
 *   `seqs/chunks/h/c/n/{val,epoch,time}` (objects such as aim.Text), `meta/contexts/c` and
 *   `meta/chunks/h/contexts/c` = the context, `meta/traces_types/<dtype>/c/n` = 1,
 *   `meta/chunks/h/traces/c/n/{dtype,version,first,first_step}`, `meta/chunks/h/typed_traces/<type>/c/n` = 1.
 * - every value: `traces/c/n/{last,last_step}` when step ≥ count, `max`/`min` when exceeded
 *   (metrics), then `val`, `epoch`, `time` (and `step` for metrics) at key hash_auto(step)
 *   (metrics, "version 2") or step (objects, "version 1").
 * The order of instructions is Aim's. The server keeps no message ids: a re-sent message is
 * applied again. Each instruction sets absolute paths (`__setitem__` deletes what is under the
 * path, then writes; `make_array` only sets the array flag), so applying the latest message again
 * changes nothing; an older message applied after a newer one could (attrs `{}` at creation,
 * `last`/`last_step`/`max`/`min`), so re-sends must go in order: one message in flight, and a
 * retry or a spool replay restarts from the first unacknowledged message.
 */
import {
  AimBlob,
  AimCustomObject,
  AimFloat,
  encodeElement,
  encodeValue,
  SENTINEL,
  TYPE_ARRAY,
  TYPE_CUSTOM,
  TYPE_NONE,
  TYPE_OBJECT,
  type AimPathElement,
} from './encoding.js';
import { hashAuto, hashNumber } from './hash.js';
import { isPlainObject } from '../../core/values.js';

export type Instruction = readonly [handler: string, method: string, args: readonly unknown[]];

const MARK_ARRAY = Uint8Array.of(TYPE_ARRAY);
const MARK_OBJECT = Uint8Array.of(TYPE_OBJECT);
const VALUE_NONE = Uint8Array.of(TYPE_NONE);

const elementCache = new Map<string | number, Uint8Array>();
/** Element bytes + sentinel, cached for strings and small ints. */
function element(el: AimPathElement): Uint8Array {
  const cacheable = typeof el === 'string' || (typeof el === 'number' && el >= 0 && el < 4096);
  if (cacheable) {
    const hit = elementCache.get(el);
    if (hit) return hit;
  }
  const e = encodeElement(el);
  const out = new Uint8Array(e.length + 1);
  out.set(e);
  out[e.length] = SENTINEL;
  if (cacheable) {
    if (elementCache.size > 10_000) elementCache.clear();
    elementCache.set(el, out);
  }
  return out;
}

const utf8 = new TextEncoder();
const stringValues = new Map<string, Uint8Array>();
/** Encoded string value (type byte 4 + UTF-8), cached: path elements and names repeat endlessly. */
function stringValue(s: string): Uint8Array {
  let v = stringValues.get(s);
  if (!v) {
    v = encodeValue(s);
    if (stringValues.size > 10_000) stringValues.clear();
    stringValues.set(s, v);
  }
  return v;
}

/**
 * Builds write messages: each the packed encoding of a list of instructions, as Aim's
 * `pack_args(encode_tree([(handler, method, args), ...]))` (dicts get a marker only when empty).
 * Keys are written from a stack of element parts straight into one growing buffer; strings'
 * encodings are cached.
 *
 * With `maxBytes`, a message never grows past it: an instruction that would push the current
 * message over is moved (re-encoded) to a new message, so only an instruction larger than
 * `maxBytes` by itself makes a larger message, and it goes alone. Instructions keep their order.
 * `group()` starts a group (one `run.track()` call, one `run[key] = …`): when an instruction
 * would push the message over, the whole group moves with it, so a message boundary never falls
 * inside one (unless the group alone is larger than `maxBytes`). Aim's SDK sends each such call
 * as one message; a run cut off at a message boundary (a SIGKILL before the last messages reached
 * the spool) then holds whole values only (never a trace's `last` without its value).
 */
export class MessageWriter {
  #buf = Buffer.allocUnsafe(1 << 16);
  #len = 0;
  #count = 0;
  readonly #parts: Uint8Array[] = [];
  #keyLen = 0;
  readonly #maxBytes: number;
  readonly #sealed: Uint8Array[] = [];
  /** The current group's instructions (re-added to a new message when it moves) and where it starts. */
  #group: [string, string, readonly unknown[]][] | undefined;
  #groupLen = 0;
  #groupCount = 0;

  constructor(maxBytes = Infinity) {
    this.#maxBytes = maxBytes;
    this.#entry(MARK_ARRAY, false);
  }

  /** Instructions in the current (last) message. */
  get count(): number {
    return this.#count;
  }

  /** Bytes of the current (last) message. */
  get bytes(): number {
    return this.#len;
  }

  /** Start a group: the instructions added until the next group() stay in one message when they fit. */
  group(): void {
    if (this.#maxBytes === Infinity) return;
    if (this.#group) this.#group.length = 0;
    else this.#group = [];
    this.#groupLen = this.#len;
    this.#groupCount = this.#count;
  }

  add(handler: string, method: string, args: readonly unknown[]): void {
    const len = this.#len;
    const count = this.#count;
    this.#add(handler, method, args);
    const g = this.#group;
    if (this.#len > this.#maxBytes && g !== undefined && g.length > 0 && this.#groupCount > 0) {
      // over the cap inside a group: end the message before the group, which moves to the next one
      this.#len = this.#groupLen;
      this.#count = this.#groupCount;
      this.#sealed.push(new Uint8Array(this.#buf.subarray(0, this.#groupLen)));
      this.#len = 0;
      this.#count = 0;
      this.#entry(MARK_ARRAY, false);
      this.#groupLen = this.#len;
      this.#groupCount = 0;
      for (const [h, m, a] of g) this.#add(h, m, a);
      this.add(handler, method, args); // may cut again if the group alone is over the cap
      return;
    }
    g?.push([handler, method, args]);
    if (this.#len > this.#maxBytes && count > 0) {
      // over the cap: end the message before this instruction, which starts the next one
      this.#len = len;
      this.#count = count;
      this.#sealed.push(new Uint8Array(this.#buf.subarray(0, len))); // a copy: the buffer is reused
      this.#len = 0;
      this.#count = 0;
      this.#entry(MARK_ARRAY, false);
      // the rest of the group (too large for one message) starts here and is not moved again
      this.#groupLen = this.#len;
      this.#groupCount = 0;
      this.#add(handler, method, args);
    }
  }

  #add(handler: string, method: string, args: readonly unknown[]): void {
    this.#push(element(this.#count++));
    this.#entry(MARK_ARRAY, false);
    this.#push(element(0));
    this.#entry(stringValue(handler), false);
    this.#pop();
    this.#push(element(1));
    this.#entry(stringValue(method), false);
    this.#pop();
    this.#push(element(2));
    this.#value(args);
    this.#pop();
    this.#pop();
  }

  /** The messages, in order (none when no instruction was added). The writer is done after this. */
  finish(): Uint8Array[] {
    const out = [...this.#sealed];
    if (this.#count > 0) out.push(new Uint8Array(this.#buf.buffer, this.#buf.byteOffset, this.#len));
    return out;
  }

  #push(part: Uint8Array): void {
    this.#parts.push(part);
    this.#keyLen += part.length;
  }

  #pop(): void {
    this.#keyLen -= this.#parts.pop()!.length;
  }

  #reserve(valueLength: number): number {
    const need = 9 + this.#keyLen + valueLength;
    if (this.#len + need > this.#buf.length) {
      const next = Buffer.allocUnsafe(Math.max(this.#buf.length * 2, this.#len + need));
      this.#buf.copy(next, 0, 0, this.#len);
      this.#buf = next;
    }
    const b = this.#buf;
    let o = this.#len;
    b.writeUInt32LE(this.#keyLen, o);
    o += 4;
    for (const p of this.#parts) {
      b.set(p, o);
      o += p.length;
    }
    return o;
  }

  #entry(value: Uint8Array, blob: boolean): void {
    const o = this.#reserve(value.length);
    const b = this.#buf;
    b[o] = blob ? 1 : 0;
    b.writeUInt32LE(value.length, o + 1);
    b.set(value, o + 5);
    this.#len = o + 5 + value.length;
  }

  /** A number entry written in place: float64 (type 3) or int64 (type 2), little-endian. */
  #number(n: number | bigint, float: boolean): void {
    const o = this.#reserve(9);
    const b = this.#buf;
    b[o] = 0;
    b.writeUInt32LE(9, o + 1);
    if (float) {
      b[o + 5] = 3;
      b.writeDoubleLE(n as number, o + 6);
    } else {
      b[o + 5] = 2;
      b.writeBigInt64LE(BigInt(n), o + 6);
    }
    this.#len = o + 14;
  }

  #value(v: unknown): void {
    if (v === null || v === undefined) return this.#entry(VALUE_NONE, false);
    switch (typeof v) {
      case 'string':
        return this.#entry(stringValue(v), false);
      case 'number':
        return this.#number(v, !Number.isSafeInteger(v));
      case 'bigint':
        return this.#number(v, false);
      case 'boolean':
        return this.#entry(encodeValue(v), false);
      case 'object':
        break;
      default:
        throw new TypeError(`cannot send a ${typeof v} to Aim`);
    }
    if (v instanceof AimFloat) return this.#number(v.value, true);
    if (v instanceof Uint8Array) return this.#entry(encodeValue(v), false);
    if (v instanceof AimBlob) return this.#entry(encodeValue(v), true);
    if (Array.isArray(v)) {
      this.#entry(MARK_ARRAY, false);
      for (let i = 0; i < v.length; i++) {
        this.#push(element(i));
        this.#value(v[i]);
        this.#pop();
      }
      return;
    }
    if (v instanceof AimCustomObject) {
      const name = utf8.encode(v.name);
      const marker = new Uint8Array(1 + name.length);
      marker[0] = TYPE_CUSTOM;
      marker.set(name, 1);
      this.#entry(marker, false);
      this.#members(v.storage);
      return;
    }
    if (!isPlainObject(v)) throw new TypeError(`cannot send a ${(v as object).constructor?.name ?? 'non-plain object'} to Aim`);
    let any = false;
    for (const k in v) {
      if (v[k] !== undefined) {
        any = true;
        break;
      }
    }
    if (!any) return this.#entry(MARK_OBJECT, false);
    this.#members(v);
  }

  #members(obj: Record<string, unknown>): void {
    for (const k of Object.keys(obj)) {
      if (obj[k] === undefined) continue;
      if (k.length === 0) throw new TypeError('Aim keys must not be empty strings');
      this.#push(element(k));
      this.#value(obj[k]);
      this.#pop();
    }
  }
}

/** What `Run`'s tracker keeps per (context, name). */
export interface SequenceInfo {
  version: 1 | 2;
  dtype: string;
  /** Next auto step (last_step + 1). */
  count: number;
  max: number;
  min: number;
  /** Longest list tracked (list sequences). */
  recordMaxLength: number;
}

export interface RunHandlers {
  meta: string;
  seqs: string;
  props: string;
  /** FileManager (run-status check-ins); absent for a run created in the spool. */
  files?: string;
}

/** `CheckIn.generate_filename` (aim/sdk/reporter): `<run>-<idx:016d>-<flag>-<utc:011.2f>-<expect_next_in:05d>`, '*' for wildcards. */
export function checkInName(run: string, idx: number | '*', flag: string, utcSeconds: number | '*', expectNextIn: number | '*'): string {
  const pad = (v: number | string, n: number) => String(v).padStart(n, '0');
  return `${run}-${idx === '*' ? '*' : pad(idx, 16)}-${flag}-${utcSeconds === '*' ? '*' : pad(utcSeconds.toFixed(2), 11)}-${expectNextIn === '*' ? '*' : pad(expectNextIn, 5)}`;
}

/** A context as Aim keys it. */
export interface AimContext {
  dict: Record<string, unknown>;
  idx: bigint;
}

const EMPTY_CONTEXT: AimContext = Object.freeze({ dict: {}, idx: hashAuto({}) }) as AimContext;

export function makeContext(dict: Record<string, unknown> | undefined): AimContext {
  if (!dict || Object.keys(dict).length === 0) return EMPTY_CONTEXT;
  return { dict: structuredClone(dict), idx: hashAuto(dict) };
}

const SEQUENCE_TYPE: Record<string, string> = {
  int: 'metric',
  float: 'metric',
  float64: 'metric',
  number: 'metric',
  'aim.text': 'texts',
  'list(aim.text)': 'texts',
  'aim.image': 'images',
  'list(aim.image)': 'images',
};

/** An image as `aim.Image` stores it after PIL encoded it (`_from_pil_image`). */
export interface AimImage {
  png: Uint8Array;
  width: number;
  height: number;
  /** PIL mode: L, LA, RGB or RGBA. */
  mode: string;
  caption: string;
}

/** A value as Aim tracks it: a metric (float), an `aim.Text`, or `aim.Image`(s) (one, or a list). */
export type Trackable = { kind: 'metric'; value: number } | { kind: 'text'; value: string } | { kind: 'images'; value: AimImage[]; list: boolean };

function imageObject(i: AimImage): AimCustomObject {
  // storage in Aim's insertion order: data, source, mode, format, width, height, then caption
  return new AimCustomObject('aim.image', { data: new AimBlob(i.png), source: 'PIL.Image', mode: i.mode, format: 'png', width: i.width, height: i.height, caption: i.caption });
}

function describeKind(t: Trackable): string {
  return t.kind === 'metric' ? 'number' : t.kind === 'text' ? 'string' : t.list ? 'list of images' : 'image';
}

export class AimRunState {
  readonly hash: string;
  readonly h: RunHandlers;
  readonly sequences = new Map<string, SequenceInfo>();
  /** Contexts written in this session (Aim writes a context again after a resume). */
  readonly contexts = new Set<bigint>();
  #metaRun: readonly AimPathElement[];

  constructor(hash: string, handlers: RunHandlers) {
    this.hash = hash;
    this.h = handlers;
    this.#metaRun = ['meta', 'chunks', hash];
  }

  /**
   * The client-side RunStatusReporter's first check-in: flag 'starting', index after the last
   * check-in found (`poll`), no expiry; older 'starting' check-ins are cleaned up.
   */
  touchStarting(w: MessageWriter, lastIdx: number, utcSeconds: number): void {
    if (!this.h.files) return;
    w.add(this.h.files, 'touch', [checkInName(this.hash, lastIdx + 1, 'starting', utcSeconds, 0), checkInName(this.hash, '*', 'starting', '*', '*')]);
  }

  /** `run[...] = {}` when the run has no attrs yet (a new run). */
  initAttrs(w: MessageWriter): void {
    w.add(this.h.meta, '__setitem__', [[...this.#metaRun, 'attrs'], {}]);
    w.add(this.h.meta, '__setitem__', [['meta', 'attrs'], {}]);
  }

  /** `meta_run_tree['end_time'] = value` (None while running, the close time at close). */
  setEndTime(w: MessageWriter, seconds: number | null): void {
    w.group();
    w.add(this.h.meta, '__setitem__', [[...this.#metaRun, 'end_time'], seconds === null ? null : new AimFloat(seconds)]);
  }

  /** `run[key] = value`. */
  setAttr(w: MessageWriter, key: string, value: unknown): void {
    w.group();
    w.add(this.h.meta, '__setitem__', [[...this.#metaRun, 'attrs', key], value]);
    w.add(this.h.meta, '__setitem__', [['meta', 'attrs', key], value]);
  }

  /** `run.name = …`, `run.experiment = …` (StructuredRun setters). */
  setProp(w: MessageWriter, prop: 'name' | 'experiment' | 'description', value: string | null): void {
    w.group();
    w.add(this.h.props, `${prop}.setter`, [value]);
  }

  /** Preload sequence infos from an existing run's `traces` subtree (resume). */
  loadTraces(traces: unknown): void {
    if (!traces || typeof traces !== 'object') return;
    for (const [ctxKey, byName] of Object.entries(traces as Record<string, unknown>)) {
      if (!byName || typeof byName !== 'object') continue;
      for (const [name, info] of Object.entries(byName as Record<string, Record<string, unknown>>)) {
        const lastStep = info['last_step'];
        if (typeof lastStep !== 'number') continue; // as Aim: a trace without values is not loaded
        const version = info['version'] === 2 ? 2 : 1;
        this.sequences.set(seqKey(BigInt(ctxKey), name), {
          version,
          dtype: typeof info['dtype'] === 'string' ? info['dtype'] : 'float',
          count: lastStep + 1,
          max: version === 2 && typeof info['max'] === 'number' ? info['max'] : -Infinity,
          min: version === 2 && typeof info['min'] === 'number' ? info['min'] : Infinity,
          recordMaxLength: typeof info['record_max_length'] === 'number' ? info['record_max_length'] : 0,
        });
      }
    }
  }

  /**
   * `run.track(value, name, step, epoch, context)`. Returns an error message instead of writing
   * when the value's type does not match the sequence's (Aim raises ValueError there).
   */
  track(w: MessageWriter, name: string, t: Trackable, step: number | undefined, epoch: number | null, ctx: AimContext, seconds: number): string | undefined {
    w.group();
    const key = seqKey(ctx.idx, name);
    let seq = this.sequences.get(key);
    const dtype = t.kind === 'metric' ? 'float' : t.kind === 'text' ? 'aim.text' : t.list ? 'list(aim.image)' : 'aim.image';
    const value: unknown =
      t.kind === 'metric'
        ? new AimFloat(t.value)
        : t.kind === 'text'
          ? new AimCustomObject('aim.text', { data: new AimBlob(t.value) })
          : t.list
            ? t.value.map(imageObject)
            : imageObject(t.value[0]!);
    let retype: string | undefined;
    if (seq && seq.dtype && seq.dtype !== dtype) {
      // Aim's check_types_compatibility: int and float make 'number'; an empty list type takes the first element type
      if (seq.dtype === 'number' && dtype === 'float') {
        // compatible
      } else if (seq.dtype === 'int' && dtype === 'float') retype = 'number';
      else if (seq.dtype === 'list' && dtype.startsWith('list(')) retype = dtype;
      else return `cannot log a ${describeKind(t)} to '${name}': the Aim sequence holds ${seq.dtype} values (Aim sequences are homogeneous)`;
    }
    const version: 1 | 2 = t.kind === 'metric' ? 2 : 1;
    const base = version === 2 ? ['seqs', 'v2', 'chunks', this.hash, ctx.idx, name] : ['seqs', 'chunks', this.hash, ctx.idx, name];
    if (!seq) {
      seq = { version, dtype: '', count: 0, max: -Infinity, min: Infinity, recordMaxLength: 0 };
      this.sequences.set(key, seq);
      if (version === 2) w.add(this.h.seqs, 'make_array', [[...base, 'step']]);
      w.add(this.h.seqs, 'make_array', [[...base, 'val']]);
      w.add(this.h.seqs, 'make_array', [[...base, 'epoch']]);
      w.add(this.h.seqs, 'make_array', [[...base, 'time']]);
    }
    const s = step ?? seq.count;
    if (!this.contexts.has(ctx.idx)) {
      this.contexts.add(ctx.idx);
      w.add(this.h.meta, '__setitem__', [['meta', 'contexts', ctx.idx], ctx.dict]);
      w.add(this.h.meta, '__setitem__', [[...this.#metaRun, 'contexts', ctx.idx], ctx.dict]);
    }
    const trace = [...this.#metaRun, 'traces', ctx.idx, name];
    if (retype) {
      w.add(this.h.meta, '__setitem__', [['meta', 'traces_types', retype, ctx.idx, name], 1]);
      w.add(this.h.meta, '__setitem__', [[...this.#metaRun, 'typed_traces', SEQUENCE_TYPE[dtype] ?? 'sequence', ctx.idx, name], 1]);
      w.add(this.h.meta, '__setitem__', [[...trace, 'dtype'], retype]);
      seq.dtype = retype;
    }
    if (seq.count === 0) {
      w.add(this.h.meta, '__setitem__', [['meta', 'traces_types', dtype, ctx.idx, name], 1]);
      w.add(this.h.meta, '__setitem__', [[...trace, 'dtype'], dtype]);
      w.add(this.h.meta, '__setitem__', [[...trace, 'version'], seq.version]);
      w.add(this.h.meta, '__setitem__', [[...trace, 'first'], value]);
      w.add(this.h.meta, '__setitem__', [[...trace, 'first_step'], s]);
      w.add(this.h.meta, '__setitem__', [[...this.#metaRun, 'typed_traces', SEQUENCE_TYPE[dtype] ?? 'sequence', ctx.idx, name], 1]);
      seq.dtype = dtype;
    }
    if (s >= seq.count) {
      w.add(this.h.meta, '__setitem__', [[...trace, 'last'], value]);
      w.add(this.h.meta, '__setitem__', [[...trace, 'last_step'], s]);
      seq.count = s + 1;
    }
    if (seq.version === 2 && t.kind === 'metric') {
      if (t.value > seq.max) {
        w.add(this.h.meta, '__setitem__', [[...trace, 'max'], value]);
        seq.max = t.value;
      }
      if (t.value < seq.min) {
        w.add(this.h.meta, '__setitem__', [[...trace, 'min'], value]);
        seq.min = t.value;
      }
    }
    if (t.kind === 'images' && t.list) {
      seq.recordMaxLength = Math.max(seq.recordMaxLength, t.value.length);
      w.add(this.h.meta, '__setitem__', [[...trace, 'record_max_length'], seq.recordMaxLength]);
    }
    const at = seq.version === 2 ? hashNumber(s) : s;
    w.add(this.h.seqs, '__setitem__', [[...base, 'val', at], value]);
    w.add(this.h.seqs, '__setitem__', [[...base, 'epoch', at], epoch]);
    w.add(this.h.seqs, '__setitem__', [[...base, 'time', at], new AimFloat(seconds)]);
    if (seq.version === 2) w.add(this.h.seqs, '__setitem__', [[...base, 'step', at], s]);
    return undefined;
  }
}

function seqKey(ctx: bigint, name: string): string {
  return `${ctx.toString()}\u0000${name}`;
}

// Environment precedence: every backend variable set, empty and bad, through the real classes.
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import {
  AimTracker, CometMLTracker, ConfigError, MLflowTracker, TensorBoardTracker, WandBTracker,
  type TrackerDescriptor,
} from '../../generated/index.gen.js';
import { parseEnv, readEnv } from '../../runtime/core/env.js';

type Ctor = { new (options: never): { options: Record<string, unknown> }; descriptor: TrackerDescriptor };
const classes: Ctor[] = [TensorBoardTracker, WandBTracker, CometMLTracker, AimTracker, MLflowTracker] as unknown as Ctor[];
const required: Record<string, Record<string, unknown>> = {
  tensorboard: { run_name: 'r', logging_dir: '/tmp/x' },
  aim: { logging_dir: 'aim://127.0.0.1:53800' },
};
const allVars = classes.flatMap((c) => c.descriptor.options.flatMap((o) => o.env.map((e) => e.var)));

beforeEach(() => {
  for (const v of allVars) vi.stubEnv(v, undefined);
});
afterEach(() => vi.unstubAllEnvs());

function make(cls: Ctor, options: Record<string, unknown> = {}) {
  return new cls({ ...required[cls.descriptor.name], ...options } as never);
}

/** A valid string for the variable and the value it must resolve to. */
function sample(cls: Ctor, option: string, parse: string): [string, unknown] {
  if (cls.descriptor.name === 'wandb' && option === 'mode') return ['offline', 'offline'];
  if (cls.descriptor.name === 'wandb' && option === 'resume') return ['must', 'must'];
  if (cls.descriptor.name === 'comet_ml' && option === 'mode') return ['create', 'create'];
  switch (parse) {
    case 'boolean':
      return ['No', false];
    case 'json':
      return ['{"team":"a","n":1}', { team: 'a', n: 1 }];
    case 'list':
      return [' a, b,,c ', ['a', 'b', 'c']];
    case 'integer':
      return ['42', 42];
    default:
      return ['from-env', 'from-env'];
  }
}

/** An explicit option value of the right type, different from the sample. */
function explicit(parse: string, sampleValue: unknown): unknown {
  if (parse === 'boolean') return true;
  if (parse === 'json') return { explicit: 'yes' };
  if (parse === 'list') return ['explicit'];
  const otherEnumValue: Record<string, string> = { offline: 'disabled', must: 'allow', create: 'get' };
  return typeof sampleValue === 'string' && sampleValue in otherEnumValue ? otherEnumValue[sampleValue] : 'explicit';
}

/** A value that must be rejected, or undefined when any string is valid for the option. */
function badValue(cls: Ctor, option: string, parse: string): string | undefined {
  if (parse === 'boolean') return 'maybe';
  if (parse === 'json') return '{not json';
  if (parse === 'integer') return '4.5';
  if (['mode', 'resume'].includes(option)) return 'sometimes';
  if (cls.descriptor.name === 'wandb' && option === 'id') return 'a/b';
  return undefined;
}

const rows = classes.flatMap((cls) =>
  cls.descriptor.options.flatMap((o) => o.env.map((e) => ({ cls, name: cls.descriptor.name, option: o.name, env: e, default: o.default }))),
);

describe.each(rows)('$name.$option ← $env.var', ({ cls, option, env, default: dflt }) => {
  const [raw, parsed] = sample(cls, option, env.parse);

  it('set: the variable feeds the option', () => {
    vi.stubEnv(env.var, raw);
    expect(make(cls).options[option]).toEqual(parsed);
  });

  it(env.overrides ? 'set + explicit option: the variable wins (upstream)' : 'set + explicit option: the option wins', () => {
    const given = explicit(env.parse, parsed);
    vi.stubEnv(env.var, raw);
    expect(make(cls, { [option]: given }).options[option]).toEqual(env.overrides ? parsed : given);
  });

  it('empty string counts as unset', () => {
    vi.stubEnv(env.var, '');
    expect(make(cls).options[option]).toEqual(dflt);
    vi.stubEnv(env.var, '   ');
    expect(make(cls).options[option]).toEqual(dflt);
  });

});

const badRows = rows.flatMap((r) => {
  const bad = badValue(r.cls, r.option, r.env.parse);
  return bad === undefined ? [] : [{ ...r, bad }];
});

describe.each(badRows)('$name.$option ← $env.var=$bad', ({ cls, option, env, bad }) => {
  it('bad value: ConfigError naming the variable', () => {
    vi.stubEnv(env.var, bad);
    let err: unknown;
    try {
      make(cls);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).envVar).toBe(env.var);
    expect((err as ConfigError).option).toBe(option);
    expect((err as Error).message).toContain(env.var);
    expect((err as Error).message).toContain(cls.descriptor.className);
  });
});

describe('parse forms', () => {
  it.each([
    ['true', true], ['1', true], ['YES', true], ['on', true],
    ['false', false], ['0', false], ['no', false], ['Off', false],
  ])('boolean %s → %s (upstream #4223 bug not copied)', (raw, value) => {
    expect(parseEnv('X', raw, 'boolean')).toBe(value);
  });

  it('MLFLOW_NESTED_RUN=false really is false, even over nested_run: true', () => {
    vi.stubEnv('MLFLOW_NESTED_RUN', 'false');
    expect(new MLflowTracker({ nested_run: true }).options.nested_run).toBe(false);
  });

  it('bad messages name the expected form', () => {
    expect(() => parseEnv('MLFLOW_NESTED_RUN', 'maybe', 'boolean')).toThrow(
      'environment variable MLFLOW_NESTED_RUN must be a boolean (true/false, 1/0, yes/no, on/off); got "maybe". Fix or unset MLFLOW_NESTED_RUN.',
    );
    expect(() => parseEnv('MLFLOW_TAGS', '{x', 'json')).toThrow(/MLFLOW_TAGS must be JSON; got "\{x" \(/);
    expect(() => parseEnv('N', '9007199254740993', 'integer')).toThrow(/out of range/);
  });

  it('MLFLOW_TAGS must be a JSON object', () => {
    vi.stubEnv('MLFLOW_TAGS', '[1,2]');
    expect(() => new MLflowTracker()).toThrow(/MLFLOW_TAGS \(for option tags\) must be a JSON object/);
  });

  it('tags given as a JSON string option are parsed; a bad one names the option', () => {
    expect(new MLflowTracker({ tags: '{"a":"b"}' }).options.tags).toEqual({ a: 'b' });
    expect(() => new MLflowTracker({ tags: '{a' })).toThrow(/option "tags" \(can also be set with MLFLOW_TAGS\) must be an object or a JSON object string/);
  });

  it('secrets are never echoed', () => {
    vi.stubEnv('WANDB_API_KEY', 'sk-secret-123');
    const t = new WandBTracker();
    expect(t.options.api_key).toBe('sk-secret-123');
    let msg = '';
    try {
      new WandBTracker({ api_key: 12345 as never });
    } catch (e) {
      msg = (e as Error).message;
    }
    expect(msg).toContain('api_key');
    expect(msg).not.toContain('12345');
  });

  it('readEnv trims and treats blank as unset', () => {
    expect(readEnv({ A: ' x ' }, 'A')).toBe('x');
    expect(readEnv({ A: '' }, 'A')).toBeUndefined();
    expect(readEnv({}, 'A')).toBeUndefined();
  });
});

// Config-file parsing (runtime/core/config-file.ts, on js-yaml's event parser): the values YAML 1.2
// gives, positions of every kind of node, alias bombs, and what is refused with a located error.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { checkConfigText, loadConfigFile, parseLocated } from '../../runtime/core/config-file.js';
import type { Validator } from '../../runtime/core/options.js';
import * as sdk from '../../generated/index.gen.js';
import { tempDir } from '../support/helpers.js';

const errorsOf = async (text: string) => (await parseLocated(text)).errors.map((e) => [e.line, e.col, e.code, e.message]);

describe('parseLocated: values', () => {
  it('YAML 1.2 core schema, as before: yes/no/on/off and timestamps stay strings, 0x10 / 0o17 / 1e3 / .inf are numbers', async () => {
    const text = [
      'yes_: yes', 'no_: no', 'on_: on', 'off_: off', 'y_: y', 'True_: True', 'tRUE_: tRUE',
      'hex: 0x10', 'oct: 0o17', 'leading_zero: 017', 'bin: 0b101', 'sexagesimal: 1:20', 'underscore: 1_000',
      'exp: 1e3', 'float_exp: 1.5e3', 'inf: .inf', 'ninf: -.inf', 'nan: .nan', 'dot: 0.', 'plus: +12',
      'date: 2001-12-14', 'timestamp: 2001-12-14t21:59:43.10-05:00', 'tilde: ~', 'Null_: Null', 'empty:',
      'big: 12345678901234567890', 'quoted: "0x10"', 'str_tag: !!str 1', 'int_tag: !!int "3"',
      'literal: |\n  a\n  b', 'folded: >\n  a\n  b', 'merge_key_is_a_key: {<<: {x: 1}}', '__proto__: {polluted: 1}',
    ].join('\n');
    const { data, errors } = await parseLocated(text);
    expect(errors).toEqual([]);
    expect(data).toEqual({
      yes_: 'yes', no_: 'no', on_: 'on', off_: 'off', y_: 'y', True_: true, tRUE_: 'tRUE',
      hex: 16, oct: 15, leading_zero: 17, bin: '0b101', sexagesimal: '1:20', underscore: '1_000',
      exp: 1000, float_exp: 1500, inf: Infinity, ninf: -Infinity, nan: NaN, dot: 0, plus: 12,
      date: '2001-12-14', timestamp: '2001-12-14t21:59:43.10-05:00', tilde: null, Null_: null, empty: null,
      big: 12345678901234567000, quoted: '0x10', str_tag: '1', int_tag: 3,
      literal: 'a\nb\n', folded: 'a b\n', merge_key_is_a_key: { '<<': { x: 1 } }, ['__proto__']: { polluted: 1 },
    });
    expect(Object.getPrototypeOf(data)).toBe(Object.prototype);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });

  it('a %YAML 1.1 directive switches to YAML 1.1 (yes is true, 017 octal), as before', async () => {
    expect((await parseLocated('%YAML 1.1\n---\na: yes\nb: 017\nc: off\n')).data).toEqual({ a: true, b: 15, c: false });
  });

  it('an empty file is null; JSON is YAML', async () => {
    expect((await parseLocated('')).data).toBeNull();
    expect((await parseLocated('# only a comment\n')).data).toBeNull();
    expect((await parseLocated('{"a": [1, {"b": null}], "c": "\\u00e9"}')).data).toEqual({ a: [1, { b: null }], c: 'é' });
  });
});

describe('parseLocated: positions', () => {
  const text = [
    /* 1 */ 'plain: x',
    /* 2 */ 'double: "x"',
    /* 3 */ "single: 'x'",
    /* 4 */ 'literal: &lit |',
    /* 5 */ '  text',
    /* 6 */ 'folded: >- # a comment with | and >',
    /* 7 */ '  text',
    /* 8 */ 'flow: [1, {k: v}]',
    /* 9 */ 'block:',
    /* 10 */ '  - 1',
    /* 11 */ '  -',
    /* 12 */ '  - nested: yes',
    /* 13 */ 'alias: *lit',
    /* 14 */ 'empty:',
    /* 15 */ 'tagged: !!str',
    /* 16 */ '"quoted key": 1',
    /* 17 */ 'crlf: 1\r',
    /* 18 */ 'after: 2',
    /* 19 */ 'block2:',
    /* 20 */ '- multi',
    /* 21 */ '  line',
    /* 22 */ '- ',
    /* 23 */ '-',
    /* 24 */ '# - a comment',
    /* 25 */ '- last',
  ].join('\n');
  const cases: [string, boolean, number, number][] = [
    ['', false, 1, 1],
    ['/plain', false, 1, 8],
    ['/plain', true, 1, 1],
    ['/double', false, 2, 9],
    ['/single', false, 3, 9],
    ['/literal', false, 4, 15],
    ['/folded', false, 6, 9],
    ['/flow', false, 8, 7],
    ['/flow/1', false, 8, 11],
    ['/flow/1/k', false, 8, 15],
    ['/flow/1/k', true, 8, 12],
    ['/block', false, 10, 3],
    ['/block/0', false, 10, 5],
    ['/block/1', false, 11, 4],
    ['/block/2/nested', false, 12, 13],
    ['/alias', false, 13, 8],
    ['/empty', false, 14, 7],
    ['/tagged', false, 15, 14],
    ['/quoted key', true, 16, 1],
    ['/after', false, 18, 8],
    ['/block2/0', false, 20, 3],
    ['/block2/1', false, 22, 3],
    ['/block2/2', false, 23, 2],
    ['/block2/3', false, 25, 3],
    ['/missing', false, 1, 1],
    ['/block/9', false, 10, 3],
  ];
  it.each(cases)('%s (at key: %s) is at %i:%i', async (pointer, atKey, line, col) => {
    const parsed = await parseLocated(text);
    expect(parsed.errors).toEqual([]);
    expect(parsed.locate(pointer, atKey)).toEqual({ line, col });
  });
});

describe('parseLocated: refused documents', () => {
  it('a billion-laughs document (10 levels of 10 aliases) is refused quickly, at its first alias', async () => {
    let text = 'a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n';
    for (let i = 1; i < 10; i++) text += `a${i}: &a${i} [${Array.from({ length: 10 }, () => `*a${i - 1}`).join(', ')}]\n`;
    const before = process.memoryUsage().heapUsed;
    expect(await errorsOf(text)).toEqual([[2, 10, 'alias-limit', 'too many alias expansions (a YAML alias bomb?); the limit is 100 per document']]);
    expect(process.memoryUsage().heapUsed - before).toBeLessThan(64 * 1024 * 1024);
  });

  it('the alias limit counts as the yaml library did: an anchored scalar and 99 aliases pass, 100 do not; nested aliases weigh more', async () => {
    const uses = (n: number, anchor = 'a') => Array.from({ length: n }, (_, i) => `u${i}: *${anchor}`).join('\n');
    expect(await errorsOf(`a: &a 1\n${uses(99)}\n`)).toEqual([]); // the anchor counts once, each alias once more
    expect(await errorsOf(`a: &a 1\n${uses(100)}\n`)).toEqual([[2, 5, 'alias-limit', expect.any(String)]]);
    // b holds 2 aliases of a, so a counts 3 and each use of b weighs 3: (1 + 32) × 3 ≤ 100 < (1 + 33) × 3.
    expect(await errorsOf(`a: &a 1\nb: &b [*a, *a]\n${uses(32, 'b')}\n`)).toEqual([]);
    expect(await errorsOf(`a: &a 1\nb: &b [*a, *a]\n${uses(33, 'b')}\n`)).toEqual([[2, 8, 'alias-limit', expect.any(String)]]);
    // Aliases of empty collections expand to nothing and are not counted (as before).
    expect(await errorsOf(`e: &e []\n${uses(300, 'e')}\n`)).toEqual([]);
  });

  it('an alias to an undefined anchor says so, at the alias (it was reported as an alias bomb)', async () => {
    expect(await errorsOf('project_name: x\nlog_with: *nope\n')).toEqual([[2, 11, 'parse', 'unidentified alias "nope"']]);
  });

  it('tags outside YAML 1.2 (local tags, !!binary, !!set, !!timestamp) are located errors (they were strings, Buffers, Sets or Dates, some with a process warning)', async () => {
    expect(await errorsOf('a: 1\nb: !custom 1\n')).toEqual([[2, 4, 'parse', 'unknown scalar tag !<!custom>']]);
    expect(await errorsOf('b: !!binary aGVsbG8=\n')).toEqual([[1, 4, 'parse', 'unknown scalar tag !<tag:yaml.org,2002:binary>']]);
    expect(await errorsOf('b: !!set {x, y}\n')).toEqual([[1, 4, 'parse', 'unknown mapping tag !<tag:yaml.org,2002:set>']]);
    expect(await errorsOf('b: !!timestamp 2001-12-14\n')).toEqual([[1, 4, 'parse', 'unknown scalar tag !<tag:yaml.org,2002:timestamp>']]);
  });

  it('a collection as a key is a located error (it was silently stringified)', async () => {
    expect(await errorsOf('a: 1\n? [x, y]\n: z\n')).toEqual([[2, 3, 'parse', 'object-based map does not support complex keys']]);
  });

  it('a second document is a located error at its ---', async () => {
    expect(await errorsOf('project_name: x\n---\nproject_name: y\n')).toEqual([
      [2, 1, 'parse', 'more than one YAML document (a second "---"); a config file is one document'],
    ]);
  });

  it('repeated keys: every repeat, in every map, also through quoted, numeric and aliased keys (an aliased key was missed)', async () => {
    expect(await errorsOf('a: 1\nb: {c: 1, c: 2}\n"a": 3\n0x10: x\n16: y\nk: &k name\nname: 1\n*k : 2\n')).toEqual([
      [2, 11, 'duplicate-key', 'Map keys must be unique; "c" is repeated'],
      [3, 1, 'duplicate-key', 'Map keys must be unique; "a" is repeated'],
      [5, 1, 'duplicate-key', 'Map keys must be unique; "16" is repeated'],
      [8, 1, 'duplicate-key', 'Map keys must be unique; "name" is repeated'],
    ]);
  });

  it('nesting: 1,000 levels parse, 1,001 are too deep (a fixed limit instead of the stack running out)', async () => {
    const deep = (n: number) => `{"config": ${'['.repeat(n - 1)}${']'.repeat(n - 1)}}`;
    expect((await parseLocated(deep(1000))).errors).toEqual([]);
    expect(await errorsOf(deep(1001))).toEqual([[1, 1011, 'too-deep', 'nesting too deep for the parser']]);
  });
});

describe('loadConfigFile / checkConfigText', () => {
  it('loadConfigFile parses and validates once, and loads the schema only for unknown keys (it validated twice)', async () => {
    const dir = tempDir();
    const calls: string[] = [];
    const validate = ((data: unknown) => {
      calls.push('validate');
      return sdk.validateTrackingConfig(data);
    }) as Validator;
    Object.defineProperty(validate, 'errors', { get: () => sdk.validateTrackingConfig.errors });
    const loadSchema = async () => {
      calls.push('schema');
      return sdk.loadTrackingConfigSchema();
    };
    const unknown = join(dir, 'unknown.yaml');
    writeFileSync(unknown, 'project_name: x\nlog_with: tensorboard\nlogging_dri: x\n');
    const err = await loadConfigFile(unknown, validate, loadSchema).catch((e: unknown) => e);
    expect((err as Error).message).toBe(`${unknown}: invalid tracker config:\n  ${unknown}:3:1  /logging_dri  unknown key "logging_dri"; did you mean "logging_dir"?`);
    expect(calls).toEqual(['validate', 'schema']);
    calls.length = 0;
    const wrongType = join(dir, 'type.yaml');
    writeFileSync(wrongType, 'project_name: 3\nlog_with: tensorboard\n');
    await expect(loadConfigFile(wrongType, validate, loadSchema)).rejects.toThrow('/project_name  must be string, got integer 3');
    expect(calls).toEqual(['validate']);
  });

  it('80,000 unknown keys and a map of 80,000 valid keys: every issue located on its own line', async () => {
    const schema = await sdk.loadTrackingConfigSchema();
    const n = 80_000;
    const lines: string[] = [];
    for (let i = 0; i < n; i++) lines.push(`key_${i}: ${i}\n`);
    const unknown = await checkConfigText('f.yaml', `project_name: x\nlog_with: all\n${lines.join('')}`, sdk.validateTrackingConfig, schema);
    expect(unknown.issues).toHaveLength(n);
    expect(unknown.issues[n - 1]).toMatchObject({ line: n + 2, col: 1, pointer: `/key_${n - 1}`, code: 'unknown-key' });
    const valid = await checkConfigText('f.yaml', `project_name: x\nlog_with: all\nconfig:\n  ${lines.join('  ')}`, sdk.validateTrackingConfig, schema);
    expect(valid.issues).toEqual([]);
    expect(Object.keys((valid.data as { config: object }).config)).toHaveLength(n);
  });
});

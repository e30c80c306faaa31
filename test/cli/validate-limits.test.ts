// Config files that are not configs: too large, binary, alias bombs, too deep, repeated keys.
// `trackspec validate` reports them as located problems (exit 1, no stack trace);
// loadTrackingConfig throws a ConfigError listing them. (Timings are in test/bench/validate.bench.ts.)
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError, ValidationError, loadTrackingConfig } from '../../generated/index.gen.js';
import { DEFAULT_MAX_CONFIG_BYTES, checkConfigText } from '../../runtime/core/config-file.js';
import * as sdk from '../../generated/index.gen.js';
import { runCli, tempDir } from '../support/helpers.js';

const BOMB = `project_name: x
a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
`;

function file(name: string, content: string | Buffer): string {
  const path = join(tempDir(), name);
  writeFileSync(path, content);
  return path;
}

describe('trackspec validate: inputs that are not configs', () => {
  it('a file over the size limit is one located problem naming the limit and the flag; --max-bytes raises it', () => {
    const path = file('big.yaml', `project_name: x\nlog_with: tensorboard\nconfig:\n  pad: "${'x'.repeat(200)}"\n`);
    const r = runCli(['validate', '--max-bytes', '100', path]);
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/^\S+big\.yaml:1:1 {2}error {2}\/ {2}file is 2\d\d bytes, over the 100-byte limit for config files; raise it with --max-bytes N if this really is a config file\n$/);
    expect(r.stderr).toBe('1 problem(s) in 1 of 1 file(s)\n');
    const ok = runCli(['validate', '--max-bytes', '1000', path]);
    expect(ok.code).toBe(0);
    expect(runCli(['validate', '--max-bytes', 'lots', path]).code).toBe(2);
    expect(runCli(['validate', '--max-bytes', 'lots', path]).stderr).toContain('--max-bytes must be a positive whole number of bytes; got "lots"');
  });

  it('the default limit is 8 MiB, checked before the file is parsed', () => {
    expect(DEFAULT_MAX_CONFIG_BYTES).toBe(8 * 1024 * 1024);
    const path = file('huge.yaml', Buffer.alloc(DEFAULT_MAX_CONFIG_BYTES + 1, 'a'));
    const r = runCli(['validate', '--format', 'json', path]);
    expect(r.code).toBe(1);
    expect(JSON.parse(r.stdout)).toEqual([
      {
        file: path, line: 1, col: 1, severity: 'error', code: 'too-large', pointer: '',
        message: `file is ${DEFAULT_MAX_CONFIG_BYTES + 1} bytes, over the ${DEFAULT_MAX_CONFIG_BYTES}-byte limit for config files; raise it with --max-bytes N if this really is a config file`,
      },
    ]);
  });

  it('an alias bomb is a located problem at the first alias, exit 1, no stack trace', () => {
    const path = file('bomb.yaml', BOMB);
    const r = runCli(['validate', path]);
    expect(r.code).toBe(1);
    expect(r.stdout).toBe(`${path}:3:8  error  /  too many alias expansions (a YAML alias bomb?); the limit is 100 per document\n`);
    expect(r.stderr).toBe('1 problem(s) in 1 of 1 file(s)\n');
    expect(r.stderr + r.stdout).not.toMatch(/internal error|ReferenceError|    at /);
  });

  it('binary input is reported without its bytes', () => {
    const bytes = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x1b, 0x5b, 0x32, 0x4a, 0xff]);
    const path = file('image.yaml', bytes);
    const r = runCli(['validate', path]);
    expect(r.code).toBe(1);
    expect(r.stdout).toBe(`${path}:1:1  error  /  not a text file (a NUL byte at byte offset 8); a config file is YAML or JSON text\n`);
    const latin1 = file('latin1.yaml', Buffer.from('project_name: caf\xe9\n', 'latin1'));
    const l = runCli(['validate', latin1]);
    expect(l.code).toBe(1);
    expect(l.stdout).toBe(`${latin1}:1:1  error  /  not UTF-8 text; a config file is YAML or JSON text in UTF-8\n`);
    expect(l.stdout).not.toContain('\ufffd');
  });

  it('nesting too deep for the parser is located, not a crash', () => {
    const path = file('deep.json', `{"config": ${'['.repeat(20_000)}${']'.repeat(20_000)}}`);
    const r = runCli(['validate', path]);
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/^\S+deep\.json:1:\d+ {2}error {2}\/ {2}nesting too deep for the parser\n/);
    expect(r.stderr).not.toMatch(/internal error|RangeError/);
  });
});

describe('checkConfigText: repeated keys and many keys', () => {
  const schemaP = sdk.loadTrackingConfigSchema();

  it('a repeated key is located at its second occurrence (also 1 vs "1")', async () => {
    const text = 'project_name: x\nconfig:\n  a: 1\n  b: 2\n  a: 3\n  1: x\n  "1": y\n';
    const r = await checkConfigText('f.yaml', text, sdk.validateTrackingConfig, await schemaP);
    expect(r.issues.map((i) => [i.line, i.col, i.code, i.message])).toEqual([
      [5, 3, 'duplicate-key', 'Map keys must be unique; "a" is repeated'],
      [7, 3, 'duplicate-key', 'Map keys must be unique; "1" is repeated'],
    ]);
  });

  it('every one of 5,000 unknown keys is located on its own line', async () => {
    const n = 5000;
    let text = 'project_name: x\nlog_with: tensorboard\n';
    for (let i = 0; i < n; i++) text += `k${i}: ${i}\n`;
    const r = await checkConfigText('f.yaml', text, sdk.validateTrackingConfig, await schemaP);
    expect(r.issues).toHaveLength(n);
    expect(r.issues.map((i) => i.line)).toEqual(Array.from({ length: n }, (_, i) => i + 3));
    expect(r.issues[n - 1]!.message).toBe('unknown key "k4999"; expected one of "$schema", "project_name", "log_with", "logging_dir", "config", "init_kwargs"');
  });
});

describe('loadTrackingConfig: the same limits as ConfigErrors', () => {
  it('an alias bomb is a ConfigError with the located issue, not a raw ReferenceError', async () => {
    const path = file('bomb.yaml', BOMB);
    const err = await loadTrackingConfig(path).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).message).toBe(
      `${path}: not a readable tracker config:\n  ${path}:3:8  /  too many alias expansions (a YAML alias bomb?); the limit is 100 per document`,
    );
    expect((err as ConfigError).issues).toMatchObject([{ code: 'alias-limit', line: 3, col: 8 }]);
  });

  it('binary and oversized files are ConfigErrors; a repeated key is a ValidationError', async () => {
    const bin = file('bin.yaml', Buffer.from([1, 2, 0, 3]));
    const e1 = (await loadTrackingConfig(bin).catch((e: unknown) => e)) as ConfigError;
    expect(e1).toBeInstanceOf(ConfigError);
    expect(e1.message).toContain('not a text file (a NUL byte at byte offset 2)');
    const big = file('big.yaml', Buffer.alloc(DEFAULT_MAX_CONFIG_BYTES + 10, ' '));
    const e2 = (await loadTrackingConfig(big).catch((e: unknown) => e)) as ConfigError;
    expect(e2).toBeInstanceOf(ConfigError);
    expect(e2.message).toContain(`file is ${DEFAULT_MAX_CONFIG_BYTES + 10} bytes, over the ${DEFAULT_MAX_CONFIG_BYTES}-byte limit`);
    const dup = file('dup.yaml', 'project_name: x\nproject_name: y\n');
    const e3 = (await loadTrackingConfig(dup).catch((e: unknown) => e)) as ValidationError;
    expect(e3).toBeInstanceOf(ValidationError);
    expect(e3.message).toContain(`${dup}:2:1  /  Map keys must be unique; "project_name" is repeated`);
  });
});

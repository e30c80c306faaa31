// runtime/io/safe-path.ts: resolve, then check containment; and the backends whose paths come from
// user-given ids (W&B offline runs) stay inside their directory by construction.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { ConfigError, WandBTracker, setWarningHandler } from '../../generated/index.gen.js';
import { pathNameProblem, resolveInside } from '../../runtime/io/safe-path.js';
import { tempDir } from '../support/helpers.js';

beforeEach(() => {
  vi.stubEnv('WANDB_RUN_ID', undefined);
  setWarningHandler(() => undefined);
});
afterEach(() => {
  vi.unstubAllEnvs();
  setWarningHandler(undefined);
});

describe('pathNameProblem / resolveInside', () => {
  it('accepts names below the root, nested or not; refuses escapes, absolute paths and NUL', () => {
    for (const ok of ['a', 'a/b', 'a/../b', './a', '..a', 'a..', 'a/..b']) expect(pathNameProblem(ok), ok).toBeUndefined();
    expect(pathNameProblem('..')).toBe("leaves its directory ('..' segments); use a name below it");
    expect(pathNameProblem('a/../../b')).toBe("leaves its directory ('..' segments); use a name below it");
    expect(pathNameProblem('/etc/passwd')).toBe('is an absolute path; give a name relative to its directory');
    expect(pathNameProblem('C:\\x')).toBe('is an absolute path; give a name relative to its directory');
    expect(pathNameProblem('a\0b')).toBe('contains a NUL character');
    expect(pathNameProblem('')).toBe("resolves to its directory itself (e.g. '', '.' or 'a/..')");
    expect(pathNameProblem('a/..', { root: true })).toBeUndefined();
    expect(pathNameProblem('a/b', { nested: false })).toBe("must be a single name, without '/' or '\\'");
  });

  it('resolveInside returns the resolved path, or throws the caller\'s error', () => {
    const root = tempDir();
    expect(resolveInside(root, 'x/y', () => new Error('no'))).toBe(path.join(root, 'x', 'y'));
    expect(() => resolveInside(root, '../x', (p) => new ConfigError(`run_name ${p}`, { option: 'run_name' }))).toThrow(
      "run_name leaves its directory ('..' segments); use a name below it",
    );
  });
});

describe('W&B offline: a run id cannot name a path outside dir', () => {
  it("ids with '/' or '\\' are refused by the spec; '..' stays one path segment", async () => {
    const dir = tempDir();
    expect(() => new WandBTracker({ run_name: 'p', mode: 'offline', dir, id: '../../x' })).toThrow(ConfigError);
    expect(() => new WandBTracker({ run_name: 'p', mode: 'offline', dir, id: '..\\x' })).toThrow(ConfigError);
    const t = new WandBTracker({ run_name: 'p', mode: 'offline', dir, id: '..' });
    await t.start();
    t.log({ a: 1 }, 0);
    await t.finish();
    const runs = fs.readdirSync(path.join(dir, 'wandb'));
    expect(runs).toHaveLength(1);
    expect(runs[0]).toMatch(/^offline-run-\d{8}_\d{6}-\.\.$/);
    expect(fs.readdirSync(path.join(dir, 'wandb', runs[0]!))).toContain('run-...wandb');
  });
});

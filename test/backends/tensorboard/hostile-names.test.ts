// Names that become paths (run_name, add_scalars sub-runs, filename_suffix) never leave logging_dir:
// refused with a typed error naming the option or key, before anything is written.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ConfigError, SummaryWriter, TensorBoardTracker, ValidationError, setWarningHandler } from '../../../generated/index.gen.js';
import { listEventFiles, readEventsSync, scalarOf } from '../../../runtime/backends/tensorboard/index.js';
import { tempDir } from '../../support/helpers.js';

/** Every file under `dir`, relative. */
function tree(dir: string): string[] {
  if (!fs.existsSync(dir)) return [];
  return (fs.readdirSync(dir, { recursive: true }) as string[]).sort();
}

/** A sandbox: <sandbox>/a/b/logs is logging_dir, so an escape of up to three levels stays observable. */
function sandbox(): { box: string; logs: string } {
  const box = tempDir();
  const logs = path.join(box, 'a', 'b', 'logs');
  fs.mkdirSync(logs, { recursive: true });
  return { box, logs };
}

afterEach(() => setWarningHandler(undefined));

describe('TensorBoard: hostile names', () => {
  it("run_name '../../escape' is a ConfigError naming run_name; nothing is created anywhere", async () => {
    const { box, logs } = sandbox();
    const t = new TensorBoardTracker({ run_name: '../../escape', logging_dir: logs });
    const err = (await t.start().catch((e: unknown) => e)) as ConfigError;
    expect(err).toBeInstanceOf(ConfigError);
    expect(err.option).toBe('run_name');
    expect(err.message).toBe(
      `TensorBoardTracker: run_name "../../escape" leaves its directory ('..' segments); use a name below it (logging_dir ${logs})`,
    );
    expect(tree(box)).toEqual(['a', path.join('a', 'b'), path.join('a', 'b', 'logs')]);
  });

  it('an absolute run_name is refused, even one inside logging_dir', async () => {
    const { logs } = sandbox();
    for (const run_name of ['/tmp/x', path.join(logs, 'inside')]) {
      const err = (await new TensorBoardTracker({ run_name, logging_dir: logs }).start().catch((e: unknown) => e)) as ConfigError;
      expect(err).toBeInstanceOf(ConfigError);
      expect(err.message).toContain('is an absolute path; give a name relative to its directory');
    }
    expect(tree(logs)).toEqual([]);
  });

  it("nested run names ('exp/a', 'exp/../b') stay supported: they resolve inside logging_dir", async () => {
    const { logs } = sandbox();
    for (const run_name of ['exp/a', 'exp/../b']) {
      const t = new TensorBoardTracker({ run_name, logging_dir: logs });
      await t.start();
      t.log({ loss: 1 }, 0);
      await t.finish();
    }
    expect(listEventFiles(path.join(logs, 'exp', 'a'))).toHaveLength(1);
    expect(listEventFiles(path.join(logs, 'b'))).toHaveLength(1);
  });

  it("add_scalars key '/../../../../../x' is a ValidationError naming the key; nothing of that call is written", async () => {
    const { box, logs } = sandbox();
    const t = new TensorBoardTracker({ run_name: 'run', logging_dir: logs });
    await t.start();
    t.log({ loss: { train: 1 } }, 0);
    let err: unknown;
    try {
      t.log({ acc: 0.5, loss: { eval: 2, '/../../../../../x': 1 } }, 1);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ValidationError);
    expect((err as ValidationError).message).toBe(
      `tensorboard: add_scalars key "/../../../../../x" of "loss" names the sub-run directory "loss_/../../../../../x", which leaves its directory ('..' segments); use a name below it`,
    );
    expect((err as ValidationError).issues).toEqual([
      { pointer: '/loss/~1..~1..~1..~1..~1..~1x', code: 'path', message: `sub-run directory "loss_/../../../../../x" leaves its directory ('..' segments); use a name below it` },
    ]);
    t.log({ loss: { 'a/b': 3 } }, 2); // nesting, as torch's add_scalars does
    await t.finish();
    // Only the run, its legitimate sub-runs, and nothing outside logging_dir.
    expect(tree(box).filter((p) => !p.includes('events.out.tfevents'))).toEqual(
      ['a', 'a/b', 'a/b/logs', 'a/b/logs/run', 'a/b/logs/run/loss_a', 'a/b/logs/run/loss_a/b', 'a/b/logs/run/loss_train'].map((p) => p.split('/').join(path.sep)),
    );
    // The refused call wrote nothing: no acc scalar in the run, no eval sub-run.
    const main = readEventsSync(listEventFiles(path.join(logs, 'run'))[0]!).events;
    expect(main.flatMap((e) => e.summary ?? []).map((v) => v.tag)).toEqual([]);
    const nested = readEventsSync(listEventFiles(path.join(logs, 'run', 'loss_a', 'b'))[0]!).events;
    expect(nested.flatMap((e) => (e.summary ?? []).map((v) => [e.step, v.tag, scalarOf(v)]))).toEqual([[2, 'loss', 3]]);
  });

  it("a sub-run that resolves to the run directory itself ('loss_/..') is refused too", () => {
    const { logs } = sandbox();
    const w = new SummaryWriter(path.join(logs, 'run'), { flushSecs: 0 });
    expect(() => w.addScalars('loss', { '/..': 1 }, 0)).toThrow(/names the sub-run directory "loss_\/\.\.", which resolves to its directory itself/);
    return w.close();
  });

  it("filename_suffix '/../../x' is a ConfigError naming filename_suffix, before anything is created", async () => {
    const { box, logs } = sandbox();
    const err = (await new TensorBoardTracker({ run_name: 'run', logging_dir: logs, filename_suffix: '/../../x' }).start().catch((e: unknown) => e)) as ConfigError;
    expect(err).toBeInstanceOf(ConfigError);
    expect(err.option).toBe('filename_suffix');
    expect(err.message).toBe(`TensorBoardTracker: filename_suffix "/../../x" must not contain '/', '\\' or NUL: it ends the event file's name`);
    expect(() => new SummaryWriter(path.join(logs, 'w'), { filenameSuffix: '\\..\\x' })).toThrow(ConfigError);
    expect(tree(box)).toEqual(['a', path.join('a', 'b'), path.join('a', 'b', 'logs')]);
    // An ordinary suffix still works.
    const t = new TensorBoardTracker({ run_name: 'run', logging_dir: logs, filename_suffix: '.v2' });
    await t.start();
    await t.finish();
    expect(listEventFiles(path.join(logs, 'run'))[0]).toMatch(/\.v2$/);
  });
});

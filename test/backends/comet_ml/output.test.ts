// Comet console output (issue 17, log_output): stdout/stderr lines to write/experiment/output in
// batches, the terminal unchanged, off by default.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { CometMLTracker } from '../../../generated/index.gen.js';
import { OUTPUT_BATCH } from '../../../runtime/backends/comet_ml/index.js';
import { syncAll } from '../../../runtime/backends/sync.js';
import { cometTestSetup, cometTestTeardown } from './setup.js';
import { CometTestServer } from './server.js';

let server: CometTestServer;
let offline: string;
/** What the terminal received, per stream, through the writes the test put in place. */
let terminal: { out: string[]; err: string[] };
let realOut: typeof process.stdout.write;
let realErr: typeof process.stderr.write;
let termOut: typeof process.stdout.write;
let termErr: typeof process.stderr.write;
const saved = { ...OUTPUT_BATCH };
beforeEach(async () => {
  ({ server, offline } = await cometTestSetup('comet-offline-', { heartbeatMs: 300 }));
  terminal = { out: [], err: [] };
  realOut = process.stdout.write;
  realErr = process.stderr.write;
  termOut = ((c: string | Uint8Array) => (terminal.out.push(String(c)), true)) as typeof process.stdout.write;
  termErr = ((c: string | Uint8Array) => (terminal.err.push(String(c)), true)) as typeof process.stderr.write;
  process.stdout.write = termOut;
  process.stderr.write = termErr;
});
afterEach(async () => {
  process.stdout.write = realOut;
  process.stderr.write = realErr;
  Object.assign(OUTPUT_BATCH, saved);
  await cometTestTeardown(server);
});

describe('log_output', () => {
  it('sends stdout and stderr lines (offset per stream, stderr flag, timestamps) and the terminal shows exactly the same', async () => {
    const t = new CometMLTracker({ run_name: 'p', log_output: true, offline_directory: offline });
    await t.start();
    const before = { out: terminal.out.length, err: terminal.err.length };
    process.stdout.write('hello\nwor');
    process.stdout.write(Buffer.from('ld\n'));
    process.stderr.write('warn 1\nwarn 2\n');
    process.stdout.write('no newline at the end');
    await t.finish();
    expect(terminal.out.slice(before.out)).toEqual(['hello\nwor', 'ld\n', 'no newline at the end']);
    expect(terminal.err.slice(before.err)).toEqual(['warn 1\nwarn 2\n']);
    expect(process.stdout.write).toBe(termOut);
    expect(process.stderr.write).toBe(termErr);
    const e = server.experiment(t.tracker.experimentKey!)!;
    const lines = e.output.map((l) => [l.stderr, l.offset, l.output]);
    expect(lines.filter((l) => !l[0])).toEqual([
      [false, 0, 'hello\n'],
      [false, 1, 'world\n'],
      [false, 2, 'no newline at the end'],
    ]);
    // stderr: the "experiment is live" line printed by start(), then the program's lines
    const err = lines.filter((l) => l[0]);
    expect(err[0]![2]).toMatch(/^comet_ml: experiment is live at http/);
    expect(err.slice(1)).toEqual([
      [true, 1, 'warn 1\n'],
      [true, 2, 'warn 2\n'],
    ]);
    expect(e.output.every((l) => l.localTimestamp! > 1.7e12 && l.runContext === null)).toBe(true);
    expect(e.writesAfterEnd).toBe(false);
    const req = server.requests.find((r) => r.path.endsWith('/output'))!;
    expect(Object.keys(req.body as object).sort()).toEqual(['experimentKey', 'outputLines', 'runContext']);
  });

  it('batches: at most maxLines per request, one request per stream, sent every interval while running', async () => {
    OUTPUT_BATCH.maxLines = 3;
    OUTPUT_BATCH.intervalMs = 50;
    const t = new CometMLTracker({ run_name: 'p', log_output: true, offline_directory: offline });
    await t.start();
    for (let i = 0; i < 7; i++) process.stdout.write(`line ${i}\n`);
    process.stderr.write('e\n');
    await new Promise((r) => setTimeout(r, 1200)); // interval, then the send queue's own delay (≤ 500 ms)
    const key = t.tracker.experimentKey!;
    const during = server.experiment(key)!;
    expect(during.output.filter((l) => !l.stderr).map((l) => l.output)).toEqual(Array.from({ length: 7 }, (_, i) => `line ${i}\n`));
    expect([...during.outputRequests].sort()).toEqual([1, 2, 3, 3]); // stderr: the "live" line and 'e'
    await t.finish();
  });

  it('is off by default: nothing captured, the writes are not wrapped', async () => {
    const t = new CometMLTracker({ run_name: 'p', offline_directory: offline });
    await t.start();
    expect(process.stdout.write).toBe(termOut);
    process.stdout.write('x\n');
    await t.finish();
    expect(server.requests.some((r) => r.path.endsWith('/output'))).toBe(false);
  });

  it('offline: the lines are spooled and uploaded by sync', async () => {
    const t = new CometMLTracker({ run_name: 'p', log_output: true, online: false, offline_directory: offline });
    await t.start();
    process.stdout.write('kept\n');
    await t.finish();
    process.stdout.write = realOut;
    process.stderr.write = realErr;
    await syncAll(offline, { out: () => undefined });
    const [e] = server.experiments();
    expect(e!.output.map((l) => l.output)).toEqual(['kept\n']);
  });
});

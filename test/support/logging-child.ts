/**
 * A child process that logs through a tracker until it is SIGKILLed: the write-ahead (durability)
 * tests of the network backends. The child's code is the test's; by convention it prints one
 * `ready` line (e.g. `run <id>`) once started, starts its logging loop on a line on stdin, and
 * prints `logged <step> <Date.now()>` after each batch of log() calls.
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { once } from 'node:events';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT, tempDir } from './helpers.js';

export interface Logged {
  step: number;
  /** Date.now() in the child right after that step was logged. */
  at: number;
}

export interface LoggingChild {
  /** The capture groups of the child's `ready` line. */
  ready: string[];
  /** Start the child's logging loop. */
  go(): void;
  /** SIGKILL the child now: when, and what it said it had logged. */
  kill(): Promise<{ killedAt: number; logged: Logged[]; stderr: string }>;
}

/** Write `code` to a temp .mts file, run it (through tsx) and wait for its `ready` line. */
export async function startLoggingChild(code: string, options: { ready: RegExp; env?: NodeJS.ProcessEnv }): Promise<LoggingChild> {
  const script = join(tempDir('child-'), 'child.mts');
  writeFileSync(script, code);
  const proc: ChildProcessWithoutNullStreams = spawn(process.execPath, ['--import', 'tsx', script], { cwd: ROOT, env: options.env ?? process.env, stdio: ['pipe', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  proc.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const ready = await new Promise<string[]>((resolve, reject) => {
    proc.stdout.on('data', (d: Buffer) => {
      stdout += d.toString();
      const m = options.ready.exec(stdout);
      if (m) resolve(m.slice(1));
    });
    proc.once('close', () => reject(new Error(`child ended early: ${stderr}`)));
  });
  return {
    ready,
    go: () => void proc.stdin.write('go\n'),
    async kill() {
      const killedAt = Date.now();
      proc.kill('SIGKILL');
      await once(proc, 'close');
      const logged = [...stdout.matchAll(/^logged (\d+) (\d+)$/gm)].map((m) => ({ step: Number(m[1]), at: Number(m[2]) }));
      return { killedAt, logged, stderr };
    },
  };
}

/** The last step the child had logged at or before `at` (what must survive a kill). */
export function lastStepAtOrBefore(logged: readonly Logged[], at: number): number {
  return logged.filter((l) => l.at <= at).at(-1)!.step;
}

/**
 * Child source for the usual logging loop, with a tracker `t` in scope: each batch logs `rows` rows
 * of ten metrics (m<k> = step + k/10) at the next steps and prints `logged <last step> <Date.now()>`;
 * on the `go` line a batch runs every 5 ms. With `firstNow`, one batch is logged at once before that.
 */
export function metricsLoop(rows: number, firstNow = false): string {
  return `let step = 0;
const logBatch = () => {
  for (let i = 0; i < ${rows}; i++, step++) { const v = {}; for (let k = 0; k < 10; k++) v['m' + k] = step + k / 10; t.log(v, step); }
  process.stdout.write('logged ' + (step - 1) + ' ' + Date.now() + '\\n');
};
${firstNow ? 'logBatch();\n' : ''}process.stdin.once('data', () => setInterval(logBatch, 5));`;
}

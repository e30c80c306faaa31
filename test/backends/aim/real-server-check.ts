// Local check of AimTracker against a REAL Aim 3.29.1 server (not run by CI or vitest: CI cannot
// build the server). It builds nothing; it needs an oracle folder prepared with
// ../shared/oracles/aim/setup.sh (start.sh, stop.sh, env.sh, read_repo.py and the built sources).
//
//   npx tsx test/backends/aim/real-server-check.ts ORACLE_DIR [--steps 2000] [--rounds 2] [--keep]
//
// 1. Starts `aim server` (ORACLE_DIR/start.sh) on a free 127.0.0.1 port with a fresh repository.
// 2. Runs an Accelerate-style workload with AimTracker: experiment, run name, nested hparams,
//    log_system_params, 2 metrics × N steps (NaN, +Inf, -Inf at steps 5-7), a metric with
//    context {subset: 'val'} and epochs, a text and an image; then finish().
// 3. Runs the same workload with Aim's own SDK (`Run(repo='aim://…')`, `run.track` per key, as
//    Accelerate's AimTracker does) against the same server; rounds alternate trackspec and SDK.
// 4. Stops the server and reads the repository back with Aim's SDK (ORACLE_DIR/read_repo.py).
// 5. Compares each trackspec run with the SDK run of its round value by value (metrics: steps,
//    values, epochs per name and context; texts, images, hparams, experiment, active, end time,
//    archived, tags, description, __system_params keys), and with the expected values.
// 6. Prints the points compared, the mismatches, and throughput: points/s from the first log() to
//    everything acknowledged, the ratio trackspec/SDK (goal >= 0.9), and the server's CPU time per
//    point (independent of the machine's load, which makes wall-clock ratios noisy).
// Exit status 1 on any mismatch or failure; the ratio is reported, not enforced.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { AimTracker, setWarningHandler } from '../../../generated/index.gen.js';

const args = process.argv.slice(2);
const flag = (name: string): string | undefined => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
};
const oracle = args[0] && !args[0].startsWith('--') ? resolve(args[0]) : undefined;
if (!oracle) {
  console.error('usage: npx tsx test/backends/aim/real-server-check.ts ORACLE_DIR [--steps 2000] [--rounds 2] [--keep]');
  process.exit(2);
}
const STEPS = Number(flag('--steps') ?? 2000);
const ROUNDS = Number(flag('--rounds') ?? 2);
const KEEP = args.includes('--keep');
const PY = '/usr/bin/python3';
const POINTS = STEPS * 2 + 3 + 1 + 1; // loss, acc; val_loss × 3; a text; an image

/** The workload's values, shared by both writers. */
const loss = (i: number): number => (i === 5 ? NaN : i === 6 ? Infinity : i === 7 ? -Infinity : 1 / (i + 1));
const acc = (i: number): number => i / STEPS;
const HPARAMS = { lr: 0.001, batch: 32, opt: { name: 'adam', betas: [0.9, 0.999] }, flag: true };

const SDK_SCRIPT = `
import sys, time, json
import numpy as np
from aim import Run, Text, Image
port, steps, name = sys.argv[1], int(sys.argv[2]), sys.argv[3]
run = Run(repo=f'aim://127.0.0.1:{port}', experiment='exp', system_tracking_interval=None, log_system_params=True)
run.name = name
run['hparams'] = ${JSON.stringify(HPARAMS).replace(/true/g, 'True')}
t0 = time.time()
for i in range(steps):
    vals = {'loss': float('nan') if i == 5 else float('inf') if i == 6 else float('-inf') if i == 7 else 1 / (i + 1), 'acc': i / steps}
    for k, v in vals.items():
        run.track(v, name=k, step=i)
for e in range(3):
    run.track(0.5 - e * 0.1, name='val_loss', step=e, epoch=e, context={'subset': 'val'})
run.track(Text('hello text'), name='note', step=0)
px = (np.arange(4 * 3 * 3) * 37 % 256).astype(np.uint8).reshape(3, 4, 3)
run.track(Image(px, caption='cap'), name='sample', step=0)
run.repo._client.get_queue().wait_for_finish()
seconds = time.time() - t0
h = run.hash
run.close()
print(json.dumps({'hash': h, 'seconds': seconds}))
`;

async function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const s = createServer();
    s.once('error', rej);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => res(port));
    });
  });
}

/** CPU seconds (user + system) of every process in the server's process group. */
function serverCpu(pgid: string): number {
  const pids = execFileSync('ps', ['-e', '-o', 'pid=,pgid='], { encoding: 'utf8' })
    .trim()
    .split('\n')
    .map((l) => l.trim().split(/\s+/))
    .filter(([, g]) => g === pgid)
    .map(([p]) => p!);
  let ticks = 0;
  for (const p of pids) {
    try {
      const f = readFileSync(`/proc/${p}/stat`, 'utf8').split(') ')[1]!.split(' ');
      ticks += Number(f[11]) + Number(f[12]); // utime, stime (fields 14, 15)
    } catch {
      // exited
    }
  }
  return ticks / 100;
}

async function trackspecRun(port: number, name: string): Promise<{ hash: string; seconds: number }> {
  const t = new AimTracker({ run_name: name, logging_dir: `aim://127.0.0.1:${port}`, experiment: 'exp', log_system_params: true, retry_deadline_secs: 60 });
  await t.start();
  await t.storeInitConfiguration(HPARAMS);
  const t0 = performance.now();
  for (let i = 0; i < STEPS; i++) t.log({ loss: loss(i), acc: acc(i) }, i);
  for (let e = 0; e < 3; e++) t.log({ val_loss: 0.5 - e * 0.1 }, e, { epoch: e, context: { subset: 'val' } });
  t.log({ note: 'hello text' }, 0);
  const px = new Uint8Array(4 * 3 * 3).map((_, i) => (i * 37) % 256);
  t.logImages({ sample: { data: px, width: 4, height: 3, channels: 3 } }, 0, { aim_image: { caption: 'cap' } });
  await t.flush();
  const seconds = (performance.now() - t0) / 1000;
  await t.finish();
  if (!t.tracker.online) throw new Error(`trackspec run ${t.tracker.hash} went to the spool ${t.tracker.spoolPath}`);
  return { hash: t.tracker.hash, seconds };
}

function sdkRun(port: number, name: string, script: string): { hash: string; seconds: number } {
  const pythonpath = execFileSync(join(oracle!, 'env.sh'), { encoding: 'utf8' }).trim();
  const out = execFileSync(PY, [script, String(port), String(STEPS), name], { encoding: 'utf8', env: { ...process.env, PYTHONPATH: pythonpath }, stdio: ['ignore', 'pipe', 'inherit'] });
  return JSON.parse(out.trim().split('\n').at(-1)!) as { hash: string; seconds: number };
}

interface ReadMetric {
  name: string;
  context: Record<string, unknown>;
  steps: number[];
  values: unknown[];
  epochs: unknown[];
}
interface ReadRun {
  hash: string;
  name: string | null;
  experiment: string | null;
  active: boolean;
  archived: boolean;
  end_time: number | null;
  tags: string[];
  description: string | null;
  hparams: unknown;
  attrs: Record<string, unknown>;
  metrics: ReadMetric[];
  texts: unknown;
  images: unknown;
}

/** Value-by-value comparison of one trackspec run with the SDK's, and with the expected values. */
function compare(ours: ReadRun, sdk: ReadRun, ourName: string): { compared: number; mismatches: string[] } {
  let compared = 0;
  const mismatches: string[] = [];
  const eq = (what: string, a: unknown, b: unknown): void => {
    compared++;
    if (JSON.stringify(a) !== JSON.stringify(b)) mismatches.push(`${what}: trackspec=${JSON.stringify(a)?.slice(0, 200)} sdk/expected=${JSON.stringify(b)?.slice(0, 200)}`);
  };
  const key = (m: ReadMetric): string => `${m.name} ${JSON.stringify(m.context)}`;
  const mo = new Map(ours.metrics.map((m) => [key(m), m]));
  const ms = new Map(sdk.metrics.map((m) => [key(m), m]));
  eq('metric names and contexts', [...mo.keys()].sort(), [...ms.keys()].sort());
  for (const [k, b] of ms) {
    const a = mo.get(k);
    if (!a) continue;
    for (const f of ['steps', 'values', 'epochs'] as const) {
      if (a[f].length !== b[f].length) eq(`${k} ${f} length`, a[f].length, b[f].length);
      else a[f].forEach((x, i) => eq(`${k} ${f}[${i}]`, x, b[f][i]));
    }
  }
  for (const f of ['experiment', 'hparams', 'active', 'archived', 'tags', 'description', 'texts', 'images'] as const) eq(f, ours[f], sdk[f]);
  eq('end_time set', ours.end_time !== null, sdk.end_time !== null);
  eq('__system_params keys', Object.keys((ours.attrs['__system_params'] ?? {}) as object).sort(), Object.keys((sdk.attrs['__system_params'] ?? {}) as object).sort());
  // against the values logged (read_repo.py writes non-finite floats as strings)
  const js = (v: number): unknown => (Number.isNaN(v) ? 'NaN' : v === Infinity ? 'Infinity' : v === -Infinity ? '-Infinity' : v);
  const range = Array.from({ length: STEPS }, (_, i) => i);
  eq('name', ours.name, ourName);
  eq('loss values as logged', mo.get('loss {}')?.values, range.map((i) => js(loss(i))));
  eq('loss steps as logged', mo.get('loss {}')?.steps, range);
  eq('acc values as logged', mo.get('acc {}')?.values, range.map(acc));
  eq('val_loss as logged', mo.get('val_loss {"subset":"val"}')?.values, [0, 1, 2].map((e) => 0.5 - e * 0.1));
  eq('val_loss epochs as logged', mo.get('val_loss {"subset":"val"}')?.epochs, [0, 1, 2]);
  eq('run closed', [ours.active, ours.end_time !== null], [false, true]);
  return { compared, mismatches };
}

async function main(): Promise<number> {
  setWarningHandler((m) => console.error(`  [trackspec warning] ${m}`));
  const work = mkdtempSync(join(tmpdir(), 'trackspec-aim-check-'));
  const repo = join(work, 'repo');
  const script = join(work, 'sdk_workload.py');
  writeFileSync(script, SDK_SCRIPT);
  process.env['TRACKSPEC_SPOOL_DIR'] = join(work, 'spool');
  const port = await freePort();
  const pid = execFileSync(join(oracle!, 'start.sh'), [String(port), repo], { encoding: 'utf8' }).trim();
  console.log(`aim server (pid ${pid}) on 127.0.0.1:${port}, repository ${repo}`);
  const pairs: { ours: { hash: string; seconds: number; cpu: number }; sdk: { hash: string; seconds: number; cpu: number } }[] = [];
  try {
    for (let r = 0; r < ROUNDS; r++) {
      let c0 = serverCpu(pid);
      const ours = await trackspecRun(port, `check-trackspec-${r}`);
      const oursCpu = serverCpu(pid) - c0;
      c0 = serverCpu(pid);
      const sdk = sdkRun(port, `check-sdk-${r}`, script);
      const sdkCpu = serverCpu(pid) - c0;
      pairs.push({ ours: { ...ours, cpu: oursCpu }, sdk: { ...sdk, cpu: sdkCpu } });
      console.log(
        `round ${r + 1}: trackspec ${Math.round(POINTS / ours.seconds)} points/s (server CPU ${oursCpu.toFixed(2)} s), ` +
          `SDK ${Math.round(POINTS / sdk.seconds)} points/s (server CPU ${sdkCpu.toFixed(2)} s), ratio ${(sdk.seconds / ours.seconds).toFixed(2)}`,
      );
    }
  } finally {
    execFileSync(join(oracle!, 'stop.sh'), [pid], { stdio: 'inherit' });
  }
  const read = JSON.parse(execFileSync(PY, [join(oracle!, 'read_repo.py'), repo, '--no-system'], { encoding: 'utf8', maxBuffer: 1 << 30 })) as { runs: ReadRun[] };
  const byHash = new Map(read.runs.map((r) => [r.hash, r]));
  let compared = 0;
  const mismatches: string[] = [];
  pairs.forEach((p, r) => {
    const ours = byHash.get(p.ours.hash);
    const sdk = byHash.get(p.sdk.hash);
    if (!ours || !sdk) {
      mismatches.push(`round ${r + 1}: run missing in read_repo.py's output (trackspec ${p.ours.hash}: ${!!ours}, SDK ${p.sdk.hash}: ${!!sdk})`);
      return;
    }
    const c = compare(ours, sdk, `check-trackspec-${r}`);
    compared += c.compared;
    mismatches.push(...c.mismatches.map((m) => `round ${r + 1}: ${m}`));
  });
  const sum = (f: (p: (typeof pairs)[number]) => number): number => pairs.reduce((a, p) => a + f(p), 0);
  const ratio = sum((p) => p.sdk.seconds) / sum((p) => p.ours.seconds);
  const cpuPerPoint = (f: (p: (typeof pairs)[number]) => number): string => ((sum(f) / (POINTS * pairs.length)) * 1000).toFixed(3);
  console.log(`read back with Aim's SDK (read_repo.py): ${read.runs.length} runs`);
  console.log(`values and fields compared: ${compared}; mismatches: ${mismatches.length}`);
  for (const m of mismatches.slice(0, 20)) console.log(`  MISMATCH ${m}`);
  console.log(`throughput (${POINTS} points per run, ${pairs.length} rounds): trackspec ${Math.round((POINTS * pairs.length) / sum((p) => p.ours.seconds))} points/s, SDK ${Math.round((POINTS * pairs.length) / sum((p) => p.sdk.seconds))} points/s`);
  console.log(`ratio trackspec/SDK: ${ratio.toFixed(2)} (goal >= 0.9)${ratio < 0.9 ? '  BELOW GOAL' : ''}`);
  console.log(`server CPU per point: trackspec ${cpuPerPoint((p) => p.ours.cpu)} ms, SDK ${cpuPerPoint((p) => p.sdk.cpu)} ms`);
  if (KEEP) console.log(`kept ${work}`);
  else rmSync(work, { recursive: true, force: true });
  return mismatches.length === 0 ? 0 : 1;
}

process.exit(await main());

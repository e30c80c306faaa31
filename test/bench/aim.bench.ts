/**
 * Aim benchmark against the local Aim tracking-server emulator (same process):
 * - metric points/s end to end (log() → applied to the emulator's tree), 10 metrics per step, with
 *   write-ahead to the spool (the default) against write_ahead: false, alternated, in the same run;
 * - baselines in the same run: the client's own instruction encoding alone (points/s), and a fresh
 *   emulator applying the same workload pre-encoded, sent over a raw WebSocket (its capacity);
 * - with a 1 ms round trip per message: trackspec's batches vs one message per run.track() call
 *   (what Aim's SDK sends);
 * - with the emulator costing each message what Aim 3.29.1's decode costs (REAL_APPLY_COST:
 *   records × bytes, blocking the server): points/s with 16 KiB messages (the default) against
 *   256 KiB messages in the same run (why the cap is small);
 * - write messages and bytes per 1000 points (Aim's protocol sends ~6 instructions per point);
 * - log() median cost for 10 values.
 */
import { pathToFileURL } from 'node:url';
import WebSocket from 'ws';
import { AimTracker, setWarningHandler } from '../../generated/index.gen.js';
import { aimTuning } from '../../runtime/backends/aim/index.js';
import { newRunHash } from '../../runtime/backends/aim/session.js';
import { packTree } from '../../runtime/backends/aim/encoding.js';
import { AimRunState, MessageWriter, makeContext } from '../../runtime/backends/aim/run.js';
import { AimTestServer, REAL_APPLY_COST } from '../backends/aim/server.js';
import type { BenchRow } from './tensorboard.bench.js';

export default async function bench(): Promise<BenchRow[]> {
  const restore = setWarningHandler(() => undefined);
  const server = await AimTestServer.start({ recordInstructions: false });
  const saved = { ...aimTuning };
  try {
    const rows: BenchRow[] = [];
    // log() cost: queueing only. Measured against a sink server (answers OK without applying) so
    // that the warm-up and the 2000 samples (200k values, all encoded and sent in the background) do
    // not wait for the emulator; no send runs inside a sample since the loop does not yield.
    const sink = await AimTestServer.start({ sink: true, recordInstructions: false });
    const l = new AimTracker({ run_name: 'bench-log', logging_dir: sink.uri });
    await l.start();
    const values: Record<string, number> = {};
    for (let k = 0; k < 10; k++) values[`m${k}`] = k;
    for (let i = 0; i < 5000; i++) {
      l.log(values, i); // warm-up (JIT), not timed
      if (i % 500 === 499) await l.flush();
    }
    const samples: number[] = [];
    for (let b = 0; b < 2000; b++) {
      const s0 = process.hrtime.bigint();
      for (let i = 0; i < 10; i++) l.log(values, 10_000 + b * 10 + i);
      samples.push(Number(process.hrtime.bigint() - s0) / 10);
      if (b % 200 === 199) await l.flush();
    }
    samples.sort((a, b) => a - b);
    rows.push({ name: 'aim log() median (10 values)', value: +samples[1000]!.toFixed(1), unit: 'ns/call', goal: '<= 1000' });
    await l.finish();
    await sink.stop();

    const steps = 2000;
    const e2eRate = async (writeAhead: boolean): Promise<{ rate: number; messages: number; bytes: number }> => {
      const t = new AimTracker({ run_name: 'bench', logging_dir: server.uri, write_ahead: writeAhead });
      await t.start();
      const before = server.messages.length;
      const t0 = performance.now();
      for (let i = 0; i < steps; i++) {
        const v: Record<string, number> = {};
        for (let k = 0; k < 10; k++) v[`m${k}`] = i + k / 10;
        t.log(v, i);
        if (i % 500 === 499) await new Promise((r) => setImmediate(r));
      }
      await t.flush();
      const seconds = (performance.now() - t0) / 1000;
      const hash = t.tracker.hash;
      const stored = server.entries('seqs', hash).filter((e) => e.path[e.path.length - 2] === 'val').length;
      if (stored !== steps * 10) throw new Error(`stored ${stored} of ${steps * 10}`);
      const sent = server.messages.slice(before);
      await t.finish();
      return { rate: (steps * 10) / seconds, messages: sent.length, bytes: sent.reduce((a, m) => a + m.bytes, 0) };
    };
    // alternated, best of two each (the machine is shared)
    const off1 = await e2eRate(false);
    const on1 = await e2eRate(true);
    const off2 = await e2eRate(false);
    const on2 = await e2eRate(true);
    const e2e = Math.max(on1.rate, on2.rate);
    const e2eOff = Math.max(off1.rate, off2.rate);
    const sent = { length: on1.messages };
    const bytes = on1.bytes;

    // Baseline 1: encoding alone (the same instructions, no network, no server).
    const state = new AimRunState('0123456789abcdef01234567', { meta: crypto.randomUUID(), seqs: crypto.randomUUID(), props: crypto.randomUUID() });
    const ctx = makeContext(undefined);
    const e0 = performance.now();
    let w = new MessageWriter();
    for (let i = 0; i < steps; i++) {
      for (let k = 0; k < 10; k++) state.track(w, `m${k}`, { kind: 'metric', value: i + k / 10 }, i, null, ctx, Date.now() / 1000);
      if (i % 50 === 49) {
        w.finish();
        w = new MessageWriter();
      }
    }
    const encodeRate = (steps * 10) / ((performance.now() - e0) / 1000);

    // Baseline 2: the emulator applying the very messages the client sent, over a raw WebSocket.
    const raw = await emulatorCapacity(steps);
    // With a 1 ms round trip per message (a server on the network): trackspec's batches vs Aim's
    // one message per run.track() call, the same workload and server.
    const rttSteps = 200;
    const rttBatched = await emulatorCapacity(rttSteps, false, 1);
    const rttSdk = await emulatorCapacity(rttSteps, true, 1);
    rows.push({ name: 'aim e2e metric points/s into the emulator (10 metrics/step), write-ahead on (default)', value: Math.round(e2e), unit: 'points/s' });
    rows.push({ name: '  baseline: write_ahead: false', value: Math.round(e2eOff), unit: 'points/s' });
    rows.push({ name: '  write-ahead on / off', value: +(e2e / e2eOff).toFixed(2), unit: 'x', goal: '>= 0.9' });
    rows.push({ name: '  baseline: encoding alone (same instructions, no I/O)', value: Math.round(encodeRate), unit: 'points/s' });
    rows.push({ name: '  baseline: emulator applying the same workload from a raw WebSocket', value: Math.round((steps * 10) / raw), unit: 'points/s' });
    rows.push({ name: '  e2e / emulator capacity', value: +((e2e * raw) / (steps * 10)).toFixed(2), unit: 'x' });
    rows.push({ name: 'aim points/s with a 1 ms round trip: trackspec batches (500 values/message)', value: Math.round((rttSteps * 10) / rttBatched), unit: 'points/s' });
    rows.push({ name: "  baseline: one message per run.track() call, as Aim's SDK sends", value: Math.round((rttSteps * 10) / rttSdk), unit: 'points/s' });
    rows.push({ name: '  ratio', value: +(rttSdk / rttBatched).toFixed(2), unit: 'x' });
    const capped = await realCostRate(16 << 10);
    const large = await realCostRate(256 << 10);
    rows.push({ name: "aim points/s, emulator with Aim's decode cost: 16 KiB messages", value: Math.round(capped), unit: 'points/s' });
    rows.push({ name: '  baseline: 256 KiB messages, same workload and cost', value: Math.round(large), unit: 'points/s' });
    rows.push({ name: '  ratio', value: +(capped / large).toFixed(2), unit: 'x' });
    rows.push({ name: 'aim write messages per 1000 points', value: +((sent.length * 1000) / (steps * 10)).toFixed(2), unit: 'messages' });
    rows.push({ name: 'aim bytes on the wire per point', value: Math.round(bytes / (steps * 10)), unit: 'bytes' });

    return rows;
  } finally {
    Object.assign(aimTuning, saved);
    await server.stop();
    setWarningHandler(restore);
  }
}

/** Points/s of an Accelerate-style run (2 metrics × 1000 steps) into an emulator with Aim's decode cost, messages capped at `maxBytes`. */
async function realCostRate(maxBytes: number): Promise<number> {
  const server = await AimTestServer.start({ recordInstructions: false, applyCostMsPerRecordByte: REAL_APPLY_COST });
  const saved = aimTuning.maxMessageBytes;
  aimTuning.maxMessageBytes = maxBytes;
  try {
    const t = new AimTracker({ run_name: 'bench-cost', logging_dir: server.uri });
    await t.start();
    const steps = 1000;
    const t0 = performance.now();
    for (let i = 0; i < steps; i++) t.log({ loss: 1 / (i + 1), acc: i / steps }, i);
    await t.flush();
    const rate = (steps * 2) / ((performance.now() - t0) / 1000);
    await t.finish();
    return rate;
  } finally {
    aimTuning.maxMessageBytes = saved;
    await server.stop();
  }
}

/**
 * Seconds for the emulator to apply the same workload (steps x 10 metrics, 50 steps per message as
 * the client batches them) pre-encoded and sent from a raw WebSocket client: its own capacity.
 */
async function emulatorCapacity(steps: number, perTrackCall = false, replyDelayMs = 0): Promise<number> {
  const server = await AimTestServer.start({ recordInstructions: false, replyDelayMs });
  try {
    return await capacityOn(server, steps, perTrackCall);
  } finally {
    await server.stop();
  }
}

async function capacityOn(server: AimTestServer, steps: number, perTrackCall: boolean): Promise<number> {
  const clientUri = crypto.randomUUID();
  const hash = newRunHash();
  const mk = async (name: string): Promise<string> => {
    const r = await fetch(`http://127.0.0.1:${server.port}/tracking/${clientUri}/get-resource/`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ resource_handler: '', resource_type: 'TreeView', args: Buffer.from(packTree([], { name, sub: hash, read_only: false, index: false, timeout: null }, { objectMarkers: 'empty' })).toString('base64') }),
    });
    return ((await r.json()) as { handler: string }).handler;
  };
  const meta = await mk('meta');
  const seqs = await mk('seqs');
  const state = new AimRunState(hash, { meta, seqs, props: meta });
  const ctx = makeContext(undefined);
  const msgs: Uint8Array[] = [];
  let w = new MessageWriter();
  for (let i = 0; i < steps; i++) {
    for (let k = 0; k < 10; k++) {
      state.track(w, `m${k}`, { kind: 'metric', value: i + k / 10 }, i, null, ctx, Date.now() / 1000);
      if (perTrackCall) {
        // Aim's SDK: one message per run.track() call (atomic_track flushes each)
        msgs.push(...w.finish().map((m) => m.slice()));
        w = new MessageWriter();
      }
    }
    if (!perTrackCall && (i % 50 === 49 || i === steps - 1)) {
      msgs.push(...w.finish().map((m) => m.slice()));
      w = new MessageWriter();
    }
  }
  const ws = new WebSocket(`ws://127.0.0.1:${server.port}/tracking/${clientUri}/write-instruction/`);
  await new Promise((r, j) => {
    ws.once('open', r);
    ws.once('error', j);
  });
  const t0 = performance.now();
  for (const m of msgs) {
    const reply = new Promise<Buffer>((r) => ws.once('message', (d: Buffer) => r(d)));
    ws.send(m);
    const d = await reply;
    if (d.toString() !== 'OK') throw new Error(`raw replay: ${d.toString('latin1').slice(0, 100)}`);
  }
  const s = (performance.now() - t0) / 1000;
  ws.close();
  const stored = server.entries('seqs', hash).filter((e) => e.path[e.path.length - 2] === 'val').length;
  if (stored !== steps * 10) throw new Error(`raw replay stored ${stored} of ${steps * 10}`);
  return s;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  for (const r of await bench()) console.log(`${r.name}: ${r.value} ${r.unit}${r.goal ? ` (goal ${r.goal})` : ''}`);
}

import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { crc32, crc32Implementation, crc32c, crc32cPortable } from '../../runtime/io/crc.js';
import { bufferSource, decodeFrames, describeRanges, encodeFrames, scanFrameFile } from '../../runtime/io/framing.js';
import { Spool, SpoolDamagedError, defaultSpoolDir, listSpools, replaySpool, type SpoolHeader } from '../../runtime/io/spool.js';

const roots: string[] = [];
function tmp(): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'trackspec-spool-'));
  roots.push(d);
  return d;
}
afterAll(() => {
  for (const r of roots) fs.rmSync(r, { recursive: true, force: true });
});

const header = (target = 'http://127.0.0.1:5000'): SpoolHeader => ({ backend: 'mlflow', target, created: 1_700_000_000_000, meta: { run_id: 'abc' } });
const rec = (i: number) => ({ t: 'metric', key: `m${i % 3}`, value: i * 0.5, step: i });
const REPO = path.resolve(import.meta.dirname, '../..');
const SPOOL_MODULE = pathToFileURL(path.join(REPO, 'runtime/io/spool.ts')).href;

describe('crc and framing', () => {
  it('the portable CRC-32C (no native binary) agrees with the native one, also continued from a seed', () => {
    expect(crc32cPortable(Buffer.from('123456789'))).toBe(0xe3069283);
    for (const n of [0, 1, 7, 64, 1000, 65_537]) {
      const data = Buffer.from(Array.from({ length: n }, (_, i) => (i * 131 + n) & 0xff));
      expect(crc32cPortable(data)).toBe(crc32c(data));
      const cut = n >> 1;
      expect(crc32cPortable(data.subarray(cut), crc32cPortable(data.subarray(0, cut)))).toBe(crc32c(data));
    }
  });

  it('CRC-32 from the package (check value), CRC-32C unchanged', () => {
    expect(crc32(Buffer.from('123456789'))).toBe(0xcbf43926);
    expect(crc32(Buffer.from('56789'), crc32(Buffer.from('1234')))).toBe(0xcbf43926);
    expect(crc32Implementation()).toBe('@node-rs/crc32');
    expect(crc32c(Buffer.from('123456789'))).toBe(0xe3069283);
  });

  it('frames round-trip; a flipped byte or a cut stops decoding there', () => {
    const payloads = ['a', '', 'hello world', 'x'.repeat(1000)].map((s) => Buffer.from(s));
    const buf = encodeFrames(payloads);
    const d = decodeFrames(buf);
    expect(d.problem).toBeUndefined();
    expect(d.end).toBe(buf.length);
    expect(d.frames.map((f) => f.toString())).toEqual(payloads.map((p) => p.toString()));

    const flipped = Buffer.from(buf);
    flipped[17 + 8 + 3] ^= 1; // inside 'hello world' (frame 3 starts at 9 + 8 = 17)
    const f = decodeFrames(flipped);
    expect(f.problem).toBe('crc');
    expect(f.frames).toHaveLength(2);

    const lenFlip = Buffer.from(buf);
    lenFlip[17] ^= 0x01; // length byte of frame 3
    expect(decodeFrames(lenFlip).problem).toMatch(/crc|incomplete/);
    expect(decodeFrames(lenFlip).frames).toHaveLength(2);

    const cut = buf.subarray(0, buf.length - 10);
    expect(decodeFrames(cut)).toMatchObject({ problem: 'incomplete' });
    expect(decodeFrames(cut, 0, false).problem).toBeUndefined();
    expect(decodeFrames(cut).frames).toHaveLength(3);
  });
});

describe('defaultSpoolDir', () => {
  it('TRACKSPEC_SPOOL_DIR > XDG_STATE_HOME > ~/.local/state', () => {
    expect(defaultSpoolDir({ TRACKSPEC_SPOOL_DIR: '/x/spool', XDG_STATE_HOME: '/state', HOME: '/home/u' })).toBe('/x/spool');
    expect(defaultSpoolDir({ TRACKSPEC_SPOOL_DIR: '', XDG_STATE_HOME: '/state', HOME: '/home/u' })).toBe('/state/trackspec/spool');
    expect(defaultSpoolDir({ XDG_STATE_HOME: 'relative', HOME: '/home/u' })).toBe('/home/u/.local/state/trackspec/spool');
    expect(defaultSpoolDir({ HOME: '/home/u' })).toBe('/home/u/.local/state/trackspec/spool');
  });
});

describe('Spool', () => {
  it('creates <dir>/<backend>/<ts>-<pid>-<rand>.spool with mode 0600 and a credential-free header', async () => {
    const dir = tmp();
    const s = await Spool.create(dir, { ...header('http://alice:hunter2-secret@127.0.0.1:5000/?token=tok-123') });
    try {
      expect(path.dirname(s.path)).toBe(path.join(dir, 'mlflow'));
      expect(path.basename(s.path)).toMatch(new RegExp(`^\\d{13}-${process.pid}-[0-9a-f]{8}\\.spool$`));
      expect(fs.statSync(s.path).mode & 0o777).toBe(0o600);
      expect(fs.statSync(path.dirname(s.path)).mode & 0o077).toBe(0);
      const bytes = fs.readFileSync(s.path, 'latin1');
      expect(bytes).not.toContain('hunter2');
      expect(bytes).not.toContain('alice');
      expect(bytes).not.toContain('tok-123');
      expect(s.header.target).toBe('http://127.0.0.1:5000/?token=***');
    } finally {
      await s.close();
    }
    const [info] = await listSpools(dir);
    expect(info!.header).toEqual({ backend: 'mlflow', target: 'http://127.0.0.1:5000/?token=***', created: 1_700_000_000_000, meta: { run_id: 'abc' } });
  });

  it('append + appendSync + list + replay in chunks with acks, then .done', async () => {
    const dir = tmp();
    const s = await Spool.create(dir, header());
    expect(await s.append([rec(0), rec(1), rec(2)])).toEqual([0, 1, 2]);
    expect(s.appendSync([rec(3)])).toEqual([3]);
    // concurrent appends share fsyncs and keep order
    const seqs = await Promise.all([s.append([rec(4), rec(5)]), s.append([rec(6)]), s.append([rec(7), rec(8), rec(9)])]);
    expect(seqs).toEqual([[4, 5], [6], [7, 8, 9]]);
    expect(await s.append([])).toEqual([]);
    expect(() => s.appendSync([undefined])).toThrow(/JSON/);

    let [info] = await listSpools(dir, 'mlflow');
    expect(info).toMatchObject({ path: s.path, records: 10, acked: 0, pending: 10, tornTail: false, lockedBy: process.pid });
    // The writer is alive: replay refuses.
    await expect(replaySpool(s.path, async () => undefined)).rejects.toThrow(/in use by process/);
    await s.close();
    expect(fs.existsSync(`${s.path}.lock`)).toBe(false);
    [info] = await listSpools(dir);
    expect(info!.lockedBy).toBeUndefined();

    const chunks: unknown[][] = [];
    const progress: [number, number][] = [];
    const r = await replaySpool(
      s.path,
      async (records, h) => {
        expect(h.backend).toBe('mlflow');
        chunks.push(records);
      },
      { chunk: 4, onProgress: (d, t) => progress.push([d, t]) },
    );
    expect(r).toEqual({ sent: 10, skipped: 0, tornTail: false, damaged: [] });
    expect(chunks.map((c) => c.length)).toEqual([4, 4, 2]);
    expect(chunks.flat()).toEqual(Array.from({ length: 10 }, (_, i) => rec(i)));
    expect(progress).toEqual([[4, 10], [8, 10], [10, 10]]);
    expect(fs.existsSync(s.path)).toBe(false);
    expect(fs.existsSync(`${s.path}.done`)).toBe(true);
    expect(await listSpools(dir)).toEqual([]);
  });

  it('resumes after a partial replay (send failure) and can delete instead of .done', async () => {
    const dir = tmp();
    const s = await Spool.create(dir, header());
    await s.append(Array.from({ length: 25 }, (_, i) => rec(i)));
    await s.close();
    let calls = 0;
    const got: unknown[] = [];
    await expect(
      replaySpool(
        s.path,
        async (records) => {
          if (++calls === 3) throw new Error('server down');
          got.push(...records);
        },
        { chunk: 5 },
      ),
    ).rejects.toThrow('server down');
    expect(got).toHaveLength(10);
    const [info] = await listSpools(dir);
    expect(info).toMatchObject({ records: 25, acked: 10, pending: 15, tornTail: false, damaged: [] });
    expect(fs.existsSync(`${s.path}.lock`)).toBe(false);

    const r = await replaySpool(s.path, async (records) => void got.push(...records), { chunk: 7, removeDone: true });
    expect(r).toEqual({ sent: 15, skipped: 10, tornTail: false, damaged: [] });
    expect(got).toEqual(Array.from({ length: 25 }, (_, i) => rec(i)));
    expect(fs.existsSync(s.path)).toBe(false);
    expect(fs.existsSync(`${s.path}.done`)).toBe(false);
  });

  it('a torn tail (file truncated mid-record) is detected, reported and cut off', async () => {
    const dir = tmp();
    const s = await Spool.create(dir, header());
    await s.append(Array.from({ length: 5 }, (_, i) => rec(i)));
    await s.close();
    const size = fs.statSync(s.path).size;
    fs.truncateSync(s.path, size - 7);
    const [info] = await listSpools(dir);
    expect(info).toMatchObject({ records: 4, acked: 0, pending: 4, tornTail: true });

    const got: unknown[] = [];
    let calls = 0;
    // First replay fails after one chunk: its ack must be readable (written after the cut).
    await expect(
      replaySpool(s.path, async (r) => {
        if (++calls === 2) throw new Error('down');
        got.push(...r);
      }, { chunk: 2 }),
    ).rejects.toThrow('down');
    const [after] = await listSpools(dir);
    expect(after).toMatchObject({ records: 4, acked: 2, pending: 2, tornTail: false, damaged: [] });
    const r = await replaySpool(s.path, async (x) => void got.push(...x), { chunk: 2 });
    expect(r).toEqual({ sent: 2, skipped: 2, tornTail: false, damaged: [] });
    expect(got).toEqual([rec(0), rec(1), rec(2), rec(3)]);
  });

  it('a child process killed mid-append leaves a torn tail that is ignored', async () => {
    const dir = tmp();
    const script = path.join(tmp(), 'child.mts');
    fs.writeFileSync(
      script,
      `
import fs from 'node:fs';
import { syncBuiltinESMExports } from 'node:module';
const { Spool } = await import(${JSON.stringify(SPOOL_MODULE)});
const s = await Spool.create(${JSON.stringify(dir)}, { backend: 'mlflow', target: 'http://h', created: 1 });
await s.append(Array.from({ length: 50 }, (_, i) => ({ i })));
s.appendSync([{ i: 50 }, { i: 51 }]);
const orig = fs.writeSync;
// Simulate the crash: the next write only gets half its bytes out, then the process is killed.
fs.writeSync = function (fd: number, buf: Buffer, off?: number, len?: number) {
  const n = orig.call(fs, fd, buf, off ?? 0, Math.floor((len ?? buf.length) / 2) + 3); // 5.x of 10 equal frames
  fs.fsyncSync(fd);
  process.stdout.write('ready\\n');
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 20000);
  return n;
} as typeof fs.writeSync;
syncBuiltinESMExports();
s.appendSync(Array.from({ length: 10 }, (_, i) => ({ i: 100 + i, pad: 'x'.repeat(100) })));
process.stdout.write('not killed\\n');
`,
    );
    const child = spawn(process.execPath, ['--import', 'tsx', script], { cwd: REPO, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    await new Promise<void>((resolve, reject) => {
      child.stdout.on('data', (d: Buffer) => {
        out += d.toString();
        if (out.includes('ready')) resolve();
      });
      child.on('exit', () => reject(new Error(`child exited early: ${out} ${err}`)));
    });
    child.kill('SIGKILL');
    await new Promise((r) => child.once('close', r));

    const [info] = await listSpools(dir);
    // 52 whole records, then 5 whole ones of the killed append (half its bytes + 3), then a torn one.
    expect(info).toMatchObject({ records: 57, acked: 0, pending: 57, tornTail: true });
    expect(info!.lockedBy).toBeUndefined(); // the writer is dead: its lock is stale
    const got: unknown[] = [];
    const r = await replaySpool(info!.path, async (x) => void got.push(...x), { chunk: 100 });
    expect(r).toEqual({ sent: 57, skipped: 0, tornTail: true, damaged: [] });
    expect(got).toEqual([
      ...Array.from({ length: 52 }, (_, i) => ({ i })),
      ...Array.from({ length: 5 }, (_, i) => ({ i: 100 + i, pad: 'x'.repeat(100) })),
    ]);
  });

  it('a real SIGKILL during large appends never yields a damaged record', async () => {
    const dir = tmp();
    const script = path.join(tmp(), 'child2.mts');
    fs.writeFileSync(
      script,
      `
const { Spool } = await import(${JSON.stringify(SPOOL_MODULE)});
const s = await Spool.create(${JSON.stringify(dir)}, { backend: 'aim', target: 'aim://h', created: 1 });
const big = 'y'.repeat(1 << 20);
process.stdout.write(s.path + '\\n');
for (let i = 0; ; i++) await s.append([{ i, big }, { i: i + 0.5, big }]);
`,
    );
    const child = spawn(process.execPath, ['--import', 'tsx', script], { cwd: REPO, stdio: ['ignore', 'pipe', 'pipe'] });
    const file = await new Promise<string>((resolve, reject) => {
      let out = '';
      child.stdout.on('data', (d: Buffer) => {
        out += d.toString();
        if (out.includes('\n')) resolve(out.trim());
      });
      child.on('exit', () => reject(new Error('child exited early')));
    });
    while (!fs.existsSync(file) || fs.statSync(file).size < 12 << 20) await new Promise((r) => setTimeout(r, 5));
    child.kill('SIGKILL');
    await new Promise((r) => child.once('close', r));
    const [info] = await listSpools(dir, 'aim');
    expect(info!.records).toBeGreaterThanOrEqual(8);
    const got: { i: number; big: string }[] = [];
    const r = await replaySpool(info!.path, async (x) => void got.push(...(x as { i: number; big: string }[])), { chunk: 3 });
    expect(r.sent).toBe(info!.records);
    expect(r.tornTail).toBe(info!.tornTail);
    got.forEach((g, k) => {
      expect(g.i).toBe(k / 2);
      expect(g.big.length).toBe(1 << 20);
    });
  });

  it('a write that fails part-way (ENOSPC) is cut back, so later appends stay readable', async () => {
    const { createRequire, syncBuiltinESMExports } = await import('node:module');
    const cjsFs = createRequire(import.meta.url)('node:fs') as typeof fs;
    const dir = tmp();
    const s = await Spool.create(dir, header());
    await s.append([rec(0), rec(1)]);
    const orig = cjsFs.writeSync;
    const write = orig as (fd: number, buf: Uint8Array, off: number, len: number) => number;
    cjsFs.writeSync = function (fd: number, buf: Uint8Array, off?: number, len?: number) {
      write.call(cjsFs, fd, buf, off ?? 0, Math.floor((len ?? buf.length) / 2) + 1);
      throw Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' });
    } as unknown as typeof fs.writeSync;
    syncBuiltinESMExports();
    try {
      await expect(s.append([rec(2), rec(3), rec(4)])).rejects.toThrow(/write failed: the disk is full \(ENOSPC/);
    } finally {
      cjsFs.writeSync = orig;
      syncBuiltinESMExports();
    }
    await s.append([rec(5)]);
    await s.close();
    const [info] = await listSpools(dir);
    expect(info).toMatchObject({ records: 3, tornTail: false, damaged: [] });
    const got: unknown[] = [];
    await replaySpool(s.path, async (x) => void got.push(...x));
    expect(got).toEqual([rec(0), rec(1), rec(5)]);
  });

  it('appendSyncTo: appends to our own open spool, or writes a new one atomically', async () => {
    const dir = tmp();
    const s = await Spool.create(dir, header());
    await s.append([rec(0)]);
    expect(Spool.appendSyncTo(s.path, dir, header(), [rec(1), rec(2)])).toBe(s.path);
    await s.close();
    const fresh = Spool.appendSyncTo(undefined, dir, header('https://u:pw-secret-9@h/'), [rec(9)]);
    expect(fresh).not.toBe(s.path);
    expect(fs.statSync(fresh).mode & 0o777).toBe(0o600);
    expect(fs.readFileSync(fresh, 'latin1')).not.toContain('pw-secret-9');
    const infos = await listSpools(dir);
    expect(infos.map((i) => i.records).sort()).toEqual([1, 3]);
    expect(fs.readdirSync(path.join(dir, 'mlflow')).filter((n) => n.endsWith('.tmp'))).toEqual([]);
  });
});

describe('damage in the middle of a spool (issue 13.3)', () => {
  it('scanFrameFile resynchronises past a flipped bit and reports the byte range; a bad end is a torn tail', async () => {
    const payloads = Array.from({ length: 50 }, (_, i) => Buffer.from(`R{"i":${i}}`));
    const buf = encodeFrames(payloads);
    const frameLen = (i: number) => 8 + payloads[i]!.length;
    let at20 = 0;
    for (let i = 0; i < 20; i++) at20 += frameLen(i);
    const bad = Buffer.from(buf);
    bad[at20 + 10] ^= 0x10; // inside the payload of frame 20
    const got: string[] = [];
    const r = await scanFrameFile(bufferSource(bad), (p) => void got.push(p.toString()));
    expect(got).toEqual(payloads.filter((_, i) => i !== 20).map(String));
    expect(r.damaged).toEqual([{ from: at20, to: at20 + frameLen(20) }]);
    expect(r.tornFrom).toBeUndefined();
    expect(describeRanges(r.damaged)).toBe(`bytes ${at20}–${at20 + frameLen(20)} (${frameLen(20)} bytes)`);

    // A damaged length field: same outcome.
    const lenBad = Buffer.from(buf);
    lenBad[at20 + 2] ^= 0x40;
    const got2: string[] = [];
    const r2 = await scanFrameFile(bufferSource(lenBad), (p) => void got2.push(p.toString()));
    expect(got2).toHaveLength(49);
    expect(r2.damaged).toEqual([{ from: at20, to: at20 + frameLen(20) }]);

    // Damage in the last frame: nothing intact follows, so it is a torn tail.
    const lastBad = Buffer.from(buf);
    lastBad[buf.length - 2] ^= 1;
    const r3 = await scanFrameFile(bufferSource(lastBad), () => undefined);
    expect(r3.damaged).toEqual([]);
    expect(r3.tornFrom).toBe(buf.length - frameLen(49));
  });

  it('sync uploads every intact record after a flipped bit, keeps the file, and names the damaged range', async () => {
    const dir = tmp();
    const s = await Spool.create(dir, header());
    const N = 3000;
    await s.append(Array.from({ length: N }, (_, i) => rec(i)));
    await s.close();
    const bytes = fs.readFileSync(s.path);
    const mid = Math.floor(bytes.length / 2);
    bytes[mid] ^= 0x04;
    fs.writeFileSync(s.path, bytes);

    const [info] = await listSpools(dir);
    expect(info!.tornTail).toBe(false);
    expect(info!.damaged).toHaveLength(1);
    expect(info!.records).toBe(N - 1);
    const { from, to } = info!.damaged[0]!;
    expect(from).toBeLessThanOrEqual(mid);
    expect(to).toBeGreaterThan(mid);

    const got: { step: number }[] = [];
    const err = await replaySpool(s.path, async (r) => void got.push(...(r as { step: number }[])), { chunk: 100 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SpoolDamagedError);
    expect((err as Error).message).toContain(`damaged at bytes ${from.toLocaleString('en-US')}–${to.toLocaleString('en-US')}`);
    expect((err as SpoolDamagedError).sent).toBe(N - 1);
    const steps = got.map((r) => r.step);
    expect(new Set(steps).size).toBe(N - 1);
    expect(steps.includes(N - 1)).toBe(true); // records after the damage arrived, including the last
    // The original bytes are kept (renamed .damaged), not truncated.
    expect(fs.existsSync(s.path)).toBe(false);
    const kept = fs.readFileSync(`${s.path}.damaged`);
    expect(kept.subarray(0, bytes.length).equals(bytes)).toBe(true);
  });

  it('a failed send mid-replay keeps the file in place; the rerun resumes past the damage without duplicates', async () => {
    const dir = tmp();
    const s = await Spool.create(dir, header());
    await s.append(Array.from({ length: 100 }, (_, i) => rec(i)));
    await s.close();
    const bytes = fs.readFileSync(s.path);
    bytes[Math.floor(bytes.length / 3)] ^= 0x01;
    fs.writeFileSync(s.path, bytes);
    const got: { step: number }[] = [];
    let calls = 0;
    await expect(
      replaySpool(s.path, async (r) => {
        if (++calls === 5) throw new Error('down');
        got.push(...(r as { step: number }[]));
      }, { chunk: 10 }),
    ).rejects.toThrow('down');
    expect(fs.existsSync(s.path)).toBe(true);
    await expect(replaySpool(s.path, async (r) => void got.push(...(r as { step: number }[])), { chunk: 10 })).rejects.toThrow(SpoolDamagedError);
    expect(got).toHaveLength(99);
    expect(new Set(got.map((r) => r.step)).size).toBe(99);
  });

  it('writeGroups + ack by byte range: done records are skipped by replay', async () => {
    const dir = tmp();
    const s = await Spool.create(dir, header());
    const { ranges } = s.writeGroups([[rec(0), rec(1)], [rec(2)], [rec(3), rec(4)]]);
    expect(ranges).toHaveLength(3);
    s.ack([ranges[0]!, ranges[2]!]);
    await s.close();
    const [info] = await listSpools(dir);
    expect(info).toMatchObject({ records: 5, acked: 4, pending: 1 });
    const got: unknown[] = [];
    await replaySpool(s.path, async (r) => void got.push(...r));
    expect(got).toEqual([rec(2)]);
  });
});

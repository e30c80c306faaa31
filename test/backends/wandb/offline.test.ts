import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { crc32 } from '../../../runtime/io/crc.js';
import {
  OfflineRunWriter,
  findOfflineRuns,
  markSynced,
  readWandbFile,
  type WandbRunInfo,
} from '../../../runtime/backends/wandb/offline.js';
import { TransactionLogWriter, readTransactionLog } from '../../../runtime/backends/wandb/transaction-log.js';

const PROTO = fileURLToPath(new URL('../../../runtime/backends/wandb/wandb.proto', import.meta.url));
const BLOCK = 32768;

const dirs: string[] = [];
function tmpDir(): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'trackspec-wandb-'));
  dirs.push(d);
  return d;
}
afterAll(() => {
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
});

function runInfo(over: Partial<WandbRunInfo> = {}): WandbRunInfo {
  return {
    runId: 'abc123xy',
    entity: 'team',
    project: 'proj',
    config: { lr: 0.001, layers: [64, 32], opt: { name: 'adam', beta: 0.9 }, flag: true, none: null },
    startTimeMs: Date.UTC(2024, 4, 6, 7, 8, 9, 250),
    ...over,
  };
}

/** Independent chunk header check: CRC-32 (IEEE) over type byte + payload, LE length, type. */
function expectChunk(bytes: Uint8Array, at: number, type: number, payload: Uint8Array): void {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  expect(view.getUint16(at + 4, true), `length at ${at}`).toBe(payload.length);
  expect(bytes[at + 6], `type at ${at}`).toBe(type);
  const crc = crc32(Buffer.concat([Buffer.of(type), payload])) >>> 0;
  expect(view.getUint32(at, true), `crc at ${at}`).toBe(crc);
  expect(Buffer.from(bytes.subarray(at + 7, at + 7 + payload.length)).equals(Buffer.from(payload))).toBe(true);
}

function pattern(n: number, seed = 1): Uint8Array {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i++) b[i] = (i * 31 + seed * 7) & 0xff;
  return b;
}

async function writeLog(payloads: Uint8Array[]): Promise<{ file: string; bytes: Buffer }> {
  const file = path.join(tmpDir(), 'log.wandb');
  const w = TransactionLogWriter.open(file);
  for (const p of payloads) w.append(p);
  await w.close();
  return { file, bytes: fs.readFileSync(file) };
}

function protocMissing(): boolean {
  const r = spawnSync('protoc', ['--version'], { encoding: 'utf8' });
  if (r.status === 0) return false;
  if (process.env.TRACKSPEC_SKIP_PROTOC === '1') return true;
  throw new Error('protoc not found: install it (apt-get install -y protobuf-compiler) or set TRACKSPEC_SKIP_PROTOC=1');
}

function protocDecode(bytes: Uint8Array): string {
  const r = spawnSync('protoc', [`--proto_path=${path.dirname(PROTO)}`, '--decode=wandb_internal.Record', path.basename(PROTO)], { input: bytes });
  if (r.status !== 0) throw new Error(`protoc failed (${r.status}): ${r.stderr.toString()}`);
  return r.stdout.toString();
}

describe('transaction log framing', () => {
  it('starts with the 7-byte file header and a FULL chunk with an IEEE CRC over type + payload', async () => {
    const payload = Buffer.from('hello wandb');
    const { bytes } = await writeLog([payload, new Uint8Array(0)]);
    expect([...bytes.subarray(0, 7)]).toEqual([0x3a, 0x57, 0x26, 0x42, 0xe1, 0xbe, 0x00]);
    expect(bytes.subarray(0, 4).toString('latin1')).toBe(':W&B');
    expectChunk(bytes, 7, 1, payload);
    // an empty record is one empty FULL chunk
    expectChunk(bytes, 7 + 7 + payload.length, 1, new Uint8Array(0));
    expect(bytes.length).toBe(7 + 7 + payload.length + 7);
    const log = readTransactionLog(bytes);
    expect(log.error).toBeUndefined();
    expect(log.records.map((r) => Buffer.from(r).toString())).toEqual(['hello wandb', '']);
    expect(log.offsets).toEqual([7, 25]);
  });

  it('splits a record larger than two blocks into FIRST/MIDDLE/MIDDLE/LAST at the block boundaries', async () => {
    const big = pattern(100_000);
    const after = pattern(20, 2);
    const { bytes } = await writeLog([big, after]);
    const first = BLOCK - 7 - 7; // the first block loses 7 bytes to the file header
    const middle = BLOCK - 7;
    expectChunk(bytes, 7, 2, big.subarray(0, first));
    expectChunk(bytes, BLOCK, 3, big.subarray(first, first + middle));
    expectChunk(bytes, 2 * BLOCK, 3, big.subarray(first + middle, first + 2 * middle));
    const lastLen = 100_000 - first - 2 * middle;
    expectChunk(bytes, 3 * BLOCK, 4, big.subarray(first + 2 * middle));
    expect(lastLen).toBe(1724);
    expectChunk(bytes, 3 * BLOCK + 7 + lastLen, 1, after);
    expect(bytes.length).toBe(3 * BLOCK + 7 + lastLen + 7 + 20);
    const log = readTransactionLog(bytes);
    expect(log.error).toBeUndefined();
    expect(log.records).toHaveLength(2);
    expect(Buffer.from(log.records[0]!).equals(Buffer.from(big))).toBe(true);
    expect(Buffer.from(log.records[1]!).equals(Buffer.from(after))).toBe(true);
    expect(log.offsets).toEqual([7, 3 * BLOCK + 7 + lastLen]);
  });

  it('writes an empty FIRST chunk when exactly 7 bytes remain in a block', async () => {
    const fill = pattern(BLOCK - 7 - 7 - 7); // leaves exactly 7 bytes in block 0
    const next = pattern(10, 3);
    const { bytes } = await writeLog([fill, next]);
    expectChunk(bytes, 7, 1, fill);
    expectChunk(bytes, BLOCK - 7, 2, new Uint8Array(0));
    expectChunk(bytes, BLOCK, 4, next);
    expect(bytes.length).toBe(BLOCK + 7 + 10);
    const log = readTransactionLog(bytes);
    expect(log.error).toBeUndefined();
    expect(log.records.map((r) => r.length)).toEqual([fill.length, 10]);
    expect(log.offsets).toEqual([7, BLOCK - 7]);
  });

  it('zero-pads fewer than 7 trailing bytes of a block and checks the padding when reading', async () => {
    for (const leftover of [1, 4, 6]) {
      const fill = pattern(BLOCK - 7 - 7 - leftover);
      const next = pattern(10, 4);
      const { bytes } = await writeLog([fill, next]);
      expectChunk(bytes, 7, 1, fill);
      expect([...bytes.subarray(BLOCK - leftover, BLOCK)]).toEqual(new Array(leftover).fill(0));
      expectChunk(bytes, BLOCK, 1, next);
      const log = readTransactionLog(bytes);
      expect(log.error).toBeUndefined();
      expect(log.records.map((r) => r.length)).toEqual([fill.length, 10]);

      // Bad padding with an intact record after it: damage in the middle, reading goes on.
      const bad = Buffer.from(bytes);
      bad[BLOCK - 1] = 0x55;
      const broken = readTransactionLog(bad);
      expect(broken.records).toHaveLength(2);
      expect(broken.error).toBeUndefined();
      expect(broken.damaged).toMatchObject([{ kind: 'padding', offset: BLOCK - 1, to: BLOCK }]);
    }
  });

  it('starts a FULL chunk at the next block when a record fills a block exactly', async () => {
    const fill = pattern(BLOCK - 7 - 7);
    const { bytes } = await writeLog([fill, pattern(5)]);
    expectChunk(bytes, 7, 1, fill);
    expectChunk(bytes, BLOCK, 1, pattern(5));
    expect(readTransactionLog(bytes).records).toHaveLength(2);
  });

  it('returns the readable prefix of truncated and corrupted files', async () => {
    const payloads = [pattern(100, 1), pattern(200, 2), pattern(70_000, 3), pattern(50, 4)];
    const { bytes } = await writeLog(payloads);
    const whole = readTransactionLog(bytes);
    expect(whole.error).toBeUndefined();
    expect(whole.records).toHaveLength(4);
    const [, o2, o3, o4] = whole.offsets as [number, number, number, number];

    // cut inside a chunk payload, inside a chunk header, and after the FIRST chunk of a long record
    for (const [cut, n] of [
      [o2 + 20, 1],
      [o2 + 3, 1],
      [BLOCK + 100, 2],
      [BLOCK, 2],
      [o4 + 7 + 49, 3],
    ] as const) {
      const r = readTransactionLog(bytes.subarray(0, cut));
      expect(r.records, `cut at ${cut}`).toHaveLength(n);
      expect(r.error?.kind, `cut at ${cut}`).toBe('truncated');
      for (let i = 0; i < n; i++) expect(Buffer.from(r.records[i]!).equals(Buffer.from(payloads[i]!))).toBe(true);
    }
    // a zero-filled tail (file extended but never written) reads as truncated
    const zeroTail = Buffer.concat([bytes.subarray(0, o3), Buffer.alloc(500)]);
    expect(readTransactionLog(zeroTail)).toMatchObject({ records: [{}, {}], error: { kind: 'truncated', offset: o3 } });

    // A flipped payload byte in record 2 (block 0) is damage in the middle: as W&B's reader
    // (LevelDB Recover), the rest of block 0 is dropped, the MIDDLE/LAST chunks of record 3 are
    // skipped, and record 4 is read. A flipped CRC byte in the LAST chunk of record 3 (block 2)
    // drops the rest of that block, the physical end: a tail error, from record 3's start.
    const flipped = Buffer.from(bytes);
    flipped[o2 + 7 + 10] ^= 0x01;
    const f1 = readTransactionLog(flipped);
    expect(f1.error).toBeUndefined();
    expect(f1.damaged).toMatchObject([{ kind: 'checksum', offset: o2, to: o4 }]);
    expect(f1.records.map((r) => Buffer.from(r).equals(Buffer.from(payloads[0]!)) || Buffer.from(r).equals(Buffer.from(payloads[3]!)))).toEqual([true, true]);
    expect(f1.offsets).toEqual([7, o4]);
    const flipped2 = Buffer.from(bytes);
    flipped2[2 * BLOCK] ^= 0x80;
    expect(readTransactionLog(flipped2)).toMatchObject({ records: [{}, {}], damaged: [], error: { kind: 'checksum', offset: o3 } });

    // header problems
    expect(readTransactionLog(new Uint8Array(0)).error?.kind).toBe('header');
    const wrongVersion = Buffer.from(bytes);
    wrongVersion[6] = 1;
    expect(readTransactionLog(wrongVersion)).toMatchObject({ records: [], error: { kind: 'header', offset: 0 } });
    const wrongMagic = Buffer.from(bytes);
    wrongMagic[4] = 0;
    expect(readTransactionLog(wrongMagic).error?.kind).toBe('header');
  });

  it('reports chunk types out of sequence', () => {
    const chunk = (type: number, payload: Uint8Array): Buffer => {
      const h = Buffer.alloc(7);
      h.writeUInt32LE(crc32(Buffer.concat([Buffer.of(type), payload])) >>> 0, 0);
      h.writeUInt16LE(payload.length, 4);
      h[6] = type;
      return Buffer.concat([h, payload]);
    };
    const header = Buffer.from([0x3a, 0x57, 0x26, 0x42, 0xe1, 0xbe, 0x00]);
    const ok = chunk(1, Buffer.from('a'));
    expect(readTransactionLog(Buffer.concat([header, ok, chunk(3, Buffer.from('b'))]))).toMatchObject({ records: [{}], error: { kind: 'sequence', offset: 15 } });
    expect(readTransactionLog(Buffer.concat([header, ok, chunk(4, Buffer.from('b'))])).error?.kind).toBe('sequence');
    // FIRST then FULL: the unfinished record is damage (7..15), the FULL record after it is read.
    expect(readTransactionLog(Buffer.concat([header, chunk(2, Buffer.from('x')), ok]))).toMatchObject({ records: [{}], damaged: [{ kind: 'sequence', offset: 7, to: 15 }] });
    expect(readTransactionLog(Buffer.concat([header, chunk(2, Buffer.from('x')), ok])).error).toBeUndefined();
    expect(readTransactionLog(Buffer.concat([header, chunk(2, Buffer.from('x')), chunk(2, Buffer.from('y'))])).error?.kind).toBe('sequence');
    expect(readTransactionLog(Buffer.concat([header, ok, chunk(9, Buffer.from('z'))]))).toMatchObject({ records: [{}], error: { kind: 'sequence' } });
    // FIRST + MIDDLE + LAST inside one block is legal
    const split = readTransactionLog(Buffer.concat([header, chunk(2, Buffer.from('ab')), chunk(3, Buffer.from('cd')), chunk(4, Buffer.from('e'))]));
    expect(split.error).toBeUndefined();
    expect(split.records.map((r) => Buffer.from(r).toString())).toEqual(['abcde']);
  });

  it('writes buffered records on its own once more than 1 MiB is pending, and rejects appends after close', async () => {
    const file = path.join(tmpDir(), 'big.wandb');
    const w = TransactionLogWriter.open(file);
    expect(fs.statSync(file).size).toBe(7);
    w.append(pattern(600_000));
    expect(fs.statSync(file).size).toBe(7);
    w.append(pattern(600_000));
    expect(fs.statSync(file).size).toBeGreaterThan(1_200_000);
    expect(w.bufferedBytes).toBe(0);
    w.append(pattern(10));
    w.flushSync();
    w.closeSync();
    expect(() => w.append(pattern(1))).toThrow(/closed/);
    expect(readTransactionLog(fs.readFileSync(file)).records.map((r) => r.length)).toEqual([600_000, 600_000, 10]);
    expect(() => TransactionLogWriter.open(file)).toThrow(/EEXIST/);
  });
});

describe('OfflineRunWriter', () => {
  it('round-trips every record kind through readWandbFile, numbered from 1', async () => {
    const root = tmpDir();
    const info = runInfo({ displayName: 'my run', notes: 'n', tags: ['a', 'b'], group: 'g', jobType: 'train', host: 'box', startingStep: 3, resumed: true });
    const w = await OfflineRunWriter.create(root, info);
    w.config({ batch: 32, nested: { a: [1, 2] } });
    w.history({ loss: 0.5, acc: NaN, big: Infinity, neg: -Infinity, name: 'x', _step: 0, _runtime: 1.5, _timestamp: 1700000000.25 }, 0);
    w.history({ loss: 0.25, _step: 1, _runtime: 2, _timestamp: 1700000001 }, 1);
    w.summary({ loss: 0.25, best: { acc: 0.9 } });
    w.exit(0, 12.4);
    await w.close();

    const { records, error } = await readWandbFile(w.path);
    expect(error).toBeUndefined();
    expect(records.map((r) => r.kind)).toEqual(['header', 'run', 'config', 'history', 'history', 'summary', 'exit', 'final', 'footer']);
    expect(records.map((r) => r.num)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9]);
    expect(records[0]).toMatchObject({ producer: expect.stringMatching(/^trackspec \d+\.\d+\.\d+/), minConsumer: '0.70.0' });
    expect(records[1]!.run).toEqual(info);
    expect(records[2]!.items).toEqual({ batch: 32, nested: { a: [1, 2] } });
    expect(records[3]).toMatchObject({ kind: 'history', step: 0 });
    expect(records[3]!.items).toEqual({ loss: 0.5, acc: NaN, big: Infinity, neg: -Infinity, name: 'x', _step: 0, _runtime: 1.5, _timestamp: 1700000000.25 });
    expect(records[4]).toMatchObject({ step: 1, items: { loss: 0.25, _step: 1 } });
    expect(records[5]!.items).toEqual({ loss: 0.25, best: { acc: 0.9 } });
    expect(records[6]).toMatchObject({ kind: 'exit', exitCode: 0, runtime: 12 });
    expect(() => w.exit(1, 1)).toThrow();
  });

  it('decodes with protoc --decode=wandb_internal.Record', async () => {
    if (protocMissing()) return;
    const root = tmpDir();
    const w = await OfflineRunWriter.create(root, runInfo({ tags: ['t1'] }));
    w.config({ extra: 'yes' });
    w.history({ loss: 1.5, _step: 7 }, 7);
    w.summary({ loss: 1.5 });
    w.exit(1, 3);
    await w.close();
    const { records } = readTransactionLog(fs.readFileSync(w.path));
    const texts = records.map((r) => protocDecode(r));
    expect(texts).toHaveLength(8);
    texts.forEach((t, i) => expect(t).toMatch(new RegExp(`^num: ${i + 1}\\n`)));
    expect(texts[0]).toContain('header {\n  version_info {\n    producer: "trackspec ');
    expect(texts[0]).toContain('min_consumer: "0.70.0"');
    expect(texts[1]).toContain('run_id: "abc123xy"');
    expect(texts[1]).toContain('entity: "team"');
    expect(texts[1]).toContain('project: "proj"');
    expect(texts[1]).toContain('tags: "t1"');
    expect(texts[1]).toContain(`start_time {\n    seconds: ${Math.floor(runInfo().startTimeMs / 1000)}\n    nanos: 250000000\n  }`);
    expect(texts[1]).toContain('key: "lr"\n      value_json: "0.001"');
    expect(texts[1]).toContain('key: "opt"\n      value_json: "{\\"name\\":\\"adam\\",\\"beta\\":0.9}"');
    expect(texts[2]).toMatch(/^num: 3\nconfig \{\n  update \{\n    key: "extra"\n    value_json: "\\"yes\\""\n  \}\n\}/);
    expect(texts[3]).toContain('history {\n  item {\n    key: "loss"\n    value_json: "1.5"\n  }');
    expect(texts[3]).toContain('step {\n    num: 7\n  }');
    expect(texts[4]).toContain('summary {\n  update {\n    key: "loss"');
    expect(texts[5]).toContain('exit {\n  exit_code: 1\n  runtime: 3\n');
    expect(texts[6]).toBe('num: 7\nfinal {\n}\n');
    expect(texts[7]).toBe('num: 8\nfooter {\n}\n');
    // value_json is field 16: tag bytes 82 01
    expect(Buffer.from(records[2]!).includes(Buffer.from([0x82, 0x01]))).toBe(true);
  });

  it('reads back a history row larger than two blocks', async () => {
    const root = tmpDir();
    const w = await OfflineRunWriter.create(root, runInfo());
    const text = 'x'.repeat(100_000);
    w.history({ text, _step: 0 }, 0);
    w.summary({ done: true });
    await w.close();
    const bytes = fs.readFileSync(w.path);
    const log = readTransactionLog(bytes);
    expect(log.error).toBeUndefined();
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    // the history record starts in block 0 and ends in block 3: FIRST, MIDDLE, MIDDLE, LAST
    const start = log.offsets[2]!;
    expect(start).toBeLessThan(BLOCK);
    expect(bytes[start + 6]).toBe(2);
    expect(view.getUint16(start + 4, true)).toBe(BLOCK - start - 7);
    expect([bytes[BLOCK + 6], bytes[2 * BLOCK + 6], bytes[3 * BLOCK + 6]]).toEqual([3, 3, 4]);
    expect(view.getUint16(BLOCK + 4, true)).toBe(BLOCK - 7);
    const { records } = await readWandbFile(w.path);
    expect(records.map((r) => r.kind)).toEqual(['header', 'run', 'history', 'summary']);
    expect(records[2]!.items).toEqual({ text, _step: 0 });
  });

  it('leaves a readable prefix when a file is cut off, and reports corruption', async () => {
    const root = tmpDir();
    const w = await OfflineRunWriter.create(root, runInfo());
    for (let i = 0; i < 5; i++) w.history({ loss: i, _step: i }, i);
    w.flushSync(); // e.g. a process-exit hook; no exit record
    const bytes = fs.readFileSync(w.path);
    const full = await readWandbFile(w.path);
    expect(full.error).toBeUndefined();
    expect(full.records.map((r) => r.kind)).toEqual(['header', 'run', 'history', 'history', 'history', 'history', 'history']);

    const cut = path.join(root, 'cut.wandb');
    fs.writeFileSync(cut, bytes.subarray(0, bytes.length - 3));
    const r1 = await readWandbFile(cut);
    expect(r1.records).toHaveLength(6);
    expect(r1.error?.kind).toBe('truncated');

    const flipped = Buffer.from(bytes);
    flipped[bytes.length - 2] ^= 0xff;
    fs.writeFileSync(cut, flipped);
    const r2 = await readWandbFile(cut);
    expect(r2.records.map((r) => r.step)).toEqual([undefined, undefined, 0, 1, 2, 3]);
    expect(r2.error?.kind).toBe('checksum');
    await w.close();
  });

  it('names the run directory offline-run-YYYYMMDD_HHMMSS-<id> in local time, with files/', async () => {
    const savedTz = process.env.TZ;
    process.env.TZ = 'Asia/Kolkata'; // UTC+05:30, no DST
    try {
      const root = tmpDir();
      const w = await OfflineRunWriter.create(root, runInfo({ runId: 'r1', startTimeMs: Date.UTC(2024, 0, 2, 23, 4, 5) }));
      await w.close();
      expect(w.runDir).toBe(path.join(root, 'wandb', 'offline-run-20240103_043405-r1'));
      expect(w.path).toBe(path.join(w.runDir, 'run-r1.wandb'));
      expect(fs.statSync(path.join(w.runDir, 'files')).isDirectory()).toBe(true);
    } finally {
      if (savedTz === undefined) delete process.env.TZ;
      else process.env.TZ = savedTz;
    }
  });

  it('uses <root>/.wandb when it exists; createSync does the same synchronously', async () => {
    const root = tmpDir();
    fs.mkdirSync(path.join(root, '.wandb'));
    const w = OfflineRunWriter.createSync(root, runInfo({ runId: 'hid' }));
    w.exit(0, 1);
    w.flushSync();
    await w.close();
    expect(path.dirname(w.runDir)).toBe(path.join(root, '.wandb'));
    expect((await readWandbFile(w.path)).records.map((r) => r.kind)).toEqual(['header', 'run', 'exit', 'final', 'footer']);
    expect(await findOfflineRuns(root)).toEqual([w.path]);
  });
});

describe('findOfflineRuns / markSynced', () => {
  it('finds unsynced runs from a root, the wandb/ dir, a run dir or a .wandb file', async () => {
    const root = tmpDir();
    const a = await OfflineRunWriter.create(root, runInfo({ runId: 'aaa', startTimeMs: Date.UTC(2024, 1, 1) }));
    const b = await OfflineRunWriter.create(root, runInfo({ runId: 'bbb', startTimeMs: Date.UTC(2024, 1, 2) }));
    await a.close();
    await b.close();
    // an online run directory (run-*) is not an offline run
    fs.mkdirSync(path.join(root, 'wandb', 'run-20240101_000000-ccc'), { recursive: true });
    fs.writeFileSync(path.join(root, 'wandb', 'run-20240101_000000-ccc', 'run-ccc.wandb'), '');

    expect(await findOfflineRuns(root)).toEqual([a.path, b.path]);
    expect(await findOfflineRuns(path.join(root, 'wandb'))).toEqual([a.path, b.path]);
    expect(await findOfflineRuns(a.runDir)).toEqual([a.path]);
    expect(await findOfflineRuns(b.path)).toEqual([b.path]);
    expect(await findOfflineRuns(path.join(root, 'nope'))).toEqual([]);

    await markSynced(a.path);
    expect(fs.existsSync(`${a.path}.synced`)).toBe(true);
    expect(fs.readFileSync(`${a.path}.synced`, 'utf8')).toBe('');
    expect(await findOfflineRuns(root)).toEqual([b.path]);
    expect(await findOfflineRuns(a.path)).toEqual([]);
    expect(await findOfflineRuns(a.runDir)).toEqual([]);
  });
});

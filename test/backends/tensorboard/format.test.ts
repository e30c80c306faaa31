import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  SummaryWriter,
  crc32c,
  listEventFiles,
  maskedCrc32c,
  readEventsSync,
  readRecords,
} from '../../../runtime/backends/tensorboard/index.js';
import { onlyEventFile, protocDecode, protocDecodeFile, protocEvents, readAll, requireProtoc, tmpDir } from './helpers.js';

describe('CRC-32C and masking', () => {
  it('matches the reference vectors', () => {
    expect(crc32c(Buffer.from('123456789'))).toBe(0xe3069283);
    expect(maskedCrc32c(Buffer.from('123456789'))).toBe(0xc78ab0e5);
    expect(maskedCrc32c(new Uint8Array(0))).toBe(0xa282ead8);
    const len24 = Buffer.from([0x18, 0, 0, 0, 0, 0, 0, 0]);
    expect(crc32c(len24)).toBe(0x4a65bfe4);
    expect(maskedCrc32c(len24)).toBe(0x224b7fa3);
  });
});

describe('event files', () => {
  it('names files events.out.tfevents.<10 digits>.<host>.<pid>.<n><suffix> and never collides', async () => {
    const dir = tmpDir();
    const a = new SummaryWriter(dir, { flushSecs: 0, filenameSuffix: '.v2' });
    const b = new SummaryWriter(dir, { flushSecs: 0, filenameSuffix: '.v2' });
    const c = new SummaryWriter(dir, { flushSecs: 0 });
    const re = new RegExp(
      `^events\\.out\\.tfevents\\.(\\d{10})\\.${os.hostname().replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\\.${process.pid}\\.(\\d+)(\\.v2)?$`,
    );
    const names = [a.path, b.path, c.path].map((p) => path.basename(p));
    for (const n of names) expect(n).toMatch(re);
    expect(new Set(names).size).toBe(3);
    const secs = Number(re.exec(names[0]!)![1]);
    expect(Math.abs(secs - Date.now() / 1000)).toBeLessThan(5);
    expect(names[0]!.endsWith('.v2')).toBe(true);
    expect(names[2]!.endsWith('.v2')).toBe(false);
    a.addScalar('x', 1, 1);
    b.addScalar('x', 2, 1);
    await Promise.all([a.close(), b.close(), c.close()]);
    // Both files intact and distinct.
    expect(readAll(a.path)[1]!.summary![0]!.simpleValue).toBe(1);
    expect(readAll(b.path)[1]!.summary![0]!.simpleValue).toBe(2);
    expect(listEventFiles(dir)).toHaveLength(3);
  });

  it('starts with file_version brain.Event:2, on disk right after construction', async () => {
    const dir = tmpDir();
    const w = new SummaryWriter(dir, { flushSecs: 0 });
    const events = readAll(w.path);
    expect(events).toHaveLength(1);
    expect(events[0]!.fileVersion).toBe('brain.Event:2');
    expect(events[0]!.step).toBe(0);
    expect(Math.abs(events[0]!.wallTime - Date.now() / 1000)).toBeLessThan(5);
    expect(fs.statSync(w.path).size).toBe(40); // 24-byte payload + 16 bytes framing
    await w.close();
  });

  it('writes purge_step: file_version at step S, then two SessionLog START at S (the server-side loader skips the first)', async () => {
    const dir = tmpDir();
    const w = new SummaryWriter(dir, { flushSecs: 0, purgeStep: 7 });
    await w.close();
    const ev = readAll(w.path);
    expect(ev[0]).toMatchObject({ step: 7, fileVersion: 'brain.Event:2' });
    expect(ev[1]).toMatchObject({ step: 7, sessionLog: { status: 1 } });
    expect(ev[2]).toMatchObject({ step: 7, sessionLog: { status: 1 } });
    expect(ev).toHaveLength(3);
  });

  it('frames records exactly (length, masked CRCs) and protoc decodes every payload', async () => {
    const dir = tmpDir();
    const w = new SummaryWriter(dir, { flushSecs: 0 });
    w.addScalar('a', 0, 0, 1.0);
    await w.close();
    const bytes = fs.readFileSync(w.path);
    const { records } = readRecords(bytes);
    expect(records).toHaveLength(2);
    const rec = records[1]!;
    // Event wall_time 1.0, step 0, Value {tag a, simple_value 0.0} (reference §3.1).
    expect(Buffer.from(rec.payload).toString('hex')).toBe('09000000000000f03f2a0a0a080a01611500000000');
    const at = rec.offset;
    expect(bytes.readBigUInt64LE(at)).toBe(BigInt(rec.payload.length));
    expect(bytes.readUInt32LE(at + 8)).toBe(maskedCrc32c(bytes.subarray(at, at + 8)));
    expect(bytes.readUInt32LE(at + 12 + rec.payload.length)).toBe(maskedCrc32c(rec.payload));
    if (requireProtoc()) {
      expect(protocDecode('tensorboard.Event', rec.payload)).toBe(
        'wall_time: 1\nsummary {\n  value {\n    tag: "a"\n    simple_value: 0\n  }\n}\n',
      );
    }
  });
});

describe('reader: damaged files', () => {
  async function sample(): Promise<{ file: string; bytes: Buffer; offsets: number[] }> {
    const dir = tmpDir();
    const w = new SummaryWriter(dir, { flushSecs: 0 });
    for (let i = 1; i <= 5; i++) w.addScalar('loss', i, i);
    await w.close();
    const bytes = fs.readFileSync(w.path);
    return { file: w.path, bytes, offsets: readRecords(bytes).records.map((r) => r.offset) };
  }

  it('returns every complete record before a truncation, at any cut point', async () => {
    const { file, bytes, offsets } = await sample();
    const last = offsets[5]!;
    for (let cut = last + 1; cut < bytes.length; cut++) {
      fs.writeFileSync(file, bytes.subarray(0, cut));
      const r = readEventsSync(file);
      expect(r.events.map((e) => e.step)).toEqual([0, 1, 2, 3, 4]);
      expect(r.error?.kind).toBe('truncated');
      expect(r.error?.offset).toBe(last);
      expect(r.validBytes).toBe(last);
    }
    fs.writeFileSync(file, bytes);
    expect(readEventsSync(file).error).toBeUndefined();
  });

  it('stops at a flipped byte in the payload (data CRC) or the length (length CRC)', async () => {
    const { file, bytes, offsets } = await sample();
    const third = offsets[3]!;
    const payloadFlip = Buffer.from(bytes);
    payloadFlip[third + 14] ^= 0x01;
    fs.writeFileSync(file, payloadFlip);
    let r = readEventsSync(file);
    expect(r.events.map((e) => e.step)).toEqual([0, 1, 2]);
    expect(r.error).toMatchObject({ kind: 'data-crc', offset: third });

    const lengthFlip = Buffer.from(bytes);
    lengthFlip[third] ^= 0x40;
    fs.writeFileSync(file, lengthFlip);
    r = readEventsSync(file);
    expect(r.events.map((e) => e.step)).toEqual([0, 1, 2]);
    expect(r.error).toMatchObject({ kind: 'length-crc', offset: third });

    const crcFlip = Buffer.from(bytes);
    crcFlip[offsets[4]! - 1] ^= 0x80; // last byte of record 3's data CRC
    fs.writeFileSync(file, crcFlip);
    r = readEventsSync(file);
    expect(r.events.map((e) => e.step)).toEqual([0, 1, 2]);
    expect(r.error).toMatchObject({ kind: 'data-crc', offset: third });
  });

  it('reports an undecodable payload with valid CRCs as a decode error', async () => {
    const { file, bytes, offsets } = await sample();
    const end = offsets[5]!;
    const garbage = Buffer.from([0x0a, 0x7f]); // LEN field claiming 127 bytes, none present
    const rec = Buffer.alloc(16 + garbage.length);
    rec.writeBigUInt64LE(BigInt(garbage.length), 0);
    rec.writeUInt32LE(maskedCrc32c(rec.subarray(0, 8)), 8);
    garbage.copy(rec, 12);
    rec.writeUInt32LE(maskedCrc32c(garbage), 12 + garbage.length);
    fs.writeFileSync(file, Buffer.concat([bytes.subarray(0, end), rec]));
    const r = readEventsSync(file);
    expect(r.events).toHaveLength(5);
    expect(r.error).toMatchObject({ kind: 'decode', offset: end });
  });
});

describe('protoc cross-check of a whole file', () => {
  it('decodes every record with the .proto', async () => {
    if (!requireProtoc()) return;
    const dir = tmpDir();
    const w = new SummaryWriter(dir, { flushSecs: 0 });
    w.addValues({ loss: 0.25, ok: true, note: 'hi **there**' }, 3);
    await w.close();
    const events = protocEvents(protocDecodeFile(onlyEventFile(dir)));
    expect(events).toHaveLength(2);
    expect(events[0]).toContain('file_version: "brain.Event:2"');
    expect(events[1]).toContain('step: 3');
    expect(events[1]).toMatch(/tag: "loss"\s+simple_value: 0.25/);
    expect(events[1]).toMatch(/tag: "ok"\s+simple_value: 1/);
    expect(events[1]).toMatch(/tag: "note"\s+tensor \{\s+dtype: DT_STRING\s+tensor_shape \{\s+\}\s+string_val: "hi \*\*there\*\*"/);
    expect(events[1]).toMatch(/plugin_name: "text"/);
  });
});

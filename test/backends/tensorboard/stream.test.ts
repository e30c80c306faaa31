// The streaming event reader: chunked reads with memory bounded by one record, the same events as
// the whole-file decode, torn tails reported, damage in the middle thrown with its offset, and the
// file closed however the loop ends.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../../runtime/core/errors.js';
import {
  EventFileError,
  SummaryWriter,
  decodeEvents,
  maskedCrc32c,
  readEventStream,
  readEventStreamSync,
  readEvents,
  readEventsSync,
  readRecords,
  textOf,
  type DecodedEvent,
} from '../../../runtime/backends/tensorboard/index.js';
import { tmpDir } from './helpers.js';

/** Events with every byte view as a plain array, so views into a Buffer and a Uint8Array compare equal. */
function plain(value: unknown): unknown {
  if (value instanceof Uint8Array) return { bytes: Array.from(value) };
  if (Array.isArray(value)) return value.map(plain);
  if (value && typeof value === 'object') return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, plain(v)]));
  return value;
}

async function collectAsync(file: string, chunkSize?: number): Promise<DecodedEvent[]> {
  const out: DecodedEvent[] = [];
  for await (const e of readEventStream(file, chunkSize === undefined ? undefined : { chunkSize })) out.push(e);
  return out;
}

function collectSync(file: string, chunkSize?: number): DecodedEvent[] {
  return [...readEventStreamSync(file, chunkSize === undefined ? undefined : { chunkSize })];
}

/** Every kind of event the writer makes: scalars, text (one record larger than small chunks), images, hparams, purge_step session logs. */
async function mixedFile(): Promise<string> {
  const dir = tmpDir();
  const w = new SummaryWriter(dir, { flushSecs: 0, purgeStep: 2 });
  for (let i = 0; i < 40; i++) w.addScalar('loss', 1 / (i + 1), i);
  w.addValues({ acc: 0.5, ok: true, note: 'hello **markdown**' }, 40);
  w.addText('big', 'x'.repeat(10_000), 41);
  const px = new Uint8Array(8 * 6 * 3).map((_, i) => (i * 7) % 256);
  w.addImages([['img', { data: px, height: 8, width: 6, channels: 3 }]], 42);
  w.addHparams({ lr: 0.01, opt: 'adam', nested: { depth: 3 } }, { 'hp/metric': 1.5 }, 43);
  await w.close();
  return w.path;
}

/** A small file: file_version + steps 0..4 of `loss`; its bytes and record offsets. */
async function sample(): Promise<{ file: string; bytes: Buffer; offsets: number[] }> {
  const dir = tmpDir();
  const w = new SummaryWriter(dir, { flushSecs: 0 });
  for (let i = 1; i <= 5; i++) w.addScalar('loss', i, i - 1);
  await w.close();
  const bytes = fs.readFileSync(w.path);
  return { file: w.path, bytes, offsets: readRecords(bytes).records.map((r) => r.offset) };
}

/** Descriptors of this process open on `file` (Linux: /proc/self/fd). */
function openFds(file: string): number {
  const real = fs.realpathSync(file);
  let n = 0;
  for (const fd of fs.readdirSync('/proc/self/fd')) {
    try {
      if (fs.readlinkSync(`/proc/self/fd/${fd}`) === real) n++;
    } catch {
      // closed meanwhile (the readdir's own descriptor)
    }
  }
  return n;
}

const CHUNKS = [1, 5, 11, 12, 13, 17, 64, 100, 4096, undefined];

describe('readEventStream yields exactly what the whole-file decode returns', () => {
  it('for every kind of event, at every chunk size (records spanning chunk boundaries, one larger than the chunk)', async () => {
    const file = await mixedFile();
    const whole = decodeEvents(fs.readFileSync(file));
    expect(whole.error).toBeUndefined();
    const expected = plain(whole.events);
    // The fixture really has what the test is about: a 10 kB record, text, an image, hparams, session logs.
    expect(Math.max(...readRecords(fs.readFileSync(file)).records.map((r) => r.payload.length))).toBeGreaterThan(10_000);
    expect(whole.events.some((e) => e.summary?.some((v) => v.image))).toBe(true);
    expect(whole.events.some((e) => e.sessionLog)).toBe(true);
    expect(whole.events.some((e) => e.summary?.some((v) => v.metadata?.pluginName === 'hparams'))).toBe(true);

    for (const chunkSize of CHUNKS) {
      expect(plain(await collectAsync(file, chunkSize)), `async, chunkSize ${chunkSize}`).toEqual(expected);
      expect(plain(collectSync(file, chunkSize)), `sync, chunkSize ${chunkSize}`).toEqual(expected);
      const r = await readEvents(file, chunkSize === undefined ? undefined : { chunkSize });
      expect(plain(r.events)).toEqual(expected);
      expect(r.validBytes).toBe(fs.statSync(file).size);
      expect(r.error).toBeUndefined();
      expect(plain(readEventsSync(file, chunkSize === undefined ? undefined : { chunkSize }).events)).toEqual(expected);
    }
  });

  it('events keep their bytes after the stream has read on (the read buffer is reused)', async () => {
    const dir = tmpDir();
    const w = new SummaryWriter(dir, { flushSecs: 0 });
    const px = (i: number) => new Uint8Array(2 * 2 * 3).fill(i);
    for (let i = 0; i < 60; i++) {
      w.addText('note', `text number ${i}`, i);
      w.addImages([['img', { data: px(i), height: 2, width: 2, channels: 3 }]], i);
      w.addScalar('loss', i, i);
    }
    await w.close();
    const expected = plain(decodeEvents(fs.readFileSync(w.path)).events);
    for (const chunkSize of [256, 1000]) {
      const events = await collectAsync(w.path, chunkSize);
      expect(events.filter((e) => e.summary?.[0]?.tag === 'note').map((e) => textOf(e.summary![0]!))).toEqual(
        Array.from({ length: 60 }, (_, i) => `text number ${i}`),
      );
      expect(plain(events)).toEqual(expected);
      expect(plain(collectSync(w.path, chunkSize))).toEqual(expected);
    }
  });

  it('reports validBytes and no error at the end of an intact file', async () => {
    const { file, bytes } = await sample();
    const s = readEventStream(file, { chunkSize: 7 });
    const steps: number[] = [];
    for await (const e of s) steps.push(e.step);
    expect(steps).toEqual([0, 0, 1, 2, 3, 4]);
    expect(s.validBytes).toBe(bytes.length);
    expect(s.error).toBeUndefined();
  });

  it('serves concurrent next() calls in order', async () => {
    const { file } = await sample();
    const s = readEventStream(file, { chunkSize: 3 });
    const r = await Promise.all([s.next(), s.next(), s.next(), s.next(), s.next(), s.next(), s.next()]);
    expect(r.map((x) => (x.done ? 'done' : x.value.step))).toEqual([0, 0, 1, 2, 3, 4, 'done']);
  });
});

describe('torn tail at the physical end of the file', () => {
  it('ends the loop normally and reports it on the stream, at any cut point and chunk size', async () => {
    const { file, bytes, offsets } = await sample();
    const last = offsets[5]!;
    for (let cut = last + 1; cut < bytes.length; cut++) {
      fs.writeFileSync(file, bytes.subarray(0, cut));
      for (const chunkSize of [1, 13, undefined]) {
        const s = readEventStream(file, chunkSize === undefined ? undefined : { chunkSize });
        const steps: number[] = [];
        for await (const e of s) steps.push(e.step);
        expect(steps).toEqual([0, 0, 1, 2, 3]);
        expect(s.error).toEqual({
          kind: 'truncated',
          offset: last,
          message: cut - last < 12 ? `truncated record header at byte ${last}` : `truncated record at byte ${last} (${bytes.length - last - 16}-byte payload)`,
        });
        expect(s.validBytes).toBe(last);
        const sync = readEventStreamSync(file, chunkSize === undefined ? undefined : { chunkSize });
        expect([...sync].map((e) => e.step)).toEqual([0, 0, 1, 2, 3]);
        expect(sync.error).toEqual(s.error);
      }
      const r = await readEvents(file);
      expect(r.events.map((e) => e.step)).toEqual([0, 0, 1, 2, 3]);
      expect(r.error).toMatchObject({ kind: 'truncated', offset: last });
      expect(r.validBytes).toBe(last);
    }
  });

  it('does not allocate a torn record’s claimed length: a header claiming 1 TB past the end is a torn tail', async () => {
    const { file, bytes } = await sample();
    const header = Buffer.alloc(12);
    header.writeBigUInt64LE(1n << 40n, 0);
    header.writeUInt32LE(maskedCrc32c(header.subarray(0, 8)), 8);
    fs.writeFileSync(file, Buffer.concat([bytes, header, Buffer.from('partial')]));
    const s = readEventStream(file, { chunkSize: 16 });
    let n = 0;
    for await (const _ of s) n++;
    expect(n).toBe(6);
    expect(s.error).toEqual({ kind: 'truncated', offset: bytes.length, message: `truncated record at byte ${bytes.length} (${2 ** 40}-byte payload)` });
  });
});

describe('damage in the middle of the file', () => {
  it('a flipped bit throws EventFileError naming the file and byte offset, after every event before it', async () => {
    const { file, bytes, offsets } = await sample();
    const third = offsets[3]!;
    const cases = [
      { at: third + 14, bit: 0x01, kind: 'data-crc', text: `failed event crc32 check at byte ${third}` },
      { at: third, bit: 0x40, kind: 'length-crc', text: `failed header crc32 check at byte ${third}` },
      { at: offsets[4]! - 1, bit: 0x80, kind: 'data-crc', text: `failed event crc32 check at byte ${third}` },
    ] as const;
    for (const c of cases) {
      const damaged = Buffer.from(bytes);
      damaged[c.at]! ^= c.bit;
      fs.writeFileSync(file, damaged);
      for (const chunkSize of [1, 13, undefined]) {
        const steps: number[] = [];
        let caught: unknown;
        try {
          for await (const e of readEventStream(file, chunkSize === undefined ? undefined : { chunkSize })) steps.push(e.step);
        } catch (err) {
          caught = err;
        }
        expect(steps).toEqual([0, 0, 1]);
        expect(caught).toBeInstanceOf(EventFileError);
        const err = caught as EventFileError;
        expect(err).toMatchObject({ kind: c.kind, offset: third, file, backend: 'tensorboard', code: c.kind });
        expect(err.message).toContain(file);
        expect(err.message).toContain(c.text);
        expect(err.message).toContain('damaged');
        expect(err.readError).toEqual({ kind: c.kind, offset: third, message: c.text });

        const syncSteps: number[] = [];
        expect(() => {
          for (const e of readEventStreamSync(file, chunkSize === undefined ? undefined : { chunkSize })) syncSteps.push(e.step);
        }).toThrow(EventFileError);
        expect(syncSteps).toEqual([0, 0, 1]);
      }
      // readEvents keeps its ReadResult shape: the events before the damage plus the error.
      for (const r of [await readEvents(file), readEventsSync(file)]) {
        expect(r.events.map((e) => e.step)).toEqual([0, 0, 1]);
        expect(r.error).toEqual({ kind: c.kind, offset: third, message: c.text });
        expect(r.validBytes).toBe(third);
      }
      expect(openFds(file)).toBe(0);
    }
  });

  it('a damaged last record that is complete is damage too, not a torn tail', async () => {
    const { file, bytes, offsets } = await sample();
    const last = offsets[5]!;
    const damaged = Buffer.from(bytes);
    damaged[last + 20]! ^= 0x04;
    fs.writeFileSync(file, damaged);
    await expect(collectAsync(file)).rejects.toThrow(`failed event crc32 check at byte ${last}`);
  });

  it('an undecodable payload with valid CRCs throws a decode error at its offset', async () => {
    const { file, bytes } = await sample();
    const garbage = Buffer.from([0x0a, 0x7f]); // LEN field claiming 127 bytes, none present
    const rec = Buffer.alloc(16 + garbage.length);
    rec.writeBigUInt64LE(BigInt(garbage.length), 0);
    rec.writeUInt32LE(maskedCrc32c(rec.subarray(0, 8)), 8);
    garbage.copy(rec, 12);
    rec.writeUInt32LE(maskedCrc32c(garbage), 12 + garbage.length);
    fs.writeFileSync(file, Buffer.concat([bytes, rec, bytes.subarray(0, 40)]));
    await expect(collectAsync(file, 5)).rejects.toMatchObject({ kind: 'decode', offset: bytes.length });
    const r = readEventsSync(file, { chunkSize: 5 });
    expect(r.events).toHaveLength(6);
    expect(r.error).toMatchObject({ kind: 'decode', offset: bytes.length });
    expect(r.validBytes).toBe(bytes.length);
  });
});

describe('the file handle', () => {
  it('is closed by an early break, at the end, and after an error (async and sync)', async () => {
    const { file, bytes, offsets } = await sample();
    expect(openFds(file)).toBe(0);

    for await (const e of readEventStream(file, { chunkSize: 16 })) {
      expect(e.fileVersion).toBe('brain.Event:2');
      expect(openFds(file)).toBe(1); // the check sees the open handle…
      break;
    }
    expect(openFds(file)).toBe(0); // …and break closed it

    for (const e of readEventStreamSync(file, { chunkSize: 16 })) {
      expect(e.fileVersion).toBe('brain.Event:2');
      expect(openFds(file)).toBe(1);
      break;
    }
    expect(openFds(file)).toBe(0);

    await collectAsync(file, 16);
    collectSync(file, 16);
    expect(openFds(file)).toBe(0);

    const damaged = Buffer.from(bytes);
    damaged[offsets[3]! + 14]! ^= 1;
    fs.writeFileSync(file, damaged);
    await expect(collectAsync(file, 16)).rejects.toThrow(EventFileError);
    expect(() => collectSync(file, 16)).toThrow(EventFileError);
    expect(openFds(file)).toBe(0);
  });

  it('a missing file rejects with the fs error, as readEvents did', async () => {
    const missing = path.join(tmpDir(), 'nope.tfevents');
    await expect(collectAsync(missing)).rejects.toMatchObject({ code: 'ENOENT' });
    await expect(readEvents(missing)).rejects.toMatchObject({ code: 'ENOENT' });
    expect(() => readEventsSync(missing)).toThrow(/ENOENT/);
  });
});

it('a bad chunkSize is a ConfigError naming the option', () => {
  for (const chunkSize of [0, -1, 1.5, Number.NaN]) {
    expect(() => readEventStream('x', { chunkSize })).toThrow(ConfigError);
    expect(() => readEventStreamSync('x', { chunkSize })).toThrow(/chunkSize must be a positive integer/);
  }
});

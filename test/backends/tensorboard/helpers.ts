import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { DriverContext } from '../../../runtime/core/driver.js';
import { listEventFiles, readEventsSync, readRecords, type DecodedEvent } from '../../../runtime/backends/tensorboard/index.js';

export const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
export const PROTO = path.join(REPO, 'runtime/backends/tensorboard/tensorboard.proto');

export function tmpDir(prefix = 'trackspec-tb-'): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}

export interface CtxStub extends DriverContext {
  warnings: string[];
}

export function ctxStub(): CtxStub {
  const warnings: string[] = [];
  const seen = new Set<string>();
  return {
    backend: 'tensorboard',
    className: 'TensorBoardTracker',
    warnings,
    warn: (m) => void warnings.push(m),
    warnOnce: (k, m) => {
      if (seen.has(k)) return;
      seen.add(k);
      warnings.push(m);
    },
  };
}

/** The single event file in `dir` (asserts there is exactly one). */
export function onlyEventFile(dir: string): string {
  const files = listEventFiles(dir);
  if (files.length !== 1) throw new Error(`expected one event file in ${dir}, found ${files.length}`);
  return files[0]!;
}

/** Read a file, asserting it decodes completely (no error). */
export function readAll(file: string): DecodedEvent[] {
  const r = readEventsSync(file);
  if (r.error) throw new Error(`read error in ${file}: ${r.error.message}`);
  return r.events;
}

export function protocAvailable(): boolean {
  const r = spawnSync('protoc', ['--version'], { encoding: 'utf8' });
  return r.status === 0;
}

export const skipProtoc = process.env.TRACKSPEC_SKIP_PROTOC === '1';

/** protoc must exist unless TRACKSPEC_SKIP_PROTOC=1 (then returns false: caller skips the check). */
export function requireProtoc(): boolean {
  if (skipProtoc) return false;
  if (!protocAvailable()) {
    throw new Error(
      'protoc not found: install it (apt-get install -y protobuf-compiler) or set TRACKSPEC_SKIP_PROTOC=1',
    );
  }
  return true;
}

function varint(n: number): number[] {
  const out: number[] = [];
  while (n >= 0x80) {
    out.push((n & 0x7f) | 0x80);
    n = Math.floor(n / 128);
  }
  out.push(n);
  return out;
}

/** `protoc --decode=<type>` of raw bytes; returns the text format. Throws on protoc failure. */
export function protocDecode(type: string, bytes: Uint8Array): string {
  const r = spawnSync('protoc', [`--proto_path=${path.dirname(PROTO)}`, `--decode=${type}`, path.basename(PROTO)], {
    input: bytes,
    cwd: path.dirname(PROTO),
    maxBuffer: 64 << 20,
  });
  if (r.status !== 0) throw new Error(`protoc failed (${r.status}): ${r.stderr.toString()}`);
  return r.stdout.toString('utf8');
}

/** Decode every record of a tfevents file with protoc in one call (as tensorboard.EventList). */
export function protocDecodeFile(file: string): string {
  const { records, error } = readRecords(fs.readFileSync(file));
  if (error) throw new Error(error.message);
  const parts: number[] = [];
  const chunks: Uint8Array[] = [];
  for (const rec of records) {
    chunks.push(Uint8Array.from([0x0a, ...varint(rec.payload.length)]), rec.payload);
    parts.push(rec.payload.length);
  }
  return protocDecode('tensorboard.EventList', Buffer.concat(chunks));
}

/** Each `event { ... }` block of protoc's EventList output. */
export function protocEvents(text: string): string[] {
  return text.split(/^event \{$/m).slice(1).map((s) => s.trim());
}

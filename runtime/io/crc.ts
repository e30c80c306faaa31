/**
 * CRC-32 (IEEE 802.3, as zlib/PNG/gzip) and CRC-32C (Castagnoli), shared by every on-disk format
 * trackspec writes (TFRecord framing in `tensorboard/`, the network backends' spool in `framing.ts`).
 *
 * The checksums come from packages, never hand-written: `@node-rs/crc32` (SSE4.2 / ARMv8 CRC
 * instructions, prebuilt binaries shipped through npm as optional dependencies) and, when no binary
 * exists for the platform, a fallback: `crc-32`'s CRC-32C (SheetJS, pure JS, table-driven; 60 KB and
 * no dependencies, where `@aws-crypto/crc32c` brought 2.4 MB of AWS SDK types) for CRC-32C, Node's
 * own `zlib.crc32` for CRC-32. Both are loaded on first use so importing the SDK does not pay for them.
 */
import { createRequire } from 'node:module';
import { lazy } from './lazy.js';

const zlib = lazy<typeof import('node:zlib')>('node:zlib');

/** `(data, initial?) => crc`; `initial` continues a previous CRC (streaming). Unsigned result. */
export type CrcFn = (data: Uint8Array, initial?: number) => number;

const require = createRequire(import.meta.url);

interface NodeRsCrc {
  crc32(input: Uint8Array, initial?: number): number;
  crc32c(input: Uint8Array, initial?: number): number;
}

function loadNative(): NodeRsCrc | undefined {
  try {
    return require('@node-rs/crc32') as NodeRsCrc;
  } catch {
    return undefined; // no native binary for this platform
  }
}

const CHECK = Buffer.from('123456789');

function loadCrc32c(): { fn: CrcFn; impl: string } {
  const mod = loadNative();
  if (mod && mod.crc32c(CHECK) >>> 0 === 0xe3069283) {
    const native = mod.crc32c;
    return { fn: (data, initial) => native(data, initial) >>> 0, impl: '@node-rs/crc32' };
  }
  return { fn: crc32cPortable, impl: 'crc-32' };
}

function loadCrc32(): { fn: CrcFn; impl: string } {
  const mod = loadNative();
  if (mod && mod.crc32(CHECK) >>> 0 === 0xcbf43926) {
    const native = mod.crc32;
    return { fn: (data, initial) => native(data, initial) >>> 0, impl: '@node-rs/crc32' };
  }
  return { fn: (data, initial) => zlib().crc32(data, initial ?? 0) >>> 0, impl: 'node:zlib' };
}

/** The pure-JS CRC-32C used where `@node-rs/crc32` has no binary (exported for its test). */
export const crc32cPortable: CrcFn = (data, initial) => (require('crc-32/crc32c') as { buf(data: Uint8Array, seed?: number): number }).buf(data, initial) >>> 0;

let loaded32c: { fn: CrcFn; impl: string } | undefined;
let loaded32: { fn: CrcFn; impl: string } | undefined;

/** Plain CRC-32C of `data` (unsigned). `crc32c("123456789") === 0xE3069283`. */
export function crc32c(data: Uint8Array): number {
  return (loaded32c ??= loadCrc32c()).fn(data);
}

/** Which package computes CRC-32C (`@node-rs/crc32` or `crc-32`). */
export function crc32cImplementation(): string {
  return (loaded32c ??= loadCrc32c()).impl;
}

/**
 * CRC-32 (IEEE) of `data` (unsigned), optionally continuing from `initial` (the CRC of the bytes
 * before `data`). `crc32("123456789") === 0xCBF43926`.
 */
export function crc32(data: Uint8Array, initial?: number): number {
  return (loaded32 ??= loadCrc32()).fn(data, initial);
}

/** Which implementation computes CRC-32 (`@node-rs/crc32` or `node:zlib`). */
export function crc32Implementation(): string {
  return (loaded32 ??= loadCrc32()).impl;
}

/**
 * CRC-32C (Castagnoli) and TFRecord's masked CRC.
 *
 * The checksum itself comes from a package, never hand-written: `@node-rs/crc32` (SSE4.2 / ARMv8
 * CRC instructions, prebuilt binaries shipped through npm as optional dependencies) and, when no
 * binary exists for the platform, the pure-JS `@aws-crypto/crc32c` (about 15x slower).
 */
import { createRequire } from 'node:module';

type Crc32cFn = (data: Uint8Array) => number;

const require = createRequire(import.meta.url);

function loadCrc32c(): { fn: Crc32cFn; impl: string } {
  try {
    const mod = require('@node-rs/crc32') as { crc32c(input: Uint8Array, initial?: number): number };
    const native = mod.crc32c;
    if (native(Buffer.from('123456789')) >>> 0 === 0xe3069283) {
      return { fn: (data) => native(data) >>> 0, impl: '@node-rs/crc32' };
    }
  } catch {
    // no native binary for this platform: fall back to pure JS below.
  }
  const js = require('@aws-crypto/crc32c') as { crc32c(data: Uint8Array): number };
  return { fn: (data) => js.crc32c(data) >>> 0, impl: '@aws-crypto/crc32c' };
}

// Loaded on first use so importing the SDK does not pay for it.
let loaded: { fn: Crc32cFn; impl: string } | undefined;

/** Plain CRC-32C of `data` (unsigned). `crc32c("123456789") === 0xE3069283`. */
export function crc32c(data: Uint8Array): number {
  return (loaded ??= loadCrc32c()).fn(data);
}

/** Which package computes the CRC (`@node-rs/crc32` or `@aws-crypto/crc32c`). */
export function crc32cImplementation(): string {
  return (loaded ??= loadCrc32c()).impl;
}

/** TFRecord mask: `rotr32(crc, 15) + 0xA282EAD8` (mod 2^32). */
export function maskCrc(crc: number): number {
  return ((((crc >>> 15) | (crc << 17)) >>> 0) + 0xa282ead8) >>> 0;
}

/** `maskCrc(crc32c(data))`. */
export function maskedCrc32c(data: Uint8Array): number {
  return maskCrc(crc32c(data));
}

/**
 * CRC-32C (Castagnoli) and TFRecord's masked CRC. The checksum itself lives in `runtime/io/crc.ts`
 * (shared with the network backends' spool); this module adds TFRecord's mask.
 *
 * The checksum itself comes from a package, never hand-written: `@node-rs/crc32` (SSE4.2 / ARMv8
 * CRC instructions, prebuilt binaries shipped through npm as optional dependencies) and, when no
 * binary exists for the platform, the pure-JS `crc-32` (table-driven, several times slower).
 */
export { crc32c, crc32cImplementation } from '../../io/crc.js';
import { crc32c } from '../../io/crc.js';

/** TFRecord mask: `rotr32(crc, 15) + 0xA282EAD8` (mod 2^32). */
export function maskCrc(crc: number): number {
  return ((((crc >>> 15) | (crc << 17)) >>> 0) + 0xa282ead8) >>> 0;
}

/** `maskCrc(crc32c(data))`. */
export function maskedCrc32c(data: Uint8Array): number {
  return maskCrc(crc32c(data));
}

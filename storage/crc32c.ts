/**
 * CRC-32C for the storage formats: the LSM engine's implementation (lsm/crc32c.ts) with the
 * argument order storage/ uses.
 *
 * @module
 */
import { crc32c as lsmCrc32c } from "../lsm/crc32c.ts";

/**
 * Extends a CRC-32C with `data[start, end)`. Pass `crc = 0` to start a new checksum.
 * Returns an unsigned 32-bit value.
 */
export function crc32c(data: Uint8Array, crc = 0, start = 0, end = data.length): number {
  return lsmCrc32c(data, start, end - start, crc);
}

/**
 * CRC-32C for the storage formats: the LSM engine's implementation (lsm/crc32c.ts) with the
 * argument order storage/ uses.
 *
 * @module
 */
import { crc32c as lsmCrc32c } from "../lsm/crc32c.ts";
import type { Pacer } from "./settle.ts";

/**
 * Extends a CRC-32C with `data[start, end)`. Pass `crc = 0` to start a new checksum.
 * Returns an unsigned 32-bit value.
 */
export function crc32c(data: Uint8Array, crc = 0, start = 0, end = data.length): number {
  return lsmCrc32c(data, start, end - start, crc);
}

/**
 * {@link crc32c} of `data[start, end)` computed in 1 MiB slices with {@link Pacer.pace} between
 * them, so that checking a large snapshot never holds the event loop for long.
 */
export async function crc32cPaced(
  data: Uint8Array,
  pacer: Pacer,
  crc = 0,
  start = 0,
  end = data.length,
): Promise<number> {
  for (let at = start; at < end; at += SLICE) {
    crc = crc32c(data, crc, at, Math.min(end, at + SLICE));
    await pacer.pace();
  }
  return crc;
}

const SLICE = 1 << 20;

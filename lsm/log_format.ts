/**
 * Record-log format (version 2) shared by the WAL and the MANIFEST (LevelDB style).
 *
 * The file is a sequence of 32 KiB blocks. A record is split into fragments that
 * never cross a block boundary; each fragment has an 11-byte header:
 * masked CRC32C u32 BE (over type byte + payload) | length u16 BE | type u8 |
 * masked CRC32C u32 BE of the 7 header bytes before it. The header checksum
 * lets the reader trust a length before it decides anything from it.
 * A block tail shorter than a header is zero padding.
 * @module
 */

/** Block size of the log. */
export const LOG_BLOCK = 32768;
/** Fragment header size. */
export const LOG_HEADER = 11;
/** Bytes of the header covered by the header checksum (the checksum follows them). */
export const LOG_HEADER_CHECKED = 7;
/** Fragment types. */
export const FRAG_FULL = 1;
/** First fragment of a multi-fragment record. */
export const FRAG_FIRST = 2;
/** Middle fragment. */
export const FRAG_MIDDLE = 3;
/** Last fragment. */
export const FRAG_LAST = 4;

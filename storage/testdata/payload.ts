/** Deterministic entry payloads for the storage tests: `<index>:<term>:` plus filler bytes. */

const enc = new TextEncoder();

/** The payload of the entry at `index` in `term` (length varies with the index). */
export function entryPayload(index: number, term: number): Uint8Array {
  const head = enc.encode(`${index}:${term}:`);
  const out = new Uint8Array(head.length + ((index * 37) % 300));
  out.set(head);
  for (let i = head.length; i < out.length; i++) out[i] = (index + i) & 0xff;
  return out;
}

/** Checks that `data` is {@link entryPayload}(index, term). */
export function payloadMatches(data: Uint8Array, index: number, term: number): boolean {
  const want = entryPayload(index, term);
  if (want.length !== data.length) return false;
  for (let i = 0; i < want.length; i++) if (want[i] !== data[i]) return false;
  return true;
}

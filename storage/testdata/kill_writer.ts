/**
 * Child process of the kill -9 conformance test: opens a storage backend, appends entries forever
 * in random batches, and after each `sync()` prints the last acknowledged index (`ack <index>`),
 * then applies the batch to the state machine as `put counter=<index>` commands.
 * Usage: `deno run -A kill_writer.ts <kind> <dir>`.
 */
import { encodeCommand, openStorage, putCommand, type StorageKind } from "../mod.ts";
import { EntryType } from "../../raft/types.ts";
import { entryPayload } from "./payload.ts";

const [kind, dir] = Deno.args;
const { log, sm } = await openStorage(kind as StorageKind, dir, { segmentBytes: 16 * 1024 });
const enc = new TextEncoder();
const hs = log.initialState().hardState;
const term = hs.term + 1;
log.setHardState({ term, vote: 1, commit: hs.commit });
await log.sync();
Deno.stdout.writeSync(enc.encode(`term ${term}\n`));
let next = log.lastIndex() + 1;
for (;;) {
  const n = 1 + Math.floor(Math.random() * 8);
  const batch = [];
  for (let i = 0; i < n; i++) {
    batch.push({ index: next, term, type: EntryType.Normal, data: entryPayload(next, term) });
    next++;
  }
  log.append(batch);
  const last = next - 1;
  log.setHardState({ term, vote: 1, commit: last - 1 });
  if (Math.random() < 0.05 && last - 20 >= log.firstIndex()) {
    const at = last - 20;
    log.createSnapshot({
      meta: {
        index: at,
        term: log.term(at),
        conf: { voters: [1], votersOutgoing: [], learners: [], learnersNext: [] },
      },
      data: entryPayload(at, log.term(at)),
    });
  }
  await log.sync();
  Deno.stdout.writeSync(enc.encode(`ack ${last}\n`));
  await sm.apply(batch.map((e) => ({
    index: e.index,
    data: encodeCommand(putCommand(enc.encode("counter"), enc.encode(String(e.index)))),
  })));
}

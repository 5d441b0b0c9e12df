/**
 * Storage benchmark: durable append rate of the lsm backend's Raft log (group commit).
 *
 * Compares one fdatasync per entry with 64 concurrent proposers whose entries are batched into one
 * `sync()`, then the same with the state machine applying each durable batch to the LSM (no sync),
 * and the simplefile backend for reference.
 *
 * Run: `deno run -A bench/storage_bench.ts [--seconds=2] [--size=128]`
 *
 * @module
 */
import { parseArgs } from "node:util";
import type { LogStore } from "../raft/storage.ts";
import { EntryType } from "../raft/types.ts";
import {
  encodeCommand,
  type KvStateMachine,
  openStorage,
  putCommand,
  registerSessionCommand,
  type StorageKind,
} from "../storage/mod.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: { seconds: { type: "string", default: "2" }, size: { type: "string", default: "128" } },
});
const SECONDS = Number(values.seconds);
const SIZE = Number(values.size);

function command(i: number, clientId: bigint): Uint8Array {
  const value = new Uint8Array(SIZE);
  value.fill(i & 0xff);
  return encodeCommand(
    putCommand(new TextEncoder().encode(`key-${i % 10000}`), value, { clientId, seq: i }, 1),
  );
}

interface Result {
  name: string;
  entries: number;
  syncs: number;
  seconds: number;
}

/** `proposers` concurrent proposers; a driver loop appends whatever is queued and syncs once. */
async function run(
  name: string,
  kind: StorageKind,
  proposers: number,
  apply: boolean,
): Promise<Result> {
  const dir = Deno.makeTempDirSync({ prefix: "gokv-storage-bench-" });
  const { log, sm } = await openStorage(kind, dir);
  try {
    return await drive(name, log, sm, proposers, apply);
  } finally {
    await log.close();
    await sm.close();
    Deno.removeSync(dir, { recursive: true });
  }
}

async function drive(
  name: string,
  log: LogStore,
  sm: KvStateMachine,
  proposers: number,
  apply: boolean,
): Promise<Result> {
  let queue: Array<{ data: Uint8Array; done: () => void }> = [];
  let wake: (() => void) | null = null;
  let stop = false;
  let next = log.lastIndex() + 1;
  // One registered client session per proposer (their ids are the registrations' indexes).
  const sessions: bigint[] = [];
  if (apply) {
    const regs = Array.from({ length: proposers }, () => ({
      index: next++,
      data: encodeCommand(registerSessionCommand(3_600_000, 100_000, 1)),
    }));
    log.append(regs.map((r) => ({ ...r, term: 1, type: EntryType.Normal })));
    await log.sync();
    await sm.apply(regs);
    for (const r of regs) sessions.push(BigInt(r.index));
  }
  let entries = 0;
  let syncs = 0;
  const driver = (async () => {
    while (!stop || queue.length > 0) {
      if (queue.length === 0) {
        await new Promise<void>((r) => (wake = r));
        continue;
      }
      const batch = queue;
      queue = [];
      const ents = batch.map((p) => ({
        index: next++,
        term: 1,
        type: EntryType.Normal,
        data: p.data,
      }));
      log.append(ents);
      log.setHardState({ term: 1, vote: 1, commit: next - 1 });
      await log.sync();
      syncs++;
      if (apply) await sm.apply(ents.map((e) => ({ index: e.index, data: e.data })));
      entries += batch.length;
      for (const p of batch) p.done();
    }
  })();
  const t0 = performance.now();
  const deadline = t0 + SECONDS * 1000;
  const proposer = async (id: number) => {
    for (let i = 1; performance.now() < deadline; i++) {
      await new Promise<void>((done) => {
        queue.push({ data: command(i, sessions[id - 1] ?? BigInt(id)), done });
        if (wake) {
          const w = wake;
          wake = null;
          w();
        }
      });
    }
  };
  await Promise.all(Array.from({ length: proposers }, (_, id) => proposer(id + 1)));
  stop = true;
  if (wake) (wake as () => void)();
  await driver;
  return { name, entries, syncs, seconds: (performance.now() - t0) / 1000 };
}

const results: Result[] = [];
results.push(await run("lsm log, 1 proposer (one fdatasync per entry)", "lsm", 1, false));
results.push(await run("lsm log, 64 proposers (group commit)", "lsm", 64, false));
results.push(await run("lsm log + LSM apply, 64 proposers", "lsm", 64, true));
results.push(await run("simplefile log, 1 proposer", "simplefile", 1, false));
results.push(await run("simplefile log, 64 proposers", "simplefile", 64, false));

console.log(`durable appends, ${SIZE}-byte values, ${SECONDS}s each\n`);
console.log("| case | entries/s | syncs/s | entries/sync |");
console.log("|---|---:|---:|---:|");
for (const r of results) {
  console.log(
    `| ${r.name} | ${Math.round(r.entries / r.seconds).toLocaleString("en")} | ${
      Math.round(r.syncs / r.seconds).toLocaleString("en")
    } | ${(r.entries / r.syncs).toFixed(1)} |`,
  );
}
const single = results[0].entries / results[0].seconds;
const grouped = results[1].entries / results[1].seconds;
console.log(`\ngroup commit speed-up (lsm, 64 vs 1 proposer): ${(grouped / single).toFixed(1)}x`);

/**
 * The simulator's state machine (raft/sim/kv.ts, a synchronous model both Raft simulations run)
 * against the real one (storage/kv_core.ts through the memory backend): the same random command
 * sequences — registrations with small tables and short idle times, writes under live, expired,
 * evicted, unknown and 0 session ids, retried and reused seqs, clocks that go back — must give the
 * same answers (refusal kind, session ids, values) and the same session table. Lives under tests/
 * because raft/ must not import storage/.
 */
import assert from "node:assert/strict";
import {
  encodeBatch as encodeSimBatch,
  encodeCommand as encodeSim,
  registerCommand,
  SimKv,
} from "../raft/sim/kv.ts";
import { Prng } from "../raft/sim/prng.ts";
import {
  deleteCommand,
  encodeBatch,
  encodeCommand,
  putCommand,
  registerSessionCommand,
} from "../storage/command.ts";
import { MemoryStateMachine } from "../storage/memory_sm.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

async function compare(seed: number, steps: number): Promise<Record<string, number>> {
  const rng = new Prng(seed);
  const sim = new SimKv();
  const ids: number[] = [0, 99_999];
  const lastSeq = new Map<number, { seq: number; key: string; value: string; del: boolean }>();
  const idle = rng.pick([5, 20, 1e6]);
  const max = rng.pick([1, 2, 3, 50]);
  const counts: Record<string, number> = {};
  let clock = 1;
  /** One random command for both machines (a registration only when `register`). */
  const gen = (register: boolean): [Uint8Array, Uint8Array] => {
    let simCmd: Uint8Array, realCmd: Uint8Array;
    if (register) {
      simCmd = registerCommand(idle, max, clock);
      realCmd = encodeCommand(registerSessionCommand(idle, max, clock));
    } else {
      const key = "k" + rng.int(2);
      const value = String(rng.int(5));
      const del = rng.chance(0.2);
      const time = rng.chance(0.8) ? clock : undefined;
      if (rng.chance(0.1)) {
        simCmd = encodeSim({ kind: del ? "delete" : "put", time, key, value: del ? "" : value });
        realCmd = encodeCommand(
          del
            ? deleteCommand(enc.encode(key), undefined, time)
            : putCommand(enc.encode(key), enc.encode(value), undefined, time),
        );
      } else {
        const id = rng.pick(ids);
        const last = lastSeq.get(id);
        // A new seq, a retry of the last command, or the last seq (or one below) reused.
        const choice = rng.int(4);
        const seq = !last
          ? rng.range(1, 2)
          : choice < 2
          ? last.seq + 1
          : choice === 2
          ? last.seq
          : Math.max(1, last.seq - 1);
        const retry = last && choice === 2 && rng.chance(0.7);
        const c = retry ? last : { seq, key, value, del };
        if (!retry && choice < 2) lastSeq.set(id, { seq, key, value, del });
        simCmd = encodeSim({
          kind: c.del ? "delete" : "put",
          session: { id, seq },
          time,
          key: c.key,
          value: c.del ? "" : c.value,
        });
        const session = { clientId: BigInt(id), seq };
        realCmd = encodeCommand(
          c.del
            ? deleteCommand(enc.encode(c.key), session, time)
            : putCommand(enc.encode(c.key), enc.encode(c.value), session, time),
        );
      }
    }
    return [simCmd!, realCmd!];
  };
  let real = new MemoryStateMachine();
  for (let index = 1; index <= steps; index++) {
    clock = Math.max(1, clock + rng.range(-3, 8));
    // A batch entry of 2 to 4 client writes (never a registration), or one command.
    const parts = rng.chance(0.25) ? rng.range(2, 4) : 1;
    const cmds = parts === 1
      ? [gen(rng.chance(0.2))]
      : Array.from({ length: parts }, () => gen(false));
    const simEntry = parts === 1 ? cmds[0][0] : encodeSimBatch(cmds.map((c) => c[0]));
    const realEntry = parts === 1 ? cmds[0][1] : encodeBatch(cmds.map((c) => c[1]));
    const simOut = sim.applyEntry(index, simEntry);
    const [realOut] = await real.apply([{ index, data: realEntry }]);
    const as = Array.isArray(simOut) ? simOut : [simOut];
    const bs = (Array.isArray(realOut) ? realOut : [realOut]) as {
      ok: boolean;
      error?: string;
      sessionId?: bigint;
    }[];
    assert.equal(as.length, bs.length);
    if (parts > 1) counts.batchEntries = (counts.batchEntries ?? 0) + 1;
    for (let j = 0; j < as.length; j++) {
      const a = as[j], b = bs[j];
      const whatPart = `seed ${seed} index ${index} part ${j}`;
      assert.equal(
        a.ok,
        b.ok,
        `${whatPart}: ok ${a.ok} vs ${JSON.stringify(b, (_k, v) => String(v))}`,
      );
      assert.equal(a.error, b.ok ? undefined : b.error, whatPart);
      if (b.sessionId !== undefined) {
        assert.equal(BigInt(a.sessionId!), b.sessionId, whatPart);
        ids.push(a.sessionId!);
      }
      const kind = a.ok ? (a.duplicate ? "duplicate" : "applied") : a.error!;
      counts[kind] = (counts[kind] ?? 0) + 1;
    }
    const what = `seed ${seed} index ${index}`;
    for (const k of ["k0", "k1"]) {
      const v = await real.get(enc.encode(k));
      assert.equal(sim.get(k), v === undefined ? null : dec.decode(v), `${what}: ${k}`);
    }
    assert.equal(sim.sessionCount, real.sessionCount(), `${what}: session count`);
    for (const id of ids) {
      assert.equal(sim.hasSession(id), (await real.session(BigInt(id))) !== undefined, what);
    }
    // A replica that installs a snapshot (or reopens) must keep answering alike: the order of
    // use of the sessions is rebuilt from their records.
    if (rng.chance(0.05)) {
      const data = await real.snapshot();
      real = new MemoryStateMachine();
      await real.restore(data, index);
      counts.restores = (counts.restores ?? 0) + 1;
    }
  }
  return counts;
}

Deno.test("the simulator's session model answers as storage/kv_core.ts does", async () => {
  const total: Record<string, number> = {};
  for (let seed = 1; seed <= 60; seed++) {
    for (const [k, n] of Object.entries(await compare(seed, 150))) total[k] = (total[k] ?? 0) + n;
  }
  // Every kind of answer was compared, many times.
  const kinds = ["applied", "duplicate", "session_expired", "session_seq", "bad_session"];
  for (const k of [...kinds, "batchEntries", "restores"]) {
    assert.ok((total[k] ?? 0) > 50, `only ${total[k] ?? 0} answers of kind ${k}`);
  }
});

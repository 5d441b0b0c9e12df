/**
 * The simulator's state machine (raft/sim/kv.ts, a synchronous model both Raft simulations run)
 * against the real one (storage/kv_core.ts through the memory backend): the same random command
 * sequences — registrations with small tables and short idle times, writes under live, expired,
 * evicted, unknown and 0 session ids, retried and reused seqs, clocks that go back — must give the
 * same answers (refusal kind, session ids, values) and the same session table. Lives under tests/
 * because raft/ must not import storage/.
 */
import assert from "node:assert/strict";
import { encodeCommand as encodeSim, registerCommand, SimKv } from "../raft/sim/kv.ts";
import { Prng } from "../raft/sim/prng.ts";
import {
  deleteCommand,
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
  const real = new MemoryStateMachine();
  const ids: number[] = [0, 99_999];
  const lastSeq = new Map<number, { seq: number; key: string; value: string; del: boolean }>();
  const idle = rng.pick([5, 20, 1e6]);
  const max = rng.pick([1, 2, 3, 50]);
  const counts: Record<string, number> = {};
  let clock = 1;
  for (let index = 1; index <= steps; index++) {
    clock = Math.max(1, clock + rng.range(-3, 8));
    let simCmd: Uint8Array, realCmd: Uint8Array;
    if (rng.chance(0.2)) {
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
    const a = sim.apply(index, simCmd);
    const [b] = await real.apply([{ index, data: realCmd }]) as {
      ok: boolean;
      error?: string;
      sessionId?: bigint;
    }[];
    const what = `seed ${seed} index ${index}`;
    assert.equal(a.ok, b.ok, `${what}: ok ${a.ok} vs ${JSON.stringify(b, (_k, v) => String(v))}`);
    assert.equal(a.error, b.ok ? undefined : b.error, what);
    if (b.sessionId !== undefined) {
      assert.equal(BigInt(a.sessionId!), b.sessionId, what);
      ids.push(a.sessionId!);
    }
    const kind = a.ok ? (a.duplicate ? "duplicate" : "applied") : a.error!;
    counts[kind] = (counts[kind] ?? 0) + 1;
    for (const k of ["k0", "k1"]) {
      const v = await real.get(enc.encode(k));
      assert.equal(sim.get(k), v === undefined ? null : dec.decode(v), `${what}: ${k}`);
    }
    assert.equal(sim.sessionCount, real.sessionCount(), `${what}: session count`);
    for (const id of ids) {
      assert.equal(sim.hasSession(id), (await real.session(BigInt(id))) !== undefined, what);
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
  for (const k of ["applied", "duplicate", "session_expired", "session_seq", "bad_session"]) {
    assert.ok((total[k] ?? 0) > 50, `only ${total[k] ?? 0} answers of kind ${k}`);
  }
});

/**
 * Regression tests (review of a9ea805): batchable proposals queued while a pass's sync hangs time
 * out at the deadline of their propose call (they had none until proposed).
 */
import assert from "node:assert/strict";
import { TimeoutError } from "./errors.ts";
import { MemoryLogStore } from "./memory_log_store.ts";
import { type ProposalBatcher, RaftNode } from "./node.ts";
import { drainMicrotasks, Scheduler, VirtualClock } from "./sim/scheduler.ts";
import type { ApplyCommand, StateMachine } from "./state_machine.ts";

const enc = (s: string) => new TextEncoder().encode(s);
const dec = (b: Uint8Array) => new TextDecoder().decode(b);

class Sm implements StateMachine {
  applied = 0;
  apply(cmds: ApplyCommand[]): Promise<unknown[]> {
    const out: unknown[] = [];
    for (const c of cmds) {
      this.applied = c.index;
      const t = dec(c.data);
      out.push(t.startsWith("[") ? (JSON.parse(t) as string[]).map(() => "ok") : "ok");
    }
    return Promise.resolve(out);
  }
  snapshot(): Promise<Uint8Array> {
    return Promise.resolve(new Uint8Array());
  }
  restore(_d: Uint8Array, index: number): Promise<void> {
    this.applied = index;
    return Promise.resolve();
  }
  appliedIndex(): number {
    return this.applied;
  }
  close(): Promise<void> {
    return Promise.resolve();
  }
}

const batcher: ProposalBatcher = {
  encode: (parts) => enc(JSON.stringify(parts.map(dec))),
  maxBytes: 1 << 20,
  maxParts: 4096,
};

for (const batch of [false, true]) {
  Deno.test(`proposals made while a pass's sync hangs time out at their deadline (batch: ${batch})`, async () => {
    const sched = new Scheduler();
    const clock = new VirtualClock(sched);
    const advance = async (ms: number) => {
      const until = sched.now + ms;
      while (sched.runNext(until)) await drainMicrotasks();
      sched.now = until;
      await drainMicrotasks();
    };
    const log = new MemoryLogStore();
    const solo = await RaftNode.start({
      config: {
        id: 1,
        electionTick: 10,
        heartbeatTick: 1,
        maxSizePerMsg: 1 << 20,
        maxInflightMsgs: 64,
        maxInflightBytes: 0,
        snapshotChunkBytes: 64,
        checkQuorum: true,
        preVote: true,
      } as never,
      tickMs: 10,
      log,
      sm: new Sm(),
      transport: {
        start: () => Promise.resolve(),
        send: () => {},
        addPeer: () => {},
        removePeer: () => {},
        close: () => Promise.resolve(),
      },
      bootstrapVoters: [1],
      snapshotThreshold: 1000,
      clock,
      random: () => 0,
      batcher,
    });
    await advance(10 * 10 + 10);
    assert.equal(solo.status().role, "leader");
    const sync = log.sync.bind(log);
    let release!: () => void;
    const held = new Promise<void>((r) => release = r);
    log.sync = () => held.then(sync);
    // The first write starts a pass whose sync hangs (a disk stall).
    const first = solo.propose(enc("a=1"), { timeoutMs: 100, batch });
    first.catch(() => {});
    await drainMicrotasks();
    // Writes arriving while that pass awaits its sync.
    const outcomes: unknown[] = Array(20).fill("pending");
    for (let i = 0; i < 20; i++) {
      solo.propose(enc(`k${i}=v`), { timeoutMs: 100, batch }).then(
        () => outcomes[i] = "applied",
        (e) => outcomes[i] = e,
      );
    }
    await advance(500); // 5x their timeout
    const stuck = outcomes.filter((o) => !(o instanceof TimeoutError)).length;
    release();
    await advance(50);
    await solo.stop();
    assert.equal(stuck, 0, `${stuck} of 20 proposals still pending 500 ms after a 100 ms timeout`);
  });
}

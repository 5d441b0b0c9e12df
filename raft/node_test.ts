// Driver tests: three RaftNodes in one process over an in-memory transport.
import assert from "node:assert/strict";
import { ConfChangeApplyError, NotLeaderError, TimeoutError } from "./errors.ts";
import { encodeConfChange } from "./confchange_codec.ts";
import { MemoryLogStore } from "./memory_log_store.ts";
import { type ProposalBatcher, RaftNode, type RaftNodeOptions } from "./node.ts";
import { drainMicrotasks, Scheduler, VirtualClock } from "./sim/scheduler.ts";
import type { ApplyCommand, StateMachine } from "./state_machine.ts";
import type { MessageHandler, Transport } from "./transport.ts";
import {
  type ConfChange,
  ConfChangeType,
  EntryType,
  type MemberContext,
  type Message,
  message,
  MessageType,
  type NodeId,
  type SnapshotMeta,
} from "./types.ts";

const enc = (s: string) => new TextEncoder().encode(s);
const dec = (b: Uint8Array) => new TextDecoder().decode(b);

/** A key/value state machine test double: commands are "key=value". */
class KvSm implements StateMachine {
  data = new Map<string, string>();
  applied = 0;
  closed = false;
  appliedIndex(): number {
    return this.applied;
  }
  apply(cmds: ApplyCommand[]): Promise<unknown[]> {
    const out: unknown[] = [];
    for (const c of cmds) {
      if (c.index <= this.applied) throw new Error(`index ${c.index} applied twice`);
      this.applied = c.index;
      if (c.data.length === 0) {
        out.push(null);
        continue;
      }
      const text = dec(c.data);
      if (text.startsWith("[")) {
        // A batch entry (jsonBatcher): one result per part.
        out.push((JSON.parse(text) as string[]).map((part) => this.set(part)));
        continue;
      }
      out.push(this.set(text));
    }
    return Promise.resolve(out);
  }
  private set(cmd: string): string | null {
    const [k, v] = cmd.split("=");
    const old = this.data.get(k) ?? null;
    this.data.set(k, v);
    return old;
  }
  snapshot(): Promise<Uint8Array> {
    return Promise.resolve(enc([...this.data].map(([k, v]) => `${k}=${v}`).join("\n")));
  }
  restore(data: Uint8Array, index: number): Promise<void> {
    this.data.clear();
    for (const line of dec(data).split("\n")) {
      if (!line) continue;
      const [k, v] = line.split("=");
      this.data.set(k, v);
    }
    this.applied = index;
    return Promise.resolve();
  }
  close(): Promise<void> {
    this.closed = true;
    return Promise.resolve();
  }
}

/** A {@link KvSm} whose next apply (once `blockNext` is set) waits until `release()`. */
class GatedSm extends KvSm {
  blockNext = false;
  release: (() => void) | null = null;
  override apply(cmds: ApplyCommand[]): Promise<unknown[]> {
    if (!this.blockNext) return super.apply(cmds);
    this.blockNext = false;
    return new Promise((resolve) => {
      this.release = () => resolve(super.apply(cmds));
    });
  }
}

/** An in-process network with per-node isolation. */
class Hub {
  handlers = new Map<NodeId, MessageHandler>();
  down = new Set<NodeId>();
  transport(id: NodeId): Transport {
    return {
      start: (h) => {
        this.handlers.set(id, h);
        return Promise.resolve();
      },
      send: (msgs: Message[]) => {
        for (const m of msgs) {
          if (this.down.has(m.from) || this.down.has(m.to)) continue;
          setTimeout(() => {
            if (this.down.has(m.from) || this.down.has(m.to)) return;
            this.handlers.get(m.to)?.(m);
          }, 0);
        }
      },
      addPeer: () => {},
      removePeer: () => {},
      close: () => {
        this.handlers.delete(id);
        return Promise.resolve();
      },
    };
  }
}

interface Member {
  id: NodeId;
  node: RaftNode;
  log: MemoryLogStore;
  sm: KvSm;
}

const config = (id: NodeId) => ({
  id,
  electionTick: 10,
  heartbeatTick: 1,
  preVote: true,
  checkQuorum: true,
  maxSizePerMsg: 1 << 20,
  maxInflightMsgs: 64,
  maxInflightBytes: 0,
  snapshotChunkBytes: 64,
});

/** The test double's batch entries: a JSON array of the parts' "key=value" strings. */
const jsonBatcher: ProposalBatcher = {
  encode: (parts) => enc(JSON.stringify(parts.map(dec))),
  maxBytes: 64,
  maxParts: 8,
};

async function startMember(
  hub: Hub,
  id: NodeId,
  voters: NodeId[] | undefined,
  log = new MemoryLogStore(),
  sm = new KvSm(),
  snapshotThreshold = 1000,
  extra: Partial<RaftNodeOptions> = {},
): Promise<Member> {
  const node = await RaftNode.start({
    config: config(id),
    tickMs: 5,
    log,
    sm,
    transport: hub.transport(id),
    bootstrapVoters: voters,
    snapshotThreshold,
    ...extra,
  });
  return { id, node, log, sm };
}

async function until(cond: () => boolean, what: string, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

async function cluster(n = 3, snapshotThreshold = 1000, batcher?: ProposalBatcher) {
  const hub = new Hub();
  const ids = Array.from({ length: n }, (_, i) => i + 1);
  const members = new Map<NodeId, Member>();
  for (const id of ids) {
    members.set(
      id,
      await startMember(hub, id, ids, undefined, undefined, snapshotThreshold, { batcher }),
    );
  }
  const leader = async () => {
    let l: Member | undefined;
    await until(() => {
      l = [...members.values()].find((m) => m.node.status().role === "leader");
      return !!l;
    }, "a leader");
    return l!;
  };
  const stopAll = async () => {
    for (const m of members.values()) await m.node.stop();
  };
  return { hub, members, leader, stopAll };
}

Deno.test("driver: three nodes elect a leader and apply proposals everywhere", async () => {
  const c = await cluster();
  try {
    const l = await c.leader();
    assert.equal(await l.node.propose(enc("a=1")), null);
    assert.equal(await l.node.propose(enc("a=2")), "1", "resolves with the apply result");
    await until(() => [...c.members.values()].every((m) => m.sm.data.get("a") === "2"), "apply");
  } finally {
    await c.stopAll();
  }
});

Deno.test("driver: many concurrent proposals share log syncs (group commit)", async () => {
  const c = await cluster();
  try {
    const l = await c.leader();
    const before = l.log.syncCount;
    const ps = [];
    for (let i = 0; i < 500; i++) ps.push(l.node.propose(enc(`k${i}=${i}`)));
    await Promise.all(ps);
    const syncs = l.log.syncCount - before;
    assert.ok(syncs < 50, `expected batching, got ${syncs} syncs for 500 proposals`);
    assert.equal(l.sm.data.size, 500);
  } finally {
    await c.stopAll();
  }
});

Deno.test("driver: batchable proposals made together share entries within the batcher's bounds, each answered with its own result, in order", async () => {
  const c = await cluster(3, 1000, jsonBatcher);
  try {
    const l = await c.leader();
    // Settle: the leader's no-op and anything before are applied.
    await l.node.propose(enc("warm=1"));
    const first = l.log.lastIndex() + 1;
    const ps: Promise<unknown>[] = [];
    // 40 writes of 10 keys: each answer is the value the write before it left.
    for (let i = 0; i < 40; i++) ps.push(l.node.propose(enc(`k${i % 10}=${i}`), { batch: true }));
    // Larger than maxBytes: an entry of its own, after the ones queued before it.
    const big = "b=" + "x".repeat(80);
    ps.push(l.node.propose(enc(big), { batch: true }));
    // Not batchable: proposed after everything queued before it (it sees k0=30).
    ps.push(l.node.propose(enc("k0=plain")));
    const got = await Promise.all(ps);
    const want: (string | null)[] = [];
    for (let i = 0; i < 40; i++) want.push(i < 10 ? null : String(i - 10));
    assert.deepEqual(got, [...want, null, "30"]);
    const ents = l.log.entries(first, l.log.lastIndex() + 1, Infinity);
    const texts = ents.map((e) => dec(e.data));
    assert.equal(texts.at(-1), "k0=plain");
    assert.equal(texts.at(-2), big);
    const batches = texts.slice(0, -2).map((t) => JSON.parse(t) as string[]);
    assert.deepEqual(batches.flat(), Array.from({ length: 40 }, (_, i) => `k${i % 10}=${i}`));
    for (const b of batches) {
      assert.ok(b.length >= 2 && b.length <= jsonBatcher.maxParts, `${b.length} parts`);
      const bytes = b.reduce((n, p) => n + enc(p).length, 0);
      assert.ok(bytes <= jsonBatcher.maxBytes, `${bytes} bytes in one entry`);
    }
    assert.ok(batches.length <= 10, `${batches.length} entries for 40 proposals`);
    await until(
      () => [...c.members.values()].every((m) => m.sm.data.get("k0") === "plain"),
      "followers apply the batches",
    );
    for (const m of c.members.values()) assert.equal(m.sm.data.get("k9"), "39");
    // A follower refuses at once, batchable or not.
    const f = [...c.members.values()].find((m) => m !== l)!;
    await assert.rejects(f.node.propose(enc("x=1"), { batch: true }), NotLeaderError);
    // Queued proposals are refused when the node stops before proposing them.
    const late = l.node.propose(enc("late=1"), { batch: true });
    const stopping = l.node.stop();
    await assert.rejects(late);
    await stopping;
  } finally {
    await c.stopAll();
  }
});

for (const batch of [false, true]) {
  // Regression (review of a9ea805): queued writes were refused once the transfer began.
  Deno.test(`driver: a write proposed just before transferLeader is not dropped (batch: ${batch})`, async () => {
    const c = await cluster(3, 1000, jsonBatcher);
    try {
      const l = await c.leader();
      await l.node.propose(enc("warm=1"));
      const target = [...c.members.values()].find((m) => m !== l)!;
      const w = l.node.propose(enc("k=1"), { batch }).then(() => "applied", (e) => e);
      const t = l.node.transferLeader(target.id, { timeoutMs: 5000 }).catch((e) => e);
      assert.equal(await w, "applied");
      await t;
    } finally {
      await c.stopAll();
    }
  });
}

Deno.test("driver: a follower refuses proposals with NotLeaderError naming the leader", async () => {
  const c = await cluster();
  try {
    const l = await c.leader();
    const f = [...c.members.values()].find((m) => m !== l)!;
    await until(() => f.node.status().lead === l.id, "follower knows the leader");
    await assert.rejects(
      f.node.propose(enc("x=1")),
      (e: unknown) => e instanceof NotLeaderError && e.leaderId === l.id,
    );
  } finally {
    await c.stopAll();
  }
});

Deno.test("driver: readIndex on leader and followers observes every completed write", async () => {
  const c = await cluster();
  try {
    const l = await c.leader();
    await l.node.propose(enc("r=42"));
    for (const m of c.members.values()) {
      await m.node.readIndex();
      assert.equal(m.sm.data.get("r"), "42", `node ${m.id} reads its own state after readIndex`);
    }
    // Many reads at once are batched.
    const f = [...c.members.values()].find((m) => m !== l)!;
    await Promise.all(Array.from({ length: 200 }, () => f.node.readIndex()));
  } finally {
    await c.stopAll();
  }
});

Deno.test("driver: a node restarts from its log and replays into a fresh state machine", async () => {
  const c = await cluster();
  try {
    const l = await c.leader();
    for (let i = 0; i < 20; i++) await l.node.propose(enc(`k${i}=${i}`));
    const f = [...c.members.values()].find((m) => m !== l)!;
    await until(() => f.sm.data.size === 20, "follower applied");
    await f.node.stop();
    const restarted = await startMember(c.hub, f.id, [1, 2, 3], f.log.crash(), new KvSm());
    c.members.set(f.id, restarted);
    await until(() => restarted.sm.data.size === 20, "replayed after restart");
    assert.equal(restarted.sm.data.get("k7"), "7");
    await l.node.propose(enc("after=1"));
    await until(() => restarted.sm.data.get("after") === "1", "new entries after restart");
  } finally {
    await c.stopAll();
  }
});

Deno.test("driver: a restart with a durable state machine does not re-apply entries", async () => {
  const c = await cluster();
  try {
    const l = await c.leader();
    for (let i = 0; i < 10; i++) await l.node.propose(enc(`k${i}=${i}`));
    const f = [...c.members.values()].find((m) => m !== l)!;
    await until(() => f.sm.data.size === 10, "follower applied");
    await f.node.stop();
    f.sm.closed = false;
    const applied = f.sm.applied;
    const restarted = await startMember(c.hub, f.id, [1, 2, 3], f.log.crash(), f.sm);
    c.members.set(f.id, restarted);
    await l.node.propose(enc("more=1"));
    await until(() => restarted.sm.data.get("more") === "1", "new entries after restart");
    assert.ok(restarted.sm.applied > applied);
  } finally {
    await c.stopAll();
  }
});

Deno.test("driver: snapshots compact the log and a new member joins via snapshot, learner first", async () => {
  const c = await cluster(3, 10);
  try {
    const l = await c.leader();
    for (let i = 0; i < 40; i++) await l.node.propose(enc(`k${i}=${i}`));
    await until(() => l.node.status().snapshotIndex > 0, "leader snapshot");
    assert.ok(l.log.firstIndex() > 1, "log compacted");
    const m4 = await startMember(c.hub, 4, undefined);
    c.members.set(4, m4);
    await l.node.addMember(4, enc("addr4"), { timeoutMs: 10_000 });
    await until(() => m4.sm.data.size === 40, "new member has the data");
    const st = l.node.status();
    assert.deepEqual(st.conf.voters, [1, 2, 3, 4]);
    assert.deepEqual(st.conf.learners, []);
    assert.ok(m4.log.snapshotMeta().index > 0, "joined through a snapshot");
    await l.node.propose(enc("z=9"));
    await until(() => m4.sm.data.get("z") === "9", "replication to the new voter");
  } finally {
    await c.stopAll();
  }
});

Deno.test("driver: removeMember and transferLeader", async () => {
  const c = await cluster();
  try {
    const l = await c.leader();
    const others = [...c.members.values()].filter((m) => m !== l);
    await l.node.transferLeader(others[0].id, { timeoutMs: 5000 });
    const nl = others[0];
    await until(() => nl.node.status().role === "leader", "new leader");
    await nl.node.removeMember(l.id);
    assert.deepEqual(nl.node.status().conf.voters, [others[0].id, others[1].id].sort());
    await l.node.stop();
    c.members.delete(l.id);
    await nl.node.propose(enc("two=2"));
  } finally {
    await c.stopAll();
  }
});

Deno.test("driver: proposals time out without a quorum", async () => {
  const c = await cluster();
  try {
    const l = await c.leader();
    for (const m of c.members.values()) if (m !== l) c.hub.down.add(m.id);
    await assert.rejects(l.node.propose(enc("x=1"), { timeoutMs: 30 }), (e: unknown) => {
      return e instanceof TimeoutError || e instanceof NotLeaderError;
    });
  } finally {
    c.hub.down.clear();
    await c.stopAll();
  }
});

Deno.test("driver: stop closes the log, the state machine and the transport", async () => {
  const c = await cluster(1);
  const m = c.members.get(1)!;
  await c.leader();
  await m.node.stop();
  assert.equal(m.sm.closed, true);
  assert.equal(c.hub.handlers.has(1), false);
});

Deno.test("driver: a storage failure halts the node and fails waiting requests at once", async () => {
  const c = await cluster(1);
  try {
    const m = c.members.get(1)!;
    await c.leader();
    m.log.sync = () => Promise.reject(new Error("disk on fire"));
    await assert.rejects(m.node.propose(enc("x=1"), { timeoutMs: 5000 }), /disk on fire/);
    await assert.rejects(m.node.propose(enc("y=1")), /disk on fire/);
    // A halted node steps nothing more: incoming traffic is not buffered without bound.
    const raft = m.node.rawNode.raft;
    const before = raft.msgs.length;
    for (let i = 0; i < 1000; i++) {
      c.hub.handlers.get(1)?.(
        message({ type: MessageType.Heartbeat, from: 2, to: 1, term: raft.term + 1 }),
      );
    }
    await new Promise((r) => setTimeout(r, 20));
    assert.equal(raft.msgs.length, before, "messages stepped into a halted node");
    assert.ok(m.node.failure instanceof Error);
  } finally {
    await c.stopAll();
  }
});

Deno.test("RaftNode takes its ticks and deadlines from the injected clock", async () => {
  const sched = new Scheduler();
  const clock = new VirtualClock(sched);
  const silent: Transport = {
    start: () => Promise.resolve(),
    send: () => {},
    addPeer: () => {},
    removePeer: () => {},
    close: () => Promise.resolve(),
  };
  const advance = async (ms: number) => {
    const until = sched.now + ms;
    while (sched.runNext(until)) await drainMicrotasks();
    sched.now = until;
    await drainMicrotasks();
  };
  // A member of a three-voter cluster alone: it can never win, so reads wait for their deadline.
  const lonely = await RaftNode.start({
    config: config(1),
    tickMs: 10,
    log: new MemoryLogStore(),
    sm: new KvSm(),
    transport: silent,
    bootstrapVoters: [1, 2, 3],
    snapshotThreshold: 1000,
    clock,
    random: () => 0.5,
  });
  const res: { v: string | Error } = { v: "pending" };
  lonely.readIndex({ timeoutMs: 200 }).then(() => res.v = "served", (e) => res.v = e);
  await advance(199);
  assert.equal(res.v, "pending", "the deadline is virtual: nothing happens before 200 ms");
  await advance(2);
  const got = res.v as unknown;
  assert.ok(got instanceof NotLeaderError, `got ${got}`);
  await lonely.stop();
  assert.equal(clock.pending(), 0, "stop() cleared the tick interval");

  // A single voter elects itself only once virtual time passes its election timeout.
  const clock2 = new VirtualClock(sched);
  const solo = await RaftNode.start({
    config: config(1),
    tickMs: 10,
    log: new MemoryLogStore(),
    sm: new KvSm(),
    transport: silent,
    bootstrapVoters: [1],
    snapshotThreshold: 1000,
    clock: clock2,
    random: () => 0,
  });
  await drainMicrotasks();
  assert.notEqual(solo.status().role, "leader");
  await advance(10 * 10 + 10);
  assert.equal(solo.status().role, "leader");
  const put = solo.propose(enc("a=1"));
  await advance(0);
  assert.equal(await put, null);
  await solo.stop();
});

/** A one-voter node on a virtual clock, elected leader; `holdSyncs()` makes the log's syncs hang
 * until the returned release is called (a disk stall). */
async function soloOnVirtualClock(extra: Partial<RaftNodeOptions> = {}) {
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
    config: config(1),
    tickMs: 10,
    log,
    sm: new KvSm(),
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
    ...extra,
  });
  await advance(10 * 10 + 10);
  assert.equal(solo.status().role, "leader");
  const holdSyncs = () => {
    const sync = log.sync.bind(log);
    let release!: () => void;
    const held = new Promise<void>((r) => release = r);
    log.sync = () => held.then(sync);
    return release;
  };
  return { clock, advance, solo, holdSyncs };
}

Deno.test("requests carry deadlines, not a timer each: 50 stuck proposals time out together on the tick after their deadline", async () => {
  const { clock, advance, solo, holdSyncs } = await soloOnVirtualClock();
  // The log's sync hangs: nothing proposed from now on commits.
  const release = holdSyncs();
  const outcomes: unknown[] = Array(50).fill("pending");
  for (let i = 0; i < 50; i++) {
    solo.propose(enc(`k${i}=v`), { timeoutMs: 100 }).then(
      () => outcomes[i] = "applied",
      (e) => outcomes[i] = e,
    );
  }
  await drainMicrotasks();
  assert.equal(clock.pending(), 1, "the tick interval is the node's only timer");
  await advance(99);
  assert.equal(
    outcomes.filter((o) => o !== "pending").length,
    0,
    "nothing times out before its deadline",
  );
  await advance(11); // the first tick at or after the deadline
  assert.ok(
    outcomes.every((o) => o instanceof TimeoutError),
    `all timed out: ${outcomes.filter((o) => !(o instanceof TimeoutError)).slice(0, 3)}`,
  );
  release();
  await advance(20);
  await solo.stop();
});

for (const batch of [false, true]) {
  // Regression (review of a9ea805): queued batchable proposals had no deadline until proposed.
  Deno.test(`proposals made while a pass's sync hangs time out at their deadline (batch: ${batch})`, async () => {
    const { advance, solo, holdSyncs } = await soloOnVirtualClock({ batcher: jsonBatcher });
    const release = holdSyncs();
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

/** A transport to one scripted peer: records what the node sends, delivers what the test says. */
class ScriptedPeer implements Transport {
  sent: Message[] = [];
  handler: MessageHandler | null = null;
  start(h: MessageHandler): Promise<void> {
    this.handler = h;
    return Promise.resolve();
  }
  send(msgs: Message[]): void {
    this.sent.push(...msgs);
  }
  deliver(m: Message): void {
    this.handler?.(m);
  }
  addPeer(): void {}
  removePeer(): void {}
  close(): Promise<void> {
    this.handler = null;
    return Promise.resolve();
  }
}

/** Starts node 2 of {1, 2} as a follower of a scripted leader 1 at term 5. */
async function scriptedFollower() {
  const peer = new ScriptedPeer();
  const node = await RaftNode.start({
    config: { ...config(2), preVote: false, electionTick: 1000 },
    tickMs: 5,
    log: new MemoryLogStore(),
    sm: new KvSm(),
    transport: peer,
    bootstrapVoters: [1, 2],
    snapshotThreshold: 1000,
  });
  peer.deliver(message({ type: MessageType.Heartbeat, from: 1, to: 2, term: 5, commit: 1 }));
  await until(() => node.status().lead === 1, "follower knows the scripted leader");
  return { peer, node };
}

Deno.test("driver: a ReadIndexResp for a read of a previous incarnation does not answer a new read", async () => {
  // Incarnation 1 forwards a read to the leader, then stops before the answer arrives.
  const a = await scriptedFollower();
  a.node.readIndex({ timeoutMs: 60_000 }).catch(() => {});
  await until(() => a.peer.sent.some((m) => m.type === MessageType.ReadIndex), "forwarded read");
  const oldCtx = a.peer.sent.find((m) => m.type === MessageType.ReadIndex)!.context;
  await a.node.stop();
  // Incarnation 2 (same id) issues its first read; the old answer arrives (TCP keeps frames
  // queued through a reconnect) with an index confirmed before this read began.
  const b = await scriptedFollower();
  try {
    let done = false;
    const read = b.node.readIndex({ timeoutMs: 60_000 }).then(() => done = true);
    await until(() => b.peer.sent.some((m) => m.type === MessageType.ReadIndex), "second read");
    const newCtx = b.peer.sent.find((m) => m.type === MessageType.ReadIndex)!.context;
    b.peer.deliver(message({
      type: MessageType.ReadIndexResp,
      from: 1,
      to: 2,
      term: 5,
      index: 1,
      context: oldCtx,
    }));
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(done, false, "the old incarnation's answer must not serve the new read");
    b.peer.deliver(message({
      type: MessageType.ReadIndexResp,
      from: 1,
      to: 2,
      term: 5,
      index: 1,
      context: newCtx,
    }));
    await read;
    assert.equal(done, true);
  } finally {
    await b.node.stop();
  }
});

Deno.test("driver: a committed conf change that fails to apply halts the node", async () => {
  const lines: string[] = [];
  const logger = {
    debug() {},
    info() {},
    warn(msg: string) {
      lines.push(`warn ${msg}`);
    },
    error(msg: string, f?: Record<string, unknown>) {
      lines.push(`error ${msg} ${JSON.stringify(f)}`);
    },
  };
  const node = await RaftNode.start({
    config: config(1),
    tickMs: 5,
    log: new MemoryLogStore(),
    sm: new KvSm(),
    transport: new ScriptedPeer(),
    bootstrapVoters: [1],
    snapshotThreshold: 1000,
    logger,
  });
  try {
    await until(() => node.status().role === "leader", "leader");
    await node.propose(enc("a=1"));
    // A committed entry whose change does not apply here (it removes the last voter): written
    // directly, past the proposal-time validation, as a diverged configuration would be.
    const cc = { changes: [{ type: ConfChangeType.RemoveNode, nodeId: 1 }], context: enc("") };
    node.rawNode.raft.propose(encodeConfChange(cc), EntryType.ConfChange);
    node.campaign(); // schedules a pass
    await until(() => node.failure !== null, "the node halts");
    assert.ok(node.failure instanceof ConfChangeApplyError, String(node.failure));
    await assert.rejects(node.propose(enc("b=1")), ConfChangeApplyError);
    await assert.rejects(node.readIndex(), ConfChangeApplyError);
    assert.ok(lines.some((l) => l.startsWith("error") && l.includes("removed all voters")));
  } finally {
    await node.stop();
  }
});

Deno.test("driver: a snapshot stepped while a pass awaits its apply supersedes that pass", async () => {
  // Found by the driver simulation (raft/sim/driver_simulation.ts): messages are stepped while a
  // pass awaits the state machine; a snapshot restored by the core meanwhile already covers the
  // entries of that pass. Applying their conf change again failed (ConfChangeApplyError) and the
  // local snapshot at the old applied index read a compacted term (CompactedError): both halted
  // a healthy node.
  const sched = new Scheduler();
  const box: { handler: MessageHandler | null } = { handler: null };
  const transport: Transport = {
    start: (h) => {
      box.handler = h;
      return Promise.resolve();
    },
    send: () => {},
    addPeer: () => {},
    removePeer: () => {},
    close: () => Promise.resolve(),
  };
  const sm = new GatedSm();
  const errors: string[] = [];
  const node = await RaftNode.start({
    config: config(2),
    tickMs: 10,
    log: new MemoryLogStore(),
    sm,
    transport,
    bootstrapVoters: [1, 2, 3],
    snapshotThreshold: 1,
    clock: new VirtualClock(sched),
    random: () => 0.5,
    logger: {
      debug() {},
      info() {},
      warn() {},
      error: (msg, fields) => errors.push(`${msg} ${JSON.stringify(fields)}`),
    },
  });
  const cc = (changes: ConfChange["changes"]) =>
    encodeConfChange({ changes, context: new Uint8Array(0) });
  const ent = (index: number, data: Uint8Array) => ({
    index,
    term: 2,
    type: EntryType.ConfChange,
    data,
  });
  const step = async (m: Partial<Message> & Pick<Message, "type">) => {
    box.handler!(message({ from: 1, to: 2, term: 2, ...m }));
    await drainMicrotasks(40);
  };
  // Enter a joint configuration (applied), then leave it (its apply is held).
  await step({
    type: MessageType.App,
    index: 1,
    logTerm: 1,
    entries: [ent(2, cc([{ type: ConfChangeType.AddNode, nodeId: 4 }]))],
    commit: 2,
  });
  assert.equal(node.status().applied, 2);
  sm.blockNext = true;
  await step({
    type: MessageType.App,
    index: 2,
    logTerm: 2,
    entries: [ent(3, cc([]))],
    commit: 3,
  });
  assert.ok(sm.release, "the second apply is held");
  // Meanwhile the leader sends a snapshot at 10, past the held entries (conf: left joint).
  const data = enc("a=1");
  const conf = { voters: [1, 2, 3, 4], votersOutgoing: [], learners: [], learnersNext: [] };
  await step({
    type: MessageType.Snap,
    snapshot: {
      meta: { index: 10, term: 2, conf },
      offset: 0,
      total: data.length,
      data,
      done: true,
    },
  });
  sm.release!();
  await drainMicrotasks(100);
  assert.deepEqual(errors, [], "the node halted");
  assert.equal(node.status().applied, 10);
  assert.equal(sm.data.get("a"), "1");
  assert.deepEqual(node.status().conf.voters, [1, 2, 3, 4]);
  await node.stop();
});

Deno.test("driver: a follower answers heartbeats while its state machine is still applying", async () => {
  // Found by a bulk load of 1 GiB (bench/scale_bench.ts): applying a batch waited seconds for the
  // state machine's LSM compaction, and the heartbeat responses of the next pass waited with it;
  // the leader, hearing from no quorum for an election timeout, stepped down ~10 times.
  const peer = new ScriptedPeer();
  const sm = new GatedSm();
  const sched = new Scheduler();
  const node = await RaftNode.start({
    config: { ...config(2), preVote: false, electionTick: 1000 },
    tickMs: 5,
    log: new MemoryLogStore(),
    sm,
    transport: peer,
    bootstrapVoters: [1, 2],
    snapshotThreshold: 1000,
    clock: new VirtualClock(sched),
  });
  const step = async (m: Partial<Message> & Pick<Message, "type">) => {
    peer.deliver(message({ from: 1, to: 2, term: 5, ...m }));
    await drainMicrotasks(40);
  };
  await step({ type: MessageType.Heartbeat, commit: 1 });
  assert.equal(node.status().lead, 1);
  // An entry committed at once; its apply is held (the LSM waiting for compaction).
  sm.blockNext = true;
  await step({
    type: MessageType.App,
    index: 1,
    logTerm: 1,
    entries: [{ index: 2, term: 5, type: EntryType.Normal, data: enc("a=1") }],
    commit: 2,
  });
  assert.ok(sm.release, "the apply is held");
  peer.sent = [];
  for (let i = 0; i < 3; i++) await step({ type: MessageType.Heartbeat, commit: 2 });
  const resps = peer.sent.filter((m) => m.type === MessageType.HeartbeatResp);
  assert.equal(resps.length, 3, "every heartbeat is answered while the apply is held");
  assert.equal(node.status().applied, 1, "the apply is still held");
  sm.release!();
  await drainMicrotasks(100);
  assert.equal(node.status().applied, 2);
  assert.equal(sm.data.get("a"), "1");
  await node.stop();
});

const contexts = (cs: MemberContext[] | undefined) => (cs ?? []).map((c) => [c.id, dec(c.context)]);

/** Proposes until the leader's log no longer holds `index` (a lagging node needs a snapshot). */
async function compactPast(l: Member, index: number): Promise<void> {
  for (let i = 0; l.log.firstIndex() <= index; i++) {
    if (i > 500) throw new Error(`log not compacted past ${index}`);
    await l.node.propose(enc(`c${i}=${i}`));
  }
}

Deno.test("driver: a follower that catches up by snapshot gets the contexts of the members added meanwhile and drops those removed", async () => {
  const c = await cluster(3, 10);
  const restored: SnapshotMeta[] = [];
  try {
    const l = await c.leader();
    const fid = [...c.members.keys()].find((id) => id !== l.id)!;
    // Restart the follower with a callback (its log and state machine are kept).
    const old = c.members.get(fid)!;
    await old.node.stop();
    old.sm.closed = false;
    const f = await startMember(c.hub, fid, [1, 2, 3], old.log.crash(), old.sm, 10, {
      onSnapshotRestored: (meta) => restored.push(meta),
    });
    c.members.set(fid, f);
    await l.node.propose(enc("before=1"));
    await until(() => f.sm.data.get("before") === "1", "the follower is up to date");
    assert.deepEqual(contexts(f.node.memberContexts()), []);

    // Cut off while node 4 is added and the log is compacted past the addition.
    c.hub.down.add(fid);
    const m4 = await startMember(c.hub, 4, undefined);
    c.members.set(4, m4);
    await l.node.addMember(4, enc("addr4"), { timeoutMs: 10_000 });
    assert.deepEqual(contexts(l.node.memberContexts()), [[4, "addr4"]]);
    await compactPast(l, l.node.status().applied);
    assert.deepEqual(contexts(l.log.snapshotMeta().memberContexts), [[4, "addr4"]]);
    c.hub.down.delete(fid);
    await until(() => restored.length === 1, "the follower installs a snapshot");
    assert.deepEqual(restored[0].conf.voters, [1, 2, 3, 4]);
    assert.deepEqual(contexts(restored[0].memberContexts), [[4, "addr4"]]);
    assert.deepEqual(contexts(f.node.memberContexts()), [[4, "addr4"]]);
    assert.deepEqual(contexts(f.log.snapshotMeta().memberContexts), [[4, "addr4"]]);

    // Cut off again while node 4 is removed, past the removal.
    c.hub.down.add(fid);
    await l.node.removeMember(4, { timeoutMs: 10_000 });
    assert.deepEqual(contexts(l.node.memberContexts()), []);
    await compactPast(l, l.node.status().applied);
    c.hub.down.delete(fid);
    await until(() => restored.length === 2, "the follower installs a second snapshot");
    assert.deepEqual(restored[1].conf.voters, [1, 2, 3]);
    assert.deepEqual(contexts(restored[1].memberContexts), []);
    assert.deepEqual(contexts(f.node.memberContexts()), []);
    assert.deepEqual(f.node.status().conf.voters, [1, 2, 3]);
  } finally {
    await c.stopAll();
  }
});

Deno.test("driver: a restart rebuilds the member contexts from the snapshot and the conf changes after it", async () => {
  const c = await cluster(3, 10);
  try {
    const l = await c.leader();
    const m4 = await startMember(c.hub, 4, undefined);
    c.members.set(4, m4);
    await l.node.addMember(4, enc("addr4"), { timeoutMs: 10_000 });
    const fid = [...c.members.keys()].find((id) => id !== l.id && id !== 4)!;
    const restart = async (): Promise<Member> => {
      const m = c.members.get(fid)!;
      await until(() => m.node.status().applied >= l.node.status().applied, "caught up");
      await m.node.stop();
      m.sm.closed = false;
      const r = await startMember(c.hub, fid, [1, 2, 3], m.log.crash(), m.sm, 10);
      c.members.set(fid, r);
      return r;
    };
    // The addition is in the follower's own snapshot: the restart takes it from there.
    await compactPast(l, l.node.status().applied);
    let f = await restart();
    assert.ok(f.log.snapshotMeta().index > 0);
    assert.deepEqual(contexts(f.log.snapshotMeta().memberContexts), [[4, "addr4"]]);
    assert.deepEqual(contexts(f.node.memberContexts()), [[4, "addr4"]]);
    // The removal is applied (the state machine is durable) but after the snapshot: replayed
    // by the core at start without callbacks.
    await l.node.removeMember(4, { timeoutMs: 10_000 });
    f = await restart();
    assert.ok(f.log.snapshotMeta().index < f.node.status().applied);
    assert.deepEqual(f.node.status().conf.voters, [1, 2, 3]);
    assert.deepEqual(contexts(f.node.memberContexts()), []);
    // Re-added with another context: the newest one counts.
    await l.node.addMember(4, enc("addr4b"), { timeoutMs: 10_000 });
    f = await restart();
    assert.deepEqual(contexts(f.node.memberContexts()), [[4, "addr4b"]]);
  } finally {
    await c.stopAll();
  }
});

Deno.test("driver: snapshotBytes triggers a snapshot by applied bytes, at least the last snapshot's size", async () => {
  // With many commands per entry, an entry count says little about the log's size: 100 000
  // entries of batched 1 KiB puts grew a node's log by gigabytes between snapshots. The state
  // grows here (distinct keys), so the last snapshot's size soon exceeds snapshotBytes and the
  // trigger follows it: a snapshot never serializes more than the log grew since the last one.
  const hub = new Hub();
  const MIN = 4000;
  const m = await startMember(hub, 1, [1], undefined, undefined, 1_000_000, {
    snapshotBytes: MIN,
  });
  try {
    await until(() => m.node.status().role === "leader", "a leader");
    const v = "x".repeat(200);
    const bytesAt = new Map<number, number>(); // entry index -> its data's bytes
    let prevIdx = 0, prevSize = 0, snapshots = 0;
    const pending = (upTo: number) => {
      let b = 0;
      for (const [i, n] of bytesAt) if (i > prevIdx && i <= upTo) b += n;
      return b;
    };
    for (let i = 0; i < 150; i++) {
      const data = enc(`k${i}=${v}`);
      await m.node.propose(data);
      bytesAt.set(m.node.status().applied, data.length);
      const snapIdx = m.node.status().snapshotIndex;
      if (snapIdx !== prevIdx) {
        const due = Math.max(MIN, prevSize);
        const grown = pending(snapIdx);
        assert.ok(grown >= due, `snapshot at ${snapIdx} after ${grown} bytes (due at ${due})`);
        prevIdx = snapIdx;
        prevSize = m.log.snapshot().data.length;
        snapshots++;
      } else {
        // Taken within a few entries of becoming due (the snapshot itself is asynchronous).
        const due = Math.max(MIN, prevSize);
        assert.ok(
          pending(Infinity) < due + 3 * data.length,
          `no snapshot after ${pending(Infinity)} bytes`,
        );
      }
    }
    assert.ok(prevSize > 2 * MIN, `the state outgrew snapshotBytes (${prevSize})`);
    assert.ok(snapshots >= 3 && snapshots <= 8, `${snapshots} snapshots for ~31 KB of log`);
    assert.ok(m.log.firstIndex() > 1, "log compacted");
  } finally {
    await m.node.stop();
  }
});

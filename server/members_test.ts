import assert from "node:assert/strict";
import fc from "fast-check";
import { join } from "node:path";
import {
  AddressBook,
  decodeMemberContext,
  encodeMemberContext,
  type MemberAddrs,
  MemberContextError,
  MemberPeers,
} from "./members.ts";
import { RaftNode } from "../raft/node.ts";
import type { MessageHandler, Transport } from "../raft/transport.ts";
import { ConfChangeType, type Message, type NodeId, type SnapshotMeta } from "../raft/types.ts";
import { type OpenedStorage, openStorage } from "../storage/mod.ts";
import { MemoryNetwork, MemoryTransport } from "../transport/memory.ts";

Deno.test("member contexts round-trip and reject malformed bytes with a typed error", () => {
  fc.assert(
    fc.property(
      fc.record({
        id: fc.integer({ min: 0, max: 0xffffffff }),
        peer: fc.string({ maxLength: 40 }),
        client: fc.string({ maxLength: 40 }),
        http: fc.string({ maxLength: 40 }),
      }),
      (m) => {
        assert.deepEqual(decodeMemberContext(encodeMemberContext(m)), structuredClone(m));
      },
    ),
  );
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 40 }), (b) => {
      try {
        decodeMemberContext(b);
      } catch (e) {
        assert.ok(e instanceof MemberContextError);
      }
    }),
    { numRuns: 1000 },
  );
});

Deno.test("the address book keeps config addresses and persists learned ones", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const configured = [{ id: 1, peer: "h:1", client: "h:2", http: "h:3" }];
    const book = new AddressBook(configured, dir);
    book.learn({ id: 1, peer: "other:1", client: "other:2", http: "other:3" });
    book.learn({ id: 4, peer: "n4:1", client: "n4:2", http: "n4:3" });
    assert.equal(book.get(1)!.peer, "h:1", "config addresses win");
    assert.ok(await Deno.stat(join(dir, "members.json")));
    const again = new AddressBook(configured, dir);
    await again.load();
    assert.deepEqual(again.all().map((m) => m.id), [1, 4]);
    assert.equal(again.get(4)!.client, "n4:2");
    assert.equal(again.get(1)!.peer, "h:1");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("MemberPeers.reconcile learns contexts, adds every member (outgoing voters too), drops the rest", () => {
  const calls: string[] = [];
  const transport = {
    addPeer: (id: number, a: string) => calls.push(`+${id}@${a}`),
    removePeer: (id: number) => calls.push(`-${id}`),
  };
  const book = new AddressBook([
    { id: 1, peer: "p1", client: "c1", http: "h1" },
    { id: 2, peer: "p2", client: "c2", http: "h2" },
    { id: 3, peer: "p3", client: "c3", http: "h3" },
  ]);
  book.learn({ id: 5, peer: "p5", client: "c5", http: "h5" }); // removed since
  const peers = new Map(book.all().filter((m) => m.id !== 1).map((m) => [m.id, m.peer]));
  const mp = new MemberPeers({ self: 1, transport, peers, book });
  const ctx = (m: MemberAddrs) => ({ id: m.id, context: encodeMemberContext(m) });
  // An empty configuration (not joined yet) keeps the configured peers.
  mp.reconcile({ voters: [], votersOutgoing: [], learners: [], learnersNext: [] }, []);
  assert.deepEqual(calls, []);
  mp.reconcile({ voters: [1, 2, 4], votersOutgoing: [1, 2, 3], learners: [6], learnersNext: [] }, [
    ctx({ id: 4, peer: "p4", client: "c4", http: "h4" }),
    ctx({ id: 6, peer: "p6", client: "c6", http: "h6" }),
    ctx({ id: 2, peer: "other", client: "other", http: "other" }), // config addresses win
    { id: 7, context: new Uint8Array([9]) }, // unreadable: ignored
  ]);
  assert.deepEqual(calls, ["+4@p4", "+6@p6", "-5"]);
  assert.deepEqual([...mp.peers].sort(), [[2, "p2"], [3, "p3"], [4, "p4"], [6, "p6"]]);
  assert.equal(book.get(4)?.http, "h4");
  assert.equal(book.get(2)?.peer, "p2");
  calls.length = 0;
  mp.reconcile({ voters: [1, 2, 4], votersOutgoing: [], learners: [], learnersNext: [] }, []);
  assert.deepEqual(calls, ["-3", "-6"]);
});

Deno.test("MemberPeers.onConfChange keeps a removed voter a peer until the joint configuration is left", () => {
  const calls: string[] = [];
  const transport = {
    addPeer: (id: number, a: string) => calls.push(`+${id}@${a}`),
    removePeer: (id: number) => calls.push(`-${id}`),
  };
  const book = new AddressBook([1, 2, 3].map(addrs));
  const peers = new Map([[2, addrs(2).peer], [3, addrs(3).peer]]);
  const mp = new MemberPeers({ self: 1, transport, peers, book });
  const context = encodeMemberContext(addrs(4));
  mp.onConfChange(
    { changes: [{ type: ConfChangeType.AddLearner, nodeId: 4 }], context },
    { voters: [1, 2, 3], votersOutgoing: [], learners: [4], learnersNext: [] },
    5,
  );
  assert.deepEqual(calls, [`+4@${addrs(4).peer}`, `+4@${addrs(4).peer}`]);
  assert.deepEqual(book.get(4), addrs(4));
  calls.length = 0;
  // C(old = 1,2,3; new = 1,2): 3 still votes in the joint quorum.
  mp.onConfChange(
    { changes: [{ type: ConfChangeType.RemoveNode, nodeId: 3 }], context: new Uint8Array(0) },
    { voters: [1, 2], votersOutgoing: [1, 2, 3], learners: [4], learnersNext: [] },
    6,
  );
  assert.deepEqual(calls, []);
  mp.onConfChange(
    { changes: [], context: new Uint8Array(0) },
    { voters: [1, 2], votersOutgoing: [], learners: [4], learnersNext: [] },
    7,
  );
  assert.deepEqual(calls, ["-3"]);
  calls.length = 0;
  // A learner is removed at once (no joint quorum needs it).
  mp.onConfChange(
    { changes: [{ type: ConfChangeType.RemoveNode, nodeId: 4 }], context: new Uint8Array(0) },
    { voters: [1, 2], votersOutgoing: [], learners: [], learnersNext: [] },
    8,
  );
  assert.deepEqual(calls, ["-4"]);
  assert.deepEqual([...mp.peers.keys()], [2]);
});

/** A transport that records the peers it is given (on top of a real memory transport). */
class RecordingTransport implements Transport {
  readonly peers: Map<NodeId, string>;
  constructor(readonly inner: MemoryTransport, initial: Map<NodeId, string>) {
    this.peers = new Map(initial);
  }
  start(h: MessageHandler): Promise<void> {
    return this.inner.start(h);
  }
  send(msgs: Message[]): void {
    this.inner.send(msgs);
  }
  addPeer(id: NodeId, address: string): void {
    this.peers.set(id, address);
    this.inner.addPeer(id, address);
  }
  removePeer(id: NodeId): void {
    this.peers.delete(id);
    this.inner.removePeer(id);
  }
  close(): Promise<void> {
    return this.inner.close();
  }
}

const addrs = (id: number): MemberAddrs => ({
  id,
  peer: `127.0.0.1:${17000 + id}`,
  client: `127.0.0.1:${18000 + id}`,
  http: `127.0.0.1:${19000 + id}`,
});

interface WiredNode {
  id: NodeId;
  node: RaftNode;
  book: AddressBook;
  transport: RecordingTransport;
  restored: SnapshotMeta[];
}

/** A Raft node wired to its address book and transport as server.ts wires them. */
async function startWired(
  net: MemoryNetwork,
  id: NodeId,
  storage: OpenedStorage,
  opts: { configured: MemberAddrs[]; bootstrap?: NodeId[]; dir?: string },
): Promise<WiredNode> {
  const book = new AddressBook(opts.configured, opts.dir);
  await book.load();
  const peers = new Map<NodeId, string>();
  for (const m of book.all()) if (m.id !== id) peers.set(m.id, m.peer);
  const transport = new RecordingTransport(
    new MemoryTransport({ id, listen: addrs(id).peer, peers, network: net }),
    peers,
  );
  const memberPeers = new MemberPeers({ self: id, transport, peers, book });
  const restored: SnapshotMeta[] = [];
  const node = await RaftNode.start({
    config: {
      id,
      electionTick: 10,
      heartbeatTick: 1,
      preVote: true,
      checkQuorum: true,
      maxSizePerMsg: 1 << 20,
      maxInflightMsgs: 64,
      maxInflightBytes: 0,
    },
    tickMs: 5,
    log: storage.log,
    sm: storage.sm,
    transport,
    bootstrapVoters: opts.bootstrap,
    snapshotThreshold: 10,
    onConfChange: (cc, conf, index) => memberPeers.onConfChange(cc, conf, index),
    onSnapshotRestored: (meta) => {
      restored.push(meta);
      memberPeers.onSnapshotRestored(meta);
    },
  });
  memberPeers.reconcile(node.status().conf, node.memberContexts());
  return { id, node, book, transport, restored };
}

async function until(what: string, cond: () => boolean, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

const put = (k: string) => {
  const key = new TextEncoder().encode(k);
  // storage/command.ts Put without a session: op 1, flags 0, uvarint key length, key, value.
  return new Uint8Array([1, 0, key.length, ...key, 1, 120]);
};

/** Writes through `l` until its log no longer holds `index` (lagging nodes need a snapshot). */
async function compactPast(l: WiredNode, index: number): Promise<void> {
  for (let i = 0; l.node.status().firstIndex <= index; i++) {
    if (i > 500) throw new Error(`log not compacted past ${index}`);
    await l.node.propose(put(`k${i}`));
  }
}

Deno.test("a node that catches up by snapshot learns the members added meanwhile and drops the removed ones from its transport; a restart does the same", async () => {
  const net = new MemoryNetwork();
  const dir = await Deno.makeTempDir({ prefix: "gokv-members-" });
  const configured = [1, 2, 3].map(addrs);
  const nodes = new Map<NodeId, WiredNode>();
  const stopAll = async () => {
    for (const n of nodes.values()) await n.node.stop().catch(() => {});
  };
  try {
    for (const id of [1, 2, 3]) {
      const storage = await openStorage(id === 3 ? "simplefile" : "memory", join(dir, `n${id}`));
      nodes.set(
        id,
        await startWired(net, id, storage, {
          configured,
          bootstrap: [1, 2, 3],
          dir: id === 3 ? join(dir, "n3") : undefined,
        }),
      );
    }
    // Node 3 must not lead: the test cuts it off.
    const n3 = nodes.get(3)!;
    const leaderId = () => [...nodes.values()].find((n) => n.node.status().role === "leader")?.id;
    await until("a leader", () => leaderId() !== undefined);
    if (leaderId() === 3) await n3.node.transferLeader(1);
    await until("a leader other than 3", () => leaderId() === 1 || leaderId() === 2);
    const l = nodes.get(leaderId()!)!;
    await l.node.propose(put("a"));
    await until("node 3 applies", () => n3.node.status().applied >= l.node.status().applied);

    // Node 4 (in no config file) is added while node 3 is cut off; the log is compacted.
    net.isolate(3, [1, 2, 4]);
    const n4 = await startWired(net, 4, await openStorage("memory", join(dir, "n4")), {
      configured: [...configured, addrs(4)],
    });
    nodes.set(4, n4);
    await l.node.addMember(4, encodeMemberContext(addrs(4)), { timeoutMs: 10_000 });
    await compactPast(l, l.node.status().applied);
    net.heal();
    await until("node 3 installs a snapshot", () => n3.restored.length === 1);
    assert.deepEqual(n3.restored[0].conf.voters, [1, 2, 3, 4]);
    assert.deepEqual(n3.book.get(4), addrs(4), "node 3 knows node 4's addresses");
    assert.equal(n3.transport.peers.get(4), addrs(4).peer, "node 3's transport has node 4");

    // Node 4 is removed while node 3 is cut off: the snapshot spans the removal.
    net.isolate(3, [1, 2, 4]);
    await l.node.removeMember(4, { timeoutMs: 10_000 });
    await compactPast(l, l.node.status().applied);
    net.heal();
    await until("node 3 installs a second snapshot", () => n3.restored.length === 2);
    assert.deepEqual(n3.restored[1].conf.voters, [1, 2, 3]);
    assert.deepEqual([...n3.transport.peers.keys()].sort(), [1, 2], "node 4 is no peer");

    // Added and removed again, this time seen by node 3 entry by entry (members.json keeps
    // node 4): after a restart (durable state machine, the removal applied but after the
    // snapshot) node 4 is no peer, though the transport is created from the address book.
    await l.node.addMember(4, encodeMemberContext(addrs(4)), { timeoutMs: 10_000 });
    await until("node 3 adds node 4", () => n3.transport.peers.has(4));
    await l.node.removeMember(4, { timeoutMs: 10_000 });
    await until("node 3 applies the removal", () => {
      const st = n3.node.status();
      return !st.conf.voters.includes(4) && st.applied >= l.node.status().applied;
    });
    await n3.node.stop();
    const again = await startWired(net, 3, await openStorage("simplefile", join(dir, "n3")), {
      configured,
      dir: join(dir, "n3"),
    });
    nodes.set(3, again);
    assert.ok(again.book.get(4), "members.json still lists node 4");
    assert.ok(again.node.status().applied > again.node.status().snapshotIndex);
    assert.deepEqual([...again.transport.peers.keys()].sort(), [1, 2], "no peer 4 after a restart");
  } finally {
    await stopAll();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
});

/**
 * One conformance suite, run unchanged against every transport kind.
 */
import assert from "node:assert/strict";
import {
  type ConfState,
  EntryType,
  type Message,
  message,
  MessageType,
  type NodeId,
} from "../raft/types.ts";
import { createTransport, type PeerTransport, TRANSPORT_KINDS, type TransportKind } from "./mod.ts";
import { waitFor } from "./test_util.ts";

interface TestNode {
  id: NodeId;
  t: PeerTransport;
  /** Every non-Unreachable message received, in order. */
  got: Message[];
  unreachable: NodeId[];
}

async function startNode(
  kind: TransportKind,
  id: NodeId,
  listen = "127.0.0.1:0",
  peers = new Map<NodeId, string>(),
): Promise<TestNode> {
  const t = createTransport(kind, {
    id,
    listen,
    peers,
    reconnectMinMs: 10,
    reconnectMaxMs: 100,
    callTimeoutMs: 2000,
  });
  const node: TestNode = { id, t, got: [], unreachable: [] };
  await t.start((m) => {
    if (m.type === MessageType.Unreachable) node.unreachable.push(m.from);
    else node.got.push(m);
  });
  return node;
}

/** Starts `n` nodes (ids 1..n) that know each other's addresses. */
async function cluster(kind: TransportKind, n: number): Promise<TestNode[]> {
  const nodes: TestNode[] = [];
  for (let i = 1; i <= n; i++) nodes.push(await startNode(kind, i));
  for (const a of nodes) for (const b of nodes) if (a !== b) a.t.addPeer(b.id, b.t.address);
  return nodes;
}

async function closeAll(nodes: TestNode[]): Promise<void> {
  await Promise.all(nodes.map((n) => n.t.close()));
}

function app(from: NodeId, to: NodeId, index: number): Message {
  return message({
    type: MessageType.App,
    from,
    to,
    term: 3,
    logTerm: 2,
    index,
    commit: index,
    entries: [{
      term: 3,
      index: index + 1,
      type: EntryType.Normal,
      data: new Uint8Array(100).fill(index & 0xff),
    }],
  });
}

const conf: ConfState = {
  voters: [1, 2, 3],
  votersOutgoing: [1, 2],
  learners: [4],
  learnersNext: [5],
};

for (const kind of TRANSPORT_KINDS) {
  Deno.test(`${kind}: delivers every field of a message intact`, async () => {
    const [a, b] = await cluster(kind, 2);
    try {
      const full = message({
        type: MessageType.App,
        from: 1,
        to: 2,
        term: 2 ** 53 - 1,
        logTerm: 7,
        index: 2 ** 40 + 5,
        commit: 99,
        reject: true,
        rejectHint: 12,
        context: new Uint8Array([9, 8, 7]),
        entries: [
          { term: 1, index: 1, type: EntryType.Normal, data: new Uint8Array(0) },
          { term: 1, index: 2, type: EntryType.ConfChange, data: new Uint8Array([1, 2, 3]) },
        ],
      });
      const snap = message({
        type: MessageType.Snap,
        from: 1,
        to: 2,
        term: 5,
        snapshot: {
          meta: {
            index: 100,
            term: 4,
            conf,
            memberContexts: [{ id: 5, context: new Uint8Array([5, 0, 5]) }],
          },
          offset: 10,
          total: 20,
          data: new Uint8Array([1, 2, 3, 4, 5]),
          done: false,
        },
      });
      a.t.send([full, snap]);
      await waitFor(() => b.got.length >= 2, 5000, "two messages");
      assert.deepStrictEqual(b.got, [full, snap]);
    } finally {
      await closeAll([a, b]);
    }
  });

  Deno.test(`${kind}: keeps per-peer order across many pipelined messages both ways`, async () => {
    const [a, b] = await cluster(kind, 2);
    try {
      const n = 2000;
      for (let i = 0; i < n; i += 100) {
        const batchA: Message[] = [];
        const batchB: Message[] = [];
        for (let j = i; j < i + 100; j++) {
          batchA.push(app(1, 2, j));
          batchB.push(app(2, 1, j));
        }
        a.t.send(batchA);
        b.t.send(batchB);
        await Promise.resolve();
      }
      await waitFor(() => a.got.length >= n && b.got.length >= n, 10000, "all messages");
      assert.deepStrictEqual(b.got.map((m) => m.index), Array.from({ length: n }, (_, i) => i));
      assert.deepStrictEqual(a.got.map((m) => m.index), Array.from({ length: n }, (_, i) => i));
      assert.ok(b.got.every((m) => m.from === 1 && m.to === 2 && m.entries[0].data.length === 100));
    } finally {
      await closeAll([a, b]);
    }
  });

  Deno.test(`${kind}: routes messages to the right peer among three nodes`, async () => {
    const nodes = await cluster(kind, 3);
    try {
      for (const s of nodes) {
        for (const r of nodes) {
          if (s !== r) {
            s.t.send([
              message({
                type: MessageType.Heartbeat,
                from: s.id,
                to: r.id,
                commit: s.id * 10 + r.id,
              }),
            ]);
          }
        }
      }
      await waitFor(() => nodes.every((n) => n.got.length >= 2), 5000, "heartbeats");
      for (const r of nodes) {
        assert.deepStrictEqual(
          r.got.map((m) => [m.from, m.commit]).sort(),
          nodes.filter((s) => s !== r).map((s) => [s.id, s.id * 10 + r.id]).sort(),
        );
      }
    } finally {
      await closeAll(nodes);
    }
  });

  Deno.test(`${kind}: streams a 20 MiB snapshot in 1 MiB chunks`, async () => {
    const [a, b] = await cluster(kind, 2);
    try {
      const total = 20 * 1024 * 1024;
      const chunk = 1024 * 1024;
      const data = new Uint8Array(total);
      for (let i = 0; i < total; i += 4096) data[i] = (i / 4096) & 0xff;
      const msgs: Message[] = [];
      for (let off = 0; off < total; off += chunk) {
        msgs.push(message({
          type: MessageType.Snap,
          from: 1,
          to: 2,
          term: 9,
          snapshot: {
            meta: { index: 5000, term: 8, conf },
            offset: off,
            total,
            data: data.subarray(off, off + chunk),
            done: off + chunk >= total,
          },
        }));
      }
      // A heartbeat after the stream must arrive after every chunk.
      msgs.push(message({ type: MessageType.Heartbeat, from: 1, to: 2, term: 9 }));
      a.t.send(msgs);
      await waitFor(() => b.got.length >= msgs.length, 20000, "snapshot chunks");
      assert.equal(b.got.at(-1)!.type, MessageType.Heartbeat);
      const got = new Uint8Array(total);
      let expect = 0;
      for (const m of b.got.slice(0, -1)) {
        const s = m.snapshot!;
        assert.equal(s.offset, expect);
        got.set(s.data, s.offset);
        expect += s.data.length;
        assert.equal(s.done, expect === total);
      }
      assert.equal(expect, total);
      assert.ok(got.every((v, i) => v === data[i]), "snapshot bytes differ");
    } finally {
      await closeAll([a, b]);
    }
  });

  Deno.test(`${kind}: sending to a down peer neither throws nor blocks, and delivery resumes when it returns`, async () => {
    const [a, b0] = await cluster(kind, 2);
    const addr = b0.t.address;
    await b0.t.close();
    let b: TestNode | null = null;
    try {
      const t0 = performance.now();
      for (let i = 0; i < 1000; i++) a.t.send([app(1, 2, i)]);
      assert.ok(performance.now() - t0 < 500, "send blocked");
      await waitFor(() => a.unreachable.includes(2), 5000, "unreachable report");
      b = await startNode(kind, 2, addr);
      const node = b;
      let i = 10_000;
      await waitFor(
        () => {
          a.t.send([app(1, 2, i++)]);
          return node.got.some((m) => m.index >= 10_000);
        },
        10000,
        "delivery after the peer came back",
      );
      // Once through, later messages arrive in order.
      const mark = i;
      a.t.send([app(1, 2, mark), app(1, 2, mark + 1)]);
      await waitFor(() => node.got.some((m) => m.index === mark + 1), 5000, "later messages");
      const idx = node.got.map((m) => m.index);
      assert.deepStrictEqual(idx, [...idx].sort((x, y) => x - y));
    } finally {
      await closeAll(b === null ? [a] : [a, b]);
    }
  });

  Deno.test(`${kind}: reconnects after the receiving peer restarts on the same port`, async () => {
    const [a, b0] = await cluster(kind, 2);
    let b = b0;
    try {
      a.t.send([app(1, 2, 1)]);
      await waitFor(() => b.got.length === 1, 5000, "first message");
      const addr = b.t.address;
      await b.t.close();
      b = await startNode(kind, 2, addr);
      const node = b;
      let i = 100;
      await waitFor(
        () => {
          a.t.send([app(1, 2, i++)]);
          return node.got.length > 0;
        },
        10000,
        "delivery after restart",
      );
      // The restarted peer can also answer over its own fresh connection.
      node.t.addPeer(1, a.t.address);
      node.t.send([message({ type: MessageType.AppResp, from: 2, to: 1, index: 7 })]);
      await waitFor(() => a.got.some((m) => m.type === MessageType.AppResp), 5000, "answer");
    } finally {
      await closeAll([a, b]);
    }
  });

  Deno.test(`${kind}: removePeer stops delivery and addPeer restores it`, async () => {
    const [a, b] = await cluster(kind, 2);
    try {
      a.t.removePeer(2);
      a.t.send([app(1, 2, 1)]);
      a.t.addPeer(2, b.t.address);
      a.t.send([app(1, 2, 2)]);
      await waitFor(() => b.got.length >= 1, 5000, "message after addPeer");
      assert.deepStrictEqual(b.got.map((m) => m.index), [2]);
    } finally {
      await closeAll([a, b]);
    }
  });

  Deno.test(`${kind}: local kinds, unknown peers and calls after close are ignored`, async () => {
    const [a, b] = await cluster(kind, 2);
    try {
      a.t.send([
        message({ type: MessageType.Hup, from: 1, to: 2 }),
        message({ type: MessageType.Beat, from: 1, to: 2 }),
        message({ type: MessageType.Vote, from: 1, to: 42 }),
        message({ type: MessageType.Vote, from: 1, to: 2, term: 4 }),
      ]);
      await waitFor(() => b.got.length >= 1, 5000, "vote");
      assert.deepStrictEqual(b.got.map((m) => [m.type, m.term]), [[MessageType.Vote, 4]]);
      await a.t.close();
      a.t.send([app(1, 2, 1)]);
      a.t.addPeer(3, "127.0.0.1:1");
      a.t.removePeer(2);
    } finally {
      await closeAll([a, b]);
    }
  });
}

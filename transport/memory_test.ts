import assert from "node:assert/strict";
import { type Message, message, MessageType, type NodeId } from "../raft/types.ts";
import { AddressInUseError } from "./errors.ts";
import { MemoryNetwork, MemoryTransport } from "./memory.ts";
import { waitFor } from "./test_util.ts";

async function pair(net: MemoryNetwork) {
  const got = new Map<NodeId, Message[]>([[1, []], [2, []]]);
  const a = new MemoryTransport({
    id: 1,
    listen: "node-a:1",
    peers: new Map([[2, "node-b:1"]]),
    network: net,
  });
  const b = new MemoryTransport({
    id: 2,
    listen: "node-b:1",
    peers: new Map([[1, "node-a:1"]]),
    network: net,
  });
  await a.start((m) => m.type !== MessageType.Unreachable && got.get(1)!.push(m));
  await b.start((m) => m.type !== MessageType.Unreachable && got.get(2)!.push(m));
  return { a, b, got };
}

const hb = (from: NodeId, to: NodeId, i: number) =>
  message({ type: MessageType.Heartbeat, from, to, commit: i });

Deno.test("memory network: a partition cuts both directions until healed", async () => {
  const net = new MemoryNetwork();
  const { a, b, got } = await pair(net);
  try {
    net.partition(1, 2);
    a.send([hb(1, 2, 1)]);
    b.send([hb(2, 1, 1)]);
    net.heal(1, 2);
    a.send([hb(1, 2, 2)]);
    b.send([hb(2, 1, 2)]);
    await waitFor(() => got.get(1)!.length + got.get(2)!.length >= 2, 2000, "after heal");
    assert.deepStrictEqual(got.get(2)!.map((m) => m.commit), [2]);
    assert.deepStrictEqual(got.get(1)!.map((m) => m.commit), [2]);
    assert.equal(net.stats.dropped, 2);
    net.isolate(2, [1, 3]);
    assert.ok(net.isPartitioned(1, 2) && net.isPartitioned(2, 1));
    net.heal();
    assert.ok(!net.isPartitioned(1, 2));
  } finally {
    await a.close();
    await b.close();
  }
});

Deno.test("memory network: drop rate loses about that share of messages, reproducibly", async () => {
  const run = async (seed: number) => {
    const net = new MemoryNetwork({ seed, dropRate: 0.3 });
    const { a, b, got } = await pair(net);
    try {
      for (let i = 0; i < 1000; i++) a.send([hb(1, 2, i)]);
      await waitFor(() => net.stats.delivered + net.stats.dropped >= 1000, 2000, "all routed");
      return got.get(2)!.map((m) => m.commit);
    } finally {
      await a.close();
      await b.close();
    }
  };
  const first = await run(7);
  assert.ok(first.length > 600 && first.length < 800, `delivered ${first.length}`);
  assert.deepStrictEqual(first, [...first].sort((x, y) => x - y));
  assert.deepStrictEqual(await run(7), first);
});

Deno.test("memory network: duplicates and reordering still deliver every message", async () => {
  const net = new MemoryNetwork({ seed: 3, duplicateRate: 0.2, reorderRate: 0.2 });
  const { a, b, got } = await pair(net);
  try {
    for (let i = 0; i < 300; i++) a.send([hb(1, 2, i)]);
    await waitFor(() => net.stats.delivered >= 300 + net.stats.duplicated, 3000, "all delivered");
    const seen = got.get(2)!.map((m) => m.commit);
    assert.ok(net.stats.duplicated > 20);
    assert.equal(seen.length, 300 + net.stats.duplicated);
    assert.deepStrictEqual(
      [...new Set(seen)].sort((x, y) => x - y),
      Array.from({ length: 300 }, (_, i) => i),
    );
    assert.notDeepStrictEqual(seen, [...seen].sort((x, y) => x - y), "expected some reordering");
  } finally {
    await a.close();
    await b.close();
  }
});

Deno.test("memory network: delay holds messages back but keeps their order", async () => {
  const net = new MemoryNetwork({ minDelayMs: 30, maxDelayMs: 60 });
  const { a, b, got } = await pair(net);
  try {
    const t0 = Date.now();
    for (let i = 0; i < 20; i++) a.send([hb(1, 2, i)]);
    await waitFor(() => got.get(2)!.length >= 20, 2000, "delayed messages");
    assert.ok(Date.now() - t0 >= 29);
    assert.deepStrictEqual(
      got.get(2)!.map((m) => m.commit),
      Array.from({ length: 20 }, (_, i) => i),
    );
    net.setFaults({});
    a.send([hb(1, 2, 99)]);
    await waitFor(() => got.get(2)!.length === 21, 2000, "undelayed message");
  } finally {
    await a.close();
    await b.close();
  }
});

Deno.test("memory network: an address in use is refused and a closed transport gets nothing", async () => {
  const net = new MemoryNetwork({ minDelayMs: 1000 });
  const { a, b, got } = await pair(net);
  try {
    const dup = new MemoryTransport({
      id: 3,
      listen: "node-a:1",
      peers: new Map(),
      network: net,
    });
    await assert.rejects(dup.start(() => {}), AddressInUseError);
    a.send([hb(1, 2, 1)]);
    await b.close(); // cancels the pending delivery (no timer left behind)
    assert.equal(got.get(2)!.length, 0);
    assert.equal(net.stats.dropped, 1);
  } finally {
    await a.close();
    await b.close();
  }
});

Deno.test("memory transport reports an unreachable peer once until it answers again", async () => {
  const net = new MemoryNetwork();
  const reports: NodeId[] = [];
  const a = new MemoryTransport({
    id: 1,
    listen: "h:1",
    peers: new Map([[2, "h:2"]]),
    network: net,
  });
  await a.start((m) => m.type === MessageType.Unreachable && reports.push(m.from));
  try {
    a.send([hb(1, 2, 1), hb(1, 2, 2)]);
    await waitFor(() => reports.length >= 1, 1000, "report");
    a.send([hb(1, 2, 3)]);
    await Promise.resolve();
    assert.deepStrictEqual(reports, [2]);
  } finally {
    await a.close();
  }
});

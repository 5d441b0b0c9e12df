import assert from "node:assert/strict";
import { Client } from "./client.ts";
import {
  InvalidArgumentError,
  LimitError,
  NotFoundError,
  SessionExpiredError,
  TimeoutError,
  UnavailableError,
} from "./errors.ts";
import { MAX_KEY_BYTES, MAX_VALUE_BYTES } from "../config/limits.ts";
import { MAX_FRAME } from "./protocol.ts";
import { startFakeNode } from "../server/testing.ts";
import { TimeoutError as RaftTimeoutError } from "../raft/errors.ts";
import { encodeCommand, putCommand } from "../storage/command.ts";

const te = new TextEncoder();

/** A port nobody listens on. */
function deadAddress(): string {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = l.addr.port;
  l.close();
  return `127.0.0.1:${port}`;
}

Deno.test("put, get, delete and scan work against a leader", async () => {
  const n = await startFakeNode(1);
  const kv = await Client.connect({ endpoints: [n.address] });
  try {
    await kv.put("a", "1");
    await kv.put(te.encode("b"), new Uint8Array([0, 255]));
    await kv.put("c", "3");
    assert.equal(await kv.getString("a"), "1");
    assert.deepEqual(await kv.get("b"), new Uint8Array([0, 255]));
    assert.equal(await kv.get("missing"), undefined);
    assert.equal(await kv.getString("a", { consistency: "serializable" }), "1");
    const all = await kv.scan();
    assert.deepEqual(all.map((p) => new TextDecoder().decode(p.key)), ["a", "b", "c"]);
    const some = await kv.scan({ start: "b", limit: 1 });
    assert.equal(some.length, 1);
    assert.deepEqual(some[0].key, te.encode("b"));
    await kv.delete("a");
    assert.equal(await kv.get("a"), undefined);
    assert.equal(n.raft.reads, 6, "linearizable reads and scans use the ReadIndex barrier");
    const text = await n.metrics.scrape();
    assert.match(text, /^gokv_request_seconds_count\{op="put"\} 3$/m);
    assert.match(text, /^gokv_request_seconds_bucket\{le="\+Inf",op="get"\} 5$/m);
  } finally {
    await kv.close();
    await n.close();
  }
});

Deno.test("a follower's not-leader answer redirects the client to the leader, which it caches", async () => {
  const leader = await startFakeNode(2, { voters: [1, 2] });
  const follower = await startFakeNode(1, { lead: 2, voters: [1, 2] });
  follower.book.learn({ id: 2, peer: "127.0.0.1:1", client: leader.address, http: "127.0.0.1:2" });
  const kv = await Client.connect({ endpoints: [follower.address] });
  try {
    await kv.put("k", "v");
    assert.equal(kv.leaderEndpoint, leader.address);
    assert.equal(
      await leader.sm.get(te.encode("k")).then((v) => v && new TextDecoder().decode(v)),
      "v",
    );
    await kv.put("k2", "v2");
    // The session registration tried the follower once; everything after went to the leader.
    assert.equal(follower.raft.proposals, 1, "the writes went straight to the leader");
    assert.equal(leader.raft.proposals, 3, "one session registration and two puts");
  } finally {
    await kv.close();
    await leader.close();
    await follower.close();
  }
});

Deno.test("the client follows a leader change and skips unreachable endpoints", async () => {
  const a = await startFakeNode(1, { voters: [1, 2] });
  const b = await startFakeNode(2, { lead: 1, voters: [1, 2], sm: a.sm });
  const members = [
    { id: 1, peer: "127.0.0.1:1", client: a.address, http: "127.0.0.1:3" },
    { id: 2, peer: "127.0.0.1:2", client: b.address, http: "127.0.0.1:4" },
  ];
  for (const m of members) {
    a.book.learn(m);
    b.book.learn(m);
  }
  const kv = await Client.connect({
    endpoints: [deadAddress(), a.address, b.address],
    timeoutMs: 5000,
  });
  try {
    await kv.put("x", "1");
    assert.equal(kv.leaderEndpoint, a.address);
    // Leadership moves to node 2.
    a.raft.lead = 2;
    b.raft.lead = 2;
    b.raft.index = a.raft.index;
    await kv.put("x", "2");
    assert.equal(kv.leaderEndpoint, b.address);
    assert.equal(await kv.getString("x"), "2");
    // Node 2 goes away and node 1 leads again.
    await b.close();
    a.raft.lead = 1;
    await kv.put("x", "3");
    assert.equal(kv.leaderEndpoint, a.address);
  } finally {
    await kv.close();
    await a.close();
    await b.close();
  }
});

Deno.test("a write whose answer was lost is retried with the same session and applied once", async () => {
  const n = await startFakeNode(1);
  const kv = await Client.connect({ endpoints: [n.address] });
  try {
    await kv.put("warm", "up"); // registers the client's session
    // The first attempt commits, then the answer is lost (timeout); before the retry another
    // writer changes the key. A second application of the retried put would undo that write.
    n.raft.failNext = {
      error: new RaftTimeoutError("proposal", 10),
      count: 1,
      afterApply: true,
      hook: async () => {
        await n.sm.apply([{
          index: ++n.raft.index,
          data: encodeCommand(putCommand(te.encode("k"), te.encode("other"))),
        }]);
      },
    };
    await kv.put("k", "mine");
    assert.equal(n.raft.proposals, 4, "registration, warm-up, then the put and its retry");
    assert.equal(await kv.getString("k"), "other", "the retry was not applied a second time");
    const sessions = await n.sm.sessionList();
    assert.equal(sessions.length, 1);
    assert.equal(sessions[0].lastSeq, 2);
  } finally {
    await kv.close();
    await n.close();
  }
});

Deno.test("many concurrent callers share one client safely", async () => {
  const n = await startFakeNode(1);
  const kv = await Client.connect({ endpoints: [n.address] });
  try {
    await Promise.all(Array.from({ length: 300 }, (_, i) => kv.put(`k${i}`, `v${i}`)));
    const got = await Promise.all(Array.from({ length: 300 }, (_, i) => kv.getString(`k${i}`)));
    assert.deepEqual(got, Array.from({ length: 300 }, (_, i) => `v${i}`));
    // 300 writes in flight at once need 300 sessions (one write in flight per session).
    assert.equal(n.raft.proposals, 600);
    assert.equal(n.sm.sessionCount(), 300);
    // The pool reuses them: 300 more writes register nothing new.
    await Promise.all(Array.from({ length: 300 }, (_, i) => kv.put(`k${i}`, `w${i}`)));
    assert.equal(n.raft.proposals, 900);
  } finally {
    await kv.close();
    await n.close();
  }
});

Deno.test("prepareSessions registers what the pool lacks up front: later concurrent writes register none", async () => {
  const n = await startFakeNode(1);
  const kv = await Client.connect({ endpoints: [n.address] });
  try {
    await kv.prepareSessions(50);
    assert.equal(n.raft.proposals, 50);
    assert.equal(n.sm.sessionCount(), 50);
    // The pool holds 50 already: asking for fewer or as many registers nothing.
    await kv.prepareSessions(30);
    await kv.prepareSessions(50);
    assert.equal(n.raft.proposals, 50);
    // 50 writes in flight at once take the prepared sessions: one proposal each, no registration.
    await Promise.all(Array.from({ length: 50 }, (_, i) => kv.put(`k${i}`, `v${i}`)));
    assert.equal(n.raft.proposals, 100);
    assert.equal(n.sm.sessionCount(), 50);
    // Only the difference is registered.
    await kv.prepareSessions(60);
    assert.equal(n.raft.proposals, 110);
    assert.equal(n.sm.sessionCount(), 60);
    for (const bad of [-1, 1.5, Number.NaN, 65_537]) {
      await assert.rejects(kv.prepareSessions(bad), InvalidArgumentError);
    }
    assert.equal(n.raft.proposals, 110, "a refused count registers nothing");
  } finally {
    await kv.close();
    await n.close();
  }
});

Deno.test("list and scan follow pages (bounded by pairs and bytes) to the end or the limit", async () => {
  const n = await startFakeNode(1, { limits: { scanPagePairs: 4, scanPageBytes: 4096 } });
  const kv = await Client.connect({ endpoints: [n.address] });
  try {
    for (let i = 0; i < 25; i++) {
      await kv.put(`p${String(i).padStart(2, "0")}`, new Uint8Array(i % 7 === 0 ? 6000 : 10));
    }
    await kv.put("q", "other");
    const reads = n.raft.reads;
    const keys: string[] = [];
    for await (const { key } of kv.list({ prefix: "p" })) keys.push(new TextDecoder().decode(key));
    assert.deepEqual(keys, Array.from({ length: 25 }, (_, i) => `p${String(i).padStart(2, "0")}`));
    assert.ok(n.raft.reads - reads >= 7, `25 pairs in pages of at most 4: ${n.raft.reads - reads}`);
    assert.equal((await kv.scan({ prefix: "p", limit: 10 })).length, 10);
    assert.equal((await kv.scan({ start: "p20", pageSize: 2 })).length, 6);
    assert.deepEqual((await kv.scan({ start: "p24", limit: 100 })).map((p) => p.key.length), [
      3,
      1,
    ]);
  } finally {
    await kv.close();
    await n.close();
  }
});

Deno.test("admin operations: a retried removal that took effect succeeds; adds are idempotent; a transfer forgets the leader", async () => {
  const n = await startFakeNode(1, { voters: [1, 2, 3] });
  n.book.learn({ id: 1, peer: "127.0.0.1:7001", client: n.address, http: "127.0.0.1:9001" });
  const kv = await Client.connect({ endpoints: [n.address], timeoutMs: 3000 });
  try {
    // The removal is applied, then the answer is lost (timeout): the retry finds no member 2.
    n.raft.failNext = { error: new RaftTimeoutError("remove", 10), count: 1, afterApply: true };
    await kv.removeMember(2);
    assert.deepEqual(n.raft.voters, [1, 3]);
    // Without an uncertain attempt, removing a non-member is still NotFound.
    await assert.rejects(kv.removeMember(2), NotFoundError);
    // Adding the same member twice succeeds; the same id with other addresses does not.
    const m = { id: 4, peer: "127.0.0.1:7004", client: "127.0.0.1:8004", http: "127.0.0.1:9004" };
    await kv.addMember(m);
    await kv.addMember(m);
    await assert.rejects(kv.addMember({ ...m, peer: "127.0.0.1:7005" }), InvalidArgumentError);
    // After a transfer the client no longer sends to the old leader as if it still led.
    await kv.put("k", "v");
    assert.equal(kv.leaderEndpoint, n.address);
    await kv.transferLeader(3);
    assert.equal(kv.leaderEndpoint, undefined, "the cached leader is dropped");
    // Transferring to the node that already leads is a no-op success.
    await kv.transferLeader(1);
    assert.deepEqual(n.raft.transfers, [3]);
  } finally {
    await kv.close();
    await n.close();
  }
});

Deno.test("errors are typed: invalid argument, not found, timeout, unavailable", async () => {
  const n = await startFakeNode(1);
  const kv = await Client.connect({ endpoints: [n.address], timeoutMs: 400 });
  try {
    await assert.rejects(kv.put("", "v"), InvalidArgumentError);
    // Over the frame limit: refused by the client before sending; over the value limit: refused
    // by the node before proposing. Both are typed LimitErrors naming the limit.
    const limitOf = async (p: Promise<unknown>) => {
      const e = await p.then(() => undefined, (e) => e);
      assert.ok(e instanceof LimitError, `expected a LimitError, got ${e}`);
      return [e.limit, e.max];
    };
    const proposals = n.raft.proposals;
    assert.deepEqual(await limitOf(kv.put("big", new Uint8Array(65 * 1024 * 1024))), [
      "frame_bytes",
      MAX_FRAME,
    ]);
    assert.deepEqual(await limitOf(kv.put("big", new Uint8Array(MAX_VALUE_BYTES + 1))), [
      "value_bytes",
      MAX_VALUE_BYTES,
    ]);
    assert.deepEqual(await limitOf(kv.delete(new Uint8Array(MAX_KEY_BYTES + 1))), [
      "key_bytes",
      MAX_KEY_BYTES,
    ]);
    assert.equal(n.raft.proposals, proposals, "nothing over a limit is proposed");
    await assert.rejects(
      kv.addMember({ id: 9, peer: "nope", client: "127.0.0.1:1", http: "127.0.0.1:2" }),
      InvalidArgumentError,
    );
    await assert.rejects(kv.removeMember(42), NotFoundError);
    assert.match(
      await n.metrics.scrape(),
      /^gokv_request_errors_total\{op="member_add",status="invalid_argument"\} 1$/m,
    );
    n.raft.failNext = { error: new RaftTimeoutError("proposal", 10), count: 1000 };
    const t0 = Date.now();
    await assert.rejects(kv.put("k", "v"), TimeoutError);
    assert.ok(Date.now() - t0 < 2000);
  } finally {
    await kv.close();
    await n.close();
  }
  await assert.rejects(Client.connect({ endpoints: [deadAddress()] }), UnavailableError);
  await assert.rejects(Client.connect({ endpoints: [] }), InvalidArgumentError);
});

Deno.test("members, transfer and status go through the client", async () => {
  const n = await startFakeNode(1, { voters: [1, 2] });
  n.book.learn({ id: 1, peer: "127.0.0.1:11", client: n.address, http: "127.0.0.1:12" });
  const kv = await Client.connect({ endpoints: [n.address] });
  try {
    await kv.addMember({
      id: 3,
      peer: "127.0.0.1:31",
      client: "127.0.0.1:32",
      http: "127.0.0.1:33",
    });
    const members = await kv.members();
    assert.deepEqual(members.map((m) => m.id), [1, 2, 3]);
    assert.equal(members[0].client, n.address);
    assert.equal(members[2].http, "127.0.0.1:33");
    await kv.transferLeader(2);
    assert.deepEqual(n.raft.transfers, [2]);
    const s = await kv.status();
    assert.equal(s.id, 1);
    assert.equal(s.role, "leader");
    const all = await kv.statusAll();
    assert.ok(all.some((r) => r.status?.id === 1));
    assert.ok(
      all.some((r) => r.endpoint === "127.0.0.1:32" && r.error),
      "unreachable member reported",
    );
  } finally {
    await kv.close();
    await n.close();
  }
});

Deno.test("bad bytes on the client port close that connection only", async () => {
  const n = await startFakeNode(1);
  const kv = await Client.connect({ endpoints: [n.address] });
  try {
    const [host, port] = n.address.split(":");
    const bad = await Deno.connect({ hostname: host, port: Number(port) });
    await bad.write(new Uint8Array([0, 0, 0, 5, 77, 1, 2, 3, 4]));
    const buf = new Uint8Array(16);
    assert.equal(await bad.read(buf), null, "the server closed the bad connection");
    bad.close();
    assert.equal((await n.metrics.protocolErrors.get()).values[0].value, 1);
    await kv.put("still", "works");
    assert.equal(await kv.getString("still"), "works");
  } finally {
    await kv.close();
    await n.close();
  }
});

Deno.test("fromConfig reads the client addresses of the config's nodes", async () => {
  const n = await startFakeNode(1);
  const dir = await Deno.makeTempDir();
  try {
    const file = `${dir}/gokv.yaml`;
    await Deno.writeTextFile(
      file,
      `nodes:\n  - { id: 1, peer: "127.0.0.1:1", client: "${n.address}", http: "127.0.0.1:2" }\n`,
    );
    const kv = await Client.fromConfig(file);
    try {
      await kv.put("from", "config");
      assert.equal(await kv.getString("from"), "config");
    } finally {
      await kv.close();
    }
  } finally {
    await n.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("closing a node's client server lets requests in flight finish first", async () => {
  const n = await startFakeNode(1);
  const kv = await Client.connect({ endpoints: [n.address], timeoutMs: 2000 });
  try {
    // Ten sessions registered beforehand, so that the ten puts below are the only proposals.
    await Promise.all(Array.from({ length: 10 }, (_, i) => kv.put(`g${i}`, "warm")));
    const before = n.raft.proposals;
    n.raft.delayMs = 150;
    const puts = Array.from({ length: 10 }, (_, i) => kv.put(`g${i}`, "v"));
    while (n.raft.proposals < before + 10) await new Promise((r) => setTimeout(r, 5));
    // The server's shutdown order: refuse new work, drain, then close connections.
    n.service.stopAccepting();
    await n.service.drain(2000);
    await n.close();
    await Promise.all(puts);
    assert.equal(n.sm.stats().keys, 10);
    await assert.rejects(kv.put("late", "v", { timeoutMs: 300 }), UnavailableError);
  } finally {
    await kv.close();
    await n.close();
  }
});

Deno.test("an expired session is renewed transparently when no attempt may have applied the write", async () => {
  const n = await startFakeNode(1);
  const kv = await Client.connect({ endpoints: [n.address] });
  try {
    await kv.put("k", "1");
    const [first] = await n.sm.sessionList();
    // Two hours pass by the state machine's clock: the session expires.
    await n.sm.apply([{
      index: ++n.raft.index,
      data: encodeCommand(
        putCommand(te.encode("tick"), te.encode(""), undefined, Date.now() + 2 * 3_600_000),
      ),
    }]);
    await kv.put("k", "2");
    assert.equal(await kv.getString("k"), "2");
    const sessions = await n.sm.sessionList();
    assert.ok(sessions.every((s) => s.id !== first.id), "the expired session was replaced");
    assert.equal(sessions.at(-1)?.lastSeq, 1);
  } finally {
    await kv.close();
    await n.close();
  }
});

Deno.test("a write whose session expired after an uncertain attempt is reported as SessionExpiredError, never as applied", async () => {
  const n = await startFakeNode(1);
  const kv = await Client.connect({ endpoints: [n.address] });
  try {
    await kv.put("k", "1");
    // The next attempt is NOT applied but its answer times out; before the retry the session
    // expires. The client cannot know the first attempt's fate: it must not report success.
    n.raft.failNext = {
      error: new RaftTimeoutError("proposal", 10),
      count: 1,
      afterApply: false,
      hook: async () => {
        await n.sm.apply([{
          index: ++n.raft.index,
          data: encodeCommand(
            putCommand(te.encode("tick"), te.encode(""), undefined, Date.now() + 2 * 3_600_000),
          ),
        }]);
      },
    };
    const err = await kv.put("k", "2").then(() => undefined, (e) => e);
    assert.ok(err instanceof SessionExpiredError, `got ${err}`);
    assert.equal(err.earlierAttemptUncertain, true);
    assert.equal(await kv.getString("k"), "1");
    // The client registered a new session: later writes work.
    await kv.put("k", "3");
    assert.equal(await kv.getString("k"), "3");
  } finally {
    await kv.close();
    await n.close();
  }
});

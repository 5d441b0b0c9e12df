/**
 * Client sessions against real node processes (issue 12, "writes silently dropped while answering
 * OK"): the (0, 0) session and a reused or made-up client id are refused with errors, never
 * answered OK without writing.
 */
import assert from "node:assert/strict";
import { Connection } from "../client/connection.ts";
import { Op, Status } from "../client/protocol.ts";
import { TestCluster } from "./harness.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

async function http(addr: string, method: string, path: string, body?: string, headers = {}) {
  const res = await fetch(`http://${addr}${path}`, {
    method,
    body,
    headers: { "x-gokv-client": "test", ...headers },
    signal: AbortSignal.timeout(5000),
  });
  return { status: res.status, json: await res.json() };
}

Deno.test("three puts with session (0, 0) over the binary protocol are refused and write nothing", async () => {
  const c = await TestCluster.create();
  try {
    c.startAll();
    const leader = await c.waitLeader();
    const conn = await Connection.open(c.nodes.get(leader)!.client, 2000);
    try {
      for (const v of ["first", "second", "third"]) {
        const res = await conn.request(
          { op: Op.Put, key: enc.encode("zero"), value: enc.encode(v), clientId: 0n, seq: 0 },
          5000,
        );
        assert.equal(res.status, Status.InvalidArgument, `put ${v}: ${res.message}`);
        assert.match(res.message ?? "", /session id 0 is invalid/);
      }
      const get = await conn.request({ op: Op.Get, key: enc.encode("zero"), consistency: 0 }, 5000);
      assert.equal(get.status, Status.NotFound);
      // A registered session works, and a made-up id is refused as expired/unknown.
      const reg = await conn.request({ op: Op.RegisterSession }, 5000);
      assert.equal(reg.status, Status.Ok);
      assert.ok(reg.sessionId! > 0n);
      const ok = await conn.request(
        {
          op: Op.Put,
          key: enc.encode("zero"),
          value: enc.encode("v"),
          clientId: reg.sessionId!,
          seq: 1,
        },
        5000,
      );
      assert.equal(ok.status, Status.Ok);
      const madeUp = await conn.request(
        {
          op: Op.Put,
          key: enc.encode("zero"),
          value: enc.encode("w"),
          clientId: 987654321n,
          seq: 1,
        },
        5000,
      );
      assert.equal(madeUp.status, Status.SessionExpired);
      const after = await conn.request(
        { op: Op.Get, key: enc.encode("zero"), consistency: 0 },
        5000,
      );
      assert.equal(dec.decode(after.value), "v");
    } finally {
      conn.close();
    }
  } finally {
    await c.stop();
  }
});

Deno.test("an HTTP script that reuses a client id and restarts its seq gets errors, never OK without writing", async () => {
  const c = await TestCluster.create();
  try {
    c.startAll();
    const leader = await c.waitLeader();
    // Through a follower: it forwards to the leader.
    const other = [...c.nodes.keys()].find((id) => id !== leader)!;
    const addr = c.nodes.get(other)!.http;
    // A made-up id that was never registered.
    let r = await http(addr, "PUT", "/v1/kv/h", "a", {
      "x-gokv-client-id": "4242",
      "x-gokv-seq": "1",
    });
    assert.equal(r.status, 410, JSON.stringify(r.json));
    assert.equal(r.json.error, "session_expired");
    // A registered session: seq 1, 2, then the script restarts at 1 with other values.
    r = await http(addr, "POST", "/v1/sessions");
    assert.equal(r.status, 200);
    const id = r.json.session as string;
    const h = (seq: number) => ({ "x-gokv-client-id": id, "x-gokv-seq": String(seq) });
    assert.equal((await http(addr, "PUT", "/v1/kv/h", "one", h(1))).status, 200);
    assert.equal((await http(addr, "PUT", "/v1/kv/h", "two", h(2))).status, 200);
    for (const [seq, v] of [[1, "again-1"], [2, "again-2"]] as const) {
      r = await http(addr, "PUT", "/v1/kv/h", v, h(seq));
      assert.equal(r.status, 400, `seq ${seq}: ${JSON.stringify(r.json)}`);
      assert.equal(r.json.error, "invalid_argument");
    }
    // A genuine retry of the last write is still answered from the session (applied once).
    assert.equal((await http(addr, "PUT", "/v1/kv/h", "two", h(2))).status, 200);
    r = await http(addr, "GET", "/v1/kv/h?format=json");
    assert.equal(r.json.value, "two");
    // Session id 0 is refused before the log.
    r = await http(addr, "PUT", "/v1/kv/h", "z", { "x-gokv-client-id": "0", "x-gokv-seq": "1" });
    assert.equal(r.status, 400);
  } finally {
    await c.stop();
  }
});

import assert from "node:assert/strict";
import { Connection } from "./connection.ts";
import { LimitError, TimeoutError, UnavailableError } from "./errors.ts";
import {
  Consistency,
  decodeRequest,
  encodeResponse,
  FrameReader,
  MAX_FRAME,
  Op,
  type Request,
  type Response,
  Status,
} from "./protocol.ts";

const te = new TextEncoder();

/**
 * A node stand-in on loopback: answers every request with `answer` (undefined: never answers
 * it), each read's answers in one write.
 */
function fakeServer(answer: (req: Request) => Response | undefined) {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const conns: Deno.Conn[] = [];
  const served = (async () => {
    for await (const conn of listener) {
      conns.push(conn);
      (async () => {
        const frames = new FrameReader();
        const buf = new Uint8Array(64 * 1024);
        try {
          for (let n = await conn.read(buf); n !== null; n = await conn.read(buf)) {
            frames.push(buf.subarray(0, n));
            const out: Uint8Array[] = [];
            for (let b = frames.next(); b; b = frames.next()) {
              const res = answer(decodeRequest(b));
              if (res) out.push(encodeResponse(res));
            }
            for (const f of out) await conn.write(f);
          }
        } catch { /* closed */ }
      })();
    }
  })().catch(() => {});
  return {
    address: `127.0.0.1:${(listener.addr as Deno.NetAddr).port}`,
    async close() {
      listener.close();
      for (const c of conns) {
        try {
          c.close();
        } catch { /* closed */ }
      }
      await served;
    },
  };
}

/** Settles as "ok", or the error's class name; records the order in which calls settled. */
function track(p: Promise<unknown>, order: string[], name: string): Promise<unknown> {
  return p.then(
    (v) => {
      order.push(name);
      return v;
    },
    (e) => {
      order.push(name);
      return e;
    },
  );
}

Deno.test("request deadlines fire from the connection's sweep, earliest first, without touching other requests", async () => {
  // Gets are never answered; a status request is answered at once.
  const srv = fakeServer((req) =>
    req.op === Op.Status ? { op: req.op, id: req.id, status: Status.Ok, json: "{}" } : undefined
  );
  const conn = await Connection.open(srv.address, 2000);
  try {
    const order: string[] = [];
    const get = (ms: number) =>
      conn.request({ op: Op.Get, key: te.encode("k"), consistency: Consistency.Linearizable }, ms);
    // The sweep is armed for the first deadline; a later request with an earlier deadline
    // re-arms it.
    const slow = track(get(400), order, "slow");
    const fast = track(get(60), order, "fast");
    const status = await conn.request({ op: Op.Status }, 5000);
    assert.equal(status.status, Status.Ok);
    const fastErr = await fast;
    assert.ok(fastErr instanceof TimeoutError, `expected a TimeoutError, got ${fastErr}`);
    assert.equal(fastErr.timeoutMs, 60);
    assert.deepEqual(order, ["fast"], "the longer request is still waiting");
    assert.equal(conn.inflight, 1);
    const slowErr = await slow;
    assert.ok(slowErr instanceof TimeoutError);
    assert.equal(slowErr.timeoutMs, 400);
    assert.deepEqual(order, ["fast", "slow"]);
    assert.equal(conn.inflight, 0);
    // The connection stays usable, and a new deadline arms the sweep again.
    assert.equal((await conn.request({ op: Op.Status }, 5000)).status, Status.Ok);
    assert.ok(await get(30).then(() => undefined, (e) => e) instanceof TimeoutError);
    assert.ok(!conn.closed);
  } finally {
    conn.close();
    await srv.close();
  }
});

Deno.test("a late answer to a request that timed out is ignored; closing fails what waits", async () => {
  let held: Request[] = [];
  const srv = fakeServer((req) => {
    if (req.op === Op.Get) {
      held.push(req);
      return undefined;
    }
    // A status request releases the held gets' answers first (they arrive after their deadline).
    const out = held.map((g): Response => ({
      op: g.op,
      id: g.id,
      status: Status.Ok,
      value: te.encode("late"),
    }));
    held = [];
    return out.length ? out[0] : { op: req.op, id: req.id, status: Status.Ok, json: "{}" };
  });
  const conn = await Connection.open(srv.address, 2000);
  try {
    const get = conn.request({ op: Op.Get, key: te.encode("k"), consistency: 0 }, 30);
    await assert.rejects(get, TimeoutError);
    // The late answer to the get comes back to a status request: ignored (no such request
    // waits), and the status request itself goes unanswered here until its own deadline.
    await assert.rejects(conn.request({ op: Op.Status }, 200), TimeoutError);
    assert.ok(!conn.closed, "an answer to a forgotten request is not a protocol error");
    const waiting = conn.request({ op: Op.Get, key: te.encode("k"), consistency: 0 }, 60_000);
    conn.close();
    await assert.rejects(waiting, UnavailableError);
    assert.equal(conn.inflight, 0);
  } finally {
    conn.close();
    await srv.close();
  }
});

Deno.test("requests of one tick share the output buffer; one over the frame limit fails alone", async () => {
  const srv = fakeServer((req) =>
    req.op === Op.Get ? { op: req.op, id: req.id, status: Status.Ok, value: req.key } : undefined
  );
  const conn = await Connection.open(srv.address, 2000);
  try {
    const keys = Array.from({ length: 200 }, (_, i) => te.encode(`key-${i}-${"x".repeat(i * 37)}`));
    const gets = keys.map((key) => conn.request({ op: Op.Get, key, consistency: 0 }, 5000));
    // Encoded into the same buffer between the others: refused, and nothing of it is sent.
    const big = conn.request(
      { op: Op.Put, key: te.encode("big"), value: new Uint8Array(MAX_FRAME), clientId: 1n, seq: 1 },
      5000,
    );
    const more = keys.map((key) => conn.request({ op: Op.Get, key, consistency: 0 }, 5000));
    const e = await big.then(() => undefined, (e) => e);
    assert.ok(e instanceof LimitError && e.limit === "frame_bytes", `got ${e}`);
    const got = await Promise.all([...gets, ...more]);
    assert.deepEqual(got.map((r) => r.value), [...keys, ...keys]);
    assert.ok(!conn.closed);
  } finally {
    conn.close();
    await srv.close();
  }
});

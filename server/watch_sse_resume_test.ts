/**
 * Regression tests (review of a9ea805): an SSE watch resuming with Last-Event-ID on a lagging node
 * repeated the event it had already delivered (a batch entry or a single put).
 */
import assert from "node:assert/strict";
import { MemoryStateMachine } from "../storage/memory_sm.ts";
import { encodeBatch, encodeCommand, putCommand } from "../storage/command.ts";
import { makeVersionstamp, versionstampHex } from "../storage/kv_model.ts";
import { startFakeNode } from "./testing.ts";
import { createHttpHandler } from "./http.ts";

const b = (s: string) => new TextEncoder().encode(s);

Deno.test("SSE resume with Last-Event-ID inside a batch entry on a lagging node repeats nothing", async () => {
  const sm = new MemoryStateMachine();
  const n = await startFakeNode(1, { sm });
  const handler = createHttpHandler(n.service, { metrics: n.metrics });
  try {
    for (let i = 1; i <= 9; i++) {
      await sm.apply([{ index: i, data: encodeCommand(putCommand(b("other"), b(String(i)))) }]);
    }
    // On the node that served the first stream, entry 10 = [s/a, s/b, t/x]; the watch of s/
    // got one event with id (10, 1), the stamp of its last change.
    const lastEventId = versionstampHex(makeVersionstamp(10, 1));
    const res = await handler(
      new Request("http://node/v1/watch?prefix=s/&wait_ms=2000", {
        headers: { "last-event-id": lastEventId },
      }),
    );
    assert.equal(res.status, 200);
    // This node applies entry 10 only now.
    await sm.apply([{
      index: 10,
      data: encodeBatch([
        encodeCommand(putCommand(b("s/a"), b("1"))),
        encodeCommand(putCommand(b("s/b"), b("1"))),
        encodeCommand(putCommand(b("t/x"), b("1"))),
      ]),
    }]);
    await sm.apply([{ index: 11, data: encodeCommand(putCommand(b("s/c"), b("1"))) }]);
    const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
    let buf = "";
    const changes: string[] = [];
    const deadline = Date.now() + 3000;
    while (!changes.includes("s/c") && Date.now() < deadline) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += value;
      let i;
      while ((i = buf.indexOf("\n\n")) >= 0) {
        const block = buf.slice(0, i);
        buf = buf.slice(i + 2);
        const data = block.split("\n").find((l) => l.startsWith("data: "));
        if (!block.includes("event: change") || !data) continue;
        for (const c of JSON.parse(data.slice(6)).changes) changes.push(c.key);
      }
    }
    await reader.cancel();
    assert.deepEqual(changes, ["s/c"], "s/a and s/b were delivered before the reconnect");
  } finally {
    n.service.stopAccepting();
    await n.close();
  }
});

Deno.test("SSE resume with Last-Event-ID of a single put on a lagging node repeats nothing (no batch entry)", async () => {
  const sm = new MemoryStateMachine();
  const n = await startFakeNode(1, { sm });
  const handler = createHttpHandler(n.service, { metrics: n.metrics });
  try {
    for (let i = 1; i <= 9; i++) {
      await sm.apply([{ index: i, data: encodeCommand(putCommand(b("other"), b(String(i)))) }]);
    }
    // The stream on another node delivered the put at entry 10 (id (10, 0)), then broke.
    const res = await handler(
      new Request("http://node/v1/watch?prefix=s/&wait_ms=2000", {
        headers: { "last-event-id": versionstampHex(makeVersionstamp(10, 0)) },
      }),
    );
    await sm.apply([{ index: 10, data: encodeCommand(putCommand(b("s/a"), b("1"))) }]);
    await sm.apply([{ index: 11, data: encodeCommand(putCommand(b("s/c"), b("1"))) }]);
    const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
    let buf = "";
    const ids: string[] = [];
    const deadline = Date.now() + 3000;
    while (ids.length < 1 && Date.now() < deadline) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += value;
      let i;
      while ((i = buf.indexOf("\n\n")) >= 0) {
        const block = buf.slice(0, i);
        buf = buf.slice(i + 2);
        const id = block.split("\n").find((l) => l.startsWith("id: "));
        if (block.includes("event: change") && id) ids.push(id.slice(4));
      }
    }
    await reader.cancel();
    assert.deepEqual(ids, [versionstampHex(makeVersionstamp(11, 0))], "entry 10 again");
  } finally {
    n.service.stopAccepting();
    await n.close();
  }
});

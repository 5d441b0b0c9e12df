import assert from "node:assert/strict";
import * as protoLoader from "@grpc/proto-loader";
import { type Message, message, MessageType } from "../raft/types.ts";
import { GrpcTransport, PROTO_OPTIONS, RAFT_PROTO_PATH } from "./grpc.ts";
import { RAFT_PROTO_JSON } from "./raft_proto.ts";
import { waitFor } from "./test_util.ts";

Deno.test("grpc: the embedded descriptor describes exactly transport/raft.proto", () => {
  const fromFile = protoLoader.loadSync(RAFT_PROTO_PATH, PROTO_OPTIONS);
  const embedded = protoLoader.fromJSON(
    RAFT_PROTO_JSON as Parameters<typeof protoLoader.fromJSON>[0],
    PROTO_OPTIONS,
  );
  assert.deepStrictEqual(Object.keys(embedded).sort(), Object.keys(fromFile).sort());
  for (const [name, def] of Object.entries(fromFile)) {
    const other = embedded[name];
    if ("type" in def) {
      assert.deepStrictEqual(JSON.stringify(other.type), JSON.stringify(def.type), name);
    } else {
      for (const [method, m] of Object.entries(def)) {
        // deno-lint-ignore no-explicit-any
        const o = (other as any)[method];
        assert.deepStrictEqual(
          [o.path, o.requestStream, o.responseStream],
          [m.path, m.requestStream, m.responseStream],
          `${name}.${method}`,
        );
      }
    }
  }
});

Deno.test("grpc: a snapshot stream outlasts a per-call timeout far shorter than the transfer", async () => {
  const got: Message[] = [];
  const b = new GrpcTransport({ id: 2, listen: "127.0.0.1:0", peers: new Map() });
  await b.start((m) => got.push(m));
  const a = new GrpcTransport({
    id: 1,
    listen: "127.0.0.1:0",
    peers: new Map([[2, b.address]]),
    callTimeoutMs: 5,
  });
  try {
    const chunk = 1024 * 1024;
    const total = 16 * chunk;
    const conf = { voters: [1, 2], votersOutgoing: [], learners: [], learnersNext: [] };
    const msgs = [];
    for (let off = 0; off < total; off += chunk) {
      msgs.push(message({
        type: MessageType.Snap,
        from: 1,
        to: 2,
        snapshot: {
          meta: { index: 9, term: 2, conf },
          offset: off,
          total,
          data: new Uint8Array(chunk).fill(off / chunk),
          done: off + chunk === total,
        },
      }));
    }
    const t0 = performance.now();
    a.send(msgs);
    await waitFor(() => got.length === msgs.length, 20000, "all chunks");
    assert.ok(performance.now() - t0 > 5, "transfer took longer than the call timeout");
    assert.deepStrictEqual(got.map((m) => m.snapshot!.data[0]), msgs.map((_, i) => i));
    assert.equal(a.stats.dropped, 0);
  } finally {
    await a.close();
    await b.close();
  }
});

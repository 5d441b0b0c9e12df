import assert from "node:assert/strict";
import http2 from "node:http2";
import { HttpListener } from "./http_listener.ts";
import { defaultNodeLimits } from "../config/limits.ts";
import { type Logger, nullLogger } from "../raft/logger.ts";
import { SlowReaderError } from "./watch_stream.ts";

/** One HTTP/2 request on `session`; resolves with the status and the body. */
function h2Request(
  session: http2.ClientHttp2Session,
  body: Uint8Array,
): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const req = session.request({ ":method": "POST", ":path": "/echo" });
    let status = 0;
    let text = "";
    req.on("response", (h) => status = Number(h[":status"]));
    req.setEncoding("utf8");
    req.on("data", (d: string) => text += d);
    req.on("end", () => resolve({ status, text }));
    req.on("error", reject);
    req.end(body);
  });
}

Deno.test("HTTP/2 with prior knowledge (Deno's KV Connect client) is relayed past 64 KiB on one connection", async () => {
  const listener = new HttpListener({
    listen: "127.0.0.1:0",
    handler: async (req) => new Response(String((await req.arrayBuffer()).byteLength)),
    logger: nullLogger,
    limits: defaultNodeLimits(),
  });
  const addr = await listener.start();
  const session = http2.connect(`http://127.0.0.1:${addr.port}`);
  try {
    // 200 requests of 2 KiB: 400 KiB on one connection, far past the HTTP/1 head limit.
    for (let i = 0; i < 200; i++) {
      const r = await h2Request(session, new Uint8Array(2048));
      assert.equal(r.status, 200, `request ${i}`);
      assert.equal(r.text, "2048");
    }
  } finally {
    session.close();
    await listener.shutdown();
  }
});

Deno.test("a watch stream dropped for a slow reader is a warning, not a handler failure", async () => {
  // Found against a real node: a dropped SSE watch logged ERROR "http handler failed".
  const logs: string[] = [];
  const logger: Logger = {
    debug() {},
    info() {},
    warn: (m) => logs.push(`warn ${m}`),
    error: (m) => logs.push(`error ${m}`),
  };
  const listener = new HttpListener({
    listen: "127.0.0.1:0",
    handler: () =>
      new Response(
        new ReadableStream<Uint8Array>({
          start(ctl) {
            ctl.enqueue(new TextEncoder().encode(": hello\n\n"));
            setTimeout(() => ctl.error(new SlowReaderError(1024, 10)), 50);
          },
        }),
        { headers: { "content-type": "text/event-stream" } },
      ),
    logger,
    limits: defaultNodeLimits(),
  });
  const addr = await listener.start();
  try {
    const res = await fetch(`http://127.0.0.1:${addr.port}/v1/watch`);
    await res.body?.pipeTo(new WritableStream()).catch(() => {});
    const deadline = Date.now() + 5000;
    while (logs.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    assert.deepEqual(logs, ["warn watch stream dropped: its reader stopped reading"]);
  } finally {
    await listener.shutdown();
  }
});

import assert from "node:assert/strict";
import { createLogger } from "./log.ts";

Deno.test("text lines carry level, node id, message and fields; lower levels are dropped", () => {
  const lines: string[] = [];
  const log = createLogger({ level: "info", nodeId: 3, write: (l) => lines.push(l), now: () => 0 });
  log.debug("hidden");
  log.info("elected", { term: 4, peer: "127.0.0.1:7001" });
  assert.deepEqual(lines, [
    "1970-01-01T00:00:00.000Z INFO  [node 3] elected term=4 peer=127.0.0.1:7001",
  ]);
});

Deno.test("json lines parse and carry the node id", () => {
  const lines: string[] = [];
  const log = createLogger({
    level: "debug",
    format: "json",
    nodeId: 2,
    write: (l) => lines.push(l),
  });
  log.warn("bad frame", { reason: new Error("checksum") });
  const rec = JSON.parse(lines[0]);
  assert.equal(rec.level, "warn");
  assert.equal(rec.node, 2);
  assert.equal(rec.reason, "checksum");
});

import assert from "node:assert/strict";
import { AcceptLoop, ByteBudget } from "./listener.ts";
import { nullLogger } from "../raft/logger.ts";

/** A listener whose accept fails `failures` times with EMFILE, then hands out real conns. */
function flakyListener(failures: number) {
  const real = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  let left = failures;
  const fake = {
    addr: real.addr,
    accept(): Promise<Deno.TcpConn> {
      if (left > 0) {
        left--;
        return Promise.reject(new Error("Too many open files (os error 24)"));
      }
      return real.accept();
    },
    close: () => real.close(),
  } as unknown as Deno.TcpListener;
  return { fake, port: real.addr.port };
}

Deno.test("an accept loop backs off on EMFILE, reports it, and accepts again", async () => {
  const { fake, port } = flakyListener(5);
  const accepted: Deno.TcpConn[] = [];
  const loop = new AcceptLoop(
    fake,
    { name: "t", maxConnections: 2, logger: nullLogger },
    (c, r) => {
      accepted.push(c);
      c.read(new Uint8Array(1)).catch(() => {}).finally(r);
    },
  );
  try {
    const until = Date.now() + 5000;
    while (loop.acceptErrors === 0 && Date.now() < until) {
      await new Promise((r) => setTimeout(r, 1));
    }
    assert.equal(loop.healthy, false, "unhealthy while accept fails");
    assert.match(loop.problem ?? "", /accept failing: Too many open files/);
    const conns = [];
    for (let i = 0; i < 3; i++) conns.push(await Deno.connect({ hostname: "127.0.0.1", port }));
    const deadline = Date.now() + 5000;
    while (loop.refused < 1 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    assert.equal(loop.acceptErrors, 5);
    assert.equal(loop.healthy, true);
    assert.equal(accepted.length, 2, "the cap holds");
    assert.equal(loop.refused, 1);
    for (const c of conns) c.close();
  } finally {
    for (const c of accepted) {
      try {
        c.close();
      } catch { /* closed */ }
    }
    await loop.close();
  }
  assert.equal(loop.listening, false);
  assert.match(loop.problem ?? "", /not accepting/);
});

Deno.test("a byte budget refuses what it does not have and wakes waiters on release", async () => {
  const b = new ByteBudget(10);
  assert.ok(b.tryTake(6));
  assert.ok(!b.tryTake(5));
  const woke = b.wait(5000).then(() => "woke");
  b.release(6);
  assert.equal(await woke, "woke");
  assert.ok(b.tryTake(10));
  assert.equal(b.used, 10);
  assert.equal(await Promise.race([b.wait(20).then(() => "timeout")]), "timeout");
});

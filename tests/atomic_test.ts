/**
 * Issue 14 acceptance against real node processes (lsm storage): 64 concurrent clients
 * increment one counter by check-and-set retry loops and with `sum` while the leader is killed
 * (the final count equals the acknowledged increments, exactly), and a lock built on
 * check-and-set with expiry is never held by two clients at once through a leader kill.
 */
import assert from "node:assert/strict";
import { Client } from "../client/client.ts";
import { readU64le, u64le, ValueEncoding } from "../storage/kv_model.ts";
import { TestCluster, waitFor } from "./harness.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function clients(c: TestCluster, n: number): Promise<Client[]> {
  const eps = [...c.nodes.values()].map((x) => x.client);
  return await Promise.all(
    Array.from({ length: n }, () => Client.connect({ endpoints: eps, timeoutMs: 30_000 })),
  );
}

/** Kills the leader after `afterMs`, restarts it after `downMs`; resolves with its id. */
async function killLeaderDuring(c: TestCluster, afterMs: number, downMs: number) {
  await sleep(afterMs);
  const leader = await c.waitLeader();
  await c.kill(leader);
  await sleep(downMs);
  c.start(leader);
  return leader;
}

Deno.test("64 clients count by CAS retry loops and sum through a leader kill: the count is exact", async () => {
  const c = await TestCluster.create({ storage: "lsm" });
  let kvs: Client[] = [];
  try {
    c.startAll();
    await c.waitLeader();
    kvs = await clients(c, 64);
    await kvs[0].put("warmup", "1");
    let acked = 0;
    let casRetries = 0;
    let stop = false;
    const failures: string[] = [];
    const worker = async (kv: Client, i: number) => {
      while (!stop) {
        try {
          if (i % 2 === 0) {
            await kv.atomic().sum("counter", 1n).commit();
          } else {
            // Read, then write the value + 1 only if nobody wrote in between.
            for (;;) {
              const e = await kv.getEntry("counter");
              const cur = e.value ? readU64le(e.value) : 0n;
              const r = await kv.atomic().check("counter", e.versionstamp).set(
                "counter",
                u64le(cur + 1n),
                { encoding: ValueEncoding.LE64 },
              ).commit();
              if (r.ok) break;
              casRetries++;
            }
          }
          acked++;
        } catch (e) {
          failures.push(`${(e as Error).name}: ${(e as Error).message}`);
          return;
        }
      }
    };
    const work = kvs.map((kv, i) => worker(kv, i));
    const killed = await killLeaderDuring(c, 1500, 1000);
    // Keep counting until the restarted node has caught up and a while after.
    await waitFor(
      async () => {
        try {
          return (await c.status(killed)).appliedIndex as number > 0;
        } catch {
          return false;
        }
      },
      20_000,
      "the killed node back",
    );
    await sleep(1000);
    stop = true;
    await Promise.all(work);
    assert.deepEqual(failures, [], "every increment was acknowledged (none left uncertain)");
    const e = await kvs[0].getEntry("counter");
    const final = readU64le(e.value!);
    assert.equal(final, BigInt(acked), `final ${final}, acknowledged ${acked}`);
    assert.ok(acked > 64, `only ${acked} increments`);
    console.log(`counter: ${acked} acknowledged increments, ${casRetries} CAS retries`);
  } finally {
    await Promise.all(kvs.map((k) => k.close()));
    await c.stop();
  }
});

Deno.test("a lock built on check-and-set with expiry is never held by two clients at once, through a leader kill", async () => {
  const c = await TestCluster.create({ storage: "lsm" });
  let kvs: Client[] = [];
  try {
    c.startAll();
    await c.waitLeader();
    kvs = await clients(c, 8);
    const TTL = 1_000;
    const holds: { who: number; from: number; to: number }[] = [];
    let stop = false;
    let acquired = 0;
    let expiredHolds = 0;
    const worker = async (kv: Client, who: number) => {
      let k = 0;
      while (!stop) {
        const sent = Date.now();
        const r = await kv.atomic().check("lock", null).set("lock", String(who), {
          expireAt: sent + TTL,
        }).commit();
        if (!r.ok) {
          await sleep(5 + Math.random() * 20);
          continue;
        }
        const from = Date.now();
        acquired++;
        // The holder owns the lock until it deletes it, and never past the expiry it set
        // (dated by its clock before sending, so an early expiry elsewhere would show).
        // Every third hold of a client "crashes": it never releases, the lock expires.
        const hold = k++ % 3 === 1 ? TTL + 200 : 20 + Math.random() * 60;
        await sleep(hold);
        let to = Math.min(Date.now(), sent + TTL);
        if (hold > TTL) {
          expiredHolds++; // a crashed holder: the lock expires
        } else {
          const released = await kv.atomic().check("lock", r.versionstamp).delete("lock").commit();
          if (!released.ok) to = Math.min(to, sent + TTL); // it had expired meanwhile
        }
        holds.push({ who, from, to });
      }
    };
    const work = kvs.map((kv, i) => worker(kv, i));
    await killLeaderDuring(c, 1500, 1000);
    await sleep(2500);
    stop = true;
    await Promise.all(work);
    holds.sort((a, b) => a.from - b.from);
    for (let i = 1; i < holds.length; i++) {
      const p = holds[i - 1];
      const h = holds[i];
      assert.ok(
        h.from >= p.to,
        `client ${h.who} acquired at ${h.from} while client ${p.who} held it until ${p.to}`,
      );
    }
    assert.ok(acquired >= 5, `only ${acquired} acquisitions`);
    assert.ok(expiredHolds > 0, "no hold ended by expiry");
    console.log(
      `lock: ${acquired} acquisitions, ${expiredHolds} ended by expiry, never overlapping`,
    );
  } finally {
    await Promise.all(kvs.map((k) => k.close()));
    await c.stop();
  }
});

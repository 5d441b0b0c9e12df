/**
 * Crash test: a writer subprocess is killed with SIGKILL at random moments,
 * again and again over one directory. After each kill the database reopens,
 * every acknowledged write (sync or not: the process died, the OS did not)
 * is present with its value, deletes stay deleted, and no batch is half applied.
 */
import assert from "node:assert/strict";
import { LsmDb } from "./mod.ts";
import { prng, withTempDir } from "./testutil_test.ts";

const WRITER = new URL("./testdata/crash_writer.ts", import.meta.url).pathname;
const dec = new TextDecoder();

async function runAndKill(
  dir: string,
  cycle: number,
  seed: number,
  killAfterMs: number,
): Promise<string[]> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", WRITER, dir, String(cycle), String(seed)],
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const reader = child.stdout.getReader();
  let text = "";
  let killed = false;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const stderr = new Response(child.stderr).text();
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      text += dec.decode(value, { stream: true });
      if (timer === undefined && text.startsWith("ready\n")) {
        timer = setTimeout(() => {
          killed = true;
          child.kill("SIGKILL");
        }, killAfterMs);
      }
    }
  } finally {
    clearTimeout(timer);
    reader.releaseLock();
  }
  const status = await child.status;
  const err = await stderr;
  assert.ok(killed, `writer exited on its own (code ${status.code}): ${err}`);
  const lines = text.split("\n");
  lines.pop(); // a partial last line was never fully reported
  return lines;
}

Deno.test("crash: acknowledged writes survive SIGKILL at random moments; batches are atomic", async () => {
  await withTempDir(async (dir) => {
    const r = prng(1234);
    const present = new Map<string, string>();
    const deleted = new Set<string>();
    const maybeDeleted = new Set<string>();
    const batches: { id: string; count: number; value: string }[] = [];
    const cycles = 16;
    let acks = 0;
    for (let cycle = 0; cycle < cycles; cycle++) {
      const lines = await runAndKill(dir, cycle, Math.floor(r() * 1e9), 80 + Math.floor(r() * 400));
      for (const line of lines) {
        const p = line.split(" ");
        if (p[0] === "put") {
          present.set(p[1], p[2]);
          acks++;
        } else if (p[0] === "deleting") {
          // The delete may or may not have reached the log before the kill.
          maybeDeleted.add(p[1]);
        } else if (p[0] === "del") {
          present.delete(p[1]);
          deleted.add(p[1]);
          acks++;
        } else if (p[0] === "batch") {
          batches.push({ id: p[1], count: Number(p[2]), value: p[3] });
          acks++;
        }
      }
      const db = await LsmDb.open(dir, { memtableBytes: 32 * 1024 });
      try {
        for (const [k, v] of present) {
          const got = await db.get(k);
          if (got === undefined && maybeDeleted.has(k)) {
            present.delete(k);
            deleted.add(k);
            continue;
          }
          assert.equal(
            got === undefined ? undefined : dec.decode(got),
            v,
            `cycle ${cycle}: acknowledged put ${k}`,
          );
        }
        // The writer that meant those deletes is dead: their outcome is now settled.
        maybeDeleted.clear();
        for (const k of deleted) {
          assert.equal(await db.get(k), undefined, `cycle ${cycle}: deleted ${k}`);
        }
        for (const b of batches) {
          for (let j = 0; j < b.count; j++) {
            const got = await db.get(`${b.id}/${j}`);
            assert.equal(got && dec.decode(got), b.value, `cycle ${cycle}: batch ${b.id} key ${j}`);
          }
        }
        // No batch, acknowledged or not, is half applied.
        // Batch values start with "n<count>-": every batch found is whole.
        const groups = new Map<string, { n: number; count: number }>();
        for await (const [k, v] of db.scan({ prefix: "b/" })) {
          const ks = dec.decode(k);
          const id = ks.slice(0, ks.lastIndexOf("/"));
          const count = Number(/^n(\d+)-/.exec(dec.decode(v))![1]);
          const g = groups.get(id) ?? { n: 0, count };
          g.n++;
          groups.set(id, g);
        }
        for (const [id, g] of groups) assert.equal(g.n, g.count, `batch ${id} is whole`);
        assert.ok(batches.every((b) => groups.has(b.id)));
      } finally {
        await db.close();
      }
    }
    assert.ok(acks > cycles * 10, `too few acknowledged writes (${acks})`);
    // The kills landed on a database that was flushing and compacting.
    const db = await LsmDb.open(dir, { memtableBytes: 32 * 1024 });
    const st = db.stats();
    await db.close();
    assert.ok(st.levels.slice(1).some((l) => l.files > 0), JSON.stringify(st.levels));
  });
});

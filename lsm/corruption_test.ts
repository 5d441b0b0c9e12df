/**
 * Corruption tests at the database level: flipped and truncated bytes in WAL,
 * SSTable, manifest and CURRENT files are reported as CorruptionError naming
 * the file (never skipped in silence); a torn WAL tail is truncated.
 */
import assert from "node:assert/strict";
import { CorruptionError, LsmDb } from "./mod.ts";
import { b, s, withTempDir } from "./testutil_test.ts";

function filesOf(dir: string, re: RegExp): string[] {
  return [...Deno.readDirSync(dir)].map((e) => e.name).filter((n) => re.test(n)).sort()
    .map((n) => `${dir}/${n}`);
}

async function flipByte(path: string, pos: number): Promise<void> {
  const data = await Deno.readFile(path);
  data[pos] ^= 0x20;
  await Deno.writeFile(path, data);
}

const opts = { memtableBytes: 1 << 20, blockBytes: 256 };

Deno.test("a flipped byte in the middle of the WAL fails open with CorruptionError at the record", async () => {
  await withTempDir(async (dir) => {
    const db = await LsmDb.open(dir, opts);
    for (let i = 0; i < 100; i++) await db.put(`k${i}`, "v".repeat(100), { sync: true });
    await db.close();
    const [wal] = filesOf(dir, /\.log$/);
    const size = (await Deno.stat(wal)).size;
    await flipByte(wal, Math.floor(size / 2));
    await assert.rejects(LsmDb.open(dir, opts), (e: unknown) => {
      assert.ok(e instanceof CorruptionError);
      assert.equal(e.file, wal);
      assert.ok(e.offset > 0 && e.offset < size);
      return true;
    });
  });
});

Deno.test("a truncated WAL tail is cut off and every complete record is recovered", async () => {
  await withTempDir(async (dir) => {
    let db = await LsmDb.open(dir, opts);
    for (let i = 0; i < 50; i++) {
      await db.put(`k${String(i).padStart(2, "0")}`, "v".repeat(100), { sync: true });
    }
    await db.close();
    const [wal] = filesOf(dir, /\.log$/);
    const data = await Deno.readFile(wal);
    await Deno.writeFile(wal, data.subarray(0, data.length - 40));
    db = await LsmDb.open(dir, opts);
    const keys: string[] = [];
    for await (const [k] of db.scan()) keys.push(s(k)!);
    assert.equal(keys.length, 49, "only the torn last record is lost");
    assert.equal(await db.get("k49"), undefined);
    await db.put("after", "x", { sync: true });
    await db.close();
    db = await LsmDb.open(dir, opts);
    assert.equal(s(await db.get("after")), "x");
    assert.equal(s(await db.get("k48")), "v".repeat(100));
    await db.close();
  });
});

Deno.test("a flipped byte in an SSTable data block is reported when read", async () => {
  await withTempDir(async (dir) => {
    let db = await LsmDb.open(dir, opts);
    for (let i = 0; i < 200; i++) await db.put(`k${String(i).padStart(3, "0")}`, "v".repeat(50));
    await db.flush();
    await db.close();
    const [sst] = filesOf(dir, /\.sst$/);
    await flipByte(sst, 100);
    db = await LsmDb.open(dir, opts);
    try {
      await assert.rejects(
        db.get("k000"),
        (e: unknown) => e instanceof CorruptionError && e.file === sst,
      );
      await assert.rejects(
        (async () => {
          for await (const _ of db.scan());
        })(),
        (e: unknown) => e instanceof CorruptionError && e.file === sst && e.offset === 0,
      );
    } finally {
      await db.close();
    }
  });
});

Deno.test("a damaged SSTable footer or a truncated SSTable fails open", async () => {
  await withTempDir(async (dir) => {
    const db = await LsmDb.open(dir, opts);
    for (let i = 0; i < 200; i++) await db.put(`k${i}`, "v".repeat(50));
    await db.flush();
    await db.close();
    const [sst] = filesOf(dir, /\.sst$/);
    const good = await Deno.readFile(sst);
    await flipByte(sst, good.length - 10);
    await assert.rejects(
      LsmDb.open(dir, opts),
      (e: unknown) => e instanceof CorruptionError && e.file === sst,
    );
    await Deno.writeFile(sst, good.subarray(0, good.length - 100));
    await assert.rejects(
      LsmDb.open(dir, opts),
      (e: unknown) => e instanceof CorruptionError && e.file === sst,
    );
    await Deno.writeFile(sst, good);
    const again = await LsmDb.open(dir, opts);
    assert.equal(s(await again.get("k7")), "v".repeat(50));
    await again.close();
  });
});

Deno.test("damaged or truncated manifests and CURRENT fail open with CorruptionError", async () => {
  await withTempDir(async (dir) => {
    const db = await LsmDb.open(dir, opts);
    await db.put("k", "v");
    await db.flush();
    await db.close();
    const [mf] = filesOf(dir, /^.*MANIFEST-\d+$/);
    const good = await Deno.readFile(mf);
    await flipByte(mf, 12);
    await assert.rejects(
      LsmDb.open(dir, opts),
      (e: unknown) => e instanceof CorruptionError && e.file === mf,
    );
    await Deno.writeFile(mf, good.subarray(0, 5));
    await assert.rejects(
      LsmDb.open(dir, opts),
      (e: unknown) => e instanceof CorruptionError && e.file === mf,
    );
    await Deno.writeFile(mf, good);
    await Deno.writeTextFile(`${dir}/CURRENT`, "MANIFEST-xyz\n");
    await assert.rejects(
      LsmDb.open(dir, opts),
      (e: unknown) => e instanceof CorruptionError && e.file.endsWith("CURRENT"),
    );
    await Deno.remove(`${dir}/CURRENT`);
    await assert.rejects(
      LsmDb.open(dir, opts),
      (e: unknown) => e instanceof CorruptionError && e.file.endsWith("CURRENT"),
    );
  });
});

Deno.test("files outside the live version are deleted at open, never replayed", async () => {
  await withTempDir(async (dir) => {
    let db = await LsmDb.open(dir, opts);
    await db.put("live", "1");
    await db.close();
    // A stray WAL with a valid-looking name and a stray table from a crashed compaction.
    const [wal] = filesOf(dir, /\.log$/);
    await Deno.copyFile(wal, `${dir}/999990.log`);
    await Deno.writeFile(`${dir}/999991.sst`, b("half-written table"));
    await Deno.writeFile(`${dir}/000777.sst.tmp`, b("tmp"));
    db = await LsmDb.open(dir, opts);
    assert.equal(s(await db.get("live")), "1");
    await db.close();
    const names = [...Deno.readDirSync(dir)].map((e) => e.name);
    assert.ok(!names.includes("999990.log"));
    assert.ok(!names.includes("999991.sst"));
    assert.ok(!names.includes("000777.sst.tmp"));
  });
});

import assert from "node:assert/strict";
import { CorruptionError } from "./errors.ts";
import { KIND_PUT, makeInternalKey } from "./internal_key.ts";
import { applyEdit, Version, VersionSet } from "./version.ts";
import {
  decodeEdit,
  EditFormatError,
  encodeEdit,
  type FileMeta,
  NUM_LEVELS,
  type VersionEdit,
} from "./version_edit.ts";
import { b, prng, randomBytes, withTempDir } from "./testutil_test.ts";

const meta = (n: number, lo: string, hi: string): FileMeta => ({
  number: n,
  size: 100 * n,
  smallest: makeInternalKey(b(lo), 1, KIND_PUT),
  largest: makeInternalKey(b(hi), 1, KIND_PUT),
});

Deno.test("version edits round-trip every field", () => {
  const e: VersionEdit = {
    logNumber: 7,
    nextFileNumber: 99,
    lastSequence: 2 ** 50,
    addWals: [7, 8],
    deletedFiles: [[0, 3], [2, 4]],
    newFiles: [[1, meta(5, "a", "c")], [6, meta(6, "d", "z")]],
  };
  assert.deepEqual(decodeEdit(encodeEdit(e)), e);
  assert.deepEqual(decodeEdit(encodeEdit({})), {});
});

Deno.test("version edit decoder fuzz: random bytes only raise EditFormatError", () => {
  const r = prng(41);
  for (let i = 0; i < 3000; i++) {
    const data = randomBytes(r, Math.floor(r() * 40));
    if (data.length > 0) data[0] = 1 + Math.floor(r() * 6);
    try {
      decodeEdit(data);
    } catch (e) {
      assert.ok(e instanceof EditFormatError, String(e));
    }
  }
});

Deno.test("applying edits keeps L1+ sorted and finds files by key", () => {
  let v = new Version(Array.from({ length: NUM_LEVELS }, () => []));
  v = applyEdit(v, {
    newFiles: [[1, meta(3, "m", "p")], [1, meta(2, "a", "c")], [0, meta(9, "a", "z")]],
  });
  assert.deepEqual(v.levels[1].map((f) => f.number), [2, 3]);
  assert.equal(v.findFile(1, b("b")), 0);
  assert.equal(v.findFile(1, b("d")), 1);
  assert.equal(v.findFile(1, b("q")), 2);
  assert.deepEqual(v.overlapping(1, b("c"), b("m")).map((f) => f.number), [2, 3]);
  assert.deepEqual(v.overlapping(1, b("d"), b("l")).map((f) => f.number), []);
  v = applyEdit(v, { deletedFiles: [[1, 2]] });
  assert.deepEqual(v.levels[1].map((f) => f.number), [3]);
  assert.equal(v.levelBytes(0), 900);
});

Deno.test("version set persists edits through CURRENT and the manifest", async () => {
  await withTempDir((dir) => {
    const vs = new VersionSet(dir);
    assert.equal(vs.recover(), false);
    vs.writeNewManifest({ logNumber: 4, addWals: [4], lastSequence: 10 });
    vs.logAndApply({ newFiles: [[0, meta(5, "a", "b")]], lastSequence: 20 });
    vs.logAndApply({ addWals: [6] });
    vs.logAndApply({ logNumber: 6, deletedFiles: [[0, 5]], newFiles: [[1, meta(7, "a", "b")]] });
    vs.close();
    const again = new VersionSet(dir);
    assert.equal(again.recover(), true);
    assert.equal(again.logNumber, 6);
    assert.deepEqual(again.wals, [6]);
    assert.equal(again.lastSequence, 20);
    assert.deepEqual(again.current.levels[1].map((f) => f.number), [7]);
    assert.equal(again.current.levels[0].length, 0);
    assert.ok(again.nextFileNumber > 7);
  });
});

Deno.test("a damaged CURRENT or manifest is reported as CorruptionError", async () => {
  await withTempDir(async (dir) => {
    const vs = new VersionSet(dir);
    vs.writeNewManifest({ logNumber: 1, addWals: [1] });
    for (let i = 0; i < 5; i++) vs.logAndApply({ newFiles: [[0, meta(10 + i, "a", "b")]] });
    vs.close();
    const mf = `${dir}/MANIFEST-${String(vs.manifestNumber).padStart(6, "0")}`;
    const good = await Deno.readFile(mf);
    const bad = good.slice();
    bad[20] ^= 0x10;
    await Deno.writeFile(mf, bad);
    assert.throws(() => new VersionSet(dir).recover(), CorruptionError);
    await Deno.writeFile(mf, good);
    await Deno.writeTextFile(`${dir}/CURRENT`, "garbage");
    assert.throws(
      () => new VersionSet(dir).recover(),
      (e: unknown) => e instanceof CorruptionError && e.file.endsWith("CURRENT"),
    );
    await Deno.writeTextFile(`${dir}/CURRENT`, "MANIFEST-999999\n");
    assert.throws(() => new VersionSet(dir).recover(), CorruptionError);
  });
});

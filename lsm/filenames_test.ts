import assert from "node:assert/strict";
import { manifestPath, parseFileName, tablePath, walPath } from "./filenames.ts";

Deno.test("file names round-trip and foreign files are not ours", () => {
  assert.deepEqual(parseFileName(walPath("d", 12).slice(2)), { kind: "wal", number: 12 });
  assert.deepEqual(parseFileName(tablePath("d", 7).slice(2)), { kind: "table", number: 7 });
  assert.deepEqual(parseFileName(manifestPath("d", 3).slice(2)), { kind: "manifest", number: 3 });
  assert.equal(parseFileName("000001.sst.tmp")?.kind, "temp");
  assert.equal(parseFileName("CURRENT.tmp")?.kind, "temp");
  for (const foreign of ["CURRENT", "LOCK", "notes.txt", "12.log.bak", "MANIFEST-x"]) {
    assert.equal(parseFileName(foreign), undefined, foreign);
  }
});

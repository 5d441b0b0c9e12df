import assert from "node:assert/strict";
import { join } from "node:path";
import { EntryType } from "../raft/types.ts";
import { CorruptionError } from "./errors.ts";
import { SimpleFileLogStore } from "./simplefile_log.ts";
import { entryPayload } from "./testdata/payload.ts";

function ents(lo: number, hi: number, term = 1) {
  const out = [];
  for (let i = lo; i <= hi; i++) {
    out.push({ index: i, term, type: EntryType.Normal, data: entryPayload(i, term) });
  }
  return out;
}

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = Deno.makeTempDirSync({ prefix: "gokv-simplefile-" });
  try {
    await fn(dir);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
}

function logFile(dir: string): string {
  return join(dir, [...Deno.readDirSync(dir)].find((d) => d.name.endsWith(".jsonl"))!.name);
}

Deno.test("simplefile log: entries are JSON lines appended, never rewritten", async () => {
  await withDir(async (dir) => {
    const log = await SimpleFileLogStore.open(dir);
    log.append(ents(1, 2));
    await log.sync();
    const first = Deno.readTextFileSync(logFile(dir));
    log.append(ents(3, 3));
    log.setHardState({ term: 1, vote: 2, commit: 3 });
    await log.sync();
    const second = Deno.readTextFileSync(logFile(dir));
    assert.ok(second.startsWith(first));
    const lines = second.trimEnd().split("\n").map((l) => JSON.parse(l));
    assert.deepEqual(lines.map((l) => l.index), [1, 2, 3]);
    const state = JSON.parse(Deno.readTextFileSync(join(dir, "raft-state.json")));
    assert.deepEqual(state.hardState, { term: 1, vote: 2, commit: 3 });
    await log.close();
  });
});

Deno.test("simplefile log: a torn last line is cut off on open", async () => {
  await withDir(async (dir) => {
    let log = await SimpleFileLogStore.open(dir);
    log.append(ents(1, 3));
    await log.sync();
    await log.close();
    const path = logFile(dir);
    const text = Deno.readTextFileSync(path);
    Deno.writeTextFileSync(path, text.slice(0, text.length - 10));
    log = await SimpleFileLogStore.open(dir);
    assert.equal(log.lastIndex(), 2);
    log.append(ents(3, 4, 2));
    await log.sync();
    await log.close();
    log = await SimpleFileLogStore.open(dir);
    assert.equal(log.lastIndex(), 4);
    assert.equal(log.term(3), 2);
    await log.close();
  });
});

Deno.test("simplefile log: a damaged line before the tail is a CorruptionError", async () => {
  await withDir(async (dir) => {
    const log = await SimpleFileLogStore.open(dir);
    log.append(ents(1, 3));
    await log.sync();
    await log.close();
    const path = logFile(dir);
    const lines = Deno.readTextFileSync(path).split("\n");
    lines[1] = lines[1].slice(0, 5);
    Deno.writeTextFileSync(path, lines.join("\n"));
    await assert.rejects(() => SimpleFileLogStore.open(dir), (e) => {
      assert.ok(e instanceof CorruptionError);
      assert.equal(e.offset, 2);
      return true;
    });
  });
});

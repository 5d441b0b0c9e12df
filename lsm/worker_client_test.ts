import assert from "node:assert/strict";
import { CorruptionError } from "./errors.ts";
import { KIND_PUT, MAX_SEQ } from "./internal_key.ts";
import { Memtable } from "./memtable.ts";
import { resolveOptions } from "./options.ts";
import { TableReader } from "./sstable_reader.ts";
import { WorkerClient } from "./worker_client.ts";
import { b, s, until, withTempDir } from "./testutil_test.ts";

Deno.test("worker flushes a memtable to a table, then stops when idle", async () => {
  await withTempDir(async (dir) => {
    let next = 100;
    const w = new WorkerClient(() => next++, 50);
    try {
      const m = new Memtable();
      for (let i = 0; i < 500; i++) m.add(i + 1, KIND_PUT, b(`key${i}`), b(`v${i}`));
      const out = await w.request({
        type: "flush",
        dir,
        path: `${dir}/000007.sst`,
        number: 7,
        opts: resolveOptions(),
        mem: m.exportState(),
      });
      assert.equal(out.files.length, 1);
      assert.equal(out.files[0].number, 7);
      const t = TableReader.open(`${dir}/000007.sst`, 7);
      assert.equal(s(t.get(b("key42"), MAX_SEQ)), "v42");
      t.close();
      assert.ok(w.active);
      await until(() => !w.active);
    } finally {
      await w.terminate();
    }
  });
});

Deno.test("worker merge errors come back typed (CorruptionError names the file)", async () => {
  await withTempDir(async (dir) => {
    const w = new WorkerClient(() => 1);
    try {
      await Deno.writeFile(`${dir}/000003.sst`, new Uint8Array(100));
      const f = {
        number: 3,
        size: 100,
        smallest: b("a\0\0\0\0\0\0\0\x01"),
        largest: b("z\0\0\0\0\0\0\0\x01"),
      };
      await assert.rejects(
        w.request({
          type: "merge",
          dir,
          compaction: { level: 0, inputs: [f], overlaps: [], trivialMove: false },
          opts: resolveOptions(),
          smallestSnapshot: 0,
          levels: [[f], [], [], [], [], [], []],
        }),
        (e: unknown) => e instanceof CorruptionError && e.file.endsWith("000003.sst"),
      );
    } finally {
      await w.terminate();
    }
  });
});

Deno.test({
  name: "terminate resolves once the worker thread has exited (its memory is released)",
  ignore: Deno.build.os !== "linux",
  fn: async () => {
    // In a process of its own: `deno test --parallel` runs other modules' workers in this one.
    const code = `
      import { WorkerClient } from ${JSON.stringify(import.meta.resolve("./worker_client.ts"))};
      import { Memtable } from ${JSON.stringify(import.meta.resolve("./memtable.ts"))};
      import { resolveOptions } from ${JSON.stringify(import.meta.resolve("./options.ts"))};
      import { KIND_PUT } from ${JSON.stringify(import.meta.resolve("./internal_key.ts"))};
      const threads = () =>
        [...Deno.readDirSync("/proc/self/task")].flatMap((t) => {
          try {
            return [Deno.readTextFileSync("/proc/self/task/" + t.name + "/comm").trim()];
          } catch {
            return [];
          }
        }).filter((n) => n.startsWith("worker-")).length;
      const dir = Deno.makeTempDirSync();
      const w = new WorkerClient(() => 1);
      const before = threads();
      const m = new Memtable();
      m.add(1, KIND_PUT, new Uint8Array([107]), new Uint8Array([118]));
      await w.request({
        type: "flush", dir, path: dir + "/000003.sst", number: 3, opts: resolveOptions(),
        mem: m.exportState(),
      });
      const running = threads();
      await w.terminate();
      console.log(JSON.stringify([before, running, threads()]));
      Deno.removeSync(dir, { recursive: true });
    `;
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["eval", "--quiet", code],
      stdout: "piped",
      stderr: "inherit",
    }).output();
    assert.ok(out.success, "the child failed");
    const [before, running, after] = JSON.parse(new TextDecoder().decode(out.stdout).trim());
    assert.equal(running, before + 1, "the worker thread runs");
    assert.equal(after, before, "gone once terminate() resolved");
  },
});

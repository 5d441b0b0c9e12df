/**
 * Model-based test of the disk log stores: random operation sequences (appends that truncate,
 * hard states, local and installed snapshots, reopen) must leave the store identical to the
 * in-memory reference after every step, including across close/open.
 */
import assert from "node:assert/strict";
import fc from "fast-check";
import type { LogStore } from "../raft/storage.ts";
import { EntryType } from "../raft/types.ts";
import { MemoryLogStore } from "./memory_log.ts";
import { SegmentLogStore } from "./segment_log.ts";
import { SimpleFileLogStore } from "./simplefile_log.ts";

type Op =
  | { op: "append"; from: number; count: number; bump: boolean }
  | { op: "hs"; commit: number }
  | { op: "create"; at: number }
  | { op: "install"; at: number; match: boolean }
  | { op: "sync" }
  | { op: "reopen" };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 6,
    arbitrary: fc.record({
      op: fc.constant("append" as const),
      from: fc.nat(),
      count: fc.integer({ min: 1, max: 6 }),
      bump: fc.boolean(),
    }, { noNullPrototype: true }),
  },
  {
    weight: 1,
    arbitrary: fc.record({ op: fc.constant("hs" as const), commit: fc.nat(1000) }, {
      noNullPrototype: true,
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({ op: fc.constant("create" as const), at: fc.nat() }, {
      noNullPrototype: true,
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record(
      { op: fc.constant("install" as const), at: fc.nat(), match: fc.boolean() },
      { noNullPrototype: true },
    ),
  },
  { weight: 2, arbitrary: fc.constant({ op: "sync" as const }) },
  { weight: 2, arbitrary: fc.constant({ op: "reopen" as const }) },
);

const conf = { voters: [1, 2], votersOutgoing: [], learners: [], learnersNext: [] };

function same(real: LogStore, model: LogStore): void {
  assert.equal(real.firstIndex(), model.firstIndex());
  assert.equal(real.lastIndex(), model.lastIndex());
  assert.deepEqual(real.snapshotMeta(), model.snapshotMeta());
  assert.deepEqual(real.initialState(), model.initialState());
  assert.deepEqual(real.snapshot().data, model.snapshot().data);
  assert.deepEqual(
    real.entries(real.firstIndex(), real.lastIndex() + 1),
    model.entries(model.firstIndex(), model.lastIndex() + 1),
  );
}

const stores: Array<[string, (dir: string) => Promise<LogStore>]> = [
  ["segment", (dir) => SegmentLogStore.open(dir, { segmentBytes: 160 })],
  ["simplefile", (dir) => SimpleFileLogStore.open(dir)],
];

for (const [name, open] of stores) {
  Deno.test(`${name} log store behaves like the in-memory model across operations and reopens`, async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(opArb, { minLength: 1, maxLength: 60 }), async (ops) => {
        const dir = Deno.makeTempDirSync({ prefix: `gokv-model-${name}-` });
        const model = new MemoryLogStore();
        let real = await open(dir);
        let term = 1;
        let stamp = 0;
        try {
          for (const o of ops) {
            const first = model.firstIndex();
            const last = model.lastIndex();
            switch (o.op) {
              case "append": {
                const from = first + (o.from % (last - first + 2));
                if (o.bump) term++;
                const ents = [];
                for (let i = 0; i < o.count; i++) {
                  const data = new Uint8Array([from + i, term, stamp++ & 0xff]);
                  ents.push({ index: from + i, term, type: EntryType.Normal, data });
                }
                model.append(ents);
                real.append(ents);
                break;
              }
              case "hs":
                model.setHardState({ term, vote: 1, commit: o.commit });
                real.setHardState({ term, vote: 1, commit: o.commit });
                break;
              case "create": {
                if (last < first) break;
                const at = first + (o.at % (last - first + 1));
                const snap = {
                  meta: { index: at, term: model.term(at), conf },
                  data: new Uint8Array([at, 1]),
                };
                model.createSnapshot(snap);
                real.createSnapshot(snap);
                break;
              }
              case "install": {
                const at = first + (o.at % (last - first + 4));
                const t = o.match && at <= last ? model.term(at) : ++term;
                const snap = { meta: { index: at, term: t, conf }, data: new Uint8Array([at, 2]) };
                model.applySnapshot(snap);
                real.applySnapshot(snap);
                break;
              }
              case "sync":
                await real.sync();
                break;
              case "reopen":
                await real.close();
                real = await open(dir);
                break;
            }
            same(real, model);
          }
          await real.close();
          real = await open(dir);
          same(real, model);
        } finally {
          await real.close();
          Deno.removeSync(dir, { recursive: true });
        }
      }),
      { numRuns: 100 },
    );
  });
}

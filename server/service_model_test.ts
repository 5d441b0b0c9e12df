/**
 * The data-model operations of KvService (atomic, getMany, range, the expiry sweeper) over a fake
 * Raft node and the memory state machine.
 */
import assert from "node:assert/strict";
import { MemoryStateMachine } from "../storage/memory_sm.ts";
import {
  type AtomicMutation,
  makeVersionstamp,
  nonU64ValueMessage,
  readU64le,
  u64le,
  ValueEncoding,
} from "../storage/kv_model.ts";
import { defaultNodeLimits, LimitError } from "../config/limits.ts";
import { InvalidArgumentError, MutationTypeError } from "../client/errors.ts";
import { FakeRaft } from "./testing.ts";
import { AddressBook } from "./members.ts";
import { createServerMetrics } from "./server_metrics.ts";
import { KvService } from "./service.ts";

/** The default atomic limits (Deno KV's). */
const LIMITS = defaultNodeLimits();

const b = (s: string) => new TextEncoder().encode(s);
const dec = new TextDecoder();

function node(opts: { now?: () => number } = {}) {
  const sm = new MemoryStateMachine();
  const raft = new FakeRaft(1, sm);
  const metrics = createServerMetrics({
    raft: () => ({ term: 1, commit: raft.index, applied: raft.index, isLeader: true, logSize: 0 }),
    storage: () => sm.stats(),
  });
  const service = new KvService({
    id: 1,
    raft,
    sm,
    book: new AddressBook([]),
    metrics,
    requestTimeoutMs: 1000,
    now: opts.now,
  });
  return { sm, raft, service };
}

const set = (k: string, v: string, extra: Partial<AtomicMutation> = {}): AtomicMutation =>
  ({
    type: "set",
    key: b(k),
    value: b(v),
    encoding: ValueEncoding.BYTES,
    ...extra,
  }) as AtomicMutation;

Deno.test("atomic: check-and-set commits with one versionstamp or names the failed checks", async () => {
  const { service } = node();
  const r1 = await service.atomic({
    checks: [{ key: b("k"), versionstamp: null }],
    mutations: [set("k", "1")],
  });
  assert.deepEqual(r1, { ok: true, versionstamp: makeVersionstamp(1) });
  const again = await service.atomic({
    checks: [{ key: b("k"), versionstamp: null }],
    mutations: [set("k", "2")],
  });
  assert.deepEqual(again, { ok: false, failedChecks: [0] });
  const r2 = await service.atomic({
    checks: [{ key: b("k"), versionstamp: makeVersionstamp(1) }],
    mutations: [set("k", "2"), set("j", "2")],
  });
  assert.equal(r2.ok, true);
  const { entries, consistency } = await service.getMany([b("k"), b("j"), b("none")]);
  assert.equal(consistency, "strong");
  assert.deepEqual(entries.map((e) => e && dec.decode(e.value)), ["2", "2", null]);
  assert.deepEqual(entries[0]!.versionstamp, entries[1]!.versionstamp);
  // Plain puts get versionstamps too, and checks see them.
  await service.put(b("p"), b("x"));
  const [p] = (await service.getMany([b("p")], { consistency: "eventual" })).entries;
  assert.deepEqual(p!.versionstamp, makeVersionstamp(4));
});

Deno.test("atomic: sum on a non-u64 value rejects with MutationTypeError and applies nothing", async () => {
  const { service } = node();
  await service.put(b("c"), b("text"));
  await assert.rejects(
    () =>
      service.atomic({
        checks: [],
        mutations: [set("x", "1"), { type: "sum", key: b("c"), value: u64le(1n) }],
      }),
    (e: unknown) => e instanceof MutationTypeError && e.message === nonU64ValueMessage("sum"),
  );
  assert.deepEqual((await service.getMany([b("x")])).entries, [null]);
  await service.atomic({
    checks: [],
    mutations: [{ type: "sum", key: b("n"), value: u64le(41n) }],
  });
  await service.atomic({ checks: [], mutations: [{ type: "sum", key: b("n"), value: u64le(1n) }] });
  const [n] = (await service.getMany([b("n")])).entries;
  assert.equal(n!.encoding, ValueEncoding.LE64);
  assert.equal(readU64le(n!.value), 42n);
});

Deno.test("atomic: limits and malformed operations are refused before anything is proposed", async () => {
  const { service, raft } = node();
  const big = (n: number) => new Uint8Array(n).fill(97);
  const cases: Array<[string, Parameters<KvService["atomic"]>[0], (e: unknown) => boolean]> = [
    [
      "checks",
      {
        checks: Array.from(
          { length: LIMITS.atomicChecks + 1 },
          () => ({ key: b("k"), versionstamp: null }),
        ),
        mutations: [],
      },
      (e) => e instanceof LimitError && e.limit === "atomic_checks",
    ],
    [
      "mutations",
      {
        checks: [],
        mutations: Array.from({ length: LIMITS.atomicMutations + 1 }, () => set("k", "v")),
      },
      (e) => e instanceof LimitError && e.limit === "atomic_mutations",
    ],
    [
      "key",
      { checks: [], mutations: [{ type: "delete", key: big(LIMITS.atomicKeyBytes + 1) }] },
      (e) => e instanceof LimitError && e.limit === "atomic_key_bytes",
    ],
    [
      "suffixed key",
      {
        checks: [],
        mutations: [{
          type: "setSuffixVersionstampedKey",
          key: big(LIMITS.atomicKeyBytes - 10),
          value: b("v"),
          encoding: 3,
        }],
      },
      (e) => e instanceof LimitError && e.limit === "atomic_key_bytes",
    ],
    [
      "value",
      {
        checks: [],
        mutations: [{
          type: "set",
          key: b("k"),
          value: big(LIMITS.atomicValueBytes + 1),
          encoding: 3,
        }],
      },
      (e) => e instanceof LimitError && e.limit === "atomic_value_bytes",
    ],
    [
      "total",
      {
        checks: [],
        mutations: Array.from(
          { length: Math.ceil(LIMITS.atomicTotalBytes / 60_000) + 1 },
          (_, i) => ({
            type: "set",
            key: b(`k${i}`),
            value: big(60_000),
            encoding: 3,
          }),
        ),
      },
      (e) => e instanceof LimitError && e.limit === "atomic_total_bytes",
    ],
    [
      "empty key",
      { checks: [], mutations: [set("", "v")] },
      (e) => e instanceof InvalidArgumentError,
    ],
    [
      "short versionstamp",
      { checks: [{ key: b("k"), versionstamp: new Uint8Array(3) }], mutations: [] },
      (e) => e instanceof InvalidArgumentError,
    ],
    [
      "encoding",
      {
        checks: [],
        mutations: [{ type: "set", key: b("k"), value: b("v"), encoding: 7 as ValueEncoding }],
      },
      (e) => e instanceof InvalidArgumentError,
    ],
    [
      "le64 length",
      { checks: [], mutations: [{ type: "set", key: b("k"), value: b("v"), encoding: 2 }] },
      (e) => e instanceof InvalidArgumentError,
    ],
    [
      "operand",
      { checks: [], mutations: [{ type: "max", key: b("k"), value: b("v") }] },
      (e) => e instanceof InvalidArgumentError,
    ],
    [
      "expiry",
      { checks: [], mutations: [set("k", "v", { expireAt: -5 } as Partial<AtomicMutation>)] },
      (e) => e instanceof InvalidArgumentError,
    ],
  ];
  for (const [what, op, ok] of cases) {
    await assert.rejects(() => service.atomic(op), ok, what);
  }
  assert.equal(raft.proposals, 0);
});

Deno.test("range: pages by limit with a cursor, forward and reverse, from one view", async () => {
  const { service } = node();
  for (const k of ["a1", "a2", "a3", "a4", "a5", "b1"]) await service.put(b(k), b(k));
  const keys = async (req: Parameters<KvService["range"]>[0]) => {
    const out: string[] = [];
    let cursor: Uint8Array | undefined;
    let pages = 0;
    do {
      const r = await service.range({ ...req, cursor });
      out.push(...r.entries.map((e) => dec.decode(e.key)));
      cursor = r.cursor;
      pages++;
    } while (cursor && pages < 10);
    return { out, pages };
  };
  assert.deepEqual(await keys({ prefix: b("a"), limit: 2 }), {
    out: ["a1", "a2", "a3", "a4", "a5"],
    pages: 3,
  });
  assert.deepEqual((await keys({ prefix: b("a"), limit: 2, reverse: true })).out, [
    "a5",
    "a4",
    "a3",
    "a2",
    "a1",
  ]);
  assert.deepEqual((await keys({ start: b("a3"), end: b("b2") })).out, ["a3", "a4", "a5", "b1"]);
  const one = await service.range({ prefix: b("b"), consistency: "eventual" });
  assert.equal(one.consistency, "eventual");
  assert.equal(one.cursor, undefined);
  assert.deepEqual(one.entries[0].versionstamp, makeVersionstamp(6));
});

Deno.test("expiry: the leader's sweeper deletes due keys by its clock, never before", async () => {
  let now = 10_000;
  const { service, sm } = node({ now: () => now });
  await service.atomic({
    checks: [],
    mutations: [set("ttl", "v", { expireAt: 11_000 } as Partial<AtomicMutation>), set("keep", "v")],
  });
  assert.equal(await service.sweepExpired(), 0, "nothing is due yet");
  now = 10_999;
  assert.equal(await service.sweepExpired(), 0);
  assert.ok((await service.getMany([b("ttl")])).entries[0]);
  now = 11_000;
  assert.equal(await service.sweepExpired(), 1);
  assert.deepEqual((await service.getMany([b("ttl"), b("keep")])).entries.map((e) => !!e), [
    false,
    true,
  ]);
  assert.equal(await sm.nextExpiry(), undefined);
  assert.equal(sm.clock(), 11_000);
});

Deno.test("strong reads share ReadIndex rounds: one in flight; reads arriving meanwhile wait for the next round, not that one", async () => {
  const { service, raft } = node();
  await service.put(b("k"), b("v"));
  const rounds: PromiseWithResolvers<void>[] = [];
  raft.readIndex = () => {
    const r = Promise.withResolvers<void>();
    rounds.push(r);
    return r.promise;
  };
  const tick = () => new Promise((r) => setTimeout(r, 0));
  const settled = new Set<number>();
  const read = (i: number) => service.getMany([b("k")]).then(() => settled.add(i));
  const first = read(0);
  await tick();
  assert.equal(rounds.length, 1, "the first read starts a round");
  // Three reads, each in its own event-loop turn (as HTTP/2 requests arrive), during round 1.
  const later = [];
  for (let i = 1; i <= 3; i++) {
    later.push(read(i));
    await tick();
  }
  assert.equal(rounds.length, 1, "no round per read while one is in flight");
  rounds[0].resolve();
  await first;
  await tick();
  assert.deepEqual([...settled], [0], "reads that arrived during round 1 are not served by it");
  assert.equal(rounds.length, 2, "they share the next round");
  rounds[1].resolve();
  await Promise.all(later);
  assert.deepEqual([...settled].sort(), [0, 1, 2, 3]);
  // Eventual reads take no round.
  await service.getMany([b("k")], { consistency: "eventual" });
  assert.equal(rounds.length, 2);
});

/**
 * The storage conformance suite: the same behaviour checks run unchanged against every backend
 * (memory, simplefile, lsm); reopen and kill -9 checks run against the disk backends.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { CompactedError, type LogStore, UnavailableError } from "../raft/storage.ts";
import { type ConfState, type Entry, EntryType } from "../raft/types.ts";
import {
  atomicCommand,
  deleteCommand,
  encodeBatch,
  encodeCommand,
  type KvStateMachine,
  makeVersionstamp,
  MAX_KEY_BYTES,
  type OpenedStorage,
  openStorage,
  putCommand,
  registerSessionCommand,
  SegmentLogStore,
  setClusterIdCommand,
  SimpleFileLogStore,
  type StorageKind,
  StoreLockedError,
  ValueEncoding,
} from "./mod.ts";
import { entryPayload, payloadMatches } from "./testdata/payload.ts";
import { LEGACY_CLUSTER_ID_KEY } from "./kv_core.ts";

const BACKENDS: Array<{ kind: StorageKind; disk: boolean }> = [
  { kind: "memory", disk: false },
  { kind: "simplefile", disk: true },
  { kind: "lsm", disk: true },
];

const enc = new TextEncoder();
const dec = new TextDecoder();
const b = (s: string) => enc.encode(s);
const conf: ConfState = { voters: [1, 2, 3], votersOutgoing: [], learners: [4], learnersNext: [] };

function ent(index: number, term: number, data?: Uint8Array): Entry {
  return { index, term, type: EntryType.Normal, data: data ?? entryPayload(index, term) };
}

function range(lo: number, hi: number, term: number): Entry[] {
  const out: Entry[] = [];
  for (let i = lo; i <= hi; i++) out.push(ent(i, term));
  return out;
}

/** Runs `fn` with a fresh backend in a temporary directory, closing and cleaning up after. */
async function withStorage(
  kind: StorageKind,
  fn: (s: OpenedStorage, reopen: () => Promise<OpenedStorage>, dir: string) => Promise<void>,
): Promise<void> {
  const dir = Deno.makeTempDirSync({ prefix: `gokv-storage-${kind}-` });
  let cur = await openStorage(kind, dir);
  const reopen = async () => {
    await cur.log.close();
    await cur.sm.close();
    cur = await openStorage(kind, dir);
    return cur;
  };
  try {
    await fn(cur, reopen, dir);
  } finally {
    await cur.log.close();
    await cur.sm.close();
    Deno.removeSync(dir, { recursive: true });
  }
}

function checkRange(log: LogStore, lo: number, hi: number, term: (i: number) => number): void {
  const got = log.entries(lo, hi + 1);
  assert.equal(got.length, hi - lo + 1);
  got.forEach((e, k) => {
    assert.equal(e.index, lo + k);
    assert.equal(e.term, term(e.index));
    assert.ok(payloadMatches(e.data, e.index, e.term), `payload of ${e.index}`);
  });
}

async function applyCmds(sm: KvStateMachine, from: number, cmds: Uint8Array[]) {
  return await sm.apply(cmds.map((data, i) => ({ index: from + i, data })));
}

async function dump(sm: KvStateMachine): Promise<string[]> {
  return (await sm.scan()).map(([k, v]) => `${dec.decode(k)}=${dec.decode(v)}`);
}

for (const { kind, disk } of BACKENDS) {
  Deno.test(`${kind}: the log round-trips entries, terms, bounds and hard state`, async () => {
    await withStorage(kind, async ({ log }) => {
      assert.equal(log.firstIndex(), 1);
      assert.equal(log.lastIndex(), 0);
      assert.equal(log.term(0), 0);
      assert.deepEqual(log.initialState().hardState, { term: 0, vote: 0, commit: 0 });
      log.append(range(1, 10, 1));
      log.append(range(11, 12, 2));
      log.setHardState({ term: 2, vote: 3, commit: 9 });
      await log.sync();
      assert.equal(log.lastIndex(), 12);
      checkRange(log, 1, 12, (i) => (i <= 10 ? 1 : 2));
      assert.equal(log.term(11), 2);
      assert.throws(() => log.term(13), UnavailableError);
      assert.throws(() => log.entries(5, 14), UnavailableError);
      assert.deepEqual(log.entries(4, 4), []);
      // maxBytes: the first entry always, then as many as fit.
      const one = log.entries(1, 13, 0);
      assert.equal(one.length, 1);
      const size = entryPayload(1, 1).length + entryPayload(2, 1).length;
      assert.equal(log.entries(1, 13, size).length, 2);
      assert.deepEqual(log.initialState().hardState, { term: 2, vote: 3, commit: 9 });
    });
  });

  Deno.test(`${kind}: an append replaces the conflicting suffix of the log`, async () => {
    await withStorage(kind, async ({ log }, reopen) => {
      log.append(range(1, 10, 1));
      await log.sync();
      log.append(range(6, 8, 2));
      await log.sync();
      assert.equal(log.lastIndex(), 8);
      checkRange(log, 1, 8, (i) => (i <= 5 ? 1 : 2));
      log.append(range(9, 9, 2));
      log.append(range(8, 8, 3)); // replace within an unsynced batch
      await log.sync();
      const check = (l: LogStore) => {
        assert.equal(l.lastIndex(), 8);
        checkRange(l, 1, 8, (i) => (i <= 5 ? 1 : i <= 7 ? 2 : 3));
      };
      check(log);
      if (disk) check((await reopen()).log);
    });
  });

  Deno.test(`${kind}: compaction behind a snapshot keeps later entries and the snapshot`, async () => {
    await withStorage(kind, async ({ log }, reopen) => {
      log.append(range(1, 20, 1));
      await log.sync();
      log.createSnapshot({ meta: { index: 10, term: 1, conf }, data: b("snap@10") });
      await log.sync();
      const check = (l: LogStore) => {
        assert.equal(l.firstIndex(), 11);
        assert.equal(l.lastIndex(), 20);
        assert.equal(l.term(10), 1);
        assert.throws(() => l.term(9), CompactedError);
        assert.throws(() => l.entries(10, 12), CompactedError);
        checkRange(l, 11, 20, () => 1);
        assert.deepEqual(l.snapshotMeta(), { index: 10, term: 1, conf });
        assert.equal(dec.decode(l.snapshot().data), "snap@10");
        assert.deepEqual(l.initialState().confState, conf);
      };
      check(log);
      // A stale snapshot changes nothing.
      log.createSnapshot({ meta: { index: 5, term: 1, conf }, data: b("old") });
      log.applySnapshot({ meta: { index: 8, term: 1, conf }, data: b("old") });
      await log.sync();
      check(log);
      if (disk) check(log = (await reopen()).log);

      // Installing a snapshot that matches an entry keeps the entries after it.
      log.applySnapshot({ meta: { index: 15, term: 1, conf }, data: b("snap@15") });
      await log.sync();
      const keep = (l: LogStore) => {
        assert.equal(l.firstIndex(), 16);
        assert.equal(l.lastIndex(), 20);
        checkRange(l, 16, 20, () => 1);
        assert.equal(dec.decode(l.snapshot().data), "snap@15");
      };
      keep(log);
      if (disk) keep(log = (await reopen()).log);

      // A snapshot that does not match the log discards the whole log.
      log.applySnapshot({ meta: { index: 18, term: 5, conf }, data: b("snap@18") });
      log.append(range(19, 19, 5));
      await log.sync();
      const discard = (l: LogStore) => {
        assert.equal(l.firstIndex(), 19);
        assert.equal(l.lastIndex(), 19);
        assert.equal(l.term(18), 5);
        checkRange(l, 19, 19, () => 5);
        assert.equal(dec.decode(l.snapshot().data), "snap@18");
      };
      discard(log);
      if (disk) discard((await reopen()).log);
    });
  });

  Deno.test(`${kind}: snapshot metadata keeps its member contexts (created, installed, reopened)`, async () => {
    await withStorage(kind, async ({ log }, reopen) => {
      const ctx = (id: number, s: string) => ({ id, context: b(s) });
      log.append(range(1, 20, 1));
      await log.sync();
      const created = { index: 10, term: 1, conf, memberContexts: [ctx(4, "four"), ctx(5, "")] };
      log.createSnapshot({ meta: created, data: b("snap@10") });
      await log.sync();
      created.memberContexts[0].context[0] = 0; // the store keeps its own copy
      const want = { index: 10, term: 1, conf, memberContexts: [ctx(4, "four"), ctx(5, "")] };
      assert.deepEqual(log.snapshotMeta(), want);
      assert.deepEqual(log.snapshot().meta, want);
      if (disk) {
        log = (await reopen()).log;
        assert.deepEqual(log.snapshotMeta(), want);
        assert.deepEqual(log.snapshot().meta, want);
      }
      const installed = { index: 30, term: 3, conf, memberContexts: [ctx(6, "six")] };
      log.applySnapshot({ meta: installed, data: b("snap@30") });
      await log.sync();
      assert.deepEqual(log.snapshotMeta(), installed);
      if (disk) assert.deepEqual((log = (await reopen()).log).snapshotMeta(), installed);
      // None (or an empty list): the field is absent, as in metadata written before it existed.
      log.applySnapshot({ meta: { index: 40, term: 3, conf, memberContexts: [] }, data: b("s") });
      await log.sync();
      assert.deepEqual(log.snapshotMeta(), { index: 40, term: 3, conf });
      if (disk) assert.deepEqual((await reopen()).log.snapshotMeta(), { index: 40, term: 3, conf });
    });
  });

  Deno.test(`${kind}: a state machine snapshot restores data, sessions and applied index`, async () => {
    await withStorage(kind, async ({ sm }) => {
      // Sessions 1 and 2 are registered at indexes 1 and 2.
      await applyCmds(sm, 1, [
        encodeCommand(registerSessionCommand(60_000, 100, 1000)),
        encodeCommand(registerSessionCommand(60_000, 100, 1000)),
      ]);
      const s1 = { clientId: 1n, seq: 3 };
      const s2 = { clientId: 2n, seq: 1 };
      await applyCmds(sm, 3, [
        encodeCommand(putCommand(b("a"), b("1"), s1, 1001)),
        encodeCommand(putCommand(b("b"), b("2"))),
        new Uint8Array(0),
        encodeCommand(putCommand(b("c"), b("3"), s2, 1002)),
        encodeCommand(deleteCommand(b("b"))),
      ]);
      assert.equal(sm.appliedIndex(), 7);
      const sessions = await sm.sessionList();
      assert.equal(sessions.length, 2);
      const snap = await sm.snapshot();
      // The snapshot is independent of later changes.
      await applyCmds(sm, 6, [encodeCommand(putCommand(b("z"), b("26")))]);
      for (const target of BACKENDS) {
        await withStorage(target.kind, async ({ sm: other }) => {
          await applyCmds(other, 1, [encodeCommand(putCommand(b("gone"), b("x")))]);
          await other.restore(snap, 7);
          assert.equal(other.appliedIndex(), 7);
          assert.deepEqual(await dump(other), ["a=1", "c=3"]);
          assert.deepEqual(await other.sessionList(), sessions);
          assert.equal(other.sessionCount(), 2);
          assert.equal(other.clock(), 1002);
          // Sessions came along: a retried command is not applied again, a different one under
          // the same seq is refused.
          const [r, refused] = await applyCmds(other, 8, [
            encodeCommand(putCommand(b("a"), b("1"), s1, 1003)),
            encodeCommand(putCommand(b("a"), b("X"), s1, 1003)),
          ]);
          // The retry answers the first attempt's result: its versionstamp (index 3).
          assert.deepEqual(r, { ok: true, versionstamp: makeVersionstamp(3) });
          assert.equal((refused as { error: string }).error, "session_seq");
          assert.equal(dec.decode((await other.get(b("a")))!), "1");
        });
      }
      await assert.rejects(() => sm.restore(snap.slice(0, snap.length - 1), 7));
      assert.deepEqual(await dump(sm), ["a=1", "c=3", "z=26"]);
    });
  });

  Deno.test(`${kind}: the cluster id: the first SetClusterId wins, outside the user keys, kept by reopen, snapshots and exports`, async () => {
    const first = crypto.randomUUID();
    const second = crypto.randomUUID();
    await withStorage(kind, async ({ sm }, reopen) => {
      assert.equal(sm.clusterId(), undefined);
      const res = await applyCmds(sm, 1, [
        encodeCommand(putCommand(b("a"), b("1"))),
        encodeCommand(setClusterIdCommand(first)),
        encodeCommand(setClusterIdCommand(second)),
      ]);
      assert.deepEqual(res.slice(1), [
        { ok: true, clusterId: first },
        { ok: true, clusterId: first },
      ]);
      assert.equal(sm.clusterId(), first);
      // Not a user key: no scan or read shows it.
      assert.deepEqual(await dump(sm), ["a=1"]);
      assert.deepEqual((await sm.scanEntries()).map((e) => dec.decode(e.key)), ["a"]);
      assert.equal(await sm.get(LEGACY_CLUSTER_ID_KEY), undefined);
      if (disk) sm = (await reopen()).sm;
      assert.equal(sm.clusterId(), first, "after reopen");
      const snap = await sm.snapshot();
      for (const target of BACKENDS) {
        await withStorage(target.kind, async ({ sm: other }) => {
          await applyCmds(other, 1, [encodeCommand(setClusterIdCommand(second))]);
          assert.equal(other.clusterId(), second);
          await other.restore(snap, 3);
          assert.equal(other.clusterId(), first, `snapshot restored on ${target.kind}`);
          await applyCmds(other, 4, [encodeCommand(setClusterIdCommand(second))]);
          assert.equal(other.clusterId(), first, "a later SetClusterId changes nothing");
        });
        await withStorage(target.kind, async ({ sm: other }) => {
          const view = await sm.exportState();
          try {
            await other.importState({
              appliedIndex: view.appliedIndex,
              meta: view.meta(),
              entries: view.entries(),
            });
          } finally {
            view.release();
          }
          assert.equal(other.clusterId(), first, `backup imported on ${target.kind}`);
          assert.deepEqual(await dump(other), ["a=1"]);
        });
      }
    });
  });

  Deno.test(`${kind}: the first SetClusterId adopts the id an earlier version kept under a user key, and deletes that key`, async () => {
    const legacy = crypto.randomUUID();
    await withStorage(kind, async ({ sm }) => {
      const changes: string[] = [];
      sm.onChanges = (cs) => {
        for (const c of cs) {
          changes.push(`${dec.decode(c.key.subarray(1))}=${c.entry ? "set" : "gone"}`);
        }
      };
      await applyCmds(sm, 1, [encodeCommand(putCommand(LEGACY_CLUSTER_ID_KEY, b(legacy)))]);
      const [r] = await applyCmds(sm, 2, [encodeCommand(setClusterIdCommand(crypto.randomUUID()))]);
      assert.deepEqual(r, { ok: true, clusterId: legacy });
      assert.equal(sm.clusterId(), legacy);
      assert.equal(await sm.get(LEGACY_CLUSTER_ID_KEY), undefined, "removed from the user keys");
      assert.deepEqual(await dump(sm), []);
      assert.deepEqual(changes, ["gokv:cluster-id=set", "gokv:cluster-id=gone"]);
    });
    // A value there that is not a UUID is user data: left alone, the command's id is used.
    await withStorage(kind, async ({ sm }) => {
      const mine = crypto.randomUUID();
      await applyCmds(sm, 1, [encodeCommand(putCommand(LEGACY_CLUSTER_ID_KEY, b("not an id")))]);
      const [r] = await applyCmds(sm, 2, [encodeCommand(setClusterIdCommand(mine))]);
      assert.deepEqual(r, { ok: true, clusterId: mine });
      assert.equal(dec.decode((await sm.get(LEGACY_CLUSTER_ID_KEY))!), "not an id");
    });
  });

  Deno.test(`${kind}: a snapshot reflects the state when it was asked for, even while later commands apply`, async () => {
    await withStorage(kind, async ({ sm }) => {
      const many = Array.from(
        { length: 500 },
        (_, i) => encodeCommand(putCommand(b(`k${String(i).padStart(4, "0")}`), b("old"))),
      );
      await applyCmds(sm, 1, many);
      // Ask for a snapshot and, without waiting, apply changes to every key.
      const pending = sm.snapshot();
      const later = Array.from(
        { length: 500 },
        (_, i) => encodeCommand(putCommand(b(`k${String(i).padStart(4, "0")}`), b("new"))),
      );
      const applied = applyCmds(sm, 501, later);
      const [snap] = await Promise.all([pending, applied]);
      assert.equal(sm.appliedIndex(), 1000);
      await withStorage("memory", async ({ sm: other }) => {
        await other.restore(snap, 500);
        const rows = await dump(other);
        assert.equal(rows.length, 500);
        assert.ok(rows.every((r) => r.endsWith("=old")), "snapshot saw writes made after it");
      });
    });
  });

  Deno.test(`${kind}: the applied index keeps the position of its entry's last user-key change (across a reopen); a restore does not know it`, async () => {
    await withStorage(kind, async (st, reopen) => {
      let sm = st.sm;
      const check = async (index: number, lastChange: number | undefined, what: string) => {
        assert.equal(sm.appliedIndex(), index, what);
        assert.equal(sm.appliedLastChange(), lastChange, what);
        if (!disk) return;
        sm = (await reopen()).sm;
        assert.equal(sm.appliedIndex(), index, `${what}, reopened`);
        assert.equal(sm.appliedLastChange(), lastChange, `${what}, reopened`);
      };
      const put = (k: string) => encodeCommand(putCommand(b(k), b("v")));
      assert.equal(sm.appliedLastChange(), undefined, "a new state");
      // A batch entry whose last command is a delete: its position.
      await applyCmds(sm, 1, [
        encodeBatch([put("a"), put("b"), encodeCommand(deleteCommand(b("c")))]),
      ]);
      await check(1, 2, "a batch entry");
      // The last command changed nothing (a failed check): the one before it.
      const failing = atomicCommand([{ key: b("nope"), versionstamp: makeVersionstamp(1) }], [
        { type: "set", key: b("z"), value: b("1"), encoding: ValueEncoding.BYTES },
      ]);
      await applyCmds(sm, 2, [encodeBatch([put("d"), encodeCommand(failing)])]);
      await check(2, 0, "a batch entry ending with a failed atomic");
      // The last entry of an apply changed nothing (a no-op after a put): none.
      await applyCmds(sm, 3, [put("e"), new Uint8Array(0)]);
      await check(4, -1, "a no-op after a put");
      await applyCmds(sm, 5, [put("f")]);
      await check(5, 0, "a single put");
      // A state restored from a snapshot at 5: the position is not known.
      const snap = await sm.snapshot();
      await sm.restore(snap, 5);
      await check(5, undefined, "restored");
    });
  });

  Deno.test(`${kind}: bad commands and no-ops only advance the applied index`, async () => {
    await withStorage(kind, async ({ sm }) => {
      const huge = new Uint8Array(MAX_KEY_BYTES + 1);
      const res = await applyCmds(sm, 1, [
        new Uint8Array(0),
        new Uint8Array([9, 9, 9]),
        encodeCommand(putCommand(huge, b("v"), { clientId: 1n, seq: 1 })),
        encodeCommand(putCommand(huge.subarray(1), b("v"))),
      ]);
      assert.equal(res[0], null);
      for (const r of res.slice(1, 3)) {
        assert.equal((r as { ok: boolean }).ok, false);
        assert.equal((r as { error: string }).error, "bad_command");
      }
      assert.deepEqual(res[3], { ok: true, versionstamp: makeVersionstamp(4) });
      assert.equal(sm.appliedIndex(), 4);
      assert.equal((await sm.scan()).length, 1);
      assert.equal(sm.sessionCount(), 0);
    });
  });

  Deno.test(`${kind}: scans honour start, end, prefix, limit, maxBytes and reverse`, async () => {
    await withStorage(kind, async ({ sm }) => {
      const keys = ["a", "ab", "abc", "b", "ba", "c", "\u00ff"];
      await applyCmds(sm, 1, keys.map((k) => encodeCommand(putCommand(b(k), b(k.toUpperCase())))));
      // The session table and applied index never show up in user scans.
      await applyCmds(sm, 8, [encodeCommand(registerSessionCommand(1000, 10, 5))]);
      await applyCmds(sm, 9, [encodeCommand(putCommand(b("d"), b("D"), { clientId: 8n, seq: 1 }))]);
      const ks = async (o: Parameters<KvStateMachine["scan"]>[0]) =>
        (await sm.scan(o)).map(([k]) => dec.decode(k));
      assert.deepEqual(await ks({}), ["a", "ab", "abc", "b", "ba", "c", "d", "\u00ff"]);
      assert.deepEqual(await ks({ start: b("ab"), end: b("ba") }), ["ab", "abc", "b"]);
      assert.deepEqual(await ks({ prefix: b("a") }), ["a", "ab", "abc"]);
      assert.deepEqual(await ks({ prefix: b("a"), start: b("ab"), limit: 1 }), ["ab"]);
      assert.deepEqual(await ks({ reverse: true, limit: 3 }), ["\u00ff", "d", "c"]);
      assert.deepEqual(await ks({ prefix: b("b"), reverse: true }), ["ba", "b"]);
      assert.deepEqual(await ks({ start: b("zz") }), ["\u00ff"]);
      assert.deepEqual(await ks({ limit: 0 }), []);
      // maxBytes: stop right after the pair that crosses the budget (a=2, ab=4 bytes).
      assert.deepEqual(await ks({ maxBytes: 5 }), ["a", "ab"]);
      assert.deepEqual(await ks({ maxBytes: 6 }), ["a", "ab", "abc"]);
      assert.deepEqual(await ks({ maxBytes: 0 }), ["a"]);
      assert.deepEqual(await ks({ prefix: b("b"), maxBytes: 1000 }), ["b", "ba"]);
      assert.equal(dec.decode((await sm.get(b("abc")))!), "ABC");
      assert.equal(await sm.get(b("nope")), undefined);
      const st = sm.stats();
      assert.equal(st.backend, kind);
      assert.equal(st.appliedIndex, 9);
      assert.equal(st.sessions, 1);
    });
  });

  if (!disk) continue;

  Deno.test(`${kind}: hard state, entries, snapshot and state machine survive close and reopen`, async () => {
    await withStorage(kind, async ({ log, sm }, reopen, dir) => {
      // Only one open store per directory.
      await assert.rejects(() => openStorage(kind, dir), StoreLockedError);
      log.append(range(1, 30, 2));
      log.setHardState({ term: 2, vote: 1, commit: 25 });
      log.createSnapshot({ meta: { index: 12, term: 2, conf }, data: b("snap") });
      await log.sync();
      await applyCmds(sm, 1, [
        encodeCommand(registerSessionCommand(60_000, 10, 7)),
        encodeCommand(putCommand(b("x"), b("1"), { clientId: 1n, seq: 9 }, 8)),
        encodeCommand(putCommand(b("y"), b("2"))),
        encodeCommand(deleteCommand(b("x"))),
      ]);
      const again = await reopen();
      assert.deepEqual(again.log.initialState(), {
        hardState: { term: 2, vote: 1, commit: 25 },
        confState: conf,
      });
      assert.equal(again.log.firstIndex(), 13);
      assert.equal(again.log.lastIndex(), 30);
      checkRange(again.log, 13, 30, () => 2);
      assert.deepEqual(again.log.snapshotMeta(), { index: 12, term: 2, conf });
      assert.equal(dec.decode(again.log.snapshot().data), "snap");
      assert.equal(again.sm.appliedIndex(), 4);
      assert.deepEqual(await dump(again.sm), ["y=2"]);
      assert.equal(again.sm.sessionCount(), 1);
      assert.equal(again.sm.clock(), 8);
      const s = await again.sm.session(1n);
      assert.equal(s?.lastSeq, 9);
      assert.equal(s?.lastActive, 8);
      // Still writable after reopen.
      again.log.append(range(31, 31, 3));
      await again.log.sync();
      assert.equal((await reopen()).log.lastIndex(), 31);
    });
  });

  Deno.test(`${kind}: no acknowledged entry is lost when the writer is killed with SIGKILL`, async () => {
    const dir = Deno.makeTempDirSync({ prefix: `gokv-kill-${kind}-` });
    const writer = fileURLToPath(new URL("./testdata/kill_writer.ts", import.meta.url));
    try {
      let acked = 0;
      for (let round = 0; round < 4; round++) {
        const killAfter = 5 + Math.floor(Math.random() * 60);
        const child = new Deno.Command(Deno.execPath(), {
          args: ["run", "-A", writer, kind, dir],
          stdout: "piped",
          stderr: "piped",
        }).spawn();
        const errText = new Response(child.stderr).text();
        // A deadline, not a wait: a writer that never acknowledges enough fails the test.
        const deadline = setTimeout(() => child.kill("SIGKILL"), 30_000);
        let text = "";
        let acks = 0;
        let term = 0;
        let killed = false;
        for await (const chunk of child.stdout.pipeThrough(new TextDecoderStream())) {
          text += chunk;
          let nl;
          while ((nl = text.indexOf("\n")) >= 0) {
            const [what, n] = text.slice(0, nl).split(" ");
            text = text.slice(nl + 1);
            if (what === "term") term = Number(n);
            else {
              acked = Math.max(acked, Number(n));
              acks++;
            }
          }
          if (!killed && acks >= killAfter) {
            child.kill("SIGKILL");
            killed = true;
          }
        }
        clearTimeout(deadline);
        const status = await child.status;
        assert.ok(killed, `writer stopped early (${status.code}): ${await errText}`);
        assert.ok(term > 0 && acks > 0);
        const { log, sm } = await openStorage(kind, dir);
        try {
          assert.ok(log.initialState().hardState.term >= term);
          assert.ok(log.lastIndex() >= acked, `last ${log.lastIndex()} < acked ${acked}`);
          const snap = log.snapshotMeta();
          assert.ok(snap.index <= acked);
          if (snap.index > 0) assert.ok(payloadMatches(log.snapshot().data, snap.index, snap.term));
          for (const e of log.entries(log.firstIndex(), acked + 1)) {
            assert.ok(payloadMatches(e.data, e.index, e.term), `entry ${e.index} damaged`);
          }
          assert.equal(log.entries(log.firstIndex(), acked + 1).length, acked - snap.index);
          // The state machine's applied index is exactly what its data reflects.
          const applied = sm.appliedIndex();
          assert.ok(applied <= log.lastIndex());
          const counter = await sm.get(enc.encode("counter"));
          assert.equal(counter ? Number(dec.decode(counter)) : 0, applied);
        } finally {
          await log.close();
          await sm.close();
        }
      }
    } finally {
      Deno.removeSync(dir, { recursive: true });
    }
  });
}

Deno.test("log directories written before snapshot member contexts existed still open (simplefile, lsm)", async () => {
  for (const kind of ["simplefile", "wal"] as const) {
    // Written by the previous version: entries 1-8 at term 2, a snapshot at 5, hard state.
    const src = fileURLToPath(new URL(`./testdata/old_meta/${kind}/`, import.meta.url));
    const dir = Deno.makeTempDirSync({ prefix: `gokv-old-meta-${kind}-` });
    try {
      for (const f of Deno.readDirSync(src)) {
        Deno.copyFileSync(join(src, f.name), join(dir, f.name));
      }
      const open = () => kind === "wal" ? SegmentLogStore.open(dir) : SimpleFileLogStore.open(dir);
      let log: LogStore = await open();
      const old = { voters: [1, 2, 3], votersOutgoing: [], learners: [4], learnersNext: [] };
      assert.deepEqual(log.snapshotMeta(), { index: 5, term: 2, conf: old }, kind);
      assert.deepEqual(log.initialState().hardState, { term: 2, vote: 1, commit: 8 });
      assert.equal(dec.decode(log.snapshot().data), "snap@5");
      assert.deepEqual(log.entries(6, 9).map((e) => dec.decode(e.data)), ["e6", "e7", "e8"]);
      // Written on: a snapshot with member contexts is kept across a reopen.
      const memberContexts = [{ id: 4, context: b("addr4") }];
      log.createSnapshot({ meta: { index: 7, term: 2, conf: old, memberContexts }, data: b("s7") });
      await log.sync();
      await log.close();
      log = await open();
      assert.deepEqual(log.snapshotMeta(), { index: 7, term: 2, conf: old, memberContexts });
      await log.close();
    } finally {
      Deno.removeSync(dir, { recursive: true });
    }
  }
});

/**
 * Power-loss runs of a Raft log store + KV state machine through the fault-injecting file system
 * (lsm/fault_env.ts), shared by storage/power_loss_test.ts (CI seeds) and the long sweep.
 *
 * One run is a single-node driver over a seeded workload: proposals (append + commit + one sync,
 * then apply), follower-style suffix overwrites under a new term, term/vote changes, snapshots
 * taken from the state machine, snapshots installed from a "leader". The file system crashes at
 * one mutating operation (with torn writes), or fails one write/fdatasync with EIO (the node
 * halts, then loses power), and may flip a bit of the log's files afterwards. Recovery then
 * checks:
 *
 * - open succeeds, or a CorruptionError is reported when a bit was flipped (never silent loss);
 * - the recovered log (entries, snapshot, hard state) is exactly the last acknowledged sync's
 *   state, or the state of the sync in flight (a batch is all or nothing): every acknowledged
 *   entry is present and the hard state is never behind what was acknowledged;
 * - the state machine's applied index is never ahead of its data (its content is exactly the
 *   model at its applied index) nor of the durable commit index;
 * - replaying the log from the applied index (restoring the log's snapshot first when needed)
 *   reaches the model's state at the commit index; the repaired log keeps working and survives a
 *   clean reopen.
 *
 * @module
 */
import assert from "node:assert/strict";
import { FaultEnv, InjectedIoError, SimulatedCrashError } from "../../lsm/fault_env.ts";
import { Prng } from "../../raft/sim/prng.ts";
import type { LogStore } from "../../raft/storage.ts";
import { type Entry, EntryType, type HardState } from "../../raft/types.ts";
import { CommandOp, decodeCommand, deleteCommand, encodeCommand, putCommand } from "../command.ts";
import { CorruptionError, StorageIoError } from "../errors.ts";
import type { Env } from "../fsutil.ts";
import type { KvStateMachine } from "../kv_state_machine.ts";
import { crc32c } from "../crc32c.ts";
import { ByteWriter } from "../bytes.ts";
import { encodeBatch, writeEntryRecord, writeHardStateRecord } from "../segment_format.ts";

/** How a run injects its fault. */
export type FaultMode = "crash" | "eio" | "flip";

/** Opens the stores of one backend on an env. */
export interface Backend {
  /** Name for messages. */
  name: string;
  /** Opens the log. */
  openLog(env: Env): Promise<LogStore>;
  /** Opens the state machine; `onFailure` receives its engine's background failures (the lsm
   * backend's flushes and compactions), which would otherwise be printed. */
  openSm(env: Env, onFailure: (e: Error) => void): Promise<KvStateMachine>;
  /** The directory whose files a bit flip may hit (the log's). */
  logDir: string;
  /**
   * False for a log whose sync writes entries and hard state one after the other (simplefile:
   * entries, then the state file): a crash between them recovers the new entries with the old
   * hard state. The segment log writes both in one batch: exactly the old or the new state.
   */
  atomicSync: boolean;
}

/** What a run found. */
export interface RunResult {
  /** The fault happened (the run did not finish first; then power was lost at its end). */
  faulted: boolean;
  /** Recovery reported corruption (only allowed after a bit flip). */
  corruption: boolean;
  /** Mutating operations of the run before the fault. */
  ops: number;
}

interface LogView {
  snapIndex: number;
  snapTerm: number;
  snapData: string;
  ents: string[];
  hs: HardState;
}

const conf = { voters: [1], votersOutgoing: [], learners: [], learnersNext: [] };
const KEYS = 12;
/** A fingerprint of bytes (length and CRC-32C). */
const hex = (b: Uint8Array) => `${b.length}:${crc32c(b).toString(16)}`;

function view(log: LogStore): LogView {
  const meta = log.snapshotMeta();
  const ents = log.lastIndex() >= log.firstIndex()
    ? log.entries(log.firstIndex(), log.lastIndex() + 1).map((e) =>
      `${e.index}/${e.term}/${e.type}/${hex(e.data)}`
    )
    : [];
  return {
    snapIndex: meta.index,
    snapTerm: meta.term,
    snapData: meta.index > 0 ? hex(log.snapshot().data) : "",
    ents,
    hs: { ...log.initialState().hardState },
  };
}

type Model = Map<string, string>;

function applyToModel(m: Model, data: Uint8Array): void {
  if (data.length === 0) return;
  const c = decodeCommand(data);
  if (c.op === CommandOp.Put) m.set(new TextDecoder().decode(c.key), hex(c.value));
  else if (c.op === CommandOp.Delete) m.delete(new TextDecoder().decode(c.key));
}

async function smState(sm: KvStateMachine): Promise<Model> {
  const m: Model = new Map();
  for (let i = 0; i < KEYS; i++) {
    const v = await sm.get(new TextEncoder().encode(`k${i}`));
    if (v !== undefined) m.set(`k${i}`, hex(v));
  }
  return m;
}

function sameModel(a: Model, b: Model): boolean {
  if (a.size !== b.size) return false;
  for (const [k, v] of a) if (b.get(k) !== v) return false;
  return true;
}

function command(rng: Prng): Uint8Array {
  const key = new TextEncoder().encode(`k${rng.int(KEYS)}`);
  if (rng.chance(0.15)) return encodeCommand(deleteCommand(key));
  // Random bytes (never a zeroed page); sometimes larger than a page; sometimes holding encoded
  // log batches and records, as a value that stores a copy of a WAL would (issue 11 item 12).
  const n = rng.chance(0.05) ? 4096 + rng.int(5000) : rng.int(200);
  const v = new Uint8Array(n);
  for (let i = 0; i < n; i++) v[i] = rng.int(256);
  if (!rng.chance(0.4)) return encodeCommand(putCommand(key, v));
  const w = new ByteWriter();
  w.raw(v.subarray(0, rng.int(16)));
  const rec: Entry = { index: 1 + rng.int(50), term: 1, type: EntryType.Normal, data: v };
  w.raw(encodeBatch((b) => writeEntryRecord(b, rec)));
  writeEntryRecord(w, rec, "v1");
  w.raw(encodeBatch((b) => writeHardStateRecord(b, { term: 1, vote: 1, commit: 1 })));
  w.raw(v);
  return encodeCommand(putCommand(key, w.finish()));
}

/** The driver and its model: what was acknowledged, what was in flight. */
class Node {
  /** The model state after each applied index. */
  readonly modelAt = new Map<number, Model>([[0, new Map()]]);
  acked: LogView | null = null;
  inFlight: LogView | null = null;
  /** Indexes of the snapshots taken of the state machine itself (not installed from a leader). */
  readonly localSnapshots = new Set<number>();

  constructor(readonly log: LogStore, readonly sm: KvStateMachine, readonly rng: Prng) {}

  async sync(): Promise<void> {
    this.inFlight = view(this.log);
    await this.log.sync();
    this.acked = this.inFlight;
  }

  async applyCommitted(): Promise<void> {
    const commit = this.log.initialState().hardState.commit;
    let a = this.sm.appliedIndex();
    if (a >= commit) return;
    const first = this.log.firstIndex();
    if (a < first - 1) {
      // The log was compacted past the state machine: restore from the log's snapshot.
      const snap = this.log.snapshot();
      await this.sm.restore(snap.data, snap.meta.index);
      if (!this.modelAt.has(snap.meta.index)) {
        this.modelAt.set(
          snap.meta.index,
          new Map(this.modelAt.get(this.maxModel(snap.meta.index))),
        );
      }
      a = snap.meta.index;
    }
    const ents = this.log.entries(a + 1, commit + 1);
    const m = new Map(this.modelAt.get(a)!);
    for (const e of ents) {
      applyToModel(m, e.data);
      this.modelAt.set(e.index, new Map(m));
    }
    await this.sm.apply(ents.map((e) => ({ index: e.index, data: e.data })));
  }

  maxModel(upTo: number): number {
    let best = 0;
    for (const k of this.modelAt.keys()) if (k <= upTo && k > best) best = k;
    return best;
  }

  /** One workload step: change the log, sync once, apply what is committed. */
  async step(): Promise<void> {
    const log = this.log;
    const rng = this.rng;
    const hs = log.initialState().hardState;
    const last = log.lastIndex();
    const r = rng.float();
    if (r < 0.6 || last === 0) {
      // Proposals of the leader: append, commit them, one sync (group commit).
      const n = 1 + rng.int(6);
      const ents: Entry[] = [];
      for (let i = 1; i <= n; i++) {
        const noop = rng.chance(0.05);
        ents.push({
          index: last + i,
          term: Math.max(hs.term, 1),
          type: EntryType.Normal,
          data: noop ? new Uint8Array(0) : command(rng),
        });
      }
      log.append(ents);
      log.setHardState({ term: Math.max(hs.term, 1), vote: 1, commit: last + n });
    } else if (r < 0.75) {
      // A follower's view: a new term overwrites nothing committed, appends uncommitted entries,
      // then a later term's leader replaces them (suffix overwrite) and commits.
      const term = hs.term + 1;
      log.setHardState({ term, vote: 1 + rng.int(3), commit: hs.commit });
      const n = 1 + rng.int(4);
      const ents: Entry[] = [];
      for (let i = 1; i <= n; i++) {
        ents.push({ index: last + i, term, type: EntryType.Normal, data: command(rng) });
      }
      log.append(ents);
      await this.sync();
      const from = last + 1 + rng.int(n);
      const repl: Entry[] = [];
      for (let i = from; i <= from + rng.int(3); i++) {
        repl.push({ index: i, term: term + 1, type: EntryType.Normal, data: command(rng) });
      }
      log.setHardState({ term: term + 1, vote: 0, commit: hs.commit });
      log.append(repl);
      await this.sync();
      log.setHardState({ term: term + 1, vote: 0, commit: log.lastIndex() });
    } else if (r < 0.9) {
      // A snapshot of the state machine compacts the log behind it.
      const a = this.sm.appliedIndex();
      if (a > log.snapshotMeta().index) {
        const data = await this.sm.snapshot();
        this.localSnapshots.add(a);
        log.createSnapshot({ meta: { index: a, term: log.term(a), conf }, data });
      } else {
        log.setHardState({ ...hs, term: hs.term + 1, vote: 0 });
      }
    } else {
      // A leader's snapshot past the end of the log (entries discarded): the state at the
      // current commit, at a higher index (what no-op entries in between would give).
      const a = this.sm.appliedIndex();
      const data = await this.sm.snapshot();
      const index = last + 1 + rng.int(5);
      const term = hs.term + 1;
      this.modelAt.set(index, new Map(this.modelAt.get(a)!));
      log.setHardState({ term, vote: 0, commit: index });
      log.applySnapshot({ meta: { index, term, conf }, data });
    }
    await this.sync();
    await this.applyCommitted();
  }
}

/** True when `e` or an error in its `cause` chain is an instance of `cls`. */
function causedBy(e: unknown, cls: new (...a: never[]) => Error): boolean {
  let c: unknown = e;
  for (let depth = 0; c instanceof Error && depth < 8; depth++) {
    if (c instanceof cls) return true;
    c = (c as Error).cause;
  }
  return false;
}

function isCrash(e: unknown): boolean {
  return causedBy(e, SimulatedCrashError);
}

function isEio(e: unknown): boolean {
  return causedBy(e, InjectedIoError);
}

/** Runs the workload of `seed` until it finishes `steps` steps or the fault stops it. */
async function workload(
  env: FaultEnv,
  backend: Backend,
  seed: number,
  steps: number,
  failures: Error[],
): Promise<{ node: Node | null; error: unknown }> {
  let node: Node | null = null;
  try {
    const log = await backend.openLog(env);
    const sm = await backend.openSm(env, (e) => failures.push(e));
    node = new Node(log, sm, new Prng(seed));
    node.acked = view(log);
    node.inFlight = node.acked;
    for (let i = 0; i < steps; i++) await node.step();
    return { node, error: undefined };
  } catch (e) {
    return { node, error: e };
  }
}

/**
 * Counts the mutating operations of the fault-free run of `seed`; `logSyncs` collects the numbers
 * of the fdatasyncs of the log's files (where an interrupted write can tear a batch).
 */
export async function countOps(
  backend: Backend,
  seed: number,
  steps: number,
  logSyncs?: number[],
): Promise<number> {
  const env = new FaultEnv({ seed });
  if (logSyncs) {
    env.onOp = (c) => {
      if (c.op === "sync" && c.path.startsWith(backend.logDir + "/")) logSyncs.push(c.index);
      return undefined;
    };
  }
  const failures: Error[] = [];
  const { error } = await workload(env, backend, seed, steps, failures);
  if (error) throw error;
  assert.deepEqual(failures, [], "background failures in the fault-free run");
  return env.opCount;
}

/**
 * One run: the workload of `seed` with a fault at mutating operation `at` (`mode` says which),
 * then recovery and its checks (assertions throw).
 */
export async function powerLossRun(
  backend: Backend,
  seed: number,
  steps: number,
  at: number,
  mode: FaultMode,
): Promise<RunResult> {
  let env = new FaultEnv({ seed, tornWrites: true });
  if (mode === "eio") {
    env.onOp = (c) => c.index >= at && (c.op === "write" || c.op === "sync") ? "eio" : undefined;
  } else {
    env.crashAtOp(at);
  }
  const failures: Error[] = [];
  const { node, error } = await workload(env, backend, seed, steps, failures);
  const ops = env.opCount;
  // The engine fails in the background only through the injected fault.
  for (const f of failures) {
    if (!isEio(f) && !isCrash(f)) throw new Error(`background failure: ${f}`, { cause: f });
  }
  if (error === undefined) {
    // The run finished before its fault point (the LSM engine's background work can shift the
    // numbering between runs of one seed): power is lost at the end instead.
    env.onOp = undefined;
    env = env.crash();
  } else if (mode === "eio") {
    if (!isEio(error)) throw error;
    if (node) {
      // The failed store stays failed: no retried fdatasync, no later write.
      const failed = node.log as { failure?: unknown };
      if (error instanceof StorageIoError && failed.failure === error) {
        const before = env.opCount;
        await assert.rejects(() => node.log.sync(), (e) => e === error);
        assert.throws(() => node.log.setHardState({ term: 999, vote: 0, commit: 0 }));
        assert.equal(env.opCount, before, "a failed store performs no more I/O");
      }
    }
    env.onOp = undefined;
    env = env.crash();
  } else {
    if (!isCrash(error)) throw error;
    env = env.restart();
  }
  const faulted = error !== undefined;
  if (mode === "flip") {
    const files = env.listFiles().filter((f) =>
      f.startsWith(backend.logDir + "/") && !f.endsWith("/LOCK") && env.fileBytes(f).length > 0
    );
    if (files.length > 0) env.flipBit(files[env.randomInt(files.length)]);
  }
  const acked = node?.acked ?? null;
  const inFlight = node?.inFlight ?? null;
  try {
    await recover(env, backend, node, acked, inFlight, seed);
  } catch (e) {
    if (mode === "flip" && e instanceof CorruptionError) {
      return { faulted, corruption: true, ops };
    }
    throw e;
  }
  return { faulted, corruption: false, ops };
}

async function recover(
  env: FaultEnv,
  backend: Backend,
  before: Node | null,
  acked: LogView | null,
  inFlight: LogView | null,
  seed: number,
): Promise<void> {
  const log = await backend.openLog(env);
  const got = view(log);
  if (acked) {
    const ok = [acked, inFlight].some((v) => v !== null && sameView(v, got)) ||
      (!backend.atomicSync && inFlight !== null && mixOf(acked, inFlight, got));
    if (!ok) {
      assert.fail(
        `recovered log differs from the acknowledged and in-flight states: ${
          JSON.stringify({ got: summary(got), inFlight: inFlight && summary(inFlight) })
        }`,
      );
    }
  }
  // No fault is injected after the power loss: the recovered engine must not fail.
  const failures: Error[] = [];
  const sm = await backend.openSm(env, (e) => failures.push(e));
  const node = new Node(log, sm, new Prng(seed ^ 0x5bd1e995));
  if (before) {
    for (const [k, v] of before.modelAt) node.modelAt.set(k, v);
    for (const i of before.localSnapshots) node.localSnapshots.add(i);
  }
  const a = sm.appliedIndex();
  assert.ok(a <= got.hs.commit, `applied index ${a} ahead of the durable commit ${got.hs.commit}`);
  // A snapshot resolves only once the state machine is durable up to it, so the log is never
  // compacted past what the state machine holds: it catches up by replay, not by a restore.
  if (before?.localSnapshots.has(got.snapIndex)) {
    assert.ok(
      a >= got.snapIndex,
      `state machine at ${a} behind the log's own snapshot ${got.snapIndex} (log compacted past it)`,
    );
  }
  const want = node.modelAt.get(a);
  assert.ok(want, `no model for applied index ${a}`);
  assert.ok(sameModel(await smState(sm), want), `state machine data behind its applied index ${a}`);
  await node.applyCommitted();
  const commit = got.hs.commit;
  if (node.modelAt.has(commit)) {
    assert.ok(sameModel(await smState(sm), node.modelAt.get(commit)!), "replay reaches the commit");
  }
  // The repaired stores keep working and survive a clean reopen.
  node.acked = got;
  node.inFlight = got;
  for (let i = 0; i < 3; i++) await node.step();
  const end = view(log);
  await sm.close();
  assert.deepEqual(failures, [], "background failures after recovery");
  await log.close();
  const again = await backend.openLog(env);
  assert.ok(sameView(end, view(again)), "clean reopen after recovery");
  await again.close();
}

/**
 * For a log whose sync is not one atomic write: `got` mixes the acknowledged state `s` and the one
 * in flight `t` line by line — hard state and snapshot of one of them, every entry one of theirs,
 * nothing missing below both ends, the commit index inside the log.
 */
function mixOf(s: LogView, t: LogView, got: LogView): boolean {
  const same = (a: HardState, b: HardState) =>
    a.term === b.term && a.vote === b.vote && a.commit === b.commit;
  if (!same(got.hs, s.hs) && !same(got.hs, t.hs)) return false;
  const snapOf = (v: LogView) => `${v.snapIndex}/${v.snapTerm}/${v.snapData}`;
  if (snapOf(got) !== snapOf(s) && snapOf(got) !== snapOf(t)) return false;
  const byIndex = (v: LogView) => new Map(v.ents.map((e) => [Number(e.split("/")[0]), e]));
  const sm = byIndex(s);
  const tm = byIndex(t);
  let last = got.snapIndex;
  for (const e of got.ents) {
    const i = Number(e.split("/")[0]);
    if (sm.get(i) !== e && tm.get(i) !== e) return false;
    last = i;
  }
  const lastOf = (v: LogView) => v.snapIndex + v.ents.length;
  if (last < got.hs.commit) return false;
  // A torn write that replaced a suffix (a follower's log truncation): the recovered log may end
  // inside the new suffix, shorter than the acknowledged log whose tail it replaced, as etcd's
  // WAL may. Its last entry then is one of the in-flight state only.
  const lastEntry = got.ents[got.ents.length - 1];
  if (lastEntry !== undefined && tm.get(last) === lastEntry && sm.get(last) !== lastEntry) {
    return true;
  }
  return last >= Math.min(lastOf(s), lastOf(t));
}

function sameView(a: LogView, b: LogView): boolean {
  return a.snapIndex === b.snapIndex && a.snapTerm === b.snapTerm && a.snapData === b.snapData &&
    a.hs.term === b.hs.term && a.hs.vote === b.hs.vote && a.hs.commit === b.hs.commit &&
    a.ents.length === b.ents.length && a.ents.every((e, i) => e === b.ents[i]);
}

function summary(v: LogView) {
  return {
    snap: `${v.snapIndex}/${v.snapTerm}`,
    hs: v.hs,
    ents: v.ents.map((e) => e.split("/").slice(0, 2).join("/")),
  };
}

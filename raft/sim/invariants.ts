/**
 * The safety properties of Raft (§5.2–§5.4 of the paper), checked by the simulator after every
 * step. A violation throws an {@link InvariantViolation} naming the property.
 *
 * - Election safety: at most one leader per term, over the whole history.
 * - Log matching: an (index, term) pair identifies one entry everywhere and for all time, and
 *   the entry before it has the same term everywhere (checked on every append to any log).
 * - Leader completeness: a leader of term T holds every entry known committed in a term < T.
 * - State machine safety: no two nodes apply different entries at one index; snapshots taken at
 *   one index have equal contents.
 * - Commit monotonicity: a node's commit index never decreases while it runs, and after a
 *   restart it is never below the durable commit it reloads.
 *
 * @module
 */
import type { Entry, NodeId } from "../types.ts";

/** A broken safety property. */
export class InvariantViolation extends Error {
  /** Which property ("election safety", "log matching", ...). */
  readonly property: string;
  /** Creates the error. */
  constructor(property: string, detail: string) {
    super(`${property} violated: ${detail}`);
    this.name = "InvariantViolation";
    this.property = property;
  }
}

interface EntryRecord {
  data: Uint8Array;
  type: number;
  prevTerm: number; // -1 when unknown (entry right after a compacted prefix)
}

/** What the checker needs to know about a log to check leader completeness. */
export interface LogView {
  firstIndex(): number;
  lastIndex(): number;
  term(index: number): number;
}

/** Tracks history and checks the Raft safety properties. */
export class InvariantChecker {
  #leaderOfTerm = new Map<number, NodeId>();
  #entries = new Map<number, Map<number, EntryRecord>>();
  #applied: ({ term: number; data: Uint8Array } | undefined)[] = [];
  #snapshots = new Map<number, string>();
  /** Highest commit index observed on any node while at a given term. */
  #commitAtTerm = new Map<number, number>();
  #lastCommit = new Map<NodeId, number>();
  /** How many individual checks passed (for reports). */
  checks = 0;

  /** Records that `id` is leader of `term`. */
  observeLeader(id: NodeId, term: number): void {
    this.checks++;
    const prev = this.#leaderOfTerm.get(term);
    if (prev === undefined) this.#leaderOfTerm.set(term, id);
    else if (prev !== id) {
      throw new InvariantViolation(
        "election safety",
        `nodes ${prev} and ${id} both led term ${term}`,
      );
    }
  }

  /** Records entries appended to some node's log; `prevTerm(i)` is that log's term at i (or -1). */
  observeAppend(id: NodeId, entries: readonly Entry[], prevTerm: (index: number) => number): void {
    for (const e of entries) {
      this.checks++;
      let byTerm = this.#entries.get(e.index);
      if (!byTerm) this.#entries.set(e.index, byTerm = new Map());
      const pt = prevTerm(e.index - 1);
      const rec = byTerm.get(e.term);
      if (!rec) {
        byTerm.set(e.term, { data: e.data, type: e.type, prevTerm: pt });
        continue;
      }
      if (rec.type !== e.type || !sameBytes(rec.data, e.data)) {
        throw new InvariantViolation(
          "log matching",
          `node ${id} appended a different entry at index ${e.index} term ${e.term}`,
        );
      }
      if (pt !== -1 && rec.prevTerm !== -1 && pt !== rec.prevTerm) {
        throw new InvariantViolation(
          "log matching",
          `node ${id}: entry ${e.index}/${e.term} follows term ${pt}, elsewhere term ${rec.prevTerm}`,
        );
      }
      if (rec.prevTerm === -1) rec.prevTerm = pt;
    }
  }

  /** Records that node `id` applied `entry`. */
  observeApply(id: NodeId, entry: Entry): void {
    this.checks++;
    const prev = this.#applied[entry.index];
    if (!prev) {
      this.#applied[entry.index] = { term: entry.term, data: entry.data };
      return;
    }
    if (prev.term !== entry.term || !sameBytes(prev.data, entry.data)) {
      throw new InvariantViolation(
        "state machine safety",
        `node ${id} applied ${entry.index}/${entry.term}, another node applied ${entry.index}/${prev.term}`,
      );
    }
  }

  /** Records a snapshot's contents at `index` (a canonical fingerprint of the state). */
  observeSnapshot(id: NodeId, index: number, fingerprint: string): void {
    this.checks++;
    const prev = this.#snapshots.get(index);
    if (prev === undefined) this.#snapshots.set(index, fingerprint);
    else if (prev !== fingerprint) {
      throw new InvariantViolation(
        "state machine safety",
        `node ${id} made a snapshot at ${index} that differs from another node's`,
      );
    }
  }

  /** Records node `id`'s commit index while at `term`, checking it did not decrease. */
  observeCommit(id: NodeId, term: number, commit: number): void {
    this.checks++;
    const last = this.#lastCommit.get(id) ?? 0;
    if (commit < last) {
      throw new InvariantViolation(
        "commit monotonicity",
        `node ${id} commit went from ${last} down to ${commit}`,
      );
    }
    this.#lastCommit.set(id, commit);
    if (commit > (this.#commitAtTerm.get(term) ?? 0)) this.#commitAtTerm.set(term, commit);
  }

  /** Node `id` restarted: from now on its commit may not drop below `durableCommit`. */
  observeRestart(id: NodeId, durableCommit: number): void {
    this.#lastCommit.set(id, durableCommit);
  }

  /** Checks that the new leader `id` of `term` holds every entry committed in earlier terms. */
  checkLeaderCompleteness(id: NodeId, term: number, log: LogView): void {
    let need = 0;
    for (const [t, c] of this.#commitAtTerm) if (t < term && c > need) need = c;
    this.checks++;
    if (log.lastIndex() < need) {
      throw new InvariantViolation(
        "leader completeness",
        `leader ${id} of term ${term} ends at ${log.lastIndex()}, entries up to ${need} were committed`,
      );
    }
    for (let i = log.firstIndex(); i <= need; i++) {
      const applied = this.#applied[i];
      if (applied && log.term(i) !== applied.term) {
        throw new InvariantViolation(
          "leader completeness",
          `leader ${id} of term ${term} has term ${
            log.term(i)
          } at committed index ${i} (term ${applied.term})`,
        );
      }
    }
  }

  /** The highest index applied anywhere. */
  maxApplied(): number {
    return this.#applied.length - 1;
  }

  /** Number of terms that had a leader. */
  leaderTerms(): number {
    return this.#leaderOfTerm.size;
  }
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a === b) return true;
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

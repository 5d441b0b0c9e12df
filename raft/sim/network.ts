/**
 * The simulator's network: messages are delivered after a random delay (so they reorder), may
 * be dropped or duplicated, and never cross a cut link. Links are directed, so partitions can be
 * asymmetric. All randomness comes from the {@link Prng} given at construction.
 *
 * @module
 */
import type { Message, NodeId } from "../types.ts";
import type { Prng } from "./prng.ts";

/** How unreliable the network is. */
export interface NetworkFaults {
  /** Probability that a message is lost. */
  dropRate: number;
  /** Probability that a message is delivered twice. */
  duplicateRate: number;
  /** Smallest delivery delay in steps (>= 1). */
  minDelay: number;
  /** Largest delivery delay in steps. */
  maxDelay: number;
}

/** A perfect network: every message arrives one step later, in order. */
export const RELIABLE: NetworkFaults = { dropRate: 0, duplicateRate: 0, minDelay: 1, maxDelay: 1 };

/** Decides whether a message may be delivered (scenarios use it to script the network). */
export type MessageFilter = (msg: Message) => boolean;

/** Counters of what the network did. */
export interface NetworkStats {
  sent: number;
  delivered: number;
  dropped: number;
  duplicated: number;
  blocked: number;
}

/** A simulated, seeded, faulty network. */
export class SimNetwork {
  #rng: Prng;
  /** The current fault settings (may be changed between steps). */
  faults: NetworkFaults;
  #queue = new Map<number, Message[]>();
  #cut = new Set<number>();
  #pending = 0;
  /** An extra filter applied at delivery (null = deliver everything that is not cut). */
  filter: MessageFilter | null = null;
  /** Called for each message a cut link stopped (a transport would report the peer unreachable). */
  onBlocked: ((msg: Message) => void) | null = null;
  /** What happened so far. */
  readonly stats: NetworkStats = { sent: 0, delivered: 0, dropped: 0, duplicated: 0, blocked: 0 };

  /** Creates a network drawing its randomness from `rng`. */
  constructor(rng: Prng, faults: NetworkFaults = RELIABLE) {
    this.#rng = rng;
    this.faults = faults;
  }

  /** Queues `msg` (sent at step `now`). */
  send(msg: Message, now: number): void {
    this.stats.sent++;
    const f = this.faults;
    if (this.#rng.chance(f.dropRate)) {
      this.stats.dropped++;
      return;
    }
    this.#enqueue(msg, now + this.#rng.range(f.minDelay, f.maxDelay));
    if (this.#rng.chance(f.duplicateRate)) {
      this.stats.duplicated++;
      this.#enqueue(msg, now + this.#rng.range(f.minDelay, f.maxDelay + 2));
    }
  }

  #enqueue(msg: Message, at: number): void {
    let bucket = this.#queue.get(at);
    if (!bucket) this.#queue.set(at, bucket = []);
    bucket.push(msg);
    this.#pending++;
  }

  /** Removes and returns the messages due at step `now` that may cross the network. Each is a
   * shallow copy, so a receiver can never alter what a duplicate delivers. */
  deliver(now: number): Message[] {
    const bucket = this.#queue.get(now);
    if (!bucket) return [];
    this.#queue.delete(now);
    this.#pending -= bucket.length;
    const out: Message[] = [];
    for (const msg of bucket) {
      if (this.#cut.has(link(msg.from, msg.to))) {
        this.stats.blocked++;
        this.onBlocked?.(msg);
        continue;
      }
      if (this.filter && !this.filter(msg)) {
        this.stats.blocked++;
        continue;
      }
      this.stats.delivered++;
      out.push({ ...msg });
    }
    return out;
  }

  /** Messages in flight. */
  inFlight(): number {
    return this.#pending;
  }

  /** Drops every message in flight. */
  clear(): void {
    this.#queue.clear();
    this.#pending = 0;
  }

  /** Cuts the directed link from `from` to `to`. */
  cutOneWay(from: NodeId, to: NodeId): void {
    this.#cut.add(link(from, to));
  }

  /** Cuts both directions between `a` and `b`. */
  cut(a: NodeId, b: NodeId): void {
    this.cutOneWay(a, b);
    this.cutOneWay(b, a);
  }

  /** True when messages from `from` cannot reach `to`. */
  isCut(from: NodeId, to: NodeId): boolean {
    return this.#cut.has(link(from, to));
  }

  /** Separates `group` from every node in `others` (both directions). */
  partition(group: readonly NodeId[], others: readonly NodeId[]): void {
    for (const a of group) for (const b of others) this.cut(a, b);
  }

  /** Cuts `id` off from every node in `all`. */
  isolate(id: NodeId, all: readonly NodeId[]): void {
    for (const other of all) if (other !== id) this.cut(id, other);
  }

  /** Restores every link. */
  healAll(): void {
    this.#cut.clear();
  }

  /** True when some link is cut. */
  hasCuts(): boolean {
    return this.#cut.size > 0;
  }
}

function link(from: NodeId, to: NodeId): number {
  return from * 65536 + to;
}

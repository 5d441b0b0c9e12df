/**
 * Linearizable ReadIndex bookkeeping (Raft thesis §6.4). Requests that arrive between two
 * Readys are batched into one "round": the leader records its commit index, sends one heartbeat
 * round carrying the round's context, and answers every request of the round (and of older
 * rounds) once a quorum acknowledged it.
 *
 * @module
 */
import type { Message, NodeId } from "./types.ts";

/** One heartbeat round confirming leadership for a batch of reads. */
export interface ReadRound {
  seq: number;
  /** The commit index recorded when the round started. */
  index: number;
  acks: Set<NodeId>;
  reqs: Message[];
}

/** Encodes a round number as a heartbeat context. */
export function encodeRoundCtx(seq: number): Uint8Array {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setFloat64(0, seq);
  return b;
}

/** Decodes a heartbeat context; -1 when it is not a round context. */
export function decodeRoundCtx(ctx: Uint8Array): number {
  if (ctx.length !== 8) return -1;
  const v = new DataView(ctx.buffer, ctx.byteOffset, 8).getFloat64(0);
  return Number.isSafeInteger(v) ? v : -1;
}

/** Queued and in-flight read rounds. */
export class ReadOnly {
  /** Requests waiting for the next round. */
  queued: Message[] = [];
  private rounds: ReadRound[] = [];
  private seq = 0;

  /** Queues a request for the next round. */
  enqueue(m: Message): void {
    this.queued.push(m);
  }

  /** Starts a round for the queued requests at commit index `index`; returns it. */
  startRound(index: number): ReadRound | null {
    if (this.queued.length === 0) return null;
    const r: ReadRound = { seq: ++this.seq, index, acks: new Set(), reqs: this.queued };
    this.queued = [];
    this.rounds.push(r);
    return r;
  }

  /** The context of the newest pending round (sent on periodic heartbeats), or null. */
  lastPendingCtx(): Uint8Array | null {
    if (this.rounds.length === 0) return null;
    return encodeRoundCtx(this.rounds[this.rounds.length - 1].seq);
  }

  /** Records an acknowledgement; returns the round when known. */
  recvAck(from: NodeId, ctx: Uint8Array): ReadRound | null {
    const seq = decodeRoundCtx(ctx);
    if (seq < 0) return null;
    for (const r of this.rounds) {
      if (r.seq === seq) {
        r.acks.add(from);
        return r;
      }
    }
    return null;
  }

  /** Removes and returns every round up to and including `seq`, oldest first. */
  advance(seq: number): ReadRound[] {
    let n = 0;
    while (n < this.rounds.length && this.rounds[n].seq <= seq) n++;
    if (n === 0) return [];
    const out = this.rounds.slice(0, n);
    this.rounds = this.rounds.slice(n);
    return out;
  }

  pendingCount(): number {
    return this.rounds.length + this.queued.length;
  }

  reset(): void {
    this.queued = [];
    this.rounds = [];
  }
}

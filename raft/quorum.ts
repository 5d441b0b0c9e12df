/**
 * Quorum arithmetic for majority and joint (C(old,new)) configurations.
 *
 * @module
 */
import type { NodeId } from "./types.ts";

/** The outcome of a vote count. */
export type VoteResult = "won" | "lost" | "pending";

/**
 * The highest index acknowledged by a majority of `voters`, given each voter's match index.
 * An empty configuration returns +Infinity so that it never constrains a joint configuration.
 */
export function majorityCommitted(voters: Set<NodeId>, match: (id: NodeId) => number): number {
  const n = voters.size;
  if (n === 0) return Infinity;
  if (n === 1) { for (const id of voters) return match(id); }
  const arr = new Array<number>(n);
  let i = 0;
  for (const id of voters) arr[i++] = match(id);
  arr.sort((a, b) => b - a);
  return arr[n >> 1];
}

/** The result of a vote in a majority configuration (empty ⇒ won). */
export function majorityVote(voters: Set<NodeId>, votes: Map<NodeId, boolean>): VoteResult {
  if (voters.size === 0) return "won";
  let yes = 0;
  let missing = 0;
  for (const id of voters) {
    const v = votes.get(id);
    if (v === undefined) missing++;
    else if (v) yes++;
  }
  const q = (voters.size >> 1) + 1;
  if (yes >= q) return "won";
  if (yes + missing >= q) return "pending";
  return "lost";
}

/** The committed index of a joint configuration: the minimum of both majorities. */
export function jointCommitted(
  incoming: Set<NodeId>,
  outgoing: Set<NodeId>,
  match: (id: NodeId) => number,
): number {
  const a = majorityCommitted(incoming, match);
  const b = majorityCommitted(outgoing, match);
  const c = Math.min(a, b);
  return c === Infinity ? 0 : c;
}

/** The result of a vote in a joint configuration: both majorities must agree. */
export function jointVote(
  incoming: Set<NodeId>,
  outgoing: Set<NodeId>,
  votes: Map<NodeId, boolean>,
): VoteResult {
  const a = majorityVote(incoming, votes);
  const b = majorityVote(outgoing, votes);
  if (a === b) return a;
  if (a === "lost" || b === "lost") return "lost";
  return "pending";
}

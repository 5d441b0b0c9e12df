/**
 * A linearizability checker for key-value histories (Wing & Gong's search with Lowe's
 * memoization, as in Porcupine), partitioned per key.
 *
 * Models: a register per key (put, get, delete, and compare-and-set: `cas` sets the value when
 * it equals `expected`, null meaning missing, and answers `"ok"` or `"fail"`), and a register per
 * group of keys written and read together (`mput` sets every key of the group in one step,
 * `mget` reads them all from one state: an atomic multi-key operation is visible all or nothing
 * exactly when the group's history is linearizable). A group's `key` is its name; its keys are
 * used by no single-key operation.
 *
 * A history is a list of completed or pending operations, each with the logical time it was
 * invoked and the time its response arrived. An operation whose outcome is unknown (the client
 * timed out) has `ret = Infinity`: it may take effect at any point after its invocation, or never
 * (placing it after every other operation is the same as never).
 *
 * @example
 * ```ts
 * import { checkLinearizable } from "./linearizability.ts";
 * const result = checkLinearizable([
 *   { client: 1, call: 0, ret: 1, input: { kind: "put", key: "a", value: "1" } },
 *   { client: 2, call: 2, ret: 3, input: { kind: "get", key: "a" }, output: "1" },
 * ]);
 * console.assert(result.ok);
 * ```
 *
 * @module
 */

/** What an operation asked for. */
export type KvInput =
  | { kind: "put"; key: string; value: string }
  | { kind: "get"; key: string }
  | { kind: "delete"; key: string }
  | { kind: "cas"; key: string; expected: string | null; value: string }
  | { kind: "mput"; key: string; keys: string[]; values: string[] }
  | { kind: "mget"; key: string; keys: string[] };

/** One operation of a history. */
export interface KvOperation {
  /** The client that issued it (for reports only). */
  client: number;
  /** Logical time of the invocation. */
  call: number;
  /** Logical time of the response; `Infinity` when the outcome is unknown. */
  ret: number;
  /** The request. */
  input: KvInput;
  /** For a completed get: the value read, or `null` for a missing key; for a completed cas:
   * `"ok"` or `"fail"`; for a completed mget: the JSON array of the values read (null: missing).
   * Ignored otherwise. */
  output?: string | null;
  /** True when the write completed with an answer that it was not applied (a session refusal
   * such as an expired session): it has no effect, and a read that sees its value is a
   * violation. */
  notApplied?: boolean;
}

/** The verdict of {@link checkLinearizable}. */
export interface LinearizabilityResult {
  /** True when every key's history is linearizable. */
  ok: boolean;
  /** The first key whose history is not linearizable (when `ok` is false). */
  key?: string;
  /** That key's operations, sorted by invocation (when `ok` is false). */
  operations?: KvOperation[];
  /** True when the search gave up (budget exhausted) for some key; `ok` is then true only if
   * no key was proven non-linearizable. */
  inconclusive?: boolean;
}

/** Options of {@link checkLinearizable}. */
export interface CheckOptions {
  /** Maximum search steps per key before giving up as inconclusive (default 2,000,000). */
  maxStepsPerKey?: number;
}

/**
 * Checks that a key-value history is linearizable with respect to a map whose keys start
 * missing. Gets with unknown outcome are ignored (they have no effect).
 */
export function checkLinearizable(
  history: readonly KvOperation[],
  options: CheckOptions = {},
): LinearizabilityResult {
  const byKey = new Map<string, KvOperation[]>();
  for (const op of history) {
    if ((op.input.kind === "get" || op.input.kind === "mget") && op.ret === Infinity) continue;
    if (op.notApplied) continue;
    if (op.ret < op.call) throw new RangeError(`operation returns before it is called: ${op.call}`);
    let list = byKey.get(op.input.key);
    if (!list) byKey.set(op.input.key, list = []);
    list.push(op);
  }
  let inconclusive = false;
  const keys = [...byKey.keys()].sort();
  for (const key of keys) {
    const ops = byKey.get(key)!;
    const verdict = checkRegister(ops, options.maxStepsPerKey ?? 2_000_000);
    if (verdict === "no") {
      return { ok: false, key, operations: [...ops].sort((a, b) => a.call - b.call) };
    }
    if (verdict === "unknown") inconclusive = true;
  }
  return inconclusive ? { ok: true, inconclusive } : { ok: true };
}

/** One call or return event in the doubly linked list the search walks. */
interface Node {
  op: number;
  isCall: boolean;
  time: number;
  match: Node | null; // call -> its return
  prev: Node | null;
  next: Node | null;
}

/** Applies `op` to a register state; returns the new state or `undefined` if the output is
 * impossible from `state`. State `null` = missing. */
function step(state: string | null, op: KvOperation): string | null | undefined {
  switch (op.input.kind) {
    case "put":
      return op.input.value;
    case "delete":
      return null;
    case "get":
      return (op.output ?? null) === state ? state : undefined;
    case "cas": {
      const match = state === op.input.expected;
      // Outcome unknown: it took effect here (setting the value if it matched) or never (the
      // search may also place it after everything else).
      if (op.ret === Infinity) return match ? op.input.value : state;
      if (op.output === "ok") return match ? op.input.value : undefined;
      return match ? undefined : state;
    }
    case "mput":
      return JSON.stringify(op.input.values);
    case "mget": {
      const seen = op.output ?? JSON.stringify(op.input.keys.map(() => null));
      const now = state ?? JSON.stringify(op.input.keys.map(() => null));
      return seen === now ? state : undefined;
    }
  }
}

function checkRegister(ops: KvOperation[], maxSteps: number): "yes" | "no" | "unknown" {
  const n = ops.length;
  // Events sorted by time; at equal times calls come after returns (strict real-time order:
  // an operation that returned at t precedes one called at t).
  const events: Node[] = [];
  for (let i = 0; i < n; i++) {
    const call: Node = {
      op: i,
      isCall: true,
      time: ops[i].call,
      match: null,
      prev: null,
      next: null,
    };
    const ret: Node = {
      op: i,
      isCall: false,
      time: ops[i].ret,
      match: null,
      prev: null,
      next: null,
    };
    call.match = ret;
    events.push(call, ret);
  }
  events.sort((a, b) =>
    a.time !== b.time ? a.time - b.time : a.isCall === b.isCall ? a.op - b.op : a.isCall ? 1 : -1
  );
  const head: Node = {
    op: -1,
    isCall: false,
    time: -Infinity,
    match: null,
    prev: null,
    next: null,
  };
  let tail = head;
  for (const e of events) {
    tail.next = e;
    e.prev = tail;
    tail = e;
  }

  const lift = (call: Node): void => {
    call.prev!.next = call.next;
    if (call.next) call.next.prev = call.prev;
    const ret = call.match!;
    ret.prev!.next = ret.next;
    if (ret.next) ret.next.prev = ret.prev;
  };
  const unlift = (call: Node): void => {
    const ret = call.match!;
    ret.prev!.next = ret;
    if (ret.next) ret.next.prev = ret;
    call.prev!.next = call;
    if (call.next) call.next.prev = call;
  };

  const words = Math.ceil(n / 32) || 1;
  const linearized = new Uint32Array(words);
  const cache = new Set<string>();
  const cacheKey = (state: string | null): string => {
    let k = state === null ? "\u0000" : "\u0001" + state;
    for (let i = 0; i < words; i++) k += "," + linearized[i];
    return k;
  };
  const stack: { call: Node; state: string | null }[] = [];
  let state: string | null = null;
  let entry = head.next;
  let steps = 0;
  while (head.next !== null) {
    if (++steps > maxSteps) return "unknown";
    if (entry === null) throw new Error("linearizability search ran off the event list");
    if (entry.isCall) {
      const next = step(state, ops[entry.op]);
      if (next !== undefined) {
        linearized[entry.op >>> 5] |= 1 << (entry.op & 31);
        const key = cacheKey(next);
        if (!cache.has(key)) {
          cache.add(key);
          stack.push({ call: entry, state });
          state = next;
          lift(entry);
          entry = head.next;
          continue;
        }
        linearized[entry.op >>> 5] &= ~(1 << (entry.op & 31));
      }
      entry = entry.next;
    } else {
      // A return whose call is not linearized yet: undo the last choice.
      const top = stack.pop();
      if (!top) return "no";
      state = top.state;
      linearized[top.call.op >>> 5] &= ~(1 << (top.call.op & 31));
      unlift(top.call);
      entry = top.call.next;
    }
  }
  return "yes";
}

/** Renders a history (for failure reports) one operation per line. */
export function formatHistory(ops: readonly KvOperation[]): string {
  return ops.map((op) => {
    const inp = op.input;
    const what = inp.kind === "put"
      ? `put(${inp.key}, ${inp.value})`
      : inp.kind === "delete"
      ? `delete(${inp.key})`
      : inp.kind === "cas"
      ? `cas(${inp.key}, ${inp.expected ?? "missing"} -> ${inp.value}) -> ${op.output ?? "?"}`
      : inp.kind === "mput"
      ? `mput(${inp.keys.join(",")} = ${inp.values.join(",")})`
      : inp.kind === "mget"
      ? `mget(${inp.keys.join(",")}) -> ${op.output ?? "?"}`
      : `get(${inp.key}) -> ${op.output === null ? "missing" : op.output}`;
    const ret = op.ret === Infinity ? "?" : String(op.ret);
    return `client ${op.client} [${op.call}, ${ret}] ${what}`;
  }).join("\n");
}

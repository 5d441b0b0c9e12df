import assert from "node:assert/strict";
import { checkLinearizable, formatHistory, type KvOperation } from "./linearizability.ts";
import { Prng } from "./sim/prng.ts";

const put = (
  client: number,
  call: number,
  ret: number,
  key: string,
  value: string,
): KvOperation => ({
  client,
  call,
  ret,
  input: { kind: "put", key, value },
});
const get = (
  client: number,
  call: number,
  ret: number,
  key: string,
  output: string | null,
): KvOperation => ({ client, call, ret, input: { kind: "get", key }, output });
const del = (client: number, call: number, ret: number, key: string): KvOperation => ({
  client,
  call,
  ret,
  input: { kind: "delete", key },
});

Deno.test("an empty history is linearizable", () => {
  assert.equal(checkLinearizable([]).ok, true);
});

Deno.test("sequential put then get of the written value is linearizable", () => {
  assert.equal(checkLinearizable([put(1, 0, 1, "a", "x"), get(2, 2, 3, "a", "x")]).ok, true);
});

Deno.test("a get after a completed put that reads the old value is not linearizable", () => {
  const history = [put(1, 0, 1, "a", "x"), put(1, 2, 3, "a", "y"), get(2, 4, 5, "a", "x")];
  const result = checkLinearizable(history);
  assert.equal(result.ok, false);
  assert.equal(result.key, "a");
  assert.equal(result.operations?.length, 3);
});

Deno.test("a get of a never-written key must return missing", () => {
  assert.equal(checkLinearizable([get(1, 0, 1, "a", null)]).ok, true);
  assert.equal(checkLinearizable([get(1, 0, 1, "a", "x")]).ok, false);
});

Deno.test("a get concurrent with a put may read either value", () => {
  const base = [put(1, 0, 1, "a", "x"), put(1, 2, 10, "a", "y")];
  assert.equal(checkLinearizable([...base, get(2, 3, 4, "a", "x")]).ok, true);
  assert.equal(checkLinearizable([...base, get(2, 3, 4, "a", "y")]).ok, true);
  assert.equal(checkLinearizable([...base, get(2, 3, 4, "a", "z")]).ok, false);
});

Deno.test("two concurrent gets may not observe a new value then the old one in order", () => {
  // put(y) is concurrent with both gets, but get#1 returned before get#2 started: once y was
  // observed, the old value may not come back.
  const history = [
    put(1, 0, 1, "a", "x"),
    put(1, 2, 20, "a", "y"),
    get(2, 3, 4, "a", "y"),
    get(3, 5, 6, "a", "x"),
  ];
  assert.equal(checkLinearizable(history).ok, false);
  // The other order is fine.
  const ok = [
    put(1, 0, 1, "a", "x"),
    put(1, 2, 20, "a", "y"),
    get(2, 3, 4, "a", "x"),
    get(3, 5, 6, "a", "y"),
  ];
  assert.equal(checkLinearizable(ok).ok, true);
});

Deno.test("delete makes the key read as missing", () => {
  assert.equal(
    checkLinearizable([put(1, 0, 1, "a", "x"), del(1, 2, 3, "a"), get(2, 4, 5, "a", null)]).ok,
    true,
  );
  assert.equal(
    checkLinearizable([put(1, 0, 1, "a", "x"), del(1, 2, 3, "a"), get(2, 4, 5, "a", "x")]).ok,
    false,
  );
});

Deno.test("a timed-out put may have taken effect", () => {
  const history = [put(1, 0, Infinity, "a", "x"), get(2, 5, 6, "a", "x")];
  assert.equal(checkLinearizable(history).ok, true);
});

Deno.test("a timed-out put may also never take effect", () => {
  const history = [put(1, 0, Infinity, "a", "x"), get(2, 5, 6, "a", null)];
  assert.equal(checkLinearizable(history).ok, true);
});

Deno.test("a timed-out put cannot take effect before it was invoked", () => {
  const history = [get(2, 0, 1, "a", "x"), put(1, 2, Infinity, "a", "x")];
  assert.equal(checkLinearizable(history).ok, false);
});

Deno.test("a timed-out put takes effect at most once: no flip-flop between reads", () => {
  const history = [
    put(1, 0, 1, "a", "old"),
    put(2, 2, Infinity, "a", "new"),
    get(3, 3, 4, "a", "new"),
    get(3, 5, 6, "a", "old"),
  ];
  assert.equal(checkLinearizable(history).ok, false);
});

Deno.test("timed-out gets are ignored", () => {
  const history = [put(1, 0, 1, "a", "x"), get(2, 2, Infinity, "a", "nonsense")];
  assert.equal(checkLinearizable(history).ok, true);
});

Deno.test("keys are checked independently and the failing key is reported", () => {
  const history = [
    put(1, 0, 1, "a", "1"),
    put(1, 2, 3, "b", "2"),
    get(2, 4, 5, "a", "1"),
    get(2, 6, 7, "b", "1"),
  ];
  const result = checkLinearizable(history);
  assert.equal(result.ok, false);
  assert.equal(result.key, "b");
  assert.match(formatHistory(result.operations!), /get\(b\) -> 1/);
});

Deno.test("an operation returning at the time another is called precedes it", () => {
  // Logical times are strict: ret 1 < call 1 is impossible, ret 1 == call 1 orders them.
  assert.equal(checkLinearizable([put(1, 0, 1, "a", "x"), get(2, 1, 2, "a", null)]).ok, false);
});

Deno.test("a long history of many concurrent writers is checked quickly", () => {
  // Simulate a correct register: each operation takes effect at a random instant inside its
  // interval; the resulting history must be linearizable.
  const rng = new Prng(7);
  const history: KvOperation[] = [];
  const events: { at: number; op: KvOperation }[] = [];
  for (let i = 0; i < 400; i++) {
    const call = rng.int(2000);
    const ret = call + 1 + rng.int(40);
    const at = call + rng.float() * (ret - call);
    const client = rng.int(8);
    const op: KvOperation = rng.chance(0.5)
      ? put(client, call, ret, "k" + rng.int(3), String(i))
      : rng.chance(0.2)
      ? del(client, call, ret, "k" + rng.int(3))
      : get(client, call, ret, "k" + rng.int(3), null);
    history.push(op);
    events.push({ at, op });
  }
  events.sort((a, b) => a.at - b.at);
  const state = new Map<string, string>();
  for (const { op } of events) {
    if (op.input.kind === "put") state.set(op.input.key, op.input.value);
    else if (op.input.kind === "delete") state.delete(op.input.key);
    else op.output = state.get(op.input.key) ?? null;
  }
  const t0 = performance.now();
  assert.deepEqual(checkLinearizable(history), { ok: true });
  assert.ok(performance.now() - t0 < 5000);
  // Corrupt one read: the checker must notice.
  const reads = history.filter((op) => op.input.kind === "get");
  reads[reads.length >> 1].output = "never-written";
  assert.equal(checkLinearizable(history).ok, false);
});

Deno.test("the search gives up as inconclusive when its budget runs out", () => {
  const history: KvOperation[] = [];
  for (let i = 0; i < 20; i++) history.push(put(i, 0, 100, "a", String(i)));
  history.push(get(99, 101, 102, "a", "nope"));
  const result = checkLinearizable(history, { maxStepsPerKey: 10 });
  assert.equal(result.ok, true);
  assert.equal(result.inconclusive, true);
});

const cas = (
  client: number,
  call: number,
  ret: number,
  key: string,
  expected: string | null,
  value: string,
  output?: "ok" | "fail",
): KvOperation => ({ client, call, ret, input: { kind: "cas", key, expected, value }, output });
const G = ["g.a", "g.b"];
const mput = (client: number, call: number, ret: number, values: string[]): KvOperation => ({
  client,
  call,
  ret,
  input: { kind: "mput", key: "g", keys: G, values },
});
const mget = (client: number, call: number, ret: number, seen: (string | null)[]) => ({
  client,
  call,
  ret,
  input: { kind: "mget" as const, key: "g", keys: G },
  output: JSON.stringify(seen),
});

Deno.test("compare-and-set: succeeds only on the expected value, fails otherwise", () => {
  assert.equal(
    checkLinearizable([
      put(1, 0, 1, "a", "x"),
      cas(2, 2, 3, "a", "x", "y", "ok"),
      cas(3, 4, 5, "a", "x", "z", "fail"),
      get(1, 6, 7, "a", "y"),
    ]).ok,
    true,
  );
  // Two sequential CAS from the same expected value cannot both succeed.
  assert.equal(
    checkLinearizable([
      put(1, 0, 1, "a", "x"),
      cas(2, 2, 3, "a", "x", "y", "ok"),
      cas(3, 4, 5, "a", "x", "z", "ok"),
    ]).ok,
    false,
  );
  // A CAS that reports failure although the value matched is not linearizable.
  assert.equal(checkLinearizable([cas(1, 0, 1, "a", null, "v", "fail")]).ok, false);
  // On a missing key, expected null succeeds.
  assert.equal(
    checkLinearizable([cas(1, 0, 1, "a", null, "v", "ok"), get(2, 2, 3, "a", "v")]).ok,
    true,
  );
});

Deno.test("compare-and-set: concurrent ones serialize; one of unknown outcome may apply or not", () => {
  // Concurrent: exactly one of two may win.
  assert.equal(
    checkLinearizable([
      cas(1, 0, 5, "a", null, "p", "ok"),
      cas(2, 1, 4, "a", null, "q", "fail"),
      get(3, 6, 7, "a", "p"),
    ]).ok,
    true,
  );
  // Unknown outcome: a later read may see it applied...
  assert.equal(
    checkLinearizable([cas(1, 0, Infinity, "a", null, "p"), get(2, 2, 3, "a", "p")]).ok,
    true,
  );
  // ...or not.
  assert.equal(
    checkLinearizable([cas(1, 0, Infinity, "a", null, "p"), get(2, 2, 3, "a", null)]).ok,
    true,
  );
  // But it cannot apply when the value did not match.
  assert.equal(
    checkLinearizable([
      put(1, 0, 1, "a", "x"),
      cas(2, 2, Infinity, "a", "zzz", "p"),
      get(3, 4, 5, "a", "p"),
    ]).ok,
    false,
  );
});

Deno.test("multi-key writes: reads see all of an atomic write or none of it", () => {
  assert.equal(
    checkLinearizable([
      mget(1, 0, 1, [null, null]),
      mput(2, 2, 3, ["1a", "1b"]),
      mget(1, 4, 5, ["1a", "1b"]),
    ]).ok,
    true,
  );
  // Torn: one key of the write visible, the other not.
  const torn = checkLinearizable([mput(2, 0, 10, ["1a", "1b"]), mget(1, 2, 3, ["1a", null])]);
  assert.equal(torn.ok, false);
  assert.equal(torn.key, "g");
  // Mixed from two writes.
  assert.equal(
    checkLinearizable([
      mput(1, 0, 1, ["1a", "1b"]),
      mput(2, 2, 10, ["2a", "2b"]),
      mget(3, 3, 4, ["2a", "1b"]),
    ]).ok,
    false,
  );
  assert.match(formatHistory([mput(1, 0, 1, ["x", "y"])]), /mput\(g\.a,g\.b = x,y\)/);
});

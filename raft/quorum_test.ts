// Quorum arithmetic checked against brute force (fast-check properties).
import assert from "node:assert/strict";
import fc from "fast-check";
import { jointCommitted, majorityCommitted, majorityVote } from "./quorum.ts";

const matchArb = fc.dictionary(
  fc.integer({ min: 1, max: 9 }).map(String),
  fc.integer({ min: 0, max: 20 }),
  { minKeys: 1, maxKeys: 7 },
);

Deno.test("quorum: the committed index is the largest index a majority has reached", () => {
  fc.assert(fc.property(matchArb, (m) => {
    const voters = new Set(Object.keys(m).map(Number));
    const got = majorityCommitted(voters, (id) => m[String(id)]);
    const q = (voters.size >> 1) + 1;
    const reached = (i: number) => [...voters].filter((id) => m[String(id)] >= i).length >= q;
    assert.ok(reached(got));
    assert.ok(!reached(got + 1));
  }));
});

Deno.test("quorum: a joint committed index is reached by majorities of both halves", () => {
  fc.assert(fc.property(matchArb, fc.integer({ min: 0, max: 127 }), (m, mask) => {
    const ids = Object.keys(m).map(Number);
    const a = new Set(ids.filter((_, i) => (mask >> i) & 1));
    const b = new Set(ids.filter((_, i) => !((mask >> i) & 1) || i === 0));
    const match = (id: number) => m[String(id)];
    const got = jointCommitted(a, b, match);
    const ok = (s: Set<number>, i: number) =>
      s.size === 0 || [...s].filter((id) => match(id) >= i).length > s.size / 2;
    assert.ok(ok(a, got) && ok(b, got));
    assert.ok(!(ok(a, got + 1) && ok(b, got + 1)));
  }));
});

Deno.test("quorum: a vote is won only with a strict majority of yes votes", () => {
  fc.assert(fc.property(
    fc.array(fc.constantFrom<boolean | undefined>(true, false, undefined), {
      minLength: 1,
      maxLength: 7,
    }),
    (vs) => {
      const voters = new Set(vs.map((_, i) => i + 1));
      const votes = new Map<number, boolean>();
      vs.forEach((v, i) => v !== undefined && votes.set(i + 1, v));
      const yes = vs.filter((v) => v === true).length;
      const no = vs.filter((v) => v === false).length;
      const r = majorityVote(voters, votes);
      const q = (vs.length >> 1) + 1;
      assert.equal(r, yes >= q ? "won" : vs.length - no >= q ? "pending" : "lost");
    },
  ));
});

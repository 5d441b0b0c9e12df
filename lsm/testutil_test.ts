/**
 * Shared helpers for lsm tests (a *_test.ts file so it is never published;
 * it declares one trivial test of the PRNG itself).
 * @module
 */
import assert from "node:assert/strict";
import { mulberry32 } from "./prng.ts";
import type { LsmDb } from "./db.ts";

/** Deterministic PRNG (mulberry32) returning floats in [0, 1). */
export const prng: (seed: number) => () => number = mulberry32;

/** Random bytes of length n from `r`. */
export function randomBytes(r: () => number, n: number): Uint8Array {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i++) b[i] = Math.floor(r() * 256);
  return b;
}

const enc = new TextEncoder();
const dec = new TextDecoder();
/** UTF-8 encode. */
export const b = (s: string): Uint8Array => enc.encode(s);
/** UTF-8 decode. */
export const s = (x: Uint8Array | undefined): string | undefined =>
  x === undefined ? undefined : dec.decode(x);

/** Runs `f` with a fresh temporary directory, removed afterwards. */
export async function withTempDir(f: (dir: string) => Promise<void> | void): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "lsm_test_" });
  try {
    await f(dir);
  } finally {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

/** SSTables in `dir` (live or not). */
export function tablesOnDisk(dir: string): number {
  return [...Deno.readDirSync(dir)].filter((d) => d.name.endsWith(".sst")).length;
}

/** Tables in `db`'s current version, over all levels. */
export function liveTables(db: LsmDb): number {
  return db.stats().levels.reduce((a, l) => a + l.files, 0);
}

/**
 * Once the background work is idle, the directory holds exactly the live tables: an obsolete
 * table is unlinked while the database stays open (no pinned scan runs at these points), not at
 * the next open. Polled for up to `ms`: the unlinks are paced on the event loop.
 */
export async function onlyLiveTables(
  db: LsmDb,
  dir: string,
  what: string,
  ms = 5000,
): Promise<void> {
  const deadline = Date.now() + ms;
  while (tablesOnDisk(dir) !== liveTables(db) && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 5));
  }
  assert.equal(tablesOnDisk(dir), liveTables(db), what);
}

Deno.test("prng is deterministic per seed", () => {
  const a = prng(7);
  const c = prng(7);
  for (let i = 0; i < 10; i++) assert.equal(a(), c());
});

/** Polls `cond` every 10 ms until it holds; throws after `ms`. */
export async function until(cond: () => boolean, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error("condition not reached before deadline");
    await new Promise((r) => setTimeout(r, 10));
  }
}

/**
 * File naming inside a database directory.
 * @module
 */
import { denoEnv, type Env } from "./env.ts";

function pad(n: number): string {
  return String(n).padStart(6, "0");
}

/** Path of WAL file `n`. */
export function walPath(dir: string, n: number): string {
  return `${dir}/${pad(n)}.log`;
}
/** Path of table file `n`. */
export function tablePath(dir: string, n: number): string {
  return `${dir}/${pad(n)}.sst`;
}
/** Path of manifest `n`. */
export function manifestPath(dir: string, n: number): string {
  return `${dir}/MANIFEST-${pad(n)}`;
}
/** Path of the CURRENT pointer. */
export function currentPath(dir: string): string {
  return `${dir}/CURRENT`;
}
/** Path of the lock file. */
export function lockPath(dir: string): string {
  return `${dir}/LOCK`;
}

/** Kind and number of a file name this engine creates, or undefined for foreign files. */
export function parseFileName(
  name: string,
): { kind: "wal" | "table" | "manifest" | "temp"; number: number } | undefined {
  let m = /^(\d+)\.log$/.exec(name);
  if (m) return { kind: "wal", number: Number(m[1]) };
  m = /^(\d+)\.sst$/.exec(name);
  if (m) return { kind: "table", number: Number(m[1]) };
  m = /^MANIFEST-(\d+)$/.exec(name);
  if (m) return { kind: "manifest", number: Number(m[1]) };
  if (/^(\d+\.sst|CURRENT)\.tmp$/.test(name)) return { kind: "temp", number: 0 };
  return undefined;
}

/** fsyncs a directory so renames and creations in it are durable. */
export function syncDir(dir: string, env: Env = denoEnv): void {
  env.syncDirSync(dir);
}

/**
 * Test helper: a state machine of each backend in a temporary directory, reopenable.
 *
 * @module
 */
import { type KvStateMachine, openStorage, type StorageKind } from "../mod.ts";

/** Every backend. */
export const KINDS: StorageKind[] = ["memory", "simplefile", "lsm"];

/** Runs `fn` with a fresh state machine of `kind` (and a way to close and reopen it), then
 * closes it and removes its directory. */
export async function withSm(
  kind: StorageKind,
  fn: (sm: KvStateMachine, reopen: () => Promise<KvStateMachine>) => Promise<void>,
): Promise<void> {
  const dir = Deno.makeTempDirSync({ prefix: `gokv-sm-${kind}-` });
  let cur = await openStorage(kind, dir);
  const reopen = async () => {
    await cur.log.close();
    await cur.sm.close();
    cur = await openStorage(kind, dir);
    return cur.sm;
  };
  try {
    await fn(cur.sm, reopen);
  } finally {
    await cur.log.close();
    await cur.sm.close();
    Deno.removeSync(dir, { recursive: true });
  }
}

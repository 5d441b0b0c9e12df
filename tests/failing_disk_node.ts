/**
 * `gokv server` with a disk that starts failing: every Raft log `sync()` fails with EIO once the
 * file named by GOKV_TEST_FAIL_SYNC_FILE exists (fault injection for tests/fatal_test.ts).
 * Otherwise exactly the server command of main.ts, exit code included.
 *
 * @module
 */
import { serverCommandWithHooks } from "../server/cli.ts";

const trigger = Deno.env.get("GOKV_TEST_FAIL_SYNC_FILE");
if (!trigger) throw new Error("GOKV_TEST_FAIL_SYNC_FILE is not set");
let syncsAfterFailure = 0;
let failed = false;
const code = await serverCommandWithHooks(Deno.args, {
  wrapLogStore: (log) => {
    const sync = log.sync.bind(log);
    log.sync = () => {
      if (failed) syncsAfterFailure++;
      let armed = false;
      try {
        Deno.statSync(trigger);
        armed = true;
      } catch { /* not yet */ }
      if (!armed) return sync();
      failed = true;
      return Promise.reject(new Error("EIO: input/output error (injected fsync failure)"));
    };
    return log;
  },
});
console.error(`syncs after the failure: ${syncsAfterFailure}`);
Deno.exit(code);

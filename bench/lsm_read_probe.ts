/** Ad-hoc probe (not CI): cost of positioned reads via Deno seek+read vs node:fs readSync. */
import * as fs from "node:fs";
const dir = await Deno.makeTempDir({ prefix: "lsm_read_" });
try {
  const path = `${dir}/f`;
  Deno.writeFileSync(path, new Uint8Array(64 << 20).fill(3));
  const f = Deno.openSync(path, { read: true });
  const buf = new Uint8Array(4101);
  const N = 100000;
  let t = performance.now();
  for (let i = 0; i < N; i++) {
    f.seekSync(((i * 7919) % 16000) * 4096, Deno.SeekMode.Start);
    f.readSync(buf);
  }
  console.log("seek+read us", ((performance.now() - t) * 1000 / N).toFixed(2));
  const fd = fs.openSync(path, "r");
  t = performance.now();
  for (let i = 0; i < N; i++) fs.readSync(fd, buf, 0, buf.length, ((i * 7919) % 16000) * 4096);
  console.log("node readSync(pos) us", ((performance.now() - t) * 1000 / N).toFixed(2));
  t = performance.now();
  for (let i = 0; i < N; i++) new Uint8Array(4101);
  console.log("alloc 4KB us", ((performance.now() - t) * 1000 / N).toFixed(2));
  fs.closeSync(fd);
  f.close();
} finally {
  await Deno.remove(dir, { recursive: true });
}

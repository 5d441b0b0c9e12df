/** Ad-hoc disk probe (not CI): sequential write throughput and fdatasync latency under load. */
const dir = await Deno.makeTempDir({ prefix: "lsm_disk_" });
try {
  const f = Deno.openSync(`${dir}/big`, { write: true, create: true });
  const buf = new Uint8Array(1 << 20).fill(1);
  let t = performance.now();
  for (let i = 0; i < 64; i++) f.writeSync(buf);
  const w = performance.now() - t;
  t = performance.now();
  f.syncDataSync();
  console.log("64MiB write ms", w.toFixed(0), "fdatasync ms", (performance.now() - t).toFixed(0));
  f.close();
  const g = Deno.openSync(`${dir}/wal`, { write: true, create: true });
  const small = new Uint8Array(100);
  t = performance.now();
  for (let i = 0; i < 100; i++) {
    g.writeSync(small);
    g.syncDataSync();
  }
  console.log("small append+fdatasync us", ((performance.now() - t) * 10).toFixed(0));
  g.close();
} finally {
  await Deno.remove(dir, { recursive: true });
}
{
  const dir2 = await Deno.makeTempDir({ prefix: "lsm_disk2_" });
  try {
    const g = Deno.openSync(`${dir2}/wal`, { write: true, create: true });
    g.writeSync(new Uint8Array(1 << 20));
    g.syncSync();
    g.seekSync(0, Deno.SeekMode.Start);
    const small = new Uint8Array(100).fill(1);
    const t = performance.now();
    for (let i = 0; i < 100; i++) {
      g.writeSync(small);
      g.syncDataSync();
    }
    console.log(
      "small overwrite(preallocated)+fdatasync us",
      ((performance.now() - t) * 10).toFixed(0),
    );
    g.close();
  } finally {
    await Deno.remove(dir2, { recursive: true });
  }
}

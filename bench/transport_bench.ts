/**
 * Transport benchmark: tcp vs grpc on the same messages (App with one 100-byte entry), two
 * nodes on 127.0.0.1 in this process.
 *
 * - latency: ping-pong (App -> AppResp) round trips, one at a time;
 * - throughput: one-way pipelined App messages with a window, the receiver acking every
 *   `ACK_EVERY` messages (AppResp carrying the count received).
 *
 * Rounds alternate tcp, grpc, tcp, grpc... and the medians are compared as ratios.
 * Run: `deno task bench:transport` (optional args: rounds, messages).
 *
 * @module
 */
import { EntryType, type Message, message, MessageType } from "../raft/types.ts";
import { createTransport, type PeerTransport, type TransportKind } from "../transport/mod.ts";

const ROUNDS = Number(Deno.args[0] ?? 3);
const MESSAGES = Number(Deno.args[1] ?? 100_000);
const PINGS = 2000;
const WINDOW = 4096;
const ACK_EVERY = 512;
const PAYLOAD = new Uint8Array(100).fill(7);

interface Pair {
  a: PeerTransport;
  b: PeerTransport;
  /** Called by a's handler. */
  onA: (m: Message) => void;
  /** Called by b's handler. */
  onB: (m: Message) => void;
}

async function pair(kind: TransportKind): Promise<Pair> {
  const p: Pair = {
    a: createTransport(kind, { id: 1, listen: "127.0.0.1:0", peers: new Map() }),
    b: createTransport(kind, { id: 2, listen: "127.0.0.1:0", peers: new Map() }),
    onA: () => {},
    onB: () => {},
  };
  await p.a.start((m) => p.onA(m));
  await p.b.start((m) => p.onB(m));
  p.a.addPeer(2, p.b.address);
  p.b.addPeer(1, p.a.address);
  return p;
}

function app(index: number): Message {
  return message({
    type: MessageType.App,
    from: 1,
    to: 2,
    term: 5,
    logTerm: 5,
    index,
    commit: index,
    entries: [{ term: 5, index: index + 1, type: EntryType.Normal, data: PAYLOAD }],
  });
}

/** Median round-trip time in microseconds over PINGS ping-pongs. */
async function latency(p: Pair): Promise<number> {
  p.onB = (m) => {
    if (m.type === MessageType.App) {
      p.b.send([message({ type: MessageType.AppResp, from: 2, to: 1, term: 5, index: m.index })]);
    }
  };
  let resolve: () => void = () => {};
  p.onA = (m) => {
    if (m.type === MessageType.AppResp) resolve();
  };
  const samples: number[] = [];
  for (let i = 0; i < PINGS + 100; i++) {
    const t0 = performance.now();
    const done = new Promise<void>((r) => resolve = r);
    p.a.send([app(i)]);
    await done;
    if (i >= 100) samples.push((performance.now() - t0) * 1000); // first 100 warm up
  }
  samples.sort((x, y) => x - y);
  return samples[samples.length >> 1];
}

/** Messages per second, one way, pipelined with a window and periodic acks. */
async function throughput(p: Pair, n: number): Promise<number> {
  let received = 0;
  p.onB = (m) => {
    if (m.type !== MessageType.App) return;
    received++;
    if (received % ACK_EVERY === 0 || received === n) {
      p.b.send([message({ type: MessageType.AppResp, from: 2, to: 1, term: 5, index: received })]);
    }
  };
  let acked = 0;
  let wake: () => void = () => {};
  p.onA = (m) => {
    if (m.type === MessageType.AppResp) {
      acked = Math.max(acked, m.index);
      wake();
    }
  };
  const t0 = performance.now();
  let sent = 0;
  while (acked < n) {
    while (sent < n && sent - acked < WINDOW) {
      const batch: Message[] = [];
      for (let k = 0; k < 64 && sent < n && sent - acked < WINDOW; k++) batch.push(app(sent++));
      p.a.send(batch);
    }
    await new Promise<void>((r) => wake = r);
  }
  return n / ((performance.now() - t0) / 1000);
}

function median(xs: number[]): number {
  const s = [...xs].sort((x, y) => x - y);
  return s[s.length >> 1];
}

const results: Record<string, { lat: number[]; tput: number[] }> = {
  tcp: { lat: [], tput: [] },
  grpc: { lat: [], tput: [] },
};
for (let round = 0; round < ROUNDS; round++) {
  for (const kind of ["tcp", "grpc"] as const) {
    const p = await pair(kind);
    try {
      await throughput(p, 5000); // warm up connections and JIT
      const lat = await latency(p);
      const tput = await throughput(p, MESSAGES);
      results[kind].lat.push(lat);
      results[kind].tput.push(tput);
      console.log(
        `round ${round + 1} ${kind.padEnd(4)}  rtt p50 ${lat.toFixed(0).padStart(6)} µs   ` +
          `${tput.toFixed(0).padStart(8)} msg/s`,
      );
    } finally {
      await p.a.close();
      await p.b.close();
    }
  }
}
const tl = median(results.tcp.lat);
const gl = median(results.grpc.lat);
const tt = median(results.tcp.tput);
const gt = median(results.grpc.tput);
console.log("");
console.log(`median rtt:        tcp ${tl.toFixed(0)} µs, grpc ${gl.toFixed(0)} µs`);
console.log(`median throughput: tcp ${tt.toFixed(0)} msg/s, grpc ${gt.toFixed(0)} msg/s`);
console.log(`ratio latency  grpc/tcp = ${(gl / tl).toFixed(2)}x (higher: tcp faster)`);
console.log(`ratio msgs/s   tcp/grpc = ${(tt / gt).toFixed(2)}x (target >= 3x)`);

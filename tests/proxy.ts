/**
 * A TCP proxy for tests: forwards a local port to a target, and can cut the link (closing live
 * connections and refusing new ones) and heal it, to partition real node processes.
 *
 * @module
 */

/** A TCP forwarder from `listen` to `target` that can be cut. */
export class TcpProxy {
  private listener: Deno.TcpListener;
  private conns = new Set<Deno.Conn>();
  private cut = false;
  private closed = false;
  /** The address to dial. */
  readonly address: string;

  /** Starts forwarding 127.0.0.1:`port` (0 = any) to `target` (host:port). */
  constructor(readonly target: string, port = 0) {
    this.listener = Deno.listen({ hostname: "127.0.0.1", port });
    this.address = `127.0.0.1:${(this.listener.addr as Deno.NetAddr).port}`;
    this.accept();
  }

  private async accept(): Promise<void> {
    try {
      for await (const inbound of this.listener) {
        if (this.cut) {
          inbound.close();
          continue;
        }
        this.pipeConn(inbound);
      }
    } catch {
      // listener closed
    }
  }

  private async pipeConn(inbound: Deno.Conn): Promise<void> {
    const [hostname, port] = [
      this.target.slice(0, this.target.lastIndexOf(":")),
      Number(this.target.slice(this.target.lastIndexOf(":") + 1)),
    ];
    let outbound: Deno.Conn;
    try {
      outbound = await Deno.connect({ hostname, port });
    } catch {
      inbound.close();
      return;
    }
    this.conns.add(inbound);
    this.conns.add(outbound);
    const close = () => {
      for (const c of [inbound, outbound]) {
        try {
          c.close();
        } catch {
          // already closed
        }
        this.conns.delete(c);
      }
    };
    const copy = async (from: Deno.Conn, to: Deno.Conn) => {
      const buf = new Uint8Array(64 * 1024);
      try {
        while (true) {
          const n = await from.read(buf);
          if (n === null || this.cut) break;
          let off = 0;
          while (off < n) off += await to.write(buf.subarray(off, n));
        }
      } catch {
        // connection reset
      }
      close();
    };
    copy(inbound, outbound);
    copy(outbound, inbound);
  }

  /** Cuts the link: closes live connections and refuses new ones. */
  partition(): void {
    this.cut = true;
    for (const c of [...this.conns]) {
      try {
        c.close();
      } catch {
        // already closed
      }
    }
    this.conns.clear();
  }

  /** Restores the link. */
  heal(): void {
    this.cut = false;
  }

  /** Stops the proxy. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.partition();
    this.listener.close();
  }
}

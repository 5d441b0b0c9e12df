/**
 * The outbound peers of a transport by node id, shared by tcp and grpc: adding a peer with a
 * new address replaces (and closes) the old connection; removing one closes it.
 *
 * @module
 */
import type { NodeId } from "../raft/types.ts";

/** What the table needs of a peer connection. */
export interface Peer {
  /** The address it dials. */
  readonly address: string;
  /** Closes the connection and drops what is queued. */
  close(): void;
}

/** Peers by node id. */
export class PeerTable<P extends Peer> extends Map<NodeId, P> {
  /** Adds `id` at `address` (made by `make`), replacing a peer with another address. */
  upsert(id: NodeId, address: string, make: () => P): void {
    const old = this.get(id);
    if (old !== undefined) {
      if (old.address === address) return;
      old.close();
    }
    this.set(id, make());
  }

  /** Forgets `id` and closes its connection. */
  remove(id: NodeId): void {
    const p = this.get(id);
    if (p === undefined) return;
    this.delete(id);
    p.close();
  }

  /** Closes and forgets every peer. */
  closeAll(): void {
    for (const p of this.values()) p.close();
    this.clear();
  }
}

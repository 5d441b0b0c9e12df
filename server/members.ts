/**
 * The member address book: every known node's peer, client and HTTP addresses, from the config
 * file and from membership changes (whose ConfChange context carries the added node's
 * addresses, encoded by {@link encodeMemberContext}). Persisted as JSON in the node's data
 * directory so a restarted node can reach members added after its config was written.
 *
 * The contexts are also part of the replicated configuration: the Raft core keeps, per member,
 * the context of the change that added it and snapshots carry them (`SnapshotMeta.memberContexts`),
 * so {@link MemberPeers} learns the addresses of members whose conf change a node never applied
 * (it installed a snapshot spanning it) and keeps the transport's peers equal to the
 * configuration after a snapshot install and at start.
 *
 * @module
 */
import { join } from "node:path";
import type { Logger } from "../raft/logger.ts";
import type { Transport } from "../raft/transport.ts";
import {
  type ConfChange,
  ConfChangeType,
  type ConfState,
  type MemberContext,
  type NodeId,
  type SnapshotMeta,
} from "../raft/types.ts";

/** A node's addresses. */
export interface MemberAddrs {
  /** Node id. */
  id: number;
  /** Raft peer address. */
  peer: string;
  /** Client protocol address. */
  client: string;
  /** HTTP address. */
  http: string;
}

/** A conf-change context that is not a valid member encoding. */
export class MemberContextError extends Error {
  /** Creates the error. */
  constructor(reason: string) {
    super(`invalid member context: ${reason}`);
    this.name = "MemberContextError";
  }
}

const enc = new TextEncoder();
const dec = new TextDecoder("utf-8", { fatal: true });
const CONTEXT_VERSION = 1;

/**
 * Encodes a member's addresses for a ConfChange context:
 * `u8 version(=1) | u32 id | 3 × (u16 length | UTF-8)` (peer, client, http), big-endian.
 */
export function encodeMemberContext(m: MemberAddrs): Uint8Array {
  const parts = [m.peer, m.client, m.http].map((s) => enc.encode(s));
  const out = new Uint8Array(5 + parts.reduce((n, p) => n + 2 + p.length, 0));
  const dv = new DataView(out.buffer);
  dv.setUint8(0, CONTEXT_VERSION);
  dv.setUint32(1, m.id);
  let o = 5;
  for (const p of parts) {
    if (p.length > 0xffff) throw new MemberContextError("address too long");
    dv.setUint16(o, p.length);
    out.set(p, o + 2);
    o += 2 + p.length;
  }
  return out;
}

/** Decodes {@link encodeMemberContext}; throws {@link MemberContextError}. */
export function decodeMemberContext(b: Uint8Array): MemberAddrs {
  if (b.length < 5) throw new MemberContextError("too short");
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  if (dv.getUint8(0) !== CONTEXT_VERSION) throw new MemberContextError("unknown version");
  const id = dv.getUint32(1);
  let o = 5;
  const strs: string[] = [];
  for (let i = 0; i < 3; i++) {
    if (o + 2 > b.length) throw new MemberContextError("truncated");
    const n = dv.getUint16(o);
    if (o + 2 + n > b.length) throw new MemberContextError("truncated");
    try {
      strs.push(dec.decode(b.subarray(o + 2, o + 2 + n)));
    } catch {
      throw new MemberContextError("address is not UTF-8");
    }
    o += 2 + n;
  }
  if (o !== b.length) throw new MemberContextError("trailing bytes");
  return { id, peer: strs[0], client: strs[1], http: strs[2] };
}

/** The address book of one node. */
export class AddressBook {
  private members = new Map<number, MemberAddrs>();
  private readonly pinned = new Set<number>();
  private readonly file: string | undefined;

  /** Creates the book from the config's nodes (these addresses win over learned ones) and,
   * when `dir` is given, persists learned addresses to `dir/members.json`. */
  constructor(configured: MemberAddrs[], dir?: string) {
    for (const m of configured) {
      this.members.set(m.id, { ...m });
      this.pinned.add(m.id);
    }
    this.file = dir ? join(dir, "members.json") : undefined;
  }

  /** Loads learned addresses saved earlier (ignoring a missing or unreadable file). */
  async load(): Promise<void> {
    if (!this.file) return;
    try {
      const list = JSON.parse(await Deno.readTextFile(this.file)) as MemberAddrs[];
      for (const m of list) {
        if (!this.pinned.has(m.id) && Number.isInteger(m.id)) this.members.set(m.id, m);
      }
    } catch { /* none saved yet */ }
  }

  /** The addresses of `id`, if known. */
  get(id: number): MemberAddrs | undefined {
    return this.members.get(id);
  }

  /** Every known member. */
  all(): MemberAddrs[] {
    return [...this.members.values()].sort((a, b) => a.id - b.id);
  }

  /** Records addresses learned from a membership change (config addresses stay). Returns the
   * addresses now in effect for the node. */
  learn(m: MemberAddrs): MemberAddrs {
    if (!this.pinned.has(m.id)) this.members.set(m.id, { ...m });
    this.save();
    return this.members.get(m.id)!;
  }

  /** {@link learn}s every one of `ms`, persisting the book once if any address changed. */
  learnAll(ms: MemberAddrs[]): void {
    let changed = false;
    for (const m of ms) {
      if (this.pinned.has(m.id)) continue;
      const cur = this.members.get(m.id);
      if (cur && cur.peer === m.peer && cur.client === m.client && cur.http === m.http) continue;
      this.members.set(m.id, { ...m });
      changed = true;
    }
    if (changed) this.save();
  }

  /** Persists the book (synchronously: it is tiny and changes rarely). */
  save(): void {
    if (!this.file) return;
    try {
      const tmp = this.file + ".tmp";
      Deno.writeTextFileSync(tmp, JSON.stringify(this.all(), null, 1));
      Deno.renameSync(tmp, this.file);
    } catch { /* data dir gone (shutting down) */ }
  }
}

/** What {@link MemberPeers} needs of a transport. */
export type PeerSet = Pick<Transport, "addPeer" | "removePeer">;

/** Options of {@link MemberPeers}. */
export interface MemberPeersOptions {
  /** This node's id (never a peer of itself). */
  self: NodeId;
  /** The node's transport. */
  transport: PeerSet;
  /** The peers the transport was created with (id → peer address). */
  peers: ReadonlyMap<NodeId, string>;
  /** The node's address book. */
  book: AddressBook;
  /** Logger (default: discard). */
  logger?: Logger;
}

/** Every member of `conf`: incoming and outgoing voters, learners and next learners. */
function membersOf(conf: ConfState): Set<NodeId> {
  return new Set([...conf.voters, ...conf.votersOutgoing, ...conf.learners, ...conf.learnersNext]);
}

/**
 * Keeps a node's transport peers and address book in step with the Raft configuration: the
 * driver's `onConfChange` ({@link onConfChange}), its `onSnapshotRestored`
 * ({@link onSnapshotRestored}) and, once the node started, {@link reconcile} with the core's
 * configuration and member contexts. Deterministic: it depends only on the configuration, the
 * contexts and the book.
 */
export class MemberPeers {
  readonly #o: MemberPeersOptions;
  readonly #peers: Map<NodeId, string>;

  /** Tracks the transport's peers from `opts.peers` on. */
  constructor(opts: MemberPeersOptions) {
    this.#o = opts;
    this.#peers = new Map(opts.peers);
  }

  /** The transport's peers (id → address), as this object set them. */
  get peers(): ReadonlyMap<NodeId, string> {
    return this.#peers;
  }

  #add(id: NodeId, addr: string): void {
    if (id === this.#o.self) return;
    this.#peers.set(id, addr);
    this.#o.transport.addPeer(id, addr);
  }

  #remove(id: NodeId): void {
    if (id === this.#o.self) return;
    this.#peers.delete(id);
    this.#o.transport.removePeer(id);
  }

  /**
   * A conf change was applied: an added node is learned from the change's context (its
   * addresses) and becomes a peer when its address is known; a removed node stops being a peer
   * once it is out of the configuration (a voter removed through joint consensus is still an
   * outgoing voter, whose vote the joint quorum needs, until the joint configuration is left).
   */
  onConfChange(cc: ConfChange, conf: ConfState, index: number): void {
    const { book, logger } = this.#o;
    const members = membersOf(conf);
    if (cc.changes.length === 0 && members.size > 0) {
      // Leaving the joint configuration: the outgoing voters that are no members go.
      for (const id of [...this.#peers.keys()]) if (!members.has(id)) this.#remove(id);
    }
    for (const ch of cc.changes) {
      if (ch.type === ConfChangeType.RemoveNode) {
        if (!members.has(ch.nodeId)) this.#remove(ch.nodeId);
        logger?.info("member removed", { node: ch.nodeId, index });
        continue;
      }
      if (cc.context.length > 0) {
        try {
          const m = decodeMemberContext(cc.context);
          if (m.id === ch.nodeId) this.#add(m.id, book.learn(m).peer);
        } catch (e) {
          logger?.warn("conf change with unreadable member context", {
            index,
            error: (e as Error).message,
          });
        }
      }
      const known = book.get(ch.nodeId);
      if (known) this.#add(ch.nodeId, known.peer);
      logger?.info(ch.type === ConfChangeType.AddLearner ? "learner added" : "voter added", {
        node: ch.nodeId,
        index,
      });
    }
    logger?.debug("configuration", { voters: conf.voters, learners: conf.learners });
  }

  /** A snapshot from the leader was installed: its configuration is now the node's. */
  onSnapshotRestored(meta: SnapshotMeta): void {
    this.reconcile(meta.conf, meta.memberContexts ?? []);
    this.#o.logger?.info("members after a snapshot install", {
      index: meta.index,
      peers: [...this.#peers.keys()].sort((a, b) => a - b),
    });
  }

  /**
   * Makes the book and the transport agree with `conf` and its member contexts: learns every
   * member's addresses from its context, makes every member but this node a peer (joint
   * outgoing voters included) and drops every peer that is no member. An empty configuration
   * (a node not yet bootstrapped or joined) drops nothing.
   */
  reconcile(conf: ConfState, contexts: readonly MemberContext[]): void {
    const { book, logger } = this.#o;
    const learned: MemberAddrs[] = [];
    for (const c of contexts) {
      try {
        const m = decodeMemberContext(c.context);
        if (m.id === c.id) learned.push(m);
        else logger?.warn("member context of another node", { node: c.id, context: m.id });
      } catch (e) {
        logger?.warn("unreadable member context", { node: c.id, error: (e as Error).message });
      }
    }
    book.learnAll(learned);
    const members = membersOf(conf);
    for (const id of [...members].sort((a, b) => a - b)) {
      const known = book.get(id);
      if (known && this.#peers.get(id) !== known.peer) this.#add(id, known.peer);
    }
    if (members.size === 0) return;
    for (const id of [...this.#peers.keys()]) if (!members.has(id)) this.#remove(id);
  }
}

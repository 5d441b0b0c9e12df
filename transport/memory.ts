/**
 * The in-process transport for tests: a {@link MemoryNetwork} hub connects
 * {@link MemoryTransport}s by address, with fault injection (drop, delay, duplicate, reorder,
 * partitions). Every message is encoded and decoded with the binary codec on its way, so the
 * receiver gets its own copy and the codec is exercised as on a real network.
 *
 * @module
 */
import { type Logger, nullLogger } from "../raft/logger.ts";
import type { MessageHandler } from "../raft/transport.ts";
import { type Message, message, MessageType, type NodeId, NONE } from "../raft/types.ts";
import { AddressInUseError } from "./errors.ts";
import { decodeMessage, encodedMessageSize, encodeMessage } from "./message_codec.ts";
import {
  formatAddress,
  isLocalMessage,
  parseAddress,
  type PeerTransport,
  type ResolvedOptions,
  resolveOptions,
  type TransportOptions,
} from "./options.ts";
import { mulberry32 } from "../lsm/prng.ts";

/** Faults applied to every message crossing a {@link MemoryNetwork}. Rates are 0..1. */
export interface FaultOptions {
  /** Probability that a message is lost. */
  dropRate?: number;
  /** Probability that a message is delivered twice. */
  duplicateRate?: number;
  /** Probability that a message is held back so later ones overtake it. */
  reorderRate?: number;
  /** Smallest delivery delay in ms (default 0). */
  minDelayMs?: number;
  /** Largest delivery delay in ms (default `minDelayMs`). */
  maxDelayMs?: number;
}

/** Counters of a {@link MemoryNetwork}. */
export interface MemoryNetworkStats {
  /** Messages handed to a receiver (duplicates count twice). */
  delivered: number;
  /** Messages lost: dropped by a fault, a partition, or no receiver at the address. */
  dropped: number;
  /** Extra copies delivered. */
  duplicated: number;
}

/** The in-process network: routes encoded messages between memory transports by address. */
export class MemoryNetwork {
  readonly #endpoints = new Map<string, MemoryTransport>();
  readonly #cut = new Set<string>();
  /** In-order messages per link (sender -> address), each link drained by one timer. */
  readonly #links = new Map<string, Link>();
  /** Messages held back by the reorder fault, each with its own timer. */
  readonly #held = new Map<ReturnType<typeof setTimeout>, InFlight>();
  #faults: Required<FaultOptions>;
  #rand: () => number;
  #nextPort = 1;
  /** Counters. */
  readonly stats: MemoryNetworkStats = { delivered: 0, dropped: 0, duplicated: 0 };

  /** Creates a network; `seed` makes the fault schedule reproducible. */
  constructor(opts: FaultOptions & { seed?: number } = {}) {
    this.#rand = mulberry32(opts.seed ?? 1);
    this.#faults = MemoryNetwork.#resolve(opts);
  }

  static #resolve(f: FaultOptions): Required<FaultOptions> {
    const min = f.minDelayMs ?? 0;
    return {
      dropRate: f.dropRate ?? 0,
      duplicateRate: f.duplicateRate ?? 0,
      reorderRate: f.reorderRate ?? 0,
      minDelayMs: min,
      maxDelayMs: Math.max(min, f.maxDelayMs ?? min),
    };
  }

  /** Replaces the fault settings (unset fields go back to none). */
  setFaults(f: FaultOptions): void {
    this.#faults = MemoryNetwork.#resolve(f);
  }

  /** Cuts the link between `a` and `b` in both directions. */
  partition(a: NodeId, b: NodeId): void {
    this.#cut.add(`${a}-${b}`);
    this.#cut.add(`${b}-${a}`);
  }

  /** Cuts `id` off from every node in `others`. */
  isolate(id: NodeId, others: Iterable<NodeId>): void {
    for (const o of others) if (o !== id) this.partition(id, o);
  }

  /** Restores the link between `a` and `b`, or every link when called without arguments. */
  heal(a?: NodeId, b?: NodeId): void {
    if (a === undefined || b === undefined) {
      this.#cut.clear();
      return;
    }
    this.#cut.delete(`${a}-${b}`);
    this.#cut.delete(`${b}-${a}`);
  }

  /** True when messages from `a` to `b` are cut. */
  isPartitioned(a: NodeId, b: NodeId): boolean {
    return this.#cut.has(`${a}-${b}`);
  }

  /** Stops every pending delivery (pending messages are lost). */
  clearPending(): void {
    for (const t of this.#held.keys()) clearTimeout(t);
    this.#held.clear();
    for (const l of this.#links.values()) if (l.timer !== null) clearTimeout(l.timer);
    this.#links.clear();
  }

  /** @internal */
  bind(address: string, t: MemoryTransport): string {
    const { hostname, port } = parseAddress(address);
    let addr = address;
    if (port === 0) {
      while (this.#endpoints.has(addr = formatAddress(hostname, this.#nextPort))) this.#nextPort++;
      this.#nextPort++;
    }
    if (this.#endpoints.has(addr)) throw new AddressInUseError(addr);
    this.#endpoints.set(addr, t);
    return addr;
  }

  /** @internal Removes `t` and cancels the messages in flight from or to it. */
  unbind(address: string, t: MemoryTransport): void {
    if (this.#endpoints.get(address) === t) this.#endpoints.delete(address);
    const gone = (m: InFlight) => m.src === t || m.address === address;
    for (const [timer, m] of this.#held) {
      if (gone(m)) {
        clearTimeout(timer);
        this.#held.delete(timer);
        this.stats.dropped++;
      }
    }
    for (const [key, l] of this.#links) {
      const keep = l.queue.filter((m) => !gone(m));
      this.stats.dropped += l.queue.length - keep.length;
      l.queue = keep;
      if (keep.length === 0) {
        if (l.timer !== null) clearTimeout(l.timer);
        this.#links.delete(key);
      }
    }
  }

  /** @internal True when something listens at `address`. */
  reachable(address: string): boolean {
    return this.#endpoints.has(address);
  }

  /** @internal Routes one encoded message from `from` to `address`. */
  route(src: MemoryTransport, from: NodeId, to: NodeId, address: string, bytes: Uint8Array): void {
    const f = this.#faults;
    if (this.#cut.has(`${from}-${to}`) || (f.dropRate > 0 && this.#rand() < f.dropRate)) {
      this.stats.dropped++;
      return;
    }
    const copies = f.duplicateRate > 0 && this.#rand() < f.duplicateRate ? 2 : 1;
    for (let i = 0; i < copies; i++) {
      if (i > 0) this.stats.duplicated++;
      const now = Date.now();
      const delay = f.minDelayMs + (f.maxDelayMs - f.minDelayMs) * this.#rand();
      if (f.reorderRate > 0 && this.#rand() < f.reorderRate) {
        // Held back past the messages that follow it.
        const m: InFlight = { src, from, to, address, bytes, at: 0 };
        const timer = setTimeout(() => {
          this.#held.delete(timer);
          this.#arrive(m);
        }, delay + 5 + 20 * this.#rand());
        this.#held.set(timer, m);
        continue;
      }
      const key = `${from}>${address}`;
      let link = this.#links.get(key);
      if (link === undefined) this.#links.set(key, link = { queue: [], timer: null });
      const last = link.queue.at(-1)?.at ?? 0;
      link.queue.push({ src, from, to, address, bytes, at: Math.max(now + delay, last) });
      if (link.timer === null) this.#schedule(key, link);
    }
  }

  #schedule(key: string, link: Link): void {
    const wait = Math.max(0, link.queue[0].at - Date.now());
    link.timer = setTimeout(() => {
      link.timer = null;
      const now = Date.now();
      let n = 0;
      while (n < link.queue.length && link.queue[n].at <= now + 1) n++;
      const due = link.queue.splice(0, Math.max(n, 1));
      if (link.queue.length > 0) this.#schedule(key, link);
      else if (this.#links.get(key) === link) this.#links.delete(key);
      for (const m of due) this.#arrive(m);
    }, wait);
  }

  #arrive(m: InFlight): void {
    const ep = this.#endpoints.get(m.address);
    if (ep === undefined || this.#cut.has(`${m.from}-${m.to}`)) {
      this.stats.dropped++;
      return;
    }
    this.stats.delivered++;
    ep.receive(m.bytes);
  }
}

/** A message on its way. */
interface InFlight {
  src: MemoryTransport;
  from: NodeId;
  to: NodeId;
  address: string;
  bytes: Uint8Array;
  /** When it is due (in-order messages only). */
  at: number;
}

/** The in-order queue of one link and the timer that drains it. */
interface Link {
  queue: InFlight[];
  timer: ReturnType<typeof setTimeout> | null;
}

/** The network used when none is given to {@link MemoryTransport}. */
export const defaultMemoryNetwork: MemoryNetwork = new MemoryNetwork();

/** Options of a memory transport: the common ones plus the network to join. */
export interface MemoryTransportOptions extends TransportOptions {
  /** The hub to join (default {@link defaultMemoryNetwork}). */
  network?: MemoryNetwork;
}

/** A {@link PeerTransport} over a {@link MemoryNetwork}. */
export class MemoryTransport implements PeerTransport {
  /** Always "memory". */
  readonly kind = "memory";
  readonly #o: ResolvedOptions;
  readonly #log: Logger;
  readonly #net: MemoryNetwork;
  readonly #peers = new Map<NodeId, string>();
  /** Peers currently believed unreachable (reported once until they answer again). */
  readonly #down = new Set<NodeId>();
  #handler: MessageHandler | null = null;
  #address = "";
  #closed = false;

  /** Creates a transport on `opts.network` (or the default network). */
  constructor(opts: MemoryTransportOptions) {
    this.#log = opts.logger ?? nullLogger;
    this.#o = resolveOptions(opts, this.#log);
    this.#net = opts.network ?? defaultMemoryNetwork;
    for (const [id, a] of this.#o.peers) this.addPeer(id, a);
  }

  /** The network this transport is on. */
  get network(): MemoryNetwork {
    return this.#net;
  }

  /** The bound address (after `start`). */
  get address(): string {
    return this.#address;
  }

  /** Binds the listen address on the network. */
  start(handler: MessageHandler): Promise<void> {
    if (this.#closed) return Promise.reject(new Error("transport closed"));
    if (this.#handler !== null) return Promise.reject(new Error("transport already started"));
    try {
      this.#address = this.#net.bind(this.#o.listen, this);
    } catch (e) {
      return Promise.reject(e);
    }
    this.#handler = handler;
    return Promise.resolve();
  }

  /** Queues messages; never throws, never blocks. */
  send(msgs: Message[]): void {
    if (this.#closed) return;
    for (const m of msgs) {
      if (isLocalMessage(m.type)) continue;
      const addr = this.#peers.get(m.to);
      if (addr === undefined) continue;
      if (!this.#net.reachable(addr)) {
        this.#net.stats.dropped++;
        if (!this.#down.has(m.to)) {
          this.#down.add(m.to);
          this.#reportUnreachable(m.to);
        }
        continue;
      }
      this.#down.delete(m.to);
      let bytes: Uint8Array;
      try {
        if (encodedMessageSize(m) > this.#o.maxFrameBytes) throw new Error("message too large");
        bytes = encodeMessage(m);
      } catch (e) {
        this.#log.warn("transport: message not encodable, dropped", { to: m.to, error: String(e) });
        continue;
      }
      this.#net.route(this, this.#o.id, m.to, addr, bytes);
    }
  }

  /** Adds `id` or changes its address. */
  addPeer(id: NodeId, address: string): void {
    if (this.#closed || id === this.#o.id || id === NONE) return;
    this.#peers.set(id, address);
    this.#down.delete(id);
  }

  /** Forgets `id`. */
  removePeer(id: NodeId): void {
    this.#peers.delete(id);
    this.#down.delete(id);
  }

  /** Leaves the network; messages in flight to this transport are lost. */
  close(): Promise<void> {
    if (!this.#closed) {
      this.#closed = true;
      this.#net.unbind(this.#address, this);
      this.#handler = null;
    }
    return Promise.resolve();
  }

  /** @internal Called by the network with an encoded message. */
  receive(bytes: Uint8Array): void {
    if (this.#closed || this.#handler === null) return;
    let m: Message;
    try {
      m = decodeMessage(bytes);
    } catch (e) {
      this.#log.warn("transport: undecodable message dropped", { error: String(e) });
      return;
    }
    if (m.to !== this.#o.id) {
      this.#log.warn("transport: message for another node dropped", { to: m.to });
      return;
    }
    this.#deliver(m);
  }

  #reportUnreachable(peer: NodeId): void {
    if (!this.#o.reportUnreachable || this.#handler === null) return;
    const m = message({ type: MessageType.Unreachable, to: this.#o.id, from: peer });
    // Asynchronous like the network transports: never re-enter the caller of send().
    queueMicrotask(() => {
      if (!this.#closed) this.#deliver(m);
    });
  }

  #deliver(m: Message): void {
    try {
      this.#handler?.(m);
    } catch (e) {
      this.#log.error("transport: message handler threw", { type: m.type, error: String(e) });
    }
  }
}

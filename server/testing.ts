/**
 * Test helpers: a fake Raft node over an in-memory state machine, and a service/front-end
 * factory, so server and client tests run without the real Raft stack.
 *
 * @module
 */
import { NotLeaderError } from "../raft/errors.ts";
import { emptyConfState } from "../raft/types.ts";
import { MemoryStateMachine } from "../storage/memory_sm.ts";
import { AddressBook, decodeMemberContext, type MemberAddrs } from "./members.ts";
import type { RaftApi, RaftStatusLike } from "./service.ts";
import { KvService } from "./service.ts";
import { createServerMetrics, type ServerMetrics } from "./server_metrics.ts";
import { ClientServer } from "./client_server.ts";
import { nullLogger } from "../raft/logger.ts";
import { defaultNodeLimits, type NodeLimits } from "../config/limits.ts";

/** A single-process stand-in for RaftNode: proposals apply at once to `sm`. */
export class FakeRaft implements RaftApi {
  index = 0;
  term = 1;
  lead: number;
  voters: number[];
  learners: number[] = [];
  /** Number of upcoming proposals that fail with this error before the apply (or after). */
  failNext:
    | { error: Error; count: number; afterApply?: boolean; hook?: () => Promise<void> }
    | undefined;
  proposals = 0;
  reads = 0;
  transfers: number[] = [];
  /** Called when a member is added (the real server learns addresses in onConfChange). */
  onAdd: ((id: number, context: Uint8Array) => void) | undefined;

  constructor(readonly id: number, readonly sm: MemoryStateMachine, lead = id, voters = [id]) {
    this.lead = lead;
    this.voters = voters;
  }

  private async maybeFail(afterApply: boolean): Promise<void> {
    const f = this.failNext;
    if (f && f.count > 0 && !!f.afterApply === afterApply) {
      f.count--;
      await f.hook?.();
      throw f.error;
    }
  }

  /** Delay before each proposal applies (ms). */
  delayMs = 0;

  async propose(data: Uint8Array): Promise<unknown> {
    this.proposals++;
    if (this.lead !== this.id) throw new NotLeaderError(this.lead);
    if (this.delayMs > 0) await new Promise((r) => setTimeout(r, this.delayMs));
    await this.maybeFail(false);
    const [r] = await this.sm.apply([{ index: ++this.index, data }]);
    await this.maybeFail(true);
    return r;
  }

  readIndex(): Promise<void> {
    this.reads++;
    if (this.lead === 0) return Promise.reject(new NotLeaderError(0));
    return Promise.resolve();
  }

  addMember(id: number, context: Uint8Array): Promise<unknown> {
    if (this.lead !== this.id) return Promise.reject(new NotLeaderError(this.lead));
    this.voters.push(id);
    this.onAdd?.(id, context);
    return Promise.resolve();
  }

  async removeMember(id: number): Promise<unknown> {
    if (this.lead !== this.id) throw new NotLeaderError(this.lead);
    await this.maybeFail(false);
    this.voters = this.voters.filter((v) => v !== id);
    await this.maybeFail(true);
    return undefined;
  }

  transferLeader(id: number): Promise<unknown> {
    if (this.lead !== this.id) return Promise.reject(new NotLeaderError(this.lead));
    this.transfers.push(id);
    return Promise.resolve();
  }

  status(): RaftStatusLike {
    return {
      id: this.id,
      term: this.term,
      commit: this.index,
      applied: this.index,
      role: this.lead === this.id ? "leader" : "follower",
      lead: this.lead,
      conf: { ...emptyConfState(), voters: [...this.voters], learners: [...this.learners] },
      snapshotIndex: 0,
      logSize: this.index,
    };
  }
}

/** A fake node: service + binary front-end on a free port. */
export interface FakeNode {
  raft: FakeRaft;
  sm: MemoryStateMachine;
  service: KvService;
  metrics: ServerMetrics;
  book: AddressBook;
  server: ClientServer;
  address: string;
  close(): Promise<void>;
}

/** Starts a fake node whose client server listens on a free port. `book` entries let it
 * redirect to other nodes. */
export async function startFakeNode(
  id: number,
  opts: {
    lead?: number;
    voters?: number[];
    members?: MemberAddrs[];
    sm?: MemoryStateMachine;
    limits?: Partial<NodeLimits>;
  } = {},
): Promise<FakeNode> {
  const sm = opts.sm ?? new MemoryStateMachine();
  const raft = new FakeRaft(id, sm, opts.lead ?? id, opts.voters ?? [id]);
  const book = new AddressBook(opts.members ?? []);
  raft.onAdd = (_id, ctx) => book.learn(decodeMemberContext(ctx));
  const metrics = createServerMetrics({
    raft: () => ({ term: 1, commit: raft.index, applied: raft.index, isLeader: true, logSize: 0 }),
    storage: () => sm.stats(),
    // Read at scrape time, after the service exists.
    watch: () => service.watchStreams,
  });
  const limits = { ...defaultNodeLimits(), ...opts.limits };
  const service = new KvService({ id, raft, sm, book, metrics, requestTimeoutMs: 1000, limits });
  const server = new ClientServer(service, { listen: "127.0.0.1:0", logger: nullLogger, metrics });
  const addr = await server.start();
  return {
    raft,
    sm,
    service,
    metrics,
    book,
    server,
    address: `127.0.0.1:${addr.port}`,
    close: () => server.close(1000),
  };
}

/**
 * Main-thread side of a background Worker (compaction_worker.ts): sends
 * flush/merge requests, answers output-file-number allocations and turns
 * replies into resolved results or typed errors.
 * @module
 */
import { Worker } from "node:worker_threads";
import type { MergeOutput } from "./compaction.ts";
import type { FlushRequest, MergeRequest, WorkerMessage } from "./compaction_worker.ts";
import { toWire } from "./worker_wire.ts";
import { ClosedError, CorruptionError, LsmError } from "./errors.ts";

type Request = Omit<FlushRequest, "id"> | Omit<MergeRequest, "id">;

/**
 * Young-generation cap of the worker's V8 heap, in MiB. Its live set is a few MiB (readers'
 * indexes, the output block), but with V8's default (48 MiB, grown by the allocation rate of
 * merges) the idle worker kept ~30-45 MiB of young-generation pages resident; with a small one
 * it scavenges more often (cheap: little survives). With 1 MiB its young generation holds 1 MiB
 * instead of 4 (its heap ~9 MiB instead of ~12) at no measured cost to flushes or merges; that
 * matters past its exit too, since V8 pools an exited isolate's pages for 8-16 s.
 */
export const WORKER_YOUNG_GENERATION_MB = 1;

/** A lazily started background worker. */
export class WorkerClient {
  private worker: Worker | undefined;
  private readonly reqs = new Map<
    number,
    { resolve: (m: MergeOutput) => void; reject: (e: unknown) => void }
  >();
  private nextId = 1;
  private idleTimer: ReturnType<typeof setTimeout> | undefined;

  /**
   * @param allocFileNumber answers the worker's requests for output file numbers
   * @param idleMs the worker is stopped after this long without work (it restarts on demand;
   *   a start blocks the event loop ~40 ms, so not sooner: a pause between bursts of writes
   *   would pay it every time)
   */
  constructor(private readonly allocFileNumber: () => number, private readonly idleMs = 10_000) {}

  /** True while the worker thread exists. */
  get active(): boolean {
    return this.worker !== undefined;
  }

  private clearIdle(): void {
    if (this.idleTimer !== undefined) {
      clearTimeout(this.idleTimer);
      this.idleTimer = undefined;
    }
  }

  private armIdle(): void {
    this.clearIdle();
    if (this.reqs.size > 0 || !this.worker) return;
    this.idleTimer = setTimeout(() => {
      this.idleTimer = undefined;
      if (this.reqs.size === 0 && this.worker) {
        const w = this.worker;
        this.worker = undefined;
        w.terminate();
      }
    }, this.idleMs);
    Deno.unrefTimer(this.idleTimer as unknown as number);
  }

  private start(): Worker {
    // node:worker_threads rather than a web Worker: only it takes V8 resource limits.
    const w = new Worker(new URL("./compaction_worker.ts", import.meta.url), {
      resourceLimits: { maxYoungGenerationSizeMb: WORKER_YOUNG_GENERATION_MB },
    });
    w.on("message", (m: WorkerMessage) => {
      if (m.type === "alloc") {
        w.postMessage({ type: "alloc", number: this.allocFileNumber() });
        return;
      }
      const r = this.reqs.get(m.id);
      if (!r) return;
      this.reqs.delete(m.id);
      this.armIdle();
      if (m.type === "done") r.resolve(m);
      else if (m.file !== undefined) {
        r.reject(new CorruptionError(m.file, m.offset ?? 0, m.message));
      } else {r.reject(
          new LsmError("BACKGROUND", `background work failed: ${m.name}: ${m.message}`),
        );}
    });
    w.on("error", (e: unknown) => {
      if (this.worker === w) this.worker = undefined;
      this.failAll(
        new LsmError("BACKGROUND", `background worker crashed: ${(e as Error)?.message ?? e}`),
      );
      w.terminate();
    });
    // Exiting without being told to (e.g. out of memory) also fails what was asked of it.
    w.on("exit", (code: number) => {
      if (this.worker !== w) return;
      this.worker = undefined;
      this.failAll(new LsmError("BACKGROUND", `background worker exited (code ${code})`));
    });
    return w;
  }

  /** Sends a request and resolves with the worker's output. */
  request(req: Request): Promise<MergeOutput> {
    this.clearIdle();
    this.worker ??= this.start();
    const id = this.nextId++;
    return new Promise<MergeOutput>((resolve, reject) => {
      this.reqs.set(id, { resolve, reject });
      this.worker!.postMessage(toWire({ ...req, id } as FlushRequest | MergeRequest));
    });
  }

  private failAll(e: unknown): void {
    const reqs = [...this.reqs.values()];
    this.reqs.clear();
    for (const r of reqs) r.reject(e);
  }

  /**
   * Fault injection for tests: the worker thread crashes (an uncaught error) when its next merge
   * asks for output number `outputs + 1`, leaving `outputs` complete output tables on disk.
   */
  crashAfterOutputs(outputs: number): void {
    this.clearIdle();
    this.worker ??= this.start();
    this.worker.postMessage({ type: "crash-after-outputs", outputs });
  }

  /**
   * Stops the worker; pending requests reject with ClosedError. Resolves when its thread has
   * exited (its heap and native memory are released then).
   */
  terminate(): Promise<void> {
    this.clearIdle();
    const w = this.worker;
    this.worker = undefined;
    this.failAll(new ClosedError());
    if (!w) return Promise.resolve();
    return w.terminate().then(() => threadGone(w.threadId), () => {});
  }
}

/**
 * Resolves once the thread of worker `threadId` has exited. `terminate()` resolves before it
 * does, and the thread's memory (its isolate, ~25-30 MiB resident) is released only at its
 * exit, a few ms later. Linux names the thread `worker-<threadId>` in /proc/self/task; where
 * that cannot be read, resolves at once. Waits at most 1 s.
 */
async function threadGone(threadId: number): Promise<void> {
  const name = `worker-${threadId}`;
  const running = (): boolean => {
    try {
      for (const t of Deno.readDirSync("/proc/self/task")) {
        try {
          if (Deno.readTextFileSync(`/proc/self/task/${t.name}/comm`).trim() === name) return true;
        } catch { /* the thread exited while listed */ }
      }
    } catch { /* no /proc (or no permission to read it): do not wait */ }
    return false;
  };
  const deadline = performance.now() + 1000;
  while (running() && performance.now() < deadline) {
    await new Promise((r) => setTimeout(r, 1));
  }
}

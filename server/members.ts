/**
 * The member address book: every known node's peer, client and HTTP addresses, from the config
 * file and from membership changes (whose {@link ConfChange} context carries the added node's
 * addresses, encoded by {@link encodeMemberContext}). Persisted as JSON in the node's data
 * directory so a restarted node can reach members added after its config was written.
 *
 * @module
 */
import { join } from "node:path";

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

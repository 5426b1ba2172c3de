// IP fragment reassembly shared by IPv4 and IPv6, with bounded memory.
//
// Each datagram being reassembled is keyed by its (source, destination, protocol, id) and holds
// copies of its fragments sorted by offset. Memory is capped globally (fragment bytes plus a fixed
// charge per datagram, so a flood of tiny fragments is bounded too): past the cap the oldest
// datagrams are evicted. A datagram gives up after `timeoutMs`. Overlapping fragments poison the
// whole datagram (RFC 5722): it and every later fragment of it are dropped until its timer expires.
// Exact duplicates (same offset and length) are ignored, as links do duplicate.
import type { Clock, TimerHandle } from '../tcpip.js';

export interface ReassemblyLimits {
  /** Global cap on memory held by incomplete datagrams, in bytes. */
  maxBytes: number;
  /** Largest reassembled payload (the fragmentable part), in bytes. */
  maxDatagramBytes: number;
  /** Most fragments one datagram may arrive in. */
  maxFragments: number;
  /** How long an incomplete datagram waits for its missing fragments. */
  timeoutMs: number;
}

/** The memory a datagram costs on top of its fragment bytes. */
const PER_DATAGRAM_CHARGE = 256;

interface Fragment {
  offset: number;
  data: Buffer;
}

interface Pending {
  fragments: Fragment[];
  /** Copy of the header of the first fragment (offset 0), once it arrived. */
  header: Buffer | null;
  /** Payload length, known once the last fragment (no "more" flag) arrived; -1 before. */
  totalLength: number;
  received: number;
  charged: number;
  poisoned: boolean;
  timer: TimerHandle;
}

export interface Reassembled {
  /** The header of the first fragment followed by the reassembled payload. */
  packet: Buffer;
  headerLength: number;
}

export class Reassembler {
  private readonly pending = new Map<string, Pending>();
  private bytes = 0;

  constructor(
    private readonly clock: Clock,
    private readonly limits: ReassemblyLimits,
    private readonly drop: (reason: string) => void,
  ) {}

  /** Memory currently held, in bytes (fragments plus per-datagram charge). */
  get bytesInUse(): number {
    return this.bytes;
  }

  /** Datagrams currently waiting (including poisoned ones). */
  get pendingCount(): number {
    return this.pending.size;
  }

  /**
   * Adds one fragment: `data` is its fragmentable payload at byte `offset`; `header` is the packet
   * header to keep when `offset` is 0. Returns the whole datagram when this fragment completes it.
   */
  add(key: string, offset: number, more: boolean, data: Buffer, header: Buffer): Reassembled | null {
    const end = offset + data.length;
    if (more && (data.length === 0 || data.length % 8 !== 0)) return this.refuse('fragment-bad-length');
    if (end > this.limits.maxDatagramBytes) return this.refuse('fragment-too-big');

    let entry = this.pending.get(key);
    if (entry?.poisoned) return this.refuse('fragment-of-dropped-datagram');
    entry ??= this.start(key) ?? undefined;
    if (!entry) return null;
    const problem = this.conflict(entry, offset, end, more);
    if (problem === 'duplicate') return this.refuse('fragment-duplicate');
    if (problem) {
      this.poison(entry);
      return this.refuse(problem);
    }
    const cost = data.length + (offset === 0 ? header.length : 0);
    if (!this.makeRoom(cost, entry)) {
      this.forget(key, entry);
      return this.refuse('reassembly-memory-full');
    }
    this.insert(entry, { offset, data: Buffer.from(data) });
    if (offset === 0) entry.header = Buffer.from(header);
    if (!more) entry.totalLength = end;
    entry.received += data.length;
    entry.charged += cost;
    this.bytes += cost;

    if (entry.totalLength < 0 || entry.received !== entry.totalLength || !entry.header) return null;
    this.forget(key, entry);
    return assemble(entry.header, entry.fragments, entry.totalLength);
  }

  /** Frees everything (stack shutdown). */
  clear(): void {
    for (const [key, entry] of this.pending) this.forget(key, entry);
  }

  private start(key: string): Pending | null {
    if (!this.makeRoom(PER_DATAGRAM_CHARGE, null)) return this.refuse('reassembly-memory-full');
    const entry: Pending = {
      fragments: [],
      header: null,
      totalLength: -1,
      received: 0,
      charged: PER_DATAGRAM_CHARGE,
      poisoned: false,
      timer: this.clock.setTimeout(() => {
        if (this.pending.get(key) !== entry) return;
        if (!entry.poisoned) this.drop('reassembly-timeout');
        this.forget(key, entry);
      }, this.limits.timeoutMs),
    };
    this.bytes += PER_DATAGRAM_CHARGE;
    this.pending.set(key, entry);
    return entry;
  }

  /** Why the fragment [offset, end) cannot join `entry`, 'duplicate' for an exact repeat, or null. */
  private conflict(entry: Pending, offset: number, end: number, more: boolean): string | null {
    if (entry.totalLength >= 0 && (end > entry.totalLength || (!more && end !== entry.totalLength))) return 'fragment-inconsistent-length';
    if (!more && entry.fragments.some((f) => f.offset + f.data.length > end)) return 'fragment-inconsistent-length';
    for (const f of entry.fragments) {
      const fEnd = f.offset + f.data.length;
      if (f.offset === offset && fEnd === end) return 'duplicate';
      if (offset < fEnd && f.offset < end) return 'fragment-overlap';
    }
    if (entry.fragments.length >= this.limits.maxFragments) return 'fragment-too-many';
    return null;
  }

  private insert(entry: Pending, fragment: Fragment): void {
    let i = entry.fragments.length;
    while (i > 0 && entry.fragments[i - 1]!.offset > fragment.offset) i--;
    entry.fragments.splice(i, 0, fragment);
  }

  /** Evicts the oldest datagrams (never `keep`) until `cost` more bytes fit under the cap. */
  private makeRoom(cost: number, keep: Pending | null): boolean {
    if (cost > this.limits.maxBytes) return false;
    for (const [key, entry] of this.pending) {
      if (this.bytes + cost <= this.limits.maxBytes) break;
      if (entry === keep) continue;
      this.drop('reassembly-evicted');
      this.forget(key, entry);
    }
    return this.bytes + cost <= this.limits.maxBytes;
  }

  /** Drops the fragments of a datagram but remembers it until its timer, so its later fragments go too. */
  private poison(entry: Pending): void {
    this.bytes -= entry.charged - PER_DATAGRAM_CHARGE;
    entry.charged = PER_DATAGRAM_CHARGE;
    entry.fragments = [];
    entry.header = null;
    entry.poisoned = true;
  }

  private forget(key: string, entry: Pending): void {
    entry.timer.cancel();
    this.bytes -= entry.charged;
    this.pending.delete(key);
  }

  private refuse(reason: string): null {
    this.drop(reason);
    return null;
  }
}

function assemble(header: Buffer, fragments: Fragment[], totalLength: number): Reassembled {
  const packet = Buffer.allocUnsafe(header.length + totalLength);
  header.copy(packet, 0);
  for (const f of fragments) f.data.copy(packet, header.length + f.offset);
  return { packet, headerLength: header.length };
}

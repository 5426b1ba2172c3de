// Fault injection for a link, driven by a seeded PRNG so every run is the same: drops, duplicates,
// reorders (holds a frame back until the next one passed) or corrupts (flips one bit of) a chosen share
// of the frames. ChannelEndpoint uses it in memory; FaultyEndpoint wraps a real link (the TAP) so a
// transfer with the Linux kernel as the peer can be tested through a lossy wire.
import type { FrameOffload, LinkEndpoint, NetworkDispatcher } from './endpoint.js';

/** Shares (0 to 1) of frames each fault applies to. */
export interface Faults {
  drop?: number;
  duplicate?: number;
  reorder?: number;
  corrupt?: number;
}

export interface FaultCounts {
  dropped: number;
  duplicated: number;
  reordered: number;
  corrupted: number;
}

/** One direction of the channel: applies its faults and passes the surviving frames on. */
export class FaultyPipe {
  readonly counts: FaultCounts = { dropped: 0, duplicated: 0, reordered: 0, corrupted: 0 };
  private held: Buffer | null = null;
  private heldOffload: FrameOffload | undefined;

  constructor(
    private readonly faults: Faults,
    private readonly random: () => number,
    private readonly out: (frame: Buffer, offload?: FrameOffload) => void,
  ) {}

  /** `offload` travels with the frame (and its duplicate); it must stay valid while the frame is held. */
  push(frame: Buffer, offload?: FrameOffload): void {
    if (this.roll(this.faults.drop)) {
      this.counts.dropped++;
      return;
    }
    if (this.roll(this.faults.corrupt) && frame.length > 0) {
      const bit = Math.floor(this.random() * frame.length * 8);
      frame[bit >>> 3]! ^= 1 << (bit & 7);
      this.counts.corrupted++;
    }
    const copies = this.roll(this.faults.duplicate) ? 2 : 1;
    if (copies === 2) this.counts.duplicated++;
    if (!this.held && this.roll(this.faults.reorder)) {
      this.counts.reordered++;
      this.held = frame;
      this.heldOffload = offload;
      if (copies === 2) this.out(Buffer.from(frame), offload);
      return;
    }
    this.out(frame, offload);
    if (copies === 2) this.out(Buffer.from(frame), offload);
    this.release();
  }

  /** Lets a held-back frame through. */
  release(): void {
    const held = this.held;
    const offload = this.heldOffload;
    this.held = null;
    this.heldOffload = undefined;
    if (held) this.out(held, offload);
  }

  private roll(share: number | undefined): boolean {
    return share !== undefined && share > 0 && this.random() < share;
  }
}

export interface FaultyEndpointOptions {
  /** Faults on frames from the sandbox towards the stack. */
  inbound?: Faults;
  /** Faults on frames the stack writes towards the sandbox. */
  outbound?: Faults;
  seed?: number;
}

/**
 * Wraps a link endpoint and injects faults both ways. For tests; it copies every frame. It passes no
 * offload on (a corrupted frame must fail its checksum), so the link under it must not offload.
 */
export class FaultyEndpoint implements LinkEndpoint {
  readonly mtu: number;
  private readonly inbound: FaultyPipe;
  private readonly outbound: FaultyPipe;
  private dispatcher: NetworkDispatcher | null = null;

  constructor(
    private readonly inner: LinkEndpoint,
    options: FaultyEndpointOptions,
  ) {
    this.mtu = inner.mtu;
    const random = mulberry32(options.seed ?? 1);
    this.inbound = new FaultyPipe(options.inbound ?? {}, random, (frame) => this.dispatcher?.deliverFrame(frame));
    this.outbound = new FaultyPipe(options.outbound ?? {}, random, (frame) => inner.writeFrame(frame));
  }

  attach(dispatcher: NetworkDispatcher): void {
    this.dispatcher = dispatcher;
    this.inner.attach({
      deliverFrame: (frame) => this.inbound.push(Buffer.from(frame)),
      batchDone: () => dispatcher.batchDone(),
    });
  }

  writeFrame(frame: Uint8Array): void {
    this.outbound.push(Buffer.from(frame));
  }

  /** How many frames each fault hit, per direction. */
  get faultCounts(): { inbound: FaultCounts; outbound: FaultCounts } {
    return { inbound: this.inbound.counts, outbound: this.outbound.counts };
  }

  close(): void {
    this.dispatcher = null;
    this.inner.close();
  }
}

/** A small seeded PRNG (mulberry32): deterministic fault patterns. */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

// An in-memory link endpoint for tests, after gVisor's link/channel: `inject()` hands a frame to the
// stack as if the sandbox sent it; frames the stack writes queue up for `read()` / `drain()`.
// Optional fault injection (./faults.ts) applies independently in each direction. `inject` may say
// what the sending kernel offloaded, as the TAP with a virtio-net header does.
import type { FrameOffload, LinkEndpoint, NetworkDispatcher } from './endpoint.js';
import { FaultyPipe, mulberry32, type FaultCounts, type Faults } from './faults.js';

export type { FaultCounts, Faults };

export interface ChannelOptions {
  mtu?: number;
  /** Faults on frames injected towards the stack. */
  inbound?: Faults;
  /** Faults on frames the stack writes. */
  outbound?: Faults;
  /** PRNG seed for the faults. */
  seed?: number;
}

export class ChannelEndpoint implements LinkEndpoint {
  readonly mtu: number;
  private dispatcher: NetworkDispatcher | null = null;
  private readonly written: Buffer[] = [];
  private readonly inbound: FaultyPipe;
  private readonly outbound: FaultyPipe;

  constructor(options: ChannelOptions = {}) {
    this.mtu = options.mtu ?? 1500;
    const random = mulberry32(options.seed ?? 1);
    this.inbound = new FaultyPipe(options.inbound ?? {}, random, (frame, offload) => this.dispatcher?.deliverFrame(frame, offload));
    this.outbound = new FaultyPipe(options.outbound ?? {}, random, (frame) => this.written.push(frame));
  }

  attach(dispatcher: NetworkDispatcher): void {
    this.dispatcher = dispatcher;
  }

  /**
   * Delivers one frame to the stack (a copy: the caller keeps its buffer), as a batch of one, with
   * what the sender offloaded (a partial checksum, a GSO super-segment), if anything.
   */
  inject(frame: Uint8Array, offload?: FrameOffload): void {
    this.inbound.push(Buffer.from(frame), offload && { checksumPartial: offload.checksumPartial, gsoSize: offload.gsoSize });
    this.dispatcher?.batchDone();
  }

  writeFrame(frame: Uint8Array): void {
    this.outbound.push(Buffer.from(frame));
  }

  /** The oldest frame the stack wrote, or undefined. */
  read(): Buffer | undefined {
    return this.written.shift();
  }

  /** Every frame the stack wrote since the last drain, oldest first. */
  drain(): Buffer[] {
    return this.written.splice(0);
  }

  /** Lets frames held back by the reorder fault through, in both directions. */
  release(): void {
    this.inbound.release();
    this.dispatcher?.batchDone();
    this.outbound.release();
  }

  /** How many frames each fault hit, per direction. */
  get faultCounts(): { inbound: FaultCounts; outbound: FaultCounts } {
    return { inbound: this.inbound.counts, outbound: this.outbound.counts };
  }

  close(): void {
    this.dispatcher = null;
  }
}

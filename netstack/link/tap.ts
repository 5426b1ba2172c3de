// TapEndpoint: the LinkEndpoint over the sandbox's TAP fd (native/addon/tap_device.cc underneath).
//
// Frames come in batches: the addon reads everything the fd has (up to `batchFrames`) into its ring,
// then makes one call into JS; we deliver each frame as a view on the ring, then `batchDone()`. The
// addon does not parse the frames: the stack does, once (a C parse measured 13 ns a frame to save at
// most ~25 ns of the stack's, and was removed). Writes go straight to write(2); a frame that meets a
// full kernel queue waits in a small native FIFO, and beyond that it is dropped and counted, as on a wire.
//
// With `vnetHdr` (the launcher's --vnet-hdr: IFF_VNET_HDR and TUNSETOFFLOAD with TUN_F_CSUM|TSO4|TSO6),
// the sandbox's kernel may leave TCP/UDP checksums to us (`frameInfo.checksumPartial`: don't verify
// them; nothing corrupts a frame between two kernels' memory) and send TCP super-segments of up to
// 64 KiB whatever the MTU (`frameInfo.gsoSize` > 0), so the stack sees IP packets larger than `mtu`.
// deliverFrame passes `frameInfo` as the frame's FrameOffload (endpoint.ts) so the stack can act on it.
// Our writes are plain (full checksums, at most the MTU, behind an all-zero header) except TCP data
// segments (`tcpSegmentation`): their header says NEEDS_CSUM (the checksum field holds the pseudo-header
// sum; the sandbox's kernel takes the segment as verified, so neither side sums the payload), and below
// MTU 65520 a segment may be a super-segment: up to 64 KiB of a connection's bytes in one frame, its
// header saying GSO (segments of the MSS) too; the sandbox's kernel takes it whole, as a packet its GRO
// merged.
//
// `udpRelay` is the addon's native UDP relay (native/addon/udp_relay.h): the reader offers each frame
// to it before JS, and a datagram of an admitted flow's exact tuple goes to the flow's host socket
// without a JS call; the socket's datagrams come back as frames built in C.
//
// Measured (2026-11, 2 cores, other test suites running alongside): iperf3 in `tapbox --mtu M` to an
// iperf3 server on a test host (bench/run.ts's setup), 5 s runs, with and without --vnet-hdr
// interleaved, medians of 3; CPU = user+sys of the whole tree (supervisor, launcher, iperf3, and the
// kernel work done in their context) per GB moved.
//                      sandbox→host Gbit/s (CPU s/GB)      host→sandbox Gbit/s (CPU s/GB)
//   MTU 1500   off     0.55 (10.7)                         0.91 (8.9)
//              on      4.45 (1.6)     8x, CPU ÷6.8         0.80 (10.3)   -12%, CPU +15%
//   MTU 9000   off     2.04 (3.1)                          2.39 (3.4)
//              on      4.95 (1.4)     2.4x, CPU ÷2.2       2.32 (3.6)    within noise
//   MTU 65520  off     3.90 (1.7)                          3.46 (2.2)
//              on      3.71 (1.8)     within noise         3.47 (2.3)    within noise
// So src/supervisor/launcher.ts turned it on below MTU 65520 only. Host→sandbox was bound by MTU-sized
// frames (a write and a pass through the sandbox's stack each); since 2026-12-05 TCP goes to the sandbox
// in super-segments (`tcpSegmentation`): the same iperf3 -R, 5 s, three interleaved runs each, idle
// machine: MTU 1500 2.0-2.2 → 9.3-10.1 Gbit/s, MTU 9000 4.1-4.5 → 10.2-10.8 Gbit/s. And since then
// every TCP data segment leaves its checksum to the sandbox's kernel (NEEDS_CSUM), which made the header
// pay at MTU 65520 too (a perf profile of host→sandbox had spent ~7% summing payloads: ours in the
// addon, the sandbox's kernel's csum_partial); `npm run bench`'s transfers with the bundles swapped,
// two interleaved runs each, 2026-12-05, on a slower VM than the table's: host→sandbox 6.3-6.6 → 8.3-8.5
// Gbit/s (CPU 1.29-1.32 → 0.91-0.93 s/GB), sandbox→host 7.2-7.4 → 7.9-8.0 Gbit/s (1.06-1.08 → 0.97-1.01
// s/GB), short connections and UDP unchanged. The launcher now asks for it at every MTU.
import type { FrameOffload, LinkEndpoint, NetworkDispatcher, RelayedUdpFlow, TcpSegmentationLink, UdpRelayEvents, UdpRelayFigures, UdpRelayLink, UdpRelaySpec } from './endpoint.js';
import { requireNative, UdpRelayEvent, type MetaFields, type NativeTapDevice, type UdpFlowFields } from '../../native/addon/index.js';

const ETHERNET_HEADER = 14;
/** struct virtio_net_hdr's gso_type for TCP over IPv4 and IPv6. */
const VIRTIO_NET_HDR_GSO_NONE = 0;
const VIRTIO_NET_HDR_GSO_TCPV4 = 1;
const VIRTIO_NET_HDR_GSO_TCPV6 = 4;
/** Largest IP packet: what a GSO super-segment can reach whatever the MTU. */
const MAX_IP_PACKET = 65535;

export interface TapEndpointOptions {
  /** Largest IP packet on the TAP (the MTU the launcher gave the interface). */
  mtu: number;
  /** Most frames read per batch (ring slots). Default 64. */
  batchFrames?: number;
  /** Frames kept for retry when the kernel answers EAGAIN. Default 16. */
  pendingFrames?: number;
  /** The fd was opened with IFF_VNET_HDR (and offloads set with TUNSETOFFLOAD). Default false. */
  vnetHdr?: boolean;
  /**
   * Reading the fd failed (a read or poll error). Reading has stopped; close() still has to be called.
   * Default: ignore. Not a sign the sandbox ended: its network namespace, and so the TAP, live as long
   * as this fd is open; the launcher's exit is that sign.
   */
  onError?: (error: NodeJS.ErrnoException) => void;
}

export interface TapStats {
  framesIn: number;
  bytesIn: number;
  framesOut: number;
  bytesOut: number;
  /** Frames that met EAGAIN and were written later from the FIFO. */
  queuedOut: number;
  /** Frames dropped because the FIFO was full. */
  droppedOut: number;
  /** Frames the kernel refused (e.g. the interface is down). */
  writeErrors: number;
  /** Inbound frames longer than the MTU allows (the sandbox raised its MTU): dropped. */
  oversizeIn: number;
  /** Frames from the sandbox the UDP relay sent on a host socket (counted in framesIn too). */
  relayedIn: number;
  /** Frames the UDP relay built from host datagrams (counted in framesOut too). */
  relayedOut: number;
}

/** What the virtio-net header said of the frame being delivered (all false/0 without vnetHdr). */
export class FrameInfo implements FrameOffload {
  /** Index of the frame in the current batch. */
  index = 0;
  constructor(
    private readonly meta: Int32Array,
    private readonly fields: MetaFields,
  ) {}
  private field(f: number): number {
    return this.meta[this.index * this.fields.stride + f]!;
  }
  /** vnetHdr only: the sender offloaded the TCP/UDP checksum; its field holds just the pseudo-header sum. */
  get checksumPartial(): boolean {
    return this.field(this.fields.checksumPartial) === 1;
  }
  /** vnetHdr only: > 0 for a TCP super-segment, the segment size the sender meant (its MSS). */
  get gsoSize(): number {
    return this.field(this.fields.gsoSize);
  }
}

export class TapEndpoint implements LinkEndpoint {
  readonly mtu: number;
  /** The frame being delivered (valid during `deliverFrame`). */
  readonly frameInfo: FrameInfo;
  readonly udpRelay: UdpRelayLink;
  /** With vnetHdr: TCP super-segments towards the sandbox. */
  readonly tcpSegmentation?: TcpSegmentationLink;
  private readonly device: NativeTapDevice;
  private readonly fields: MetaFields;
  /** What deliverFrame passes as the frame's offload: frameInfo with vnetHdr, else nothing. */
  private readonly offload: FrameOffload | undefined;
  private dispatcher: NetworkDispatcher | null = null;
  private closed = false;

  /** Takes ownership of `fd` (set non-blocking here, closed by close()). Reads start at attach(). */
  constructor(fd: number, options: TapEndpointOptions) {
    const addon = requireNative();
    this.mtu = options.mtu;
    this.fields = addon.metaFields;
    const onError = options.onError ?? (() => {});
    const vnetHdr = options.vnetHdr ?? false;
    const largestPacket = vnetHdr ? Math.max(options.mtu, MAX_IP_PACKET) : options.mtu;
    this.device = new addon.TapDevice(
      fd,
      {
        frameSize: largestPacket + ETHERNET_HEADER,
        batchFrames: options.batchFrames ?? 64,
        pendingFrames: options.pendingFrames ?? 16,
        vnetHdr,
      },
      (count) => this.deliverBatch(count),
      onError,
    );
    this.frameInfo = new FrameInfo(this.device.meta, this.fields);
    this.offload = vnetHdr ? this.frameInfo : undefined;
    this.udpRelay = new TapUdpRelay(this.device, addon.udpFlowFields);
    if (vnetHdr) {
      this.tcpSegmentation = {
        writeSuperSegment: (frame, family, segmentSize, tcpOffset) => {
          const gsoType = segmentSize === 0 ? VIRTIO_NET_HDR_GSO_NONE : family === 4 ? VIRTIO_NET_HDR_GSO_TCPV4 : VIRTIO_NET_HDR_GSO_TCPV6;
          if (!this.closed) this.device.writeFrame(frame, 0, frame.length, gsoType, segmentSize, tcpOffset);
        },
      };
    }
  }

  attach(dispatcher: NetworkDispatcher): void {
    this.dispatcher = dispatcher;
    this.device.resume();
  }

  /** Writes one frame; after close() frames are dropped, as on an unplugged wire. */
  writeFrame(frame: Uint8Array): void {
    if (!this.closed) this.device.writeFrame(frame, 0, frame.length);
  }

  /** Stops reading the TAP (backpressure): the sandbox's frames wait in its kernel queue, then drop. */
  pause(): void {
    this.device.pause();
  }

  resume(): void {
    if (this.dispatcher) this.device.resume();
  }

  close(): void {
    this.closed = true;
    this.device.close();
  }

  get stats(): TapStats {
    const c = this.device.counters;
    const f = requireNative().counterFields;
    return {
      framesIn: c[f.framesIn]!,
      bytesIn: c[f.bytesIn]!,
      framesOut: c[f.framesOut]!,
      bytesOut: c[f.bytesOut]!,
      queuedOut: c[f.queuedOut]!,
      droppedOut: c[f.droppedOut]!,
      writeErrors: c[f.writeErrors]!,
      oversizeIn: c[f.oversizeIn]!,
      relayedIn: c[f.relayedIn]!,
      relayedOut: c[f.relayedOut]!,
    };
  }

  private deliverBatch(count: number): void {
    const dispatcher = this.dispatcher;
    if (!dispatcher) return;
    const { ring, meta } = this.device;
    const { stride, offset, length } = this.fields;
    for (let i = 0; i < count && !this.closed; i++) {
      this.frameInfo.index = i;
      dispatcher.deliverFrame(Buffer.from(ring, meta[i * stride + offset]!, meta[i * stride + length]!), this.offload);
    }
    dispatcher.batchDone();
  }
}

/** The addon's UDP relay on this TAP; each flow's events are routed by its id. */
class TapUdpRelay implements UdpRelayLink {
  private readonly events = new Map<number, UdpRelayEvents>();

  constructor(
    private readonly device: NativeTapDevice,
    private readonly fields: UdpFlowFields,
  ) {}

  enable(ourMac: Uint8Array, sandboxMac: Uint8Array, mtu: number): void {
    this.device.enableUdpRelay(ourMac, sandboxMac, mtu, (id, kind, data) => {
      const events = this.events.get(id);
      if (kind === UdpRelayEvent.refused) events?.refused(data);
      else events?.oversize(data);
    });
  }

  add(flow: UdpRelaySpec, events: UdpRelayEvents): RelayedUdpFlow {
    const id = this.device.addUdpFlow(flow.family, flow.sandboxAddr, flow.sandboxPort, flow.remoteAddr, flow.remotePort, flow.hostAddr, flow.hostPort);
    this.events.set(id, events);
    return new TapRelayedFlow(this.device, this.fields, id, () => this.events.delete(id));
  }
}

class TapRelayedFlow implements RelayedUdpFlow {
  private readonly out: Float64Array;
  private removed = false;

  constructor(
    private readonly device: NativeTapDevice,
    private readonly fields: UdpFlowFields,
    private readonly id: number,
    private readonly forget: () => void,
  ) {
    this.out = new Float64Array(fields.count);
  }

  send(payload: Uint8Array): void {
    this.device.udpFlowSend(this.id, payload);
  }

  figures(): UdpRelayFigures {
    if (!this.removed) this.device.readUdpFlow(this.id, this.out);
    return this.read();
  }

  remove(): UdpRelayFigures {
    if (!this.removed) {
      this.removed = true;
      this.device.removeUdpFlow(this.id, this.out);
      this.forget();
    }
    return this.read();
  }

  private read(): UdpRelayFigures {
    const { out, fields: f } = this;
    return { bytesUp: out[f.bytesUp]!, bytesDown: out[f.bytesDown]!, datagramsUp: out[f.datagramsUp]!, datagramsDown: out[f.datagramsDown]!, idleMs: out[f.idleMs]! };
  }
}

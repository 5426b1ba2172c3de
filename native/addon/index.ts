// The typed face of the native addon (native/addon/*.cc, built to build/Release/tapbox_native.node),
// shared by the stack (checksums, the TAP device) and the supervisor (control socket, sock_diag).
//
// The addon is loaded once, synchronously, when this module is first imported. If it is missing (not
// built yet), `native` is null: checksums fall back to TypeScript, and `requireNative()` throws a
// sentence saying how to build it for the parts that cannot work without it (TAP, control socket).
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** Indices of the Int32 fields the TAP reader writes per frame (`stride` fields per frame). */
export interface MetaFields {
  readonly stride: number;
  readonly offset: number;
  readonly length: number;
  readonly checksumPartial: number;
  readonly gsoSize: number;
}

/** Indices into a TapDevice's shared `counters` Float64Array. */
export interface CounterFields {
  readonly framesIn: number;
  readonly bytesIn: number;
  readonly framesOut: number;
  readonly bytesOut: number;
  readonly queuedOut: number;
  readonly droppedOut: number;
  readonly writeErrors: number;
  readonly oversizeIn: number;
  /** Frames from the sandbox the UDP relay sent on a host socket (counted in framesIn too). */
  readonly relayedIn: number;
  /** Frames the UDP relay built from host datagrams (counted in framesOut too). */
  readonly relayedOut: number;
}

/** Indices into the Float64Array readUdpFlow / removeUdpFlow fill (`count` fields). */
export interface UdpFlowFields {
  readonly bytesUp: number;
  readonly bytesDown: number;
  readonly datagramsUp: number;
  readonly datagramsDown: number;
  /** Milliseconds since the flow's last datagram either way. */
  readonly idleMs: number;
  readonly count: number;
}

/** What the UDP relay tells JS about a flow (native/addon/udp_relay.h). */
export const UdpRelayEvent = {
  /** The host answered ICMP port unreachable; data: the last IP packet relayed from the sandbox (may be empty). */
  refused: 1,
  /** A host datagram too big for one frame; data: its payload, for the stack to send as fragments. */
  oversize: 2,
} as const;

export interface NativeTapDeviceOptions {
  /** The largest frame read, Ethernet header included. */
  frameSize: number;
  /** Ring slots: the most frames read (and handed to JS) per batch. */
  batchFrames: number;
  /** Frames kept for retry when a write meets EAGAIN; beyond that, writes are dropped and counted. */
  pendingFrames: number;
  /** The TAP was opened with IFF_VNET_HDR: a struct virtio_net_hdr precedes each frame read and written. */
  vnetHdr: boolean;
}

export interface NativeTapDevice {
  /** The read ring: batchFrames slots of frameSize bytes, rewritten by every batch. */
  readonly ring: ArrayBuffer;
  /** Per frame of the current batch, `metaFields.stride` ints (see MetaFields). */
  readonly meta: Int32Array;
  /** Running counters (see CounterFields). */
  readonly counters: Float64Array;
  /**
   * Writes (or queues) one frame; false if it was dropped. With `gsoType` (1: TCP over IPv4, 4: over
   * IPv6; vnetHdr only), a TCP super-segment: the sandbox's kernel takes it as one packet of segments of
   * `gsoSize`, its checksum partial (the field of the TCP header at `checksumStart` holds the
   * pseudo-header sum).
   */
  writeFrame(buf: Uint8Array, offset: number, length: number, gsoType?: number, gsoSize?: number, checksumStart?: number): boolean;
  pause(): void;
  /** Starts (or restarts) reading: a new device is paused. */
  resume(): void;
  /** Stops reading and closes the fd. */
  close(): void;
  /**
   * Starts the native UDP relay (once): frames it builds go from `ourMac` to `sandboxMac`, a buffer the
   * stack updates in place as it learns the sandbox's MAC; `onEvent` hears of refusals and oversize datagrams.
   */
  enableUdpRelay(ourMac: Uint8Array, sandboxMac: Uint8Array, mtu: number, onEvent: (id: number, kind: number, data: Buffer) => void): void;
  /**
   * Relays the sandbox's datagrams from `sandboxAddr`:`sandboxPort` to `remoteAddr`:`remotePort` on a new
   * socket connected to `hostAddr`:`hostPort`, and the socket's datagrams back; the flow's id. Throws
   * an errno error if the socket can't open or connect.
   */
  addUdpFlow(family: 4 | 6, sandboxAddr: Uint8Array, sandboxPort: number, remoteAddr: Uint8Array, remotePort: number, hostAddr: Uint8Array, hostPort: number): number;
  /** Sends `payload` on the flow's socket (counted as the relay's own); false if the flow is gone. */
  udpFlowSend(id: number, payload: Uint8Array): boolean;
  /** Fills `out` (UdpFlowFields); false if the flow is gone. */
  readUdpFlow(id: number, out: Float64Array): boolean;
  /** Ends the flow (closes its socket) and fills `out` with its last figures; false if it was gone. */
  removeUdpFlow(id: number, out: Float64Array): boolean;
}

export interface NativeTapDeviceConstructor {
  new (
    fd: number,
    options: NativeTapDeviceOptions,
    onFrames: (count: number) => void,
    onError: (error: NodeJS.ErrnoException) => void,
  ): NativeTapDevice;
}

/** What HostSockets tells JS of a socket (native/addon/host_sockets.cc). */
export interface HostSocketEvents {
  /** The connect completed. */
  readonly connected: number;
  /** value: a Buffer of its own whose first `length` bytes are the bytes read. */
  readonly data: number;
  /** The peer ended its byte stream (a FIN); no more data events. */
  readonly end: number;
  /** The socket takes bytes again (once per wantWritable). */
  readonly writable: number;
  /** value: the errno error (a failed connect, a RST, a keepalive timeout); the socket is to be closed. */
  readonly error: number;
}

/** The host sockets of relayed TCP flows: non-blocking, polled by libuv, no Node stream (host_sockets.cc). */
export interface NativeHostSockets {
  /** Starts a connect; the socket's id. Throws an errno error if it can't start (no route, no descriptors). */
  connect(family: 4 | 6, address: Uint8Array, port: number, keepAliveSeconds: number): number;
  /** Writes what the kernel takes now: how many bytes (0 when full). Throws an errno error when the socket failed. */
  write(id: number, bytes: Uint8Array): number;
  /** Data events while on (a new socket is off). */
  setReading(id: number, on: boolean): void;
  /** One `writable` event once the socket takes bytes again. */
  wantWritable(id: number): void;
  /** Ends our byte stream (a FIN after what was written). */
  shutdown(id: number): void;
  /** Closes the socket (with `reset`, the peer gets a RST); no event follows. */
  close(id: number, reset: boolean): void;
}

export interface NativeHostSocketsConstructor {
  new (onEvent: (id: number, kind: number, value: unknown, length: number) => void): NativeHostSockets;
}

/** One control-socket message: empty data and no fd means the peer closed its end. */
export interface ControlMessage {
  data: Buffer;
  fd?: number;
}

export interface NativeAddon {
  checksum(buf: Uint8Array, offset: number, length: number, initial: number): number;
  copyChecksum(dst: Uint8Array, dstOffset: number, src: Uint8Array, srcOffset: number, length: number, initial: number): number;
  checksumUpdate(field: number, oldWord: number, newWord: number): number;
  readonly TapDevice: NativeTapDeviceConstructor;
  /** Whether the TAP device behind `fd` has the virtio-net header (IFF_VNET_HDR); throws an errno error for an fd that is not a TAP. */
  tapHasVnetHdr(fd: number): boolean;
  readonly metaFields: MetaFields;
  readonly counterFields: CounterFields;
  readonly udpFlowFields: UdpFlowFields;
  readonly HostSockets: NativeHostSocketsConstructor;
  readonly hostSocketEvents: HostSocketEvents;
  socketpair(): [number, number];
  sendMessage(fd: number, data: Uint8Array, passFd?: number): void;
  recvMessage(fd: number, callback: (err: NodeJS.ErrnoException | null, message?: ControlMessage) => void): void;
  closeFd(fd: number): void;
  /** The pid, uid and gid of the peer of a connected AF_UNIX socket (SO_PEERCRED), as of its connect(). */
  peerCredentials(fd: number): { pid: number; uid: number; gid: number };
  /** A NETLINK_SOCK_DIAG socket in the network namespace of `pid` (a process of a sandbox the caller owns). */
  openSockDiag(pid: number): number;
  /** The inode of the socket with this exact tuple (its own end first) in the socket's namespace; 0: none. */
  sockDiagInode(fd: number, proto: 'tcp' | 'udp', family: 4 | 6, src: Buffer, srcPort: number, dst: Buffer, dstPort: number): number;
  /**
   * flock(fd, LOCK_SH or LOCK_EX, LOCK_NB): true when the lock is held now, false when another holder's
   * conflicts. It is released when the fd is closed (by every process it was passed to) or its holder dies.
   */
  tryLock(fd: number, exclusive: boolean): boolean;
}

/** The package root: the nearest directory above this module (compiled or not) with a package.json. */
export const packageRoot = (() => {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'package.json'))) {
    const parent = dirname(dir);
    if (parent === dir) throw new Error('cannot find the tapbox package root; reinstall tapbox.');
    dir = parent;
  }
  return dir;
})();

/** Where `npm install` builds the addon. */
export const addonPath = join(packageRoot, 'build', 'Release', 'tapbox_native.node');

function load(): NativeAddon | null {
  if (!existsSync(addonPath)) return null;
  return createRequire(import.meta.url)(addonPath) as NativeAddon;
}

/** The addon, or null when it is not built. */
export const native: NativeAddon | null = load();

/** The addon; throws a sentence naming the fix when it is not built. */
export function requireNative(): NativeAddon {
  if (!native) {
    throw new Error(`tapbox's native addon is not built (${addonPath} is missing); run \`npm install\` (or \`npm run build\`) in the tapbox package.`);
  }
  return native;
}

// TapEndpoint on a real TAP: an unprivileged user creates tap0 in a fresh user+network namespace
// (198.18.0.1/24 inside, a test-only range) and passes its fd back over a SOCK_SEQPACKET socket, as the
// launcher does. Inside, ping 198.18.0.2; outside, the test answers the kernel's ARP request and ICMP
// echo through the TapEndpoint. A successful ping and a neighbour entry with our MAC prove both that
// we read the sandbox's frames and that the frames we write reach its kernel. With the virtio-net header
// (vnetHdr), the sandbox also opens a TCP connection, which shows the offloads at work: a segment bigger
// than the MTU whose checksum was left to us.
import { execFileSync, spawn } from 'node:child_process';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { checksum, pseudoHeaderChecksum } from '../../netstack/header/checksum.js';
import { closeFd, recvMessage, socketpair, type ControlMessage } from '../../src/supervisor/control.js';
import type { NetworkDispatcher } from '../../netstack/link/endpoint.js';
import { TapEndpoint } from '../../netstack/link/tap.js';

const receive = promisify(recvMessage) as (fd: number) => Promise<ControlMessage>;

const PEER_IP = Buffer.from([198, 18, 0, 2]);
const PEER_MAC = Buffer.from('020000000002', 'hex');

// Runs inside `unshare -rn` with the control socket on fd 3; argv[1] is 'vnet' to use the vnet header.
const SANDBOX_SIDE = `
import fcntl, os, socket, struct, subprocess, sys
vnet = sys.argv[1] == 'vnet'
fd = os.open('/dev/net/tun', os.O_RDWR | os.O_CLOEXEC)
flags = 0x0002 | 0x1000 | (0x4000 if vnet else 0)  # IFF_TAP | IFF_NO_PI | IFF_VNET_HDR
fcntl.ioctl(fd, 0x400454ca, struct.pack('16sH', b'tap0', flags))  # TUNSETIFF
if vnet:
    fcntl.ioctl(fd, 0x400454d0, 1 | 2 | 4)  # TUNSETOFFLOAD: TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6
for cmd in (['ip', 'link', 'set', 'lo', 'up'],
            ['ip', 'link', 'set', 'tap0', 'address', '02:00:00:00:00:01', 'mtu', '1500', 'up'],
            ['ip', 'addr', 'add', '198.18.0.1/24', 'dev', 'tap0']):
    subprocess.run(cmd, check=True)
control = socket.socket(fileno=3)
socket.send_fds(control, [b'TAP'], [fd])
os.close(fd)
ping = subprocess.run(['ping', '-c', '1', '-W', '10', '198.18.0.2'], capture_output=True)
neighbour = subprocess.run(['ip', 'neigh', 'show', '198.18.0.2', 'dev', 'tap0'], capture_output=True, text=True).stdout
if vnet:
    connection = socket.create_connection(('198.18.0.2', 9), timeout=10)
    connection.sendall(b'x' * 12000)  # within the initial window: goes out at once, in super-segments
control.send(f'{ping.returncode} {neighbour.strip()}'.encode())
control.recv(16)  # stay alive (and keep tap0) until the test is done
`;

/**
 * Answers ARP requests and ICMP echo requests for PEER_IP, like a host at the other end of the wire, and
 * a SYN to port 9 with a SYN-ACK; records the largest TCP data frame that follows.
 */
/** The Ethernet and IPv4 facts the peer dispatches on (the TAP hands frames over unparsed). */
function headerFacts(frame: Buffer): { ethertype: number; ipProtocol: number; ipv4ChecksumOk: boolean; l4Offset: number } {
  const ethertype = frame.length >= 14 ? frame.readUInt16BE(12) : -1;
  if (ethertype !== 0x0800 || frame.length < 34) return { ethertype, ipProtocol: -1, ipv4ChecksumOk: false, l4Offset: -1 };
  const ihl = (frame[14]! & 0x0f) * 4;
  return { ethertype, ipProtocol: frame[23]!, ipv4ChecksumOk: checksum(frame, 14, ihl) === 0xffff, l4Offset: 14 + ihl };
}

class Peer implements NetworkDispatcher {
  seen: string[] = [];
  largestTcpData: { length: number; gsoSize: number; checksumPartial: boolean } | null = null;
  private readonly tcpDataWaiters: Array<() => void> = [];
  constructor(private readonly tap: TapEndpoint) {}

  tcpData(): Promise<void> {
    return this.largestTcpData ? Promise.resolve() : new Promise((resolve) => this.tcpDataWaiters.push(resolve));
  }

  deliverFrame(frame: Buffer): void {
    const info = { ...headerFacts(frame), gsoSize: this.tap.frameInfo.gsoSize, checksumPartial: this.tap.frameInfo.checksumPartial };
    if (info.ethertype === 0x0806 && frame.readUInt16BE(20) === 1 && frame.subarray(38, 42).equals(PEER_IP)) {
      this.seen.push('arp-request');
      this.tap.writeFrame(arpReply(frame));
    }
    if (info.ethertype === 0x0800 && info.ipProtocol === 1 && info.ipv4ChecksumOk && frame[info.l4Offset] === 8) {
      this.seen.push('icmp-echo-request');
      this.tap.writeFrame(echoReply(frame, info.l4Offset));
    }
    if (info.ethertype === 0x0800 && info.ipProtocol === 6 && frame.readUInt16BE(info.l4Offset + 2) === 9) {
      const flags = frame[info.l4Offset + 13]!;
      if (flags & SYN) this.tap.writeFrame(synAck(frame, info.l4Offset));
      const dataLength = frame.readUInt16BE(16) + 14 - info.l4Offset - (frame[info.l4Offset + 12]! >> 4) * 4;
      if (dataLength > 0 && frame.length > (this.largestTcpData?.length ?? 0)) {
        this.largestTcpData = { length: frame.length, gsoSize: info.gsoSize, checksumPartial: info.checksumPartial };
        for (const w of this.tcpDataWaiters.splice(0)) w();
      }
    }
  }

  batchDone(): void {}
}

function arpReply(request: Buffer): Buffer {
  const reply = Buffer.from(request.subarray(0, 42));
  request.copy(reply, 0, 6, 12); // to the asker
  PEER_MAC.copy(reply, 6);
  reply.writeUInt16BE(2, 20); // opcode: reply
  PEER_MAC.copy(reply, 22);
  PEER_IP.copy(reply, 28);
  request.copy(reply, 32, 22, 32); // target = the asker's MAC and IP
  return reply;
}

const SYN = 0x02;
const ACK = 0x10;

function synAck(syn: Buffer, tcpOffset: number): Buffer {
  const reply = Buffer.alloc(tcpOffset + 24);
  syn.copy(reply, 0, 6, 12);
  PEER_MAC.copy(reply, 6);
  syn.copy(reply, 12, 12, 34); // ethertype and IPv4 header (no options), fixed up below
  reply.writeUInt16BE(reply.length - 14, 16);
  syn.copy(reply, 26, 30, 34);
  syn.copy(reply, 30, 26, 30);
  reply.writeUInt16BE(0, 24);
  reply.writeUInt16BE(~checksum(reply, 14, 20) & 0xffff, 24);
  const tcp = tcpOffset;
  reply.writeUInt16BE(9, tcp);
  syn.copy(reply, tcp + 2, tcp, tcp + 2);
  reply.writeUInt32BE(0x10000, tcp + 4);
  reply.writeUInt32BE((syn.readUInt32BE(tcp + 4) + 1) >>> 0, tcp + 8);
  reply[tcp + 12] = 6 << 4;
  reply[tcp + 13] = SYN | ACK;
  reply.writeUInt16BE(0xffff, tcp + 14);
  reply.writeUInt32BE(0x020405b4, tcp + 20); // MSS 1460
  const pseudo = pseudoHeaderChecksum(reply.subarray(26, 30), reply.subarray(30, 34), 6, 24);
  reply.writeUInt16BE(~checksum(reply, tcp, 24, pseudo) & 0xffff, tcp + 16);
  return reply;
}

function echoReply(request: Buffer, icmpOffset: number): Buffer {
  const reply = Buffer.from(request);
  request.copy(reply, 0, 6, 12);
  PEER_MAC.copy(reply, 6);
  request.copy(reply, 26, 30, 34); // swap the IP addresses
  request.copy(reply, 30, 26, 30);
  reply[icmpOffset] = 0; // echo reply
  reply.writeUInt16BE(0, icmpOffset + 2);
  reply.writeUInt16BE(~checksum(reply, icmpOffset, reply.length - icmpOffset) & 0xffff, icmpOffset + 2);
  reply.writeUInt16BE(0, 24);
  reply.writeUInt16BE(~checksum(reply, 14, icmpOffset - 14) & 0xffff, 24);
  return reply;
}

/** Run as the unprivileged test user when we are root, as ourselves otherwise. */
function unprivileged(): { uid?: number; gid?: number } {
  if (process.getuid?.() !== 0) return {};
  const id = (flag: string) => Number(execFileSync('id', [flag, 'tapboxtest'], { encoding: 'utf8' }).trim());
  return { uid: id('-u'), gid: id('-g') };
}

async function withSandboxTap(vnet: boolean, body: (tap: TapEndpoint, peer: Peer, report: Promise<string>) => Promise<void>): Promise<void> {
  const [ours, theirs] = socketpair();
  const child = spawn('unshare', ['-rn', '/usr/bin/python3', '-c', SANDBOX_SIDE, vnet ? 'vnet' : 'plain'], {
    stdio: ['ignore', 'inherit', 'inherit', theirs],
    ...unprivileged(),
  });
  closeFd(theirs);
  const exited = new Promise<number | null>((resolve) => child.on('exit', resolve));
  try {
    const hello = await receive(ours);
    expect(hello.data.toString()).toBe('TAP');
    expect(hello.fd).toBeTypeOf('number');
    const tap = new TapEndpoint(hello.fd!, { mtu: 1500, vnetHdr: vnet });
    const peer = new Peer(tap);
    tap.attach(peer);
    try {
      await body(tap, peer, receive(ours).then((m) => m.data.toString()));
    } finally {
      tap.close();
    }
  } finally {
    closeFd(ours);
  }
  expect(await exited).toBe(0);
}

describe('TapEndpoint on a TAP created by an unprivileged user namespace', () => {
  it('reads the sandbox kernel’s ARP and ICMP frames and the kernel accepts the frames it writes', async () => {
    await withSandboxTap(false, async (tap, peer, report) => {
      const [pingStatus, ...neighbour] = (await report).split(' ');
      expect(pingStatus).toBe('0');
      expect(neighbour.join(' ')).toContain('lladdr 02:00:00:00:00:02');
      expect(peer.seen).toContain('arp-request');
      expect(peer.seen).toContain('icmp-echo-request');
      expect(tap.stats.framesOut).toBeGreaterThanOrEqual(2);
      expect(tap.stats.writeErrors).toBe(0);
    });
  });

  it('with the vnet header: same exchange, plus a TCP super-segment larger than the MTU with its checksum left to us', async () => {
    await withSandboxTap(true, async (tap, peer, report) => {
      const [pingStatus, ...neighbour] = (await report).split(' ');
      expect(pingStatus).toBe('0');
      expect(neighbour.join(' ')).toContain('lladdr 02:00:00:00:00:02');
      await peer.tcpData();
      expect(peer.largestTcpData).toMatchObject({ gsoSize: 1460, checksumPartial: true });
      expect(peer.largestTcpData!.length).toBeGreaterThan(1500 + 14);
      expect(tap.stats.writeErrors).toBe(0);
    });
  });
});

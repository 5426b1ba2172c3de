// The kernel's socket tables of the sandbox's network namespace (/proc/PID/net/{tcp,tcp6,udp,udp6},
// read through any process of the sandbox): which socket inode a flow's 4-tuple belongs to.
// Addresses there are hexadecimal 32-bit words in the host's byte order, ports big-endian hexadecimal:
// "0202000A:A4F2" is 10.0.2.2:42226 on a little-endian host.
import { endianness } from 'node:os';
import { parseIp, type IpAddr } from '../policy/address.js';
import type { Proto } from '../policy/rule.js';

export interface FlowTuple {
  proto: Proto;
  src: string;
  srcPort: number;
  dst: string;
  dstPort: number;
}

const LITTLE_ENDIAN = endianness() === 'LE';

/** `ip` as the kernel prints it in a table of its family (IPv4 in tcp6/udp6: ::ffff:a.b.c.d). */
export function kernelHex(ip: IpAddr, family: 4 | 6): string {
  const value = ip.family === 4 && family === 6 ? (0xffffn << 32n) | ip.value : ip.value;
  const bytes = family === 4 ? 4 : 16;
  const hex = value.toString(16).padStart(bytes * 2, '0');
  let out = '';
  for (let word = 0; word < bytes / 4; word++) {
    const w = hex.slice(word * 8, word * 8 + 8);
    out += LITTLE_ENDIAN ? w.slice(6, 8) + w.slice(4, 6) + w.slice(2, 4) + w.slice(0, 2) : w;
  }
  return out.toUpperCase();
}

const portHex = (port: number) => port.toString(16).toUpperCase().padStart(4, '0');

/**
 * The inode of the socket that sent `flow`, from the text of one table (`family`: 4 for tcp/udp, 6 for
 * tcp6/udp6); 0 when no socket matches. A TCP socket matches both ends exactly; a UDP socket may be
 * bound to the wildcard address and unconnected (sendto), so its local port decides, and among several
 * the one connected to this destination, then the one bound to this address, wins.
 */
export function findSocketInode(table: string, family: 4 | 6, flow: FlowTuple): number {
  const src = parseIp(flow.src);
  const dst = parseIp(flow.dst);
  if (!src || !dst || (family === 4 && (src.family === 6 || dst.family === 6))) return 0;
  const local = `${kernelHex(src, family)}:${portHex(flow.srcPort)}`;
  const remote = `${kernelHex(dst, family)}:${portHex(flow.dstPort)}`;
  const anyAddr = '0'.repeat(family === 4 ? 8 : 32);
  const localPort = `:${portHex(flow.srcPort)}`;
  let best = 0;
  let bestScore = 0;
  for (const line of table.split('\n')) {
    // sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode
    const f = line.trim().split(/\s+/);
    if (f.length < 10 || !f[1]!.endsWith(localPort)) continue;
    const inode = Number(f[9]);
    if (!Number.isSafeInteger(inode) || inode === 0) continue;
    if (flow.proto === 'tcp') {
      if (f[1] === local && f[2] === remote) return inode;
      continue;
    }
    const localOk = f[1] === local || f[1] === `${anyAddr}${localPort}`;
    const remoteOk = f[2] === remote || f[2] === `${anyAddr}:0000`;
    if (!localOk || !remoteOk) continue;
    const score = (f[2] === remote ? 2 : 0) + (f[1] === local ? 1 : 0) + 1;
    if (score > bestScore) [best, bestScore] = [inode, score];
  }
  return best;
}

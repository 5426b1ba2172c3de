// The kernel's socket tables of the sandbox's network namespace (/proc/PID/net/{tcp,tcp6,udp,udp6},
// read through any process of the sandbox): which socket inode a flow's 4-tuple belongs to.
// Addresses there are hexadecimal 32-bit words in the host's byte order, ports big-endian hexadecimal:
// "0202000A:A4F2" is 10.0.2.2:42226 on a little-endian host. The tables list TIME_WAIT sockets too
// (a busy sandbox has thousands), so they are searched chunk by chunk as the kernel writes them, and
// the search stops at the flow's socket (TableSearch).
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

/** The best UDP match: connected to this destination (2), bound to this address (1), else by port alone. */
const BEST_UDP = 4;

/**
 * Looks for the socket of one flow in a table fed in whole lines (`push`). A TCP socket matches both
 * ends exactly (found: done); a UDP socket may be bound to the wildcard address and unconnected
 * (sendto), so its local port decides, and among several the one connected to this destination, then
 * the one bound to this address, wins. Sockets with inode 0 (TIME_WAIT, orphans) belong to nobody.
 */
export class TableSearch {
  inode = 0;
  private score = 0;
  private readonly local: string;
  private readonly remote: string;
  private readonly anyLocal: string;
  private readonly anyRemote: string;
  private readonly localPort: string;
  readonly possible: boolean;

  constructor(
    family: 4 | 6,
    private readonly flow: FlowTuple,
  ) {
    const src = parseIp(flow.src);
    const dst = parseIp(flow.dst);
    this.possible = Boolean(src && dst && !(family === 4 && (src.family === 6 || dst.family === 6)));
    const any = '0'.repeat(family === 4 ? 8 : 32);
    this.localPort = `:${portHex(flow.srcPort)} `;
    this.local = src ? `${kernelHex(src, family)}:${portHex(flow.srcPort)}` : '';
    this.remote = dst ? `${kernelHex(dst, family)}:${portHex(flow.dstPort)}` : '';
    this.anyLocal = `${any}:${portHex(flow.srcPort)}`;
    this.anyRemote = `${any}:0000`;
  }

  /** True once nothing better can be found. */
  get done(): boolean {
    return !this.possible || (this.flow.proto === 'tcp' ? this.inode !== 0 : this.score === BEST_UDP);
  }

  /** Searches whole lines of the table. */
  push(text: string): void {
    if (this.done) return;
    const needle = this.flow.proto === 'tcp' ? ` ${this.local} ${this.remote} ` : this.localPort;
    for (let at = text.indexOf(needle); at >= 0 && !this.done; at = text.indexOf(needle, at + needle.length)) {
      const start = text.lastIndexOf('\n', at) + 1;
      const end = text.indexOf('\n', at);
      this.line(text.slice(start, end < 0 ? text.length : end).trim().split(/\s+/));
    }
  }

  private line(f: string[]): void {
    // sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode
    if (f.length < 10) return;
    const inode = Number(f[9]);
    if (!Number.isSafeInteger(inode) || inode === 0) return;
    if (this.flow.proto === 'tcp') {
      if (f[1] === this.local && f[2] === this.remote) this.inode = inode;
      return;
    }
    const localOk = f[1] === this.local || f[1] === this.anyLocal;
    const remoteOk = f[2] === this.remote || f[2] === this.anyRemote;
    if (!localOk || !remoteOk) return;
    const score = (f[2] === this.remote ? 2 : 0) + (f[1] === this.local ? 1 : 0) + 1;
    if (score > this.score) [this.inode, this.score] = [inode, score];
  }
}

/** The inode of the socket that sent `flow`, from the whole text of one table; 0 when none matches. */
export function findSocketInode(table: string, family: 4 | 6, flow: FlowTuple): number {
  const search = new TableSearch(family, flow);
  search.push(table);
  return search.inode;
}

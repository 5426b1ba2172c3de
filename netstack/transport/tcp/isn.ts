// Initial sequence numbers per RFC 6528: ISN = M + F(localip, localport, remoteip, remoteport, key),
// M a 4-microsecond clock, F a keyed hash (SHA-256 here) with a per-stack random key, so ISNs are
// unpredictable to an off-path attacker yet monotonic for one 4-tuple.
import { createHash, randomBytes } from 'node:crypto';
import type { Clock } from '../../tcpip.js';

export class IsnGenerator {
  private readonly key = randomBytes(16);

  constructor(private readonly clock: Clock) {}

  generate(local: Uint8Array, localPort: number, remote: Uint8Array, remotePort: number): number {
    const h = createHash('sha256');
    h.update(this.key);
    h.update(local);
    h.update(remote);
    const ports = Buffer.allocUnsafe(4);
    ports.writeUInt16BE(localPort, 0);
    ports.writeUInt16BE(remotePort, 2);
    h.update(ports);
    const f = h.digest().readUInt32BE(0);
    const m = Math.floor(this.clock.now() * 250); // 4 µs ticks
    return (f + m) >>> 0;
  }
}

// UdpProtocol.open: the stack sends into the sandbox, for UDP ports published to the host (-p .../udp).
// Datagrams go from one of our link addresses and an ephemeral port to the sandbox's port; the
// sandbox's replies on that tuple come back to the session, never to the forwarder.
import { describe, expect, it } from 'vitest';
import { pseudoHeaderChecksum } from '../../netstack/header/checksum.js';
import { parseIpv4Frame, parseIpv6Frame, SANDBOX4, SANDBOX6, setup, sumOk, udp4Frame, udp6Frame, v4, v6 } from './frames.js';

const GATEWAY4 = v4('10.0.2.2');
const GATEWAY6 = v6('fd00::2');
const flush = () => new Promise<void>((resolve) => setImmediate(resolve));

describe('UDP sessions the stack opens towards the sandbox', () => {
  it('sends from the gateway and an ephemeral port, and takes the replies on that tuple', async () => {
    const { link, forwarder, stack } = setup();
    const conn = stack.udp.open(4, '10.0.2.2', '10.0.2.100', 5353)!;
    const received: string[] = [];
    conn.onMessage = (p) => received.push(String(p));
    conn.send(Buffer.from('query'));
    const ip = parseIpv4Frame(link.drain()[0]!);
    expect([ip.src, ip.dst, ip.protocol]).toEqual(['10.0.2.2', '10.0.2.100', 17]);
    const d = ip.payload;
    const ourPort = d.readUInt16BE(0);
    expect(ourPort).toBeGreaterThanOrEqual(32768);
    expect(d.readUInt16BE(2)).toBe(5353);
    expect(sumOk(d, 0, d.length, pseudoHeaderChecksum(GATEWAY4, SANDBOX4, 17, d.length))).toBe(true);
    expect(d.subarray(8)).toEqual(Buffer.from('query'));

    link.inject(udp4Frame(GATEWAY4, 5353, ourPort, Buffer.from('answer')));
    link.inject(udp4Frame(GATEWAY4, 5353, ourPort === 40000 ? 40001 : 40000, Buffer.from('stray')));
    await flush();
    expect(received).toEqual(['answer']);
    // Only the stray datagram, on another tuple, asked the forwarder.
    expect(forwarder.udpRequests.map((r) => String(r.firstPayload))).toEqual(['stray']);
  });

  it('works over IPv6, expires when idle, and refuses past the session cap', async () => {
    const { link, clock, stack } = setup({ udp: { maxSessions: 1, idleMs: 1000 } });
    const conn = stack.udp.open(6, 'fd00::2', 'fd00::100', 53)!;
    let closed = false;
    conn.onClose = () => (closed = true);
    conn.send(Buffer.from('q6'));
    const ip = parseIpv6Frame(link.drain()[0]!);
    expect(ip.src).toEqual(GATEWAY6);
    expect(ip.dst).toEqual(SANDBOX6);
    expect(stack.udp.open(4, '10.0.2.2', '10.0.2.100', 53)).toBeNull();
    clock.advance(1500);
    expect(closed).toBe(true);
    expect(stack.udp.open(4, '10.0.2.2', '10.0.2.100', 53)).not.toBeNull();
    await flush();
  });
});

// Every resource cap, one test each: it has a default, hitting it refuses the newest work (RST, ICMP,
// REFUSED, drop), says so through the limit hook / a 'limit' audit event, and what was already admitted
// keeps going. The stack runs on the in-memory link (frames.ts) or the TCP harness; the supervisor's
// caps (flows, DNS in flight) on their own classes.
import { EventEmitter } from 'node:events';
import dnsPacket from 'dns-packet';
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import type { UdpForwarderRequest } from '../../netstack/index.js';
import type { LimitName } from '../../netstack/index.js';
import { UDP_DEFAULTS } from '../../netstack/transport/udp/config.js';
import { IPV4_REASSEMBLY_DEFAULTS } from '../../netstack/network/ipv4.js';
import { defaultTcpConfig } from '../../netstack/transport/tcp/config.js';
import { Auditor } from '../../src/egress/audit/auditor.js';
import type { LimitEvent } from '../../src/egress/audit/limits.js';
import { EgressStats } from '../../src/egress/audit/summary.js';
import { DnsProxy } from '../../src/egress/dns/proxy.js';
import { createForwarder } from '../../src/egress/forwarder/index.js';
import { DEFAULT_MAX_FLOWS } from '../../src/egress/forwarder/defaults.js';
import { parse } from '../../src/egress/policy/allowlist.js';
import { Policy } from '../../src/egress/policy/policy.js';
import { FakeUdpRequest } from '../helpers/forwarder-fakes.js';
import { ethernet, GATEWAY_MAC, ipv4, SANDBOX4, SANDBOX_MAC, setup, udp4Frame, v4 } from '../conformance/frames.js';
import { ACK, Harness, RST, SYN } from '../conformance/tcp-harness.js';

const REMOTE4 = v4('198.18.0.1');
const flush = () => new Promise<void>((resolve) => setImmediate(resolve));

type Hit = [LimitName, number, string];
function recorder() {
  const hits: Hit[] = [];
  return { hits, onLimit: (limit: LimitName, value: number, detail: string) => void hits.push([limit, value, detail]) };
}

describe('defaults', () => {
  it('every cap has a finite configured default', () => {
    const defaults = [
      defaultTcpConfig.maxPendingRequests,
      defaultTcpConfig.maxPendingPerDestination,
      defaultTcpConfig.maxTotalBufferBytes,
      defaultTcpConfig.maxTotalOutOfOrderBytes,
      defaultTcpConfig.outOfOrderBufferSize,
      UDP_DEFAULTS.maxSessions,
      IPV4_REASSEMBLY_DEFAULTS.maxBytes,
      DEFAULT_MAX_FLOWS,
    ];
    for (const d of defaults) expect(Number.isFinite(d) && d > 0).toBe(true);
  });
});

describe('TCP caps', () => {
  it('pending dials: the newest SYN past the cap is reset and reported, the pending ones still complete', () => {
    const { hits, onLimit } = recorder();
    const h = new Harness({ maxPendingRequests: 2 }, { manualAccept: true, onLimit });
    h.inject({ flags: SYN, seq: 1, srcPort: 1001, mss: 1460 });
    h.inject({ flags: SYN, seq: 1, srcPort: 1002, mss: 1460, dstAddr: Buffer.from([198, 18, 0, 11]) });
    h.inject({ flags: SYN, seq: 1, srcPort: 1003, mss: 1460, dstAddr: Buffer.from([198, 18, 0, 12]) });
    expect(h.requests).toHaveLength(2);
    expect(h.take().map((s) => [s.dstPort, s.flags])).toEqual([[1003, RST | ACK]]);
    expect(hits).toEqual([['tcp-pending', 2, expect.stringContaining('new SYN reset')]]);
    h.requests[0]!.accept();
    expect(h.take().map((s) => [s.dstPort, s.flags])).toEqual([[1001, SYN | ACK]]);
  });

  it('total buffered bytes: past the budget a new connection is reset, an open one keeps flowing', async () => {
    const { hits, onLimit } = recorder();
    const h = new Harness({ maxTotalBufferBytes: 8000, bufferFloorBytes: 4000 }, { onLimit });
    const peer = await h.open({ srcPort: 2001, noReader: true });
    const data = Buffer.alloc(9000, 7);
    peer.send({ payload: data.subarray(0, 4500) });
    peer.nxt += 4500;
    peer.send({ payload: data.subarray(4500) });
    peer.nxt += 4500;
    h.take();
    expect(h.tcp.budget.exhausted).toBe(true);
    h.inject({ flags: SYN, seq: 1, srcPort: 2002, mss: 1460 });
    expect(h.take().map((s) => [s.dstPort, s.flags])).toEqual([[2002, RST | ACK]]);
    expect(hits).toEqual([['tcp-buffers', 8000, expect.stringContaining('new SYN reset')]]);
    // The open connection is not stalled: its reader drains it, and the budget lets new ones in again.
    const got: Buffer[] = [];
    peer.conn.on('data', (d: Buffer) => got.push(d));
    await flush();
    expect(Buffer.concat(got)).toEqual(data);
    expect(h.tcp.budget.exhausted).toBe(false);
    h.inject({ flags: SYN, seq: 1, srcPort: 2003, mss: 1460 });
    expect(h.take().map((s) => s.flags)).toContain(SYN | ACK);
  });

  it('out-of-order memory, per connection and in total: the segment is dropped and reported', async () => {
    const { hits, onLimit } = recorder();
    const h = new Harness({ outOfOrderBufferSize: 2000, maxTotalOutOfOrderBytes: 2500 }, { onLimit });
    const a = await h.open({ srcPort: 3001 });
    const b = await h.open({ srcPort: 3002 });
    const data = Buffer.alloc(5000, 1);
    a.send({ seq: a.nxt + 1000, payload: data.subarray(0, 1500) });
    a.send({ seq: a.nxt + 3000, payload: data.subarray(0, 1000) }); // a would hold 2500 > 2000
    expect(hits.map((x) => x.slice(0, 2))).toEqual([['tcp-out-of-order', 2000]]);
    b.send({ seq: b.nxt + 1000, payload: data.subarray(0, 1500) }); // 1500 + 1500 > 2500 in total
    expect(hits.map((x) => x.slice(0, 2))).toEqual([
      ['tcp-out-of-order', 2000],
      ['tcp-out-of-order', 2500],
    ]);
    // Filling the hole still delivers what was kept.
    a.send({ payload: data.subarray(0, 1000) });
    a.nxt += 2500;
    await flush();
    expect(Buffer.concat(a.received).length).toBe(2500);
  });
});

describe('stack caps', () => {
  it('UDP sessions: a new tuple past the cap gets ICMP and is reported, an open session keeps relaying', async () => {
    const { hits, onLimit } = recorder();
    const { link, forwarder } = setup({ udp: { maxSessions: 1 }, onLimit });
    const received: string[] = [];
    forwarder.onUdp = (req: UdpForwarderRequest) => {
      const conn = req.accept();
      conn.onMessage = (p) => received.push(String(p));
    };
    link.inject(udp4Frame(REMOTE4, 1001, 9, Buffer.from('a')));
    link.inject(udp4Frame(REMOTE4, 1002, 9, Buffer.from('b')));
    link.inject(udp4Frame(REMOTE4, 1001, 9, Buffer.from('c')));
    await flush();
    expect(received).toEqual(['a', 'c']);
    expect(hits).toEqual([['udp-sessions', 1, expect.stringContaining('refused')]]);
    expect(link.drain().length).toBe(1); // the ICMP error
  });

  it('reassembly memory: fragments past the cap are dropped or evict the oldest, and it is reported', () => {
    const { hits, onLimit } = recorder();
    const { link, stack, forwarder } = setup({ reassembly4: { maxBytes: 4000 }, onLimit });
    // Ten incomplete datagrams of 1 KiB first fragments: 4000 bytes hold three or so.
    for (let id = 1; id <= 10; id++) {
      const packet = ipv4({ src: SANDBOX4, dst: REMOTE4, protocol: 17, id, moreFragments: true, payload: Buffer.alloc(1024, id) });
      link.inject(ethernet(GATEWAY_MAC, SANDBOX_MAC, 0x0800, packet));
    }
    expect(stack.ipv4.reassembler.bytesInUse).toBeLessThanOrEqual(4000);
    expect(hits.length).toBeGreaterThan(0);
    expect(new Set(hits.map((x) => x[0]))).toEqual(new Set(['reassembly']));
    // An unfragmented datagram still goes through.
    link.inject(udp4Frame(REMOTE4, 5000, 9, Buffer.from('whole')));
    expect(forwarder.udpRequests.map((r) => String(r.firstPayload))).toEqual(['whole']);
  });
});

describe('supervisor caps', () => {
  it('open flows: past the limit a new flow is refused and a rate-limited limit event is logged', async () => {
    const policy = Policy.fromAllowlists([parse('198.18.0.0/15\n', 'test.allow')], { maxFlows: 2 });
    const events = new EventEmitter();
    const limits: LimitEvent[] = [];
    events.on('limit', (e: LimitEvent) => limits.push(e));
    const auditor = new Auditor(pino({ level: 'silent' }), events, new EgressStats(), false);
    const dns = new DnsProxy({ policy, upstream: { resolve: async () => null }, hostAddrs: new Set() });
    const forwarder = createForwarder({
      policy,
      dns,
      auditor,
      sandbox: { dns4: '10.0.2.3', dns6: 'fd00::3', gateway4: '10.0.2.2', gateway6: 'fd00::2' },
      sniCheck: false,
    });
    const requests = [1, 2, 3, 4].map((n) => new FakeUdpRequest({ family: 4, srcAddr: '10.0.2.100', srcPort: 1000 + n, dstAddr: '198.18.0.1', dstPort: 9 }, Buffer.from('x')));
    for (const r of requests) forwarder.udp(r);
    await new Promise((r) => setTimeout(r, 50));
    expect(requests.map((r) => r.rejected)).toEqual([null, null, 'admin-prohibited', 'admin-prohibited']);
    auditor.close();
    expect(limits.map((e) => [e.limit, e.value])).toEqual([
      ['flows', 2],
      ['flows', 2],
    ]);
    expect(limits.reduce((n, e) => n + e.count, 0)).toBe(2);
    forwarder.close();
  });

  it('DNS queries in flight: past the cap a query is REFUSED at once and reported, never queued', async () => {
    const policy = Policy.fromAllowlists([parse('*.example.com\n', 'test.allow')], {});
    let release: () => void = () => {};
    const blocked = new Promise<void>((r) => (release = r));
    const upstream = {
      resolve: async () => {
        await blocked;
        return { answers: [{ type: 'A', name: 'a.example.com', ttl: 60, data: '198.18.0.1' }], flags: 0 } as never;
      },
    };
    const hits: [string, number][] = [];
    const proxy = new DnsProxy({ policy, upstream, hostAddrs: new Set(), maxInFlight: 2, onLimit: (l, v) => void hits.push([l, v]) });
    const query = (id: number) => dnsPacket.encode({ type: 'query', id, flags: dnsPacket.RECURSION_DESIRED, questions: [{ type: 'A', name: `q${id}.example.com` }] });
    const answers = [1, 2, 3, 4].map((id) => proxy.answer(query(id), 'udp'));
    const third = dnsPacket.decode((await answers[2])!);
    expect(third.rcode).toBe('REFUSED');
    expect(hits).toEqual([
      ['dns-in-flight', 2],
      ['dns-in-flight', 2],
    ]);
    release();
    const first = dnsPacket.decode((await answers[0])!);
    expect(first.rcode).toBe('NOERROR');
    expect(dnsPacket.decode((await answers[3])!).rcode).toBe('REFUSED');
    proxy.close();
  });
});

import dgram from 'node:dgram';
import net from 'node:net';
import { Duplex } from 'node:stream';
import dnsPacket from 'dns-packet';
import { afterEach, describe, expect, it } from 'vitest';
import { ManualClock } from '../../netstack/stack/manual-clock.js';
import { DnsProxy, type DnsEvent } from '../../src/egress/dns/proxy.js';
import { isRebindingTarget } from '../../src/egress/dns/rebinding.js';
import { parseResolvConf, parseUpstream, Upstream } from '../../src/egress/dns/upstream.js';
import { parse } from '../../src/egress/policy/allowlist.js';
import { Policy } from '../../src/egress/policy/policy.js';

type Responder = (q: dnsPacket.DecodedPacket) => dnsPacket.Packet | null | Promise<dnsPacket.Packet | null>;

/** A DNS server on 127.0.0.1 (UDP and TCP on the same port) answering through `respond`. */
async function fakeUpstream(respond: Responder, opts: { truncateUdp?: boolean } = {}) {
  const seen: string[] = [];
  const udp = dgram.createSocket('udp4');
  const answer = async (msg: Buffer, transport: string) => {
    const q = dnsPacket.decode(msg);
    seen.push(`${transport} ${q.questions![0].type} ${q.questions![0].name}`);
    const r = await respond(q);
    return r && dnsPacket.encode({ type: 'response', id: q.id, questions: q.questions, ...r });
  };
  udp.on('message', async (msg, rinfo) => {
    const reply = opts.truncateUdp ? dnsPacket.encode({ type: 'response', id: dnsPacket.decode(msg).id, flags: dnsPacket.TRUNCATED_RESPONSE, questions: dnsPacket.decode(msg).questions }) : await answer(msg, 'udp');
    if (opts.truncateUdp) seen.push('udp truncated');
    if (reply) udp.send(reply, rinfo.port, rinfo.address);
  });
  await new Promise<void>((r) => udp.bind(0, '127.0.0.1', r));
  const port = udp.address().port;
  const tcp = net.createServer((s) => {
    let buf = Buffer.alloc(0);
    s.on('data', async (c: Buffer) => {
      buf = Buffer.concat([buf, c]);
      if (buf.length < 2 || buf.length < 2 + buf.readUInt16BE(0)) return;
      const reply = await answer(buf.subarray(2, 2 + buf.readUInt16BE(0)), 'tcp');
      if (reply) s.end(Buffer.concat([Buffer.from([reply.length >> 8, reply.length & 0xff]), reply]));
    });
  });
  await new Promise<void>((r) => tcp.listen(port, '127.0.0.1', r));
  cleanups.push(() => {
    udp.close();
    tcp.close();
  });
  return { port, seen };
}

const cleanups: (() => void)[] = [];
afterEach(() => cleanups.splice(0).forEach((c) => c()));

function setup(rules: string, port: number, opts: { maxInFlight?: number; timeoutMs?: number } = {}) {
  const clock = new ManualClock();
  const policy = Policy.fromAllowlists([parse(rules, 'test.allow')], { clock });
  const upstream = new Upstream({ servers: [{ host: '127.0.0.1', port, family: 4 }], timeoutMs: opts.timeoutMs ?? 2000, attempts: 2 });
  const events: DnsEvent[] = [];
  const proxy = new DnsProxy({ policy, upstream, hostAddrs: new Set(['192.0.2.254']), maxInFlight: opts.maxInFlight, onEvent: (e) => events.push(e) });
  cleanups.push(() => upstream.close());
  const ask = async (name: string, type: string, extra: Partial<dnsPacket.Packet> = {}) => {
    const query = dnsPacket.encode({ type: 'query', id: 4242, flags: dnsPacket.RECURSION_DESIRED, questions: [{ name, type: type as dnsPacket.RecordType }], ...extra });
    const reply = await proxy.answer(query, 'udp');
    // dns-packet decodes the rcode; its types do not declare it.
    return dnsPacket.decode(reply!) as dnsPacket.DecodedPacket & { rcode: string };
  };
  return { policy, clock, proxy, events, ask };
}

const A = (name: string, data: string, ttl = 300): dnsPacket.Answer => ({ type: 'A', name, data, ttl });
const AAAA = (name: string, data: string, ttl = 300): dnsPacket.Answer => ({ type: 'AAAA', name, data, ttl });
const CNAME = (name: string, data: string): dnsPacket.Answer => ({ type: 'CNAME', name, data, ttl: 300 });

describe('DNS proxy', () => {
  it('answers NXDOMAIN for a name no rule allows, without asking upstream', async () => {
    const up = await fakeUpstream(() => ({ answers: [A('evil.example', '192.0.2.1')] }));
    const { ask, events } = setup('good.example\n', up.port);
    const reply = await ask('evil.example', 'A');
    expect(reply.rcode).toBe('NXDOMAIN');
    expect(reply.id).toBe(4242);
    expect(reply.answers).toEqual([]);
    expect((await ask('x.evil.example', 'ANY')).rcode).toBe('REFUSED');
    expect((await ask('good.example', 'A', { flags: 5 << 11 })).rcode).toBe('NOTIMP'); // an UPDATE
    expect(up.seen).toEqual([]);
    expect(events[0]).toMatchObject({ name: 'evil.example', type: 'A', verdict: 'deny', rcode: 'NXDOMAIN', reason: 'not in allowlist' });
  });

  it('forwards an allowed name and pins its addresses for the TTL plus the grace period', async () => {
    const up = await fakeUpstream((q) => (q.questions![0].type === 'A' ? { answers: [A('good.example', '203.0.113.10', 120)] } : { answers: [AAAA('good.example', '2001:db8::10', 120)] }));
    const { ask, policy, clock, events } = setup('good.example:443\n', up.port);
    const reply = await ask('Good.Example', 'A');
    expect(reply.rcode).toBe('NOERROR');
    expect(reply.answers).toMatchObject([{ type: 'A', data: '203.0.113.10', ttl: 120 }]);
    expect((await ask('good.example', 'AAAA')).answers).toMatchObject([{ type: 'AAAA', data: '2001:db8::10' }]);
    expect(up.seen).toEqual(['udp A good.example', 'udp AAAA good.example']);
    expect(events[0]).toMatchObject({ verdict: 'allow', answers: ['A 203.0.113.10'] });

    expect(policy.decide({ proto: 'tcp', addr: '203.0.113.10', port: 443 })).toMatchObject({ verdict: 'allow', names: ['good.example'] });
    expect(policy.decide({ proto: 'tcp', addr: '2001:db8::10', port: 443 }).verdict).toBe('allow');
    expect(policy.decide({ proto: 'tcp', addr: '203.0.113.10', port: 80 }).verdict).toBe('deny');
    clock.advance(120_000 + 300_000);
    expect(policy.decide({ proto: 'tcp', addr: '203.0.113.10', port: 443 }).verdict).toBe('deny');
  });

  it('drops answers pointing inside (rebinding) and does not pin them', async () => {
    const up = await fakeUpstream((q) =>
      q.questions![0].type === 'A'
        ? { answers: ['127.0.0.1', '10.1.2.3', '169.254.169.254', '100.64.0.1', '192.168.1.1', '192.0.2.254', '198.18.0.7', '203.0.113.20'].map((d) => A('rebind.example', d)) }
        : { answers: ['::1', 'fd00:ec2::254', 'fe80::1', '::ffff:127.0.0.1', '2001:db8::20'].map((d) => AAAA('rebind.example', d)) },
    );
    const { ask, policy, events } = setup('rebind.example\n', up.port);
    const a = await ask('rebind.example', 'A');
    expect(a.answers!.map((r) => (r as dnsPacket.StringAnswer).data)).toEqual(['198.18.0.7', '203.0.113.20']);
    expect(events[0].dropped).toEqual(['127.0.0.1', '10.1.2.3', '169.254.169.254', '100.64.0.1', '192.168.1.1', '192.0.2.254']);
    const aaaa = await ask('rebind.example', 'AAAA');
    expect(aaaa.answers!.map((r) => (r as dnsPacket.StringAnswer).data)).toEqual(['2001:db8::20']);
    for (const addr of ['127.0.0.1', '169.254.169.254', '192.0.2.254', 'fd00:ec2::254', '::1']) {
      expect(policy.decide({ proto: 'tcp', addr, port: 443 }).verdict, addr).toBe('deny');
    }
    expect(policy.decide({ proto: 'tcp', addr: '198.18.0.7', port: 443 }).verdict).toBe('allow');
  });

  it('refuses a question that is not a host name before the policy or the upstream sees it', async () => {
    const up = await fakeUpstream((q) => ({ answers: [A(q.questions![0].name, '203.0.113.30')] }));
    const { ask, events } = setup('*.good.example\n', up.port);
    const bad = ['x\n0.0.0.0/0 #.good.example', 'a b.good.example', '\x1b]0;pwned\x07.good.example', 'caf\u00e9.good.example', 'x/y.good.example', '*.good.example'];
    for (const name of bad) {
      const reply = await ask(name, 'A');
      expect(reply.rcode, JSON.stringify(name)).toBe('REFUSED');
      expect(reply.answers).toEqual([]);
    }
    expect(up.seen).toEqual([]);
    expect(events.map((e) => [e.verdict, e.rcode, e.reason])).toEqual(bad.map(() => ['refuse', 'REFUSED', 'not a host name']));
    expect(events[0].name).toBe('x\\x0a0.0.0.0/0 #.good.example');
    expect(events[2].name).toBe('\\x1b]0;pwned\\x07.good.example');
    for (const e of events) expect(e.name).not.toMatch(/[\x00-\x1f\x7f]/);
    // Host names, underscores and hyphens included, still go through.
    for (const name of ['_dmarc.good.example', 'a-b.good.example', `${'x'.repeat(63)}.good.example`]) expect((await ask(name, 'A')).rcode, name).toBe('NOERROR');
    expect(up.seen).toHaveLength(3);
  });

  it('filters HTTPS/SVCB records with an empty NOERROR and never forwards them', async () => {
    const up = await fakeUpstream(() => ({ answers: [] }));
    const { ask, events } = setup('good.example\n', up.port);
    for (const type of ['UNKNOWN_65', 'UNKNOWN_64']) {
      const reply = await ask('good.example', type);
      expect(reply.rcode).toBe('NOERROR');
      expect(reply.answers).toEqual([]);
    }
    expect(up.seen).toEqual([]);
    expect(events.map((e) => [e.type, e.verdict])).toEqual([
      ['HTTPS', 'filter'],
      ['SVCB', 'filter'],
    ]);
  });

  it('follows a CNAME chain out of the allowlist, pinning its addresses to the asked name', async () => {
    const up = await fakeUpstream(() => ({
      answers: [CNAME('www.good.example', 'edge.cdn.example'), CNAME('edge.cdn.example', 'e1.cdn.example'), A('e1.cdn.example', '203.0.113.30'), A('unrelated.example', '203.0.113.31')],
    }));
    const { ask, policy } = setup('www.good.example\n', up.port);
    const reply = await ask('www.good.example', 'A');
    expect(reply.answers!.map((r) => `${r.type} ${(r as dnsPacket.StringAnswer).data}`)).toEqual(['CNAME edge.cdn.example', 'CNAME e1.cdn.example', 'A 203.0.113.30']);
    expect(policy.pinnedNames('203.0.113.30')).toEqual(['www.good.example']);
    expect(policy.decide({ proto: 'tcp', addr: '203.0.113.31', port: 443 }).verdict).toBe('deny');
    expect(policy.resolvable('e1.cdn.example').allowed).toBe(false);
  });

  it('caps the queries in flight with REFUSED', async () => {
    const release: (() => void)[] = [];
    const up = await fakeUpstream((q) => new Promise((r) => release.push(() => r({ answers: [A(q.questions![0].name, '203.0.113.40')] }))));
    const { ask, events } = setup('*.good.example\n', up.port, { maxInFlight: 2 });
    const first = ask('a.good.example', 'A');
    const second = ask('b.good.example', 'A');
    const third = await ask('c.good.example', 'A');
    expect(third.rcode).toBe('REFUSED');
    expect(events.at(-1)).toMatchObject({ name: 'c.good.example', verdict: 'refuse', reason: 'more than 2 queries in flight' });
    await expect.poll(() => release.length).toBe(2);
    release.forEach((r) => r());
    expect((await first).rcode).toBe('NOERROR');
    expect((await second).rcode).toBe('NOERROR');
  });

  it('answers SERVFAIL when the upstream does not answer', async () => {
    const up = await fakeUpstream(() => null);
    const { ask, events } = setup('good.example\n', up.port, { timeoutMs: 50 });
    expect((await ask('good.example', 'A')).rcode).toBe('SERVFAIL');
    expect(up.seen).toEqual(['udp A good.example', 'udp A good.example']);
    expect(events[0]).toMatchObject({ verdict: 'fail', rcode: 'SERVFAIL' });
  });

  it('retries over TCP when the upstream truncates, and truncates for small clients', async () => {
    const many = Array.from({ length: 60 }, (_, i) => A('big.example', `203.0.113.${i + 1}`));
    const up = await fakeUpstream(() => ({ answers: many }), { truncateUdp: true });
    const { ask, proxy } = setup('big.example\n', up.port);
    const small = await ask('big.example', 'A');
    expect(small.flag_tc).toBe(true);
    expect(small.answers).toEqual([]);
    expect(up.seen).toEqual(['udp truncated', 'tcp A big.example']);
    const edns = await ask('big.example', 'A', { additionals: [{ type: 'OPT', name: '.', udpPayloadSize: 4096, extendedRcode: 0, ednsVersion: 0, flags: 0, flag_do: false, options: [] }] });
    expect(edns.flag_tc).toBe(false);
    expect(edns.answers).toHaveLength(60);

    // The sandbox's own retry over TCP: length-prefixed messages on a stream.
    const [sandboxSide, proxySide] = duplexPair();
    proxy.serveTcp(proxySide);
    const q = dnsPacket.streamEncode({ type: 'query', id: 7, questions: [{ name: 'big.example', type: 'A' }] });
    const got = new Promise<Buffer>((resolve) => {
      let buf = Buffer.alloc(0);
      sandboxSide.on('data', (c: Buffer) => {
        buf = Buffer.concat([buf, c]);
        if (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) resolve(buf);
      });
    });
    sandboxSide.write(q);
    const reply = dnsPacket.streamDecode(await got);
    expect(reply.id).toBe(7);
    expect(reply.answers).toHaveLength(60);
  });
});

describe('DNS over TCP', () => {
  it('stops reading a connection whose answers the sandbox does not take, and answers all once it does', async () => {
    const up = await fakeUpstream(() => ({ answers: [] }));
    const { proxy, events } = setup('good.example\n', up.port);
    const [sandboxSide, proxySide] = duplexPair();
    proxy.serveTcp(proxySide);
    const total = 20_000;
    const queries = Buffer.concat(
      Array.from({ length: total }, (_, i) => dnsPacket.streamEncode({ type: 'query', id: i & 0xffff, questions: [{ name: `denied${i}.example`, type: 'A' }] })),
    );
    sandboxSide.write(queries);
    await new Promise((r) => setTimeout(r, 200));
    // Denied names are answered at once, so only backpressure holds the rest: a bounded number in memory.
    expect(events.length).toBeGreaterThan(0);
    expect(events.length).toBeLessThan(5_000);
    let answered = 0;
    let buf = Buffer.alloc(0);
    const all = new Promise<void>((resolve) =>
      sandboxSide.on('data', (c: Buffer) => {
        buf = Buffer.concat([buf, c]);
        while (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
          buf = buf.subarray(2 + buf.readUInt16BE(0));
          if (++answered === total) resolve();
        }
      }),
    );
    await all;
    expect(events).toHaveLength(total);
  });

  it('resets DNS-over-TCP connections past the cap and reports it', async () => {
    const up = await fakeUpstream(() => ({ answers: [] }));
    const clock = new ManualClock();
    const policy = Policy.fromAllowlists([parse('good.example\n', 'test.allow')], { clock });
    const upstream = new Upstream({ servers: [{ host: '127.0.0.1', port: up.port, family: 4 }] });
    cleanups.push(() => upstream.close());
    const limits: string[] = [];
    const proxy = new DnsProxy({ policy, upstream, hostAddrs: new Set(), onLimit: (l) => limits.push(l) });
    const conns = Array.from({ length: 65 }, () => duplexPair());
    for (const [, proxySide] of conns) proxy.serveTcp(proxySide);
    expect(conns.filter(([, p]) => p.destroyed)).toHaveLength(1);
    expect(limits).toEqual(['dns-tcp']);
    proxy.close();
  });
});

/** A UDP DNS server on 127.0.0.1 that records each query's source port and answers through `reply`. */
async function rawUpstream(reply: (q: dnsPacket.DecodedPacket, send: (p: dnsPacket.Packet) => void) => void) {
  const ports: number[] = [];
  const udp = dgram.createSocket('udp4');
  udp.on('message', (msg, rinfo) => {
    ports.push(rinfo.port);
    reply(dnsPacket.decode(msg), (p) => udp.send(dnsPacket.encode(p), rinfo.port, rinfo.address));
  });
  await new Promise<void>((r) => udp.bind(0, '127.0.0.1', r));
  cleanups.push(() => udp.close());
  return { port: udp.address().port, ports };
}

describe('DNS upstream', () => {
  const ask = (upstream: Upstream, name: string) => upstream.resolve({ name, type: 'A', class: 'IN' });

  it('asks a question once while it is in flight, and every asker gets the answer', async () => {
    const up = await fakeUpstream(async (q) => {
      await new Promise((r) => setTimeout(r, 20));
      return { answers: [A(q.questions![0].name, '203.0.113.7')] };
    });
    const upstream = new Upstream({ servers: [{ host: '127.0.0.1', port: up.port, family: 4 }] });
    cleanups.push(() => upstream.close());
    const answers = await Promise.all(Array.from({ length: 20 }, () => ask(upstream, 'same.example')));
    expect(answers.map((a) => (a!.answers![0] as dnsPacket.StringAnswer).data)).toEqual(Array(20).fill('203.0.113.7'));
    expect(up.seen).toEqual(['udp A same.example']);
    await ask(upstream, 'same.example');
    expect(up.seen).toHaveLength(2); // answered questions are asked again: no cache
  });

  it('ignores answers with another id or another question, and takes the one that matches', async () => {
    const up = await rawUpstream((q, send) => {
      const question = q.questions!;
      send({ type: 'response', id: (q.id! + 1) & 0xffff, questions: question, answers: [A(question[0].name, '192.0.2.66')] });
      send({ type: 'response', id: q.id, questions: [{ name: 'other.example', type: 'A' }], answers: [A('other.example', '192.0.2.67')] });
      send({ type: 'response', id: q.id, questions: question, answers: [A(question[0].name, '203.0.113.8')] });
    });
    const upstream = new Upstream({ servers: [{ host: '127.0.0.1', port: up.port, family: 4 }] });
    cleanups.push(() => upstream.close());
    for (const name of ['a.example', 'b.example', 'c.example']) {
      expect((await ask(upstream, name))!.answers).toMatchObject([{ data: '203.0.113.8' }]);
    }
  });

  it('spreads queries over a few sockets and moves to new source ports as it goes', async () => {
    const up = await rawUpstream((q, send) => send({ type: 'response', id: q.id, questions: q.questions, answers: [] }));
    const upstream = new Upstream({ servers: [{ host: '127.0.0.1', port: up.port, family: 4 }] });
    cleanups.push(() => upstream.close());
    for (let i = 0; i < 10; i++) await Promise.all(Array.from({ length: 40 }, (_, j) => ask(upstream, `n${i}-${j}.example`)));
    expect(up.ports).toHaveLength(400);
    const perPort = new Map<number, number>();
    for (const p of up.ports) perPort.set(p, (perPort.get(p) ?? 0) + 1);
    // Never one port for all (a fresh port every 64 queries at most), nor a socket per query.
    expect(perPort.size).toBeGreaterThanOrEqual(400 / 64);
    expect(perPort.size).toBeLessThan(100);
    expect(Math.max(...perPort.values())).toBeLessThanOrEqual(64);
  });
});

describe('DNS helpers', () => {
  it('reads resolv.conf and upstream addresses', () => {
    expect(parseResolvConf('# x\nnameserver 127.0.0.53\nsearch lan\nnameserver fe80::1%eth0\nnameserver 2001:db8::53\n').map((s) => s.host)).toEqual(['127.0.0.53', 'fe80::1', '2001:db8::53']);
    expect(parseUpstream('192.0.2.53')).toEqual({ host: '192.0.2.53', port: 53, family: 4 });
    expect(parseUpstream('192.0.2.53:5353')).toEqual({ host: '192.0.2.53', port: 5353, family: 4 });
    expect(parseUpstream('[2001:db8::53]:5353')).toEqual({ host: '2001:db8::53', port: 5353, family: 6 });
    expect(parseUpstream('2001:db8::53')).toEqual({ host: '2001:db8::53', port: 53, family: 6 });
    expect(() => parseUpstream('dns.example:53')).toThrow(/bad DNS upstream/);
  });

  it('knows which addresses a name must not open', () => {
    const host = new Set(['192.0.2.254']);
    for (const a of ['0.0.0.0', '127.0.0.53', '10.0.0.1', '172.16.5.5', '192.168.0.1', '100.64.1.1', '169.254.169.254', '224.0.0.1', '255.255.255.255', '::', '::1', 'fd00:ec2::254', 'fe80::1', 'ff02::1', '64:ff9b::a00:1', '192.0.2.254']) {
      expect(isRebindingTarget(a, host), a).toBe(true);
    }
    for (const a of ['8.8.8.8', '203.0.113.1', '198.18.0.1', '198.19.255.254', '2001:db8::1', '2606:4700::1111']) {
      expect(isRebindingTarget(a, host), a).toBe(false);
    }
    // The test ranges are exempt, except the host's own addresses in them (a test host's veth, say).
    const veth = new Set(['198.18.0.1', '2001:db8:5::1']);
    for (const a of ['198.18.0.1', '2001:db8:5::1', '::ffff:198.18.0.1', '64:ff9b::c612:1']) expect(isRebindingTarget(a, veth), a).toBe(true);
    for (const a of ['198.18.0.2', '2001:db8:5::2']) expect(isRebindingTarget(a, veth), a).toBe(false);
  });
});

/** Two connected streams with a socket's backpressure: a write completes once the other side has room. */
function duplexPair(): [Duplex, Duplex] {
  const sides: Duplex[] = [];
  const blocked = new Map<Duplex, () => void>();
  const make = (other: () => Duplex) => {
    const side: Duplex = new Duplex({
      read() {
        const resume = blocked.get(side);
        blocked.delete(side);
        resume?.();
      },
      write(chunk, _enc, cb) {
        if (other().push(chunk)) cb();
        else blocked.set(other(), cb);
      },
      final(cb) {
        other().push(null);
        cb();
      },
    });
    return side;
  };
  sides.push(make(() => sides[1]!), make(() => sides[0]!));
  return [sides[0]!, sides[1]!];
}

// The caps a user sets (--max-flows, --max-pending-dials, --max-udp-sessions, --max-dns-in-flight,
// --max-buffer; SandboxOptions.caps): checked once with one sentence naming the fix, and each reaches
// the part that enforces it: the stack's TCP and UDP, the forwarder's flow limit, the DNS proxy. The
// flags themselves run through the CLI as a user runs it.
import dgram from 'node:dgram';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import dnsPacket from 'dns-packet';
import { afterEach, describe, expect, it } from 'vitest';
import type { FlowId, Refusal, UdpConn, UdpForwarderRequest } from '../../netstack/index.js';
import type { LimitName } from '../../netstack/index.js';
import type { LimitEvent } from '../../src/egress/audit/limits.js';
import { resolveNetworkLimits, tcpLimitsConfig, udpLimitsOptions } from '../../src/options/network-limits.js';
import { createEgress, type Egress } from '../../src/egress/index.js';
import { TapboxError } from '../../src/errors.js';
import { resolveOptions } from '../../src/options/options.js';
import { Sandbox } from '../../src/supervisor/sandbox.js';
import { setup, udp4Frame, v4 } from '../conformance/frames.js';
import { ACK, Harness, RST, SYN } from '../conformance/tcp-harness.js';
import { tapbox } from '../helpers/tapbox.js';

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0)) await c();
});

type Hit = [LimitName, number, string];
function recorder() {
  const hits: Hit[] = [];
  return { hits, onLimit: (limit: LimitName, value: number, detail: string) => void hits.push([limit, value, detail]) };
}

/** A UDP flow of the sandbox as the stack hands it to the forwarder; `first` is its first datagram. */
class SandboxUdp implements UdpForwarderRequest {
  rejected: Refusal | null = null;
  readonly replies: Buffer[] = [];
  private handler: ((p: Buffer) => void) | null = null;
  constructor(
    readonly id: FlowId,
    readonly firstPayload: Buffer,
  ) {}
  accept(): UdpConn {
    const self = this;
    return {
      id: this.id,
      get onMessage() {
        return self.handler;
      },
      set onMessage(h: ((p: Buffer) => void) | null) {
        self.handler = h;
        if (h) queueMicrotask(() => h(self.firstPayload));
      },
      onClose: null,
      send: (p: Uint8Array) => void this.replies.push(Buffer.from(p)),
      sendIcmp: () => {},
      close: () => {},
      relay: () => null,
    } as UdpConn;
  }
  reject(how: Exclude<Refusal, 'reset'>): void {
    this.rejected = how;
  }
}

const SANDBOX = { dns4: '10.0.2.3', dns6: 'fd00::3', gateway4: '10.0.2.2', gateway6: 'fd00::2' };

async function egressWith(caps: Parameters<typeof resolveNetworkLimits>[0], allow: string[], dnsUpstream: string[] = [], allowFiles: string[] = []): Promise<{ egress: Egress; limits: LimitEvent[] }> {
  const egress = await createEgress({
    allowFiles,
    allow,
    dnsUpstream,
    sniCheck: false,
    audit: false,
    logLevel: 'silent',
    logFormat: 'json',
    summary: false,
    sandbox: SANDBOX,
    caps: resolveNetworkLimits(caps),
  });
  const limits: LimitEvent[] = [];
  egress.on('limit', (e: LimitEvent) => limits.push(e));
  cleanups.push(() => egress.close());
  return { egress, limits };
}

describe('checking the caps', () => {
  it('fills in the defaults of the Reliability table', () => {
    expect(resolveNetworkLimits()).toEqual({ flows: undefined, pendingDials: 1024, udpSessions: 4096, dnsInFlight: 256, bufferBytes: 256 * 2 ** 20 });
  });

  it('takes whole numbers, and sizes like 64M for the buffer budget', () => {
    expect(resolveNetworkLimits({ flows: 2, pendingDials: 10, udpSessions: 3, dnsInFlight: 4, bufferBytes: '64M' })).toEqual({
      flows: 2,
      pendingDials: 10,
      udpSessions: 3,
      dnsInFlight: 4,
      bufferBytes: 64 * 2 ** 20,
    });
    expect(resolveNetworkLimits({ bufferBytes: 8 * 2 ** 20 }).bufferBytes).toBe(8 * 2 ** 20);
  });

  it('refuses a bad value with one sentence naming the fix', () => {
    expect(() => resolveNetworkLimits({ flows: 0 })).toThrowError('--max-flows takes a whole number of at least 1, not "0"; leave it out for the default, 8192.');
    expect(() => resolveNetworkLimits({ dnsInFlight: 1.5 })).toThrowError('--max-dns-in-flight takes a whole number of at least 1, not "1.5"; leave it out for the default, 256.');
    expect(() => resolveNetworkLimits({ bufferBytes: 'lots' })).toThrowError('--max-buffer "lots" is not a size; give bytes or a size like 512M or 2G.');
    expect(() => resolveNetworkLimits({ bufferBytes: '64K' })).toThrowError('--max-buffer 64K is too small; give at least 1M (the default is 256M).');
    expect(() => resolveNetworkLimits({ udpSessions: -1 })).toThrowError(TapboxError);
  });

  it('takes them in the library only with --net tap, and refuses bad ones at once (EUSAGE)', () => {
    expect(resolveOptions({ allow: ['198.18.0.0/15'], caps: { flows: 5 } }).caps.flows).toBe(5);
    expect(() => resolveOptions({ net: 'none', caps: { flows: 5 } })).toThrowError('the --max-* caps apply to --net tap only, not --net none; add --net tap (or allow rules), or drop them.');
    let error: unknown;
    try {
      new Sandbox(['true'], { allow: ['198.18.0.0/15'], caps: { pendingDials: 0 } });
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(TapboxError);
    expect((error as TapboxError).code).toBe('EUSAGE');
  });
});

describe('the caps reach the stack', () => {
  it('--max-pending-dials: the SYN past it is reset and reported with that value; per destination it is the smaller', () => {
    const config = tcpLimitsConfig(resolveNetworkLimits({ pendingDials: 2 }));
    expect(config.maxPendingPerDestination).toBe(2);
    expect(tcpLimitsConfig(resolveNetworkLimits({ pendingDials: 5000 })).maxPendingPerDestination).toBe(256);
    const { hits, onLimit } = recorder();
    const h = new Harness(config, { manualAccept: true, onLimit });
    for (const [port, last] of [[1001, 10], [1002, 11], [1003, 12]]) h.inject({ flags: SYN, seq: 1, srcPort: port, mss: 1460, dstAddr: Buffer.from([198, 18, 0, last]) });
    expect(h.requests).toHaveLength(2);
    expect(h.take().map((s) => [s.dstPort, s.flags])).toEqual([[1003, RST | ACK]]);
    expect(hits.map((x) => x.slice(0, 2))).toEqual([['tcp-pending', 2]]);
  });

  it('--max-buffer: the TCP buffer budget of every connection together', () => {
    const h = new Harness(tcpLimitsConfig(resolveNetworkLimits({ bufferBytes: '2M' })));
    expect(h.tcp.budget.capacity).toBe(2 * 2 ** 20);
  });

  it('--max-udp-sessions: a new tuple past it gets ICMP and is reported with that value', async () => {
    const { hits, onLimit } = recorder();
    const { link, forwarder } = setup({ udp: udpLimitsOptions(resolveNetworkLimits({ udpSessions: 2 })), onLimit });
    forwarder.onUdp = (req: UdpForwarderRequest) => void req.accept();
    for (const port of [1001, 1002, 1003]) link.inject(udp4Frame(v4('198.18.0.1'), port, 9, Buffer.from('x')));
    await new Promise((r) => setImmediate(r));
    expect(hits.map((x) => x.slice(0, 2))).toEqual([['udp-sessions', 2]]);
    expect(link.drain().length).toBe(1); // the ICMP error for the third
  });
});

describe('the caps reach the egress', () => {
  it('--max-flows: the third flow is refused with a flows limit event carrying the value', async () => {
    const { egress, limits } = await egressWith({ flows: 2 }, ['198.18.0.0/15']);
    expect(egress.policy.maxFlows).toBe(2);
    const flows = [1, 2, 3].map((n) => new SandboxUdp({ family: 4, srcAddr: '10.0.2.100', srcPort: 1000 + n, dstAddr: '198.18.0.1', dstPort: 9 }, Buffer.from('x')));
    for (const f of flows) egress.forwarder.udp(f);
    await new Promise((r) => setTimeout(r, 50));
    expect(flows.map((f) => f.rejected)).toEqual([null, null, 'admin-prohibited']);
    expect(limits.map((e) => [e.limit, e.value])).toEqual([['flows', 2]]);
  });

  it('--max-flows with an allowlist whose first line sets a limit too: the smaller applies', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tapbox-caps-'));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const list = join(dir, 'five.txt');
    writeFileSync(list, '5\n198.18.0.0/15\n');
    expect((await egressWith({ flows: 100 }, [], [], [list])).egress.policy.maxFlows).toBe(5);
    expect((await egressWith({ flows: 3 }, [], [], [list])).egress.policy.maxFlows).toBe(3);
    expect((await egressWith({}, ['198.18.0.0/15'])).egress.policy.maxFlows).toBe(undefined); // the default, 8192
  });

  it('--max-dns-in-flight: with one query waiting for a silent upstream, the next is REFUSED at once', async () => {
    // The upstream: a socket that reads queries and never answers.
    const silent = dgram.createSocket('udp4');
    const seen: string[] = [];
    silent.on('message', (m) => seen.push(dnsPacket.decode(m).questions![0]!.name));
    await new Promise<void>((r) => silent.bind(0, '127.0.0.1', r));
    cleanups.push(() => silent.close());
    const { egress, limits } = await egressWith({ dnsInFlight: 1 }, ['*.example.com'], [`127.0.0.1:${silent.address().port}`]);
    const query = (id: number) => dnsPacket.encode({ type: 'query', id, flags: dnsPacket.RECURSION_DESIRED, questions: [{ type: 'A', name: `q${id}.example.com` }] });
    const flows = [1, 2].map((n) => new SandboxUdp({ family: 4, srcAddr: '10.0.2.100', srcPort: 2000 + n, dstAddr: '10.0.2.3', dstPort: 53 }, query(n)));
    egress.forwarder.udp(flows[0]!);
    while (seen.length === 0) await new Promise((r) => setTimeout(r, 10));
    egress.forwarder.udp(flows[1]!);
    while (flows[1]!.replies.length === 0) await new Promise((r) => setTimeout(r, 10));
    expect((dnsPacket.decode(flows[1]!.replies[0]!) as { rcode?: string }).rcode).toBe('REFUSED');
    expect(flows[0]!.replies).toEqual([]);
    expect(seen).toEqual(['q1.example.com']);
    expect(limits.map((e) => [e.limit, e.value])).toEqual([['dns-in-flight', 1]]);
  });
});

describe('the flags', () => {
  it('are in --help', async () => {
    const help = (await tapbox(['--help'])).stdout;
    for (const flag of ['--max-flows <n>', '--max-pending-dials <n>', '--max-udp-sessions <n>', '--max-dns-in-flight <n>', '--max-buffer <size>']) expect(help).toContain(flag);
  });

  it.each([
    [['--max-flows', 'many'], 'tapbox: --max-flows takes a whole number, not "many"; e.g. --max-flows 100.\n'],
    [['--max-udp-sessions', '0'], 'tapbox: --max-udp-sessions takes a whole number of at least 1, not "0"; leave it out for the default, 4096.\n'],
    [['--max-buffer', '12Q'], 'tapbox: --max-buffer "12Q" is not a size; give bytes or a size like 512M or 2G.\n'],
    [['--net', 'none', '--max-dns-in-flight', '8'], 'tapbox: the --max-* caps apply to --net tap only, not --net none; add --net tap (or allow rules), or drop them.\n'],
  ])('refuse %j with one sentence and exit status 2', async (args, message) => {
    const r = await tapbox([...args, '--', 'true']);
    expect(r.code).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr).toBe(message);
  });
});

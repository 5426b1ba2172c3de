import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ChannelEndpoint, ManualClock, SnifferEndpoint, Stack } from '../../netstack/index.js';
import { ethernet, GATEWAY4, GATEWAY_MAC, icmp4, ipv4, SANDBOX4, SANDBOX_MAC, TestForwarder } from './frames.js';

let dir = '';
afterEach(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
  dir = '';
});

describe('pcap sniffer', () => {
  it('records both directions in a file tcpdump reads', () => {
    dir = mkdtempSync(join(tmpdir(), 'tapbox-pcap-'));
    const path = join(dir, 'trace.pcap');
    const channel = new ChannelEndpoint({ mtu: 1500 });
    const sniffer = new SnifferEndpoint(channel, path);
    const stack = new Stack({ link: sniffer, clock: new ManualClock(), forwarder: new TestForwarder() });
    const ping = icmp4(8, 0, (0x42 << 16) | 1, Buffer.from('pcap-check'));
    channel.inject(ethernet(GATEWAY_MAC, SANDBOX_MAC, 0x0800, ipv4({ src: SANDBOX4, dst: GATEWAY4, protocol: 1, payload: ping })));
    expect(channel.drain()).toHaveLength(1);
    stack.close();
    sniffer.close();

    const file = readFileSync(path);
    expect(file.readUInt32LE(0)).toBe(0xa1b2c3d4);
    expect(file.readUInt32LE(20)).toBe(1); // LINKTYPE_ETHERNET
    const out = execFileSync('tcpdump', ['-nn', '-r', path], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    const lines = out.trim().split('\n');
    expect(lines).toHaveLength(2);
    expect(lines[0]).toMatch(/IP 10\.0\.2\.100 > 10\.0\.2\.2: ICMP echo request, id 66, seq 1/);
    expect(lines[1]).toMatch(/IP 10\.0\.2\.2 > 10\.0\.2\.100: ICMP echo reply, id 66, seq 1/);
  });

  it('keeps every frame across buffer flushes, large frames included', () => {
    dir = mkdtempSync(join(tmpdir(), 'tapbox-pcap-'));
    const path = join(dir, 'big.pcap');
    const channel = new ChannelEndpoint({ mtu: 65520 });
    const sniffer = new SnifferEndpoint(channel, path);
    const stack = new Stack({ link: sniffer, clock: new ManualClock(), forwarder: new TestForwarder() });
    for (let seq = 0; seq < 40; seq++) {
      const ping = icmp4(8, 0, (7 << 16) | seq, Buffer.alloc(60_000, seq));
      channel.inject(ethernet(GATEWAY_MAC, SANDBOX_MAC, 0x0800, ipv4({ src: SANDBOX4, dst: GATEWAY4, protocol: 1, payload: ping })));
    }
    stack.close();
    sniffer.close();
    const out = execFileSync('tcpdump', ['-nn', '-r', path], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    const lines = out.trim().split('\n');
    expect(lines).toHaveLength(80);
    expect(lines.filter((l) => /echo reply, id 7, seq \d+, length 60008/.test(l))).toHaveLength(40);
  });

  it('fails at once on a path it cannot create', () => {
    expect(() => new SnifferEndpoint(new ChannelEndpoint(), '/nonexistent-dir/trace.pcap')).toThrow(/ENOENT/);
  });
});

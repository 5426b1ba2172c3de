const dir = process.argv[2];
const { UdpProtocol } = await import(`${dir}/protocol.js`);
const sender = { scratch: () => ({ buf: Buffer.alloc(70000), offset: 34 }), maxDatagramLength: () => 65000, send() {}, sendUnreachable() {} };
const clock = { now: () => performance.now(), setTimeout: (f, ms) => { const t = setTimeout(f, ms); return { cancel: () => clearTimeout(t) }; } };
let got = 0;
const forwarder = { udp(req) { const c = req.accept(); c.onMessage = () => got++; } };
const p = new UdpProtocol(sender, clock, forwarder, { idleMs: 60000, dnsIdleMs: 10000, maxSessions: 4096, maxQueued: 32 }, () => {});
const packet = Buffer.alloc(20 + 8 + 64);
packet.writeUInt16BE(40000, 20); packet.writeUInt16BE(7, 22); packet.writeUInt16BE(72, 24);
const payload = packet.subarray(20);
const net = { family: 4, src: Uint8Array.from([10, 0, 2, 100]), dst: Uint8Array.from([198, 18, 0, 2]), packet, checksumTrusted: true };
// 20 other sessions exist
for (let i = 0; i < 20; i++) { const pk = Buffer.from(packet); pk.writeUInt16BE(41000 + i, 20); p.handlePacket(net, pk.subarray(20)); }
await new Promise((r) => setImmediate(r));
for (let r = 0; r < 5; r++) {
  const t = performance.now();
  for (let i = 0; i < 1e6; i++) p.handlePacket(net, payload);
  console.log(dir.split('/').pop(), 'ns/datagram', ((performance.now() - t)).toFixed(0));
}

// Seeds test/corpus/ from a pcap of real tap0 traffic (tapbox --pcap FILE): every distinct frame
// becomes test/corpus/frames/<sha1>.bin (the frames harness and the TypeScript property tests start
// from them), the checksum harness gets the same frames behind its 7-byte header, and the udp_frame
// harness behind its flags byte (0: a full checksum, the frame's own MACs, MTU 1280).
//   node native/fuzz/seed-corpus.mjs FILE.pcap
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const root = join(import.meta.dirname, '..', '..');
const pcap = readFileSync(process.argv[2]);
if (pcap.readUInt32LE(0) !== 0xa1b2c3d4) throw new Error('expected a little-endian microsecond pcap');
const frames = [];
for (let at = 24; at + 16 <= pcap.length; ) {
  const length = pcap.readUInt32LE(at + 8);
  frames.push(pcap.subarray(at + 16, at + 16 + length));
  at += 16 + length;
}
const write = (dir, data) => {
  mkdirSync(join(root, 'test', 'corpus', dir), { recursive: true });
  writeFileSync(join(root, 'test', 'corpus', dir, `${createHash('sha1').update(data).digest('hex').slice(0, 16)}.bin`), data);
};
for (const f of frames) {
  write('frames', f);
  write('checksum', Buffer.concat([Buffer.from([f.length % 16, 0, 0, 0, 6, 0x12, 0x34]), f]));
  write('udp_frame', Buffer.concat([Buffer.from([0]), f]));
}
console.log(`${frames.length} frames`);

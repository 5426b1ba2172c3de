// The soak's workload, run inside the sandbox: four loops side by side until SECONDS have passed.
//   bulk   download then upload BULK_MB through --tcp-source / --tcp-sink, byte counts checked
//   short  batches of 50 concurrent connections to --tcp-echo, each echoes one line
//   dns    A lookups through the sandbox resolver (the DNS proxy) for NAMES soak names
//   udp    echo round trips, a new socket (so a new UDP session) every 20 datagrams
// Prints a JSON line of counters every 10 s and a last one at the end; exits 1 if any check failed.
// Usage: node soak-load.mjs HOST SECONDS NAMES
import net from 'node:net';
import dgram from 'node:dgram';
import { promises as dns } from 'node:dns';

const [host, secondsText, namesText] = process.argv.slice(2);
const deadline = Date.now() + Number(secondsText) * 1000;
const names = Number(namesText);
const BULK = 32 << 20;
const c = { bulkBytes: 0, bulkRuns: 0, shortConns: 0, dnsOk: 0, udpOk: 0, errors: 0, lastError: '' };
const fail = (what, e) => {
  c.errors++;
  c.lastError = `${what}: ${e?.code ?? e?.message ?? e}`;
};
const running = () => Date.now() < deadline;

function download(bytes) {
  return new Promise((resolve, reject) => {
    let got = 0;
    const s = net.connect({ host, port: 19 }, () => s.write(`${bytes}\n`));
    s.on('data', (d) => (got += d.length));
    s.on('end', () => (got === bytes ? resolve(got) : reject(new Error(`downloaded ${got} of ${bytes}`))));
    s.on('error', reject);
  });
}

function upload(bytes) {
  return new Promise((resolve, reject) => {
    const chunk = Buffer.alloc(65536, 0x5a);
    let left = bytes;
    let reply = '';
    const s = net.connect({ host, port: 9, allowHalfOpen: true }, () => {
      const pump = () => {
        while (left > 0) {
          const n = Math.min(left, chunk.length);
          left -= n;
          if (!s.write(n === chunk.length ? chunk : chunk.subarray(0, n))) return void s.once('drain', pump);
        }
        s.end();
      };
      pump();
    });
    s.on('data', (d) => (reply += d));
    s.on('end', () => (Number(reply.split(' ')[0]) === bytes ? resolve(bytes) : reject(new Error(`sink got ${reply.trim()}`))));
    s.on('error', reject);
  });
}

function echoOnce(i) {
  return new Promise((resolve, reject) => {
    const line = `short ${i}\n`;
    let echoed = '';
    const s = net.connect({ host, port: 7 }, () => s.end(line));
    s.on('data', (d) => (echoed += d));
    s.on('end', () => (echoed === line ? resolve() : reject(new Error('bad echo'))));
    s.on('error', reject);
  });
}

async function bulkLoop() {
  while (running()) {
    try {
      c.bulkBytes += await download(BULK);
      c.bulkBytes += await upload(BULK);
      c.bulkRuns++;
    } catch (e) {
      fail('bulk', e);
    }
  }
}

async function shortLoop() {
  let i = 0;
  while (running()) {
    const batch = [];
    for (let j = 0; j < 50; j++) batch.push(echoOnce(i++).then(() => c.shortConns++, (e) => fail('short', e)));
    await Promise.all(batch);
  }
}

async function dnsLoop() {
  const resolver = new dns.Resolver({ timeout: 3000, tries: 1 });
  let i = 0;
  while (running()) {
    try {
      const answers = await resolver.resolve4(`n${i++ % names}.soak.test`);
      if (answers.length === 1) c.dnsOk++;
      else fail('dns', new Error(`answers ${answers}`));
    } catch (e) {
      fail('dns', e);
    }
    await new Promise((r) => setTimeout(r, 5));
  }
}

async function udpLoop() {
  while (running()) {
    const sock = dgram.createSocket('udp4');
    await new Promise((r) => sock.connect(7, host, r));
    for (let k = 0; k < 20 && running(); k++) {
      const payload = Buffer.from(`udp ${k} ${Date.now()}`);
      const ok = await new Promise((resolve) => {
        const timer = setTimeout(() => resolve(false), 2000);
        sock.once('message', (m) => {
          clearTimeout(timer);
          resolve(m.equals(payload));
        });
        sock.send(payload);
      });
      if (ok) c.udpOk++;
      else fail('udp', new Error('no echo'));
    }
    sock.close();
  }
}

const report = setInterval(() => console.log(JSON.stringify({ t: Date.now(), ...c })), 10_000);
await Promise.all([bulkLoop(), shortLoop(), dnsLoop(), udpLoop()]);
clearInterval(report);
console.log(JSON.stringify({ t: Date.now(), done: true, ...c }));
process.exit(c.errors ? 1 : 0);

// Drives ask mode through the library (spawn with onRequest), for test/integration/ask.test.ts. Run as
// the unprivileged user: node ask-driver.mjs '<spec as JSON>'; spec: { command, args, options }.
// Prints one JSON line per thing seen: {"event":"request",...the AskRequest}, {"event":"out","line"}
// (the command's stdout), {"event":"ask"|"policy"|"dns"|"flow",...}, {"event":"close","code"}.
// Each line on this driver's stdin answers the oldest open request: a decision ('allow', 'allow-once',
// 'allow-save', 'deny', or any other text, returned as is), "throw" (onRequest throws) or "never"
// (onRequest never settles).
import { createInterface } from 'node:readline';
import { spawn } from '../../dist/src/index.js';

const spec = JSON.parse(process.argv[2]);
const print = (o) => process.stdout.write(`${JSON.stringify(o)}\n`);
const open = [];
const onRequest = (request) => {
  print({ event: 'request', ...request });
  return new Promise((resolve, reject) => open.push({ resolve, reject }));
};
createInterface({ input: process.stdin }).on('line', (line) => {
  const r = open.shift();
  if (!r || line === 'never') return;
  if (line === 'throw') r.reject(new Error('the program failed'));
  else r.resolve(line);
});
let sandbox;
try {
  sandbox = spawn(spec.command, spec.args, { ...spec.options, onRequest });
} catch (e) {
  print({ event: 'error', message: e.message });
  process.exit(0);
}
for (const name of ['ask', 'policy', 'dns', 'flow']) sandbox.on(name, (e) => print({ event: name, ...e }));
sandbox.on('error', (e) => print({ event: 'error', message: e.message }));
createInterface({ input: sandbox.stdout }).on('line', (line) => print({ event: 'out', line }));
sandbox.stderr.resume();
sandbox.on('close', (code) => {
  print({ event: 'close', code });
  process.exit(0);
});

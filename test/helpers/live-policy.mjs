// Drives sandbox.allow / deny / rules on a running sandbox, for test/integration/live-policy.test.ts.
// Run as the unprivileged user: node live-policy.mjs '<spec as JSON>'; spec: { command, args, options,
// steps: { [line the command prints]: [{ call: 'allow' | 'deny', rule, resetFlows? }, ...] } }.
// When the command prints a line naming a step, the driver makes those calls, then writes "go" to its
// stdin. Prints one JSON line per thing seen: {"event":"out","line"}, {"event":"policy",...},
// {"event":"flow",...}, {"event":"called","call","rule","error"?}, and at the end
// {"event":"close","code","rules":[texts]}.
import { createInterface } from 'node:readline';
import { spawn } from '../../dist/src/index.js';

const spec = JSON.parse(process.argv[2]);
const print = (o) => process.stdout.write(`${JSON.stringify(o)}\n`);
const sandbox = spawn(spec.command, spec.args, spec.options);
let rules = [];
for (const name of ['policy', 'flow']) sandbox.on(name, (e) => print({ event: name, ...e }));
sandbox.on('error', (e) => print({ event: 'error', message: e.message }));
createInterface({ input: sandbox.stdout }).on('line', (line) => {
  print({ event: 'out', line });
  const calls = spec.steps[line];
  if (!calls) return;
  for (const c of calls) {
    try {
      if (c.call === 'allow') sandbox.allow(c.rule);
      else sandbox.deny(c.rule, { resetFlows: c.resetFlows });
      print({ event: 'called', call: c.call, rule: c.rule });
    } catch (e) {
      print({ event: 'called', call: c.call, rule: c.rule, error: e.message });
    }
  }
  rules = sandbox.rules().map((r) => r.text);
  sandbox.stdin.write('go\n');
});
sandbox.stderr.resume();
sandbox.on('close', (code) => print({ event: 'close', code, rules }));

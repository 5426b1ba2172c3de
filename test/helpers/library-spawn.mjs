// Drives the library (dist/src/index.js) as a program would, for test/integration/library.test.ts.
// Run it as the unprivileged user: node library-spawn.mjs '<spec as JSON>'. Spec:
//   { api: 'spawn' | 'run', command, args, options, input?, killOnOutput?: SIGNAL, killAtOnce?: SIGNAL,
//     unreadStderr?: true }
// Prints one JSON line per thing seen, in order:
//   {"event":"dns"|"flow"|"deny"|"flowEnd"|"limit", ...the event's fields}   (spawn)
//   {"event":"spawn"}, {"event":"exit","code","signal"}, {"event":"close","code","signal","stdout","stderr","report"}
//   {"event":"result", code, signal, stdout, stderr, report}                  (run)
//   {"event":"error","name","code","message"}                                 (a setup failure, either api;
//                                                                             "thrown": true when spawn() threw)
// killOnOutput: once the command's first stdout bytes arrive, kill() it with that signal; killAtOnce:
// kill() it right after spawn() returned; unreadStderr: never read stderr (its text is then not reported).
// With options.stdio 'inherit', the command's own output lines come in between, as they are.
import { run, spawn, TapboxError } from '../../dist/src/index.js';

const spec = JSON.parse(process.argv[2]);
const print = (o) => process.stdout.write(`${JSON.stringify(o)}\n`);
const printError = (e, how = {}) => print({ event: 'error', name: e.name, code: e.code, message: e.message, isTapboxError: e instanceof TapboxError, ...how });

if (spec.api === 'run') {
  run(spec.command, spec.args, { ...spec.options, input: spec.input }).then((r) => print({ event: 'result', ...r }), printError);
} else {
  let sandbox;
  try {
    sandbox = spawn(spec.command, spec.args, spec.options);
  } catch (e) {
    printError(e, { thrown: true });
    process.exit(0);
  }
  for (const name of ['dns', 'flow', 'deny', 'flowEnd', 'limit']) sandbox.on(name, (e) => print({ event: name, ...e }));
  sandbox.on('spawn', () => print({ event: 'spawn', pid: typeof sandbox.pid === 'number', pipes: sandbox.stdout !== null }));
  sandbox.on('exit', (code, signal) => print({ event: 'exit', code, signal }));
  sandbox.on('error', printError);
  let stdout = '';
  let stderr = '';
  // With stdio 'inherit' there are no pipes: the command writes straight to this process's stdout.
  sandbox.stdout?.on('data', (d) => {
    if (spec.killOnOutput && stdout === '') print({ event: 'kill', sent: sandbox.kill(spec.killOnOutput) });
    stdout += d;
  });
  if (!spec.unreadStderr) sandbox.stderr?.on('data', (d) => (stderr += d));
  if (spec.input !== undefined) sandbox.stdin.end(spec.input);
  if (spec.killAtOnce) print({ event: 'kill', sent: sandbox.kill(spec.killAtOnce) });
  sandbox.on('close', (code, signal) => print({ event: 'close', code, signal, stdout, stderr, report: sandbox.report }));
}

// Runs one sandbox through the library (dist/src/index.js) instead of the CLI, for options the CLI
// does not expose. Usage: node library-run.mjs '<SandboxOptions as JSON>' COMMAND [ARGS...]
// The command's output is inherited; the exit code is the command's.
import { Sandbox } from '../../dist/src/index.js';

const [optionsJson, ...command] = process.argv.slice(2);
const sandbox = new Sandbox(command, JSON.parse(optionsJson));
sandbox.run().then(
  ({ code }) => process.exit(code),
  (e) => {
    console.error(`library-run: ${e.message}`);
    process.exit(125);
  },
);

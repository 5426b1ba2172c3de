// The library's two entry points, shaped like node:child_process: `spawn` returns the running Sandbox
// (a ChildProcess-like object that also streams the egress events), `run` waits for the end and
// collects the output and the egress report. Both are the same code path as the CLI: a Sandbox.
import type { Readable } from 'node:stream';
import { Sandbox, type SandboxResult } from './sandbox.js';
import type { SandboxOptions } from '../options/options.js';

export type SpawnOptions = SandboxOptions;

export interface RunOptions extends Omit<SandboxOptions, 'stdio'> {
  /** Written to the command's stdin, which is then closed (default: an empty stdin). */
  input?: string | Uint8Array;
}

export interface RunResult extends SandboxResult {
  /** The command's stdout and stderr, decoded as UTF-8. */
  stdout: string;
  stderr: string;
}

/**
 * Starts COMMAND ARGS in a sandbox and returns at once. stdio defaults to 'pipe' (as in
 * child_process.spawn): `stdin`, `stdout` and `stderr` are usable immediately. Events: 'spawn',
 * 'exit', 'close', 'error' (a TapboxError: the sandbox could not be set up, nothing ran), and the
 * egress events 'dns', 'flow', 'deny', 'flowEnd', 'limit'. A bad option throws a TapboxError (EUSAGE)
 * at once.
 */
export function spawn(command: string, args: readonly string[] = [], options: SpawnOptions = {}): Sandbox {
  return new Sandbox([command, ...args], { stdio: 'pipe', ...options }).start();
}

/**
 * Runs COMMAND ARGS in a sandbox to its end. Resolves with its exit code (and signal), its output and
 * the egress report; rejects with a TapboxError when the sandbox could not be set up (nothing ran).
 * A command that fails is not an error: see `code`.
 */
export async function run(command: string, args: readonly string[] = [], options: RunOptions = {}): Promise<RunResult> {
  const { input, ...rest } = options;
  const sandbox = new Sandbox([command, ...args], { ...rest, stdio: 'pipe' });
  const stdout = collect(sandbox.stdout!);
  const stderr = collect(sandbox.stderr!);
  sandbox.stdin!.end(input ?? '');
  const result = await sandbox.run();
  return { ...result, stdout: await stdout, stderr: await stderr };
}

function collect(stream: Readable): Promise<string> {
  const chunks: Buffer[] = [];
  stream.on('data', (c: Buffer) => chunks.push(c));
  return new Promise((resolve) => {
    stream.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    stream.on('error', () => resolve(Buffer.concat(chunks).toString('utf8')));
  });
}

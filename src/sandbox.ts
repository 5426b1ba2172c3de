// The supervisor's side of one sandbox (see ../shared/DESIGN.md, "Processes"):
//
//   Sandbox ──spawn──▶ launcher (host namespaces) ──clone──▶ PID 1 of the sandbox ──fork/exec──▶ command
//      ▲ control socket (SOCK_SEQPACKET on the launcher's fd 3):
//      │   launcher → "TAP" + the TAP fd (SCM_RIGHTS), or "ERR <CODE> <sentence>"
//      │   supervisor → "GO" once the stack runs on the TAP: the command starts only then
//
// The supervisor keeps the TAP's only reader, so no frame leaves the sandbox except through our stack
// and the egress policy. It fails closed: the launcher and PID 1 have PR_SET_PDEATHSIG, so if this
// process dies, the sandbox dies with it.
import { spawn, type ChildProcess, type StdioOptions } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { EventEmitter } from 'node:events';
import { constants as osConstants } from 'node:os';
import type { Readable, Writable } from 'node:stream';
import { TapboxError, type TapboxErrorCode } from './errors.js';
import { launcherArgs, launcherPath } from './launcher.js';
import { resolveOptions, type ResolvedOptions, type SandboxOptions } from './options.js';
import { closeFd, recvMessage, sendMessage, socketpair } from '../netstack/link/control.js';
import { startNetwork, type Network } from './network.js';
import { closePtySlave, openPty, relayTerminal, type Pty } from './terminal.js';

export interface SandboxResult {
  /** The command's exit code; 128+N when a signal N ended it. */
  code: number;
}

/** Signals the supervisor passes on to the command. */
export const FORWARDED_SIGNALS: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGQUIT', 'SIGUSR1', 'SIGUSR2', 'SIGWINCH'];

/** Exit status of the launcher when it could not set the sandbox up (as docker/podman use 125). */
const SETUP_FAILED = 125;

export class Sandbox extends EventEmitter {
  readonly options: ResolvedOptions;
  stdin: Writable | null = null;
  stdout: Readable | null = null;
  stderr: Readable | null = null;
  private child: ChildProcess | null = null;
  private network: Network | null = null;
  private setupError: TapboxError | null = null;

  constructor(
    readonly command: string[],
    options: SandboxOptions = {},
  ) {
    super();
    if (command.length === 0 || !command[0]) {
      throw new TapboxError('EUSAGE', 'no command given; put the command after the options, e.g. `tapbox -- bash`.');
    }
    this.options = resolveOptions(options);
  }

  /** The launcher's pid (host PID namespace), once started. */
  get pid(): number | undefined {
    return this.child?.pid;
  }

  /** Runs the command to its end. Setup failures reject with a TapboxError; the command's own failure does not. */
  async run(): Promise<SandboxResult> {
    const o = this.options;
    if (o.net === 'tap') checkTunDevice();
    const network = o.net === 'tap' ? await startNetwork(o, this) : null;
    this.network = network;
    const [ours, theirs] = socketpair();
    const interactive = o.stdio === 'inherit' && process.stdin.isTTY === true && process.stdout.isTTY === true;
    const pty: Pty | null = interactive ? openPty(process.stdout.rows, process.stdout.columns) : null;
    const stdio: StdioOptions = pty
      ? [pty.slave, pty.slave, pty.slave, theirs]
      : o.stdio === 'pipe'
        ? ['pipe', 'pipe', 'pipe', theirs]
        : ['inherit', 'inherit', 'inherit', theirs];
    let child: ChildProcess;
    try {
      // detached: the launcher gets its own process group, so a Ctrl-C on the caller's terminal reaches
      // only us, and we forward it once.
      child = spawn(launcherPath(), launcherArgs(o, this.command), { stdio, detached: true, env: o.env, cwd: o.cwd });
    } finally {
      closeFd(theirs);
      if (pty) closePtySlave(pty);
    }
    this.child = child;
    [this.stdin, this.stdout, this.stderr] = [child.stdin, child.stdout, child.stderr];
    const relay = pty ? relayTerminal(pty) : null;
    const exited = new Promise<number>((resolveExit) => {
      child.on('exit', (code, signal) => resolveExit(code ?? 128 + signalNumber(signal)));
    });
    const spawnFailed = new Promise<never>((_, reject) => child.on('error', (e) => reject(new TapboxError('EINTERNAL', `cannot start the launcher: ${e.message}; run \`npm install\` in the tapbox package again.`))));
    this.emit('spawn');

    const control = this.serveControl(ours, network);
    try {
      const code = await Promise.race([exited, spawnFailed]);
      await control;
      if (relay) await Promise.race([relay.done, delay(200)]);
      if (this.setupError && (code === SETUP_FAILED || code === 126 || code === 127)) throw this.setupError;
      return { code };
    } finally {
      relay?.restore();
      closeFd(ours);
      await network?.close();
    }
  }

  /** Sends a signal to the command (through the launcher and PID 1). */
  kill(signal: NodeJS.Signals = 'SIGTERM'): boolean {
    return this.child?.kill(signal) ?? false;
  }

  /** Reads the launcher's control messages until it closes its end (at exec, or on exit). */
  private serveControl(fd: number, network: Network | null): Promise<void> {
    if (!network) sendGo(fd);
    return new Promise((resolveDone) => {
      const next = () =>
        recvMessage(fd, (err, msg) => {
          // ECONNRESET can come before a queued ERR when the launcher exits right after sending it:
          // keep reading until the end of the stream.
          if (err && (err as NodeJS.ErrnoException).code === 'ECONNRESET') return next();
          if (err || !msg || (msg.data.length === 0 && msg.fd === undefined)) return resolveDone();
          const text = msg.data.toString('utf8');
          if (text === 'TAP' && msg.fd !== undefined && network) {
            try {
              network.attach(msg.fd);
              sendGo(fd);
            } catch (e) {
              this.setupError = e instanceof TapboxError ? e : new TapboxError('ENETCFG', `cannot start the network stack: ${(e as Error).message}.`);
              this.kill('SIGKILL');
            }
          } else if (text.startsWith('ERR ')) {
            const [, code, ...words] = text.split(' ');
            this.setupError = new TapboxError(code as TapboxErrorCode, words.join(' '));
          } else if (msg.fd !== undefined) {
            closeFd(msg.fd);
          }
          next();
        });
      next();
    });
  }
}

/** Lets the launcher start the command. EPIPE means it already exited: its exit status tells why. */
function sendGo(fd: number): void {
  try {
    sendMessage(fd, Buffer.from('GO'));
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EPIPE') throw e;
  }
}

function checkTunDevice(): void {
  try {
    accessSync('/dev/net/tun', constants.R_OK | constants.W_OK);
  } catch (e) {
    const missing = (e as NodeJS.ErrnoException).code === 'ENOENT';
    throw new TapboxError(
      'ETUN',
      missing
        ? '/dev/net/tun does not exist, so the sandbox network cannot be created; load the module with `sudo modprobe tun` (or use --net none).'
        : '/dev/net/tun is not readable and writable by you, so the sandbox network cannot be created; run `sudo chmod 0666 /dev/net/tun` (the mode Debian and Ubuntu ship), or use --net none.',
    );
  }
}

function signalNumber(signal: NodeJS.Signals | null): number {
  return signal ? osConstants.signals[signal] : 0;
}

function delay(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms).unref());
}

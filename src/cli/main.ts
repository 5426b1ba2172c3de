#!/usr/bin/env node
// The command line: a thin layer over the library (src/index.ts). It parses flags with commander,
// turns them into SandboxOptions, runs the sandbox, and exits with the command's exit code.
import { isAbsolute, relative, resolve } from 'node:path';
import { Command, CommanderError, Option } from 'commander';
import { TapboxError } from '../errors.js';
import { FORWARDED_SIGNALS, Sandbox } from '../supervisor/sandbox.js';
import { addCommands, escapeCommandName, unescapeCommandName } from './commands.js';
import { formatUsage } from '../supervisor/cgroup.js';
import type { SandboxOptions } from '../options/options.js';
import { hardeningFromFlags, hardeningOptions, type HardeningFlags } from './hardening-flags.js';
import { collect, integer } from './flags.js';
import { networkLimitsFromFlags, networkLimitFlags, type NetworkLimitFlags } from './network-limit-flags.js';
import { imageRootfs } from './images.js';
import { addConfigCommand, addConfigOption, applyConfigFiles, blameConfig } from '../config/index.js';

export function buildProgram(): Command {
  const program = new Command('tapbox')
    .usage('[options] -- COMMAND [ARGS...]\n       tapbox doctor | setup apparmor | allowlists | image | help [TOPIC]\n       tapbox run -d | ps | exec | logs | stop | kill | rm | inspect | policy   (boxes)')
    .description('Run COMMAND in a rootless sandbox whose only network is a TAP device driven by tapbox\'s own TCP/IP stack, with an egress allowlist.')
    .helpOption('--help', 'show this help')
    .argument('[command...]', 'the command to run in the sandbox, and its arguments')
    .passThroughOptions()
    .addOption(new Option('--net <mode>', 'network: tap (our stack and the allowlist), none (only lo), host (no isolation)').choices(['tap', 'none', 'host']))
    .option('-N, --host-net', 'the host\'s network, no isolation (same as --net host)')
    .option('-n, --net-none', 'no network but lo (same as --net none; mini-sandbox\'s -n)')
    .option('--mtu <bytes>', 'MTU of tap0 (1280-65520, default 65520)', integer('--mtu'))
    .option('--pcap <file>', 'write every frame on tap0 to a pcap file')
    .option('-F, --allow-file <file>', 'allowlist file (repeatable); @npm, @pypi, ... load a shipped list', collect, [])
    .option('--allow <rule>', 'allow rule, same syntax as a line of an allowlist (repeatable)', collect, [])
    .option('--dns-upstream <addr>', 'DNS server the proxy asks, ADDR[:PORT] (repeatable; default: the host\'s resolvers)', collect, [])
    .option('-p, --publish <spec>', 'publish a sandbox port on the host: [ADDR:]HOSTPORT:SANDBOXPORT[/udp], ADDR 127.0.0.1 by default (repeatable)', collect, [])
    .option('--host-loopback <ports>', 'let the sandbox reach these host loopback ports at 10.0.2.2 / fd00::2: PORT[/udp][,PORT...] (repeatable)', collect, [])
    .option('--upstream-proxy <url>', 'send allowed TCP flows through this proxy: http://[USER:PASS@]HOST:PORT (CONNECT) or socks5://[USER:PASS@]HOST:PORT')
    .option('--no-sni-check', 'do not check TLS SNI / HTTP Host against the name a flow was allowed for')
    .option('--http-allow-get-body', 'let checked plain-HTTP GET and HEAD requests carry a body (by default they reset the flow)')
    .addOption(new Option('--attribution <mode>', 'name the sandbox process behind flows and lookups: all (default with --audit/--learn/--ask), denied (default), off').choices(['all', 'denied', 'off']))
    .option('--no-attribution', 'same as --attribution off')
    .option('--audit', 'allow everything, log every DNS query and flow')
    .option('--ask', 'ask on your terminal before a lookup or connection no rule allows: once, for this run, save, or deny')
    .option('--ask-save <file>', 'with --ask: the allowlist file "allow and add" appends the rule to')
    .option('--ask-timeout <seconds>', 'with --ask: seconds to wait for an answer before denying (1-25, default 20)', integer('--ask-timeout'))
    .option('--learn <file>', 'audit mode that writes an allowlist of what the command used to FILE')
    .option('--report <file>', 'write the egress summary as JSON to FILE')
    .option('--no-summary', 'do not print the egress summary table at exit')
    .option('--progress', 'while it runs, a live status line on stderr (when stderr is a terminal)')
    .option('--log-level <level>', 'audit log level: debug, info, warn, error', 'info')
    .addOption(new Option('--log-format <format>', 'audit log format').choices(['json', 'pretty']))
    .option('--log-file <file>', 'write the audit log to FILE')
    .option('-D, --debug-log <file>', 'write the audit log to FILE at level debug (mini-sandbox\'s -D)')
    .option('-i, --sigint-as-sigterm', 'a SIGINT sent to tapbox stops the command with SIGTERM (mini-sandbox\'s -i)')
    .option('-R, --root', 'run as uid 0 inside the sandbox (the default)')
    .option('-U, --nobody', 'run as nobody (65534) inside the sandbox')
    .option('--same-uid', 'keep your own uid and gid inside the sandbox')
    .option('-H, --hostname <name>', 'hostname inside the sandbox', 'tapbox')
    .option('--image <name>', 'run in an image of `tapbox image ls` (its unpacked root, as --rootfs)')
    .exitOverride()
    .configureOutput({ outputError: () => undefined });
  for (const option of networkLimitFlags()) program.addOption(option);
  for (const option of hardeningOptions()) program.addOption(option);
  return program;
}

interface CliFlags extends HardeningFlags, NetworkLimitFlags {
  net?: 'tap' | 'none' | 'host';
  hostNet?: boolean;
  netNone?: boolean;
  debugLog?: string;
  sigintAsSigterm?: boolean;
  mtu?: number;
  pcap?: string;
  allowFile: string[];
  allow: string[];
  dnsUpstream: string[];
  publish: string[];
  hostLoopback: string[];
  upstreamProxy?: string;
  sniCheck: boolean;
  httpAllowGetBody?: boolean;
  attribution?: 'all' | 'denied' | 'off' | false;
  audit?: boolean;
  ask?: boolean;
  askSave?: string;
  askTimeout?: number;
  learn?: string;
  report?: string;
  summary: boolean;
  progress?: boolean;
  logLevel: string;
  logFormat?: 'json' | 'pretty';
  logFile?: string;
  root?: boolean;
  nobody?: boolean;
  sameUid?: boolean;
  hostname: string;
  image?: string;
}

export function toOptions(flags: CliFlags): SandboxOptions {
  if (flags.hostNet && flags.net && flags.net !== 'host') throw new TapboxError('EUSAGE', `-N and --net ${flags.net} contradict each other; give one.`);
  if (flags.netNone && ((flags.net && flags.net !== 'none') || flags.hostNet)) throw new TapboxError('EUSAGE', `-n and ${flags.hostNet ? '-N' : `--net ${flags.net}`} contradict each other; give one.`);
  if (flags.debugLog && flags.logFile) throw new TapboxError('EUSAGE', '-D and --log-file both name the audit log file; give one.');
  const uids = [flags.root && 'root', flags.nobody && 'nobody', flags.sameUid && 'same'].filter(Boolean);
  if (uids.length > 1) throw new TapboxError('EUSAGE', '-R, -U and --same-uid exclude each other; give one.');
  return {
    net: flags.hostNet ? 'host' : flags.netNone ? 'none' : flags.net,
    mtu: flags.mtu,
    pcap: flags.pcap,
    allowFiles: flags.allowFile,
    allow: flags.allow,
    dnsUpstream: flags.dnsUpstream,
    publish: flags.publish,
    hostLoopback: flags.hostLoopback,
    upstreamProxy: flags.upstreamProxy,
    sniCheck: flags.sniCheck,
    httpAllowGetBody: flags.httpAllowGetBody,
    attribution: flags.attribution === false ? 'off' : flags.attribution,
    caps: networkLimitsFromFlags(flags),
    audit: flags.audit,
    ask: flags.ask,
    askSave: flags.askSave,
    askTimeout: flags.askTimeout,
    learn: flags.learn,
    report: flags.report,
    summary: flags.summary,
    logLevel: flags.debugLog ? 'debug' : flags.logLevel,
    logFormat: flags.logFormat ?? (process.stderr.isTTY ? 'pretty' : 'json'),
    logFile: flags.debugLog ?? flags.logFile,
    uid: (uids[0] as 'root' | 'nobody' | 'same' | undefined) ?? 'root',
    hostname: flags.hostname,
    ...hardeningFromFlags({ ...flags, rootfs: imageRootfs(flags) }),
  };
}

async function main(argv: string[]): Promise<number> {
  const program = addConfigOption(buildProgram());
  let status = 0;
  program.action(async () => {
    status = await runSandbox(program);
  });
  addCommands(program, (code) => (status = code), { toOptions, run: runSandbox });
  addConfigCommand(program, buildProgram, (code) => (status = code));
  await program.parseAsync(escapeCommandName(argv, program), { from: 'user' });
  return status;
}

async function runSandbox(program: Command): Promise<number> {
  const fromConfig = await applyConfigFiles(program);
  try {
    return await runConfigured(program, fromConfig.command);
  } catch (e) {
    throw blameConfig(program, e);
  }
}

async function runConfigured(program: Command, commandFromConfig: string[] | undefined): Promise<number> {
  const flags = program.opts<CliFlags>();
  const options = toOptions(flags);
  if (options.net === 'host') process.stderr.write('tapbox: warning: --net host gives the sandbox the host\'s network: no isolation and no allowlist.\n');
  const auditFlag = options.learn !== undefined ? '--learn' : options.audit ? '--audit' : null;
  if (auditFlag && (flags.allowFile.length > 0 || flags.allow.some((r) => !r.trim().startsWith('!')))) {
    process.stderr.write(`tapbox: warning: ${auditFlag} allows every destination, so the allow rules of -F and --allow are not enforced (deny rules, "!", still are).\n`);
  }
  const sandbox = new Sandbox(program.args.length ? unescapeCommandName(program.args) : (commandFromConfig ?? []), options);
  const { hardening, cwd } = sandbox.options;
  if (hardening.exposedHome) {
    process.stderr.write(`tapbox: warning: --expose-home: the working directory holds your home, so all of ${hardening.exposedHome} is writable in the sandbox and its writes persist (dotfiles included).\n`);
  } else if ((hardening.mode === 'default' || hardening.mode === 'rootfs') && hardening.home && isInside(cwd, hardening.home)) {
    process.stderr.write(`tapbox: warning: the working directory is inside your home, so all of ${hardening.home} is writable in the sandbox and its writes persist (dotfiles included); run from a directory outside it, or use -o/-h, to keep your home out.\n`);
  }
  sandbox.on('warning', (message) => process.stderr.write(`tapbox: warning: ${message}\n`));
  for (const signal of FORWARDED_SIGNALS) process.on(signal, () => sandbox.kill(signal === 'SIGINT' && flags.sigintAsSigterm ? 'SIGTERM' : signal));
  const progress = flags.progress ? (await import('./progress.js')).startProgress(sandbox) : null;
  try {
    const { code, usage } = await sandbox.run();
    // What a limited sandbox used, next to the limits the user asked for.
    const limited = Object.values({ ...hardening.limits, storage: undefined }).some((v) => v !== undefined);
    if (usage && limited && options.summary !== false) process.stderr.write(`${formatUsage(usage)}\n`);
    return code;
  } finally {
    progress?.stop();
  }
}

// A bad rule or allowlist (EPOLICY) is a bad argument: 2, like a bad flag.
const EXIT_FOR: Partial<Record<TapboxError['code'], number>> = { ENOENT: 127, EACCES: 126, EUSAGE: 2, EPOLICY: 2 };

// Output into a pipe whose reader left (`tapbox --help | head -1`): end quietly, as a program killed by
// SIGPIPE would (128 + 13), not with a stack trace.
const SIGPIPE_STATUS = 141;
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code !== 'EPIPE') throw err;
  process.exit(SIGPIPE_STATUS);
});

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    if (err instanceof CommanderError) {
      if (err.exitCode === 0) return; // --help, --version
      process.stderr.write(`tapbox: ${err.message.replace(/^error: /, '').replace(/\.$/, '')}; see \`tapbox --help\`.\n`);
      process.exitCode = 2;
    } else if (err instanceof TapboxError) {
      process.stderr.write(`tapbox: ${err.message}\n`);
      process.exitCode = EXIT_FOR[err.code] ?? 125;
    } else {
      process.stderr.write(`tapbox: internal error: ${(err as Error)?.stack ?? String(err)}\n`);
      process.exitCode = 125;
    }
  },
);

function isInside(path: string, dir: string): boolean {
  const rel = relative(dir, resolve(path));
  return rel === '' || (!rel.startsWith('..') && !isAbsolute(rel));
}

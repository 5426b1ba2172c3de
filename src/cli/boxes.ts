// The box verbs of the CLI: run, ps, exec, logs, stop, kill, rm, inspect, policy. A thin layer over the
// library (./index.ts). `run` takes every option of the plain form (`tapbox [options] -- CMD`), plus
// -d/--detach, --name and --rm; as in podman, -d means detach there, so the store is --store only.
import { Command, Option, type OptionValues } from 'commander';
import { constants as osConstants } from 'node:os';
import { TapboxError } from '../errors.js';
import type { SandboxOptions } from '../options/options.js';
import { relayTerminal, sizePty, terminalFds } from '../supervisor/terminal.js';
import { get, list, run, type BoxInfo, type PolicyChange } from '../boxes/index.js';
import { images } from '../images/index.js';
import { FORWARDED_SIGNALS } from '../supervisor/sandbox.js';
import { integer } from './flags.js';
import { applyConfigFiles, blameConfig } from '../config/index.js';

/** The plain form's pieces `run` reuses: its flags-to-options and its foreground run. */
export interface PlainRun {
  toOptions(flags: OptionValues): SandboxOptions;
  run(command: Command): Promise<number>;
}

export function addBoxCommands(program: Command, done: (status: number) => void, plain: PlainRun): void {
  const runCommand = program
    .command('run')
    .usage('[-d] [--name NAME] [--rm] [options] -- COMMAND [ARGS...]')
    .description('run COMMAND in a sandbox; with -d, as a named box in the background (see ps, exec, logs, stop, rm)')
    .helpOption('--help', 'show this help')
    .argument('[command...]', 'the command to run in the box, and its arguments')
    .option('-d, --detach', 'run in the background and print the box\'s name')
    .option('--name <name>', 'name the box (default: generated)')
    .option('--rm', 'remove the box once its command exits');
  for (const option of program.options) {
    if (option.long === '--store') runCommand.addOption(new Option('--store <dir>', option.description));
    else runCommand.addOption(option);
  }
  runCommand.action(async (args: string[], { detach }: OptionValues) => {
    if (!detach) {
      if (runCommand.getOptionValue('name') !== undefined) throw new TapboxError('EUSAGE', '--name names a box that runs in the background; add -d, or drop --name.');
      done(await plain.run(runCommand));
      return;
    }
    const fromConfig = await applyConfigFiles(runCommand);
    try {
      await runDetached(args.length ? args : (fromConfig.command ?? []), runCommand.opts(), fromConfig.name);
    } catch (e) {
      throw blameConfig(runCommand, e);
    }
  });

  /** `run -d`: starts the box, prints its name. */
  async function runDetached(command: string[], flags: OptionValues, nameFromConfig: string | undefined): Promise<void> {
    if (flags.ask) throw new TapboxError('EUSAGE', '--ask asks on a terminal, which a detached box has not; give the rules with -F/--allow instead.');
    if (flags.progress) throw new TapboxError('EUSAGE', '--progress draws on a terminal, which a detached box has not; drop it (tapbox ps shows the figures).');
    // The audit log format: the one asked for, else JSON (toOptions picks by stderr, which the box has not).
    const options = { ...plain.toOptions(flags), logFormat: flags.logFormat as 'json' | 'pretty' | undefined };
    const box = await run(command, { ...options, detach: true, name: flags.name ?? nameFromConfig, remove: Boolean(flags.rm) });
    process.stdout.write(`${box.name}\n`);
    done(0);
  }

  program
    .command('ps')
    .description('list the running boxes (-a: all of them)')
    .option('-a, --all', 'also the boxes that exited or whose supervisor died')
    .action(async (flags: { all?: boolean }) => {
      const boxes = (await list()).filter((b) => flags.all || b.state === 'running' || b.state === 'dead');
      process.stdout.write(formatTable(boxes));
      done(0);
    });

  program
    .command('logs')
    .description('print a box\'s output (stdout and stderr), or with --audit its egress log')
    .argument('<name>')
    .option('-f, --follow', 'keep printing what comes until the box ends')
    .option('--tail <n>', 'only the last N lines', integer('--tail'))
    .option('--audit', 'the egress log (JSON lines) instead of the output')
    .action(async (name: string, flags: { follow?: boolean; tail?: number; audit?: boolean }) => {
      const box = get(name);
      process.stdout.write(box.logs({ tail: flags.tail, audit: flags.audit }));
      if (flags.follow) await box.followLogs((chunk) => process.stdout.write(chunk), { audit: flags.audit });
      done(0);
    });

  program
    .command('exec')
    .usage('[-i] [-t] NAME -- COMMAND [ARGS...]')
    .description('run COMMAND inside a running box: its namespaces, root, cgroup, limits, seccomp and policy')
    .helpOption('--help', 'show this help')
    .argument('<name>')
    // The command (after --) is taken from the excess arguments: one more argument would widen the
    // commands column of `tapbox --help` for every line of it.
    .allowExcessArguments()
    .option('-i, --interactive', 'connect your stdin to the command')
    .option('-t, --tty', 'a pseudo-terminal for each of your stdin, stdout, stderr that is a terminal')
    .action(async (name: string, flags: { interactive?: boolean; tty?: boolean }, command: Command) => {
      done(await execCli(name, command.args.slice(1), flags));
    });

  program
    .command('stop')
    .description('stop a box: SIGTERM to its command, SIGKILL after the grace period')
    .argument('<name...>')
    .option('-t, --time <seconds>', 'seconds between SIGTERM and SIGKILL (default 10)', integer('-t'))
    .action(async (names: string[], flags: { time?: number }) => {
      for (const name of names) {
        await get(name).stop({ timeout: flags.time ?? 10 });
        process.stdout.write(`${name}\n`);
      }
      done(0);
    });

  program
    .command('kill')
    .description('send a signal to a box\'s command (default SIGKILL)')
    .argument('<name...>')
    .option('-s, --signal <signal>', 'the signal, e.g. SIGHUP or HUP', 'SIGKILL')
    .action(async (names: string[], flags: { signal: string }) => {
      const signal = (flags.signal.toUpperCase().startsWith('SIG') ? flags.signal.toUpperCase() : `SIG${flags.signal.toUpperCase()}`) as NodeJS.Signals;
      if (!(signal in osConstants.signals)) throw new TapboxError('EUSAGE', `-s ${flags.signal} is not a signal; give a name such as SIGTERM or HUP.`);
      for (const name of names) await get(name).kill(signal);
      done(0);
    });

  program
    .command('rm')
    .description('remove boxes: their logs, records and socket (-f: kill a running one first)')
    .argument('<name...>')
    .option('-f, --force', 'remove a running box too (killed first)')
    .action(async (names: string[], flags: { force?: boolean }) => {
      for (const name of names) {
        await get(name).remove({ force: flags.force });
        process.stdout.write(`${name}\n`);
      }
      images.collect(); // the root of an image replaced while a box ran on it goes with the box
      done(0);
    });

  program
    .command('inspect')
    .description('a box as JSON: options, state, pids, addresses, published ports, policy, usage, egress so far')
    .argument('<name>')
    .action(async (name: string) => {
      process.stdout.write(`${JSON.stringify(await get(name).inspect(), null, 2)}\n`);
      done(0);
    });

  program
    .command('policy')
    .usage('NAME allow RULE... | NAME deny RULE... [--cut] | NAME show')
    .description('change a running box\'s egress policy (allow, deny), or show it with the changes made since it started')
    .argument('<name>')
    .argument('<action>', 'allow, deny or show')
    .argument('[rules...]', 'rules in allowlist syntax (tapbox help allowlist)')
    .option('--cut', 'deny: also cut the open flows the new rules cover')
    .action(async (name: string, action: string, rules: string[], flags: { cut?: boolean }) => {
      if (flags.cut && action !== 'deny') throw new TapboxError('EUSAGE', '--cut cuts the open flows a new deny rule covers; use it with deny.');
      const box = get(name);
      if (action === 'show') {
        if (rules.length) throw new TapboxError('EUSAGE', `show takes no rules; to change the policy, use \`tapbox policy ${name} allow|deny RULE...\`.`);
        const policy = await box.policy();
        const changes = policy.changes.map((c) => `# ${c.at} ${describeChange(c)}\n`);
        process.stdout.write(policy.rules.map((r) => `${r}\n`).join('') + (changes.length ? `# changed since the box started:\n${changes.join('')}` : ''));
      } else if (action === 'allow' || action === 'deny') {
        const made = action === 'allow' ? await box.allow(rules) : await box.deny(rules, { cut: flags.cut });
        process.stdout.write(made.map((c) => `${describeChange(c)}\n`).join(''));
      } else {
        throw new TapboxError('EUSAGE', `tapbox policy has no action "${action}"; use allow, deny or show.`);
      }
      done(0);
    });
}

/** "deny !x.example, replacing x.example; 2 open flows cut" */
function describeChange(c: PolicyChange): string {
  const replaced = c.replaced.length ? `, replacing ${c.replaced.join(', ')}` : '';
  const cut = c.reset ? `; ${c.reset} open flow${c.reset === 1 ? '' : 's'} cut` : '';
  return `${c.action} ${c.rule}${replaced}${cut}`;
}

function formatTable(boxes: BoxInfo[]): string {
  const rows = boxes.map((b) => [
    b.name,
    b.state === 'exited' ? `exited (${b.exit?.code})` : b.state,
    // How long it has run; for an exited box, how long it ran.
    b.created ? duration((b.exit ? Date.parse(b.exit.ended) : Date.now()) - Date.parse(b.created)) : '',
    b.command.join(' ').slice(0, 40),
    b.net ?? '',
    String(b.live?.flows ?? b.exit?.flows ?? ''),
    String(b.live?.denials ?? b.exit?.denials ?? ''),
    b.live ? size(b.live.memoryBytes) : '',
  ]);
  const all = [['NAME', 'STATE', 'UPTIME', 'COMMAND', 'NET', 'FLOWS', 'DENIED', 'MEMORY'], ...rows];
  const widths = all[0]!.map((_, i) => Math.max(...all.map((r) => r[i]!.length)));
  return all.map((r) => `${r.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd()}\n`).join('');
}

function duration(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 120) return `${s}s`;
  if (s < 7200) return `${Math.round(s / 60)}m`;
  return s < 172800 ? `${Math.round(s / 3600)}h` : `${Math.round(s / 86400)}d`;
}

function size(bytes: number): string {
  return bytes >= 1 << 30 ? `${(bytes / (1 << 30)).toFixed(1)}G` : bytes >= 1 << 20 ? `${(bytes / (1 << 20)).toFixed(1)}M` : `${Math.round(bytes / 1024)}K`;
}

/**
 * exec from the CLI. The command never gets the caller's terminal (as in a run, src/terminal.ts):
 * with -t, each of stdin, stdout, stderr that is a terminal becomes the same pty of the box's own (in
 * its /dev/pts, so `tty` names it), relayed; without -t, a terminal is relayed through a pipe. Other
 * stdio is passed as it is; stdin only with -i.
 */
async function execCli(name: string, command: string[], flags: { interactive?: boolean; tty?: boolean }): Promise<number> {
  const box = get(name);
  const terminals = terminalFds();
  const ttys = [Boolean(flags.interactive) && terminals[0], terminals[1], terminals[2]] as const;
  const tty = flags.tty && ttys.some(Boolean) ? ttys : undefined;
  const stdio = [0, 1, 2].map((fd) => (fd === 0 && !flags.interactive ? 'ignore' : ttys[fd] ? 'pipe' : 'inherit'));
  const child = await box.exec(command, { stdio: stdio as ('ignore' | 'pipe' | 'inherit')[], tty, onTerminal: (master) => sizePty(master, ttys) });
  // Signals for the command go to the helper, which passes them on (as a run's supervisor does). Not
  // SIGWINCH: with -t the terminal relay resizes the command's pty; without, it has no terminal.
  const forwarded = FORWARDED_SIGNALS.filter((s) => s !== 'SIGWINCH');
  const forward = (signal: NodeJS.Signals) => child.kill(signal);
  for (const signal of forwarded) process.on(signal, forward);
  const relay = child.terminal !== null ? relayTerminal({ master: child.terminal }, ttys) : null;
  if (!relay) {
    child.stdout?.pipe(process.stdout);
    child.stderr?.pipe(process.stderr);
    if (child.stdin) process.stdin.pipe(child.stdin);
  }
  const code = await new Promise<number>((resolve) => child.on('exit', (c, s) => resolve(s ? 128 + osConstants.signals[s] : (c ?? 0))));
  for (const signal of forwarded) process.off(signal, forward);
  if (relay) {
    await relay.settled(200);
    relay.restore();
  }
  process.stdin.unpipe();
  process.stdin.pause();
  return code;
}

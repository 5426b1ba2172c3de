// The CLI's commands besides running a sandbox: `doctor`, `allowlists`, `help [TOPIC]`, and the examples
// under `tapbox --help`. Commander's own subcommands; the topics are short texts kept true by
// test/unit/cli.test.ts (every rule shown parses, every flag named exists).
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Command } from 'commander';
import { TapboxError } from '../errors.js';
import { packageRoot } from '../../native/addon/index.js';
import { DEFAULT_MTU, SANDBOX_NET } from '../options/options.js';
import { parse } from '../egress/policy/allowlist.js';
import { addImageCommands } from './images.js';
import { addBoxCommands, type PlainRun } from './boxes.js';

export const EXAMPLES = `
Examples:
  tapbox -- bash                                 a shell: no network, the host's files read-only
  tapbox -F @npm -- npm install                  only the npm registry is reachable
  tapbox --allow api.example.com:443 -- ./run    one name, one port
  tapbox --learn my.allow -- ./build.sh          allow all, log it, write an allowlist of what was used
  tapbox -F my.allow --progress -- make          a live status line while it runs

More: tapbox help allowlist | modes | network | exit`;

/** Rules shown in `tapbox help allowlist`, with what each means. */
export const RULE_EXAMPLES: [rule: string, meaning: string][] = [
  ['registry.npmjs.org:443', 'a name, one port (its addresses open once looked up through tapbox)'],
  ['*.example.com', 'every subdomain of example.com (not example.com itself), every port'],
  ['192.0.2.0/24:8000-8999', 'an IPv4 subnet, a port range'],
  ['[2001:db8::1]:443', 'an IPv6 address (bracketed when a port follows)'],
  ['udp:198.51.100.7:53', 'one protocol only (default: TCP and UDP)'],
  ['!ads.example.com', 'deny: wins over every allow rule'],
];

function column(rows: [string, string][], indent = '  '): string {
  const width = Math.max(...rows.map(([a]) => a.length));
  return rows.map(([a, b]) => `${indent}${a.padEnd(width)}  ${b}`).join('\n');
}

export const TOPICS: Record<string, { summary: string; text: () => string }> = {
  allowlist: {
    summary: 'rule syntax, allowlist files, shipped lists',
    text: () => `Allowlist rules: one per line of a file (-F FILE, repeatable) or one per --allow RULE.

  [!][tcp:|udp:]TARGET[:PORT|:FROM-TO]

${column(RULE_EXAMPLES)}

In a file, # starts a comment and blank lines are ignored. A first line holding only a number caps
the flows open at once (mini-tapbox lists load as they are; with --max-flows, the smaller applies);
an srt settings file (JSON with network.allowedDomains / deniedDomains) loads too.

An address is reachable only if an address or subnet rule covers it, or tapbox's DNS proxy returned it
for an allowed name. Names that no rule allows get NXDOMAIN and are never sent upstream.

Shipped lists: -F @npm, -F @pypi, ... (\`tapbox allowlists\` lists them).
Not sure what a command needs? \`tapbox --learn FILE -- COMMAND\` writes an allowlist of what it used.`,
  },
  modes: {
    summary: 'network, egress and filesystem modes',
    text: () => `Network (--net):
${column([
  ['none', 'only lo inside; the default when no allow rule, --audit or --learn is given'],
  ['tap', "tap0, driven by tapbox's own TCP/IP stack through the allowlist; the default with -F/--allow"],
  ['host', "the host's network (-N): no isolation and no allowlist"],
])}

Egress (under --net tap):
${column([
  ['(default)', 'enforce: only what the allowlist allows; denials are logged'],
  ['--audit', 'allow and log everything (deny rules apply; link-local, host addresses need an IP rule)'],
  ['--learn FILE', 'as --audit, and write an allowlist of what was used to FILE'],
])}

Filesystem:
${column([
  ['(default)', "the host's root read-only, the working directory writable, a private /tmp"],
  ['-x', 'system directories as throw-away overlays, $HOME empty, the working directory writable'],
  ['-o DIR', 'custom: only the mounts given (-k/-M/-w/-e), the working directory, an empty home, /dev, /tmp'],
  ['-h DIR', 'hermetic: only the mounts given (-M/-w/-e), the working directory, /dev, /tmp'],
  ['--rootfs DIR', 'a root of your own (a directory or a tarball), as a throw-away overlay'],
  ['--image NAME', 'an image of `tapbox image ls` (import or pull one first), as --rootfs'],
])}

Every mode: a minimal /dev with a private devpts; a working directory that is your home or holds
it (/home) is refused unless --expose-home.

User inside: -R root (the default), -U nobody, --same-uid your own.`,
  },
  network: {
    summary: "the sandbox's addresses, DNS, what a denial looks like, logs",
    text: () => `Inside the sandbox under --net tap:
${column([
  ['tap0', `${SANDBOX_NET.ip4} gateway ${SANDBOX_NET.gateway4}, ${SANDBOX_NET.ip6} gateway ${SANDBOX_NET.gateway6}, MTU ${DEFAULT_MTU} (--mtu)`],
  ['DNS', `${SANDBOX_NET.dns4} and ${SANDBOX_NET.dns6}: tapbox's proxy, which asks the host's resolvers (or --dns-upstream)`],
])}

A denied TCP connection is refused at once; a denied UDP datagram gets ICMP unreachable. A flow
allowed for a name must name it in its TLS SNI or HTTP Host (--no-sni-check turns that off); a
plain-HTTP GET or HEAD with a body resets the flow (--http-allow-get-body lets it through).

Denials are logged on stderr (--log-level, --log-format json|pretty, --log-file). At exit a summary
of every destination goes to stderr (--no-summary to leave it out; --report FILE writes it as JSON).
--progress shows a live status line while the command runs; --pcap FILE records every frame on tap0.
Each denial names the process behind it, and under --audit/--learn every flow does (--attribution
all|denied|off); the summary's "by" column shows it. --ask asks on your terminal before a lookup or
connection no rule allows (once, for this run, --ask-save FILE, or deny; --ask-timeout SECONDS).`,
  },
  exit: {
    summary: "tapbox's exit status",
    text: () => `tapbox exits with the command's exit status, and 128+N when signal N ended it. Otherwise:
${column([
  ['2', 'a bad flag or argument (an allow rule or allowlist included); nothing ran'],
  ['125', 'the sandbox could not be set up; nothing ran (the message names the fix; see `tapbox doctor`)'],
  ['126', 'the command cannot be run'],
  ['127', 'the command was not found'],
])}`,
  },
};

export interface ShippedList {
  name: string;
  description: string;
  rules: number;
}

/** The curated lists in allowlists/: name, first comment line, number of rules. */
export function shippedLists(dir = join(packageRoot, 'allowlists')): ShippedList[] {
  return readdirSync(dir)
    .filter((f) => f.endsWith('.txt'))
    .sort()
    .map((file) => {
      const name = file.slice(0, -'.txt'.length);
      const text = readFileSync(join(dir, file), 'utf8');
      const first = text.split('\n').find((l) => l.trim().startsWith('#'));
      // The first sentence of the first comment line.
      const line = first ? first.replace(/^\s*#\s*/, '').trim() : '';
      const description = /^.*?\.(?=\s|$)/.exec(line)?.[0] ?? line;
      return { name, description, rules: parse(text, `@${name}`).rules.length };
    });
}

export function formatShippedLists(lists: ShippedList[]): string {
  const name = Math.max(...lists.map((l) => l.name.length)) + 1;
  const count = Math.max(...lists.map((l) => String(l.rules).length));
  const lines = lists.map((l) => `  @${l.name.padEnd(name - 1)}  ${String(l.rules).padStart(count)} ${l.rules === 1 ? 'rule ' : 'rules'}  ${l.description}`);
  return `Allowlists shipped with tapbox (use: tapbox -F @NAME -- COMMAND):\n${lines.join('\n')}\n`;
}

/** Hides a command named like one of ours after `--`, so that commander runs it in the sandbox. */
const HIDDEN = '\0';

export function escapeCommandName(argv: string[], program: Command): string[] {
  const names = new Set(program.commands.map((c) => c.name()));
  if (argv[0] !== undefined && names.has(argv[0])) return argv;
  const dash = argv.indexOf('--');
  if (dash < 0 || !names.has(argv[dash + 1] ?? '')) return argv;
  return [...argv.slice(0, dash + 1), HIDDEN + argv[dash + 1], ...argv.slice(dash + 2)];
}

export function unescapeCommandName(args: string[]): string[] {
  return args.map((a) => (a.startsWith(HIDDEN) ? a.slice(HIDDEN.length) : a));
}

/** Adds `doctor`, `allowlists`, the box verbs, `help [topic]` and the examples; each command reports its exit status to `done`. */
export function addCommands(program: Command, done: (status: number) => void, plain: PlainRun): void {
  program.addHelpText('after', EXAMPLES).helpCommand(false);
  program
    .command('doctor')
    .description('check that this host can run tapbox, and name the fix for what fails')
    .action(async () => done((await import('../supervisor/doctor.js')).runDoctor()));
  program
    .command('setup <what>')
    .description('prepare this host: `setup apparmor` prints (or, as root, installs) the AppArmor profile that lets tapbox create user namespaces where AppArmor restricts them (Ubuntu 23.10+)')
    .action(async (what: string) => {
      if (what !== 'apparmor') throw new TapboxError('EUSAGE', `there is nothing called "${what}" to set up; the one thing is apparmor: tapbox setup apparmor.`);
      (await import('../supervisor/apparmor.js')).setupAppArmor((text) => process.stdout.write(text));
      done(0);
    });
  program
    .command('allowlists')
    .description('list the allowlists shipped with tapbox (-F @NAME)')
    .action(() => {
      process.stdout.write(formatShippedLists(shippedLists()));
      done(0);
    });
  addImageCommands(program, done);
  addBoxCommands(program, done, plain);
  program
    .command('help [topic]')
    .description(`show help on a topic (${Object.keys(TOPICS).join(', ')}) or a command`)
    .addHelpText('after', `\nTopics:\n${column(Object.entries(TOPICS).map(([name, t]) => [name, t.summary]))}`)
    .action((topic: string | undefined) => {
      const sub = topic === undefined ? undefined : program.commands.find((c) => c.name() === topic);
      if (topic === undefined) program.outputHelp();
      else if (sub) sub.outputHelp();
      else if (Object.hasOwn(TOPICS, topic)) process.stdout.write(`${TOPICS[topic]!.text()}\n`);
      else {
        throw new TapboxError('EUSAGE', `there is no help topic "${topic}"; the topics are ${Object.keys(TOPICS).join(', ')}, and the commands ${program.commands.map((c) => c.name()).join(', ')}.`);
      }
      done(0);
    });
}

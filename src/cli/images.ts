// `tapbox image import | pull | ls | rm`, and --image NAME for a run (the image's unpacked root as --rootfs).
import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { TapboxError } from '../errors.js';
import { formatBytes } from '../units.js';
import { images, type Credentials } from '../images/index.js';
import { integer } from './flags.js';

const warn = (message: string) => process.stderr.write(`tapbox: warning: ${message}\n`);
const progress = (message: string) => process.stderr.write(`tapbox: ${message}\n`);

/** USER:PASSWORD from --creds-file FILE (its first line) or $TAPBOX_REGISTRY_AUTH; never from argv, which `ps` shows. */
export function credentials(file: string | undefined, env = process.env): Credentials | undefined {
  let text: string | undefined;
  let from: string;
  if (file !== undefined) {
    from = `--creds-file ${file}`;
    try {
      text = readFileSync(file, 'utf8').split('\n')[0]!.trim();
    } catch {
      throw new TapboxError('EUSAGE', `${from}: can't read it; pass a file whose first line is USER:PASSWORD.`);
    }
  } else {
    from = 'TAPBOX_REGISTRY_AUTH';
    text = env.TAPBOX_REGISTRY_AUTH;
    if (text === undefined || text === '') return undefined;
  }
  const colon = text.indexOf(':');
  if (colon <= 0) throw new TapboxError('EUSAGE', `${from} holds no USER:PASSWORD; write the user, a colon, then the password.`);
  return { username: text.slice(0, colon), password: text.slice(colon + 1) };
}

/** Adds `image` and its subcommands; each reports its exit status to `done`. */
export function addImageCommands(program: Command, done: (status: number) => void): void {
  const image = program
    .command('image')
    .description('images to run boxes from (--image NAME): import, pull, ls, rm')
    .usage('import | pull | ls | rm ...')
    .argument('[command]')
    .action((command: string | undefined) => {
      const what = command === undefined ? 'tapbox image needs a command' : `tapbox image has no command "${command}"`;
      throw new TapboxError('EUSAGE', `${what}: import, pull, ls or rm (tapbox image --help shows them).`);
    });
  image
    .command('import <file> <name>')
    .description('import a rootfs tarball (.tar, .tar.gz), an OCI image layout (directory or tar) or a docker save archive as NAME')
    .action(async (file: string, name: string) => {
      const r = await images.importImage(file, name, { onWarning: warn });
      process.stdout.write(`${r.name} ${r.id}\n`);
      done(0);
    });
  image
    .command('pull <ref>')
    .description('pull an image from a registry (OCI distribution API); credentials from $TAPBOX_REGISTRY_AUTH=USER:PASSWORD or --creds-file')
    .option('--insecure', 'allow plain HTTP to a registry that is not on localhost (HTTPS certificates are still verified)')
    .option('--creds-file <file>', 'registry credentials: a file whose first line is USER:PASSWORD')
    .option('--timeout <seconds>', 'give up on a registry silent this long: to connect, to answer, or in the middle of a download (default 30)', integer('--timeout', 120))
    .action(async (ref: string, opts: { insecure?: boolean; credsFile?: string; timeout?: number }) => {
      const r = await images.pull(ref, { insecure: opts.insecure, credentials: credentials(opts.credsFile), timeout: opts.timeout, onWarning: warn, onProgress: progress });
      process.stdout.write(`${r.name} ${r.digest ?? r.id}\n`);
      done(0);
    });
  image
    .command('ls')
    .description('list your images')
    .action(() => {
      const rows = images.list().map((r) => [r.name, r.id.slice(7, 19), formatBytes(r.size), r.created.slice(0, 19).replace('T', ' '), r.source]);
      const header = ['NAME', 'ID', 'SIZE', 'CREATED (UTC)', 'SOURCE'];
      const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i]!.length)));
      for (const row of [header, ...rows]) process.stdout.write(`${row.map((c, i) => (i < row.length - 1 ? c.padEnd(widths[i]!) : c)).join('  ')}\n`);
      done(0);
    });
  image
    .command('rm <name...>')
    .description('remove images (their files go when no other name uses them)')
    .action((names: string[]) => {
      for (const name of names) process.stdout.write(`${images.remove(name).name}\n`);
      done(0);
    });
}

/** --image NAME as the --rootfs it stands for: the image's unpacked root. */
export function imageRootfs(flags: { image?: string; rootfs?: string; default?: boolean; custom?: string; hermetic?: string }): string | undefined {
  if (flags.image === undefined) return flags.rootfs;
  const other = flags.rootfs !== undefined ? '--rootfs' : flags.default ? '-x' : flags.custom !== undefined ? '-o' : flags.hermetic !== undefined ? '-h' : undefined;
  if (other) throw new TapboxError('EUSAGE', `--image and ${other} each choose the sandbox's root; give one.`);
  return images.resolve(flags.image);
}

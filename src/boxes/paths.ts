// Where boxes live. Per box NAME, private to the user who runs it:
//   $XDG_RUNTIME_DIR/tapbox/NAME/control.sock   the supervisor's control socket (while it runs)
//   $XDG_STATE_HOME/tapbox/boxes/NAME/          box.json (how it was started), exit.json (how it ended),
//                                               output.log (the command's stdout and stderr, capped),
//                                               audit.log (its egress log), supervisor.log
// Without $XDG_RUNTIME_DIR (runuser, cron), /tmp/tapbox-UID. Every directory of ours is 0700 and owned
// by the user; one that is not (another user made /tmp/tapbox-UID first, say) is refused, never used.
import { existsSync, lstatSync, mkdirSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { TapboxError } from '../errors.js';

const NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/;

/** Throws unless NAME can name a box: letters, digits, _ . -, not first; at most 63 characters. */
export function checkName(name: string): string {
  if (!NAME.test(name)) {
    throw new TapboxError('EUSAGE', `"${name}" can't name a box; use 1 to 63 letters, digits, "_", "." or "-", starting with a letter or digit.`);
  }
  return name;
}

/** Makes (if needed) and checks a directory that must be the user's alone. */
export function privateDir(path: string): string {
  try {
    mkdirSync(path, { recursive: true, mode: 0o700 });
  } catch (e) {
    throw new TapboxError('EUSAGE', `cannot create ${path} (${(e as Error).message}); set XDG_RUNTIME_DIR / XDG_STATE_HOME to directories of yours.`);
  }
  const st = lstatSync(path);
  const uid = process.getuid!();
  if (!st.isDirectory() || st.uid !== uid || (st.mode & 0o077) !== 0) {
    throw new TapboxError('EUSAGE', `${path} is not a directory private to you (owner ${st.uid}, mode ${(st.mode & 0o777).toString(8)}); remove it, or point XDG_RUNTIME_DIR / XDG_STATE_HOME elsewhere.`);
  }
  return path;
}

function runtimeRoot(): string {
  const xdg = process.env.XDG_RUNTIME_DIR;
  return xdg ? join(xdg, 'tapbox') : join('/tmp', `tapbox-${process.getuid!()}`);
}

function stateRoot(): string {
  const xdg = process.env.XDG_STATE_HOME;
  return join(xdg || join(homedir(), '.local', 'state'), 'tapbox', 'boxes');
}

export interface BoxPaths {
  runtime: string;
  socket: string;
  state: string;
  record: string;
  exit: string;
  output: string;
  audit: string;
  supervisor: string;
}

/** The paths of box NAME; the two parent directories are made (if needed) and checked private. */
export function boxPaths(name: string): BoxPaths {
  const runtime = join(privateDir(runtimeRoot()), checkName(name));
  const state = join(privateDir(stateRoot()), name);
  return {
    runtime,
    socket: join(runtime, 'control.sock'),
    state,
    record: join(state, 'box.json'),
    exit: join(state, 'exit.json'),
    output: join(state, 'output.log'),
    audit: join(state, 'audit.log'),
    supervisor: join(state, 'supervisor.log'),
  };
}

/** The directory holding every box's state directory (checked private); null when none was made yet. */
export function boxesDir(): string | null {
  return existsSync(stateRoot()) ? privateDir(stateRoot()) : null;
}

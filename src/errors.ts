// Every failure a user can cause surfaces as a TapboxError: one sentence naming the cause and the fix,
// and a code programs can switch on. The CLI prints the message and exits non-zero; nothing runs
// unsandboxed after one.

export type TapboxErrorCode =
  | 'EUSERNS' // user namespaces unavailable
  | 'ETUN' // /dev/net/tun missing or not openable
  | 'EPOLICY' // a bad allowlist rule or file
  | 'EMOUNT' // a filesystem mode or mount could not be set up
  | 'EUSAGE' // a bad flag or argument
  | 'ENOENT' // the command was not found
  | 'EACCES' // the command is not executable
  | 'ENETCFG' // the sandbox network could not be configured
  | 'ELIMIT' // a resource limit could not be enforced
  | 'ENOBOX' // no box of that name, or not in the state the verb needs
  | 'EINTERNAL'; // a bug or an unexpected host failure

export class TapboxError extends Error {
  override readonly name = 'TapboxError';
  constructor(
    readonly code: TapboxErrorCode,
    message: string,
  ) {
    super(message);
  }
}

const CODES: ReadonlySet<string> = new Set<TapboxErrorCode>(['EUSERNS', 'ETUN', 'EPOLICY', 'EMOUNT', 'EUSAGE', 'ENOENT', 'EACCES', 'ENETCFG', 'ELIMIT', 'ENOBOX', 'EINTERNAL']);

/**
 * The error the launcher reported on its control socket ("ERR <CODE> <sentence>"). Its own finer codes
 * map onto ours: EEXEC (the command exists but cannot be run) is EACCES; EINIT, EUTS, EPROTO (a host or
 * build failure while setting up PID 1) are EINTERNAL, and so is anything unknown.
 */
export function launcherError(message: string): TapboxError {
  const [, code, ...words] = message.split(' ');
  const ours: TapboxErrorCode = code !== undefined && CODES.has(code) ? (code as TapboxErrorCode) : code === 'EEXEC' ? 'EACCES' : 'EINTERNAL';
  return new TapboxError(ours, words.join(' '));
}


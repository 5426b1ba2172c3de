// A box's control socket: an AF_UNIX stream socket in the user's private runtime directory, one JSON
// request and one JSON answer per connection. The directory is 0700, so only the user (and root) can
// connect; the supervisor also checks every peer's uid (SO_PEERCRED, from the kernel, not the peer)
// and refuses anyone but its own user, root included: a box is driven by the user who started it.
// It also refuses a peer in another user namespace than its own: a process inside a sandbox (this
// box or another) runs as the same uid outside, and may see the socket (an XDG_RUNTIME_DIR under a
// directory the sandbox shows, a -w bind); it must not drive, stop or widen its own box.
import { readlinkSync } from 'node:fs';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { requireNative } from '../../native/addon/index.js';
import { TapboxError } from '../errors.js';

export type Request =
  | { op: 'status' }
  | { op: 'stop'; timeout: number }
  | { op: 'kill'; signal: NodeJS.Signals }
  | { op: 'exec' }
  | { op: 'allow'; rules: string[] }
  | { op: 'deny'; rules: string[]; cut: boolean }
  | { op: 'policy' };

export type Answer = { ok: true; value: unknown } | { ok: false; code: TapboxError['code']; message: string };

/** The pid and uid of the process at the other end of `socket` (SO_PEERCRED). */
function peer(socket: Socket): { pid: number; uid: number } {
  const fd = (socket as unknown as { _handle?: { fd?: number } })._handle?.fd;
  if (fd === undefined || fd < 0) throw new Error('the control socket has no descriptor');
  return requireNative().peerCredentials(fd);
}

/** Whether process `pid` is in our user namespace; false when that can't be told (it is gone, say). */
function sameUserNamespace(pid: number): boolean {
  try {
    return readlinkSync(`/proc/${pid}/ns/user`) === readlinkSync('/proc/self/ns/user');
  } catch {
    return false;
  }
}

/** Serves `handle` on `path` to the user's own processes only. */
export function serveControl(path: string, handle: (request: Request) => Promise<unknown>): Promise<Server> {
  const uid = process.getuid!();
  const server = createServer((socket) => {
    const answer = (a: Answer) => socket.end(`${JSON.stringify(a)}\n`);
    socket.on('error', () => undefined);
    let from: { pid: number; uid: number };
    try {
      from = peer(socket);
    } catch {
      socket.destroy();
      return;
    }
    if (from.uid !== uid) {
      answer({ ok: false, code: 'EACCES', message: `this box belongs to uid ${uid}; uid ${from.uid} may not drive it.` });
      return;
    }
    if (!sameUserNamespace(from.pid)) {
      answer({ ok: false, code: 'EACCES', message: 'a process inside a sandbox may not drive a box; run tapbox from the host.' });
      return;
    }
    let buffered = '';
    socket.on('data', (chunk) => {
      buffered += chunk.toString('utf8');
      const end = buffered.indexOf('\n');
      if (end < 0) return;
      socket.pause();
      let request: Request;
      try {
        request = JSON.parse(buffered.slice(0, end)) as Request;
      } catch {
        answer({ ok: false, code: 'EUSAGE', message: 'the request is not JSON.' });
        return;
      }
      handle(request).then(
        (value) => answer({ ok: true, value }),
        (e: unknown) => answer({ ok: false, code: e instanceof TapboxError ? e.code : 'EINTERNAL', message: (e as Error).message }),
      );
    });
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(path, () => resolve(server));
  });
}

/** Sends one request to the box whose socket is `path`; rejects with a TapboxError. */
export function request<T>(path: string, req: Request, name: string): Promise<T> {
  return new Promise((resolve, reject) => {
    const socket = createConnection(path);
    let text = '';
    socket.on('data', (chunk) => (text += chunk.toString('utf8')));
    socket.on('error', (e: NodeJS.ErrnoException) => {
      reject(new TapboxError('ENOBOX', `box ${name} is not running (its supervisor does not answer: ${e.code ?? e.message}); see \`tapbox ps -a\`.`));
    });
    socket.on('end', () => {
      let answer: Answer;
      try {
        answer = JSON.parse(text) as Answer;
      } catch {
        reject(new TapboxError('ENOBOX', `box ${name}'s supervisor closed the connection without an answer; see \`tapbox ps -a\`.`));
        return;
      }
      if (answer.ok) resolve(answer.value as T);
      else reject(new TapboxError(answer.code, answer.message));
    });
    socket.write(`${JSON.stringify(req)}\n`);
  });
}

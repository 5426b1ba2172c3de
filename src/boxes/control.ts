// A box's control socket: an AF_UNIX stream socket in the user's private runtime directory, one JSON
// request and one JSON answer per connection. The directory is 0700, so only the user (and root) can
// connect; the supervisor also checks every peer's uid (SO_PEERCRED, from the kernel, not the peer)
// and refuses anyone but its own user, root included: a box is driven by the user who started it.
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { requireNative } from '../../native/addon/index.js';
import { TapboxError } from '../errors.js';

export type Request =
  | { op: 'status' }
  | { op: 'stop'; timeout: number }
  | { op: 'kill'; signal: NodeJS.Signals }
  | { op: 'exec' };

export type Answer = { ok: true; value: unknown } | { ok: false; code: TapboxError['code']; message: string };

/** The uid of the process at the other end of `socket` (SO_PEERCRED). */
function peerUid(socket: Socket): number {
  const fd = (socket as unknown as { _handle?: { fd?: number } })._handle?.fd;
  if (fd === undefined || fd < 0) throw new Error('the control socket has no descriptor');
  return requireNative().peerCredentials(fd).uid;
}

/** Serves `handle` on `path` to the user's own processes only. */
export function serveControl(path: string, handle: (request: Request) => Promise<unknown>): Promise<Server> {
  const uid = process.getuid!();
  const server = createServer((socket) => {
    const answer = (a: Answer) => socket.end(`${JSON.stringify(a)}\n`);
    socket.on('error', () => undefined);
    let peer: number;
    try {
      peer = peerUid(socket);
    } catch {
      socket.destroy();
      return;
    }
    if (peer !== uid) {
      answer({ ok: false, code: 'EACCES', message: `this box belongs to uid ${uid}; uid ${peer} may not drive it.` });
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

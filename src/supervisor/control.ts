// The supervisor ⇄ launcher control socket: AF_UNIX SOCK_SEQPACKET messages, and fd passing
// (SCM_RIGHTS) for the TAP fd. Node has neither, so these are thin calls into the native addon
// (native/addon/control.cc).
import { requireNative, type ControlMessage } from '../../native/addon/index.js';

export type { ControlMessage };

/** A connected AF_UNIX SOCK_SEQPACKET pair, both ends close-on-exec. */
export function socketpair(): [number, number] {
  return requireNative().socketpair();
}

/**
 * Receives one message without blocking the event loop: the blocking recvmsg runs in the libuv thread
 * pool, on its own dup of `fd`, and holds a pool thread until a message or the peer's close arrives
 * (closing `fd` meanwhile does not end it). At most one passed fd is kept (close-on-exec); `data` empty
 * and no `fd` means the peer closed. Node-style callback, so `util.promisify(recvMessage)` works.
 */
export function recvMessage(fd: number, callback: (err: NodeJS.ErrnoException | null, message?: ControlMessage) => void): void {
  requireNative().recvMessage(fd, callback);
}

/** Sends one message, with `passFd` as SCM_RIGHTS when given. Throws on failure (e.g. EPIPE). */
export function sendMessage(fd: number, data: Uint8Array, passFd?: number): void {
  requireNative().sendMessage(fd, data, passFd);
}

/** Closes an fd (throws on EBADF). */
export function closeFd(fd: number): void {
  requireNative().closeFd(fd);
}

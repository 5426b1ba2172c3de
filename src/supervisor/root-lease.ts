// A sandbox's lease on its root (--rootfs, --image): a shared flock on the root directory, taken before
// the launcher starts and held until the launcher has exited. The image store removes a root only
// under an exclusive flock of its own, non-blocking, so it never removes one a sandbox runs on
// (src/images/store.ts, removeRoot). The kernel holds the lease: it goes when the supervisor closes it
// or dies, even by SIGKILL, so a killed box never pins an image's files. The fd is close-on-exec
// (Node opens every file so): the launcher and the sandbox never hold it.
import { closeSync, constants, fstatSync, openSync, statSync } from 'node:fs';
import { requireNative } from '../../native/addon/index.js';
import { TapboxError } from '../errors.js';

/** Takes the lease on the root directory at path; returns the fd that holds it (close it to let go). */
export function leaseRoot(path: string): number {
  let fd: number;
  try {
    fd = openSync(path, constants.O_RDONLY | constants.O_DIRECTORY);
  } catch (e) {
    throw new TapboxError('EMOUNT', `can't open the sandbox's root ${path} (${(e as NodeJS.ErrnoException).code}); give a directory you can read as --rootfs, or import or pull the image again.`);
  }
  try {
    // The store may have removed the root between the lookup of its path and our open (it renames it
    // away under its exclusive lock, then deletes it): the lease counts only on the directory still there.
    if (!requireNative().tryLock(fd, false) || !sameFile(fd, path)) {
      throw new TapboxError('EMOUNT', `the sandbox's root ${path} was removed as the sandbox started (tapbox image rm, or the image imported or pulled again); run it again.`);
    }
    return fd;
  } catch (e) {
    closeSync(fd);
    throw e;
  }
}

function sameFile(fd: number, path: string): boolean {
  const held = fstatSync(fd);
  try {
    const now = statSync(path);
    return now.dev === held.dev && now.ino === held.ino;
  } catch {
    return false;
  }
}

// The plan we hand the native launcher (found by launcherPath, src/idmap/launcher.ts): everything it
// needs is decided here, before it clones, and passed as arguments (native/launcher/main.c says what each does).
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { resolve } from 'node:path';
import { TapboxError } from '../errors.js';
import { launcherPath } from '../idmap/launcher.js';
import { SANDBOX_NET, type ResolvedOptions } from '../options/options.js';
import { hardeningArgs } from '../options/hardening.js';
import { subordinateArgs, subordinateIds } from '../idmap/subids.js';

export { launcherPath };

/**
 * Removes the run directories of the store `dir` (-d/--store) whose launcher is gone: what a launcher
 * killed with its supervisor left (a later run with the same store would remove them too).
 */
export async function sweepStore(dir: string): Promise<void> {
  const sweeper = spawn(launcherPath(), ['--sweep-store', dir], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  sweeper.stderr.on('data', (d: Buffer) => (stderr += d));
  const [code] = (await once(sweeper, 'close')) as [number | null];
  if (code !== 0) throw new TapboxError('EMOUNT', stderr.trim().replace(/^tapbox-launcher: /, '') || `sweeping the store ${dir} failed`);
}

/**
 * Whether the launcher asks for the virtio-net header and the checksum/TSO offloads on the TAP
 * (--vnet-hdr; see the measurements in netstack/link/tap.ts): at every MTU, as TCP's checksums are then
 * left to the kernels both ways (host→sandbox 1.3x at MTU 65520) and below MTU 65520 segments go as
 * super-segments larger than a frame (sandbox→host 8x at MTU 1500). The launcher falls back to a plain
 * TAP where the kernel refuses it. Never under link faults: corrupted frames must fail their checksums.
 */
export function useVnetHdr(o: ResolvedOptions): boolean {
  return o.net === 'tap' && !o.linkFaults;
}

export function launcherArgs(o: ResolvedOptions, command: string[], cgroup: string | null = null): string[] {
  const args = ['--net', o.net, '--hostname', o.hostname, '--cwd', resolve(o.cwd)];
  if (o.uid === 'same') args.push('--same-uid');
  if (o.uid === 'nobody') args.push('--nobody');
  if (o.net === 'tap') {
    args.push('--mtu', String(o.mtu));
    if (useVnetHdr(o)) args.push('--vnet-hdr');
    args.push('--ip4', SANDBOX_NET.ip4, '--gw4', SANDBOX_NET.gateway4);
    args.push('--ip6', SANDBOX_NET.ip6, '--gw6', SANDBOX_NET.gateway6);
    args.push('--mac', SANDBOX_NET.sandboxMac);
    args.push('--resolv', SANDBOX_NET.dns4, '--resolv', SANDBOX_NET.dns6);
  }
  // A root of one's own (an image's, or --rootfs) may hold files of the user's subordinate ids (image
  // import gives them their owners): where the user has a range, the sandbox maps it as podman does.
  // Without one, the single map: such files show as nobody, and an image imported then has none.
  const ids = o.hardening.mode === 'rootfs' ? subordinateIds().ids : null;
  if (ids) args.push(...subordinateArgs(ids));
  return [...args, ...hardeningArgs(o.hardening, cgroup), '--', ...command];
}

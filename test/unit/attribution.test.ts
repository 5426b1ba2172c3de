import { describe, expect, it } from 'vitest';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Attributor } from '../../src/egress/audit/attribution.js';
import { describeProcess, packageContext, type ProcessFacts } from '../../src/egress/audit/package-context.js';
import { findSocketInode, kernelHex } from '../../src/egress/audit/socket-table.js';
import { parseIp } from '../../src/egress/policy/address.js';

const HEADER = '  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n';
const row = (local: string, remote: string, inode: number) => `   0: ${local} ${remote} 01 00000000:00000000 00:00000000 00000000  1001        0 ${inode} 1 0000000000000000 20 4 30 10 -1\n`;
const hex4 = (a: string) => kernelHex(parseIp(a)!, 4);
const hex6 = (a: string) => kernelHex(parseIp(a)!, 6);
const port = (p: number) => p.toString(16).toUpperCase().padStart(4, '0');

describe('socket tables', () => {
  it('prints addresses the way the kernel does on this host', () => {
    // The kernel writes each 32-bit word in host order: 10.0.2.100 is 6402000A on little-endian hosts.
    expect(hex4('10.0.2.100')).toMatch(/^(6402000A|0A000264)$/);
    expect(hex6('10.0.2.100')).toHaveLength(32);
    expect(hex6('10.0.2.100').endsWith(hex4('10.0.2.100'))).toBe(true);
  });

  it('finds a TCP socket by both ends, IPv4 in tcp6 as a mapped address', () => {
    const flow = { proto: 'tcp' as const, src: '10.0.2.100', srcPort: 40000, dst: '198.18.0.5', dstPort: 443 };
    const table = HEADER + row(`${hex4('10.0.2.100')}:${port(40000)}`, `${hex4('198.18.0.6')}:${port(443)}`, 11) + row(`${hex4('10.0.2.100')}:${port(40000)}`, `${hex4('198.18.0.5')}:${port(443)}`, 12);
    expect(findSocketInode(table, 4, flow)).toBe(12);
    const table6 = HEADER + row(`${hex6('10.0.2.100')}:${port(40000)}`, `${hex6('198.18.0.5')}:${port(443)}`, 13);
    expect(findSocketInode(table6, 6, flow)).toBe(13);
    expect(findSocketInode(table6, 6, { ...flow, srcPort: 40001 })).toBe(0);
    const v6 = { proto: 'tcp' as const, src: 'fd00::100', srcPort: 5000, dst: '2001:db8::5', dstPort: 80 };
    expect(findSocketInode(HEADER + row(`${hex6('fd00::100')}:${port(5000)}`, `${hex6('2001:db8::5')}:${port(80)}`, 14), 6, v6)).toBe(14);
  });

  it('finds an unconnected UDP socket by its port, preferring the one connected to the destination', () => {
    const flow = { proto: 'udp' as const, src: '10.0.2.100', srcPort: 5353, dst: '198.18.0.5', dstPort: 9999 };
    const any = `${'0'.repeat(8)}:${port(5353)}`;
    expect(findSocketInode(HEADER + row(any, '00000000:0000', 21), 4, flow)).toBe(21);
    const both = HEADER + row(any, '00000000:0000', 21) + row(`${hex4('10.0.2.100')}:${port(5353)}`, `${hex4('198.18.0.5')}:${port(9999)}`, 22);
    expect(findSocketInode(both, 4, flow)).toBe(22);
    // Connected elsewhere: not this flow's socket.
    expect(findSocketInode(HEADER + row(any, `${hex4('198.18.0.7')}:${port(9999)}`, 23), 4, flow)).toBe(0);
    // A socket whose inode is 0 (closed, an orphan) is nobody's.
    expect(findSocketInode(HEADER + row(any, '00000000:0000', 0), 4, flow)).toBe(0);
  });
});

const facts = (exe: string, argv: string[], env: Record<string, string> = {}, cwd = '/work'): ProcessFacts => ({ exe, argv, cwd, env: new Map(Object.entries(env)) });

describe('package context', () => {
  it('names the npm, yarn and pnpm package and lifecycle script from the nearest process showing it', () => {
    const script = facts('/bin/sh', ['sh', '-c', 'node install.js'], { npm_package_name: 'esbuild', npm_lifecycle_event: 'postinstall', npm_config_user_agent: 'npm/10.2.0 node/v20' });
    const owner = facts('/usr/bin/node', ['node', 'install.js']);
    const pkg = packageContext([owner, script, facts('/usr/bin/node', ['npm', 'install'])]);
    expect(pkg).toEqual({ manager: 'npm', name: 'esbuild', script: 'postinstall' });
    expect(describeProcess(owner.exe, owner.argv, pkg)).toBe('node (esbuild postinstall)');
    const yarn = facts('/usr/bin/node', ['node'], { npm_package_name: 'left-pad', npm_lifecycle_event: 'install', npm_config_user_agent: 'yarn/1.22.19 npm/? node/v20' });
    expect(packageContext([yarn])).toMatchObject({ manager: 'yarn', name: 'left-pad' });
    expect(packageContext([facts('/usr/bin/node', ['node'], { npm_package_name: 'x' })])).toBeNull();
  });

  it('names cargo build scripts, go generate and pip builds', () => {
    const build = facts('/t/target/debug/build/foo-1/build-script-build', ['/t/target/debug/build/foo-1/build-script-build'], { CARGO_PKG_NAME: 'foo' });
    expect(packageContext([build])).toEqual({ manager: 'cargo', name: 'foo', script: 'build script' });
    expect(packageContext([facts('/usr/bin/curl', ['curl']), build])).toMatchObject({ name: 'foo' });
    expect(packageContext([facts('/usr/bin/stringer', ['stringer'], { GOPACKAGE: 'shapes', GOFILE: 'kind.go' })])).toEqual({ manager: 'go', name: 'shapes', script: 'generate (kind.go)' });
    const pep517 = facts('/usr/bin/python3.11', ['/usr/bin/python3', '/usr/lib/python3/dist-packages/pip/_vendor/pyproject_hooks/_in_process/_in_process.py', 'build_wheel', '/tmp/x'], {}, `/tmp/pip-install-ab/phonehome_${'0123456789abcdef'.repeat(2)}`);
    const pkg = packageContext([facts('/usr/bin/python3.11', ['python3', '-c', '...']), pep517]);
    expect(pkg).toEqual({ manager: 'pip', name: 'phonehome', script: 'build' });
    expect(describeProcess('/usr/bin/python3.11', [], pkg)).toBe('python3.11 (pip build of phonehome)');
    expect(packageContext([facts('/usr/bin/python3', ['python3', 'app.py'])])).toBeNull();
    const legacy = facts('/usr/bin/python3.11', ['/usr/bin/python3', '-c', "\nexec(compile('''\n# This is <pip-setuptools-caller> -- a caller that pip uses to run setup.py", 'egg_info'], {}, '/src/phonehome');
    expect(packageContext([legacy])).toEqual({ manager: 'pip', name: 'phonehome', script: 'build' });
  });
});

describe('package context from outside the sandbox', () => {
  it('ignores a package manager variable the sandbox was started with', () => {
    const outside = new Map(Object.entries({ npm_package_name: 'tapbox', npm_lifecycle_event: 'npx' }));
    const npm = facts('/usr/bin/node', ['npm', 'install'], { npm_package_name: 'tapbox', npm_lifecycle_event: 'npx' });
    expect(packageContext([npm], outside)).toBeNull();
    const script = facts('/usr/bin/node', ['node', 'x.js'], { npm_package_name: 'phonehome', npm_lifecycle_event: 'postinstall' });
    expect(packageContext([script, npm], outside)).toMatchObject({ name: 'phonehome', script: 'postinstall' });
  });
});

describe('Attributor over a /proc tree', () => {
  // A fake procfs: the launcher (10), the sandbox's PID 1 (11, not dumpable: no ns link), the command
  // (12, sh) and its child (13, node) holding socket 55; socket 56 is in the table but nobody holds it.
  function fakeProc(): { root: string; cleanup: () => void } {
    const root = mkdtempSync(join(tmpdir(), 'tapbox-fakeproc-'));
    const proc = (pid: number, p: { ppid: number; nspid?: number[]; ns?: string; argv?: string[]; exe?: string; env?: string[]; fds?: Record<string, string> }) => {
      const dir = join(root, String(pid));
      mkdirSync(join(dir, 'fd'), { recursive: true });
      mkdirSync(join(dir, 'ns'));
      mkdirSync(join(dir, 'net'));
      writeFileSync(join(dir, 'stat'), `${pid} (odd) name) S ${p.ppid} 1 1 0 -1 4194304 0 0 0 0 0 0 0 0 20 0 1 0 ${1000 + pid} 0 0\n`);
      writeFileSync(join(dir, 'status'), `Name:\tx\nPPid:\t${p.ppid}\nNSpid:\t${(p.nspid ?? [pid]).join('\t')}\n`);
      writeFileSync(join(dir, 'cmdline'), (p.argv ?? ['x']).join('\0') + '\0\0\0');
      writeFileSync(join(dir, 'environ'), (p.env ?? []).join('\0'));
      if (p.ns) symlinkSync(p.ns, join(dir, 'ns', 'pid'));
      if (p.exe) symlinkSync(p.exe, join(dir, 'exe'));
      symlinkSync('/work/app', join(dir, 'cwd'));
      for (const [fd, target] of Object.entries(p.fds ?? {})) symlinkSync(target, join(dir, 'fd', fd));
      const tcp = HEADER + row(`${hex4('10.0.2.100')}:${port(40000)}`, `${hex4('198.18.0.5')}:${port(443)}`, 55) + row(`${hex4('10.0.2.100')}:${port(40001)}`, `${hex4('198.18.0.5')}:${port(443)}`, 56);
      writeFileSync(join(dir, 'net', 'tcp'), tcp);
      writeFileSync(join(dir, 'net', 'tcp6'), HEADER);
    };
    proc(10, { ppid: 1, ns: 'pid:[1]' });
    proc(11, { ppid: 10, nspid: [11, 1] });
    proc(12, { ppid: 11, nspid: [12, 2], ns: 'pid:[99]', argv: ['sh', '-c', 'npm install'], exe: '/bin/dash', env: ['npm_package_name=outer', 'npm_lifecycle_event=npx'] });
    proc(13, { ppid: 12, nspid: [13, 3], ns: 'pid:[99]', argv: ['node', 'phone.js'], exe: '/usr/bin/node', env: ['npm_package_name=phonehome', 'npm_lifecycle_event=postinstall'], fds: { 0: '/dev/null', 3: 'socket:[55]' } });
    proc(20, { ppid: 1, ns: 'pid:[1]', fds: { 3: 'socket:[56]' } }); // outside the sandbox
    return { root, cleanup: () => rmSync(root, { recursive: true, force: true }) };
  }
  const flow = (srcPort: number) => ({ proto: 'tcp' as const, src: '10.0.2.100', srcPort, dst: '198.18.0.5', dstPort: 443 });

  it('names the holder of the socket with its parents, its package, and its pid inside the sandbox', () => {
    const { root, cleanup } = fakeProc();
    try {
      const a = new Attributor(() => 10, root);
      expect(a.lookup(flow(40000))).toEqual({
        pid: 3,
        exe: '/usr/bin/node',
        argv: ['node', 'phone.js'],
        cwd: '/work/app',
        parents: [{ pid: 2, exe: '/bin/dash', argv: ['sh', '-c', 'npm install'] }],
        package: { manager: 'npm', name: 'phonehome', script: 'postinstall' },
        label: 'node (phonehome postinstall)',
      });
      // Cached by inode: a second flow on the same socket costs no scan.
      a.lookup(flow(40000));
      expect(a.stats).toMatchObject({ lookups: 2, cached: 1 });
    } finally {
      cleanup();
    }
  });

  it('gives unknown for a socket nobody in the sandbox holds (its process is gone), a process outside included', () => {
    const { root, cleanup } = fakeProc();
    try {
      const a = new Attributor(() => 10, root);
      expect(a.lookup(flow(40001))).toBeNull();
      expect(a.lookup(flow(40002))).toBeNull(); // not in the table at all
      rmSync(join(root, '13', 'fd', '3'));
      expect(new Attributor(() => 10, root).lookup(flow(40000))).toBeNull();
      expect(new Attributor(() => undefined, root).lookup(flow(40000))).toBeNull(); // not started yet
    } finally {
      cleanup();
    }
  });
});

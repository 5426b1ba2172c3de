// Which sandbox process a flow or DNS query comes from (README "Who did it"). When a flow starts, the
// kernel is asked for the socket with the flow's 4-tuple in the sandbox's network namespace: by exact
// tuple through sock_diag (native/addon/sock_diag.cc), else in its socket tables (/proc/<a sandbox
// process>/net/*); either gives the socket's inode. The sandbox's processes' fd tables (/proc/<pid>/fd,
// readable by the supervisor: same uid, in a child user namespace) give the process holding it
// (procfs.ts reads them). The sandbox's processes are those in its PID namespace (/proc/<pid>/ns/pid), learnt from
// a child of its PID 1 (PID 1 itself, the launcher, is not dumpable: its /proc entries are closed to us).
//
// The cost is paid only when a flow or a query starts, never per packet; a lookup reads at most
// MAX_PROCESSES processes and MAX_FDS descriptors and gives up after BUDGET_MS; results are cached by
// socket inode. A process that is gone before it was read, or that changed while it was read (checked
// again after: the descriptor still names the socket, the start time is the same), is unknown (null),
// never some other process.
//
// All of it is the sandboxed code's own data (argv, environment, executable names it chose): the audit
// can be lied to, so it is not a boundary.
import { performance } from 'node:perf_hooks';
import { describeProcess, packageContext, type PackageContext, type ProcessFacts } from './package-context.js';
import { Procfs } from './procfs.js';
import { native } from '../../../native/addon/index.js';
import { ipBytes, parseIp, type IpAddr } from '../policy/address.js';
import { TableSearch, type FlowTuple } from './socket-table.js';

export type { FlowTuple } from './socket-table.js';
export type { PackageContext } from './package-context.js';

/**
 * Which flows and queries are attributed: all of them (the default under --audit, --learn and --ask),
 * the denied ones only (the default otherwise: the cost is paid for denials alone), or none.
 */
export type AttributionMode = 'all' | 'denied' | 'off';

/**
 * The owner of one flow or DNS session, looked up at its start in 'all' mode, at its first denial in
 * 'denied' mode: `denied` says whether the event it is for is a denial. undefined: not attributed.
 */
export type Owner = (denied: boolean) => Attribution | null | undefined;

export interface ProcessSummary {
  /** The pid inside the sandbox (its PID namespace). */
  pid: number;
  exe: string;
  argv: string[];
}

export interface Attribution extends ProcessSummary {
  cwd: string;
  /** The parents, nearest first, up to the sandbox's PID 1 (not included). */
  parents: ProcessSummary[];
  package: PackageContext | null;
  /** One line for tables and messages: "node (esbuild postinstall)". */
  label: string;
}

/** Bounds of one lookup. */
const MAX_PROCESSES = 2048;
const MAX_FDS = 65_536;
const BUDGET_MS = 200;
const MAX_PARENTS = 32;
/** Environments read looking for a package manager's variables (the owner and its nearest parents). */
const ENV_DEPTH = 8;
const CACHE_SIZE = 4096;
/** Latest owners, tried first. */
const RECENT_OWNERS = 8;

export class Attributor {
  private readonly cache = new Map<number, Attribution | null>();
  private init: { pid: number; pidNs: string; command: number } | null = null;
  /** The sock_diag socket in the sandbox's network namespace (null: not opened yet; -1: not available). */
  private diag: number | null = null;
  /** Host pids of the latest owners, newest first (RECENT_OWNERS at most). */
  private recentOwners: number[] = [];
  /** The sandbox process whose /proc/PID/net the tables were last read through. */
  private tablePid: number | null = null;
  /** Lookups done and the time they took (for the bench and the debug log). */
  readonly stats = { lookups: 0, cached: 0, unknown: 0, totalMs: 0, tableMs: 0, scans: 0, exact: 0 };

  /**
   * @param launcherPid the launcher's pid (its child is the sandbox's PID 1); undefined until it runs.
   * @param proc where procfs is mounted (tests may point elsewhere).
   */
  private readonly procfs: Procfs;

  constructor(
    private readonly launcherPid: () => number | undefined,
    proc = '/proc',
  ) {
    this.procfs = new Procfs(proc);
  }

  /** The process owning the socket of `flow`, or null when it can't be told (gone, not found, over budget). */
  lookup(flow: FlowTuple): Attribution | null {
    const started = performance.now();
    this.stats.lookups++;
    try {
      const init = this.sandboxInit();
      if (!init) return null;
      let members: number[] | null = null;
      const allMembers = () => (members ??= this.members(init));
      const exact = this.exactInode(flow, () => [init.command, ...allMembers()]);
      if (exact) this.stats.exact++;
      const inode = exact || this.socketInode(flow, allMembers, started);
      this.stats.tableMs += performance.now() - started;
      if (!inode) return null;
      if (this.cache.has(inode)) {
        this.stats.cached++;
        return this.cache.get(inode)!;
      }
      // The processes that owned the last sockets first (a busy client opens many): only when none of
      // them holds this one are all the sandbox's processes searched.
      const found = this.ownerOf(inode, this.recentOwners.filter((pid) => this.inSandbox(pid, init)), init.pid, started, false) ?? this.ownerOf(inode, allMembers(), init.pid, started, true);
      this.remember(inode, found);
      return found;
    } finally {
      this.stats.totalMs += performance.now() - started;
    }
  }

  private remember(inode: number, a: Attribution | null): void {
    if (!a) {
      this.stats.unknown++;
      return; // a later look may find it (say, over budget now)
    }
    if (this.cache.size >= CACHE_SIZE) this.cache.delete(this.cache.keys().next().value!);
    this.cache.set(inode, a);
  }

  /**
   * The sandbox's PID 1 (the launcher's child) and its PID namespace, read from one of PID 1's
   * children (the command), found once.
   */
  private sandboxInit(): { pid: number; pidNs: string; command: number } | null {
    if (this.init) return this.init;
    const launcher = this.launcherPid();
    if (launcher === undefined) return null;
    const pids = this.procfs.pids();
    const init = pids.find((pid) => this.procfs.stat(pid)?.ppid === launcher);
    if (init === undefined) return null;
    const outside = this.procfs.link(`${launcher}/ns/pid`);
    for (const pid of pids) {
      if (this.procfs.stat(pid)?.ppid !== init) continue;
      const pidNs = this.procfs.link(`${pid}/ns/pid`);
      if (pidNs && pidNs !== outside) return (this.init = { pid: init, pidNs, command: pid });
    }
    return null;
  }

  /** The sandbox's processes but PID 1, at most MAX_PROCESSES. */
  private members(init: { pid: number; pidNs: string }): number[] {
    this.stats.scans++;
    const members: number[] = [];
    for (const pid of this.procfs.pids()) {
      if (pid !== init.pid && this.procfs.link(`${pid}/ns/pid`) === init.pidNs && members.push(pid) >= MAX_PROCESSES) break;
    }
    return members;
  }

  /**
   * The socket's inode asked of the kernel by exact tuple (native/addon/sock_diag.cc): constant cost,
   * where reading the tables walks the host's whole established-hash. 0 when not found or unavailable
   * (no addon, an older kernel): the tables are read then.
   */
  private exactInode(flow: FlowTuple, through: () => number[]): number {
    // Opened once, through the sandbox's command or, if it is gone, another of its processes.
    if (this.diag === null) {
      this.diag = -1;
      if (native && this.procfs.root === '/proc') {
        for (const pid of through().slice(0, 4)) {
          try {
            this.diag = native.openSockDiag(pid);
            break;
          } catch {
            // gone, or not joinable: the next one
          }
        }
      }
    }
    const src = parseIp(flow.src);
    const dst = parseIp(flow.dst);
    if (this.diag < 0 || !native || !src || !dst || src.family !== dst.family) return 0;
    try {
      return native.sockDiagInode(this.diag, flow.proto, src.family, ipBytes(src), flow.srcPort, ipBytes(dst), flow.dstPort);
    } catch {
      return 0;
    }
  }

  /** Closes the sock_diag socket. */
  close(): void {
    if (this.diag !== null && this.diag >= 0) native?.closeFd(this.diag);
    this.diag = -1;
  }

  private inSandbox(pid: number, init: { pidNs: string }): boolean {
    return this.procfs.link(`${pid}/ns/pid`) === init.pidNs;
  }

  /** The socket's inode, from the tables of the sandbox's network namespace (read through any member). */
  private socketInode(flow: FlowTuple, members: () => number[], started: number): number {
    const v6Flow = flow.src.includes(':') || flow.dst.includes(':');
    const tables: [string, 4 | 6][] = v6Flow ? [[`${flow.proto}6`, 6]] : [[flow.proto, 4], [`${flow.proto}6`, 6]];
    for (const [table, family] of tables) {
      const search = new TableSearch(family, flow);
      // Through the process used last time; when it is gone, through any other (they share the namespace).
      const read = (pid: number) => this.procfs.searchTable(`${pid}/net/${table}`, search, started, BUDGET_MS) !== null && (this.tablePid = pid) !== null;
      if (this.tablePid === null || !read(this.tablePid)) members().some(read);
      if (search.inode) return search.inode;
    }
    return 0;
  }

  /**
   * The process among `pids` holding socket `inode`: the deepest holder when a parent shares it with a
   * child (all of them searched when `all`; else the first holder found).
   */
  private ownerOf(inode: number, pids: number[], initPid: number, started: number, all: boolean): Attribution | null {
    const target = `socket:[${inode}]`;
    const holders: { pid: number; fd: string }[] = [];
    let fds = 0;
    for (const pid of pids) {
      if (!all && holders.length) break;
      if (performance.now() - started > BUDGET_MS) return null;
      const entries = this.procfs.list(`${pid}/fd`);
      if (!entries) continue; // gone
      for (const fd of entries) {
        if (++fds > MAX_FDS) return null;
        if (this.procfs.link(`${pid}/fd/${fd}`) === target) {
          holders.push({ pid, fd });
          break;
        }
      }
    }
    if (holders.length === 0) return null;
    const chains = holders.map((h) => ({ ...h, chain: this.ancestors(h.pid, initPid) }));
    // A holder whose ancestor also holds the socket inherited it or was handed it: the descendant is
    // the one using it. Among unrelated holders, the one started last.
    const leaves = chains.filter((h) => !chains.some((o) => o !== h && o.chain.includes(h.pid)));
    const owner = (leaves.length ? leaves : chains).sort((a, b) => Number(this.procfs.stat(b.pid)?.startTime ?? 0) - Number(this.procfs.stat(a.pid)?.startTime ?? 0))[0]!;
    const found = this.describe(owner.pid, owner.fd, target, owner.chain);
    if (found) this.recentOwners = [owner.pid, ...this.recentOwners.filter((p) => p !== owner.pid)].slice(0, RECENT_OWNERS);
    return found;
  }

  /** Reads who `pid` is, then checks it is still the process holding `target` on `fd`. */
  private describe(pid: number, fd: string, target: string, parentPids: number[]): Attribution | null {
    const before = this.procfs.stat(pid);
    if (!before) return null;
    const owner = this.procfs.facts(pid);
    const nsPid = this.procfs.nsPid(pid);
    if (!owner || nsPid === null) return null;
    const parents: (ProcessSummary & { facts: ProcessFacts | null })[] = [];
    for (const ppid of parentPids) {
      // The environments of the nearest parents, and of the top one (the sandbox's command: the
      // environment tapbox was started with, see packageContext).
      const facts = this.procfs.facts(ppid, parents.length < ENV_DEPTH || ppid === parentPids[parentPids.length - 1]);
      const parentNsPid = this.procfs.nsPid(ppid);
      if (!facts || parentNsPid === null) break; // gone: the chain stops there, as far as it is known
      parents.push({ pid: parentNsPid, exe: facts.exe, argv: facts.argv.slice(0, 8), facts });
    }
    const after = this.procfs.stat(pid);
    if (this.procfs.link(`${pid}/fd/${fd}`) !== target || after?.startTime !== before.startTime) return null;
    const chain = [owner, ...parents.flatMap((p) => (p.facts ? [p.facts] : []))];
    const top = parents.length === parentPids.length ? chain[chain.length - 1]! : null;
    // A top process that can't be read (gone): nothing tells what came from outside; no package then.
    const pkg = top ? packageContext(chain, top.env) : null;
    return {
      pid: nsPid,
      exe: owner.exe,
      argv: owner.argv,
      cwd: owner.cwd,
      parents: parents.map(({ pid: p, exe, argv }) => ({ pid: p, exe, argv })),
      package: pkg,
      label: describeProcess(owner.exe, owner.argv, pkg),
    };
  }

  /** The parents of `pid` (host pids), nearest first, up to `initPid` (excluded). */
  private ancestors(pid: number, initPid: number): number[] {
    const chain: number[] = [];
    let p = this.procfs.stat(pid)?.ppid;
    while (p !== undefined && p !== initPid && p > 1 && chain.length < MAX_PARENTS) {
      chain.push(p);
      p = this.procfs.stat(p)?.ppid;
    }
    return chain;
  }

}

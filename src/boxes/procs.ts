// A running box's processes, seen from the host through /proc/N/status (readable for every process,
// unlike /proc/N/task/N/children, which the box's undumpable PID 1 does not show us).
import { readdirSync, readFileSync } from 'node:fs';

interface Proc {
  pid: number;
  ppid: number;
  rssBytes: number;
}

function processes(): Proc[] {
  const out: Proc[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    let status: string;
    try {
      status = readFileSync(`/proc/${entry}/status`, 'utf8');
    } catch {
      continue; // gone meanwhile
    }
    const ppid = Number(/^PPid:\s+(\d+)/m.exec(status)?.[1] ?? 0);
    const rss = Number(/^VmRSS:\s+(\d+) kB/m.exec(status)?.[1] ?? 0);
    out.push({ pid: Number(entry), ppid, rssBytes: rss * 1024 });
  }
  return out;
}

/** The host pids under `root` (the box's launcher): its PID 1, then the command and the rest. */
export function descendants(root: number): Proc[] {
  const all = processes();
  const found: Proc[] = [];
  let frontier = [root];
  while (frontier.length) {
    const next = all.filter((p) => frontier.includes(p.ppid));
    found.push(...next);
    frontier = next.map((p) => p.pid);
  }
  return found;
}

/**
 * The host pid of the box's command: the first child of its PID 1 (the launcher's child). Orphans
 * re-parented to PID 1 are its children too and share the command's namespaces, so any would do;
 * the lowest pid is the command unless pids wrapped.
 */
export function commandPid(launcher: number): number | null {
  const all = processes();
  const init = all.find((p) => p.ppid === launcher);
  if (!init) return null;
  const children = all.filter((p) => p.ppid === init.pid).map((p) => p.pid);
  return children.length ? Math.min(...children) : null;
}

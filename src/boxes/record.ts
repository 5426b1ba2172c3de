// What a box's state directory records: how it was started (box.json, written once it runs) and how
// it ended (exit.json, written by its supervisor as it exits). Live figures come from the supervisor.
import { readFileSync, writeFileSync, renameSync } from 'node:fs';
import type { NetMode, SandboxOptions } from '../options/options.js';

export interface BoxRecord {
  name: string;
  command: string[];
  /** The options as given (paths as the caller wrote them, resolved against `cwd`). */
  options: SandboxOptions;
  cwd: string;
  net: NetMode;
  created: string;
  /** The daemon's pid. */
  supervisorPid: number;
  /** The launcher's pid (its PID 1's parent). */
  launcherPid: number;
  /** --rm: everything of the box goes when it exits. */
  autoRemove: boolean;
  /** The egress log `logs --audit` shows. */
  auditLog: string;
  /** The box's cgroup directory, where it has one. */
  cgroup: string | null;
}

export interface BoxExit {
  code: number;
  signal: NodeJS.Signals | null;
  ended: string;
  flows: number;
  denials: number;
}

/** Writes JSON atomically (a reader never sees half a file). */
export function writeJson(path: string, value: unknown): void {
  writeFileSync(`${path}.tmp`, `${JSON.stringify(value, null, 2)}\n`, { mode: 0o600 });
  renameSync(`${path}.tmp`, path);
}

export function readJson<T>(path: string): T | null {
  try {
    return JSON.parse(readFileSync(path, 'utf8')) as T;
  } catch {
    return null;
  }
}

// The user's subordinate uid and gid ranges, as rootless podman finds them: a line NAME:START:COUNT (or
// UID:START:COUNT) in /etc/subuid and in /etc/subgid, and the setuid helpers newuidmap and newgidmap
// (Debian's package "uidmap") that map them. With both, an image keeps its files' owners: image uid N
// (1 <= N <= COUNT) is host uid START+N-1, and uid 0 is the user. The helpers check the range against
// those files again when they map it, so a range read here can't widen what the admin granted.
import { accessSync, constants, readFileSync } from 'node:fs';
import { userInfo } from 'node:os';
import { delimiter, join } from 'node:path';

export interface IdRange {
  /** The first host id of the range. */
  start: number;
  /** How many ids: image ids 1..count map onto it. */
  count: number;
}

export interface SubordinateIds {
  uid: IdRange;
  gid: IdRange;
}

/** Either the ranges, or why there are none as one sentence naming the fix. */
export type SubordinateLookup = { ids: SubordinateIds; missing?: undefined } | { ids: null; missing: string };

/** The most ids mapped, podman's default size of a range (the launcher refuses more). */
export const MAX_SUBORDINATE_IDS = 65536;

export interface LookupPlaces {
  subuid?: string;
  subgid?: string;
  /** Where newuidmap and newgidmap are looked for (default: $PATH, as the launcher runs them). */
  path?: string;
}

/** The first range of the user (by name or by uid) in a subuid/subgid file, at most MAX_SUBORDINATE_IDS long. */
export function rangeOf(text: string, name: string, uid: number): IdRange | null {
  for (const line of text.split('\n')) {
    const [owner, start, count] = line.trim().split(':');
    if (owner !== name && owner !== String(uid)) continue;
    const first = Number(start);
    const size = Number(count);
    if (!/^\d+$/.test(start ?? '') || !/^\d+$/.test(count ?? '') || first === 0 || size === 0 || first + size > 2 ** 32 - 1) continue;
    return { start: first, count: Math.min(size, MAX_SUBORDINATE_IDS) };
  }
  return null;
}

function readOrEmpty(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return '';
  }
}

function onPath(name: string, path: string): boolean {
  return path.split(delimiter).some((dir) => {
    if (dir === '') return false;
    try {
      accessSync(join(dir, name), constants.X_OK);
      return true;
    } catch {
      return false;
    }
  });
}

/** The invoking user's subordinate ids, or the sentence saying what to install or add. */
export function subordinateIds(places: LookupPlaces = {}): SubordinateLookup {
  const path = places.path ?? process.env.PATH ?? '/usr/bin:/bin';
  if (!onPath('newuidmap', path) || !onPath('newgidmap', path)) {
    return { ids: null, missing: 'newuidmap and newgidmap are not installed: install them (Debian, Ubuntu: sudo apt install uidmap; Fedora: shadow-utils)' };
  }
  let username: string;
  const uid = process.getuid!();
  try {
    username = userInfo().username;
  } catch {
    return { ids: null, missing: `your uid ${uid} has no entry in /etc/passwd, which newuidmap needs: add one (sudo useradd), with a range (sudo usermod --add-subuids 100000-165535 --add-subgids 100000-165535 NAME)` };
  }
  const ranges = { uid: rangeOf(readOrEmpty(places.subuid ?? '/etc/subuid'), username, uid), gid: rangeOf(readOrEmpty(places.subgid ?? '/etc/subgid'), username, uid) };
  if (ranges.uid === null || ranges.gid === null) {
    const missing = ranges.uid === null ? (ranges.gid === null ? '/etc/subuid and /etc/subgid give' : '/etc/subuid gives') : '/etc/subgid gives';
    return { ids: null, missing: `${missing} you (${username}) no subordinate ids: add a range with sudo usermod --add-subuids 100000-165535 --add-subgids 100000-165535 ${username}` };
  }
  return { ids: { uid: ranges.uid, gid: ranges.gid } };
}

/** The launcher's flags that map them. */
export function subordinateArgs(ids: SubordinateIds): string[] {
  return ['--subuid', `${ids.uid.start}:${ids.uid.count}`, '--subgid', `${ids.gid.start}:${ids.gid.count}`];
}

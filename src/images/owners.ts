// The owners an image gives its files, kept as rootless podman keeps them: image uid N (1 <= N <= the
// size of the user's subordinate range) is host uid START+N-1, and image uid 0 is the user (src/idmap/).
//
// Unpacking writes every member as the user (unpack.ts) and notes here the owner its header gives, as
// the layers come: a member written again takes its new owner, and one removed (replaced, whited out)
// takes with it the notes of everything below it. Once the last layer is in, the launcher gives each
// noted path its owner, in a user namespace mapped with the user's range (native/launcher/idmap.c), and
// only then is the root renamed into the store. An id beyond the range is root's (the user's), with a
// warning: the image can't make the map wider than the range the admin granted. Without a range (or
// with newuidmap refusing) every file stays the user's, as before, with one warning naming the fix.
import { applyOwners, type Owner } from '../idmap/launcher.js';
import { subordinateIds, type SubordinateLookup } from '../idmap/subids.js';

/** How many ids a warning names before "and N more". */
const SHOWN = 3;

export class Owners {
  private readonly byPath = new Map<string, [uid: number, gid: number]>();
  /** Ids of members beyond the range (or of any owner but root when there is no range), for the warning. */
  private readonly beyond = new Set<string>();
  private beyondMembers = 0;

  constructor(private readonly lookup: SubordinateLookup = subordinateIds()) {}

  /** A member was written at rel (relative to the root), with the uid and gid of its header. */
  written(rel: string, uid: number | undefined, gid: number | undefined): void {
    this.byPath.delete(rel);
    const u = this.inRange(uid ?? 0, this.lookup.ids?.uid.count ?? 0, 'uid');
    const g = this.inRange(gid ?? 0, this.lookup.ids?.gid.count ?? 0, 'gid');
    if (u.beyond || g.beyond) this.beyondMembers++;
    if (u.id !== 0 || g.id !== 0) this.byPath.set(rel, [u.id, g.id]);
  }

  /** What was at rel was removed; below it too when it may have been a directory. */
  removed(rel: string, directory: boolean): void {
    this.byPath.delete(rel);
    if (!directory) return;
    const below = `${rel}/`;
    for (const path of this.byPath.keys()) if (path.startsWith(below)) this.byPath.delete(path);
  }

  private inRange(id: number, count: number, kind: string): { id: number; beyond: boolean } {
    if (Number.isInteger(id) && id >= 0 && id <= count) return { id, beyond: false };
    this.beyond.add(`${kind} ${id}`);
    return { id: 0, beyond: true };
  }

  /**
   * Gives the noted paths under root their owners (root is where the layers went, not yet in the store).
   * Returns the warning a user should see, if any: owners beyond the range, or none kept at all.
   */
  apply(root: string, what: string): string | null {
    const ids = [...this.beyond];
    const named = ids.slice(0, SHOWN).join(', ') + (ids.length > SHOWN ? `, and ${ids.length - SHOWN} more` : '');
    const lookup = this.lookup;
    if (!lookup.ids) {
      return this.beyondMembers === 0 ? null : `${what}: ${this.beyondMembers} of its files belong to other owners than root (${named}); they are yours (root's in the box), as ${lookup.missing}; then remove the image (tapbox image rm) and import it again.`;
    }
    const owners: Owner[] = [...this.byPath].map(([path, [uid, gid]]) => [path, uid, gid]);
    const refused = applyOwners(root, lookup.ids, owners);
    if (refused !== null) {
      return `${what}: its files' owners were not kept (${refused}): they are yours (root's in the box); check that newuidmap and newgidmap are setuid root and that /etc/subuid and /etc/subgid give you a range, then remove the image (tapbox image rm) and import it again.`;
    }
    if (this.beyondMembers === 0) return null;
    return `${what}: ${this.beyondMembers} of its files belong to ids beyond your subordinate range of ${lookup.ids.uid.count} uids and ${lookup.ids.gid.count} gids (${named}); those are root's in the box.`;
  }
}

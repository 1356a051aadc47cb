// Proxy joins: the host joins a VM's groups on a bridge, on the VM's behalf.
// A socket membership is all it takes — the kernel then answers the
// querier's queries and sends its own reports on that link, so the router
// builds the tree — and the kernel drops it when the process ends, which
// is why an agent that dies leaves no join of this kind behind.
import { GroupMembership } from './membership';

function key(group: string, bridge: string): string {
  return `${group}%${bridge}`;
}

export class ProxyJoins {
  /** Per membership, its holders: two migrations may need one group on one bridge. */
  private readonly held = new Map<string, { holders: number; membership: Promise<GroupMembership> }>();

  /** Joins `group` on `bridge` (once per group and bridge, however many hold it). */
  async join(group: string, bridge: string): Promise<void> {
    const k = key(group, bridge);
    const entry = this.held.get(k);
    if (entry !== undefined) {
      entry.holders++;
      await entry.membership;
      return;
    }
    const membership = GroupMembership.join(group, bridge);
    this.held.set(k, { holders: 1, membership });
    try {
      await membership;
    } catch (err) {
      this.held.delete(k);
      throw err;
    }
  }

  /** Drops one hold; the membership goes with the last. */
  leave(group: string, bridge: string): void {
    const k = key(group, bridge);
    const entry = this.held.get(k);
    if (entry === undefined) return;
    if (--entry.holders > 0) return;
    this.held.delete(k);
    void entry.membership.then((m) => m.leave(), () => undefined);
  }

  isHeld(group: string, bridge: string): boolean {
    return this.held.has(key(group, bridge));
  }

  close(): void {
    for (const entry of this.held.values()) void entry.membership.then((m) => m.leave(), () => undefined);
    this.held.clear();
  }
}

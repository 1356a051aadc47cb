// Which of a VM's groups a migration carries over.
import { canonicalGroup } from './capture';

export { canonicalGroup };

/**
 * Groups a host joins for itself on every link and no VM needs carried over:
 * all-nodes, solicited-node (ff02::1:ff00:0/104), MLDv2/IGMPv3 report addresses,
 * and the rest of link-local scope, which no router forwards anyway.
 */
export function isLinkLocalGroup(group: string): boolean {
  const canonical = canonicalGroup(group);
  if (!canonical.includes(':')) return canonical.startsWith('224.0.0.');
  return /^ff[0-9a-f]2:/.test(canonical);
}

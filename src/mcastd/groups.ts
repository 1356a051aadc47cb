// Multicast group addresses as vmm-mcastd compares and stores them: one text
// per address (IPv6 compressed, lowercase), whatever the kernel or a peer wrote.
import * as net from 'net';

export type Family = 4 | 6;

export function familyOf(address: string): Family | null {
  const f = net.isIP(address);
  return f === 4 || f === 6 ? f : null;
}

export function isMulticastGroup(address: string): boolean {
  const family = familyOf(address);
  if (family === 4) {
    const first = Number(address.split('.')[0]);
    return first >= 224 && first <= 239;
  }
  return family === 6 && /^ff/i.test(address);
}

/** The canonical text of an IPv4 or IPv6 address; throws for anything else. */
export function canonicalGroup(address: string): string {
  const family = familyOf(address);
  if (family === 4) return address;
  if (family === 6) {
    // The URL parser compresses and lowercases IPv6 addresses per RFC 5952.
    return new URL(`http://[${address}]/`).hostname.slice(1, -1);
  }
  throw new Error(`"${address}" is not an IP address`);
}

/**
 * Groups a host joins for itself on every link and no VM needs carried over:
 * all-nodes, solicited-node (ff02::1:ff00:0/104), MLDv2/IGMPv3 report addresses,
 * and the rest of link-local scope, which no router forwards anyway.
 */
export function isLinkLocalGroup(group: string): boolean {
  if (familyOf(group) === 4) return group.startsWith('224.0.0.');
  return /^ff[0-9a-f]2:/i.test(canonicalGroup(group));
}

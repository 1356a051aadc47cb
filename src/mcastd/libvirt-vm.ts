// What vmm-mcastd asks libvirt: a VM's identity and bridged NICs (from its
// XML), and, for `migrate`, the live migration itself. One short-lived
// connection per request: the daemon serves a migration now and then, not a
// stream of queries, and holds nothing open that could go stale.
import { parseDomainXml } from '../collectors/domain-xml';
import {
  callChecked, closeConnection, lookupDomain, lookupDomainByName, nonNegative, openConnection, releaseDomain,
} from '../libvirt/calls';
import { domainXml } from '../libvirt/domain-calls';
import { libvirt } from '../libvirt/ffi';
import type { ConnectPtr, DomainPtr } from '../libvirt/ffi';

export interface VmNic {
  mac: string;
  /** The host-side device (tap) and the bridge it hangs off. */
  port: string;
  bridge: string;
}

export interface VmFacts {
  uuid: string;
  name: string;
  nics: VmNic[];
}

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** virDomainMigrateFlags: live, peer to peer, defined on the destination, undefined here. */
const VIR_MIGRATE_LIVE = 1;
const VIR_MIGRATE_PEER2PEER = 2;
const VIR_MIGRATE_PERSIST_DEST = 8;
const VIR_MIGRATE_UNDEFINE_SOURCE = 16;

async function withDomain<T>(uri: string | null, readOnly: boolean, vm: string, use: (dom: DomainPtr, conn: ConnectPtr) => Promise<T>): Promise<T> {
  const conn = await openConnection(uri, readOnly);
  try {
    const dom = UUID_RE.test(vm) ? await lookupDomain(conn, vm.toLowerCase()) : await lookupDomainByName(conn, vm);
    try {
      return await use(dom, conn);
    } finally {
      releaseDomain(dom);
    }
  } finally {
    await closeConnection(conn);
  }
}

/** The VM (by name or UUID) and its NICs that sit on a bridge (others carry no snooped multicast). */
export function vmFacts(uri: string | null, vm: string): Promise<VmFacts> {
  return withDomain(uri, true, vm, async (dom) => {
    const facts = parseDomainXml(await domainXml(dom));
    const nics: VmNic[] = [];
    for (const n of facts.nics) {
      if (n.mac === null || n.hostDevice === null || n.source === null) continue;
      if (n.kind !== 'bridge' && n.kind !== 'network') continue;
      nics.push({ mac: n.mac.toLowerCase(), port: n.hostDevice, bridge: n.source });
    }
    return { uuid: facts.uuid, name: facts.name, nics };
  });
}

/**
 * Live-migrates `vm` to the libvirt at `destUri` (peer to peer: this host's
 * libvirtd drives it) and resolves when it has ended. Needs a read-write
 * connection (libvirt-readwrite yes).
 */
export function migrateVm(uri: string | null, vm: string, destUri: string): Promise<void> {
  const flags = VIR_MIGRATE_LIVE | VIR_MIGRATE_PEER2PEER | VIR_MIGRATE_PERSIST_DEST | VIR_MIGRATE_UNDEFINE_SOURCE;
  return withDomain(uri, false, vm, async (dom) => {
    await callChecked(libvirt().api.virDomainMigrateToURI, [dom, destUri, flags, null, 0], nonNegative,
      'virDomainMigrateToURI', destUri, () => undefined);
  });
}

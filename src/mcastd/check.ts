// vmm-mcastd --check: each thing the daemon needs, checked for real, one
// line each — the key, the capabilities, the bridges, libvirt, the state and
// control directories, and every configured peer and relay server answering
// an authenticated AGENT_SEARCH (which proves both its address and the key).
import { constants, promises as fs } from 'fs';
import * as path from 'path';
import { formatCheck, type CheckResult } from '../check';
import { closeConnection, openConnection } from '../libvirt/calls';
import { loadKeyFile } from './auth';
import { BridgeHost } from './bridge-ports';
import type { Endpoint, McastdConfig } from './config';
import { openSignalling } from './signalling-adapter';
import { MessageType } from './wire';

/** 200, 400 and 800 ms: a peer on the same site answers within the first. */
const PEER_RETRIES = 3;
const CAP_NET_ADMIN = 12;
const CAP_NET_RAW = 13;

async function capabilities(): Promise<CheckResult> {
  const name = 'capabilities';
  try {
    const status = await fs.readFile('/proc/self/status', 'utf8');
    const eff = BigInt(`0x${/^CapEff:\s*([0-9a-f]+)/m.exec(status)?.[1] ?? '0'}`);
    const missing = [[CAP_NET_ADMIN, 'CAP_NET_ADMIN (MDB entries)'], [CAP_NET_RAW, 'CAP_NET_RAW (seeing streams arrive)']]
      .filter(([bit]) => ((eff >> BigInt(bit)) & 1n) === 0n).map(([, what]) => what);
    if (missing.length === 0) return { name, ok: true, detail: 'CAP_NET_ADMIN and CAP_NET_RAW' };
    return { name, ok: false, detail: `missing ${missing.join(', ')} — run as root or give the unit AmbientCapabilities=CAP_NET_ADMIN CAP_NET_RAW` };
  } catch (err) {
    return { name, ok: false, detail: (err as Error).message };
  }
}

async function bridgeCheck(bridges: BridgeHost, bridge: string): Promise<CheckResult> {
  const name = `bridge: ${bridge}`;
  if (!(await bridges.exists(bridge))) return { name, ok: false, detail: `no such bridge — fix default-bridge` };
  const read = (f: string): Promise<string> => fs.readFile(`/sys/class/net/${bridge}/bridge/${f}`, 'utf8').then((t) => t.trim(), () => '?');
  const [snooping, stats] = await Promise.all([read('multicast_snooping'), read('multicast_stats_enabled')]);
  if (stats !== '1') {
    return { name, ok: false, detail: `multicast_stats_enabled is ${stats}: a VM's own report cannot be seen, so joins are held for report-timeout — ` +
      `ip link set ${bridge} type bridge mcast_stats_enabled 1` };
  }
  return { name, ok: true, detail: `snooping ${snooping === '1' ? 'on' : 'off (the bridge floods multicast to every port)'}, statistics on` };
}

async function dirCheck(what: string, file: string): Promise<CheckResult> {
  const dir = path.dirname(file);
  const name = `${what}: ${dir}`;
  try {
    await fs.mkdir(dir, { recursive: true });
    await fs.access(dir, constants.W_OK);
    return { name, ok: true, detail: 'writable' };
  } catch (err) {
    return { name, ok: false, detail: `${(err as Error).message} — the unit's RuntimeDirectory=vmm-mcastd makes it` };
  }
}

export async function mcastdCheck(config: McastdConfig): Promise<{ text: string; exitCode: number }> {
  const results: CheckResult[] = [];
  const log = (): void => undefined;
  let keyOk = false;
  try {
    await loadKeyFile(config.keyFile);
    keyOk = true;
    results.push({ name: `key: ${config.keyFile}`, ok: true, detail: 'read, long enough, readable by its owner only' });
  } catch (err) {
    results.push({ name: `key: ${config.keyFile}`, ok: false, detail: (err as Error).message });
  }
  results.push(await capabilities());
  const bridges = new BridgeHost();
  if (config.defaultBridge !== null) results.push(await bridgeCheck(bridges, config.defaultBridge));
  if (config.relay) {
    const iface = config.relayInterface ?? '';
    const exists = await fs.access(`/sys/class/net/${iface}`).then(() => true, () => false);
    results.push({ name: `relay interface: ${iface}`, ok: exists, detail: exists ? 'present' : 'no such interface — fix relay-interface' });
  }
  try {
    const conn = await openConnection(config.libvirtUri, !config.libvirtReadWrite);
    await closeConnection(conn);
    results.push({ name: `libvirt: ${config.libvirtUri ?? '(default URI)'}`, ok: true, detail: `opened ${config.libvirtReadWrite ? 'read-write' : 'read-only (migrate --prepare-only only; libvirt-readwrite yes to migrate)'}` });
  } catch (err) {
    results.push({ name: `libvirt: ${config.libvirtUri ?? '(default URI)'}`, ok: false, detail: `${(err as Error).message} — is libvirtd running, and may this user open the URI?` });
  }
  results.push(await dirCheck('state file', config.stateFile));
  results.push(await dirCheck('control socket', config.controlSocket));
  const targets: { what: string; at: Endpoint }[] = [
    ...config.peers.map((p) => ({ what: `peer ${p.name}`, at: p })),
    ...(config.relayServer !== null ? [{ what: 'relay server', at: config.relayServer }] : []),
  ];
  if (keyOk && targets.length > 0) {
    const key = await loadKeyFile(config.keyFile);
    const signalling = await openSignalling({ ...config, listen: ['::', '0.0.0.0'], port: 0 }, key, log);
    try {
      await Promise.all(targets.map(async ({ what, at }) => {
        const name = `${what}: ${at.address} port ${at.port}`;
        const started = Date.now();
        try {
          const reply = await signalling.request(at, MessageType.AGENT_SEARCH, { mac: '00:00:00:00:00:00' }, { retries: PEER_RETRIES });
          results.push({ name, ok: true, detail: `agent ${reply.body.agent} answered in ${Date.now() - started} ms (same key)` });
        } catch (err) {
          results.push({ name, ok: false, detail: `${(err as Error).message} — is its vmm-mcastd running, with the same key?` });
        }
      }));
    } finally {
      await signalling.close();
    }
  }
  return formatCheck(results);
}

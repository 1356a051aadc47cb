// Typed, promise-returning wrappers around libvirt's connection-wide calls
// (open, facts, domain lists, bulk stats, event registration); the
// per-domain ones are in domain-calls.ts. Every call that reaches a
// hypervisor driver (and so may block on an RPC round trip or a domain's job
// lock) runs with koffi's `.async` form on the libuv thread pool. Only pure
// accessors of the virDomain object (UUID, name, id; no driver involved)
// and frees run synchronously.
//
// A failed call rejects with a LibvirtError (see errors.ts); memory libvirt
// allocates is freed here, before the promise settles.

import koffi from 'koffi';
import type { KoffiFunc } from 'koffi';
import {
  libvirt,
  STATS_RECORD,
  TYPED_PARAM_SIZE,
  UUID_BUFLEN,
  VIR_CONNECT_RO,
  type ConnectPtr,
  type DomainPtr,
  type LibvirtApi,
  type NativePtr,
  type NodeInfoStruct,
} from './ffi';
import { errorMark, failure } from './errors';
import { decodeDomainStats, NO_DOMAIN_STATS, type DomainStats } from './domain-stats';

const api = (): LibvirtApi => libvirt().api;

const callsMade = new Map<string, number>();

function counted(fn: { info: { name: string } }): void {
  const name = fn.info.name;
  callsMade.set(name, (callsMade.get(name) ?? 0) + 1);
}

/**
 * Calls run on the pool since the process started, by libvirt function:
 * what refreshes cost libvirt. The caller subtracts two readings.
 */
export function libvirtCallsMade(): ReadonlyMap<string, number> {
  return new Map(callsMade);
}

/** Runs a koffi function on the libuv thread pool and resolves with its C return value. */
export function callAsync<A extends unknown[], R>(fn: KoffiFunc<(...args: A) => R>, ...args: A): Promise<R> {
  counted(fn);
  return new Promise<R>((resolve, reject) => {
    fn.async(...args, (err: unknown, result: R) => {
      if (err) reject(err instanceof Error ? err : new Error(String(err)));
      else resolve(result);
    });
  });
}

/**
 * Runs `fn(...args)` on the libuv thread pool. Resolves with `decode(rc)`
 * when `ok(rc)`, else rejects with the libvirt error for `operation(detail)`.
 * One Promise and one callback per call, and the operation text is built
 * only on failure: a 10,000-VM refresh makes ~80,000 of these calls, and the
 * async wrappers they replace allocated ~1 kB each.
 */
export function callChecked<A extends unknown[], R, T>(
  fn: KoffiFunc<(...args: A) => R>,
  args: A,
  ok: (rc: R) => boolean,
  operation: string,
  detail: string | null,
  decode: (rc: R) => T,
): Promise<T> {
  const mark = errorMark();
  counted(fn);
  return new Promise<T>((resolve, reject) => {
    const done = (err: unknown, rc: R): void => {
      if (err) reject(err instanceof Error ? err : new Error(String(err)));
      else if (!ok(rc)) reject(failure(detail === null ? operation : `${operation}(${detail})`, mark));
      else {
        try {
          resolve(decode(rc));
        } catch (decodeError) {
          reject(decodeError);
        }
      }
    };
    fn.async(...args, done);
  });
}

/**
 * The check of a libvirt call already made on this thread: throws the
 * libvirt error for `operation(detail)` when `rc` is negative. `mark` is
 * errorMark() taken before the call. Only for a driver that answers from
 * this process's memory (see answersFromMemory): any other may block on a
 * socket or on a domain's job lock. Written out at each call rather than
 * through a call description: a refresh makes tens of thousands.
 */
export function checkedNow(fn: { info: { name: string } }, rc: number, mark: number, operation: string, detail: string | null): void {
  counted(fn);
  if (rc < 0) throw failure(detail === null ? operation : `${operation}(${detail})`, mark);
}

/**
 * Whether a connection opened with `uri` is the test driver in this process
 * (test:///path or test:///default: no transport, no host; libvirt.so holds
 * that driver, so no daemon is involved). It keeps its domains in memory and
 * a call does no I/O, so its per-domain calls can be made directly (2-3 µs of
 * CPU each) rather than through the pool (~50 µs).
 */
export function answersFromMemory(uri: string | null): boolean {
  return uri !== null && uri.startsWith('test:///');
}

/** Decodes a malloc'd C string returned by libvirt and frees it. */
export function takeString(p: NativePtr | null): string | null {
  if (p === null) return null;
  try {
    return koffi.decode.string(p);
  } finally {
    api().free(p);
  }
}

/** uint64 values arrive as a Number below 2^53 and a BigInt above: always hand out a BigInt. */
export function toBigInt(value: number | bigint): bigint {
  return typeof value === 'bigint' ? value : BigInt(value);
}

/** Runs `call`, and rejects with the libvirt error when `ok` says the C return value means failure. */
export async function checked<R>(operation: string, call: () => Promise<R>, ok: (result: R) => boolean): Promise<R> {
  const mark = errorMark();
  const result = await call();
  if (!ok(result)) throw failure(operation, mark);
  return result;
}
export const nonNegative = (rc: number): boolean => rc >= 0;

// ---------------------------------------------------------------- connection

export async function openConnection(uri: string | null, readOnly: boolean): Promise<ConnectPtr> {
  const conn = await checked(
    `virConnectOpenAuth(${uri ?? 'default URI'})`,
    () => callAsync(api().virConnectOpenAuth, uri, null, readOnly ? VIR_CONNECT_RO : 0),
    (c) => c !== null,
  );
  return conn as ConnectPtr;
}

/** Drops a reference (the one from openConnection or from retainConnection). */
export async function closeConnection(conn: ConnectPtr): Promise<void> {
  await callAsync(api().virConnectClose, conn);
}

/**
 * Takes a reference so that `conn` stays valid while calls use it, even if
 * the connection is declared dead and closed meanwhile (libvirt frees it at
 * the last reference). Local refcount only: never blocks.
 */
export function retainConnection(conn: ConnectPtr): void {
  api().virConnectRef(conn);
}

/** False when the transport under a remote connection has failed. */
export async function isAlive(conn: ConnectPtr): Promise<boolean> {
  return (await callAsync(api().virConnectIsAlive, conn)) === 1;
}

/** libvirt packs versions as major * 1,000,000 + minor * 1,000 + micro. */
export function formatVersion(packed: number | bigint): string {
  const v = Number(packed);
  return `${Math.floor(v / 1e6)}.${Math.floor(v / 1e3) % 1000}.${v % 1000}`;
}

export interface ConnectionFacts {
  type: string;
  version: string | null;
  libvirtVersion: string;
  uri: string;
  /** Active host CPUs (virNodeGetInfo). */
  hostCpus: number;
  /** Highest host CPU number + 1, offline CPUs included (virNodeGetCPUMap): the bits a cpumap needs. */
  hostCpuNumbers: number;
}

export async function connectionFacts(conn: ConnectPtr): Promise<ConnectionFacts> {
  const type = await checked('virConnectGetType', () => callAsync(api().virConnectGetType, conn), (t) => t !== null);
  const hv: [number | bigint] = [0];
  // Drivers without a hypervisor version (e.g. some remote setups) fail or report 0.
  const hvRc = await callAsync(api().virConnectGetVersion, conn, hv);
  const lib: [number | bigint] = [0];
  await checked('virConnectGetLibVersion', () => callAsync(api().virConnectGetLibVersion, conn, lib), nonNegative);
  const uriPtr = await checked('virConnectGetURI', () => callAsync(api().virConnectGetURI, conn), (p) => p !== null);
  const node: Partial<NodeInfoStruct> = {};
  await checked('virNodeGetInfo', () => callAsync(api().virNodeGetInfo, conn, node), nonNegative);
  // CPU numbers can be sparse (offline CPUs): cpumaps must cover the highest one.
  const cpuNumbers = await callAsync(api().virNodeGetCPUMap, conn, null, null, 0);
  return {
    type: type ?? '',
    version: hvRc >= 0 && Number(hv[0]) > 0 ? formatVersion(hv[0]) : null,
    libvirtVersion: formatVersion(lib[0]),
    uri: takeString(uriPtr) ?? '',
    hostCpus: node.cpus ?? 0,
    hostCpuNumbers: Math.max(cpuNumbers, node.cpus ?? 0),
  };
}

// ------------------------------------------------------------ domain lists

/** Domains matching `flags` (virConnectListAllDomainsFlags); the caller owns each reference. */
export async function listDomains(conn: ConnectPtr, flags: number): Promise<DomainPtr[]> {
  const out: [NativePtr | null] = [null];
  const n = await checked(
    `virConnectListAllDomains(flags=${flags})`,
    () => callAsync(api().virConnectListAllDomains, conn, out, flags),
    nonNegative,
  );
  if (out[0] === null) return [];
  const doms = n > 0 ? (koffi.decode(out[0], 'void *', n) as DomainPtr[]) : [];
  api().free(out[0]);
  return doms;
}

/** UUIDs of the domains matching `flags`. */
export async function listDomainUuids(conn: ConnectPtr, flags: number): Promise<Set<string>> {
  const uuids = new Set<string>();
  for (const dom of await listDomains(conn, flags)) {
    uuids.add(domainUuid(dom));
    api().virDomainFree(dom);
  }
  return uuids;
}

export interface DomainStatsEntry {
  /** Valid while the list holds it: a caller that keeps it longer takes its own reference (retainDomain). */
  dom: DomainPtr;
  stats: DomainStats;
}

/**
 * The domains of one listing, with their bulk stats where there are any. The
 * list owns one reference to each domain and drops them all with free():
 * one call, rather than one virDomainFree per domain.
 */
export interface DomainList {
  readonly entries: readonly DomainStatsEntry[];
  /**
   * Drops the references (on the thread pool or not, whichever costs the
   * main thread less): only while holding a connection reference, as for
   * releaseDomain.
   */
  free(): void;
  /** Drops the references on the thread pool, for use outside a retained connection. */
  freeLater(): Promise<void>;
}

/**
 * virConnectGetAllDomainStats for all domains (active and inactive). Groups
 * the driver does not support are missing from `stats`.
 */
export async function allDomainStats(conn: ConnectPtr, groups: number, flags: number): Promise<DomainList> {
  const out: [NativePtr | null] = [null];
  const n = await checked(
    `virConnectGetAllDomainStats(flags=${flags})`,
    () => callAsync(api().virConnectGetAllDomainStats, conn, groups, out, flags),
    nonNegative,
  );
  const list = out[0];
  if (list === null) return domainList([]);
  // The records, and with them the domain references, are freed with the
  // list: each domain is used only while the list lives.
  const freeLater = (): Promise<void> => callAsync(api().virDomainStatsRecordListFree, list).then(() => undefined, () => undefined);
  let entries: DomainStatsEntry[];
  try {
    const recordPtrs = n > 0 ? (koffi.decode(list, 'void *', n) as NativePtr[]) : [];
    entries = recordPtrs.map((rec) => {
      // Read field by field: a view of each record would be an external
      // ArrayBuffer per domain for the GC to track and sweep.
      const dom = koffi.decode(rec, STATS_RECORD.dom, 'void *') as DomainPtr;
      const paramsPtr = (koffi.decode(rec, STATS_RECORD.params, 'void *') as NativePtr | null) ?? 0n;
      const nparams = koffi.decode(rec, STATS_RECORD.nparams, 'int') as number;
      const stats = paramsPtr === 0n || nparams <= 0
        ? NO_DOMAIN_STATS
        : decodeDomainStats(new Uint8Array(koffi.view(paramsPtr, nparams * TYPED_PARAM_SIZE)), nparams);
      return { dom, stats };
    });
  } catch (err) {
    api().virDomainStatsRecordListFree(list);
    throw err;
  }
  return {
    entries,
    // On the pool: freeing 50 QEMU records (parameters, strings, domain
    // objects) takes ~250 µs of CPU, and a pool call ~5 µs of the main thread.
    free: () => void freeLater(),
    freeLater,
  };
}

/** Every domain (virConnectListAllDomains, `flags`), without stats: for drivers that lack bulk stats. */
export async function listDomainsWithoutStats(conn: ConnectPtr, flags: number): Promise<DomainList> {
  return domainList(await listDomains(conn, flags));
}

/** A list owning one reference to each of `doms`. */
function domainList(doms: DomainPtr[]): DomainList {
  return {
    entries: doms.map((dom) => ({ dom, stats: NO_DOMAIN_STATS })),
    free: () => {
      for (const dom of doms) releaseDomain(dom);
    },
    freeLater: async () => {
      await Promise.all(doms.map(releaseDomainLater));
    },
  };
}

/** Takes a reference to `dom`, for use beyond the list it came in. Local refcount only: never blocks. */
export function retainDomain(dom: DomainPtr): void {
  api().virDomainRef(dom);
}

/**
 * Drops a domain reference. Synchronous: only call it while holding a
 * connection reference, so that this can never be the last reference to the
 * connection (whose disposal may talk to the daemon).
 */
export function releaseDomain(dom: DomainPtr): void {
  api().virDomainFree(dom);
}

/** Drops a domain reference on the thread pool, for use outside a retained connection. */
export async function releaseDomainLater(dom: DomainPtr): Promise<void> {
  await callAsync(api().virDomainFree, dom).catch(() => undefined);
}

/** The domain with this UUID; rejects with VIR_ERR_NO_DOMAIN when there is none. Release it with releaseDomain. */
export function lookupDomain(conn: ConnectPtr, uuid: string): Promise<DomainPtr> {
  return callChecked(api().virDomainLookupByUUIDString, [conn, uuid], (dom) => dom !== null,
    'virDomainLookupByUUIDString', uuid, (dom) => dom as DomainPtr);
}

/** The domain of this name; rejects with VIR_ERR_NO_DOMAIN when there is none. Release it with releaseDomain. */
export function lookupDomainByName(conn: ConnectPtr, name: string): Promise<DomainPtr> {
  return callChecked(api().virDomainLookupByName, [conn, name], (dom) => dom !== null,
    'virDomainLookupByName', name, (dom) => dom as DomainPtr);
}

// ------------------------------------------------- domain accessors (local)

/** virDomainGetUUID's buffer, reused: the call is synchronous. */
const uuidBytes = Buffer.alloc(UUID_BUFLEN);
const HEX = Array.from({ length: 256 }, (_, b) => b.toString(16).padStart(2, '0'));

/**
 * The domain's UUID in libvirt's string form (lower case), or '' when the
 * call fails. Formatted here from the raw bytes: virDomainGetUUIDString
 * formats it twice in C (once for a debug message that is built even when
 * not logged), virDomainGetUUID once.
 */
export function domainUuid(dom: DomainPtr): string {
  return api().virDomainGetUUID(dom, uuidBytes) < 0 ? '' : formatUuid(uuidBytes);
}

function formatUuid(b: Buffer): string {
  return HEX[b[0]] + HEX[b[1]] + HEX[b[2]] + HEX[b[3]] + '-' + HEX[b[4]] + HEX[b[5]] + '-' + HEX[b[6]] + HEX[b[7]] + '-' +
    HEX[b[8]] + HEX[b[9]] + '-' + HEX[b[10]] + HEX[b[11]] + HEX[b[12]] + HEX[b[13]] + HEX[b[14]] + HEX[b[15]];
}

/**
 * The UUID strings of a listing's domains, each kept from the previous
 * listing while the domain at that position has the same UUID (libvirt lists
 * a steady host's domains in the same order every time). A UUID string made
 * anew each refresh is a few hundred bytes of concatenation that lives as long
 * as the collection: at 10,000 domains, megabytes promoted to the old
 * generation every refresh.
 */
export class ListingUuids {
  /** The raw UUID last seen at each position, 16 bytes each. */
  private bytes = new Uint8Array(0);
  private strings: string[] = [];

  /** The UUID of `dom`, the domain at `position` of a listing; '' when the call fails. */
  at(dom: DomainPtr, position: number): string {
    if (api().virDomainGetUUID(dom, uuidBytes) < 0) return '';
    const from = position * UUID_BUFLEN;
    const known = this.strings[position];
    if (known !== undefined && known !== '') {
      let same = true;
      for (let k = 0; k < UUID_BUFLEN; k++) {
        if (this.bytes[from + k] !== uuidBytes[k]) {
          same = false;
          break;
        }
      }
      if (same) return known;
    }
    if (from + UUID_BUFLEN > this.bytes.length) {
      const grown = new Uint8Array(Math.max(2 * this.bytes.length, from + UUID_BUFLEN));
      grown.set(this.bytes);
      this.bytes = grown;
    }
    this.bytes.set(uuidBytes.subarray(0, UUID_BUFLEN), from);
    // Positions are filled in order, so the array never has holes.
    while (this.strings.length < position) this.strings.push('');
    const uuid = formatUuid(uuidBytes);
    this.strings[position] = uuid;
    return uuid;
  }

  /** Forgets positions from `count` on (the listing got shorter). */
  truncate(count: number): void {
    if (this.strings.length > count) this.strings.length = count;
  }
}

export function domainName(dom: DomainPtr): string {
  return api().virDomainGetName(dom) ?? '';
}

/** Numeric id while running, else -1 (libvirt returns (unsigned int)-1). */
export function domainId(dom: DomainPtr): number {
  const id = api().virDomainGetID(dom);
  return id === 0xffffffff ? -1 : id;
}

// ------------------------------------------------------------------ events

/** virConnectDomainEventRegisterAny for all domains; resolves with the callback id. */
export async function registerDomainEvent(conn: ConnectPtr, eventId: number, cb: NativePtr): Promise<number> {
  return checked(
    `virConnectDomainEventRegisterAny(event=${eventId})`,
    () => callAsync(api().virConnectDomainEventRegisterAny, conn, null, eventId, cb, null, null),
    nonNegative,
  );
}

export async function deregisterDomainEvent(conn: ConnectPtr, callbackId: number): Promise<void> {
  await checked(
    'virConnectDomainEventDeregisterAny',
    () => callAsync(api().virConnectDomainEventDeregisterAny, conn, callbackId),
    nonNegative,
  );
}

export async function registerCloseCallback(conn: ConnectPtr, cb: NativePtr): Promise<void> {
  await checked(
    'virConnectRegisterCloseCallback',
    () => callAsync(api().virConnectRegisterCloseCallback, conn, cb, null, null),
    nonNegative,
  );
}

export async function unregisterCloseCallback(conn: ConnectPtr, cb: NativePtr): Promise<void> {
  await checked(
    'virConnectUnregisterCloseCallback',
    () => callAsync(api().virConnectUnregisterCloseCallback, conn, cb),
    nonNegative,
  );
}

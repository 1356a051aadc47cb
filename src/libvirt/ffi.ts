// koffi declarations for the parts of libvirt's public C API (libvirt.so.0)
// that vmm-agentx uses. Declarations, struct layouts and enum numbers only:
// the callers (src/libvirt/*.ts, src/collectors/libvirt.ts) own the logic.
//
// Layouts are for LP64 Linux (x86_64, aarch64): `unsigned long` is 8 bytes.
// All types are anonymous (no koffi type names) so that loading this module
// twice in one process (jest re-evaluates modules per test file) cannot hit
// koffi's "duplicate type name" error.
//
// Pointers are BigInt in koffi 3; libvirt handles get TypeScript brands so a
// domain pointer cannot be passed where a connection is expected.

import koffi from 'koffi';
import type { KoffiFunc, LibraryHandle, TypeObject } from 'koffi';

export type ConnectPtr = bigint & { readonly __brand: 'virConnectPtr' };
export type DomainPtr = bigint & { readonly __brand: 'virDomainPtr' };
/** Any other native address (arrays, strings, typed parameters). */
export type NativePtr = bigint;

/** A one-element array koffi writes an `_Out_` scalar into. */
export type OutBox<T> = [T];

// virDomainInfo, virDomainBlockInfo and virDomainBlockStatsStruct are read
// from a caller-owned buffer at these offsets (LP64: unsigned long is 8
// bytes), not decoded into an object by koffi: the object and its fields
// cost more than the call itself against an in-process driver.
/** virDomainInfo: memory (unsigned long, KiB) and cpuTime (unsigned long long, ns). */
export const DOMAIN_INFO = { size: 40, memory: 16, cpuTime: 32 } as const;
/** virDomainBlockInfo: three unsigned long long. */
export const BLOCK_INFO = { size: 24, capacity: 0, allocation: 8, physical: 16 } as const;
/** virDomainBlockStatsStruct: five long long, -1 where the driver does not know. */
export const LEGACY_BLOCK_STATS = { size: 40, rdReq: 0, rdBytes: 8, wrReq: 16, wrBytes: 24, errs: 32 } as const;

/** virDomainJobInfo (only `type` is used; the rest keeps the layout right). */
export interface JobInfoStruct {
  type: number;
}

/** virNodeInfo. */
export interface NodeInfoStruct {
  model: string;
  memory: number | bigint;
  cpus: number;
  mhz: number;
  nodes: number;
  sockets: number;
  cores: number;
  threads: number;
}

/** virError (virterror.h), as far as vmm-agentx reads it. */
export interface ErrorStruct {
  code: number;
  domain: number;
  message: string | null;
  level: number;
}

/** virConnectFlags for virConnectOpenAuth. */
export const VIR_CONNECT_RO = 1;

/** virConnectListAllDomainsFlags. */
export const ListDomainsFlag = {
  TRANSIENT: 1 << 3,
  MANAGEDSAVE: 1 << 8,
  AUTOSTART: 1 << 10,
} as const;

/** virDomainStatsTypes. */
export const StatsGroup = {
  STATE: 1 << 0,
  CPU_TOTAL: 1 << 1,
  BALLOON: 1 << 2,
  VCPU: 1 << 3,
  BLOCK: 1 << 5,
} as const;

/** virConnectGetAllDomainStatsFlags: NOWAIT skips domains whose job lock is held instead of waiting. */
export const GET_ALL_DOMAINS_STATS_NOWAIT = 1 << 29;

/** virDomainEventID. */
export const DomainEventId = {
  LIFECYCLE: 0,
  DISK_CHANGE: 9,
  TRAY_CHANGE: 10,
  DEVICE_REMOVED: 15,
  BLOCK_JOB_2: 16,
  TUNABLE: 17,
  DEVICE_ADDED: 19,
  MIGRATION_ITERATION: 20,
  JOB_COMPLETED: 21,
  METADATA_CHANGE: 23,
  MEMORY_DEVICE_SIZE_CHANGE: 26,
} as const;

/** virDomainGetJobStatsFlags: KEEP_COMPLETED leaves the completed job's statistics for the next reader. */
export const JobStatsFlag = {
  COMPLETED: 1 << 0,
  KEEP_COMPLETED: 1 << 1,
} as const;

/** virTypedParameterType. */
export const TypedParamType = {
  INT: 1,
  UINT: 2,
  LLONG: 3,
  ULLONG: 4,
  DOUBLE: 5,
  BOOLEAN: 6,
  STRING: 7,
} as const;

/** VIR_TYPED_PARAM_FIELD_LENGTH + int type + 4 bytes padding + 8-byte union. */
export const TYPED_PARAM_SIZE = 96;
export const TYPED_PARAM_FIELD_LENGTH = 80;
export const TYPED_PARAM_TYPE_OFFSET = 80;
export const TYPED_PARAM_VALUE_OFFSET = 88;

/** virVcpuInfo: unsigned int number; int state; unsigned long long cpuTime; int cpu; (+4 padding). */
export const VCPU_INFO_SIZE = 24;

/** virDomainStatsRecord: virDomainPtr dom; virTypedParameterPtr params; int nparams; (+4 padding). */
export const STATS_RECORD = { dom: 0, params: 8, nparams: 16 } as const;

/** VIR_UUID_STRING_BUFLEN. */
export const UUID_STRING_BUFLEN = 37;
/** VIR_UUID_BUFLEN: a UUID's raw bytes. */
export const UUID_BUFLEN = 16;

export interface LibvirtApi {
  // Connections
  virConnectOpenAuth: KoffiFunc<(name: string | null, auth: null, flags: number) => ConnectPtr | null>;
  /** Drops one reference; the connection closes when the last one goes. */
  virConnectClose: KoffiFunc<(conn: ConnectPtr) => number>;
  /** Takes a reference that keeps the connection usable while another thread may close it. */
  virConnectRef: KoffiFunc<(conn: ConnectPtr) => number>;
  virConnectIsAlive: KoffiFunc<(conn: ConnectPtr) => number>;
  virConnectGetType: KoffiFunc<(conn: ConnectPtr) => string | null>;
  virConnectGetVersion: KoffiFunc<(conn: ConnectPtr, hvVer: OutBox<number | bigint>) => number>;
  virConnectGetLibVersion: KoffiFunc<(conn: ConnectPtr, libVer: OutBox<number | bigint>) => number>;
  /** Returns a malloc'd string: free it. */
  virConnectGetURI: KoffiFunc<(conn: ConnectPtr) => NativePtr | null>;
  virConnectRegisterCloseCallback: KoffiFunc<(conn: ConnectPtr, cb: NativePtr, opaque: null, freecb: null) => number>;
  virConnectUnregisterCloseCallback: KoffiFunc<(conn: ConnectPtr, cb: NativePtr) => number>;
  virNodeGetInfo: KoffiFunc<(conn: ConnectPtr, info: Partial<NodeInfoStruct>) => number>;
  /** With NULL map and online pointers: the number of host CPU numbers (highest + 1, offline ones included). */
  virNodeGetCPUMap: KoffiFunc<(conn: ConnectPtr, cpumap: null, online: null, flags: number) => number>;

  // Domain lists and bulk stats
  /** `domains` receives a malloc'd array of virDomainPtr: virDomainFree each, then free the array. */
  virConnectListAllDomains: KoffiFunc<(conn: ConnectPtr, domains: OutBox<NativePtr | null>, flags: number) => number>;
  /** `stats` receives a NULL-terminated array of virDomainStatsRecordPtr: virDomainStatsRecordListFree it. */
  virConnectGetAllDomainStats: KoffiFunc<
    (conn: ConnectPtr, stats: number, retStats: OutBox<NativePtr | null>, flags: number) => number
  >;
  virDomainStatsRecordListFree: KoffiFunc<(stats: NativePtr) => void>;

  // Domain handles and local accessors (no driver call, never block)
  virDomainRef: KoffiFunc<(dom: DomainPtr) => number>;
  virDomainFree: KoffiFunc<(dom: DomainPtr) => number>;
  /** NULL (with VIR_ERR_NO_DOMAIN) when the connection has no such domain. */
  virDomainLookupByUUIDString: KoffiFunc<(conn: ConnectPtr, uuid: string) => DomainPtr | null>;
  /** NULL (with VIR_ERR_NO_DOMAIN) when the connection has no such domain. */
  virDomainLookupByName: KoffiFunc<(conn: ConnectPtr, name: string) => DomainPtr | null>;
  virDomainGetUUIDString: KoffiFunc<(dom: DomainPtr, buf: Buffer) => number>;
  virDomainGetUUID: KoffiFunc<(dom: DomainPtr, buf: Buffer) => number>;
  virDomainGetName: KoffiFunc<(dom: DomainPtr) => string | null>;
  virDomainGetID: KoffiFunc<(dom: DomainPtr) => number>;

  // Per-domain queries (driver calls: may block on RPC or a domain job lock)
  virDomainGetState: KoffiFunc<
    (dom: DomainPtr, state: OutBox<number>, reason: OutBox<number>, flags: number) => number
  >;
  /** `info`: DOMAIN_INFO.size bytes. */
  virDomainGetInfo: KoffiFunc<(dom: DomainPtr, info: Buffer) => number>;
  /** Returns a malloc'd string: free it. */
  virDomainGetXMLDesc: KoffiFunc<(dom: DomainPtr, flags: number) => NativePtr | null>;
  virDomainGetVcpus: KoffiFunc<
    (dom: DomainPtr, info: Buffer, maxinfo: number, cpumaps: Buffer | null, maplen: number) => number
  >;
  virDomainGetVcpuPinInfo: KoffiFunc<
    (dom: DomainPtr, ncpumaps: number, cpumaps: Buffer, maplen: number, flags: number) => number
  >;
  /** `info`: BLOCK_INFO.size bytes. */
  virDomainGetBlockInfo: KoffiFunc<(dom: DomainPtr, disk: string, info: Buffer, flags: number) => number>;
  virDomainBlockStatsFlags: KoffiFunc<
    (dom: DomainPtr, disk: string, params: Buffer, nparams: [number], flags: number) => number
  >;
  /** Older block stats API, for drivers without virDomainBlockStatsFlags (the test driver). `stats`: LEGACY_BLOCK_STATS.size bytes. */
  virDomainBlockStats: KoffiFunc<(dom: DomainPtr, disk: string, stats: Buffer, size: number) => number>;
  virDomainGetJobInfo: KoffiFunc<(dom: DomainPtr, info: Partial<JobInfoStruct>) => number>;
  /** `params` receives a libvirt-allocated typed-parameter array: virTypedParamsFree it. */
  virDomainGetJobStats: KoffiFunc<
    (dom: DomainPtr, type: OutBox<number>, params: OutBox<NativePtr | null>, nparams: OutBox<number>, flags: number) => number
  >;
  virDomainGetAutostart: KoffiFunc<(dom: DomainPtr, autostart: OutBox<number>) => number>;
  virDomainIsPersistent: KoffiFunc<(dom: DomainPtr) => number>;
  virDomainHasManagedSaveImage: KoffiFunc<(dom: DomainPtr, flags: number) => number>;
  /** Blocks until the migration ends (vmm-mcastd runs it on the pool). */
  virDomainMigrateToURI: KoffiFunc<
    (dom: DomainPtr, duri: string, flags: number, dname: string | null, bandwidth: number) => number
  >;

  // Typed parameters
  virTypedParamsClear: KoffiFunc<(params: Buffer, nparams: number) => void>;
  virTypedParamsFree: KoffiFunc<(params: NativePtr, nparams: number) => void>;

  // Errors
  /** This thread's last error (owned by libvirt), or NULL. */
  virGetLastError: KoffiFunc<() => NativePtr | null>;
  virResetLastError: KoffiFunc<() => void>;
  virSetErrorFunc: KoffiFunc<(userData: null, handler: NativePtr | null) => void>;

  // Events
  virEventRegisterDefaultImpl: KoffiFunc<() => number>;
  virEventRunDefaultImpl: KoffiFunc<() => number>;
  virEventAddTimeout: KoffiFunc<(timeoutMs: number, cb: NativePtr, opaque: null, ff: null) => number>;
  virEventUpdateTimeout: KoffiFunc<(timer: number, timeoutMs: number) => void>;
  virEventRemoveTimeout: KoffiFunc<(timer: number) => number>;
  virConnectDomainEventRegisterAny: KoffiFunc<
    (conn: ConnectPtr, dom: null, eventID: number, cb: NativePtr, opaque: null, freecb: null) => number
  >;
  virConnectDomainEventDeregisterAny: KoffiFunc<(conn: ConnectPtr, callbackID: number) => number>;

  // libc
  free: KoffiFunc<(ptr: NativePtr) => void>;
}

/** Callback prototypes (pass `koffi.pointer(proto)` to koffi.register). */
export interface LibvirtProtos {
  /** void (*)(void *userData, virErrorPtr error) */
  errorFunc: TypeObject;
  /** void (*)(int timer, void *opaque) */
  timeoutCallback: TypeObject;
  /** void (*)(virConnectPtr conn, int reason, void *opaque) */
  closeFunc: TypeObject;
  /** void (*)(virConnectPtr, virDomainPtr, int event, int detail, void *opaque) */
  lifecycleCallback: TypeObject;
  /** void (*)(virConnectPtr, virDomainPtr, virTypedParameterPtr params, int nparams, void *opaque) */
  jobCompletedCallback: TypeObject;
  /** void (*)(virConnectPtr, virDomainPtr, int iteration, void *opaque) */
  migrationIterationCallback: TypeObject;
  /**
   * The leading (conn, dom) of any domain event callback. Callbacks with
   * more arguments may be declared this way: in the C calling conventions
   * of x86-64 and AArch64 a callee that declares fewer arguments than it is
   * passed simply does not read the rest.
   */
  domainCallback: TypeObject;
  /** virError, for koffi.decode of the handler's argument. */
  errorStruct: TypeObject;
}

export interface Libvirt {
  api: LibvirtApi;
  protos: LibvirtProtos;
}

let loaded: Libvirt | null = null;

/**
 * The libvirt bindings, loaded on first use. Throws a clear Error when
 * libvirt.so.0 is not installed.
 */
export function libvirt(): Libvirt {
  if (loaded === null) loaded = load();
  return loaded;
}

function load(): Libvirt {
  let lib: LibraryHandle;
  try {
    lib = koffi.load('libvirt.so.0');
  } catch (err) {
    const detail = err instanceof Error ? err.message : String(err);
    throw new Error(`libvirt.so.0 not found: apt-get install libvirt0 (${detail})`);
  }
  const libc = koffi.load('libc.so.6');

  const ptr = 'void *';
  const str = 'const char *';
  const jobInfo = koffi.struct({
    type: 'int',
    timeElapsed: 'ulonglong',
    timeRemaining: 'ulonglong',
    dataTotal: 'ulonglong',
    dataProcessed: 'ulonglong',
    dataRemaining: 'ulonglong',
    memTotal: 'ulonglong',
    memProcessed: 'ulonglong',
    memRemaining: 'ulonglong',
    fileTotal: 'ulonglong',
    fileProcessed: 'ulonglong',
    fileRemaining: 'ulonglong',
  });
  const nodeInfo = koffi.struct({
    model: koffi.array('char', 32, 'String'),
    memory: 'ulong',
    cpus: 'uint',
    mhz: 'int',
    nodes: 'uint',
    sockets: 'uint',
    cores: 'uint',
    threads: 'uint',
  });
  const errorStruct = koffi.struct({
    code: 'int',
    domain: 'int',
    message: str,
    level: 'int',
    conn: ptr,
    dom: ptr,
    str1: str,
    str2: str,
    str3: str,
    int1: 'int',
    int2: 'int',
    net: ptr,
  });
  type Spec = string | TypeObject | ReturnType<typeof koffi.out>;
  const out = (t: string | TypeObject) => koffi.out(koffi.pointer(typeof t === 'string' ? koffi.type(t) : t));

  // koffi's generic function type carries `any`; each line below pins it to
  // the C prototype written next to it.
  const f = <T extends (...args: never[]) => unknown>(name: string, result: string | TypeObject, args: Spec[]) =>
    lib.func(name, result, args) as unknown as KoffiFunc<T>;

  const api: LibvirtApi = {
    virConnectOpenAuth: f('virConnectOpenAuth', ptr, [str, ptr, 'uint']),
    virConnectClose: f('virConnectClose', 'int', [ptr]),
    virConnectRef: f('virConnectRef', 'int', [ptr]),
    virConnectIsAlive: f('virConnectIsAlive', 'int', [ptr]),
    virConnectGetType: f('virConnectGetType', str, [ptr]),
    virConnectGetVersion: f('virConnectGetVersion', 'int', [ptr, out('ulong')]),
    virConnectGetLibVersion: f('virConnectGetLibVersion', 'int', [ptr, out('ulong')]),
    virConnectGetURI: f('virConnectGetURI', ptr, [ptr]),
    virConnectRegisterCloseCallback: f('virConnectRegisterCloseCallback', 'int', [ptr, ptr, ptr, ptr]),
    virConnectUnregisterCloseCallback: f('virConnectUnregisterCloseCallback', 'int', [ptr, ptr]),
    virNodeGetInfo: f('virNodeGetInfo', 'int', [ptr, out(nodeInfo)]),
    virNodeGetCPUMap: f('virNodeGetCPUMap', 'int', [ptr, ptr, ptr, 'uint']),

    virConnectListAllDomains: f('virConnectListAllDomains', 'int', [ptr, out(ptr), 'uint']),
    virConnectGetAllDomainStats: f('virConnectGetAllDomainStats', 'int', [ptr, 'uint', out(ptr), 'uint']),
    virDomainStatsRecordListFree: f('virDomainStatsRecordListFree', 'void', [ptr]),

    virDomainRef: f('virDomainRef', 'int', [ptr]),
    virDomainFree: f('virDomainFree', 'int', [ptr]),
    // virDomainPtr virDomainLookupByUUIDString(virConnectPtr conn, const char *uuidstr)
    virDomainLookupByUUIDString: f('virDomainLookupByUUIDString', ptr, [ptr, str]),
    // virDomainPtr virDomainLookupByName(virConnectPtr conn, const char *name)
    virDomainLookupByName: f('virDomainLookupByName', ptr, [ptr, str]),
    virDomainGetUUIDString: f('virDomainGetUUIDString', 'int', [ptr, ptr]),
    virDomainGetUUID: f('virDomainGetUUID', 'int', [ptr, ptr]),
    virDomainGetName: f('virDomainGetName', str, [ptr]),
    virDomainGetID: f('virDomainGetID', 'uint', [ptr]),

    virDomainGetState: f('virDomainGetState', 'int', [ptr, out('int'), out('int'), 'uint']),
    virDomainGetInfo: f('virDomainGetInfo', 'int', [ptr, ptr]),
    virDomainGetXMLDesc: f('virDomainGetXMLDesc', ptr, [ptr, 'uint']),
    virDomainGetVcpus: f('virDomainGetVcpus', 'int', [ptr, ptr, 'int', ptr, 'int']),
    virDomainGetVcpuPinInfo: f('virDomainGetVcpuPinInfo', 'int', [ptr, 'int', ptr, 'int', 'uint']),
    virDomainGetBlockInfo: f('virDomainGetBlockInfo', 'int', [ptr, str, ptr, 'uint']),
    virDomainBlockStatsFlags: f('virDomainBlockStatsFlags', 'int', [ptr, str, ptr, koffi.inout(koffi.pointer(koffi.type('int'))), 'uint']),
    virDomainBlockStats: f('virDomainBlockStats', 'int', [ptr, str, ptr, 'size_t']),
    virDomainGetJobInfo: f('virDomainGetJobInfo', 'int', [ptr, out(jobInfo)]),
    virDomainGetJobStats: f('virDomainGetJobStats', 'int', [ptr, out('int'), out(ptr), out('int'), 'uint']),
    virDomainGetAutostart: f('virDomainGetAutostart', 'int', [ptr, out('int')]),
    virDomainIsPersistent: f('virDomainIsPersistent', 'int', [ptr]),
    virDomainHasManagedSaveImage: f('virDomainHasManagedSaveImage', 'int', [ptr, 'uint']),
    // int virDomainMigrateToURI(virDomainPtr domain, const char *duri, unsigned long flags, const char *dname, unsigned long bandwidth)
    virDomainMigrateToURI: f('virDomainMigrateToURI', 'int', [ptr, str, 'ulong', str, 'ulong']),

    virTypedParamsClear: f('virTypedParamsClear', 'void', [ptr, 'int']),
    virTypedParamsFree: f('virTypedParamsFree', 'void', [ptr, 'int']),

    virGetLastError: f('virGetLastError', ptr, []),
    virResetLastError: f('virResetLastError', 'void', []),
    virSetErrorFunc: f('virSetErrorFunc', 'void', [ptr, ptr]),

    virEventRegisterDefaultImpl: f('virEventRegisterDefaultImpl', 'int', []),
    virEventRunDefaultImpl: f('virEventRunDefaultImpl', 'int', []),
    virEventAddTimeout: f('virEventAddTimeout', 'int', ['int', ptr, ptr, ptr]),
    virEventUpdateTimeout: f('virEventUpdateTimeout', 'void', ['int', 'int']),
    virEventRemoveTimeout: f('virEventRemoveTimeout', 'int', ['int']),
    virConnectDomainEventRegisterAny: f('virConnectDomainEventRegisterAny', 'int', [ptr, ptr, 'int', ptr, ptr, ptr]),
    virConnectDomainEventDeregisterAny: f('virConnectDomainEventDeregisterAny', 'int', [ptr, 'int']),

    free: libc.func('free', 'void', [ptr]) as unknown as KoffiFunc<(p: NativePtr) => void>,
  };

  const protos: LibvirtProtos = {
    errorFunc: koffi.proto('void', [ptr, ptr]),
    timeoutCallback: koffi.proto('void', ['int', ptr]),
    closeFunc: koffi.proto('void', [ptr, 'int', ptr]),
    lifecycleCallback: koffi.proto('void', [ptr, ptr, 'int', 'int', ptr]),
    jobCompletedCallback: koffi.proto('void', [ptr, ptr, ptr, 'int', ptr]),
    migrationIterationCallback: koffi.proto('void', [ptr, ptr, 'int', ptr]),
    domainCallback: koffi.proto('void', [ptr, ptr]),
    errorStruct,
  };

  return { api, protos };
}

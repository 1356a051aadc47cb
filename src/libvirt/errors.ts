// libvirt failures as JavaScript errors.
//
// libvirt keeps its "last error" per thread. Calls made with koffi's `.async`
// run on a libuv pool thread, so virGetLastError() on the main thread cannot
// see their errors. libvirt also hands every error that an API call returns
// to the handler set with virSetErrorFunc, on the failing thread, before the
// call returns (virDispatchError). The handler installed here is a koffi
// callback: koffi runs it on the main thread while the failing pool thread
// waits, so the virError it receives is still valid and is copied into
// `lastDispatched`. Installing any handler also stops libvirt's default
// handler from printing every error to stderr.

import koffi from 'koffi';
import { libvirt, type ErrorStruct, type NativePtr } from './ffi';

/** virErrorNumber values the collector reacts to. */
export const ErrorCode = {
  INTERNAL_ERROR: 1,
  NO_SUPPORT: 3,
  NO_CONNECT: 5,
  INVALID_CONN: 6,
  INVALID_DOMAIN: 7,
  INVALID_ARG: 8,
  XML_ERROR: 27,
  SYSTEM_ERROR: 38,
  RPC: 39,
  NO_DOMAIN: 42,
  OPERATION_INVALID: 55,
  OPERATION_TIMEOUT: 68,
  ARGUMENT_UNSUPPORTED: 74,
  OPERATION_UNSUPPORTED: 84,
} as const;

export class LibvirtError extends Error {
  override readonly name = 'LibvirtError';

  constructor(
    /** The libvirt function (and argument) that failed, e.g. "virConnectOpenAuth(test:///x)". */
    readonly operation: string,
    /** virErrorNumber, or -1 when libvirt gave no details. */
    readonly code: number,
    /** virErrorDomain: which part of libvirt raised it. */
    readonly domain: number,
    /** libvirt's own message. */
    readonly libvirtMessage: string,
  ) {
    super(`${operation}: ${libvirtMessage}`);
  }

  /** Errors that mean the connection itself is gone, not just this call. */
  get isConnectionError(): boolean {
    return (
      this.code === ErrorCode.SYSTEM_ERROR ||
      this.code === ErrorCode.RPC ||
      this.code === ErrorCode.INVALID_CONN ||
      this.code === ErrorCode.NO_CONNECT
    );
  }

  /** The driver does not implement this API (e.g. the test driver and virDomainGetJobInfo). */
  get isUnsupported(): boolean {
    return (
      this.code === ErrorCode.NO_SUPPORT ||
      this.code === ErrorCode.OPERATION_UNSUPPORTED ||
      this.code === ErrorCode.ARGUMENT_UNSUPPORTED
    );
  }
}

interface DispatchedError {
  seq: number;
  error: ErrorStruct;
}

let dispatchSeq = 0;
let lastDispatched: DispatchedError | null = null;
let handlerInstalled = false;

/**
 * Installs the error handler (once per process). Must run before the first
 * libvirt call whose failure should be reported.
 */
export function installErrorHandler(): void {
  if (handlerInstalled) return;
  const { api, protos } = libvirt();
  const handler = koffi.register((_userData: NativePtr | null, errPtr: NativePtr | null) => {
    if (errPtr === null) return;
    const decoded = koffi.decode(errPtr, protos.errorStruct) as ErrorStruct;
    dispatchSeq += 1;
    lastDispatched = {
      seq: dispatchSeq,
      error: { code: decoded.code, domain: decoded.domain, message: decoded.message, level: decoded.level },
    };
  }, koffi.pointer(protos.errorFunc));
  api.virSetErrorFunc(null, handler);
  handlerInstalled = true;
}

/** A marker to take before a call; `failure()` only accepts errors dispatched after it. */
export function errorMark(): number {
  return dispatchSeq;
}

/**
 * The error for a call that just reported failure. Prefers the error the
 * handler received after `mark` (calls on any thread), then the calling
 * thread's virGetLastError() (synchronous calls).
 *
 * With several `.async` calls failing at the same moment the handler sees
 * both errors before either completion runs, and the newest one is taken:
 * callers only use the code to classify (and confirm decisions such as
 * "domain vanished" independently), so a mix-up costs at most a log line.
 */
export function failure(operation: string, mark: number): LibvirtError {
  if (lastDispatched !== null && lastDispatched.seq > mark) {
    const e = lastDispatched.error;
    return new LibvirtError(operation, e.code, e.domain, e.message ?? 'unknown libvirt error');
  }
  const { api, protos } = libvirt();
  const errPtr = api.virGetLastError();
  if (errPtr !== null) {
    const e = koffi.decode(errPtr, protos.errorStruct) as ErrorStruct;
    // Consumed: a later failure on this thread must not find it again.
    api.virResetLastError();
    if (e.code !== 0) return new LibvirtError(operation, e.code, e.domain, e.message ?? 'unknown libvirt error');
  }
  return new LibvirtError(operation, -1, 0, 'libvirt reported a failure without details');
}

// Types for reaper.js (plain CommonJS so the test runner can load it without ts-jest).

export const RUN_DIR_ENV: 'VMM_TEST_RUN_DIR';
export function runDir(): string | undefined;

export interface ProcStat {
  state: string;
  ppid: number;
  pgrp: number;
  /** Clock ticks since boot, as /proc/<pid>/stat prints it. */
  starttime: string;
}
export function readStat(pid: number): ProcStat | null;

/** Path of the record (for forget()), or undefined outside a test run. */
export function recordProcess(pid: number, info: { command: string; group: boolean }): string | undefined;
export function recordPidFiles(info: {
  files?: string[];
  dirs?: string[];
  exclude?: string[];
  uid: number;
  owner?: string;
}): string | undefined;
/** Records a network namespace (its name) for reapNamespaces(); undefined outside a test run. */
export function recordNamespace(name: string): string | undefined;
/** Deletes the recorded network namespaces that still exist; returns their names. */
export function reapNamespaces(dir?: string): string[];
export function forget(recordFile: string | undefined): void;

export interface Leftover {
  pid: number;
  command: string;
  why: string;
  group?: number;
}
export function findLeftovers(dir?: string): Leftover[];
/** "pid N: <command, cut to width> (why)". */
export function describeLeftover(p: Leftover, width?: number): string;
/** Live (not zombie) children of `pid`. */
export function childrenOf(pid: number): number[];
export function reap(dir?: string, options?: { graceMs?: number }): Leftover[];

// What a suite needs from the machine, checked when its file loads, so a
// missing tool or privilege skips the suite with the reason in its title
// ("… [skipped: no virsh (apt-get install libvirt-clients)]") instead of
// failing with whatever a half-started daemon happens to throw. The summary
// reporter (test/ci-summary-reporter.js) collects these reasons and prints
// them at the end of the run; jest itself shows only "skipped".
import * as fs from 'node:fs';
import * as path from 'node:path';

/** Debian package of each tool a suite may need (scripts/packages.sh installs them for `npm test`). */
export const PACKAGE_OF: Readonly<Record<string, string>> = {
  snmpd: 'snmpd',
  snmptrapd: 'snmptrapd',
  snmpget: 'snmp',
  snmpwalk: 'snmp',
  snmpbulkwalk: 'snmp',
  snmptable: 'snmp',
  snmptranslate: 'snmp',
  snmptrap: 'snmp',
  virsh: 'libvirt-clients',
  'virt-admin': 'libvirt-clients',
  libvirtd: 'libvirt-daemon',
  'qemu-system-x86_64': 'qemu-system-x86',
  smilint: 'smitools',
  ip: 'iproute2',
  bridge: 'iproute2',
  tc: 'iproute2',
  setpriv: 'util-linux',
  unshare: 'util-linux',
  mount: 'mount',
};

const SYSTEM_DIRS = ['/usr/local/sbin', '/usr/local/bin', '/usr/sbin', '/usr/bin', '/sbin', '/bin'];

/** Absolute path of an executable `tool` on PATH (or in the sbin dirs), or null. */
export function findTool(tool: string): string | null {
  const dirs = [...(process.env.PATH ?? '').split(':').filter((d) => d !== ''), ...SYSTEM_DIRS];
  for (const dir of dirs) {
    const candidate = path.join(dir, tool);
    try {
      if (fs.statSync(candidate).isFile()) {
        fs.accessSync(candidate, fs.constants.X_OK);
        return candidate;
      }
    } catch {
      // not here
    }
  }
  return null;
}

/** "no virsh (apt-get install libvirt-clients)" for the first missing tool, or null when all are there. */
export function missingTools(...tools: string[]): string | null {
  const missing = tools.filter((tool) => findTool(tool) === null);
  if (missing.length === 0) return null;
  const packages = [...new Set(missing.map((tool) => PACKAGE_OF[tool] ?? tool))];
  return `no ${missing.join(', ')} (apt-get install ${packages.join(' ')})`;
}

/** "needs root: <why>" unless we are root. */
export function needsRoot(why: string): string | null {
  return process.getuid?.() === 0 ? null : `needs root: ${why}`;
}

/** The first reason that is not null, or null. */
export function firstReason(...reasons: Array<string | null>): string | null {
  return reasons.find((r) => r !== null) ?? null;
}

/** The title a skipped suite gets; the summary reporter reads the reason back from it. */
export function skippedTitle(name: string, reason: string): string {
  return `${name} [skipped: ${reason}]`;
}

export type SuiteFn = (name: string, fn: () => void) => void;

/**
 * `describe` when `reason` is null; otherwise a describe.skip whose title
 * carries the reason. Use as `describeUnless(missingTools('virsh'))('…', () => …)`.
 */
export function describeUnless(reason: string | null): SuiteFn {
  if (reason === null) return (name, fn) => describe(name, fn);
  return (name, fn) => describe.skip(skippedTitle(name, reason), fn);
}

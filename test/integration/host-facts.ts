// Facts about the host (or a network namespace) read straight from the
// kernel and iproute2, as the oracle for VM-MIB's cross-MIB columns.
import { readFileSync, realpathSync } from 'fs';
import * as path from 'path';
import { runCommand } from '../harness/process';

/** /proc/uptime in centiseconds (vmHvUpTime's unit). */
export function hostUptimeTicks(): number {
  return Math.floor(Number(readFileSync('/proc/uptime', 'utf8').split(' ')[0]) * 100);
}

/** Mount points of /proc/self/mounts, octal escapes undone. */
export function mountPoints(): string[] {
  return readFileSync('/proc/self/mounts', 'utf8').split('\n').filter((l) => l !== '').map((l) =>
    l.split(' ')[1].replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8))));
}

/** Where an image really lives: symlinks resolved when it exists, else the path normalised. */
export function realImagePath(file: string): string {
  try {
    return realpathSync(file);
  } catch {
    return path.normalize(file);
  }
}

/**
 * Interface name → the name of its bridge (master) or lower device (the
 * `dev` of a vxlan, vlan, macvlan …), from `ip -d -j link show`. A veth's
 * top-level "link" is its peer, not a lower device, so it is not used.
 */
export async function ipLinkParents(ipArgs: readonly string[] = []): Promise<Map<string, string | null>> {
  const r = await runCommand('ip', [...ipArgs, '-d', '-j', 'link', 'show'], { env: { PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin' } });
  if (r.exitCode !== 0) throw new Error(`ip ${ipArgs.join(' ')} -d -j link show: ${r.stderr.trim()}`);
  type Link = { ifname: string; master?: string; linkinfo?: { info_data?: { link?: string } } };
  return new Map((JSON.parse(r.stdout) as Link[]).map((l) => [l.ifname, l.master ?? l.linkinfo?.info_data?.link ?? null]));
}

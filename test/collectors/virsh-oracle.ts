// virsh as an independent oracle for LibvirtCollector tests: runs commands
// against a test-driver URI in a separate process and parses virsh's tables.

import { execFileSync } from 'child_process';
import { toolEnv } from '../harness/process';

/** Runs several virsh commands in one process; returns each command's output. */
export function virsh(uri: string, commands: string[]): string[] {
  const marker = '@@@@ next command @@@@';
  // toolEnv: in the C locale virsh would print non-ASCII names as \xNN escapes.
  const out = execFileSync('virsh', ['-q', '-c', uri, commands.join(` ; echo ${marker} ; `)], {
    encoding: 'utf8',
    env: toolEnv(),
  });
  return out.split(marker).map((s) => s.trim());
}

/** "Key:   value" lines. */
export function keyValues(text: string): Map<string, string> {
  const map = new Map<string, string>();
  for (const line of text.split('\n')) {
    const colon = line.indexOf(':');
    if (colon > 0) map.set(line.slice(0, colon).trim(), line.slice(colon + 1).trim());
  }
  return map;
}

/** Rows of a virsh table (header and rule removed by -q), split on runs of spaces. */
export function rows(text: string): string[][] {
  return text
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '')
    .map((l) => l.split(/\s+/));
}

/** "0-2,5" → [0, 1, 2, 5] (virsh prints affinity this way). */
export function expandCpuList(list: string): number[] {
  const cpus: number[] = [];
  for (const part of list.split(',')) {
    const [lo, hi] = part.split('-').map(Number);
    for (let c = lo; c <= (hi ?? lo); c++) cpus.push(c);
  }
  return cpus;
}

export const STATE_NAMES = ['no state', 'running', 'idle', 'paused', 'in shutdown', 'shut off', 'crashed', 'pmsuspended'];
export const dash = (v: string | undefined): string | null => (v === undefined || v === '-' ? null : v);
/** "179530.6s" → ns (virsh prints 0.1 s resolution). */
export const seconds = (v: string): number => Number(v.replace(/s$/, ''));

export interface VirshView {
  dominfo: Map<string, string>;
  domstate: string;
  vcpucount: string[][];
  vcpuinfo: Array<Map<string, string>>;
  vcpupin: string[][];
  blklist: string[][];
  blkinfo: string[][];
  blkstat: Map<string, Map<string, bigint>>;
  iflist: string[][];
  xml: string;
}

export function virshView(uri: string, names: string[], activeDisks: Map<string, string[]>): Map<string, VirshView> {
  const perDomain = [
    'dominfo',
    'domstate --reason',
    'vcpucount',
    'vcpuinfo',
    'vcpupin',
    'domblklist --details',
    'domblkinfo --all',
    'domiflist',
    'dumpxml',
  ];
  const commands: string[] = [];
  for (const name of names) {
    for (const c of perDomain) commands.push(`${c} ${name}`);
    for (const disk of activeDisks.get(name) ?? []) commands.push(`domblkstat ${name} ${disk}`);
  }
  const outputs = virsh(uri, commands);
  const views = new Map<string, VirshView>();
  let i = 0;
  for (const name of names) {
    const [dominfo, domstate, vcpucount, vcpuinfo, vcpupin, blklist, blkinfo, iflist, xml] = outputs.slice(i, i + perDomain.length);
    i += perDomain.length;
    const blkstat = new Map<string, Map<string, bigint>>();
    for (const disk of activeDisks.get(name) ?? []) {
      blkstat.set(disk, new Map(rows(outputs[i++]).map(([, key, value]) => [key, BigInt(value)])));
    }
    views.set(name, {
      dominfo: keyValues(dominfo),
      domstate,
      vcpucount: rows(vcpucount),
      vcpuinfo: vcpuinfo.split(/\n\s*\n/).map((block) => {
        const m = new Map<string, string>();
        for (const line of block.split('\n')) {
          const kv = /^(CPU Affinity|CPU time|VCPU|CPU|State):?\s+(.*)$/.exec(line.trim());
          if (kv) m.set(kv[1], kv[2]);
        }
        return m;
      }),
      vcpupin: rows(vcpupin),
      blklist: rows(blklist),
      blkinfo: rows(blkinfo),
      blkstat,
      iflist: rows(iflist),
      xml,
    });
  }
  return views;
}

/** The <disk> elements of a dumpxml, as text, in order. */
export function diskBlocks(xml: string): string[] {
  return xml.split('<disk ').slice(1).map((b) => b.slice(0, b.indexOf('</disk>')));
}
export const attrIn = (block: string, element: string, attr: string): string | null =>
  new RegExp(`<${element}\\b[^>]*\\s${attr}='([^']*)'`).exec(block)?.[1] ?? null;

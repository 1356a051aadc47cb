// What a libvirt URI costs a Node process before the agent does anything:
// node, koffi, libvirt and, for test:///file.xml, the test driver holding
// every domain of the fixture in this very process. The VM-MIB bench
// subtracts this from the agent's RSS to show the agent's own memory.
//
//   node dist/bench/libvirt-baseline.js test:///tmp/host-1000.xml
//   → one line: "rss <KiB> hwm <KiB>"
import { readFileSync } from 'fs';
import { LibvirtCollector } from '../src/collectors/libvirt';

function statusKiB(name: string): number {
  const m = new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(readFileSync('/proc/self/status', 'utf8'));
  return m ? Number(m[1]) : NaN;
}

async function main(): Promise<void> {
  const uri = process.argv[2];
  if (uri === undefined) {
    process.stderr.write('usage: node dist/bench/libvirt-baseline.js LIBVIRT-URI\n');
    process.exit(2);
  }
  const collector = new LibvirtCollector();
  await collector.open(uri, { readOnly: true });
  process.stdout.write(`rss ${statusKiB('VmRSS')} hwm ${statusKiB('VmHWM')}\n`);
  await collector.close();
}

main().catch((err: Error) => {
  process.stderr.write(`libvirt-baseline: ${err.message}\n`);
  process.exit(1);
});

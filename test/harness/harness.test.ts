// The harness itself against real Net-SNMP daemons: if these fail, every
// integration test built on them would fail for the wrong reason.
import * as fs from 'node:fs';
import { tcpPortAccepts, unixSocketAccepts } from './ports';
import { SNMPD_AS_NOBODY, SnmpdInstance, startSnmpd } from './snmpd';
import { describeUnless, missingTools } from './prereq';
import { runCommand, spawnManaged } from './process';
import { virsh } from '../collectors/virsh-oracle';
import { DEMO_URI } from './agent';
import { parseVarbindLines, runSnmpTool, snmpbulkwalk, snmpget, snmpwalk } from './snmp-tools';
import { TrapReceiver, startSnmptrapd } from './snmptrapd';

const SYS_DESCR = '.1.3.6.1.2.1.1.1.0';
const SYS_OR_TABLE = '1.3.6.1.2.1.1.9';
const COLD_START = '.1.3.6.1.6.3.1.1.5.1';
const SNMP_TRAP_OID = '.1.3.6.1.6.3.1.1.4.1.0';

const started: Array<SnmpdInstance | TrapReceiver> = [];
afterAll(async () => {
  for (const daemon of started.reverse()) {
    if ('dispose' in daemon) await daemon.dispose();
    else await daemon.stop();
  }
});

async function track<T extends SnmpdInstance | TrapReceiver>(daemon: Promise<T>): Promise<T> {
  const d = await daemon;
  started.push(d);
  return d;
}

const describeWithSnmpd = describeUnless(missingTools('snmpd', 'snmpget', 'snmpwalk', 'snmpbulkwalk'));
const describeWithTrapd = describeUnless(missingTools('snmptrapd', 'snmptrap', 'snmpd'));

for (const transport of ['unix', 'tcp'] as const) describeWithSnmpd(`startSnmpd with AgentX over ${transport}`, () => {
  let snmpd: SnmpdInstance;
  beforeAll(async () => {
    const t0 = process.hrtime.bigint();
    snmpd = await track(startSnmpd({ agentxTransport: transport }));
    const ms = Number(process.hrtime.bigint() - t0) / 1e6;
    process.stdout.write(`startSnmpd(${transport}) took ${ms.toFixed(0)} ms\n`);
  });

  it('runs snmpd as nobody (as root) or as us, with its agentx socket where agentxAddress says', async () => {
    const status = fs.readFileSync(`/proc/${snmpd.pid}/status`, 'utf8');
    const uid = SNMPD_AS_NOBODY ? 65534 : process.getuid?.();
    expect(status).toMatch(new RegExp(`^Uid:\\s+${uid}\\s+${uid}\\s`, 'm'));
    expect(fs.readlinkSync(`/proc/${snmpd.pid}/exe`)).toBe('/usr/sbin/snmpd');
    if (transport === 'unix') {
      expect(snmpd.agentxAddress).toBe(`unix:${snmpd.labDir}/agentx.sock`);
      expect(await unixSocketAccepts(`${snmpd.labDir}/agentx.sock`)).toBe(true);
    } else {
      const match = /^tcp:127\.0\.0\.1:(\d+)$/.exec(snmpd.agentxAddress);
      expect(match).not.toBeNull();
      expect(await tcpPortAccepts(Number(match?.[1]))).toBe(true);
    }
  });

  it('answers snmpget sysDescr.0 and walks sysORTable', async () => {
    const get = await snmpget(snmpd, [SYS_DESCR]);
    expect(get.varbinds).toHaveLength(1);
    expect(get.varbinds[0]).toMatchObject({ oid: SYS_DESCR, type: 'STRING' });
    expect(get.varbinds[0].value).toMatch(/^Linux /);

    const walk = await snmpwalk(snmpd, SYS_OR_TABLE);
    expect(walk.varbinds.length).toBeGreaterThanOrEqual(10);
    for (const vb of walk.varbinds) expect(vb.oid.startsWith(`.${SYS_OR_TABLE}.1.`)).toBe(true);
    const bulk = await snmpbulkwalk(snmpd, SYS_OR_TABLE);
    expect(bulk.varbinds).toEqual(walk.varbinds);
  });

  it('serves ifTable and hrStorageTable natively', async () => {
    const ifDescr = await snmpwalk(snmpd, '1.3.6.1.2.1.2.2.1.2');
    expect(ifDescr.varbinds.map((v) => v.value)).toContain('lo');
    const hrStorageDescr = await snmpbulkwalk(snmpd, '1.3.6.1.2.1.25.2.3.1.3');
    expect(hrStorageDescr.varbinds.map((v) => v.value)).toContain('Physical memory');
    // hrProcessorLoad (column 2) only appears after snmpd has 60 s of CPU history; column 1 is there at once.
    const hrProcessor = await snmpwalk(snmpd, '1.3.6.1.2.1.25.3.3');
    expect(hrProcessor.varbinds.length).toBeGreaterThanOrEqual(1);
    expect(hrProcessor.varbinds[0]).toMatchObject({ type: 'OID', value: '.0.0' });
  });

  it('restart() brings snmpd back on the same port and socket', async () => {
    const oldPid = snmpd.pid;
    await snmpd.restart();
    expect(snmpd.pid).not.toBe(oldPid);
    expect(fs.existsSync(`/proc/${oldPid}`)).toBe(false);
    const get = await snmpget(snmpd, [SYS_DESCR]);
    expect(get.varbinds[0].type).toBe('STRING');
    expect(snmpd.log()).toMatch(/Received TERM or STOP signal/);
    expect(snmpd.log().match(/Turning on AgentX master support/g)).toHaveLength(2);
  });

  it('stop() leaves no process behind', async () => {
    const pid = snmpd.pid;
    await snmpd.stop();
    expect(fs.existsSync(`/proc/${pid}`)).toBe(false);
    const get = await snmpget(snmpd, [SYS_DESCR], ['-t', '0.3', '-r', '0'], { allowFailure: true });
    expect(get.exitCode).not.toBe(0);
    expect(get.stderr).toMatch(/Timeout/);
  });
});

describeWithSnmpd('client tools', () => {
  let snmpd: SnmpdInstance;
  beforeAll(async () => {
    snmpd = await track(startSnmpd());
  });

  it('parses exceptions and resolves names when MIBs are given', async () => {
    const missing = await snmpget(snmpd, ['1.3.6.1.2.1.1.1.99', '1.3.6.1.3.12345.1.0']);
    expect(missing.varbinds.map((v) => v.type)).toEqual(['noSuchInstance', 'noSuchObject']);
    const named = await snmpget(snmpd, ['SNMPv2-MIB::sysLocation.0'], [], {
      mibDirs: [`${__dirname}/../../node_modules/net-snmp/lib/mibs`],
      mibs: ['SNMPv2-MIB'],
      numericOids: false,
    });
    expect(named.varbinds).toEqual([{ oid: 'SNMPv2-MIB::sysLocation.0', type: 'STRING', value: 'vmm-agentx test lab' }]);
  });

  it('rejects with the tool output when a tool fails', async () => {
    await expect(runSnmpTool('snmpget', snmpd, ['not-an-oid'])).rejects.toThrow(/snmpget .* exited with 1/);
  });

  it('splits multi-line values and unescapes quotes', () => {
    const parsed = parseVarbindLines('.1.2.3 = STRING: "two\nlines \\"q\\""\n.1.2.4 = Counter64: 5\n.1.2.5 = ""\n');
    expect(parsed).toEqual([
      { oid: '.1.2.3', type: 'STRING', value: 'two\nlines "q"' },
      { oid: '.1.2.4', type: 'Counter64', value: '5' },
      { oid: '.1.2.5', type: 'STRING', value: '' },
    ]);
  });
});

describeWithSnmpd('start-up failures', () => {
  it('rejects with the snmpd log tail when snmpd cannot start', async () => {
    // Neither nobody nor a plain user can bind a privileged port, so snmpd exits at once.
    await expect(startSnmpd({ extraConfig: ['agentAddress udp:127.0.0.1:1'] })).rejects.toThrow(
      /exited during start-up[\s\S]*udp:127\.0\.0\.1:1/,
    );
  });
});

describeWithTrapd('startSnmptrapd', () => {
  let traps: TrapReceiver;
  beforeAll(async () => {
    traps = await track(startSnmptrapd());
  });

  it('records a v2c trap sent with snmptrap', async () => {
    const lab = fs.mkdtempSync('/tmp/vmm-snmptrap-client-');
    try {
      const client = { labDir: lab, udpPort: traps.port };
      await runSnmpTool('snmptrap', client, ['', COLD_START, '1.3.6.1.2.1.1.5.0', 's', 'hello trap'], [], {
        numericOids: false,
      });
      const text = await traps.waitFor((t) => t.includes(COLD_START), 5000);
      const varbinds = parseVarbindLines(text);
      expect(varbinds).toContainEqual({ oid: SNMP_TRAP_OID, type: 'OID', value: COLD_START });
      expect(varbinds).toContainEqual({ oid: '.1.3.6.1.2.1.1.5.0', type: 'STRING', value: 'hello trap' });
      expect(traps.traps()).toHaveLength(1);
    } finally {
      fs.rmSync(lab, { recursive: true, force: true });
    }
  });

  it('waitFor rejects on timeout naming what arrived', async () => {
    await expect(traps.waitFor((t) => t.includes('.1.3.6.1.4.1.99999'), 200)).rejects.toThrow(/1 trap\(s\) received/);
  });

  it('receives the coldStart snmpd sends to its trapSink', async () => {
    const snmpd = await track(startSnmpd({ trapSink: { port: traps.port } }));
    expect(snmpd.pid).toBeGreaterThan(0);
    const text = await traps.waitFor((t) => t.includes(COLD_START) && !t.includes('hello trap'), 10_000);
    expect(parseVarbindLines(text)).toContainEqual({ oid: SNMP_TRAP_OID, type: 'OID', value: COLD_START });
  });
});

describe('the locale of the tools the tests read', () => {
  it('is C.UTF-8 whatever LANG, LC_ALL and LANGUAGE say', async () => {
    const r = await runCommand('sh', ['-c', 'echo "$LANG $LC_ALL ${LANGUAGE-unset}"'], {
      env: { PATH: process.env.PATH, LANG: 'de_DE.ISO-8859-1', LC_ALL: 'C', LANGUAGE: 'de' },
    });
    expect(r.stdout.trim()).toBe('C.UTF-8 C.UTF-8 unset');
  });

  describeUnless(missingTools('virsh'))('virsh', () => {
    const saved = { LANG: process.env.LANG, LC_ALL: process.env.LC_ALL };
    afterEach(() => {
      for (const [k, v] of Object.entries(saved)) {
        if (v === undefined) delete process.env[k];
        else process.env[k] = v;
      }
    });

    it('prints UTF-8 names in its tables under LC_ALL=C (in C, as \\xff escapes)', () => {
      process.env.LC_ALL = 'C';
      delete process.env.LANG;
      const [list, disks] = virsh(DEMO_URI, ['list --all', 'domblklist fileserver-größe']);
      expect(list).toMatch(/^ *6 +fileserver-größe +running$/m);
      expect(disks).toMatch(/^ *sda +\/var\/lib\/libvirt\/images\/fileserver-größe\.qcow2$/m);
    });
  });
});

describe('spawnManaged', () => {
  it('survives a log file that cannot be opened (its lab dir removed first): the output is still captured', async () => {
    const child = await spawnManaged('echo', ['still here'], {
      env: process.env,
      logFile: '/nonexistent/vmm-agentx/lab-removed/daemon.log',
    });
    expect(await child.exited).toEqual({ code: 0, signal: null });
    // The failed open is reported on the next turns of the event loop; an
    // unhandled 'error' there would fail this file.
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(child.output()).toBe('still here\n');
  });
});

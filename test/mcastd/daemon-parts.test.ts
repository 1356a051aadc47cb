// vmm-mcastd's own pieces that need no network: configuration, the state
// file (read back by vmm-agentx's parser, which is what serves it), group
// text, tap MACs, and the control socket's protocol and peer check.
import { execFile } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { parseMcastAgentState } from '../../src/collectors/mcast-agent-state';
import { ConfigError, parseMcastdArgs, resolvePeer, DEFAULT_PORT } from '../../src/mcastd/config';
import { ControlClient, ControlServer } from '../../src/mcastd/control';
import { canonicalGroup, isLinkLocalGroup } from '../../src/mcastd/groups';
import { tapMacOf } from '../../src/mcastd/bridge-ports';
import { describeUnless, needsRoot } from '../harness/prereq';
import { emptyState, parseLeftBehind, serializeState, StateFile } from '../../src/mcastd/state-file';

let dir: string;
beforeEach(() => { dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mcastd-parts-')); });
afterEach(() => { fs.rmSync(dir, { recursive: true, force: true }); });

function conf(text: string): string {
  const f = path.join(dir, 'vmm-mcastd.conf');
  fs.writeFileSync(f, text);
  return f;
}
const noDefaultFile = (): boolean => false;

describe('vmm-mcastd configuration', () => {
  test('a file with peers, a relay server and timeouts; flags override it', () => {
    const f = conf([
      'name hv-a', 'key-file /etc/k', 'listen ::1, 127.0.0.1', 'port 7000',
      'peer hv-b 2001:db8::2 qemu+ssh://hv-b/system', 'peer hv-c 192.0.2.3 7001',
      'relay-server [2001:db8::9]:7002', 'stream-timeout 0.5', 'default-bridge br0',
    ].join('\n'));
    const { config, command } = parseMcastdArgs(['--config', f, '--port', '7003', 'migrate', 'web', 'hv-b', '--prepare-only'], noDefaultFile);
    expect(config).toMatchObject({
      name: 'hv-a', keyFile: '/etc/k', listen: ['::1', '127.0.0.1'], port: 7003, streamTimeoutSeconds: 0.5, defaultBridge: 'br0',
      relayServer: { address: '2001:db8::9', port: 7002 },
    });
    expect(config.peers).toEqual([
      { name: 'hv-b', address: '2001:db8::2', port: DEFAULT_PORT, libvirtUri: 'qemu+ssh://hv-b/system' },
      { name: 'hv-c', address: '192.0.2.3', port: 7001, libvirtUri: null },
    ]);
    expect(command).toEqual({ kind: 'migrate', vm: 'web', dest: 'hv-b', prepareOnly: true });
    expect(resolvePeer(config, 'hv-c').port).toBe(7001);
    expect(resolvePeer(config, '[fe80::1%br0]:7005')).toMatchObject({ address: 'fe80::1%br0', port: 7005 });
    expect(() => resolvePeer(config, 'nowhere')).toThrow(/neither a configured peer \(hv-b, hv-c\) nor an address/);
  });

  test.each([
    ['port 0', /not a decimal number from 1 to 65535/],
    ['peer hv-b', /expected "peer NAME ADDRESS/],
    ['peer hv-b not-an-address', /is not an IP address/],
    ['relay-server 10.0.0.1:99999', /not a port number/],
    ['listen eth0', /"eth0" is not an IP address/],
    ['name a\nname b', /already set on line 1/],
    ['frobnicate yes', /unknown setting "frobnicate"/],
  ])('refuses "%s" naming the line', (text, why) => {
    expect(() => parseMcastdArgs(['--config', conf(text)], noDefaultFile)).toThrow(why);
  });

  test('a relay server needs its interface; commands take their arguments', () => {
    expect(() => parseMcastdArgs(['relay'], noDefaultFile)).toThrow(/relay-interface/);
    expect(parseMcastdArgs(['relay', '--relay-interface', 'eth0'], noDefaultFile).command).toEqual({ kind: 'run', relay: true });
    expect(() => parseMcastdArgs(['migrate', 'web'], noDefaultFile)).toThrow(ConfigError);
    expect(() => parseMcastdArgs(['dance'], noDefaultFile)).toThrow(/unknown command "dance"/);
  });
});

describe('groups and taps', () => {
  test('IPv6 groups compare in one text form', () => {
    expect(canonicalGroup('FF0E:0:0:0:0:0:0:1234')).toBe('ff0e::1234');
    expect(canonicalGroup('239.1.2.3')).toBe('239.1.2.3');
    expect(() => canonicalGroup('br0')).toThrow(/not a multicast address/);
  });
  test('link-local groups are not carried over', () => {
    expect(isLinkLocalGroup('ff02::1:ff00:1')).toBe(true);
    expect(isLinkLocalGroup('224.0.0.251')).toBe(true);
    expect(isLinkLocalGroup('ff0e::1234')).toBe(false);
    expect(isLinkLocalGroup('239.1.1.1')).toBe(false);
  });
  test("libvirt's tap MAC is the guest's with 0xfe first", () => {
    expect(tapMacOf('52:54:00:AB:CD:EF')).toBe('fe:54:00:ab:cd:ef');
  });
});

describe('state file', () => {
  const uuid = '2f8e4a5e-7c3b-4b8e-9d6a-3e1f0a9b8c7d';
  function busyState(): ReturnType<typeof emptyState> {
    const s = emptyState();
    s.proxyJoins.push({ group: 'ff0e::1234', bridge: 'br0', vm: uuid, since: Date.UTC(2026, 11, 7), reason: 'awaiting-report', migration: 'm1' });
    s.relays.push({ group: '239.1.1.1', server: '192.0.2.10', port: 7666, state: 'active', bridge: 'br0', migration: 'm1' });
    s.portEntries.push({ bridge: 'br0', port: 'vnet3', group: 'ff0e::1234', vm: uuid });
    return s;
  }

  test('vmm-agentx reads what vmm-mcastd writes', () => {
    const parsed = parseMcastAgentState(serializeState(busyState(), 4711));
    expect(parsed.pid).toBe(4711);
    expect(parsed.proxyJoins).toEqual([{ group: 'ff0e::1234', bridge: 'br0', vm: uuid, since: Date.UTC(2026, 11, 7), reason: 'awaiting-report' }]);
    expect(parsed.relays).toEqual([{ group: '239.1.1.1', server: '192.0.2.10', port: 7666, state: 'active' }]);
  });

  test('a restarted daemon reads what its predecessor left', () => {
    const left = parseLeftBehind(serializeState(busyState(), 99));
    expect(left.portEntries).toEqual([{ bridge: 'br0', port: 'vnet3', group: 'ff0e::1234', vm: uuid }]);
    expect(left.relays).toEqual([{ group: '239.1.1.1', server: '192.0.2.10', port: 7666 }]);
  });

  test('changes are written atomically, coalesced, and a broken file is reported and replaced', async () => {
    const file = path.join(dir, 'run', 'state.json');
    const lines: string[] = [];
    const state = emptyState();
    const sf = new StateFile(file, () => state, (_l, m) => lines.push(m));
    expect(await sf.readLeftBehind()).toBeNull();
    fs.writeFileSync(file, '{"version": 1, "portEntr');
    expect(await sf.readLeftBehind()).toBeNull();
    expect(lines).toEqual([expect.stringMatching(/state\.json is not a state file .* it is replaced/)]);
    state.proxyJoins.push(busyState().proxyJoins[0]);
    sf.changed();
    sf.changed();
    await sf.settled();
    expect(parseMcastAgentState(fs.readFileSync(file, 'utf8')).proxyJoins).toHaveLength(1);
    expect(fs.statSync(file).mode & 0o777).toBe(0o644);
    expect(fs.readdirSync(path.dirname(file))).toEqual(['state.json']);
    await sf.remove();
    expect(fs.existsSync(file)).toBe(false);
  });
});

describe('control socket', () => {
  test('one request, progress lines, one result; errors come back as errors', async () => {
    const socket = path.join(dir, 'ctl', 'control.sock');
    const server = new ControlServer(socket, async (r, progress) => {
      if (r.cmd === 'status') {
        progress('looking');
        return { fine: true };
      }
      throw new Error(`no ${r.cmd} today`);
    }, () => undefined);
    await server.start();
    try {
      expect(fs.statSync(socket).mode & 0o777).toBe(0o600);
      const progress: string[] = [];
      await expect(ControlClient.request(socket, { cmd: 'status' }, (l) => progress.push(l))).resolves.toEqual({ fine: true });
      expect(progress).toEqual(['looking']);
      await expect(ControlClient.request(socket, { cmd: 'release', vm: 'a', dest: 'b' })).rejects.toThrow('no release today');
      // A second daemon on the same socket is refused rather than stealing it.
      await expect(new ControlServer(socket, async () => null, () => undefined).start()).rejects.toThrow(/another vmm-mcastd is running/);
    } finally {
      await server.close();
    }
    await expect(ControlClient.request(socket, { cmd: 'status' })).rejects.toThrow(/cannot reach vmm-mcastd .* is it running/);
  });
});

describeUnless(needsRoot('setpriv to another uid'))('control socket, another user', () => {
  test('a peer that is neither root nor the daemon\'s user is refused, with one log line', async () => {
    const socket = path.join(dir, 'control.sock');
    const logged: string[] = [];
    const server = new ControlServer(socket, async () => 'secret', (_l, m) => logged.push(m));
    await server.start();
    try {
      // Open the socket to the other user, as a careless chmod would: SO_PEERCRED still refuses it.
      fs.chmodSync(dir, 0o755);
      fs.chmodSync(socket, 0o666);
      const script = `const c=require('net').createConnection(${JSON.stringify(socket)});c.on('connect',()=>c.write('{"cmd":"status"}\\n'));` +
        `let d='';c.on('data',(x)=>d+=x);c.on('close',()=>{process.stdout.write(d||'closed');});c.on('error',(e)=>process.stdout.write(e.message));`;
      // Asynchronously: the server answers from this very process.
      const stdout = await new Promise<string>((resolve, reject) => {
        execFile('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', process.execPath, '-e', script],
          { encoding: 'utf8', timeout: 10_000 }, (err, out) => (err ? reject(err) : resolve(out)));
      });
      // Closed without an answer (the client may first see EPIPE on its write).
      expect(stdout).toMatch(/closed$/);
      expect(stdout).not.toContain('secret');
      expect(logged).toEqual([expect.stringMatching(/refused a connection from uid 65534/)]);
    } finally {
      await server.close();
    }
  });
});

// vmm-mcastd's configuration: defaults, then the file, then flags — the same
// "name value" file shape as vmm-agentx's.
import * as net from 'net';
import * as os from 'os';
import {
  applySettingsFile, booleanSetting, ConfigError, numberSetting, SettingSetter, stringSetting,
} from '../config-file';

export { ConfigError };

export const DEFAULT_PORT = 7666;

export interface Endpoint {
  address: string;
  port: number;
}

export interface Peer extends Endpoint {
  name: string;
  /** The destination's libvirt URI for a migration to it; null: qemu+ssh://NAME/system. */
  libvirtUri: string | null;
}

export interface McastdConfig {
  /** This agent's name, as its peers know it. */
  name: string;
  keyFile: string;
  /** Addresses the signalling sockets bind to. */
  listen: string[];
  port: number;
  /** The bridge a migrated VM's NIC lands on when its source bridge has no namesake here; null: same name only. */
  defaultBridge: string | null;
  /** The relay server to ask when a group does not arrive; null: no relay. */
  relayServer: Endpoint | null;
  /** Serve as a relay server for other agents. */
  relay: boolean;
  /** Where a relay server joins the groups it is asked for. */
  relayInterface: string | null;
  /** Seconds a destination waits for a proxy-joined group before it asks the relay. */
  streamTimeoutSeconds: number;
  /** Seconds a destination holds joins for a VM that has not arrived. */
  arrivalTimeoutSeconds: number;
  /** Seconds a destination holds joins after the VM arrived, waiting for its own report. */
  reportTimeoutSeconds: number;
  /** Seconds a relay keeps forwarding without a renewal from its subscriber. */
  relayLeaseSeconds: number;
  stateFile: string;
  controlSocket: string;
  libvirtUri: string | null;
  libvirtReadWrite: boolean;
  peers: Peer[];
  logLevel: 'error' | 'warn' | 'info' | 'debug';
  check: boolean;
}

export const DEFAULTS: McastdConfig = {
  name: os.hostname(),
  keyFile: '/etc/vmm-mcastd/key',
  listen: ['::', '0.0.0.0'],
  port: DEFAULT_PORT,
  defaultBridge: null,
  relayServer: null,
  relay: false,
  relayInterface: null,
  // The paper's point: "cannot receive" is only known by a timeout. A stream
  // of a few packets a second shows within it; longer only delays T_PRE.
  streamTimeoutSeconds: 1,
  arrivalTimeoutSeconds: 600,
  // Past a few query intervals (125 s by default) a VM that has not reported does not want the group.
  reportTimeoutSeconds: 300,
  relayLeaseSeconds: 30,
  stateFile: '/run/vmm-mcastd/state.json',
  controlSocket: '/run/vmm-mcastd/control.sock',
  libvirtUri: null,
  libvirtReadWrite: false,
  peers: [],
  logLevel: 'info',
  check: false,
};

/** "ADDRESS", "ADDRESS PORT", "[v6]:PORT" or "v4:PORT". */
export function parseEndpoint(text: string, where: string): Endpoint {
  const t = text.trim();
  let address = t;
  let port = DEFAULT_PORT;
  const bracket = /^\[([^\]]+)\](?::(\d+))?$/.exec(t);
  const spaced = /^(\S+)\s+(\d+)$/.exec(t);
  const v4port = /^([0-9.]+):(\d+)$/.exec(t);
  if (bracket) {
    address = bracket[1];
    if (bracket[2] !== undefined) port = Number(bracket[2]);
  } else if (spaced) {
    address = spaced[1];
    port = Number(spaced[2]);
  } else if (v4port) {
    address = v4port[1];
    port = Number(v4port[2]);
  }
  if (net.isIP(address.replace(/%.*$/, '')) === 0) throw new ConfigError(`${where}: "${address}" is not an IP address`);
  if (!(Number.isInteger(port) && port > 0 && port < 65536)) throw new ConfigError(`${where}: "${port}" is not a port number`);
  return { address, port };
}

type Setter = SettingSetter<McastdConfig>;

const SETTINGS: Record<string, Setter> = {
  'name': stringSetting('name'),
  'key-file': stringSetting('keyFile'),
  'listen': (c, v, where) => {
    const list = v.split(/[\s,]+/).filter((a) => a !== '');
    for (const a of list) if (net.isIP(a.replace(/%.*$/, '')) === 0) throw new ConfigError(`${where}: "${a}" is not an IP address`);
    if (list.length === 0) throw new ConfigError(`${where}: needs at least one address`);
    c.listen = list;
  },
  'port': numberSetting('port', 1, 65535),
  'default-bridge': stringSetting('defaultBridge'),
  'relay-server': (c, v, where) => { c.relayServer = parseEndpoint(v, where); },
  'relay': booleanSetting('relay'),
  'relay-interface': stringSetting('relayInterface'),
  'stream-timeout': numberSetting('streamTimeoutSeconds', 0.05, 600),
  'arrival-timeout': numberSetting('arrivalTimeoutSeconds', 1, 86400),
  'report-timeout': numberSetting('reportTimeoutSeconds', 1, 86400),
  'relay-lease': numberSetting('relayLeaseSeconds', 2, 3600),
  'state-file': stringSetting('stateFile'),
  'control-socket': stringSetting('controlSocket'),
  'libvirt-uri': stringSetting('libvirtUri'),
  'libvirt-readwrite': booleanSetting('libvirtReadWrite'),
  // peer NAME ADDRESS [PORT] [LIBVIRT-URI]
  'peer': (c, v, where) => {
    const words = v.split(/\s+/).filter((w) => w !== '');
    if (words.length < 2) throw new ConfigError(`${where}: expected "peer NAME ADDRESS [PORT] [LIBVIRT-URI]"`);
    const [name, address, ...rest] = words;
    let port = DEFAULT_PORT;
    if (rest.length > 0 && /^\d+$/.test(rest[0])) port = Number(rest.shift());
    const endpoint = parseEndpoint(`${address} ${port}`, where);
    if (c.peers.some((p) => p.name === name)) throw new ConfigError(`${where}: peer "${name}" is already defined`);
    c.peers = [...c.peers, { name, ...endpoint, libvirtUri: rest[0] ?? null }];
  },
  'log-level': (c, v, where) => {
    if (!['error', 'warn', 'info', 'debug'].includes(v)) throw new ConfigError(`${where}: log level "${v}" is not error, warn, info or debug`);
    c.logLevel = v as McastdConfig['logLevel'];
  },
};

export const USAGE = `usage: vmm-mcastd [--config FILE] [--check] [run | relay]
       vmm-mcastd [--config FILE] migrate VM DEST [--prepare-only]
       vmm-mcastd [--config FILE] release VM DEST
       vmm-mcastd [--config FILE] status

  run                  the mobility agent (the default): serves migrations to and from this host
  relay                the same, and serves as a relay server for agents on networks without multicast
  migrate VM DEST      proxy-join VM's groups at DEST's agent (relay if they do not arrive there), then
                       live-migrate VM to DEST through libvirt; --prepare-only stops before the migration
                       (for a migration another tool runs)
  release VM DEST      DEST's agent drops what it holds for VM (a migration that will not happen)
  status               what the running agent holds, as JSON
  --config FILE        settings ("name value" lines; default /etc/vmm-mcastd.conf when it exists)
  --check              check the configuration, key, bridges, libvirt and peers; print a summary and exit
Settings: name, key-file, listen, port, default-bridge, relay-server, relay, relay-interface, stream-timeout,
arrival-timeout, report-timeout, relay-lease, state-file, control-socket, libvirt-uri, libvirt-readwrite,
peer (repeatable: NAME ADDRESS [PORT] [LIBVIRT-URI]), log-level. Each may also be given as --NAME VALUE.`;

export type Command =
  | { kind: 'run'; relay: boolean }
  | { kind: 'migrate'; vm: string; dest: string; prepareOnly: boolean }
  | { kind: 'release'; vm: string; dest: string }
  | { kind: 'status' };

export interface ParsedMcastdArgs {
  config: McastdConfig;
  command: Command;
  help: boolean;
}

export const DEFAULT_CONFIG_FILE = '/etc/vmm-mcastd.conf';

export function parseMcastdArgs(argv: readonly string[], fileExists: (f: string) => boolean): ParsedMcastdArgs {
  const flags: [string, string][] = [];
  const words: string[] = [];
  let configFile: string | null = null;
  let help = false;
  let check = false;
  let prepareOnly = false;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '--help' || arg === '-h') { help = true; continue; }
    if (arg === '--check') { check = true; continue; }
    if (arg === '--prepare-only') { prepareOnly = true; continue; }
    if (!arg.startsWith('--')) { words.push(arg); continue; }
    const eq = arg.indexOf('=');
    const name = arg.slice(2, eq >= 0 ? eq : undefined);
    if (name !== 'config' && !(name in SETTINGS)) throw new ConfigError(`unknown option --${name}; see --help`);
    const value = eq >= 0 ? arg.slice(eq + 1) : argv[++i];
    if (value === undefined) throw new ConfigError(`option --${name} needs a value`);
    if (name === 'config') configFile = value;
    else flags.push([name, value]);
  }
  const config: McastdConfig = { ...DEFAULTS, peers: [] };
  if (configFile === null && fileExists(DEFAULT_CONFIG_FILE)) configFile = DEFAULT_CONFIG_FILE;
  if (configFile !== null) applySettingsFile(config, configFile, SETTINGS, ['peer']);
  for (const [name, value] of flags) SETTINGS[name](config, value, `--${name}`);
  config.check = check;
  const [verb = 'run', ...args] = words;
  const need = (n: number, usage: string): void => {
    if (args.length !== n) throw new ConfigError(`usage: vmm-mcastd ${usage}`);
  };
  let command: Command;
  switch (verb) {
    case 'run': need(0, 'run'); command = { kind: 'run', relay: config.relay }; break;
    case 'relay': need(0, 'relay'); command = { kind: 'run', relay: true }; config.relay = true; break;
    case 'migrate': need(2, 'migrate VM DEST [--prepare-only]'); command = { kind: 'migrate', vm: args[0], dest: args[1], prepareOnly }; break;
    case 'release': need(2, 'release VM DEST'); command = { kind: 'release', vm: args[0], dest: args[1] }; break;
    case 'status': need(0, 'status'); command = { kind: 'status' }; break;
    default: throw new ConfigError(`unknown command "${verb}"; see --help`);
  }
  if (config.relay && config.relayInterface === null && command.kind === 'run') {
    throw new ConfigError('a relay server needs relay-interface: the interface on which it joins the groups it relays');
  }
  return { config, command, help };
}

/** DEST as a configured peer's name, or an address ("ADDRESS", "[v6]:PORT", "v4:PORT"). */
export function resolvePeer(config: McastdConfig, dest: string): Peer {
  const named = config.peers.find((p) => p.name === dest);
  if (named !== undefined) return named;
  try {
    const e = parseEndpoint(dest, 'DEST');
    return { name: e.address, ...e, libvirtUri: null };
  } catch {
    throw new ConfigError(`"${dest}" is neither a configured peer (${config.peers.map((p) => p.name).join(', ') || 'none'}) nor an address`);
  }
}

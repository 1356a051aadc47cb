// Configuration: defaults, then the config file, then command-line flags.
// The file uses the flags' names, one "name value" or "name = value" per line,
// '#' comments — the shape of snmpd.conf, which the same operators edit.
import { applySettingsFile, booleanSetting, ConfigError, numberSetting, SettingSetter, stringSetting } from './config-file';

export { ConfigError };

export interface Config {
  libvirtUri: string | null;
  libvirtReadWrite: boolean;
  agentxSocket: string;
  stateDir: string;
  refreshSeconds: number;
  /** Seconds libvirt may be unreachable before every vmOperState reads unknown(1). */
  libvirtGraceSeconds: number;
  /** Seconds one domain's libvirt calls may take before its previous values are kept. */
  domainTimeoutSeconds: number;
  /**
   * Seconds between full re-reads of every domain's configuration (XML,
   * pinning, autostart, ...), which refreshes otherwise read only when an
   * event says it changed; 0 for never.
   */
  libvirtResyncSeconds: number;
  /**
   * Seconds between two looks at a running domain's job when no event or
   * state change suggests one started; 0 for every refresh.
   */
  libvirtJobPollSeconds: number;
  logLevel: 'error' | 'warn' | 'info' | 'debug';
  perVmNotifications: boolean;
  bulkNotifications: boolean;
  /**
   * Per-VM notifications a second above which, for the rest of that second,
   * only bulk ones are sent; 0 for no limit.
   */
  notificationRateLimit: number;
  procRoot: string;
  sysRoot: string;
  mountsFile: string;
  /** The multicast mobility agent's state file (vmm-mcastd). */
  mcastAgentState: string;
  dump: boolean;
  check: boolean;
}

export const DEFAULTS: Config = {
  libvirtUri: null,
  libvirtReadWrite: false,
  agentxSocket: 'unix:/var/agentx/master',
  stateDir: '/var/lib/vmm-agentx',
  refreshSeconds: 5,
  libvirtGraceSeconds: 30,
  domainTimeoutSeconds: 2,
  // A safety net, not the way changes arrive: libvirt's events bring them at
  // once. A few minutes bounds what an event libvirt never sends (autostart
  // has none) leaves stale, at the cost of one full read per interval.
  libvirtResyncSeconds: 300,
  // A migration announces itself by its first iteration event; this catches
  // the jobs that send none (a migration failing before it moves memory).
  libvirtJobPollSeconds: 30,
  logLevel: 'info',
  perVmNotifications: true,
  bulkNotifications: false,
  // An operator's own actions and a live migration's start and end stay far
  // below; a host booting its autostart VMs or an evacuation goes above, and
  // one bulk notification per change then says it all.
  notificationRateLimit: 20,
  procRoot: '/proc',
  sysRoot: '/sys',
  // snmpd reads /etc/mtab (Debian builds it --with-mnttab=/etc/mtab); reading the same
  // table keeps vmStorageParent equal to snmpd's hrStorageIndex.
  mountsFile: '/etc/mtab',
  mcastAgentState: '/run/vmm-mcastd/state.json',
  dump: false,
  check: false,
};

type Setter = SettingSetter<Config>;
const str = (key: keyof Config): Setter => stringSetting<Config>(key);
const num = (key: keyof Config, min: number, max: number): Setter => numberSetting<Config>(key, min, max);
const bool = (key: keyof Config): Setter => booleanSetting<Config>(key);

/** Options that take a value, by flag/config-file name. */
const SETTINGS: Record<string, Setter> = {
  'libvirt-uri': str('libvirtUri'),
  'libvirt-readwrite': bool('libvirtReadWrite'),
  'agentx-socket': str('agentxSocket'),
  'state-dir': str('stateDir'),
  'refresh': num('refreshSeconds', 0.2, 3600),
  'libvirt-grace': num('libvirtGraceSeconds', 0, 86400),
  'domain-timeout': num('domainTimeoutSeconds', 0.1, 600),
  'libvirt-resync': num('libvirtResyncSeconds', 0, 86400),
  'libvirt-job-poll': num('libvirtJobPollSeconds', 0, 86400),
  'log-level': (c, v, where) => {
    if (!['error', 'warn', 'info', 'debug'].includes(v)) throw new ConfigError(`${where}: log level "${v}" is not error, warn, info or debug`);
    c.logLevel = v as Config['logLevel'];
  },
  'notifications-per-vm': bool('perVmNotifications'),
  'notifications-bulk': bool('bulkNotifications'),
  'notifications-rate-limit': num('notificationRateLimit', 0, 100000),
  'proc-root': str('procRoot'),
  'sys-root': str('sysRoot'),
  'mounts-file': str('mountsFile'),
  'mcast-agent-state': str('mcastAgentState'),
};

const SWITCHES: Record<string, (c: Config) => void> = {
  dump: (c) => { c.dump = true; },
  check: (c) => { c.check = true; },
};

export const USAGE = `usage: vmm-agentx [--config FILE] [--libvirt-uri URI] [--agentx-socket unix:/path|tcp:host:port]
                  [--state-dir DIR] [--refresh SECONDS] [--log-level error|warn|info|debug]
                  [--dump] [--check] [--help] [--version]

  --config FILE        read settings from FILE ("name value" lines, the flag names without --)
  --libvirt-uri URI    libvirt connection (default: LIBVIRT_DEFAULT_URI, else libvirt's default)
  --agentx-socket ADDR master agent's AgentX socket (default unix:/var/agentx/master)
  --state-dir DIR      where stable VM indexes are kept (default /var/lib/vmm-agentx)
  --refresh SECONDS    how often libvirt and the host are polled (default 5)
  --log-level LEVEL    error, warn, info (default) or debug
  --dump               print every instance as "OID = TYPE: value" from one snapshot and exit
  --check              check the configuration and libvirt, print a summary and exit
Config-file-only settings: libvirt-readwrite, libvirt-grace, domain-timeout, libvirt-resync, libvirt-job-poll,
notifications-per-vm, notifications-bulk, notifications-rate-limit, proc-root, sys-root, mounts-file, mcast-agent-state.`;

export interface ParsedArgs {
  config: Config;
  help: boolean;
  version: boolean;
}

export function parseArgs(argv: readonly string[], env: NodeJS.ProcessEnv = process.env): ParsedArgs {
  const flags: [string, string | null][] = [];
  let configFile: string | null = null;
  let help = false;
  let version = false;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '--help' || arg === '-h') { help = true; continue; }
    if (arg === '--version') { version = true; continue; }
    if (!arg.startsWith('--')) throw new ConfigError(`unexpected argument "${arg}"; see --help`);
    const eq = arg.indexOf('=');
    const name = arg.slice(2, eq >= 0 ? eq : undefined);
    if (name in SWITCHES) { flags.push([name, null]); continue; }
    if (name !== 'config' && !(name in SETTINGS)) throw new ConfigError(`unknown option --${name}; see --help`);
    let value: string | undefined = eq >= 0 ? arg.slice(eq + 1) : argv[++i];
    if (value === undefined || (eq < 0 && value.startsWith('--'))) throw new ConfigError(`option --${name} needs a value`);
    if (name === 'config') configFile = value;
    else flags.push([name, value]);
    value = undefined;
  }
  const config: Config = { ...DEFAULTS };
  if (env.LIBVIRT_DEFAULT_URI) config.libvirtUri = env.LIBVIRT_DEFAULT_URI;
  if (configFile !== null) applyConfigFile(config, configFile);
  for (const [name, value] of flags) {
    if (value === null) SWITCHES[name](config);
    else SETTINGS[name](config, value, `--${name}`);
  }
  return { config, help, version };
}

export function applyConfigFile(config: Config, file: string): void {
  applySettingsFile(config, file, SETTINGS);
}

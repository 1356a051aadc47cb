// check_vmm's command line: short options as the Monitoring Plugins
// guidelines and Net-SNMP's tools spell them ("-w 10", "-w10"), long ones
// ("--warning 10", "--warning=10"). Every mistake is a UsageError, which the
// plugin reports as UNKNOWN with a usage hint.
import { parseRange, RangeSyntaxError, ThresholdRange } from './range';
import type { AuthProtocol, PrivProtocol, SecurityLevel } from './snmp';
import { OPER_STATE_NAMES } from './vm-mib';

export type Mode = 'states' | 'count' | 'vm' | 'migration';
export const MODES: readonly Mode[] = ['states', 'count', 'vm', 'migration'];

export interface PluginOptions {
  host: string;
  port: number;
  community: string;
  version: '2c' | '3';
  user?: string;
  level?: SecurityLevel;
  authProtocol: AuthProtocol;
  authPass?: string;
  privProtocol: PrivProtocol;
  privPass?: string;
  timeoutSeconds: number;
  mode: Mode;
  warning?: ThresholdRange;
  critical?: ThresholdRange;
  name?: string;
  /** count mode: count the VMs in this vmOperState rather than vmNumber. */
  state?: number;
  warnShutdown: boolean;
  sinceSeconds: number;
}

export type ParsedCommandLine =
  | { kind: 'help' }
  | { kind: 'version' }
  | { kind: 'check'; options: PluginOptions };

export class UsageError extends Error {}

const USAGE = `check_vmm -H HOST [-p PORT] [-t SECONDS] [-m states|count|vm|migration]
            [-w RANGE] [-c RANGE] [-n NAME] [--state STATE] [--warn-shutdown]
            [--since SECONDS]
            [-v 2c [-C COMMUNITY] | -v 3 -u USER [-l LEVEL] [-a AUTHPROTO -A AUTHPASS]
                                              [-x PRIVPROTO -X PRIVPASS]]`;

const AUTH: Readonly<Record<string, AuthProtocol>> = {
  MD5: 'md5', SHA: 'sha', SHA1: 'sha', 'SHA-1': 'sha',
  SHA224: 'sha224', 'SHA-224': 'sha224', SHA256: 'sha256', 'SHA-256': 'sha256',
  SHA384: 'sha384', 'SHA-384': 'sha384', SHA512: 'sha512', 'SHA-512': 'sha512',
};
const PRIV: Readonly<Record<string, PrivProtocol>> = {
  DES: 'des', AES: 'aes', AES128: 'aes', 'AES-128': 'aes',
  AES256: 'aes256b', 'AES-256': 'aes256b', AES256C: 'aes256r', 'AES-256C': 'aes256r',
};
const LEVELS: Readonly<Record<string, SecurityLevel>> = {
  noauthnopriv: 'noAuthNoPriv', authnopriv: 'authNoPriv', authpriv: 'authPriv',
};

interface OptionSpec {
  short?: string;
  long: string;
  /** Takes a value. */
  value: boolean;
}

const SPECS: readonly OptionSpec[] = [
  { short: 'H', long: 'hostname', value: true },
  { short: 'p', long: 'port', value: true },
  { short: 'C', long: 'community', value: true },
  { short: 'v', long: 'snmp-version', value: true },
  { short: 'u', long: 'user', value: true },
  { short: 'l', long: 'seclevel', value: true },
  { short: 'a', long: 'authproto', value: true },
  { short: 'A', long: 'authpass', value: true },
  { short: 'x', long: 'privproto', value: true },
  { short: 'X', long: 'privpass', value: true },
  { short: 't', long: 'timeout', value: true },
  { short: 'm', long: 'mode', value: true },
  { short: 'w', long: 'warning', value: true },
  { short: 'c', long: 'critical', value: true },
  { short: 'n', long: 'name', value: true },
  { long: 'state', value: true },
  { long: 'warn-shutdown', value: false },
  { long: 'since', value: true },
  { short: 'h', long: 'help', value: false },
  { short: 'V', long: 'version', value: false },
];

function positiveNumber(text: string, option: string): number {
  if (!/^(\d+(\.\d*)?|\.\d+)$/.test(text) || Number(text) <= 0) {
    throw new UsageError(`${option}: "${text}" is not a positive number of seconds`);
  }
  return Number(text);
}

/** Splits argv into option → value (the last one given wins, as in most plugins). */
function scan(argv: readonly string[]): Map<string, string> {
  const seen = new Map<string, string>();
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    let spec: OptionSpec | undefined;
    let inline: string | undefined;
    let shown: string;
    if (arg.startsWith('--') && arg.length > 2) {
      const eq = arg.indexOf('=');
      const name = eq < 0 ? arg.slice(2) : arg.slice(2, eq);
      inline = eq < 0 ? undefined : arg.slice(eq + 1);
      shown = `--${name}`;
      spec = SPECS.find((s) => s.long === name);
      if (spec && !spec.value && inline !== undefined) throw new UsageError(`${shown} takes no value`);
    } else if (arg.startsWith('-') && arg.length > 1) {
      shown = arg.slice(0, 2);
      spec = SPECS.find((s) => s.short === arg[1]);
      if (arg.length > 2) {
        if (spec && !spec.value) throw new UsageError(`${shown} takes no value (got "${arg}")`);
        inline = arg.slice(2);
      }
    } else {
      throw new UsageError(`unexpected argument "${arg}" (every setting is an option)`);
    }
    if (spec === undefined) throw new UsageError(`unknown option ${shown}`);
    let value = '';
    if (spec.value) {
      if (inline !== undefined) value = inline;
      else if (i + 1 < argv.length) value = argv[++i];
      else throw new UsageError(`${shown} needs a value`);
    }
    seen.set(spec.long, value);
  }
  return seen;
}

function range(seen: Map<string, string>, name: 'warning' | 'critical'): ThresholdRange | undefined {
  const text = seen.get(name);
  if (text === undefined) return undefined;
  try {
    return parseRange(text);
  } catch (err) {
    if (err instanceof RangeSyntaxError) throw new UsageError(`--${name}: ${err.message}`);
    throw err;
  }
}

export function parseCommandLine(argv: readonly string[]): ParsedCommandLine {
  const seen = scan(argv);
  if (seen.has('help')) return { kind: 'help' };
  if (seen.has('version')) return { kind: 'version' };

  const host = seen.get('hostname');
  if (host === undefined || host === '') throw new UsageError('-H HOST is required');

  const portText = seen.get('port') ?? '161';
  if (!/^\d+$/.test(portText) || Number(portText) < 1 || Number(portText) > 65535) {
    throw new UsageError(`-p: "${portText}" is not a port number (1..65535)`);
  }

  const versionText = seen.get('snmp-version') ?? '2c';
  const version = versionText === '2c' || versionText === '2' ? '2c' : versionText === '3' ? '3' : undefined;
  if (version === undefined) throw new UsageError(`-v: SNMP version "${versionText}" is not 2c or 3`);

  const authText = seen.get('authproto') ?? 'SHA';
  const authProtocol = AUTH[authText.toUpperCase()];
  if (authProtocol === undefined) {
    throw new UsageError(`-a: "${authText}" is not one of MD5, SHA, SHA-224, SHA-256, SHA-384, SHA-512`);
  }
  const privText = seen.get('privproto') ?? 'AES';
  const privProtocol = PRIV[privText.toUpperCase()];
  if (privProtocol === undefined) throw new UsageError(`-x: "${privText}" is not one of AES, AES-256, AES-256C, DES`);

  const authPass = seen.get('authpass');
  const privPass = seen.get('privpass');
  const user = seen.get('user');
  let level: SecurityLevel | undefined;
  if (version === '3') {
    if (user === undefined || user === '') throw new UsageError('-v 3 needs -u USER');
    const levelText = seen.get('seclevel');
    if (levelText !== undefined) {
      level = LEVELS[levelText.toLowerCase()];
      if (level === undefined) throw new UsageError(`-l: "${levelText}" is not noAuthNoPriv, authNoPriv or authPriv`);
    } else {
      level = privPass !== undefined ? 'authPriv' : authPass !== undefined ? 'authNoPriv' : 'noAuthNoPriv';
    }
    if (level !== 'noAuthNoPriv') {
      if (authPass === undefined) throw new UsageError(`-l ${level} needs -A AUTHPASS`);
      if (authPass.length < 8) throw new UsageError('-A: an SNMPv3 pass phrase has at least 8 characters');
    }
    if (level === 'authPriv') {
      if (privPass === undefined) throw new UsageError('-l authPriv needs -X PRIVPASS');
      if (privPass.length < 8) throw new UsageError('-X: an SNMPv3 pass phrase has at least 8 characters');
    }
  } else {
    for (const [option, long] of [['-u', 'user'], ['-l', 'seclevel'], ['-A', 'authpass'], ['-X', 'privpass']] as const) {
      if (seen.has(long)) throw new UsageError(`${option} is for SNMPv3: add -v 3`);
    }
  }

  const timeoutSeconds = positiveNumber(seen.get('timeout') ?? '10', '-t');

  const modeText = seen.get('mode') ?? 'states';
  const mode = MODES.find((m) => m === modeText);
  if (mode === undefined) throw new UsageError(`-m: "${modeText}" is not one of ${MODES.join(', ')}`);

  const warning = range(seen, 'warning');
  const critical = range(seen, 'critical');
  if ((mode === 'states' || mode === 'vm') && (warning !== undefined || critical !== undefined)) {
    throw new UsageError(`-w and -c have no meaning in mode ${mode} (they are for count and migration)`);
  }

  const name = seen.get('name');
  if (mode === 'vm' && (name === undefined || name === '')) throw new UsageError('-m vm needs -n NAME');
  if (mode !== 'vm' && name !== undefined) throw new UsageError('-n NAME is for -m vm');

  let state: number | undefined;
  const stateText = seen.get('state');
  if (stateText !== undefined) {
    if (mode !== 'count') throw new UsageError('--state is for -m count');
    const i = OPER_STATE_NAMES.indexOf(stateText.toLowerCase());
    const n = /^\d+$/.test(stateText) ? Number(stateText) : i + 1;
    if (n < 1 || n > OPER_STATE_NAMES.length) {
      throw new UsageError(`--state: "${stateText}" is not a vmOperState (${OPER_STATE_NAMES.join(', ')})`);
    }
    state = n;
  }

  const warnShutdown = seen.has('warn-shutdown');
  if (warnShutdown && mode !== 'states') throw new UsageError('--warn-shutdown is for -m states');

  let sinceSeconds = 3600;
  const sinceText = seen.get('since');
  if (sinceText !== undefined) {
    if (mode !== 'migration') throw new UsageError('--since is for -m migration');
    if (!/^\d+$/.test(sinceText)) throw new UsageError(`--since: "${sinceText}" is not a whole number of seconds`);
    sinceSeconds = Number(sinceText);
  }

  return {
    kind: 'check',
    options: {
      host,
      port: Number(portText),
      community: seen.get('community') ?? 'public',
      version,
      user,
      level,
      authProtocol,
      authPass,
      privProtocol,
      privPass,
      timeoutSeconds,
      mode,
      warning: warning ?? (mode === 'migration' ? parseRange('600') : undefined),
      critical: critical ?? (mode === 'migration' ? parseRange('1800') : undefined),
      name,
      state,
      warnShutdown,
      sinceSeconds,
    },
  };
}

export function helpText(version: string): string {
  return `check_vmm ${version} (vmm-agentx)
Nagios/Icinga plugin: checks the virtual machines of a hypervisor through its
snmpd and vmm-agentx, from VM-MIB (RFC 7666) and VMM-AGENTX-MIB.

Usage:
  ${USAGE}
  check_vmm -h | --help
  check_vmm -V | --version

Modes (-m, --mode; default states):
  states     every VM's vmOperState. CRITICAL if any VM crashed; WARNING if any
             is paused, and with --warn-shutdown if any is shut down; UNKNOWN
             if any reads unknown (the agent has lost libvirt). Suspended,
             migrating and transitional states are OK.
             Perfdata: vms, and the count of VMs in each of the 12 states.
  count      how many VMs (vmNumber), or with --state STATE how many are in
             that vmOperState, against -w and -c. Perfdata: vms (or STATE).
  vm         one VM, by name (-n NAME): OK if running or migrating; CRITICAL
             if crashed or not there; UNKNOWN if its state is unknown; WARNING
             in any other state (paused, shut down, suspended, ...).
             Perfdata: uptime, vcpus, memory.
  migration  live migrations (VMM-AGENTX-MIB's vmmMigrationTable). WARNING or
             CRITICAL while a migration has been running for longer than -w or
             -c seconds (defaults 600 and 1800); CRITICAL if a VM's last
             migration failed or was cancelled within the last --since
             seconds (default 3600; 0: never). A destination host has no job
             statistics, so an incoming migration's duration is unknown there
             and only the source times it.
             Perfdata: active, longest (s), failed.

Options:
  -H, --hostname HOST      the hypervisor's snmpd (name, IPv4 or IPv6 address)
  -p, --port PORT          its UDP port (default 161)
  -v, --snmp-version 2c|3  SNMP version (default 2c); as in Net-SNMP's tools,
                           -v is the version, not verbosity
  -C, --community NAME     SNMPv2c community (default public)
  -u, --user NAME          SNMPv3 user
  -l, --seclevel LEVEL     noAuthNoPriv, authNoPriv or authPriv (default: from
                           the pass phrases given)
  -a, --authproto PROTO    MD5, SHA (default), SHA-224, SHA-256, SHA-384, SHA-512
  -A, --authpass PASS      authentication pass phrase (8 characters or more)
  -x, --privproto PROTO    AES (AES-128, default), AES-256 (Blumenthal key
                           extension), AES-256C (Reeder, "Cisco" key extension),
                           DES (bin/check_vmm loads OpenSSL's legacy provider)
  -X, --privpass PASS      privacy pass phrase (8 characters or more)
  -t, --timeout SECONDS    give up with UNKNOWN after this long (default 10)
  -m, --mode MODE          states, count, vm or migration (see above)
  -w, --warning RANGE      count: VMs; migration: seconds a migration runs
  -c, --critical RANGE     the same, for CRITICAL
  -n, --name NAME          vm: the VM's name (vmName), exactly
      --state STATE        count: a vmOperState name (running, paused,
                           shutdown, crashed, ...) or number
      --warn-shutdown      states: shut-down VMs are WARNING too
      --since SECONDS      migration: how long a failed or cancelled
                           migration stays CRITICAL (default 3600)
  -h, --help               this text (exit code 3, as the guidelines ask)
  -V, --version            the version (exit code 3)

Ranges (-w, -c), as the Monitoring Plugins guidelines define them; the
alert is raised when the value is:
  10       outside 0..10          10:      below 10
  ~:10     above 10               10:20    outside 10..20
  @10:20   inside 10..20 (ends included)

Output: one line, "VMM OK - ...", "VMM WARNING - ...", "VMM CRITICAL - ..."
or "VMM UNKNOWN - ...", performance data after "|"; exit code 0, 1, 2 or 3.
UNKNOWN also when the host does not answer within -t seconds, answers with
an error, or serves no VM-MIB (vmm-agentx not connected to its snmpd).

Examples:
  check_vmm -H hv1.example.net -C public
  check_vmm -H hv1.example.net -m count -w 1:40 -c 1:60
  check_vmm -H hv1.example.net -m count --state crashed -c 0
  check_vmm -H hv1.example.net -m vm -n web-01
  check_vmm -H hv1.example.net -v 3 -u monitor -l authPriv -a SHA-256 -A '...' \\
            -x AES -X '...' -m migration -w 300 -c 900 --since 7200
`;
}

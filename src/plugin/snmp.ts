// The little of the npm net-snmp package that check_vmm uses (GET and
// column walks by GETBULK, SNMPv2c and SNMPv3), typed, with its errors turned
// into sentences an operator can act on. net-snmp ships no type definitions.
import { isIPv6 } from 'node:net';

export type AuthProtocol = 'md5' | 'sha' | 'sha224' | 'sha256' | 'sha384' | 'sha512';
export type PrivProtocol = 'des' | 'aes' | 'aes256b' | 'aes256r';
export type SecurityLevel = 'noAuthNoPriv' | 'authNoPriv' | 'authPriv';

export interface SnmpV3User {
  name: string;
  level: SecurityLevel;
  authProtocol?: AuthProtocol;
  authKey?: string;
  privProtocol?: PrivProtocol;
  privKey?: string;
}

export interface SnmpTarget {
  host: string;
  port: number;
  version: '2c' | '3';
  community: string;
  user?: SnmpV3User;
  /** How long one request waits for its answer, each try. */
  requestTimeoutMs: number;
  retries: number;
  /** The time the caller allows in all (-t), as messages state it. */
  patienceSeconds: number;
}

/** A varbind's value: numbers (INTEGER, Gauge32, TimeTicks, ...), bytes (OCTET STRING, Counter64), or why there is none. */
export type SnmpValue =
  | { kind: 'number'; value: number }
  | { kind: 'bytes'; value: Buffer }
  | { kind: 'absent'; why: 'noSuchObject' | 'noSuchInstance' | 'endOfMibView' }
  | { kind: 'other'; type: number };

/** A failure of the conversation itself: no answer, an error-status, a USM report. */
export class SnmpError extends Error {
  constructor(message: string, readonly timedOut = false) {
    super(message);
  }
}

interface RawVarbind {
  oid: string;
  type: number;
  value: unknown;
}

interface RawSession {
  get(oids: string[], cb: (error: Error | null, varbinds: RawVarbind[]) => void): void;
  getBulk(oids: string[], nonRepeaters: number, maxRepetitions: number,
    cb: (error: Error | null, varbinds: RawVarbind[][]) => void): void;
  close(): void;
  on(event: 'error', listener: (error: Error) => void): void;
}

interface NetSnmp {
  Version2c: number;
  ObjectType: Record<string, number>;
  SecurityLevel: Record<SecurityLevel, number>;
  AuthProtocols: Record<AuthProtocol, number>;
  PrivProtocols: Record<PrivProtocol, number>;
  ErrorStatus: Record<number, string>;
  createSession(target: string, community: string, options: object): RawSession;
  createV3Session(target: string, user: object, options: object): RawSession;
}

const snmp = require('net-snmp') as NetSnmp;

const TYPE_NAME: Readonly<Record<number, 'noSuchObject' | 'noSuchInstance' | 'endOfMibView'>> = {
  [snmp.ObjectType.NoSuchObject]: 'noSuchObject',
  [snmp.ObjectType.NoSuchInstance]: 'noSuchInstance',
  [snmp.ObjectType.EndOfMibView]: 'endOfMibView',
};
const NUMBER_TYPES = new Set([
  snmp.ObjectType.Integer, snmp.ObjectType.Counter, snmp.ObjectType.Gauge, snmp.ObjectType.TimeTicks,
]);

function decode(vb: RawVarbind): SnmpValue {
  const absent = TYPE_NAME[vb.type];
  if (absent !== undefined) return { kind: 'absent', why: absent };
  if (NUMBER_TYPES.has(vb.type) && typeof vb.value === 'number') return { kind: 'number', value: vb.value };
  if (Buffer.isBuffer(vb.value)) return { kind: 'bytes', value: vb.value };
  return { kind: 'other', type: vb.type };
}

/** "a.b.c" is `prefix` itself or below it. */
function under(oid: string, prefix: string): boolean {
  return oid.startsWith(prefix + '.');
}

export class SnmpClient {
  private readonly session: RawSession;
  private sessionError: Error | null = null;
  /** Requests answered so far (to tell "no answer at all" from "stopped answering"). */
  answered = 0;

  constructor(private readonly target: SnmpTarget) {
    const host = target.host.replace(/^\[(.*)\]$/, '$1');
    const options = {
      port: target.port,
      retries: target.retries,
      timeout: target.requestTimeoutMs,
      transport: isIPv6(host) ? 'udp6' : 'udp4',
      // Refuse an agent whose GETNEXT goes backwards rather than loop on it.
      backwardsGetNexts: false,
    };
    if (target.version === '3') {
      const u = target.user;
      if (!u) throw new Error('SNMPv3 needs a user');
      const user: Record<string, unknown> = { name: u.name, level: snmp.SecurityLevel[u.level] };
      if (u.level !== 'noAuthNoPriv') {
        user.authProtocol = snmp.AuthProtocols[u.authProtocol ?? 'sha'];
        user.authKey = u.authKey;
      }
      if (u.level === 'authPriv') {
        user.privProtocol = snmp.PrivProtocols[u.privProtocol ?? 'aes'];
        user.privKey = u.privKey;
      }
      this.session = snmp.createV3Session(host, user, options);
    } else {
      this.session = snmp.createSession(host, target.community, { ...options, version: snmp.Version2c });
    }
    this.session.on('error', (err) => {
      this.sessionError = err;
    });
  }

  /** host:port, IPv6 literals in brackets. */
  get address(): string {
    const host = this.target.host.replace(/^\[(.*)\]$/, '$1');
    return isIPv6(host) ? `[${host}]:${this.target.port}` : `${host}:${this.target.port}`;
  }

  private explain(err: Error): SnmpError {
    const name = err.name;
    const version = this.target.version === '3' ? `SNMPv3 user "${this.target.user?.name ?? ''}"` : 'SNMPv2c';
    if (name === 'RequestTimedOutError') {
      const seconds = this.target.patienceSeconds;
      const hint = this.target.version === '3' ? '' : ' (wrong community, or no snmpd there?)';
      return new SnmpError(`no answer from ${this.address} (${version}) within ${seconds} s${hint}`, true);
    }
    if (name === 'RequestFailedError') {
      const status = (err as Error & { status?: number }).status;
      const text = status !== undefined ? snmp.ErrorStatus[status] ?? `error-status ${status}` : err.message;
      // authorizationError(16): the user's security level or view does not allow the objects.
      const hint = status === 16 ? ' (not allowed to this user at this security level, or outside its view)' : '';
      return new SnmpError(`${this.address} refused the request (${version}): ${text}${hint}`);
    }
    if (name === 'ResponseInvalidError') {
      return new SnmpError(`${this.address} (${version}): ${err.message}`);
    }
    if (/unsupported/.test(err.message) && this.target.user?.privProtocol === 'des') {
      // OpenSSL 3 has DES-CBC only in its legacy provider (bin/check_vmm asks node for it with -x DES).
      return new SnmpError(`DES is not available in this node's OpenSSL (${err.message}): ` +
        'run check_vmm through bin/check_vmm, which loads the legacy provider for it, or use -x AES');
    }
    return new SnmpError(`${this.address} (${version}): ${err.message}`);
  }

  private call<T>(start: (cb: (error: Error | null, result: T) => void) => void): Promise<T> {
    return new Promise((resolve, reject) => {
      try {
        start((error, result) => {
          if (error) {
            reject(this.explain(error));
            return;
          }
          this.answered++;
          resolve(result);
        });
      } catch (err) {
        // net-snmp throws synchronously on bad arguments and on a socket it cannot open.
        reject(this.explain(this.sessionError ?? (err as Error)));
      }
    });
  }

  /** GET of the given OIDs (dotted, no leading dot), in order. */
  async get(oids: readonly string[]): Promise<SnmpValue[]> {
    const varbinds = await this.call<RawVarbind[]>((cb) => this.session.get([...oids], cb));
    return varbinds.map(decode);
  }

  /**
   * Walks table columns side by side with GETBULK: one request carries every
   * column still going. Returns, per row index (the OID suffix after the
   * column), the value of each column in the order given (undefined where a
   * column has no such row).
   */
  async walkColumns(columns: readonly string[]): Promise<Map<string, Array<SnmpValue | undefined>>> {
    const rows = new Map<string, Array<SnmpValue | undefined>>();
    const cursors = [...columns];
    const going = columns.map(() => true);
    const maxRepetitions = Math.max(5, Math.floor(60 / columns.length));
    while (going.some((g) => g)) {
      const which = columns.map((_, i) => i).filter((i) => going[i]);
      const result = await this.call<RawVarbind[][]>((cb) =>
        this.session.getBulk(which.map((i) => cursors[i]), 0, maxRepetitions, cb));
      which.forEach((column, k) => {
        const repetitions = result[k] ?? [];
        if (repetitions.length === 0) going[column] = false;
        for (const vb of repetitions) {
          if (!going[column]) break;
          if (TYPE_NAME[vb.type] !== undefined || !under(vb.oid, columns[column])) {
            going[column] = false;
            break;
          }
          const index = vb.oid.slice(columns[column].length + 1);
          let row = rows.get(index);
          if (row === undefined) {
            row = columns.map(() => undefined);
            rows.set(index, row);
          }
          row[column] = decode(vb);
          cursors[column] = vb.oid;
        }
      });
    }
    return rows;
  }

  close(): void {
    try {
      this.session.close();
    } catch {
      // already closed
    }
  }
}

// A private snmptrapd on a free loopback UDP port that records every
// notification it receives, for tests of AgentX Notify (RFC 2741 §6.2.10)
// forwarded by snmpd's trap2sink.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { freeUdpPort } from './ports';
import { ManagedProcess, sleep, spawnManaged, stopProcess } from './process';

export const SNMPTRAPD_BINARY = '/usr/sbin/snmptrapd';

export interface TrapReceiver {
  readonly port: number;
  readonly pid: number;
  readonly labDir: string;
  /**
   * Resolves with the first trap (already received or arriving within
   * timeoutMs) the predicate accepts. Trap text: a transport line such as
   * "UDP: [127.0.0.1]:5000->[127.0.0.1]:162", then one ".oid = TYPE: value"
   * line per varbind (numeric OIDs; parse with parseVarbindLines).
   */
  waitFor(predicate: (trapText: string) => boolean, timeoutMs: number): Promise<string>;
  traps(): string[];
  log(): string;
  /** Stops snmptrapd by PID and removes its temp dir. */
  stop(): Promise<void>;
}

const BEGIN = 'TRAP-BEGIN ';
const END = 'TRAP-END';
// %b transport, %V sets the varbind separator to "\n" (up to the next %), %v the varbinds.
const TRAP_FORMAT = `${BEGIN}%b\n%V\n%v\n${END}\n`;

class TrapLab implements TrapReceiver {
  private readonly received: string[] = [];
  private readonly waiters = new Set<() => void>();
  private pending = '';

  constructor(
    readonly port: number,
    readonly labDir: string,
    private readonly child: ManagedProcess,
  ) {
    child.onOutput((text) => this.consume(text));
  }

  get pid(): number {
    return this.child.pid;
  }

  private consume(text: string): void {
    this.pending += text;
    for (;;) {
      const begin = this.pending.indexOf(BEGIN);
      if (begin < 0) {
        this.pending = this.pending.slice(-BEGIN.length);
        return;
      }
      const end = this.pending.indexOf(`\n${END}\n`, begin);
      if (end < 0) {
        this.pending = this.pending.slice(begin);
        return;
      }
      this.received.push(this.pending.slice(begin + BEGIN.length, end));
      this.pending = this.pending.slice(end + END.length + 2);
      for (const wake of [...this.waiters]) wake();
    }
  }

  traps(): string[] {
    return [...this.received];
  }

  log(): string {
    return this.child.output();
  }

  waitFor(predicate: (trapText: string) => boolean, timeoutMs: number): Promise<string> {
    return new Promise((resolve, reject) => {
      const check = (): boolean => {
        const match = this.received.find(predicate);
        if (match === undefined) return false;
        cleanup();
        resolve(match);
        return true;
      };
      const cleanup = (): void => {
        clearTimeout(timer);
        this.waiters.delete(wake);
      };
      const wake = (): void => {
        check();
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(
          new Error(
            `no matching trap on udp:127.0.0.1:${this.port} within ${timeoutMs} ms; ` +
              `${this.received.length} trap(s) received:\n${this.received.join('\n---\n')}`,
          ),
        );
      }, timeoutMs);
      this.waiters.add(wake);
      check();
    });
  }

  async stop(): Promise<void> {
    await stopProcess(this.child, 3000);
    fs.rmSync(this.labDir, { recursive: true, force: true });
  }
}

/** Starts snmptrapd (as the current user; port > 1024 needs no privilege) accepting v1/v2c community "public". */
export async function startSnmptrapd(startTimeoutMs = 10_000): Promise<TrapReceiver> {
  const labDir = fs.mkdtempSync(path.join(os.tmpdir(), 'vmm-snmptrapd-'));
  try {
    const port = await freeUdpPort();
    const configPath = path.join(labDir, 'snmptrapd.conf');
    fs.writeFileSync(
      configPath,
      ['authCommunity log,execute,net public', 'disableAuthorization yes', 'doNotRetainNotificationLogs yes', ''].join(
        '\n',
      ),
    );
    const child = await spawnManaged(
      SNMPTRAPD_BINARY,
      [
        '-f', '-Lo', '-C', '-c', configPath, '-On', '-n', '-F', TRAP_FORMAT,
        '-p', path.join(labDir, 'snmptrapd.pid'), `udp:127.0.0.1:${port}`,
      ],
      {
        env: { PATH: process.env.PATH ?? '/usr/sbin:/usr/bin', SNMP_PERSISTENT_DIR: path.join(labDir, 'persist'), MIBS: '' },
        cwd: labDir,
        logFile: path.join(labDir, 'snmptrapd.log'),
      },
    );
    const receiver = new TrapLab(port, labDir, child);
    // snmptrapd logs its version once the listening socket is open.
    const deadline = Date.now() + startTimeoutMs;
    while (!child.output().includes('NET-SNMP version')) {
      if (child.hasExited() || Date.now() > deadline) {
        await stopProcess(child);
        throw new Error(`snmptrapd on udp:127.0.0.1:${port} did not start; output:\n${child.output()}`);
      }
      await sleep(20);
    }
    return receiver;
  } catch (err) {
    fs.rmSync(labDir, { recursive: true, force: true });
    throw err;
  }
}

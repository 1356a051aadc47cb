// Debian's Prometheus snmp_exporter (package prometheus-snmp-exporter) on a
// free loopback port with a config file of our choosing, and a reader for
// what it answers: the Prometheus text exposition format (version 0.0.4).
import * as fs from 'node:fs';
import * as http from 'node:http';
import { freeTcpPort } from './ports';
import { ManagedProcess, runCommand, sleep, spawnManaged, stopProcess } from './process';

export const SNMP_EXPORTER_BINARY = '/usr/bin/prometheus-snmp-exporter';
export const SNMP_EXPORTER_PACKAGE = 'prometheus-snmp-exporter';

/** Why the exporter cannot run here, or null. */
export function snmpExporterMissing(): string | null {
  try {
    fs.accessSync(SNMP_EXPORTER_BINARY, fs.constants.X_OK);
    return null;
  } catch {
    return `no ${SNMP_EXPORTER_BINARY} (apt-get install ${SNMP_EXPORTER_PACKAGE})`;
  }
}

export interface HttpAnswer {
  status: number;
  body: string;
  /** Milliseconds from request to the end of the body. */
  ms: number;
}

/** GET over loopback, the body as UTF-8 text. */
export function httpGet(port: number, pathAndQuery: string, timeoutMs = 30_000): Promise<HttpAnswer> {
  const t0 = Date.now();
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path: pathAndQuery, timeout: timeoutMs }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8'), ms: Date.now() - t0 }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`GET 127.0.0.1:${port}${pathAndQuery} timed out after ${timeoutMs} ms`)));
    req.on('error', reject);
  });
}

export interface SnmpExporter {
  readonly port: number;
  readonly pid: number;
  /** version line of --version, e.g. "snmp_exporter, version 0.21.0 (branch: debian/sid, ...)". */
  readonly version: string;
  /** GET /snmp?module=…&target=…, as the Prometheus server would. */
  scrape(module: string, target: string): Promise<HttpAnswer>;
  log(): string;
  /** SIGTERM by PID (SIGKILL after 3 s). */
  stop(): Promise<void>;
}

/** Starts the exporter on 127.0.0.1:<free port> and waits until its web server answers. */
export async function startSnmpExporter(configFile: string, startTimeoutMs = 10_000): Promise<SnmpExporter> {
  const port = await freeTcpPort();
  const env = { PATH: process.env.PATH ?? '/usr/bin:/bin' };
  // 0.21 prints its version on stderr.
  const versionRun = await runCommand(SNMP_EXPORTER_BINARY, ['--version'], { env, timeoutMs: 30_000 });
  const version = `${versionRun.stdout}${versionRun.stderr}`.split('\n')[0].trim();
  const child: ManagedProcess = await spawnManaged(
    SNMP_EXPORTER_BINARY,
    [`--config.file=${configFile}`, `--web.listen-address=127.0.0.1:${port}`, '--log.level=info'],
    { env },
  );
  const deadline = Date.now() + startTimeoutMs;
  for (;;) {
    if (child.hasExited()) throw new Error(`${child.commandLine} exited during start-up:\n${child.output()}`);
    const answer = await httpGet(port, '/', 1000).catch(() => undefined);
    if (answer?.status === 200) break;
    if (Date.now() > deadline) {
      await stopProcess(child);
      throw new Error(`${child.commandLine} did not answer on 127.0.0.1:${port} within ${startTimeoutMs} ms:\n${child.output()}`);
    }
    await sleep(50);
  }
  return {
    port,
    pid: child.pid,
    version,
    scrape: (module, target) =>
      httpGet(port, `/snmp?module=${encodeURIComponent(module)}&target=${encodeURIComponent(target)}`),
    log: () => child.output(),
    stop: () => stopProcess(child),
  };
}

// ------------------------------------------------------------------ exposition format

export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

export interface Exposition {
  samples: Sample[];
  /** Metric name → counter, gauge, untyped, … from the # TYPE lines. */
  types: Map<string, string>;
  help: Map<string, string>;
}

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*/;

/** Parses Prometheus text format 0.0.4; throws on a line it cannot read. */
export function parseExposition(text: string): Exposition {
  const out: Exposition = { samples: [], types: new Map(), help: new Map() };
  for (const [n, line] of text.split('\n').entries()) {
    if (line.trim() === '') continue;
    const fail = (why: string): never => {
      throw new Error(`exposition line ${n + 1}: ${why}: ${line}`);
    };
    if (line.startsWith('#')) {
      const m = /^# (HELP|TYPE) (\S+) ?(.*)$/.exec(line);
      if (m?.[1] === 'TYPE') out.types.set(m[2], m[3]);
      else if (m?.[1] === 'HELP') out.help.set(m[2], m[3]);
      continue;
    }
    const name = NAME.exec(line)?.[0] ?? fail('no metric name');
    let i = name.length;
    const labels: Record<string, string> = {};
    if (line[i] === '{') {
      i++;
      for (;;) {
        if (line[i] === '}') break;
        const label = NAME.exec(line.slice(i))?.[0] ?? fail(`no label name at column ${i + 1}`);
        i += label.length;
        if (line.slice(i, i + 2) !== '="') fail(`no =" after label ${label}`);
        i += 2;
        let value = '';
        for (;;) {
          const c = line[i++];
          if (c === undefined) fail('unterminated label value');
          if (c === '"') break;
          if (c === '\\') {
            const e = line[i++];
            value += e === 'n' ? '\n' : e;
          } else {
            value += c;
          }
        }
        labels[label] = value;
        if (line[i] === ',') i++;
        else if (line[i] !== '}') fail(`expected , or } at column ${i + 1}`);
      }
      i++;
    }
    const [valueText] = line.slice(i).trim().split(/\s+/);
    const value = valueText === '+Inf' ? Infinity : valueText === '-Inf' ? -Infinity : Number(valueText);
    if (Number.isNaN(value) && valueText !== 'NaN') fail('bad sample value');
    out.samples.push({ name, labels, value });
  }
  return out;
}

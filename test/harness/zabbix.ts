// A private Zabbix 6.0 stack for integration tests (Debian 12 packages):
// PostgreSQL on a unix socket in a temp dir, zabbix_server and the PHP
// frontend's JSON-RPC API (PHP's built-in web server) on free loopback ports,
// each daemon running as its own system user (postgres, zabbix), started and
// stopped by PID. The database schema is loaded once from the package's
// .sql.gz files and cached as a pg_dump archive under os.tmpdir(), keyed on
// those files, so later runs restore it in a couple of seconds.
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import * as zlib from 'node:zlib';
import { freeTcpPort } from './ports';
import { ManagedProcess, runCommand, sleep, spawnManaged, stopProcess } from './process';
import { findTool, firstReason, needsRoot } from './prereq';

export const ZABBIX_SERVER_BINARY = '/usr/sbin/zabbix_server';
export const ZABBIX_FRONTEND_DIR = '/usr/share/zabbix';
export const ZABBIX_SCHEMA_DIR = '/usr/share/zabbix-server-pgsql';
const SCHEMA_FILES = ['schema.sql.gz', 'images.sql.gz', 'data.sql.gz'];
/** Where the restored-in-seconds schema dump is kept between runs. */
export const ZABBIX_CACHE_DIR = path.join(os.tmpdir(), 'vmm-agentx-zabbix-cache');
const CONFIG_FILE_CONSTANT = "'/etc/zabbix/zabbix.conf.php'";

/** The newest PostgreSQL server binaries (Debian: /usr/lib/postgresql/<major>/bin), or null. */
export function postgresBinDir(): string | null {
  const root = '/usr/lib/postgresql';
  let majors: number[];
  try {
    majors = fs.readdirSync(root).map(Number).filter((n) => Number.isInteger(n)).sort((a, b) => b - a);
  } catch {
    return null;
  }
  for (const major of majors) {
    const bin = path.join(root, String(major), 'bin');
    if (['postgres', 'initdb', 'pg_ctl'].every((tool) => fs.existsSync(path.join(bin, tool)))) return bin;
  }
  return null;
}

/** Why the Zabbix stack cannot run here (the first reason), or null when it can. */
export function zabbixMissing(): string | null {
  const install = 'apt-get install zabbix-server-pgsql zabbix-frontend-php php-cli php-pgsql php8.2-cgi postgresql';
  return firstReason(
    fs.existsSync(ZABBIX_SERVER_BINARY) ? null : `no ${ZABBIX_SERVER_BINARY} (${install})`,
    fs.existsSync(path.join(ZABBIX_FRONTEND_DIR, 'api_jsonrpc.php')) ? null : `no Zabbix frontend in ${ZABBIX_FRONTEND_DIR} (${install})`,
    SCHEMA_FILES.every((f) => fs.existsSync(path.join(ZABBIX_SCHEMA_DIR, f))) ? null : `no Zabbix schema in ${ZABBIX_SCHEMA_DIR} (${install})`,
    findTool('php') ? null : `no php (${install})`,
    postgresBinDir() ? null : `no PostgreSQL server (${install})`,
    ['psql', 'pg_dump', 'pg_restore', 'pg_isready'].map((t) => (fs.existsSync(path.join(postgresBinDir() ?? '/nonexistent', t)) ? null : `no ${t} (${install})`)).find((r) => r) ?? null,
    findTool('setpriv') ? null : 'no setpriv (apt-get install util-linux)',
    // PostgreSQL refuses to run as root, and zabbix_server wants its own user:
    // as root each runs as its Debian system user; not tried as a plain user.
    needsRoot('PostgreSQL and zabbix_server run as their system users (postgres, zabbix)'),
    systemUser('postgres') ? null : 'no system user postgres (apt-get install postgresql)',
    systemUser('zabbix') ? null : 'no system user zabbix (apt-get install zabbix-server-pgsql)',
  );
}

interface SystemUser {
  uid: number;
  gid: number;
}

function systemUser(name: string): SystemUser | null {
  let passwd: string;
  try {
    passwd = fs.readFileSync('/etc/passwd', 'utf8');
  } catch {
    return null;
  }
  for (const line of passwd.split('\n')) {
    const fields = line.split(':');
    if (fields[0] === name && fields.length >= 4) return { uid: Number(fields[2]), gid: Number(fields[3]) };
  }
  return null;
}

function asUser(user: SystemUser): string[] {
  return ['setpriv', `--reuid=${user.uid}`, `--regid=${user.gid}`, '--clear-groups'];
}

function chownTree(dir: string, user: SystemUser): void {
  fs.chownSync(dir, user.uid, user.gid);
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, entry.name);
    if (entry.isDirectory()) chownTree(p, user);
    else fs.chownSync(p, user.uid, user.gid);
  }
}

/** A TCP port on 127.0.0.1 inside [low, high] that was free a moment ago (zabbix_server's ListenPort must be 1024–32767). */
async function freeTcpPortIn(low: number, high: number): Promise<number> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const port = low + Math.floor(Math.random() * (high - low + 1));
    const free = await new Promise<boolean>((resolve) => {
      const server = net.createServer();
      server.once('error', () => resolve(false));
      server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
    });
    if (free) return port;
  }
  throw new Error(`no free TCP port in ${low}-${high} on 127.0.0.1 after 50 attempts`);
}

function tail(text: string, lines: number): string {
  return text.split('\n').slice(-lines).join('\n');
}

async function must(what: string, command: string, args: string[], timeoutMs = 120_000): Promise<string> {
  const r = await runCommand(command, args, { env: process.env, timeoutMs });
  if (r.exitCode !== 0) {
    throw new Error(`${what} failed (exit ${r.exitCode}): ${command} ${args.join(' ')}\n${tail(r.stderr + r.stdout, 30)}`);
  }
  return r.stdout;
}

async function waitFor(what: string, probe: () => Promise<boolean> | boolean, timeoutMs: number, proc?: ManagedProcess, log?: () => string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (proc?.hasExited()) {
      const status = await proc.exited;
      throw new Error(`${proc.commandLine} exited (code ${status.code}, signal ${status.signal}) while waiting for ${what}:\n${tail(log?.() ?? proc.output(), 40)}`);
    }
    if (await probe()) return;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}:\n${tail(log?.() ?? proc?.output() ?? '', 40)}`);
    await sleep(200);
  }
}

/**
 * One POST, connection closed afterwards (no keep-alive pool left behind
 * when the web server is stopped); rejects on an HTTP error status.
 */
function postJson(url: string, body: string, headers: Record<string, string>, timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method: 'POST', agent: false, headers: { ...headers, 'Content-Length': Buffer.byteLength(body) } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        if ((res.statusCode ?? 0) >= 400) reject(new Error(`HTTP ${res.statusCode} from ${url}: ${text.slice(0, 2000)}`));
        else resolve(text);
      });
      res.on('error', reject);
    });
    req.setTimeout(timeoutMs, () => req.destroy(new Error(`no answer from ${url} within ${timeoutMs} ms`)));
    req.on('error', reject);
    req.end(body);
  });
}

/** Zabbix API error, with the server's message and data. */
export class ZabbixApiError extends Error {
  constructor(readonly method: string, readonly code: number, readonly apiMessage: string, readonly data: string) {
    super(`${method}: ${apiMessage} ${data} (code ${code})`);
  }
}

export interface ZabbixStack {
  readonly labDir: string;
  /** http://127.0.0.1:<port>/api_jsonrpc.php */
  readonly apiUrl: string;
  readonly serverPort: number;
  /** "6.0.14" */
  readonly version: string;
  /** How long each start-up step took, in ms; schemaFromCache tells which way the schema came. */
  readonly timings: Readonly<Record<string, number>>;
  readonly schemaFromCache: boolean;
  /** A JSON-RPC call as Admin (the token goes in the body's "auth", as 6.0 wants). */
  call<T = unknown>(method: string, params: unknown): Promise<T>;
  /** zabbix_server's log file so far. */
  serverLog(): string;
  /** What PostgreSQL and the web server printed. */
  daemonOutput(): string;
  /** Stops the web server, zabbix_server and PostgreSQL (by PID) and removes the lab dir. */
  stop(): Promise<void>;
}

export interface StartZabbixOptions {
  /** Extra zabbix_server.conf lines (Key=Value). */
  serverConfig?: string[];
  /** Remove the lab dir on stop (default true; set VMM_KEEP_ZABBIX_LAB=1 to keep it). */
  removeLab?: boolean;
}

class Stack implements ZabbixStack {
  labDir = '';
  apiUrl = '';
  serverPort = 0;
  version = '';
  timings: Record<string, number> = {};
  schemaFromCache = false;
  private token: string | undefined;
  private requestId = 0;
  postgres: ManagedProcess | undefined;
  server: ManagedProcess | undefined;
  web: ManagedProcess | undefined;
  serverLogFile = '';
  removeLab = true;

  async call<T = unknown>(method: string, params: unknown): Promise<T> {
    const body: Record<string, unknown> = { jsonrpc: '2.0', method, params, id: ++this.requestId };
    const headers: Record<string, string> = { 'Content-Type': 'application/json-rpc' };
    if (this.token !== undefined && method !== 'apiinfo.version' && method !== 'user.login') {
      body.auth = this.token; // 6.0 reads the body field; the header came in 6.4
      headers.Authorization = `Bearer ${this.token}`;
    }
    const text = await postJson(this.apiUrl, JSON.stringify(body), headers, 120_000);
    let json: { result?: T; error?: { code: number; message: string; data: string } };
    try {
      json = JSON.parse(text) as typeof json;
    } catch {
      throw new Error(`${method}: not JSON: ${text.slice(0, 2000)}`);
    }
    if (json.error) throw new ZabbixApiError(method, json.error.code, json.error.message, json.error.data);
    return json.result as T;
  }

  async login(): Promise<void> {
    this.token = await this.call<string>('user.login', { username: 'Admin', password: 'zabbix' });
  }

  serverLog(): string {
    try {
      return fs.readFileSync(this.serverLogFile, 'utf8');
    } catch {
      return '';
    }
  }

  daemonOutput(): string {
    return `--- postgres\n${this.postgres?.output() ?? ''}\n--- php -S\n${this.web?.output() ?? ''}`;
  }

  async stop(): Promise<void> {
    const errors: unknown[] = [];
    const attempt = async (fn: () => Promise<void>): Promise<void> => {
      try {
        await fn();
      } catch (err) {
        errors.push(err);
      }
    };
    // php -S workers outlive their master: its whole process group goes.
    if (this.web) await attempt(() => stopProcess(this.web as ManagedProcess, 3000));
    if (this.server) await attempt(() => stopProcess(this.server as ManagedProcess, 10_000));
    if (this.postgres) {
      const pg = this.postgres;
      // SIGINT: "fast" shutdown of the postmaster (SIGTERM would wait for clients).
      await attempt(async () => {
        if (!pg.hasExited()) process.kill(pg.pid, 'SIGINT');
        let timer: NodeJS.Timeout | undefined;
        await Promise.race([pg.exited, new Promise((resolve) => { timer = setTimeout(resolve, 10_000); })]);
        clearTimeout(timer);
        await stopProcess(pg, 3000);
      });
    }
    if (this.removeLab && this.labDir !== '') fs.rmSync(this.labDir, { recursive: true, force: true });
    if (errors.length > 0) throw errors[0];
  }
}

async function schemaCacheKey(pgBin: string): Promise<string> {
  const hash = createHash('sha256');
  for (const f of SCHEMA_FILES) {
    const st = fs.statSync(path.join(ZABBIX_SCHEMA_DIR, f));
    hash.update(`${f}:${st.size}:${st.mtimeMs}\n`);
  }
  hash.update(pgBin);
  return hash.digest('hex').slice(0, 16);
}

/** Starts PostgreSQL, loads (or restores) the Zabbix schema, starts zabbix_server and the API, and logs in as Admin. */
export async function startZabbixStack(opts: StartZabbixOptions = {}): Promise<ZabbixStack> {
  const reason = zabbixMissing();
  if (reason) throw new Error(`cannot start Zabbix: ${reason}`);
  const pgBin = postgresBinDir() as string;
  const pgUser = systemUser('postgres') as SystemUser;
  const zbxUser = systemUser('zabbix') as SystemUser;
  const stack = new Stack();
  stack.removeLab = opts.removeLab ?? process.env.VMM_KEEP_ZABBIX_LAB !== '1';
  stack.labDir = fs.mkdtempSync(path.join(os.tmpdir(), 'vmm-zabbix-'));
  fs.chmodSync(stack.labDir, 0o755);
  const t = (name: string, since: number): void => {
    stack.timings[name] = Date.now() - since;
  };
  try {
    // --- PostgreSQL: unix socket only (listen_addresses empty), as postgres.
    let t0 = Date.now();
    const pgData = path.join(stack.labDir, 'pgdata');
    const pgSock = path.join(stack.labDir, 'pgsock');
    for (const d of [pgData, pgSock]) {
      fs.mkdirSync(d, { mode: 0o700 });
      fs.chownSync(d, pgUser.uid, pgUser.gid);
    }
    fs.chmodSync(pgSock, 0o755);
    await must('initdb', asUser(pgUser)[0], [
      ...asUser(pgUser).slice(1), path.join(pgBin, 'initdb'), '-D', pgData, '-U', 'postgres', '--auth=trust',
      '-E', 'UTF8', '--locale=C.UTF-8', '--no-sync',
    ]);
    const pgPort = 5432; // names the socket file in our own socket dir; no TCP
    stack.postgres = await spawnManaged(asUser(pgUser)[0], [
      ...asUser(pgUser).slice(1), path.join(pgBin, 'postgres'), '-D', pgData, '-k', pgSock, '-p', String(pgPort),
      '-c', 'listen_addresses=', '-c', 'shared_buffers=32MB', '-c', 'fsync=off', '-c', 'synchronous_commit=off',
      '-c', 'full_page_writes=off', '-c', 'min_wal_size=32MB', '-c', 'max_wal_size=64MB', '-c', 'max_connections=60',
    ], { env: process.env, cwd: stack.labDir, logFile: path.join(stack.labDir, 'postgres.log') });
    const pg = ['-h', pgSock, '-p', String(pgPort)];
    await waitFor('PostgreSQL to accept connections', async () => {
      const r = await runCommand(path.join(pgBin, 'pg_isready'), [...pg, '-q'], { env: process.env, timeoutMs: 5000 });
      return r.exitCode === 0;
    }, 30_000, stack.postgres);
    await must('create the zabbix role and database', path.join(pgBin, 'psql'), [
      ...pg, '-U', 'postgres', '-v', 'ON_ERROR_STOP=1', '-q',
      '-c', "create role zabbix login password 'zabbix'",
      '-c', "create database zabbix owner zabbix template template0 encoding 'UTF8'",
    ]);
    t('postgres', t0);

    // --- Schema: restore the cached dump, or load the package's SQL and cache it.
    t0 = Date.now();
    const cacheFile = path.join(ZABBIX_CACHE_DIR, `zabbix-schema-${await schemaCacheKey(pgBin)}.dump`);
    if (fs.existsSync(cacheFile)) {
      stack.schemaFromCache = true;
      await must('pg_restore of the cached schema', path.join(pgBin, 'pg_restore'), [...pg, '-U', 'zabbix', '-d', 'zabbix', '-j', '2', '--no-owner', cacheFile], 300_000);
    } else {
      for (const f of SCHEMA_FILES) {
        const sqlFile = path.join(stack.labDir, f.replace(/\.gz$/, ''));
        fs.writeFileSync(sqlFile, zlib.gunzipSync(fs.readFileSync(path.join(ZABBIX_SCHEMA_DIR, f))));
        await must(`psql ${f}`, path.join(pgBin, 'psql'), [...pg, '-U', 'zabbix', '-d', 'zabbix', '-q', '-v', 'ON_ERROR_STOP=1', '-f', sqlFile], 300_000);
        fs.rmSync(sqlFile);
      }
      fs.mkdirSync(ZABBIX_CACHE_DIR, { recursive: true });
      const tmp = `${cacheFile}.${process.pid}.tmp`;
      await must('pg_dump of the schema', path.join(pgBin, 'pg_dump'), [...pg, '-U', 'zabbix', '-Fc', '-f', tmp, 'zabbix'], 300_000);
      fs.renameSync(tmp, cacheFile); // atomic: a concurrent run sees the whole file or none
    }
    t('schema', t0);

    // --- zabbix_server, as zabbix, in the foreground.
    t0 = Date.now();
    const runDir = path.join(stack.labDir, 'server');
    fs.mkdirSync(runDir);
    stack.serverPort = await freeTcpPortIn(20000, 32767);
    stack.serverLogFile = path.join(runDir, 'zabbix_server.log');
    const serverConf = path.join(runDir, 'zabbix_server.conf');
    fs.writeFileSync(serverConf, [
      'ListenIP=127.0.0.1', `ListenPort=${stack.serverPort}`, `SocketDir=${runDir}`,
      `PidFile=${path.join(runDir, 'zabbix_server.pid')}`, `LogFile=${stack.serverLogFile}`, 'LogFileSize=0',
      `DBHost=${pgSock}`, `DBPort=${pgPort}`, 'DBName=zabbix', 'DBUser=zabbix', 'DBPassword=zabbix',
      'Timeout=3', 'StartPollers=2', 'StartPollersUnreachable=1', 'StartPreprocessors=1', 'StartTrappers=1',
      'StartHistoryPollers=1', 'StartLLDProcessors=1', 'StartDBSyncers=1', 'StartPingers=0', 'StartDiscoverers=0',
      'StartHTTPPollers=0', 'StartODBCPollers=0', 'StartReportWriters=0', 'StartAlerters=1', 'StartEscalators=1',
      'HousekeepingFrequency=0', 'CacheUpdateFrequency=2', 'CacheSize=16M', 'HistoryCacheSize=8M',
      'HistoryIndexCacheSize=4M', 'TrendCacheSize=4M', 'ValueCacheSize=8M',
      'UnreachablePeriod=10', 'UnreachableDelay=5', 'UnavailableDelay=10',
      ...(opts.serverConfig ?? []),
    ].join('\n') + '\n');
    chownTree(runDir, zbxUser);
    stack.server = await spawnManaged(asUser(zbxUser)[0], [...asUser(zbxUser).slice(1), ZABBIX_SERVER_BINARY, '-f', '-c', serverConf], {
      env: process.env, cwd: runDir,
    });
    await waitFor('zabbix_server to start its trapper', () => /server #\d+ started \[trapper/.test(stack.serverLog()), 60_000, stack.server, () => stack.serverLog());
    t('zabbix_server', t0);

    // --- The frontend: a hard-link copy whose CConfigFile reads our config file.
    t0 = Date.now();
    const webDir = path.join(stack.labDir, 'web');
    const copy = await runCommand('cp', ['-al', ZABBIX_FRONTEND_DIR, webDir], { env: process.env });
    if (copy.exitCode !== 0) {
      fs.rmSync(webDir, { recursive: true, force: true }); // another filesystem: a real copy (38 MB)
      await must('copy the Zabbix frontend', 'cp', ['-r', ZABBIX_FRONTEND_DIR, webDir]);
    }
    const configClass = path.join(webDir, 'include', 'classes', 'core', 'CConfigFile.php');
    const confPhp = path.join(webDir, 'conf', 'zabbix.conf.php');
    const source = fs.readFileSync(configClass, 'utf8');
    if (!source.includes(CONFIG_FILE_CONSTANT)) throw new Error(`${configClass} does not name ${CONFIG_FILE_CONSTANT}: another frontend version?`);
    fs.rmSync(configClass); // a hard link: writing through it would change the installed file
    fs.writeFileSync(configClass, source.replace(CONFIG_FILE_CONSTANT, `'${confPhp}'`));
    fs.writeFileSync(confPhp, [
      '<?php',
      `$DB['TYPE'] = 'POSTGRESQL';`,
      `$DB['SERVER'] = '${pgSock}';`,
      `$DB['PORT'] = '${pgPort}';`,
      `$DB['DATABASE'] = 'zabbix';`,
      `$DB['USER'] = 'zabbix';`,
      `$DB['PASSWORD'] = 'zabbix';`,
      ...['SCHEMA', 'KEY_FILE', 'CERT_FILE', 'CA_FILE', 'CIPHER_LIST', 'VAULT_URL', 'VAULT_DB_PATH', 'VAULT_TOKEN'].map((k) => `$DB['${k}'] = '';`),
      `$DB['ENCRYPTION'] = false;`,
      `$DB['VERIFY_HOST'] = false;`,
      `$DB['DOUBLE_IEEE754'] = true;`,
      `$ZBX_SERVER = '127.0.0.1';`,
      `$ZBX_SERVER_PORT = '${stack.serverPort}';`,
      `$ZBX_SERVER_NAME = 'vmm-agentx test';`,
      '$IMAGE_FORMAT_DEFAULT = IMAGE_FORMAT_PNG;',
      '',
    ].join('\n'));
    const webPort = await freeTcpPort();
    stack.apiUrl = `http://127.0.0.1:${webPort}/api_jsonrpc.php`;
    stack.web = await spawnManaged(asUser(zbxUser)[0], [
      ...asUser(zbxUser).slice(1), 'php', '-d', 'memory_limit=512M', '-d', 'max_execution_time=300', '-d', 'post_max_size=32M',
      '-S', `127.0.0.1:${webPort}`, '-t', webDir,
    ], { env: { ...process.env, PHP_CLI_SERVER_WORKERS: '2' }, cwd: webDir, logFile: path.join(stack.labDir, 'php.log') });
    await waitFor('the Zabbix API to answer apiinfo.version', async () => {
      try {
        stack.version = await stack.call<string>('apiinfo.version', {});
        return true;
      } catch {
        return false;
      }
    }, 30_000, stack.web);
    await stack.login();
    t('frontend', t0);
    return stack;
  } catch (err) {
    const context = `\nzabbix_server log tail:\n${tail(stack.serverLog(), 30)}\n${tail(stack.daemonOutput(), 30)}`;
    await stack.stop().catch(() => undefined);
    if (err instanceof Error) err.message += context;
    throw err;
  }
}

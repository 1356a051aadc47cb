// Where the master agent listens. Net-SNMP writes agentXSocket as
// "unix:/path", "tcp:host:port" or a bare path (a unix socket); we accept the
// same spellings so one config line works for both sides.
import * as net from 'net';

export type AgentxAddress =
  | { kind: 'unix'; path: string }
  | { kind: 'tcp'; host: string; port: number };

export function parseAgentxAddress(text: string): AgentxAddress {
  const t = text.trim();
  if (t.startsWith('unix:')) {
    const path = t.slice(5);
    if (!path) throw new Error(`invalid AgentX address "${text}": empty socket path`);
    return { kind: 'unix', path };
  }
  if (t.startsWith('/')) return { kind: 'unix', path: t };
  const body = t.startsWith('tcp:') ? t.slice(4) : t;
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(body);
  if (!m) {
    throw new Error(`invalid AgentX address "${text}": use unix:/path/to/socket or tcp:host:port`);
  }
  const port = Number(m[3]);
  if (port < 1 || port > 65535) throw new Error(`invalid AgentX address "${text}": port out of range`);
  return { kind: 'tcp', host: m[1] ?? m[2], port };
}

export function formatAgentxAddress(a: AgentxAddress): string {
  return a.kind === 'unix' ? `unix:${a.path}` : `tcp:${a.host}:${a.port}`;
}

/** Opens a stream to the master; the caller listens for 'connect'/'error'/'close'. */
export function connectAgentx(a: AgentxAddress): net.Socket {
  if (a.kind === 'unix') return net.createConnection({ path: a.path });
  const socket = net.createConnection({ host: a.host, port: a.port });
  // One GetNext round trip per returned varbind: Nagle would add a delay to each.
  socket.setNoDelay(true);
  return socket;
}

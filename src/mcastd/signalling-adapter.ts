// Opens the daemon's signalling endpoint from its configuration.
import type { CollectorLog } from '../collectors/paths';
import type { MessageKey } from './auth';
import type { McastdConfig } from './config';
import { SignallingEndpoint } from './signalling';
import { senderIdFor } from './wire';

export type SignallingHandle = SignallingEndpoint;

export function openSignalling(config: Pick<McastdConfig, 'listen' | 'port' | 'name' | 'peers'>, key: MessageKey, log: CollectorLog): Promise<SignallingEndpoint> {
  const v6 = config.listen.find((a) => a.includes(':')) ?? null;
  const v4 = config.listen.find((a) => !a.includes(':')) ?? null;
  const names = new Map(config.peers.map((p) => [senderIdFor(p.name).toString('hex'), p.name]));
  return SignallingEndpoint.open({
    key, senderId: senderIdFor(config.name), port: config.port, bindAddress6: v6, bindAddress4: v4, log,
    senderName: (id) => names.get(id.toString('hex')),
  });
}

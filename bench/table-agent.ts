// A subagent built on agentx/ that serves the same 3-column table as the floor
// responder (1.3.6.1.3.9999.10), plus one writable scalar. Used by the AgentX
// bench and by the integration tests (as a separate process where a test must
// show the process survives its master).
//
//   node dist/bench/table-agent.js <agentx-address> <rows>
import { AgentxSession, MibViewBuilder, Oid, Responder, ResponseError, Value, ValueType } from '../agentx';
import type { AgentxLog } from '../agentx';
import { FLOOR_ENTRY_OID, floorTableRows } from './floor-responder';

export const DEMO_SUBTREE: Oid = [1, 3, 6, 1, 3, 9999];
/** Writable Integer32 scalar 1.3.6.1.3.9999.1.0, accepting 0..100. */
export const DEMO_WRITABLE: Oid = [1, 3, 6, 1, 3, 9999, 1];
export const DEMO_CAPS: Oid = [1, 3, 6, 1, 3, 9999, 2];

export interface TableAgent {
  session: AgentxSession;
  responder: Responder;
  writableValue(): number;
  stop(): Promise<void>;
}

export function demoView(rows: number, writable: number) {
  const b = new MibViewBuilder();
  b.declareObject(DEMO_WRITABLE).add([...DEMO_WRITABLE, 0], { type: ValueType.Integer, value: writable });
  for (let column = 1; column <= 3; column++) b.declareObject([...FLOOR_ENTRY_OID, column]);
  for (const row of floorTableRows(rows)) {
    const v = row.value;
    const value: Value = v.type === 'Integer' ? { type: ValueType.Integer, value: v.value }
      : v.type === 'OctetString' ? { type: ValueType.OctetString, value: Buffer.from(v.value, 'utf8') }
        : { type: ValueType.Counter64, value: v.value };
    b.add(row.oid, value);
  }
  return b.build();
}

export async function startTableAgent(address: string, rows: number, log?: AgentxLog): Promise<TableAgent> {
  const responder = new Responder({ log });
  let value = 42;
  let previous = value;
  responder.publish(demoView(rows, value));
  responder.addWritable(DEMO_WRITABLE, {
    test: (oid, v) => {
      if (oid.length !== DEMO_WRITABLE.length + 1 || oid[oid.length - 1] !== 0) return ResponseError.NoCreation;
      if (v.type !== ValueType.Integer) return ResponseError.WrongType;
      return v.value >= 0 && v.value <= 100 ? ResponseError.NoError : ResponseError.WrongValue;
    },
    commit: (_oid, v) => {
      previous = value;
      value = v.type === ValueType.Integer ? v.value : value;
      responder.publish(demoView(rows, value));
      return ResponseError.NoError;
    },
    undo: () => {
      value = previous;
      responder.publish(demoView(rows, value));
      return ResponseError.NoError;
    },
  });
  const session = new AgentxSession({ address, description: 'vmm-agentx demo table', log }, responder);
  await session.register({ subtree: DEMO_SUBTREE });
  await session.addAgentCaps({ id: DEMO_CAPS, description: 'vmm-agentx demo table capabilities' });
  const opened = new Promise<void>((resolve) => session.once('open', () => resolve()));
  session.start();
  await opened;
  return { session, responder, writableValue: () => value, stop: () => session.close() };
}

async function main(): Promise<void> {
  const [address, rowsText] = process.argv.slice(2);
  const rows = Number(rowsText);
  if (!address || !Number.isInteger(rows) || rows < 0) {
    process.stderr.write('usage: table-agent <agentx-address> <rows>\n');
    process.exit(2);
  }
  const log: AgentxLog = (level, message) => process.stderr.write(`${level}: ${message}\n`);
  const agent = await startTableAgent(address, rows, log);
  agent.session.on('open', () => process.stdout.write('open\n'));
  process.stdout.write('ready\n');
  const stop = (): void => void agent.stop().then(() => process.exit(0));
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

if (require.main === module) void main();

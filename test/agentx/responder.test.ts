import { Responder } from '../../agentx/responder';
import { MibView, MibViewBuilder, releaseView } from '../../agentx/view';
import { answerRequest } from '../../agentx/dispatch';
import { PduType, ResponseError, ValueType } from '../../agentx/pdu';
import type { Oid, Pdu, SearchRange, Value, VarBind } from '../../agentx/pdu';
import type { RequestContext, WritableObject } from '../../agentx/handler';
import { formatOid, parseOid } from '../../agentx/oid';
import type { LogLevel } from '../../agentx/log';

const o = parseOid;
const int = (value: number): Value => ({ type: ValueType.Integer, value });
const str = (text: string): Value => ({ type: ValueType.OctetString, value: Buffer.from(text) });
const ctx = (over: Partial<RequestContext> = {}): RequestContext => ({ sessionId: 1, transactionId: 1, packetId: 1, ...over });

// Enterprise 99: scalars .1.1.0 (read-only) and .1.2.0 (writable), a table
// with columns 2 and 3 (rows 1 and 7; column 3 writable) and an empty column 4.
const SCALAR_RO = '1.3.6.1.4.1.99.1.1';
const SCALAR_RW = '1.3.6.1.4.1.99.1.2';
const COL2 = '1.3.6.1.4.1.99.2.1.2';
const COL3 = '1.3.6.1.4.1.99.2.1.3';
const COL4 = '1.3.6.1.4.1.99.2.1.4';

function fixtureView(name = 'host', rows: number[] = [1, 7]): MibView {
  const builder = new MibViewBuilder();
  for (const object of [SCALAR_RO, SCALAR_RW, COL2, COL3, COL4]) builder.declareObject(o(object));
  builder.add(o(`${SCALAR_RO}.0`), int(11)).add(o(`${SCALAR_RW}.0`), str(name));
  for (const row of rows) builder.add(o(`${COL2}.${row}`), int(200 + row));
  for (const row of rows) builder.add(o(`${COL3}.${row}`), int(300 + row));
  return builder.build();
}

function range(start: string, include = false, end = ''): SearchRange {
  return { start: o(start), include, end: o(end) };
}

/** "name=type:value" for compact table assertions. */
function show(vb: VarBind): string {
  const name = formatOid(vb.oid);
  switch (vb.type) {
    case ValueType.NoSuchObject:
      return `${name}=noSuchObject`;
    case ValueType.NoSuchInstance:
      return `${name}=noSuchInstance`;
    case ValueType.EndOfMibView:
      return `${name}=endOfMibView`;
    case ValueType.OctetString:
      return `${name}="${vb.value.toString()}"`;
    case ValueType.Integer:
      return `${name}=${vb.value}`;
    default:
      return `${name}=type${vb.type}`;
  }
}

function newResponder(): { responder: Responder; logs: [LogLevel, string][] } {
  const logs: [LogLevel, string][] = [];
  const responder = new Responder({ strict: false, log: (level, msg) => logs.push([level, msg]) });
  responder.publish(fixtureView());
  return { responder, logs };
}

describe('Get (RFC 2741 §7.2.3.1)', () => {
  const { responder } = newResponder();
  test.each([
    ['scalar instance', `${SCALAR_RW}.0`, `${SCALAR_RW}.0="host"`],
    ['table instance', `${COL3}.7`, `${COL3}.7=307`],
    ['scalar object without .0', SCALAR_RO, `${SCALAR_RO}=noSuchInstance`],
    ['wrong scalar instance', `${SCALAR_RO}.1`, `${SCALAR_RO}.1=noSuchInstance`],
    ['missing row of a column', `${COL2}.5`, `${COL2}.5=noSuchInstance`],
    ['column without any instance', `${COL4}.1`, `${COL4}.1=noSuchInstance`],
    ['below an instance', `${COL2}.1.0`, `${COL2}.1.0=noSuchInstance`],
    ['parent of objects', '1.3.6.1.4.1.99.2.1', '1.3.6.1.4.1.99.2.1=noSuchObject'],
    ['undeclared sibling column', '1.3.6.1.4.1.99.2.1.5.1', '1.3.6.1.4.1.99.2.1.5.1=noSuchObject'],
    ['elsewhere', '1.3.6.1.2.1.1.1.0', '1.3.6.1.2.1.1.1.0=noSuchObject'],
  ])('%s', (_name, oid, expected) => {
    expect(responder.get([range(oid)], ctx()).map(show)).toEqual([expected]);
  });

  test('several ranges are answered in order; names echo the request even when end is set', () => {
    const answer = responder.get([range(`${COL2}.7`, false, '1.9'), range('1.2'), range(`${SCALAR_RO}.0`, true)], ctx());
    expect(answer.map(show)).toEqual([`${COL2}.7=207`, '1.2=noSuchObject', `${SCALAR_RO}.0=11`]);
    expect(responder.get([], ctx())).toEqual([]);
  });
});

describe('GetNext (RFC 2741 §7.2.3.2)', () => {
  const { responder } = newResponder();
  test.each([
    ['from the root', range('1'), `${SCALAR_RO}.0=11`],
    ['from an empty OID', range(''), `${SCALAR_RO}.0=11`],
    ['exclusive start skips the instance', range(`${SCALAR_RO}.0`), `${SCALAR_RW}.0="host"`],
    ['inclusive start returns the instance', range(`${SCALAR_RO}.0`, true), `${SCALAR_RO}.0=11`],
    ['between rows', range(`${COL2}.3`), `${COL2}.7=207`],
    ['end of one column crosses into the next', range(`${COL2}.7`), `${COL3}.1=301`],
    ['end at the column boundary stops the crossing', range(`${COL2}.7`, false, COL3), `${COL2}.7=endOfMibView`],
    ['end equal to the next instance is exclusive', range(`${COL2}.1`, false, `${COL2}.7`), `${COL2}.1=endOfMibView`],
    ['end just after the next instance', range(`${COL2}.1`, false, `${COL2}.7.0`), `${COL2}.7=207`],
    ['inclusive start equal to end', range(`${COL2}.1`, true, `${COL2}.1`), `${COL2}.1=endOfMibView`],
    ['empty column passes to nothing', range(COL4), `${COL4}=endOfMibView`],
    ['last instance', range(`${COL3}.7`), `${COL3}.7=endOfMibView`],
    ['after everything', range('1.3.6.1.4.1.100', true), '1.3.6.1.4.1.100=endOfMibView'],
  ])('%s', (_name, request, expected) => {
    expect(responder.getNext([request], ctx()).map(show)).toEqual([expected]);
  });
});

describe('GetBulk (RFC 2741 §7.2.3.3)', () => {
  const { responder } = newResponder();
  test.each<[string, number, number, SearchRange[], string[]]>([
    ['no repeaters', 2, 5, [range(SCALAR_RO), range(SCALAR_RW)], [`${SCALAR_RO}.0=11`, `${SCALAR_RW}.0="host"`]],
    ['more non-repeaters than ranges', 9, 5, [range(SCALAR_RO)], [`${SCALAR_RO}.0=11`]],
    ['max-repetitions 0 answers only the non-repeaters', 1, 0, [range(SCALAR_RO), range(COL2)], [`${SCALAR_RO}.0=11`]],
    ['max-repetitions 0 and no non-repeaters', 0, 0, [range(COL2)], []],
    ['no ranges', 0, 5, [], []],
    ['negative non-repeaters count as 0', -3, 1, [range(COL2)], [`${COL2}.1=201`]],
    [
      'one non-repeater then rows over two columns',
      1,
      2,
      [range(SCALAR_RO), range(COL2), range(COL3)],
      [`${SCALAR_RO}.0=11`, `${COL2}.1=201`, `${COL3}.1=301`, `${COL2}.7=207`, `${COL3}.7=307`],
    ],
    [
      'a repeater runs to endOfMibView once and then the request stops',
      0,
      10,
      [range(`${COL3}.1`)],
      [`${COL3}.7=307`, `${COL3}.7=endOfMibView`],
    ],
    [
      'an ended repeater keeps its slot while another continues; all ended stops',
      0,
      10,
      [range(`${COL2}.1`, false, COL3), range(`${COL2}.1`)],
      [
        `${COL2}.7=207`,
        `${COL2}.7=207`,
        `${COL2}.7=endOfMibView`,
        `${COL3}.1=301`,
        `${COL2}.7=endOfMibView`,
        `${COL3}.7=307`,
        `${COL2}.7=endOfMibView`,
        `${COL3}.7=endOfMibView`,
      ],
    ],
    ['the include flag applies to the first row only', 0, 2, [range(`${COL2}.1`, true)], [`${COL2}.1=201`, `${COL2}.7=207`]],
    ['a repeater beyond the view', 0, 3, [range('1.4')], ['1.4=endOfMibView']],
  ])('%s', (_name, nonRepeaters, maxRepetitions, ranges, expected) => {
    expect(responder.getBulk(nonRepeaters, maxRepetitions, ranges, ctx()).map(show)).toEqual(expected);
  });

  test('an ended repeater is not searched again', () => {
    const view = fixtureView();
    const next = jest.spyOn(view, 'next');
    const spied = new Responder();
    spied.publish(view);
    const answer = spied.getBulk(0, 10, [range(`${COL2}.1`, false, COL3), range(`${COL2}.1`)], ctx());
    expect(answer).toHaveLength(8);
    // Column 1 searches twice (207, then its end); column 2 searches in all four rows.
    expect(next).toHaveBeenCalledTimes(6);
  });

  test('the total is capped in whole rows', () => {
    const logs: [LogLevel, string][] = [];
    const capped = new Responder({ maxBulkVarBinds: 6, log: (level, msg) => logs.push([level, msg]) });
    const builder = new MibViewBuilder();
    for (let i = 1; i <= 100; i++) builder.add([1, 5, i], int(i));
    capped.publish(builder.build());
    const answer = capped.getBulk(1, 1000, [range('1.5'), range('1.5'), range('1.5.50')], ctx());
    // 1 non-repeater + 2 rows of 2 repeaters; a third row would exceed 6.
    expect(answer.map(show)).toEqual(['1.5.1=1', '1.5.1=1', '1.5.51=51', '1.5.2=2', '1.5.52=52']);
    expect(logs).toEqual([['debug', expect.stringContaining('capped at 2 rows')]]);
    // One row is always answered, however many repeaters there are.
    const wide = capped.getBulk(0, 5, Array.from({ length: 8 }, () => range('1.5')), ctx());
    expect(wide).toHaveLength(8);
  });

  test('the default cap stops a huge request', () => {
    const builder = new MibViewBuilder();
    for (let i = 1; i <= 5000; i++) builder.add([1, 5, i], int(i));
    const responder = new Responder();
    responder.publish(builder.build());
    expect(responder.getBulk(0, 65535, [range('1.5')], ctx())).toHaveLength(1000);
  });
});

describe('contexts and view swaps', () => {
  test('a named context has its own view; an unknown context finds nothing', () => {
    const { responder } = newResponder();
    responder.publish(fixtureView('guest'), Buffer.from('vm7'));
    const inContext = ctx({ context: Buffer.from('vm7') });
    expect(responder.get([range(`${SCALAR_RW}.0`)], inContext).map(show)).toEqual([`${SCALAR_RW}.0="guest"`]);
    expect(responder.get([range(`${SCALAR_RW}.0`)], ctx()).map(show)).toEqual([`${SCALAR_RW}.0="host"`]);

    const unknown = ctx({ context: Buffer.from('vm8') });
    expect(responder.get([range(`${SCALAR_RW}.0`)], unknown).map(show)).toEqual([`${SCALAR_RW}.0=noSuchObject`]);
    expect(responder.getNext([range('1')], unknown).map(show)).toEqual(['1=endOfMibView']);
    expect(responder.getBulk(0, 3, [range('1')], unknown).map(show)).toEqual(['1=endOfMibView']);
    // An empty context name is a context of its own, not the default one (RFC 2741 §6.1.1).
    expect(responder.get([range(`${SCALAR_RW}.0`)], ctx({ context: Buffer.alloc(0) })).map(show)).toEqual([
      `${SCALAR_RW}.0=noSuchObject`,
    ]);
  });

  test('a responder without any view answers as for an unknown context', () => {
    const responder = new Responder();
    expect(responder.get([range('1.3')], ctx()).map(show)).toEqual(['1.3=noSuchObject']);
    expect(responder.getNext([range('1.3')], ctx()).map(show)).toEqual(['1.3=endOfMibView']);
  });

  test('the next request after publish sees only the new view; earlier answers are unaffected', () => {
    const { responder } = newResponder();
    const before = responder.getNext([range(`${COL2}.1`)], ctx());
    responder.publish(fixtureView('renamed', [1, 3]));
    const after = responder.getNext([range(`${COL2}.1`)], ctx());
    expect(before.map(show)).toEqual([`${COL2}.7=207`]);
    expect(after.map(show)).toEqual([`${COL2}.3=203`]);
    expect(responder.get([range(`${COL2}.7`), range(`${SCALAR_RW}.0`)], ctx()).map(show)).toEqual([
      `${COL2}.7=noSuchInstance`,
      `${SCALAR_RW}.0="renamed"`,
    ]);
  });
});

describe('publishing views: only the responder releases them', () => {
  const detached = (view: MibView): boolean => {
    const values = view.values as unknown as { kinds: Uint8Array };
    return values.kinds.buffer.byteLength === 0;
  };

  test('publish releases the view it replaces at once; reading that view then throws', () => {
    const { responder } = newResponder();
    const first = fixtureView('first');
    responder.publish(first);
    responder.publish(fixtureView('second'));
    expect(first.released).toBe(true);
    expect(detached(first)).toBe(true);
    expect(() => first.get(o(`${SCALAR_RW}.0`))).toThrow('read after release');
    expect(responder.get([range(`${SCALAR_RW}.0`)], ctx()).map(show)).toEqual([`${SCALAR_RW}.0="second"`]);
  });

  test('a view patched by withValues() shares its values: publishing it releases nothing, the next rebuilt view releases both', () => {
    const responder = new Responder({ strict: true });
    const built = fixtureView();
    responder.publish(built);
    const patched = built.withValues([{ oid: o(`${SCALAR_RW}.0`), ...str('patched') }]);
    responder.publish(patched);
    expect(built.released).toBe(false);
    expect(responder.get([range(`${SCALAR_RW}.0`), range(`${COL2}.7`)], ctx()).map(show)).toEqual([
      `${SCALAR_RW}.0="patched"`,
      `${COL2}.7=207`,
    ]);
    responder.publish(fixtureView('rebuilt'));
    expect(patched.released).toBe(true);
    expect(built.released).toBe(true);
    expect(detached(built)).toBe(true);
  });

  test('the view served, published again or served in another context, is not released', () => {
    const responder = new Responder({ strict: true });
    const shared = fixtureView('shared');
    responder.publish(shared);
    responder.publish(shared);
    expect(shared.released).toBe(false);
    const vm7 = Buffer.from('vm7');
    responder.publish(shared, vm7);
    responder.publish(fixtureView('default'));
    expect(shared.released).toBe(false);
    expect(responder.get([range(`${SCALAR_RW}.0`)], ctx({ context: vm7 })).map(show)).toEqual([`${SCALAR_RW}.0="shared"`]);
    responder.publish(fixtureView('guest'), vm7);
    expect(shared.released).toBe(true);
  });

  test('a view released behind the responder\'s back: thrown in strict mode, never answered as empty', () => {
    const responder = new Responder({ strict: true });
    const view = fixtureView();
    responder.publish(view);
    releaseView(view);
    expect(() => responder.get([range(`${SCALAR_RW}.0`)], ctx())).toThrow('released while still served');
    expect(() => responder.getNext([range('1')], ctx())).toThrow('released while still served');
    expect(() => responder.getBulk(0, 5, [range('1')], ctx())).toThrow('released while still served');
  });

  test('a view released behind the responder\'s back: otherwise logged once and answered genErr until the next publish', () => {
    const { responder, logs } = newResponder();
    const view = fixtureView();
    responder.publish(view);
    releaseView(view);
    const getNext: Pdu = { type: PduType.GetNext, flags: 0, sessionId: 1, transactionId: 1, packetId: 9, ranges: [range('1')] };
    for (let i = 0; i < 3; i++) {
      expect(answerRequest(getNext, responder)).toMatchObject({ type: PduType.Response, packetId: 9, error: ResponseError.GenErr, index: 1, varbinds: [] });
    }
    const bulk: Pdu = { type: PduType.GetBulk, flags: 0, sessionId: 1, transactionId: 2, packetId: 10, nonRepeaters: 0, maxRepetitions: 5, ranges: [range('1')] };
    expect(answerRequest(bulk, responder)).toMatchObject({ error: ResponseError.GenErr, index: 1 });
    expect(logs).toEqual([['error', expect.stringContaining('released while still served')]]);
    responder.publish(fixtureView('again'));
    expect(answerRequest(getNext, responder)).toMatchObject({ error: ResponseError.NoError, varbinds: [expect.objectContaining({ type: ValueType.Integer, value: 11 })] });
  });

  test('a released view is never published: thrown in strict mode, otherwise logged and the view before kept', () => {
    const released = fixtureView('released');
    releaseView(released);
    expect(() => new Responder({ strict: true }).publish(released)).toThrow('a released view was published');
    const { responder, logs } = newResponder();
    responder.publish(released);
    expect(logs).toEqual([['error', expect.stringContaining('a released view was published')]]);
    expect(responder.get([range(`${SCALAR_RW}.0`)], ctx()).map(show)).toEqual([`${SCALAR_RW}.0="host"`]);
  });
});

describe('self-check of GetNext answers (libagentx L7)', () => {
  function lyingResponder(strict: boolean, answer: string): { responder: Responder; logs: [LogLevel, string][] } {
    const logs: [LogLevel, string][] = [];
    const view = fixtureView();
    jest.spyOn(view, 'next').mockReturnValue({ type: ValueType.Integer, value: 1, oid: o(answer) });
    const responder = new Responder({ strict, log: (level, msg) => logs.push([level, msg]) });
    responder.publish(view);
    return { responder, logs };
  }

  test.each([
    ['not advancing past an exclusive start', range(`${COL2}.7`), `${COL2}.7`, 'not after the start'],
    ['going backwards', range(`${COL2}.7`, true), `${COL2}.1`, 'not after the start'],
    ['reaching the end', range(`${COL2}.1`, false, COL3), `${COL3}.1`, 'not before the end'],
  ])('%s: logged and answered endOfMibView, or thrown in strict mode', (_name, request, answer, reason) => {
    const lenient = lyingResponder(false, answer);
    expect(lenient.responder.getNext([request], ctx()).map(show)).toEqual([`${formatOid(request.start)}=endOfMibView`]);
    expect(lenient.logs).toEqual([['error', expect.stringContaining(reason)]]);
    expect(lenient.responder.getBulk(0, 2, [request], ctx()).map(show)).toEqual([`${formatOid(request.start)}=endOfMibView`]);

    const strict = lyingResponder(true, answer);
    expect(() => strict.responder.getNext([request], ctx())).toThrow(reason);
  });

  test('an inclusive start may be answered by itself', () => {
    const { responder, logs } = lyingResponder(true, `${COL2}.7`);
    expect(responder.getNext([range(`${COL2}.7`, true, COL3)], ctx()).map(show)).toEqual([`${COL2}.7=1`]);
    expect(logs).toEqual([]);
  });
});

/** A writable object that records every call and answers from per-OID scripts. */
class RecordingObject implements WritableObject {
  constructor(
    private readonly name: string,
    private readonly calls: string[],
    private readonly failures: Partial<Record<'test' | 'commit' | 'undo', Record<string, ResponseError>>> = {},
  ) {}
  test(oid: Oid, value: Value): ResponseError {
    return this.record('test', oid, value);
  }
  commit(oid: Oid, value: Value): ResponseError {
    return this.record('commit', oid, value);
  }
  undo(oid: Oid, value: Value): ResponseError {
    return this.record('undo', oid, value);
  }
  cleanup(oid: Oid, value: Value): void {
    this.record('cleanup', oid, value);
  }
  private record(phase: 'test' | 'commit' | 'undo' | 'cleanup', oid: Oid, value: Value): ResponseError {
    const shown = value.type === ValueType.OctetString ? `"${value.value.toString()}"` : 'value' in value ? String(value.value) : '-';
    this.calls.push(`${this.name}.${phase} ${formatOid(oid)}=${shown}`);
    if (phase === 'cleanup') return ResponseError.NoError;
    return this.failures[phase]?.[formatOid(oid)] ?? ResponseError.NoError;
  }
}

function setFixture(
  failures: ConstructorParameters<typeof RecordingObject>[2] = {},
): { responder: Responder; calls: string[]; logs: [LogLevel, string][] } {
  const { responder, logs } = newResponder();
  const calls: string[] = [];
  responder.addWritable(o(SCALAR_RW), new RecordingObject('scalar', calls, failures));
  responder.addWritable(o(COL3), new RecordingObject('column', calls, failures));
  return { responder, calls, logs };
}

const vb = (oid: string, value: Value): VarBind => Object.assign({ oid: o(oid) }, value);
const ok = { error: ResponseError.NoError, index: 0 };

describe('Set phases (RFC 2741 §7.2.4)', () => {
  test('test, commit and cleanup of two varbinds', () => {
    const { responder, calls } = setFixture();
    const varbinds = [vb(`${SCALAR_RW}.0`, str('new')), vb(`${COL3}.9`, int(5))];
    expect(responder.testSet(varbinds, ctx())).toEqual(ok);
    expect(responder.commitSet(ctx())).toEqual(ok);
    responder.cleanupSet(ctx());
    expect(calls).toEqual([
      `scalar.test ${SCALAR_RW}.0="new"`,
      `column.test ${COL3}.9=5`,
      `scalar.commit ${SCALAR_RW}.0="new"`,
      `column.commit ${COL3}.9=5`,
      `scalar.cleanup ${SCALAR_RW}.0="new"`,
      `column.cleanup ${COL3}.9=5`,
    ]);
    expect(responder.openTransactions).toBe(0);
  });

  test.each([
    ['wrongType', ResponseError.WrongType],
    ['wrongValue', ResponseError.WrongValue],
    ['inconsistentValue', ResponseError.InconsistentValue],
  ])('a handler answering %s fails the test at its 1-based index', (_name, error) => {
    const { responder, calls } = setFixture({ test: { [`${COL3}.1`]: error } });
    const varbinds = [vb(`${SCALAR_RW}.0`, str('a')), vb(`${COL3}.1`, str('not a number')), vb(`${COL3}.7`, int(1))];
    expect(responder.testSet(varbinds, ctx())).toEqual({ error, index: 2 });
    expect(calls).toEqual([`scalar.test ${SCALAR_RW}.0="a"`, `column.test ${COL3}.1="not a number"`]);
    // The master follows a failed TestSet with CleanupSet: only what passed the test is cleaned up.
    responder.cleanupSet(ctx());
    expect(calls.slice(2)).toEqual([`scalar.cleanup ${SCALAR_RW}.0="a"`]);
  });

  test.each([
    ['a read-only instance that exists', `${SCALAR_RO}.0`],
    ['a read-only column', `${COL2}.1`],
    ['an absent object', '1.3.6.1.4.1.99.3.0'],
    ['the parent of a writable object', '1.3.6.1.4.1.99.1'],
  ])('notWritable for %s', (_name, oid) => {
    const { responder, calls } = setFixture();
    expect(responder.testSet([vb(`${SCALAR_RW}.0`, str('a')), vb(oid, int(1))], ctx())).toEqual({
      error: ResponseError.NotWritable,
      index: 2,
    });
    expect(calls).toEqual([`scalar.test ${SCALAR_RW}.0="a"`]);
    expect(responder.commitSet(ctx()).error).toBe(ResponseError.ProcessingError);
  });

  test('a failed commit undoes the earlier commits, last first, and answers commitFailed', () => {
    const { responder, calls } = setFixture({ commit: { [`${COL3}.7`]: ResponseError.ResourceUnavailable } });
    const varbinds = [vb(`${SCALAR_RW}.0`, str('x')), vb(`${COL3}.1`, int(1)), vb(`${COL3}.7`, int(7)), vb(`${COL3}.9`, int(9))];
    expect(responder.testSet(varbinds, ctx())).toEqual(ok);
    calls.length = 0;
    expect(responder.commitSet(ctx())).toEqual({ error: ResponseError.CommitFailed, index: 3 });
    expect(calls).toEqual([
      `scalar.commit ${SCALAR_RW}.0="x"`,
      `column.commit ${COL3}.1=1`,
      `column.commit ${COL3}.7=7`,
      `column.undo ${COL3}.1=1`,
      `scalar.undo ${SCALAR_RW}.0="x"`,
    ]);
    // An UndoSet that follows has nothing left to undo.
    calls.length = 0;
    expect(responder.undoSet(ctx())).toEqual(ok);
    expect(calls).toEqual([]);
    responder.cleanupSet(ctx());
    expect(calls).toHaveLength(4);
  });

  test('a failed undo during a failed commit answers undoFailed', () => {
    const { responder } = setFixture({
      commit: { [`${COL3}.7`]: ResponseError.CommitFailed },
      undo: { [`${SCALAR_RW}.0`]: ResponseError.UndoFailed },
    });
    responder.testSet([vb(`${SCALAR_RW}.0`, str('x')), vb(`${COL3}.7`, int(7))], ctx());
    expect(responder.commitSet(ctx())).toEqual({ error: ResponseError.UndoFailed, index: 1 });
  });

  test('UndoSet after a successful commit undoes every varbind, last first', () => {
    const { responder, calls } = setFixture();
    responder.testSet([vb(`${SCALAR_RW}.0`, str('x')), vb(`${COL3}.1`, int(1))], ctx());
    responder.commitSet(ctx());
    calls.length = 0;
    expect(responder.undoSet(ctx())).toEqual(ok);
    expect(calls).toEqual([`column.undo ${COL3}.1=1`, `scalar.undo ${SCALAR_RW}.0="x"`]);
  });

  test('a failing undo answers undoFailed at its index and still undoes the rest', () => {
    const { responder, calls } = setFixture({ undo: { [`${COL3}.1`]: ResponseError.UndoFailed } });
    responder.testSet([vb(`${SCALAR_RW}.0`, str('x')), vb(`${COL3}.1`, int(1))], ctx());
    responder.commitSet(ctx());
    calls.length = 0;
    expect(responder.undoSet(ctx())).toEqual({ error: ResponseError.UndoFailed, index: 2 });
    expect(calls).toEqual([`column.undo ${COL3}.1=1`, `scalar.undo ${SCALAR_RW}.0="x"`]);
  });

  test('CleanupSet forgets the transaction; later phases for it are processing errors', () => {
    const { responder, logs } = setFixture();
    responder.testSet([vb(`${COL3}.1`, int(1))], ctx());
    expect(responder.openTransactions).toBe(1);
    responder.cleanupSet(ctx());
    expect(responder.openTransactions).toBe(0);
    expect(responder.commitSet(ctx())).toEqual({ error: ResponseError.ProcessingError, index: 0 });
    expect(responder.undoSet(ctx())).toEqual({ error: ResponseError.ProcessingError, index: 0 });
    expect(() => responder.cleanupSet(ctx())).not.toThrow();
    expect(logs.map(([level]) => level)).toEqual(['warn', 'warn', 'debug']);
  });

  test('transactions are kept apart by session id and transaction id', () => {
    const { responder, calls } = setFixture({ commit: { [`${COL3}.7`]: ResponseError.CommitFailed } });
    const first = ctx({ sessionId: 1, transactionId: 5 });
    const second = ctx({ sessionId: 2, transactionId: 5 });
    responder.testSet([vb(`${COL3}.1`, int(1))], first);
    responder.testSet([vb(`${COL3}.7`, int(7))], second);
    expect(responder.commitSet(second)).toEqual({ error: ResponseError.CommitFailed, index: 1 });
    expect(responder.commitSet(first)).toEqual(ok);
    expect(responder.commitSet(ctx({ sessionId: 1, transactionId: 6 })).error).toBe(ResponseError.ProcessingError);
    expect(calls).toContain(`column.commit ${COL3}.1=1`);
  });

  test('a second CommitSet, or one after a failed TestSet, is a processing error', () => {
    const { responder } = setFixture({ test: { [`${COL3}.7`]: ResponseError.WrongValue } });
    responder.testSet([vb(`${COL3}.1`, int(1))], ctx());
    expect(responder.commitSet(ctx())).toEqual(ok);
    expect(responder.commitSet(ctx()).error).toBe(ResponseError.ProcessingError);
    responder.cleanupSet(ctx());
    responder.testSet([vb(`${COL3}.7`, int(7))], ctx());
    expect(responder.commitSet(ctx()).error).toBe(ResponseError.ProcessingError);
  });

  test('a TestSet reusing an open transaction cleans the old one up first', () => {
    const { responder, calls, logs } = setFixture();
    responder.testSet([vb(`${COL3}.1`, int(1))], ctx());
    responder.testSet([vb(`${COL3}.7`, int(7))], ctx());
    expect(calls).toEqual([`column.test ${COL3}.1=1`, `column.cleanup ${COL3}.1=1`, `column.test ${COL3}.7=7`]);
    expect(logs).toEqual([['warn', expect.stringContaining('never cleaned up')]]);
    expect(responder.openTransactions).toBe(1);
  });

  test('dropSession cleans up and forgets only that session', () => {
    const { responder, calls } = setFixture();
    responder.testSet([vb(`${COL3}.1`, int(1))], ctx({ sessionId: 3 }));
    responder.testSet([vb(`${COL3}.7`, int(7))], ctx({ sessionId: 4 }));
    responder.dropSession(3);
    expect(responder.openTransactions).toBe(1);
    expect(calls.filter((c) => c.includes('cleanup'))).toEqual([`column.cleanup ${COL3}.1=1`]);
  });

  test('a throwing handler is logged and answered genErr / commitFailed, never thrown', () => {
    const { responder, logs } = newResponder();
    const throwing: WritableObject = {
      test: (oid) => {
        if (oid[oid.length - 1] === 2) throw new Error('bad index');
        return ResponseError.NoError;
      },
      commit: () => {
        throw new Error('disk full');
      },
      undo: () => ResponseError.NoError,
      cleanup: () => {
        throw new Error('oops');
      },
    };
    responder.addWritable(o(COL3), throwing);
    expect(responder.testSet([vb(`${COL3}.2`, int(1))], ctx())).toEqual({ error: ResponseError.GenErr, index: 1 });
    responder.cleanupSet(ctx());
    expect(responder.testSet([vb(`${COL3}.1`, int(1))], ctx())).toEqual(ok);
    expect(responder.commitSet(ctx())).toEqual({ error: ResponseError.CommitFailed, index: 1 });
    expect(() => responder.cleanupSet(ctx())).not.toThrow();
    expect(logs.map(([level, msg]) => `${level} ${msg}`)).toEqual([
      expect.stringMatching(/^error .*test of .*\.2 threw: bad index/),
      expect.stringMatching(/^error .*commit of .*\.1 threw: disk full/),
      expect.stringMatching(/^error .*cleanup of .*\.1 threw: oops/),
    ]);
  });

  test('overlapping writable objects are refused', () => {
    const { responder } = setFixture();
    const handler = new RecordingObject('x', []);
    expect(() => responder.addWritable(o(SCALAR_RW), handler)).toThrow('overlaps');
    expect(() => responder.addWritable(o(`${COL3}.1`), handler)).toThrow('overlaps');
    expect(() => responder.addWritable(o('1.3.6.1.4.1.99.2'), handler)).toThrow('overlaps');
    expect(() => responder.addWritable(o(COL2), handler)).not.toThrow();
  });
});

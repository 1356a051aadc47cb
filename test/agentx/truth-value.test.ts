import { Responder } from '../../agentx/responder';
import { MibViewBuilder } from '../../agentx/view';
import { truthValueScalar } from '../../agentx/truth-value';
import { ResponseError, ValueType } from '../../agentx/pdu';
import type { RequestContext } from '../../agentx/handler';

const SCALAR = [1, 3, 6, 1, 4, 1, 99, 1];
const OTHER = [1, 3, 6, 1, 4, 1, 99, 2];
const ctx = (transactionId: number): RequestContext => ({ sessionId: 1, transactionId, packetId: 1 });
const int = (value: number) => ({ type: ValueType.Integer as const, value });

describe('truthValueScalar', () => {
  function fixture() {
    let a = true;
    let b = false;
    const responder = new Responder();
    const view = new MibViewBuilder();
    view.declareObject(SCALAR).add([...SCALAR, 0], int(1));
    view.declareObject(OTHER).add([...OTHER, 0], int(2));
    responder.publish(view.build());
    responder.addWritable(SCALAR, truthValueScalar(SCALAR, { get: () => a, set: (v) => { a = v; } }));
    responder.addWritable(OTHER, truthValueScalar(OTHER, { get: () => b, set: (v) => { b = v; } }));
    return { responder, values: () => [a, b] };
  }

  test.each([
    ['.1 instead of .0', [...SCALAR, 1], int(2), ResponseError.NoCreation],
    ['a longer instance', [...SCALAR, 0, 0], int(2), ResponseError.NoCreation],
    ['a string', [...SCALAR, 0], { type: ValueType.OctetString as const, value: Buffer.from('true') }, ResponseError.WrongType],
    ['0', [...SCALAR, 0], int(0), ResponseError.WrongValue],
    ['3', [...SCALAR, 0], int(3), ResponseError.WrongValue],
  ])('test refuses %s', (_name, oid, value, error) => {
    const { responder, values } = fixture();
    expect(responder.testSet([{ oid, ...value }], ctx(1))).toEqual({ error, index: 1 });
    responder.cleanupSet(ctx(1));
    expect(values()).toEqual([true, false]);
  });

  test('commit sets both, undo after a failed commit puts both back, cleanup forgets', () => {
    const { responder, values } = fixture();
    expect(responder.testSet([{ oid: [...SCALAR, 0], ...int(2) }, { oid: [...OTHER, 0], ...int(1) }], ctx(1)).error).toBe(ResponseError.NoError);
    expect(responder.commitSet(ctx(1)).error).toBe(ResponseError.NoError);
    expect(values()).toEqual([false, true]);
    expect(responder.undoSet(ctx(1)).error).toBe(ResponseError.NoError);
    expect(values()).toEqual([true, false]);
    responder.cleanupSet(ctx(1));
    expect(responder.openTransactions).toBe(0);
    expect(responder.testSet([{ oid: [...OTHER, 0], ...int(1) }], ctx(2)).error).toBe(ResponseError.NoError);
    responder.commitSet(ctx(2));
    responder.cleanupSet(ctx(2));
    expect(values()).toEqual([true, true]);
  });
});

// Answers Get, GetNext, GetBulk and the Set phases for the session, from the
// current MibView of each context (RFC 2741 §7.2.3, §7.2.4). Views are swapped
// in whole, so a request never sees half a refresh; nothing here does I/O.
// The responder publishes views and is the only one to release them.
import { ResponseError, ValueType } from './pdu';
import type { Oid, SearchRange, VarBind } from './pdu';
import { RequestFailed } from './handler';
import type { RequestContext, RequestHandler, SetResult, WritableObject } from './handler';
import { compareOids, formatOid, isPrefixOf } from './oid';
import { silentLog } from './log';
import type { AgentxLog } from './log';
import { releaseView, type MibView } from './view';

export interface ResponderOptions {
  /**
   * Throw instead of logging when the responder catches a programming error:
   * its own wrong answer, or a view released by someone else (for tests).
   * Otherwise it is logged and answered as safely as it can be.
   */
  strict?: boolean;
  log?: AgentxLog;
  /** Upper bound on the varbinds of one GetBulk response; default 1000. */
  maxBulkVarBinds?: number;
}

const DEFAULT_MAX_BULK_VARBINDS = 1000;

/** One varbind of a Set transaction and the writable object that owns it. */
interface SetEntry {
  varbind: VarBind;
  writable: WritableObject;
}

interface Transaction {
  entries: SetEntry[];
  /** Entries whose test passed; cleanup is owed to exactly these. */
  tested: number;
  /** Entries committed and not undone, from the front. */
  committed: number;
  phase: 'tested' | 'testFailed' | 'committed' | 'commitFailed' | 'undone';
}

const SUCCESS: SetResult = { error: ResponseError.NoError, index: 0 };

export class Responder implements RequestHandler {
  private readonly views = new Map<string, MibView>();
  /** Writable scalars and columns; few enough that a linear prefix scan is the clearest lookup. */
  private readonly writables: { oid: Oid; handler: WritableObject }[] = [];
  private readonly transactions = new Map<string, Transaction>();
  private readonly strict: boolean;
  private readonly log: AgentxLog;
  private readonly maxBulkVarBinds: number;
  /** Released views found served, each logged once. */
  private readonly reportedReleased = new WeakSet<MibView>();

  constructor(options: ResponderOptions = {}) {
    this.strict = options.strict ?? false;
    this.log = options.log ?? silentLog;
    this.maxBulkVarBinds = Math.max(1, options.maxBulkVarBinds ?? DEFAULT_MAX_BULK_VARBINDS);
  }

  /**
   * Serves `view` in a context (the default context when omitted); later
   * requests see only the new one. The view it replaces is released (its
   * values freed at once, not at a later GC) unless a view still served
   * shares them, as one made from it by withValues() does. Whoever built
   * `view` hands it over: only the responder releases it.
   */
  publish(view: MibView, context?: Buffer): void {
    if (view.released) {
      const msg = `responder: a released view was published in ${contextName(context)}; it holds no values`;
      if (this.strict) throw new Error(msg);
      this.log('error', `${msg}; still serving the view before it`);
      return;
    }
    const key = contextKey(context);
    const replaced = this.views.get(key);
    this.views.set(key, view);
    if (replaced === undefined || replaced.released) return;
    for (const served of this.views.values()) if (served.values === replaced.values) return;
    releaseView(replaced);
  }

  /** Registers the handler of a writable scalar or column; instances under objectOid go to it. */
  addWritable(objectOid: Oid, handler: WritableObject): void {
    for (const existing of this.writables) {
      if (isPrefixOf(existing.oid, objectOid) || isPrefixOf(objectOid, existing.oid)) {
        throw new Error(
          `responder: writable object ${formatOid(objectOid)} overlaps writable object ${formatOid(existing.oid)}; register each scalar or column once`,
        );
      }
    }
    this.writables.push({ oid: objectOid.slice(), handler });
  }

  /** RFC 2741 §7.2.3.1 */
  get(ranges: readonly SearchRange[], ctx: RequestContext): VarBind[] {
    const view = this.viewFor(ctx);
    return ranges.map(({ start }) => {
      // The answer carries the requested OID by construction, so the L7 check
      // "Get must not change the name" holds without a runtime test.
      const value = view?.get(start);
      if (value !== undefined) return Object.assign({ oid: start }, value);
      if (view?.objectOf(start) !== undefined) return { type: ValueType.NoSuchInstance, oid: start };
      return { type: ValueType.NoSuchObject, oid: start };
    });
  }

  /** RFC 2741 §7.2.3.2 */
  getNext(ranges: readonly SearchRange[], ctx: RequestContext): VarBind[] {
    const view = this.viewFor(ctx);
    return ranges.map((range) => this.nextInRange(view, range.start, range.include, range.end));
  }

  /**
   * RFC 2741 §7.2.3.3: the first N ranges once, then up to M rows over the
   * other R ranges, varbind N+(i-1)*R+s being the successor of the one a row
   * earlier. The master maps varbinds back by that position, so a repeater
   * that reached endOfMibView keeps its slot (endOfMibView again, with the
   * same name, as RFC 3416 §4.2.3 gives) without searching; once every
   * repeater has ended, no further rows are produced.
   */
  getBulk(nonRepeaters: number, maxRepetitions: number, ranges: readonly SearchRange[], ctx: RequestContext): VarBind[] {
    const view = this.viewFor(ctx);
    const n = Math.min(Math.max(0, nonRepeaters), ranges.length);
    const out: VarBind[] = [];
    for (let i = 0; i < n; i++) out.push(this.nextInRange(view, ranges[i].start, ranges[i].include, ranges[i].end));

    const repeaters = ranges.slice(n);
    if (repeaters.length === 0 || maxRepetitions <= 0) return out;
    // Whole rows only, and at least one: the request itself was that large.
    const rowBudget = Math.max(1, Math.floor((this.maxBulkVarBinds - n) / repeaters.length));
    const rows = Math.min(maxRepetitions, rowBudget);
    let previous: VarBind[] = [];
    for (let row = 0; row < rows; row++) {
      let ended = 0;
      const current = repeaters.map((range, s) => {
        if (row === 0) return this.nextInRange(view, range.start, range.include, range.end);
        const before = previous[s];
        return before.type === ValueType.EndOfMibView ? before : this.nextInRange(view, before.oid, false, range.end);
      });
      for (const varbind of current) {
        out.push(varbind);
        if (varbind.type === ValueType.EndOfMibView) ended++;
      }
      if (ended === repeaters.length) return out;
      previous = current;
    }
    if (rows < maxRepetitions) {
      this.log('debug', `responder: GetBulk max-repetitions ${maxRepetitions} capped at ${rows} rows (maxBulkVarBinds ${this.maxBulkVarBinds})`);
    }
    return out;
  }

  /** RFC 2741 §7.2.4.1: every varbind must belong to a writable object that accepts its value. */
  testSet(varbinds: readonly VarBind[], ctx: RequestContext): SetResult {
    const key = transactionKey(ctx);
    const stale = this.transactions.get(key);
    if (stale !== undefined) {
      this.log('warn', `responder: TestSet for transaction ${key} that was never cleaned up; cleaning up the old one first`);
      this.cleanup(stale);
    }
    const transaction: Transaction = { entries: [], tested: 0, committed: 0, phase: 'testFailed' };
    this.transactions.set(key, transaction);
    for (let i = 0; i < varbinds.length; i++) {
      const varbind = varbinds[i];
      const writable = this.writableFor(varbind.oid);
      // Absent instances and read-only objects alike: nothing here could ever
      // write this name, which is notWritable in RFC 3416 §4.2.5 step (3).
      if (writable === undefined) return { error: ResponseError.NotWritable, index: i + 1 };
      const entry = { varbind, writable };
      transaction.entries.push(entry);
      const error = this.call('test', entry, ResponseError.GenErr);
      if (error !== ResponseError.NoError) {
        transaction.entries.pop();
        return { error, index: i + 1 };
      }
      transaction.tested = transaction.entries.length;
    }
    transaction.phase = 'tested';
    return SUCCESS;
  }

  /** RFC 2741 §7.2.4.2: on a failed commit, the earlier varbinds of this subagent are undone before answering. */
  commitSet(ctx: RequestContext): SetResult {
    const transaction = this.transactionFor(ctx, 'CommitSet');
    if (transaction === undefined) return { error: ResponseError.ProcessingError, index: 0 };
    if (transaction.phase !== 'tested') {
      this.log('warn', `responder: CommitSet for transaction ${transactionKey(ctx)} in phase ${transaction.phase}; expected after a successful TestSet`);
      return { error: ResponseError.ProcessingError, index: 0 };
    }
    for (let i = 0; i < transaction.entries.length; i++) {
      const error = this.call('commit', transaction.entries[i], ResponseError.CommitFailed);
      if (error === ResponseError.NoError) {
        transaction.committed = i + 1;
        continue;
      }
      transaction.phase = 'commitFailed';
      const undone = this.undoCommitted(transaction);
      return undone.error === ResponseError.NoError ? { error: ResponseError.CommitFailed, index: i + 1 } : undone;
    }
    transaction.phase = 'committed';
    return SUCCESS;
  }

  /** RFC 2741 §7.2.4.3 */
  undoSet(ctx: RequestContext): SetResult {
    const transaction = this.transactionFor(ctx, 'UndoSet');
    if (transaction === undefined) return { error: ResponseError.ProcessingError, index: 0 };
    const result = this.undoCommitted(transaction);
    transaction.phase = 'undone';
    return result;
  }

  /** RFC 2741 §7.2.4.4: no Response; an unknown transaction is only logged. */
  cleanupSet(ctx: RequestContext): void {
    const key = transactionKey(ctx);
    const transaction = this.transactions.get(key);
    if (transaction === undefined) {
      this.log('debug', `responder: CleanupSet for unknown transaction ${key}; ignored`);
      return;
    }
    this.transactions.delete(key);
    this.cleanup(transaction);
  }

  /** Forgets the Set transactions of a closed session, cleaning them up; the master will never finish them. */
  sessionClosed(sessionId: number): void {
    this.dropSession(sessionId);
  }

  dropSession(sessionId: number): void {
    for (const [key, transaction] of this.transactions) {
      if (key.startsWith(`${sessionId}/`)) {
        this.transactions.delete(key);
        this.cleanup(transaction);
      }
    }
  }

  /** Number of Set transactions waiting for their CleanupSet. */
  get openTransactions(): number {
    return this.transactions.size;
  }

  /**
   * The view serving `ctx`. One released behind the responder's back has no
   * values left, and answering from it as if empty would end every walk
   * early without a word: in strict mode that throws, otherwise it is logged
   * (once per view) and the request answered genErr.
   */
  private viewFor(ctx: RequestContext): MibView | undefined {
    const view = this.views.get(contextKey(ctx.context));
    if (view === undefined || !view.released) return view;
    const msg = `responder: the view served in ${contextName(ctx.context)} was released while still served; it holds no values`;
    if (this.strict) throw new Error(msg);
    if (!this.reportedReleased.has(view)) {
      this.reportedReleased.add(view);
      this.log('error', `${msg}; answering genErr until another view is published`);
    }
    throw new RequestFailed(ResponseError.GenErr, 1, msg);
  }

  /**
   * One SearchRange as GetNext (RFC 2741 §7.2.3.2), with the libagentx check
   * that the view's answer advances past start and stays before end: a
   * violation is logged and answered endOfMibView rather than sent wrong.
   */
  private nextInRange(view: MibView | undefined, start: Oid, include: boolean, end: Oid): VarBind {
    const found = view?.next(start, include, end);
    if (found === undefined) return { type: ValueType.EndOfMibView, oid: start };
    const order = compareOids(found.oid, start);
    const advances = order > 0 || (include && order === 0);
    const bounded = end.length === 0 || compareOids(found.oid, end) < 0;
    if (advances && bounded) return found;
    const msg =
      `responder: GetNext from ${formatOid(start)} (include ${include}, end ${end.length === 0 ? 'none' : formatOid(end)}) ` +
      `produced ${formatOid(found.oid)}, which is ${advances ? 'not before the end' : 'not after the start'}; answering endOfMibView`;
    if (this.strict) throw new Error(msg);
    this.log('error', msg);
    return { type: ValueType.EndOfMibView, oid: start };
  }

  private writableFor(oid: Oid): WritableObject | undefined {
    for (const writable of this.writables) if (isPrefixOf(writable.oid, oid)) return writable.handler;
    return undefined;
  }

  private transactionFor(ctx: RequestContext, pdu: string): Transaction | undefined {
    const transaction = this.transactions.get(transactionKey(ctx));
    if (transaction === undefined) {
      this.log('warn', `responder: ${pdu} for unknown transaction ${transactionKey(ctx)}; answering processingError`);
    }
    return transaction;
  }

  /** Undoes committed entries, last first; reports the first failure but still tries the rest. */
  private undoCommitted(transaction: Transaction): SetResult {
    let result = SUCCESS;
    for (let i = transaction.committed - 1; i >= 0; i--) {
      const error = this.call('undo', transaction.entries[i], ResponseError.UndoFailed);
      if (error !== ResponseError.NoError && result === SUCCESS) result = { error: ResponseError.UndoFailed, index: i + 1 };
    }
    transaction.committed = 0;
    return result;
  }

  private cleanup(transaction: Transaction): void {
    for (let i = 0; i < transaction.tested; i++) {
      const { varbind, writable } = transaction.entries[i];
      try {
        writable.cleanup?.(varbind.oid, varbind);
      } catch (err) {
        this.log('error', `responder: cleanup of ${formatOid(varbind.oid)} threw: ${describe(err)}`);
      }
    }
  }

  /** Calls a handler phase; a throwing handler is logged and counts as `onThrow`, never as a crash. */
  private call(phase: 'test' | 'commit' | 'undo', entry: SetEntry, onThrow: ResponseError): ResponseError {
    try {
      return entry.writable[phase](entry.varbind.oid, entry.varbind);
    } catch (err) {
      this.log('error', `responder: ${phase} of ${formatOid(entry.varbind.oid)} threw: ${describe(err)}; answering ${ResponseError[onThrow]}`);
      return onThrow;
    }
  }
}

/** Default context and each named context (octets, compared exactly) get distinct keys. */
function contextKey(context: Buffer | undefined): string {
  return context === undefined ? '' : `c:${context.toString('hex')}`;
}

function contextName(context: Buffer | undefined): string {
  return context === undefined ? 'the default context' : `context "${context.toString('latin1')}"`;
}

function transactionKey(ctx: RequestContext): string {
  return `${ctx.sessionId}/${ctx.transactionId}`;
}

function describe(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

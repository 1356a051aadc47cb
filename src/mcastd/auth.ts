// Who may talk to vmm-mcastd: every message carries an HMAC-SHA256 tag made
// with a key all agents and relays share, and each (sender, boot) may use a
// sequence number once, within ±30 s of our clock. The key file is a secret,
// so one that others can read is refused rather than used.
import { createHmac, timingSafeEqual } from 'node:crypto';
import { constants as fsConstants, promises as fs } from 'node:fs';
import { TAG_LENGTH, type Tagger } from './wire';

export const MIN_KEY_BYTES = 32;
const MAX_KEY_FILE_BYTES = 4096;

export class KeyFileError extends Error {
  override readonly name = 'KeyFileError';
}

/** The key in `text`: hex if it holds only hex digits, base64 otherwise; whitespace (line breaks) ignored. */
export function parseKey(text: string, source: string): Buffer {
  const compact = text.replace(/\s+/g, '');
  if (compact.length === 0) throw new KeyFileError(`${source}: no key (expected ${MIN_KEY_BYTES} or more bytes as hex or base64)`);
  let key: Buffer;
  if (/^[0-9a-fA-F]+$/.test(compact)) {
    if (compact.length % 2 !== 0) throw new KeyFileError(`${source}: odd number of hex digits`);
    key = Buffer.from(compact, 'hex');
  } else if (/^[A-Za-z0-9+/]+={0,2}$/.test(compact) || /^[A-Za-z0-9_-]+$/.test(compact)) {
    key = Buffer.from(compact, compact.includes('-') || compact.includes('_') ? 'base64url' : 'base64');
  } else {
    throw new KeyFileError(`${source}: neither hex nor base64`);
  }
  if (key.length < MIN_KEY_BYTES) throw new KeyFileError(`${source}: key is ${key.length} bytes, at least ${MIN_KEY_BYTES} are needed (e.g. openssl rand -hex 32)`);
  return key;
}

/**
 * Reads the shared key. Refuses a file that is not a regular file or that
 * group or others may read or write: the key is what keeps strangers from
 * making our host join groups or relay streams.
 */
export async function loadKeyFile(file: string): Promise<MessageKey> {
  let handle: fs.FileHandle;
  try {
    handle = await fs.open(file, fsConstants.O_RDONLY | fsConstants.O_NOFOLLOW);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? String(err);
    throw new KeyFileError(`cannot open key file ${file}: ${code}${code === 'ELOOP' ? ' (a symbolic link; name the file itself)' : ''}`);
  }
  try {
    // fstat on the open file, so the mode checked is the mode of what is read.
    const stat = await handle.stat();
    if (!stat.isFile()) throw new KeyFileError(`key file ${file} is not a regular file`);
    if ((stat.mode & 0o077) !== 0) {
      const mode = (stat.mode & 0o777).toString(8).padStart(4, '0');
      throw new KeyFileError(`key file ${file} is accessible to group or others (mode ${mode}); run: chmod 600 ${file}`);
    }
    if (stat.size > MAX_KEY_FILE_BYTES) throw new KeyFileError(`key file ${file} is ${stat.size} bytes; a key file holds one key of a few dozen bytes`);
    const text = await handle.readFile({ encoding: 'utf8' });
    return new MessageKey(parseKey(text, `key file ${file}`));
  } finally {
    await handle.close();
  }
}

/** HMAC-SHA256 with the shared key: makes and checks message tags. */
export class MessageKey implements Tagger {
  readonly #secret: Buffer;

  constructor(secret: Buffer) {
    if (secret.length < MIN_KEY_BYTES) throw new KeyFileError(`key is ${secret.length} bytes, at least ${MIN_KEY_BYTES} are needed`);
    this.#secret = Buffer.from(secret);
  }

  tag(signed: Buffer): Buffer {
    return createHmac('sha256', this.#secret).update(signed).digest();
  }

  verify(signed: Buffer, tag: Buffer): boolean {
    if (tag.length !== TAG_LENGTH) return false;
    return timingSafeEqual(this.tag(signed), tag);
  }
}

// ---- Replay guard ---------------------------------------------------------------

export type ReplayRefusalReason = 'stale' | 'replay' | 'outside-window' | 'peer-limit';

export interface ReplayRefusal {
  reason: ReplayRefusalReason;
  /** The log line's text, e.g. "replayed sequence 17 from agent 3f2a… at [fd00::2]:4790". */
  detail: string;
}

export interface ReplayGuardOptions {
  /** Sequence numbers accepted out of order behind the newest one; a multiple of 32. */
  windowSize: number;
  /** Messages whose timestamp differs from our clock by more than this are refused. */
  maxSkewMs: number;
  /** Most (sender, boot) pairs remembered; new ones beyond are refused until old ones expire. */
  maxTracked: number;
  clock: () => number;
}

export const DEFAULT_REPLAY_OPTIONS: Readonly<Omit<ReplayGuardOptions, 'clock'>> = Object.freeze({
  windowSize: 1024,
  maxSkewMs: 30_000,
  maxTracked: 1024,
});

/** Which of the last `size` sequence numbers of one (sender, boot) were seen. */
class SequenceWindow {
  /** Highest sequence number seen; 0 before the first. */
  top = 0;
  /** Newest timestamp seen; once it is older than the skew bound, every message this window saw is stale. */
  newestTimestamp = 0;
  readonly #bits: Uint32Array;

  constructor(readonly size: number) {
    this.#bits = new Uint32Array(size / 32);
  }

  #slot(sequence: number): [number, number] {
    const position = sequence % this.size;
    return [position >>> 5, 1 << (position & 31)];
  }

  /** 'new' after recording `sequence`, or why it is refused. */
  record(sequence: number): 'new' | 'replay' | 'outside-window' {
    if (sequence > this.top) {
      if (sequence - this.top >= this.size) {
        this.#bits.fill(0);
      } else {
        for (let s = this.top + 1; s < sequence; s++) {
          const [word, bit] = this.#slot(s);
          this.#bits[word] &= ~bit;
        }
      }
      this.top = sequence;
      const [word, bit] = this.#slot(sequence);
      this.#bits[word] |= bit;
      return 'new';
    }
    if (this.top - sequence >= this.size) return 'outside-window';
    const [word, bit] = this.#slot(sequence);
    if (this.#bits[word] & bit) return 'replay';
    this.#bits[word] |= bit;
    return 'new';
  }
}

/**
 * Refuses messages outside the freshness bound and sequence numbers a
 * (sender, boot) has used before. A window can be forgotten once the newest
 * timestamp it saw is older than the freshness bound: every message it
 * recorded would now be refused as stale anyway, so forgetting opens no gap.
 */
export class ReplayGuard {
  readonly #options: ReplayGuardOptions;
  readonly #windows = new Map<string, SequenceWindow>();

  constructor(options: Partial<ReplayGuardOptions> = {}) {
    this.#options = { ...DEFAULT_REPLAY_OPTIONS, clock: Date.now, ...options };
    const { windowSize, maxSkewMs, maxTracked } = this.#options;
    if (!Number.isInteger(windowSize) || windowSize < 32 || windowSize % 32 !== 0) throw new RangeError(`replay window size ${windowSize} is not a positive multiple of 32`);
    if (!(maxSkewMs > 0)) throw new RangeError(`maximum clock skew ${maxSkewMs} ms is not positive`);
    if (!Number.isInteger(maxTracked) || maxTracked < 1) throw new RangeError(`maximum tracked senders ${maxTracked} is not a positive integer`);
  }

  get maxSkewMs(): number {
    return this.#options.maxSkewMs;
  }

  /** Number of (sender, boot) windows held. */
  get tracked(): number {
    return this.#windows.size;
  }

  /** Refusal if `timestamp` is further than the skew bound from our clock. */
  checkFreshness(timestamp: number): ReplayRefusal | undefined {
    const skew = timestamp - this.#options.clock();
    if (Math.abs(skew) <= this.#options.maxSkewMs) return undefined;
    return { reason: 'stale', detail: `stale timestamp (skew ${skew > 0 ? '+' : ''}${(skew / 1000).toFixed(1)} s)` };
  }

  /**
   * Checks freshness and the sequence number and, if both pass, records the
   * sequence number as used. `peer` names the sender in the refusal text.
   */
  admit(senderId: Buffer, bootId: bigint, sequence: number, timestamp: number, peer: string): ReplayRefusal | undefined {
    const stale = this.checkFreshness(timestamp);
    if (stale) return { reason: 'stale', detail: `${stale.detail} from ${peer}` };
    const key = `${senderId.toString('hex')}/${bootId.toString(16)}`;
    let window = this.#windows.get(key);
    if (!window) {
      if (this.#windows.size >= this.#options.maxTracked) this.prune();
      if (this.#windows.size >= this.#options.maxTracked) {
        return { reason: 'peer-limit', detail: `already tracking ${this.#options.maxTracked} sender boots; refusing a new one from ${peer}` };
      }
      window = new SequenceWindow(this.#options.windowSize);
      this.#windows.set(key, window);
    }
    const verdict = window.record(sequence);
    if (verdict === 'replay') return { reason: 'replay', detail: `replayed sequence ${sequence} from ${peer}` };
    if (verdict === 'outside-window') {
      return { reason: 'outside-window', detail: `sequence ${sequence} from ${peer} is behind the replay window (newest ${window.top})` };
    }
    if (timestamp > window.newestTimestamp) window.newestTimestamp = timestamp;
    return undefined;
  }

  /** Forgets the windows whose every message is now stale. */
  prune(): void {
    const horizon = this.#options.clock() - this.#options.maxSkewMs;
    for (const [key, window] of this.#windows) {
      if (window.newestTimestamp < horizon) this.#windows.delete(key);
    }
  }
}

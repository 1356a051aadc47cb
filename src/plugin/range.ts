// Threshold ranges as the Monitoring Plugins development guidelines define
// them: [@][start:][end], endpoints inclusive. Without "@" a value outside
// start..end raises the alert; with "@" a value inside it does. An omitted
// start is 0, an omitted end (after ":") is +infinity, "~" as start is
// -infinity. "10" is 0..10, "10:" is 10..inf, "~:10" is -inf..10.
// Stricter than some plugins on purpose: an empty range, ":" alone, "~" as
// the end, start > end, and numbers in other spellings (1e3, 0x10, " 5",
// "Infinity") are refused rather than guessed at.

export interface ThresholdRange {
  /** The text it was parsed from, as perfdata carries it. */
  readonly text: string;
  readonly start: number;
  readonly end: number;
  /** "@": alert when the value is inside start..end. */
  readonly inside: boolean;
}

export class RangeSyntaxError extends Error {}

const NUMBER = /^[+-]?(\d+(\.\d*)?|\.\d+)$/;

function parseNumber(text: string, what: string, whole: string): number {
  if (!NUMBER.test(text)) {
    throw new RangeSyntaxError(`"${whole}" is not a threshold range: ${what} "${text}" is not a decimal number`);
  }
  return Number(text);
}

export function parseRange(text: string): ThresholdRange {
  const inside = text.startsWith('@');
  const body = inside ? text.slice(1) : text;
  if (body === '') throw new RangeSyntaxError(`"${text}" is not a threshold range: it names neither a start nor an end`);
  const colon = body.indexOf(':');
  let start: number;
  let end: number;
  if (colon < 0) {
    start = 0;
    end = parseNumber(body, 'the end', text);
  } else {
    const startText = body.slice(0, colon);
    const endText = body.slice(colon + 1);
    if (endText.includes(':')) throw new RangeSyntaxError(`"${text}" is not a threshold range: more than one ":"`);
    if (startText === '' && endText === '') {
      throw new RangeSyntaxError(`"${text}" is not a threshold range: it names neither a start nor an end`);
    }
    if (endText === '~') {
      throw new RangeSyntaxError(`"${text}" is not a threshold range: "~" (negative infinity) can only be the start`);
    }
    start = startText === '' ? 0 : startText === '~' ? -Infinity : parseNumber(startText, 'the start', text);
    end = endText === '' ? Infinity : parseNumber(endText, 'the end', text);
  }
  if (start > end) {
    throw new RangeSyntaxError(`"${text}" is not a threshold range: its start ${start} is above its end ${end}`);
  }
  return { text, start, end, inside };
}

/** True when `value` raises the alert of `range`. */
export function rangeAlerts(range: ThresholdRange, value: number): boolean {
  const within = value >= range.start && value <= range.end;
  return range.inside ? within : !within;
}

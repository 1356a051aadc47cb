// check_vmm's threshold ranges against the Monitoring Plugins guidelines'
// table, their edge cases, and what it refuses.
import { parseRange, rangeAlerts, RangeSyntaxError } from '../../src/plugin/range';

function alertsAt(range: string, values: number[]): boolean[] {
  const r = parseRange(range);
  return values.map((v) => rangeAlerts(r, v));
}

describe('parseRange', () => {
  test.each([
    ['10', 0, 10, false],
    ['10:', 10, Infinity, false],
    ['~:10', -Infinity, 10, false],
    ['10:20', 10, 20, false],
    ['@10:20', 10, 20, true],
    [':5', 0, 5, false],
    ['~:', -Infinity, Infinity, false],
    ['-5:-1', -5, -1, false],
    ['@0', 0, 0, true],
    ['0', 0, 0, false],
    ['1.5:2.25', 1.5, 2.25, false],
    ['.5', 0, 0.5, false],
    ['+3', 0, 3, false],
    ['7:7', 7, 7, false],
  ])('%s is %p..%p, inside=%p', (text, start, end, inside) => {
    expect(parseRange(text)).toEqual({ text, start, end, inside });
  });

  test.each([
    ['', /neither a start nor an end/],
    ['@', /neither a start nor an end/],
    [':', /neither a start nor an end/],
    ['@:', /neither a start nor an end/],
    ['20:10', /start 20 is above its end 10/],
    ['-10', /start 0 is above its end -10/],
    ['10:~', /"~" \(negative infinity\) can only be the start/],
    ['1:2:3', /more than one ":"/],
    ['abc', /the end "abc" is not a decimal number/],
    ['x:5', /the start "x" is not a decimal number/],
    ['1e3', /not a decimal number/],
    ['0x10', /not a decimal number/],
    [' 5', /not a decimal number/],
    ['5 ', /not a decimal number/],
    ['Infinity', /not a decimal number/],
    ['~', /not a decimal number/],
    ['@@1', /not a decimal number/],
    ['10%', /not a decimal number/],
  ])('refuses %p', (text, why) => {
    expect(() => parseRange(text)).toThrow(RangeSyntaxError);
    expect(() => parseRange(text)).toThrow(why);
  });
});

describe('rangeAlerts', () => {
  test('the guidelines table, endpoints included in the range', () => {
    expect(alertsAt('10', [-1, 0, 10, 11])).toEqual([true, false, false, true]);
    expect(alertsAt('10:', [9.99, 10, 1e9])).toEqual([true, false, false]);
    expect(alertsAt('~:10', [-1e9, 10, 10.01])).toEqual([false, false, true]);
    expect(alertsAt('10:20', [9, 10, 15, 20, 21])).toEqual([true, false, false, false, true]);
    expect(alertsAt('@10:20', [9, 10, 15, 20, 21])).toEqual([false, true, true, true, false]);
  });

  test('a single point, and the range that never alerts', () => {
    expect(alertsAt('0', [0, 1, -1])).toEqual([false, true, true]);
    expect(alertsAt('@0', [0, 1])).toEqual([true, false]);
    expect(alertsAt('~:', [-1e300, 0, 1e300])).toEqual([false, false, false]);
    expect(alertsAt('@~:', [-1e300, 0, 1e300])).toEqual([true, true, true]);
  });
});

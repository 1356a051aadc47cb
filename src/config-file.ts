// Settings files shared by vmm-agentx and vmm-mcastd: one "name value" or
// "name = value" per line, '#' comments — the shape of snmpd.conf, which the
// same operators edit. Each daemon names its settings and how to read them.
import { readFileSync } from 'fs';

export class ConfigError extends Error {}

/** Reads one value into `config`; `where` names the line or flag for the error. */
export type SettingSetter<C> = (config: C, value: string, where: string) => void;

type Writable<C> = Record<keyof C, unknown>;

export function stringSetting<C>(key: keyof C): SettingSetter<C> {
  return (c, v, where) => {
    if (v === '') throw new ConfigError(`${where}: needs a value; remove the line to keep the default`);
    (c as Writable<C>)[key] = v;
  };
}

/** Plain decimal: Number() would also take "0x10", "1e3" and " 5". */
const DECIMAL = /^[0-9]+(\.[0-9]+)?$/;

export function numberSetting<C>(key: keyof C, min: number, max: number): SettingSetter<C> {
  return (c, v, where) => {
    const n = DECIMAL.test(v) ? Number(v) : NaN;
    if (!(n >= min && n <= max)) throw new ConfigError(`${where}: "${v}" is not a decimal number from ${min} to ${max}`);
    (c as Writable<C>)[key] = n;
  };
}

export function booleanSetting<C>(key: keyof C): SettingSetter<C> {
  return (c, v, where) => {
    const t = v.toLowerCase();
    if (['yes', 'true', '1', 'on'].includes(t)) (c as Writable<C>)[key] = true;
    else if (['no', 'false', '0', 'off'].includes(t)) (c as Writable<C>)[key] = false;
    else throw new ConfigError(`${where}: "${v}" is not yes or no`);
  };
}

/**
 * Applies `file` to `config`. A setting may appear once, except those in
 * `repeatable` (each line adds one more, e.g. a peer).
 */
export function applySettingsFile<C>(
  config: C,
  file: string,
  settings: Readonly<Record<string, SettingSetter<C>>>,
  repeatable: readonly string[] = [],
): void {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError(`cannot read config file ${file}: ${(err as Error).message}`);
  }
  const firstSeen = new Map<string, number>();
  text.split('\n').forEach((raw, n) => {
    const line = raw.replace(/#.*$/, '').trim();
    if (!line) return;
    const m = /^([a-z-]+)(?:\s*=\s*|\s+|$)(.*)$/.exec(line);
    const where = `${file}:${n + 1}`;
    if (!m) throw new ConfigError(`${where}: expected "name value", got "${line}"`);
    const setter = settings[m[1]];
    if (!setter) throw new ConfigError(`${where}: unknown setting "${m[1]}"; see --help for the names`);
    const first = firstSeen.get(m[1]);
    if (first !== undefined && !repeatable.includes(m[1])) {
      throw new ConfigError(`${where}: "${m[1]}" is already set on line ${first}; keep one of the two`);
    }
    firstSeen.set(m[1], n + 1);
    setter(config, m[2].trim(), `${where}: ${m[1]}`);
  });
}

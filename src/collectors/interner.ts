// One shared copy of values that repeat across thousands of domains: bus and
// device names, disk formats, the host CPU sets vCPUs are pinned to. At
// 10,000 VMs separate copies of these cost several megabytes of heap that
// every major GC traces (heap snapshot: 40,000 "virtio" strings, 20,000
// 16-element CPU lists).

/** A bounded table from key to one shared value; when full it starts over (values handed out stay valid). */
export class Interner<T> {
  private readonly table = new Map<string, T>();

  constructor(private readonly limit: number) {}

  get(key: string, make: () => T): T {
    const known = this.table.get(key);
    if (known !== undefined) return known;
    if (this.table.size >= this.limit) this.table.clear();
    const value = make();
    this.table.set(key, value);
    return value;
  }
}

const words = new Interner<string>(1024);
const numberLists = new Interner<readonly number[]>(1024);
const pinLists = new Interner<readonly (readonly number[] | null)[]>(1024);

/** The shared copy of a short enumerated word (e.g. "virtio", "qcow2"). */
export function sharedWord(word: string): string {
  return words.get(word, () => word);
}

/** The shared copy of a list of numbers (host CPUs of a pinning, online vCPU ids); frozen, as others hold it too. */
export function sharedNumberList(numbers: readonly number[]): readonly number[] {
  return numberLists.get(numbers.join(','), () => Object.freeze(numbers.slice()));
}

/** The shared copy of a per-vCPU pin list (elements already shared number lists, or null); frozen. */
export function sharedPins(pins: readonly (readonly number[] | null)[]): readonly (readonly number[] | null)[] {
  return pinLists.get(pins.map((p) => (p === null ? '-' : p.join(','))).join(';'), () => Object.freeze(pins.slice()));
}

/**
 * CPU ms of a fixed piece of arithmetic (no allocation, so no garbage
 * collection in it): not a figure of the agent but of the machine at that
 * moment. Shared hosts and VMs vary in speed over minutes, and every CPU and
 * µs figure of a bench moves with them; the probe says by how much.
 */
export function speedProbe(): number {
  const before = process.cpuUsage();
  let x = 2463534242;
  let sum = 0;
  for (let i = 0; i < 200_000_000; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    sum = (sum + (x & 0xff)) | 0;
  }
  const used = process.cpuUsage(before);
  if (sum === 0.5) throw new Error('unreachable: keeps the loop from being optimised away');
  return (used.user + used.system) / 1000;
}

// What a running agent promotes to V8's old generation, for bench work: a
// sampling heap profile that leaves out every object a scavenge collected,
// so it counts what outlived the young generation (whether or not a later
// full GC freed it). What is promoted is what each full mark-compact has to
// follow (docs/refresh-cost.md, "Sixth round"). Preloaded like
// cpu-profile-hook.ts:
//
//   VMM_AGENTX_NODE_FLAGS="--require $PWD/dist/bench/promotion-profile-hook.js" \
//   PROMOTION_PROFILE_OUT=/tmp/agent.heapprofile PROMOTION_PROFILE_AFTER_MS=25000 PROMOTION_PROFILE_FOR_MS=10000 \
//   bin/vmm-agentx ...
//
// The file opens in Chrome DevTools (Memory, "Load profile"); divide by the
// refreshes in the window for bytes a refresh.
import { writeFileSync } from 'fs';
import { Session } from 'inspector';

const out = process.env.PROMOTION_PROFILE_OUT;
if (out) {
  const afterMs = Number(process.env.PROMOTION_PROFILE_AFTER_MS ?? 25000);
  const forMs = Number(process.env.PROMOTION_PROFILE_FOR_MS ?? 10000);
  const session = new Session();
  session.connect();
  const start = setTimeout(() => {
    const sampling = {
      samplingInterval: 16384,
      includeObjectsCollectedByMajorGC: true,
      includeObjectsCollectedByMinorGC: false,
    };
    session.post('HeapProfiler.enable', () => {
      session.post('HeapProfiler.startSampling', sampling, () => {
        const stop = setTimeout(() => {
          session.post('HeapProfiler.stopSampling', (err, result) => {
            if (err) process.stderr.write(`promotion-profile-hook: ${err.message}\n`);
            else writeFileSync(out, JSON.stringify(result.profile));
            process.stderr.write(`promotion-profile-hook: wrote ${out}\n`);
            session.disconnect();
          });
        }, forMs);
        stop.unref();
      });
    });
  }, afterMs);
  start.unref();
}

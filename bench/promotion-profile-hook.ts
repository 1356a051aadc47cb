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
import { recordWindow } from './profile-window';

const out = process.env.PROMOTION_PROFILE_OUT;
if (out) {
  recordWindow({
    hook: 'promotion-profile-hook',
    out,
    afterMs: Number(process.env.PROMOTION_PROFILE_AFTER_MS ?? 25000),
    forMs: Number(process.env.PROMOTION_PROFILE_FOR_MS ?? 10000),
    start: (session, started) => {
      const sampling = {
        samplingInterval: 16384,
        includeObjectsCollectedByMajorGC: true,
        includeObjectsCollectedByMinorGC: false,
      };
      session.post('HeapProfiler.enable', () => session.post('HeapProfiler.startSampling', sampling, started));
    },
    stop: (session, done) => session.post('HeapProfiler.stopSampling', (err, result) => done(err, result?.profile)),
  });
}

// A CPU profile of a running agent's steady state, for bench work: node's
// --cpu-prof writes its file at a normal exit, which the agent never makes
// (src/exit-now.ts). Preloaded, this records a window of the process's life
// through the inspector and writes it while the process still runs:
//
//   VMM_AGENTX_NODE_FLAGS="--require $PWD/dist/bench/cpu-profile-hook.js" \
//   CPU_PROFILE_OUT=/tmp/agent.cpuprofile CPU_PROFILE_AFTER_MS=5000 CPU_PROFILE_FOR_MS=10000 \
//   bin/vmm-agentx ...
//
// The file opens in Chrome DevTools or speedscope; only the main thread is
// seen (the libuv pool's libvirt calls show as the time the main thread
// spends starting and finishing them).
import { recordWindow } from './profile-window';

const out = process.env.CPU_PROFILE_OUT;
if (out) {
  recordWindow({
    hook: 'cpu-profile-hook',
    out,
    afterMs: Number(process.env.CPU_PROFILE_AFTER_MS ?? 5000),
    forMs: Number(process.env.CPU_PROFILE_FOR_MS ?? 10000),
    start: (session, started) => {
      session.post('Profiler.enable', () => {
        session.post('Profiler.setSamplingInterval', { interval: 200 }, () => session.post('Profiler.start', started));
      });
    },
    stop: (session, done) => session.post('Profiler.stop', (err, result) => done(err, result?.profile)),
  });
}

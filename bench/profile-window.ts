// The time window a preloaded profiling hook records (cpu-profile-hook.ts,
// promotion-profile-hook.ts): a steady state, not the agent's start. Neither
// timer keeps the process alive.
import { writeFileSync } from 'fs';
import { Session } from 'inspector';

export interface ProfileWindow {
  /** Name for messages on stderr. */
  hook: string;
  /** The file the profile is written to. */
  out: string;
  afterMs: number;
  forMs: number;
  /** Starts recording; calls `started` once it runs. */
  start(session: Session, started: () => void): void;
  /** Stops recording; calls `done` with the profile (or the error). */
  stop(session: Session, done: (err: Error | null, profile?: object) => void): void;
}

export function recordWindow(w: ProfileWindow): void {
  const session = new Session();
  session.connect();
  const begin = setTimeout(() => {
    w.start(session, () => {
      const end = setTimeout(() => {
        w.stop(session, (err, profile) => {
          if (err) {
            process.stderr.write(`${w.hook}: ${err.message}\n`);
          } else {
            writeFileSync(w.out, JSON.stringify(profile));
            process.stderr.write(`${w.hook}: wrote ${w.out}\n`);
          }
          session.disconnect();
        });
      }, w.forMs);
      end.unref();
    });
  }, w.afterMs);
  begin.unref();
}

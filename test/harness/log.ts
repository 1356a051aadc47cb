// A log function (the agent's and the collectors' shape) that keeps what it is given.
export interface RecordingLog<L extends string = string> {
  /** "level: message", in order. */
  lines: string[];
  entries: { level: L; message: string }[];
  log: (level: L, message: string) => void;
}

export function recordingLog<L extends string = string>(): RecordingLog<L> {
  const lines: string[] = [];
  const entries: { level: L; message: string }[] = [];
  return {
    lines,
    entries,
    log: (level, message) => {
      lines.push(`${level}: ${message}`);
      entries.push({ level, message });
    },
  };
}

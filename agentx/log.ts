// The library logs through one injected function and is silent by default
// (libagentx does the same), so an application decides where lines go.
export type LogLevel = 'debug' | 'info' | 'warn' | 'error';
export type AgentxLog = (level: LogLevel, message: string) => void;

export const silentLog: AgentxLog = () => undefined;

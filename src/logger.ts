// One logger for the process, on stderr, so that --dump's stdout stays data.
import winston from 'winston';
import type { AgentxLog } from '../agentx';

export type Logger = winston.Logger;

export function createLogger(level: string): Logger {
  return winston.createLogger({
    level,
    format: winston.format.combine(
      winston.format.timestamp(),
      winston.format.printf((i) => `${String(i.timestamp)} ${i.level}: ${String(i.message)}`),
    ),
    transports: [new winston.transports.Console({ stderrLevels: ['error', 'warn', 'info', 'debug'] })],
  });
}

/**
 * Adapts the logger to the (level, message) function the library and
 * collectors take. A message below the logger's level is dropped here:
 * winston would format it (timestamp, printf) and pass it down its streams
 * before its transport dropped it, and every refresh logs a few at debug.
 */
export function logFunction(logger: Logger, prefix = ''): AgentxLog {
  return (level, message) => {
    if (logger.isLevelEnabled(level)) logger.log(level, prefix + message);
  };
}

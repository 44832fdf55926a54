export type LogLevel = 'debug' | 'info' | 'warn' | 'error';

const ORDER: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

export interface Logger {
  debug(msg: string): void;
  info(msg: string): void;
  warn(msg: string): void;
  error(msg: string): void;
  child(scope: string): Logger;
}

let threshold: number = ORDER[(process.env.USBWIRE_LOG as LogLevel) ?? 'info'] ?? ORDER.info;
let sink: (line: string) => void = (line) => process.stderr.write(`${line}\n`);

export function setLogLevel(level: LogLevel): void {
  threshold = ORDER[level];
}

/** Redirect log lines (tests capture them; 'silent' drops them). */
export function setLogSink(fn: ((line: string) => void) | 'silent'): void {
  sink = fn === 'silent' ? () => {} : fn;
}

export function createLogger(scope: string): Logger {
  const emit = (level: LogLevel, msg: string) => {
    if (ORDER[level] < threshold) return;
    sink(`${new Date().toISOString()} ${level.padEnd(5)} [${scope}] ${msg}`);
  };
  return {
    debug: (m) => emit('debug', m),
    info: (m) => emit('info', m),
    warn: (m) => emit('warn', m),
    error: (m) => emit('error', m),
    child: (s) => createLogger(`${scope}:${s}`),
  };
}

/** What both target processes share: reporting to the driver, and a crash as a message before the exit. */

export const sendToDriver = (m: unknown): void => {
  process.send?.(m);
};

/** A log line that names an internal error: a bug, never a protocol error. */
export function isInternalError(line: string): boolean {
  return / error \[/.test(line) || /internal error/i.test(line);
}

/**
 * An exception nobody caught ends the process, as it would a real server or client: tell the
 * driver why first. A driver that went away (killed, crashed) takes this process with it.
 */
export function reportCrashes(): void {
  process.on('disconnect', () => process.exit(0));
  process.on('uncaughtException', (err) => {
    sendToDriver({ type: 'crash', error: err.stack ?? String(err) });
    process.exit(70);
  });
  process.on('unhandledRejection', (err) => {
    sendToDriver({ type: 'crash', error: `unhandled rejection: ${(err as Error)?.stack ?? String(err)}` });
    process.exit(71);
  });
}

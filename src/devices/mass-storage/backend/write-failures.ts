import type { Logger } from '../../../util/log.js';

/** Failed writes within this window of the first one are summarised in one line, not logged each. */
export const WRITE_FAILURE_WINDOW_MS = 5_000;

/**
 * Logs host-side write failures (ENOSPC, EIO, ...) of one image: the guest only sees a MEDIUM
 * ERROR, the operator needs the cause. The first failure of a burst is logged at once with its
 * offset and errno; later ones within the window are counted and summarised when it ends.
 */
export class WriteFailureLog {
  readonly #path: string;
  readonly #log: Logger;
  readonly #windowMs: number;
  #timer: NodeJS.Timeout | undefined;
  #suppressed = 0;
  #last = '';

  constructor(path: string, log: Logger, windowMs = WRITE_FAILURE_WINDOW_MS) {
    this.#path = path;
    this.#log = log;
    this.#windowMs = windowMs;
  }

  failed(offset: number, length: number, err: unknown): void {
    const what = describe(err);
    if (this.#timer) {
      this.#suppressed++;
      this.#last = `${what} at offset ${offset}`;
      return;
    }
    this.#log.error(`write to ${this.#path} at offset ${offset} (${length} bytes) failed: ${what}`);
    this.#timer = setTimeout(() => this.#endBurst(), this.#windowMs);
    this.#timer.unref();
  }

  /** Summarise what is pending now (at close). */
  flush(): void {
    if (this.#timer) {
      clearTimeout(this.#timer);
      this.#endBurst();
    }
  }

  #endBurst(): void {
    this.#timer = undefined;
    if (this.#suppressed === 0) return;
    const n = this.#suppressed;
    this.#suppressed = 0;
    this.#log.error(`${n} more writes to ${this.#path} failed within ${this.#windowMs} ms (last: ${this.#last})`);
  }
}

function describe(err: unknown): string {
  const e = err as NodeJS.ErrnoException;
  return e?.code ? `${e.code} (${e.message})` : String(e?.message ?? err);
}

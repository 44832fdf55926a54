import type { Libusb, Pointer } from './libusb-ffi.js';

/**
 * Runs libusb's event handling on Node's main thread: every pollfd of the context (usbfs device
 * fds, libusb's event pipe and timerfd) is watched with a libuv poll handle, and a ready fd makes
 * a non-blocking libusb_handle_events_timeout_completed call, inside which completion callbacks
 * run. No thread of libusb's own, so no locking between libusb callbacks and JavaScript.
 */
export class LibusbEventPump {
  readonly #lib: Libusb;
  readonly #ctx: Pointer;
  readonly #watches = new Map<number, { close(): void }>();
  readonly #onRemoved: (fd: number) => void;
  readonly #onError: (err: unknown) => void;
  #removeNotifiers: (() => void) | undefined;

  constructor(lib: Libusb, ctx: Pointer, onRemoved: (fd: number) => void, onError: (err: unknown) => void) {
    this.#lib = lib;
    this.#ctx = ctx;
    this.#onRemoved = onRemoved;
    this.#onError = onError;
  }

  start(): void {
    this.#removeNotifiers = this.#lib.onPollFdChange(
      this.#ctx,
      (fd, events) => this.#watch(fd, events),
      (fd) => this.#unwatch(fd, true),
    );
    for (const { fd, events } of this.#lib.pollFds(this.#ctx)) this.#watch(fd, events);
  }

  get fds(): number[] {
    return [...this.#watches.keys()];
  }

  /** Handle whatever is ready now (also useful right after a synchronous libusb call). */
  handle(): void {
    try {
      const rc = this.#lib.handleEventsNow(this.#ctx);
      if (rc < 0) this.#onError(new Error(`libusb_handle_events: ${rc}`));
    } catch (err) {
      this.#onError(err);
    }
  }

  stop(): void {
    this.#removeNotifiers?.();
    this.#removeNotifiers = undefined;
    for (const fd of [...this.#watches.keys()]) this.#unwatch(fd, false);
  }

  #watch(fd: number, events: number): void {
    this.#watches.get(fd)?.close();
    this.#watches.set(
      fd,
      this.#lib.watchFd(fd, events, () => this.handle()),
    );
  }

  #unwatch(fd: number, notify: boolean): void {
    const w = this.#watches.get(fd);
    if (!w) return;
    this.#watches.delete(fd);
    w.close();
    if (notify) this.#onRemoved(fd);
  }
}

/**
 * Isochronous endpoints move one packet per service interval, never faster: a transfer of N
 * packets completes N intervals after the endpoint is free. Completing at once would let a
 * host that keeps an iso IN stream going (QEMU's usb-redir, usbwire's usbredir server) spin
 * without ever yielding to I/O.
 */
export class IsoPacer {
  readonly #nextFree = new Map<number, number>();
  readonly #timers = new Set<NodeJS.Timeout>();

  /** Run `done` when `packets` more packets have gone through `endpoint`. */
  schedule(endpoint: number, packets: number, intervalMs: number, done: () => void): void {
    const now = performance.now();
    const end = Math.max(now, this.#nextFree.get(endpoint) ?? 0) + Math.max(1, packets) * intervalMs;
    this.#nextFree.set(endpoint, end);
    const timer = setTimeout(() => {
      this.#timers.delete(timer);
      done();
    }, end - now);
    this.#timers.add(timer);
  }

  /** Forget the schedule (the host has already failed whatever was pending). */
  clear(): void {
    for (const t of this.#timers) clearTimeout(t);
    this.#timers.clear();
    this.#nextFree.clear();
  }
}

import { EventEmitter } from 'node:events';
import type { UsbDevice, UsbDeviceEvents } from '../../src/usb/device.js';
import { TransferStatus } from '../../src/usb/status.js';
import type { Transfer } from '../../src/usb/transfer.js';

/** Called when the inner device completed `t`; may alter the outcome (corrupt a CSW, fake a stall). */
export type CompletionHook = (t: Transfer) => void;

/**
 * A UsbDevice in front of another that records submit/complete order per endpoint, can delay
 * every completion (a link's latency, without sockets) and can tamper with completions.
 */
export class TapDevice extends EventEmitter<UsbDeviceEvents> implements UsbDevice {
  readonly events: string[] = [];
  onComplete: CompletionHook | undefined;
  /** Transfers it says yes to never reach the inner device: they stay pending until cancelled. */
  swallow: ((t: Transfer) => boolean) | undefined;
  readonly #swallowed = new Map<Transfer, () => void>();
  submitted = 0;

  constructor(
    readonly inner: UsbDevice,
    readonly delayMs = 0,
  ) {
    super();
    inner.on('disconnect', () => this.emit('disconnect'));
  }

  get name(): string {
    return this.inner.name;
  }
  get speed() {
    return this.inner.speed;
  }
  get descriptors() {
    return this.inner.descriptors;
  }
  get configuration(): number {
    return this.inner.configuration;
  }
  alternateSetting(i: number): number {
    return this.inner.alternateSetting(i);
  }

  async submit(t: Transfer): Promise<void> {
    this.submitted++;
    const ep = `${t.type === 'control' ? 'ctl' : t.isIn ? 'in' : 'out'}${t.endpointNumber}`;
    this.events.push(`submit ${ep}`);
    if (this.swallow?.(t)) {
      await new Promise<void>((resolve) => this.#swallowed.set(t, resolve));
      this.events.push(`complete ${ep}`);
      return;
    }
    await this.inner.submit(t);
    if (this.delayMs > 0) await new Promise((r) => setTimeout(r, this.delayMs));
    this.onComplete?.(t);
    this.events.push(`complete ${ep}`);
  }

  cancel(t: Transfer): void {
    const swallowed = this.#swallowed.get(t);
    if (swallowed) {
      this.#swallowed.delete(t);
      t.fail(TransferStatus.Cancelled);
      swallowed();
      return;
    }
    this.inner.cancel(t);
  }
  reset(): Promise<void> {
    return this.inner.reset();
  }
  close(): Promise<void> {
    return this.inner.close();
  }
}

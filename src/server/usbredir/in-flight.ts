import type { UsbDevice } from '../../usb/device.js';
import { TransferStatus } from '../../usb/status.js';
import type { Transfer } from '../../usb/transfer.js';
import type { Logger } from '../../util/log.js';

/** Every transfer submitted to the device, so quiescing and teardown can wait for them. */
export class InFlightTransfers {
  readonly #device: UsbDevice;
  readonly #log: Logger;
  readonly #drainTimeoutMs: number;
  readonly #inFlight = new Set<Promise<void>>();

  constructor(device: UsbDevice, log: Logger, drainTimeoutMs: number) {
    this.#device = device;
    this.#log = log;
    this.#drainTimeoutMs = drainTimeoutMs;
  }

  submit(t: Transfer): Promise<void> {
    const p = this.#device.submit(t).catch((err: unknown) => {
      // The contract says submit never rejects; a device that does gets an io error, not a crash.
      this.#log.error(`device rejected ${t.describe()}: ${String(err)}`);
      t.fail(TransferStatus.IoError);
    });
    this.#inFlight.add(p);
    void p.then(() => this.#inFlight.delete(p));
    return p;
  }

  /** Wait for every submitted transfer, at most the drain timeout. */
  async drain(): Promise<void> {
    if (this.#inFlight.size === 0) return;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<boolean>((resolve) => {
      timer = setTimeout(() => resolve(false), this.#drainTimeoutMs);
    });
    const all = Promise.allSettled([...this.#inFlight]).then(() => true);
    const finished = await Promise.race([all, timeout]);
    clearTimeout(timer);
    if (!finished) this.#log.warn(`${this.#inFlight.size} transfers still pending after cancel`);
  }
}

import { EventEmitter } from 'node:events';
import type { DeviceDescriptors, UsbDevice, UsbDeviceEvents } from '../../src/usb/device.js';
import { StandardRequest } from '../../src/usb/setup.js';
import { TransferStatus } from '../../src/usb/status.js';
import type { Transfer } from '../../src/usb/transfer.js';

/** USB 2.0, vendor-specific, 1209:0002, one configuration. */
const DEVICE = Buffer.from([18, 1, 0x00, 0x02, 0, 0, 0, 64, 0x09, 0x12, 0x02, 0x00, 0x00, 0x01, 0, 0, 0, 1]);

/** Configuration 1: one vendor interface with bulk IN 0x81, bulk OUT 0x02, interrupt IN 0x83. */
const CONFIGURATION = Buffer.from([
  ...[9, 2, 39, 0, 1, 1, 0, 0x80, 50],
  ...[9, 4, 0, 0, 3, 0xff, 0, 0, 0],
  ...[7, 5, 0x81, 2, 0x00, 0x02, 0],
  ...[7, 5, 0x02, 2, 0x00, 0x02, 0],
  ...[7, 5, 0x83, 3, 8, 0, 4],
]);

/**
 * A device on which every bulk and interrupt transfer stays pending until cancelled (a keyboard
 * nobody types on, a disk that never answers). Cancel is O(1), so timing a server's teardown with
 * many transfers pending measures the server, not the device. Control requests: descriptors and
 * SET_CONFIGURATION answer at once. Endpoints: bulk IN 0x81, bulk OUT 0x02, interrupt IN 0x83.
 */
export class ParkingDevice extends EventEmitter<UsbDeviceEvents> implements UsbDevice {
  readonly name = 'parking';
  readonly speed = 'high' as const;
  readonly descriptors: DeviceDescriptors;
  configuration = 0;
  readonly #parked = new Map<Transfer, () => void>();
  submitted = 0;
  resets = 0;

  constructor() {
    super();
    this.descriptors = { device: DEVICE, configurations: [CONFIGURATION] };
  }

  get parked(): number {
    return this.#parked.size;
  }

  alternateSetting(): number {
    return 0;
  }

  submit(t: Transfer): Promise<void> {
    this.submitted++;
    if (t.type === 'control') {
      this.#control(t);
      return Promise.resolve();
    }
    return new Promise((resolve) => this.#parked.set(t, resolve));
  }

  /** Complete one parked transfer successfully (IN with `fill`-bytes), as if the device answered. */
  complete(t: Transfer, fill = 0x5a): void {
    const done = this.#parked.get(t);
    if (!done) return;
    this.#parked.delete(t);
    if (t.isIn) t.completeIn(Buffer.alloc(t.length, fill));
    else t.actualLength = t.length;
    done();
  }

  /** The transfers parked right now, oldest first. */
  parkedTransfers(): Transfer[] {
    return [...this.#parked.keys()];
  }

  cancel(t: Transfer): void {
    const done = this.#parked.get(t);
    if (!done) return;
    this.#parked.delete(t);
    t.fail(TransferStatus.Cancelled);
    done();
  }

  async reset(): Promise<void> {
    this.resets++;
    for (const t of [...this.#parked.keys()]) this.cancel(t);
    this.configuration = 0;
  }

  async close(): Promise<void> {}

  #control(t: Transfer): void {
    const s = t.setup!;
    if (s.bRequest === StandardRequest.GetDescriptor && s.bmRequestType === 0x80) {
      const type = s.wValue >> 8;
      const d = type === 1 ? this.descriptors.device : type === 2 ? this.descriptors.configurations[0] : undefined;
      if (d) t.completeIn(d.subarray(0, Math.min(d.length, s.wLength)));
      else t.fail(TransferStatus.Stall);
      return;
    }
    if (s.bRequest === StandardRequest.SetConfiguration) {
      this.configuration = s.wValue;
      return;
    }
    if (s.bRequest === StandardRequest.GetConfiguration) {
      t.completeIn(Buffer.from([this.configuration]));
      return;
    }
    t.fail(TransferStatus.Stall);
  }
}

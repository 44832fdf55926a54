import { EventEmitter } from 'node:events';
import type { UsbDevice } from '../../usb/device.js';
import type { DeviceSource, DeviceSourceEvents } from '../../usb/source.js';
import { hex4 } from '../../util/hex.js';
import { createLogger, type Logger } from '../../util/log.js';
import { whatHolds } from './holders.js';
import { type DeviceSelector, formatSelector, matches, selectDevice } from './selector.js';
import { type HostRoot, type HostUsbDevice, listHostDevices, REAL_HOST } from './sysfs.js';

export interface HostDeviceSourceOptions {
  selector: DeviceSelector;
  /** Open a host device for export (libusb). */
  open: (device: HostUsbDevice) => Promise<UsbDevice>;
  /** Export a disk even while the host has it mounted or open ("try disconnect" overridden). */
  force?: boolean;
  host?: HostRoot;
  /** How often sysfs is looked at for the device to appear or go (default 1 s). */
  pollMs?: number;
  logger?: Logger;
}

/**
 * A host device for export: watches sysfs for the selected device, opens it when it is plugged
 * (unless a mounted or open disk holds it), and notices when it goes. A port path keeps the
 * port: whatever is plugged there next, another VID:PID after a firmware upload included, is the
 * next device.
 */
export class HostDeviceSource extends EventEmitter<DeviceSourceEvents> implements DeviceSource {
  readonly description: string;
  readonly #opts: HostDeviceSourceOptions;
  readonly #host: HostRoot;
  readonly #log: Logger;
  #timer: NodeJS.Timeout | undefined;
  #current: { device: UsbDevice; host: HostUsbDevice; gone: boolean } | undefined;
  /** The look at sysfs (or open) in progress: the timer does not start another. */
  #running: Promise<void> | undefined;
  #stopped = false;
  /** Last thing said about why nothing is exported, so it is said once. */
  #lastNote = '';

  constructor(opts: HostDeviceSourceOptions) {
    super();
    this.#opts = opts;
    this.#host = opts.host ?? REAL_HOST;
    this.description = `host device ${formatSelector(opts.selector)}`;
    this.#log = opts.logger ?? createLogger('host-device');
  }

  start(): void {
    if (this.#timer || this.#stopped) return;
    this.#timer = setInterval(() => void this.#poll(), this.#opts.pollMs ?? 1000);
    // The servers keep the process alive; a watch alone must not.
    this.#timer.unref();
    void this.#poll();
  }

  async close(): Promise<void> {
    this.#stopped = true;
    clearInterval(this.#timer);
    // A look in progress may be opening the device: let it finish (it closes what it opened).
    await this.#running;
    const current = this.#current;
    if (current) await this.#drop(current);
  }

  /** One full look at sysfs after any in progress (tests call it instead of waiting for the timer). */
  async poll(): Promise<void> {
    await this.#running;
    await this.#poll();
  }

  #poll(): Promise<void> {
    if (this.#stopped) return Promise.resolve();
    this.#running ??= this.#look().finally(() => {
      this.#running = undefined;
    });
    return this.#running;
  }

  async #look(): Promise<void> {
    const selector = this.#opts.selector;
    // Strings (names, serial) make the kernel take the device lock: only when a serial selects.
    const strings = selector.kind === 'id' && selector.serial !== undefined;
    let devices: HostUsbDevice[];
    try {
      // While a device is exported only its own port is looked at: reading every device's sysfs
      // attributes each second costs a busy host (or an emulated one) real CPU.
      const only = this.#current?.host.path;
      devices = await listHostDevices(this.#host, { strings, ...(only === undefined ? {} : { only }) });
    } catch (err) {
      this.#note('warn', (err as Error).message);
      return;
    }
    if (this.#stopped) return;
    const current = this.#current;
    if (current) {
      // Gone, or something else now sits on the port: the exported device is unplugged. Another
      // device with the same VID:PID (a USB/IP client's copy of this one attached back to this
      // host, say) does not make the one exported ambiguous.
      const same = (d: HostUsbDevice) => d.busnum === current.host.busnum && d.devnum === current.host.devnum;
      if (!devices.some((d) => same(d) && matches(selector, d))) {
        this.#log.info(`${this.description}: ${describe(current.host)} unplugged`);
        await this.#drop(current);
      }
      return;
    }
    let found: HostUsbDevice | undefined;
    try {
      found = selectDevice(selector, devices);
    } catch (err) {
      this.#note('warn', (err as Error).message);
      return;
    }
    if (!found) {
      this.#note('info', `${this.description}: nothing plugged; exported when it appears`);
      return;
    }
    const held = whatHolds(found, this.#host);
    if (held.length > 0 && !this.#opts.force) {
      this.#note(
        'warn',
        `${this.description}: not exporting ${describe(found)}: ${held.join('; ')} ` +
          '(unmount or close it first, or give force to take it anyway)',
      );
      return;
    }
    let device: UsbDevice;
    try {
      device = await this.#opts.open(found);
    } catch (err) {
      this.#note('warn', `${this.description}: cannot open ${describe(found)}: ${(err as Error).message}`);
      return;
    }
    if (this.#stopped) {
      await device.close();
      return;
    }
    if (held.length > 0)
      this.#log.warn(`${this.description}: exporting ${describe(found)} although ${held.join('; ')}`);
    const entry = { device, host: found, gone: false };
    this.#current = entry;
    this.#lastNote = '';
    device.once('disconnect', () => {
      entry.gone = true;
      if (this.#current === entry) this.#current = undefined;
      // Gone by itself (libusb saw it first): still ours to close, or its file descriptor and
      // libusb context stay open and keep the process alive after SIGTERM. After the other
      // listeners (the servers) have seen the disconnect.
      setImmediate(() => void this.#closeDevice(device));
    });
    this.#log.info(`${this.description}: exporting ${describe(found)}`);
    this.emit('device', device);
  }

  /** Close the device; if it did not say so itself, tell its users it is gone. */
  async #drop(entry: { device: UsbDevice; gone: boolean }): Promise<void> {
    if (this.#current === entry) this.#current = undefined;
    await this.#closeDevice(entry.device);
    if (!entry.gone) {
      entry.gone = true;
      entry.device.emit('disconnect');
    }
  }

  #closeDevice(device: UsbDevice): Promise<void> {
    return device.close().catch((err: Error) => this.#log.warn(`closing ${device.name}: ${err.message}`));
  }

  #note(level: 'info' | 'warn', text: string): void {
    if (text === this.#lastNote) return;
    this.#lastNote = text;
    this.#log[level](text);
  }
}

function describe(d: HostUsbDevice): string {
  const name = [d.manufacturer, d.product].filter(Boolean).join(' ');
  return `${d.path} (${hex4(d.vendorId)}:${hex4(d.productId)}${name ? ` ${name}` : ''})`;
}

import type { UsbDevice } from '../usb/device.js';

export interface ExportedDevice {
  /** USB/IP-style bus id: "1-1", "1-2", ... in the order devices were added. */
  readonly busid: string;
  readonly busnum: number;
  readonly devnum: number;
  readonly device: UsbDevice;
  /** Who is using it right now ("usbip 10.0.2.15:51234"), undefined when free. */
  owner: string | undefined;
}

/**
 * The devices a server process exports, shared by every protocol front end, so a device in use
 * over one protocol is busy for all others.
 */
export class DeviceRegistry {
  readonly #devices: ExportedDevice[] = [];

  add(device: UsbDevice): ExportedDevice {
    const devnum = this.#devices.length + 1;
    const entry: ExportedDevice = { busid: `1-${devnum}`, busnum: 1, devnum, device, owner: undefined };
    this.#devices.push(entry);
    return entry;
  }

  list(): readonly ExportedDevice[] {
    return this.#devices;
  }

  get(busid: string): ExportedDevice | undefined {
    return this.#devices.find((d) => d.busid === busid);
  }

  /** Take a device for exclusive use. Returns false if someone else holds it. */
  claim(entry: ExportedDevice, owner: string): boolean {
    if (entry.owner !== undefined) return false;
    entry.owner = owner;
    return true;
  }

  release(entry: ExportedDevice, owner: string): void {
    if (entry.owner === owner) entry.owner = undefined;
  }

  async closeAll(): Promise<void> {
    await Promise.all(this.#devices.map((d) => d.device.close()));
  }
}

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
  /** How each holder lets go when an operator detaches its device. */
  readonly #drops = new Map<ExportedDevice, () => void>();

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

  /**
   * Take a device for exclusive use. Returns false if someone else holds it. `drop` ends the
   * holder's use (closes its connection) when an operator detaches the device.
   */
  claim(entry: ExportedDevice, owner: string, drop?: () => void): boolean {
    if (entry.owner !== undefined) return false;
    entry.owner = owner;
    if (drop) this.#drops.set(entry, drop);
    return true;
  }

  release(entry: ExportedDevice, owner: string): void {
    if (entry.owner !== owner) return;
    entry.owner = undefined;
    this.#drops.delete(entry);
  }

  /** Make the holder let go of a device. Returns who held it, or undefined if it was free. */
  detach(entry: ExportedDevice): string | undefined {
    const owner = entry.owner;
    if (owner === undefined) return undefined;
    this.#drops.get(entry)?.();
    return owner;
  }

  async closeAll(): Promise<void> {
    await Promise.all(this.#devices.map((d) => d.device.close()));
  }
}

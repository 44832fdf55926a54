import { EventEmitter } from 'node:events';
import type { UsbDevice } from '../usb/device.js';

export interface ExportedDevice {
  /** USB/IP-style bus id: "1-1", "1-2", ... in the order devices were added. */
  readonly busid: string;
  readonly busnum: number;
  readonly devnum: number;
  /** The device in this slot; undefined while a remote device is away (it keeps its busid). */
  readonly device: UsbDevice | undefined;
  /** Where a remote device comes from ("usbip://10.1.2.3:3240/1-1.4"); undefined for local devices. */
  readonly origin: string | undefined;
  /** Who is using it right now ("usbip 10.0.2.15:51234"), undefined when free. */
  owner: string | undefined;
}

/** An entry whose device is here. */
export type PresentDevice = ExportedDevice & { readonly device: UsbDevice };

export function isPresent(entry: ExportedDevice): entry is PresentDevice {
  return entry.device !== undefined;
}

/** The entry's name for logs: the device's name, or where it will come from while it is away. */
export function entryName(entry: ExportedDevice): string {
  return entry.device?.name ?? `${entry.origin ?? entry.busid}, not connected`;
}

interface Slot extends ExportedDevice {
  device: UsbDevice | undefined;
}

export interface DeviceRegistryEvents {
  /** A device arrived in a slot (a remote device connected or came back). */
  plugged: [PresentDevice];
  /** The slot's device went away. */
  unplugged: [ExportedDevice];
  /** The holder let go of the entry (its connection is done with the device). */
  released: [ExportedDevice];
}

/**
 * The devices a server process exports, shared by every protocol front end, so a device in use
 * over one protocol is busy for all others. A slot for a remote device keeps its busid while the
 * device comes and goes, so a client that re-attaches finds it again.
 */
export class DeviceRegistry extends EventEmitter<DeviceRegistryEvents> {
  readonly #devices: Slot[] = [];
  /** How each holder lets go when an operator detaches its device. */
  readonly #drops = new Map<ExportedDevice, () => void>();

  add(device: UsbDevice): PresentDevice {
    return this.#addSlot(device, undefined) as PresentDevice;
  }

  /** A slot for a remote device that is not here yet. */
  addSlot(origin: string): ExportedDevice {
    return this.#addSlot(undefined, origin);
  }

  #addSlot(device: UsbDevice | undefined, origin: string | undefined): Slot {
    const devnum = this.#devices.length + 1;
    const entry: Slot = { busid: `1-${devnum}`, busnum: 1, devnum, device, origin, owner: undefined };
    this.#devices.push(entry);
    return entry;
  }

  /** Put a device that arrived into its (empty) slot. */
  plug(entry: ExportedDevice, device: UsbDevice): void {
    const slot = this.#slot(entry);
    if (slot.device) throw new Error(`slot ${slot.busid} already holds ${slot.device.name}`);
    slot.device = device;
    this.emit('plugged', slot as PresentDevice);
  }

  /** The slot's device is gone (it disconnected). Does nothing if the slot holds another device. */
  unplug(entry: ExportedDevice, device: UsbDevice): void {
    const slot = this.#slot(entry);
    if (slot.device !== device) return;
    slot.device = undefined;
    this.emit('unplugged', slot);
  }

  #slot(entry: ExportedDevice): Slot {
    const slot = this.#devices.find((d) => d === entry);
    if (!slot) throw new Error(`${entry.busid} is not in this registry`);
    return slot;
  }

  list(): readonly ExportedDevice[] {
    return this.#devices;
  }

  /** The entries whose device is here, as a device list shows them. */
  present(): PresentDevice[] {
    return this.#devices.filter(isPresent);
  }

  get(busid: string): ExportedDevice | undefined {
    return this.#devices.find((d) => d.busid === busid);
  }

  /**
   * Resolves with the entry once its device is here (at once if it is), or with undefined when
   * `signal` aborts first. `other` than a given device: wait for its successor.
   */
  whenPresent(entry: ExportedDevice, signal: AbortSignal, other?: UsbDevice): Promise<PresentDevice | undefined> {
    const wanted = (e: ExportedDevice): e is PresentDevice => e === entry && isPresent(e) && e.device !== other;
    if (wanted(entry)) return Promise.resolve(entry);
    if (signal.aborted) return Promise.resolve(undefined);
    return new Promise((resolve) => {
      const onPlugged = (e: PresentDevice) => {
        if (!wanted(e)) return;
        done(e);
      };
      const onAbort = () => done(undefined);
      const done = (e: PresentDevice | undefined) => {
        this.off('plugged', onPlugged);
        signal.removeEventListener('abort', onAbort);
        resolve(e);
      };
      this.on('plugged', onPlugged);
      signal.addEventListener('abort', onAbort, { once: true });
    });
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
    this.emit('released', entry);
  }

  /** Make the holder let go of a device. Returns who held it, or undefined if it was free. */
  detach(entry: ExportedDevice): string | undefined {
    const owner = entry.owner;
    if (owner === undefined) return undefined;
    this.#drops.get(entry)?.();
    return owner;
  }

  async closeAll(): Promise<void> {
    await Promise.all(this.#devices.map((d) => d.device?.close()));
  }
}

import type { DeviceRegistry, ExportedDevice } from '../server/registry.js';
import type { UsbDevice } from '../usb/device.js';
import type { DeviceSource } from '../usb/source.js';
import { createLogger } from '../util/log.js';

const log = createLogger('slots');

/**
 * Devices that come and go in the registry (remote ones, host devices): each `--remote` gets a
 * slot (a busid) at start, in the order given; the slot holds the source's device while it is
 * connected and keeps its busid while it is away. A source that yields several devices at once (a listener several hosts connect to) gets
 * more slots as needed.
 */
export class DeviceSlots {
  readonly #registry: DeviceRegistry;
  readonly #sources: DeviceSource[] = [];

  constructor(registry: DeviceRegistry) {
    this.#registry = registry;
  }

  /** Give `source` its first slot now; its devices go into its slots once started. */
  add(source: DeviceSource): ExportedDevice {
    const slots = [this.#registry.addSlot(source.description)];
    this.#sources.push(source);
    source.on('device', (device) => this.#arrived(source, slots, device));
    return slots[0]!;
  }

  start(): void {
    for (const s of this.#sources) s.start();
  }

  async close(): Promise<void> {
    await Promise.allSettled(this.#sources.map((s) => s.close()));
  }

  #arrived(source: DeviceSource, slots: ExportedDevice[], device: UsbDevice): void {
    let slot = slots.find((s) => s.device === undefined);
    if (!slot) {
      slot = this.#registry.addSlot(source.description);
      slots.push(slot);
    }
    const entry = slot;
    this.#registry.plug(entry, device);
    log.info(`${entry.busid}: connected: ${device.name}`);
    device.once('disconnect', () => {
      log.info(`${entry.busid}: ${device.name} disconnected; the busid is kept for it`);
      this.#registry.unplug(entry, device);
    });
  }
}

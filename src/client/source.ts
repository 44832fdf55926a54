import type { EventEmitter } from 'node:events';
import type { UsbDevice } from '../usb/device.js';

export interface DeviceSourceEvents {
  /**
   * A remote device is here and ready (descriptors read). It stays until it emits `disconnect`;
   * a device that comes back later is a new `device` event with a new object.
   */
  device: [UsbDevice];
}

/**
 * Where remote devices come from: one `--remote` URL. A source keeps trying (reconnect with
 * backoff, or keep listening) until closed; it never throws after `start`, it logs.
 */
export interface DeviceSource extends EventEmitter<DeviceSourceEvents> {
  /** The URL as the user would write it ("usbip://10.1.2.3:3240/1-1.4"). */
  readonly description: string;
  start(): void;
  /** Stop reconnecting/listening and close the devices it produced (they emit `disconnect`). */
  close(): Promise<void>;
}

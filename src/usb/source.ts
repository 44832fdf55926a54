import type { EventEmitter } from 'node:events';
import type { UsbDevice } from './device.js';

export interface DeviceSourceEvents {
  /**
   * A device is here and ready (descriptors read). It stays until it emits `disconnect`; a
   * device that comes back later is a new `device` event with a new object.
   */
  device: [UsbDevice];
}

/**
 * Where devices that come and go come from: one `--remote` URL, or one host device selector
 * (`--device 1-1.4`). A source keeps trying (reconnect with backoff, keep listening, watch for
 * the device to be plugged) until closed; it never throws after `start`, it logs.
 */
export interface DeviceSource extends EventEmitter<DeviceSourceEvents> {
  /** What the user wrote ("usbip://10.1.2.3:3240/1-1.4", "host device 1-1.4"). */
  readonly description: string;
  start(): void;
  /** Stop reconnecting/listening and close the devices it produced (they emit `disconnect`). */
  close(): Promise<void>;
}

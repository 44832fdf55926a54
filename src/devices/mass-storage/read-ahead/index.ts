import type { UsbDevice } from '../../../usb/device.js';
import { ReadAheadDevice } from './read-ahead-device.js';
import type { ReadAheadOptions } from './sequential-policy.js';

export { ReadAheadDevice, type ReadAheadStats } from './read-ahead-device.js';
export type { ReadAheadOptions } from './sequential-policy.js';

/** `device` (a Bulk-Only disk) with read-ahead for sequential READs; see ReadAheadDevice. */
export function withReadAhead(device: UsbDevice, opts?: ReadAheadOptions): ReadAheadDevice {
  return new ReadAheadDevice(device, opts);
}

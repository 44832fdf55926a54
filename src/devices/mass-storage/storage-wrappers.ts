import type { UsbDevice } from '../../usb/device.js';
import type { UsbSpeed } from '../../usb/speed.js';
import { presentBotAsUas } from './bot-as-uas.js';
import { withReadAhead } from './read-ahead/index.js';

/** Wrappers in front of a Bulk-Only disk, as `--remote URL,OPTS`, `--device SEL,OPTS` and `--disk PATH,OPTS` name them. */
export interface StorageWrapping {
  /** Present it as UAS, at this speed ('same': the device's own). */
  asUas?: UsbSpeed | 'same';
  /** Prefetch sequential reads; 'pipelined': prefetch commands sent in one go (the device must queue early transfers). */
  readAhead?: 'on' | 'pipelined';
}

export const STORAGE_OPTIONS_USAGE = 'as-uas[=high|super], read-ahead[=pipelined]';

/** Reads one option into `w`; false when it is not a storage option; throws on a bad value. */
export function parseStorageOption(opt: string, w: StorageWrapping): boolean {
  const [name, value] = opt.split('=', 2) as [string, string | undefined];
  if (name === 'as-uas') {
    if (value !== undefined && value !== 'high' && value !== 'super') {
      throw new Error(`as-uas=${value}: the speed must be high or super`);
    }
    w.asUas = value ?? 'same';
  } else if (name === 'read-ahead') {
    if (value !== undefined && value !== 'pipelined')
      throw new Error(`read-ahead=${value}: expected read-ahead or read-ahead=pipelined`);
    w.readAhead = value ?? 'on';
  } else return false;
  return true;
}

export function isWrapped(w: StorageWrapping): boolean {
  return w.asUas !== undefined || w.readAhead !== undefined;
}

/**
 * The device with the wrappers asked for (the device itself when none): read-ahead next to the
 * BOT device, the UAS front end on top. What the device offers besides transfers (safe release,
 * actions) stays reachable through the wrappers.
 */
export async function wrapStorage<D extends UsbDevice>(device: D, w: StorageWrapping): Promise<UsbDevice> {
  let wrapped: UsbDevice = device;
  if (w.readAhead) wrapped = withReadAhead(wrapped, w.readAhead === 'pipelined' ? { pipelined: true } : {});
  if (w.asUas !== undefined) wrapped = await presentBotAsUas(wrapped, w.asUas === 'same' ? {} : { speed: w.asUas });
  if (wrapped === device) return device;
  const extras = device as { safeRelease?: unknown; actions?: unknown };
  if (extras.safeRelease !== undefined) Object.assign(wrapped, { safeRelease: extras.safeRelease });
  if (extras.actions !== undefined) Object.assign(wrapped, { actions: extras.actions });
  return wrapped;
}

import type { UsbDevice } from '../../usb/device.js';
import type { UsbSpeed } from '../../usb/speed.js';
import { presentBotAsUas } from './bot-as-uas.js';

/** Wrappers in front of a Bulk-Only disk, as `--remote URL,OPTS`, `--device SEL,OPTS` and `--disk PATH,OPTS` name them. */
export interface StorageWrapping {
  /** Present it as UAS, at this speed ('same': the device's own). */
  asUas?: UsbSpeed | 'same';
}

export const STORAGE_OPTIONS_USAGE = 'as-uas[=high|super]';

/** Reads one option into `w`; false when it is not a storage option; throws on a bad value. */
export function parseStorageOption(opt: string, w: StorageWrapping): boolean {
  if (opt === 'as-uas') w.asUas = 'same';
  else if (opt.startsWith('as-uas=')) {
    const speed = opt.slice('as-uas='.length);
    if (speed !== 'high' && speed !== 'super') throw new Error(`as-uas=${speed}: the speed must be high or super`);
    w.asUas = speed;
  } else return false;
  return true;
}

export function isWrapped(w: StorageWrapping): boolean {
  return w.asUas !== undefined;
}

/** The device with the wrappers asked for (the device itself when none). */
export async function wrapStorage(device: UsbDevice, w: StorageWrapping): Promise<UsbDevice> {
  if (w.asUas === undefined) return device;
  return presentBotAsUas(device, w.asUas === 'same' ? {} : { speed: w.asUas });
}

import { realpathSync } from 'node:fs';
import type { UsbSpeed } from '../../usb/speed.js';
import { DeviceSpecError, registerDeviceClass } from '../classes.js';
import { type DiskTransport, openDiskImage } from './index.js';
import { parseStorageOption, type StorageWrapping, wrapStorage } from './storage-wrappers.js';

export interface DiskOptions {
  path: string;
  readOnly: boolean;
  speed: UsbSpeed;
  transport: DiskTransport;
  /** Wrappers in front of the BOT disk (as-uas: the path a real BOT disk takes, for tests and benchmarks). */
  storage: StorageWrapping;
}

const KNOWN = 'readonly, uas, speed=full|high|super, as-uas[=high|super], read-ahead[=pipelined]';

registerDeviceClass<DiskOptions>({
  name: 'disk',
  usage: 'PATH[,readonly][,uas][,speed=full|high|super][,as-uas[=high|super]][,read-ahead]',
  summary:
    'a raw disk image as USB mass storage: Bulk-Only Transport, or with uas USB Attached SCSI (BOT as alternate setting 0; streams at speed=super); default high speed',
  parse(spec) {
    const parts = (spec ?? '').split(',');
    const path = parts[0] ?? '';
    if (path === '') throw new DeviceSpecError('needs a path: --disk PATH[,readonly]');
    let readOnly = false;
    let speed: UsbSpeed = 'high';
    let transport: DiskTransport = 'bot';
    const storage: StorageWrapping = {};
    for (const opt of parts.slice(1)) {
      if (opt === 'readonly' || opt === 'ro') readOnly = true;
      else if (opt === 'uas') transport = 'uas';
      else if (opt.startsWith('speed=')) {
        const value = opt.slice('speed='.length);
        if (value !== 'full' && value !== 'high' && value !== 'super') {
          throw new DeviceSpecError('speed must be full, high or super');
        }
        speed = value;
      } else if (!storageOption(opt, storage)) throw new DeviceSpecError(`unknown option "${opt}" (known: ${KNOWN})`);
    }
    if (transport === 'uas' && storage.asUas) {
      throw new DeviceSpecError('uas (a UAS disk) and as-uas (a BOT disk shown as UAS) exclude each other');
    }
    return { path, readOnly, speed, transport, storage };
  },
  exclusiveResource(o) {
    if (o.readOnly) return undefined;
    let real = o.path;
    try {
      real = realpathSync(o.path);
    } catch {
      // not there: opening it will say so
    }
    return `writable image ${real}`;
  },
  async create(o, ctx) {
    const disk = await openDiskImage(o.path, o, ctx.index);
    try {
      return await wrapStorage(disk, o.storage);
    } catch (err) {
      await disk.close();
      throw err;
    }
  },
});

function storageOption(opt: string, storage: StorageWrapping): boolean {
  try {
    return parseStorageOption(opt, storage);
  } catch (err) {
    throw new DeviceSpecError((err as Error).message);
  }
}

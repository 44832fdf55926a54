import { realpathSync } from 'node:fs';
import type { UsbSpeed } from '../../usb/speed.js';
import { DeviceSpecError, registerDeviceClass } from '../classes.js';
import { type DiskTransport, openDiskImage } from './index.js';

export interface DiskOptions {
  path: string;
  readOnly: boolean;
  speed: UsbSpeed;
  transport: DiskTransport;
}

registerDeviceClass<DiskOptions>({
  name: 'disk',
  usage: 'PATH[,readonly][,uas][,speed=full|high|super]',
  summary:
    'a raw disk image as USB mass storage: Bulk-Only Transport, or with uas USB Attached SCSI (BOT as alternate setting 0; streams at speed=super); default high speed',
  parse(spec) {
    const parts = (spec ?? '').split(',');
    const path = parts[0] ?? '';
    if (path === '') throw new DeviceSpecError('needs a path: --disk PATH[,readonly]');
    let readOnly = false;
    let speed: UsbSpeed = 'high';
    let transport: DiskTransport = 'bot';
    for (const opt of parts.slice(1)) {
      if (opt === 'readonly' || opt === 'ro') readOnly = true;
      else if (opt === 'uas') transport = 'uas';
      else if (opt.startsWith('speed=')) {
        const value = opt.slice('speed='.length);
        if (value !== 'full' && value !== 'high' && value !== 'super') {
          throw new DeviceSpecError('speed must be full, high or super');
        }
        speed = value;
      } else throw new DeviceSpecError(`unknown option "${opt}" (known: readonly, uas, speed=full|high|super)`);
    }
    return { path, readOnly, speed, transport };
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
  create(o, ctx) {
    return openDiskImage(o.path, o, ctx.index);
  },
});

import type { UsbSpeed } from '../../usb/speed.js';
import { EmulatedDevice } from '../emulated-device.js';
import { ProductId, USBWIRE_VENDOR_ID } from '../ids.js';
import type { SafeRelease } from '../safe-release.js';
import { type BlockBackend, FileBackend, MemoryBackend } from './backend/index.js';
import { BotFunction } from './bot-function.js';
import { diskSafeRelease } from './safe-release.js';
import { ScsiDisk } from './scsi/scsi-disk.js';
import { UasFunction } from './uas-function.js';

/** How the disk talks to the host: Bulk-Only Transport, or UAS (with BOT as alternate setting 0). */
export type DiskTransport = 'bot' | 'uas';

export interface BotDiskOptions {
  name: string;
  speed?: UsbSpeed;
  serial?: string;
  product?: string;
  transport?: DiskTransport;
}

/** A USB disk: an EmulatedDevice that can be taken from its host safely. */
export type BotDisk = EmulatedDevice & { readonly safeRelease: SafeRelease };

/**
 * A USB flash-drive-like device over one SCSI disk: one BOT interface, or with `transport: 'uas'`
 * an interface whose alternate setting 1 is UAS (many commands in flight, streams at SuperSpeed).
 */
export function createBotDisk(backend: BlockBackend, opts: BotDiskOptions): BotDisk {
  const serial = opts.serial ?? 'USBWIRE0001';
  const uas = opts.transport === 'uas';
  const disk = new ScsiDisk(backend, {
    readOnly: backend.readOnly,
    removable: true,
    vendor: 'usbwire',
    product: opts.product ?? 'Virtual Disk',
    revision: '0100',
    serial,
    taggedQueuing: uas,
  });
  const fn = uas ? new UasFunction(disk) : new BotFunction(disk);
  const dev = new EmulatedDevice({
    name: opts.name,
    speed: opts.speed ?? 'high',
    vendorId: USBWIRE_VENDOR_ID,
    productId: ProductId.massStorage,
    bcdDevice: 0x0100,
    manufacturer: 'usbwire',
    product: opts.product ?? 'Virtual Disk',
    serial,
    maxPowerMa: 100,
    functions: [fn],
    onClose: () => backend.close(),
  });
  return Object.assign(dev, { safeRelease: diskSafeRelease(disk) });
}

export async function openDiskImage(
  path: string,
  opts: { readOnly: boolean; speed: UsbSpeed; transport?: DiskTransport },
  index: number,
): Promise<BotDisk> {
  const backend = await FileBackend.open(path, { readOnly: opts.readOnly });
  const notes = [
    opts.transport === 'uas' ? 'UAS' : '',
    opts.readOnly ? 'read-only' : '',
    opts.speed === 'high' ? '' : `${opts.speed} speed`,
  ].filter(Boolean);
  return createBotDisk(backend, {
    name: `disk ${path}${notes.length ? ` (${notes.join(', ')})` : ''}`,
    serial: serialFor(index),
    speed: opts.speed,
    ...(opts.transport ? { transport: opts.transport } : {}),
  });
}

export function createDemoDisk(sizeMiB: number, index: number): BotDisk {
  return createBotDisk(new MemoryBackend(sizeMiB * 1024 * 1024), {
    name: `demo disk (${sizeMiB} MiB in memory)`,
    serial: serialFor(index),
    product: 'Demo Disk',
  });
}

function serialFor(index: number): string {
  return `USBWIRE${String(index + 1).padStart(5, '0')}`;
}

import type { UsbDevice } from '../../src/usb/device.js';
import type { SetupPacket } from '../../src/usb/setup.js';
import { Transfer, type TransferFlags } from '../../src/usb/transfer.js';

/** Small helpers that act as a host controller driving a UsbDevice directly. */
export async function control(dev: UsbDevice, setup: SetupPacket, data?: Buffer): Promise<Transfer> {
  const isIn = (setup.bmRequestType & 0x80) !== 0;
  const t = new Transfer({
    type: 'control',
    endpoint: isIn ? 0x80 : 0x00,
    setup,
    length: setup.wLength,
    ...(data ? { data } : {}),
  });
  await dev.submit(t);
  return t;
}

export function getDescriptor(
  dev: UsbDevice,
  type: number,
  index: number,
  length: number,
  langId = 0,
): Promise<Transfer> {
  return control(dev, {
    bmRequestType: 0x80,
    bRequest: 6,
    wValue: (type << 8) | index,
    wIndex: langId,
    wLength: length,
  });
}

export function setConfiguration(dev: UsbDevice, value: number): Promise<Transfer> {
  return control(dev, { bmRequestType: 0x00, bRequest: 9, wValue: value, wIndex: 0, wLength: 0 });
}

export function bulkIn(
  dev: UsbDevice,
  endpoint: number,
  length: number,
  flags?: TransferFlags,
): Transfer & { done: Promise<void> } {
  const t = new Transfer({ type: 'bulk', endpoint, length, ...(flags ? { flags } : {}) }) as Transfer & {
    done: Promise<void>;
  };
  t.done = dev.submit(t);
  return t;
}

export async function bulkOut(dev: UsbDevice, endpoint: number, data: Buffer): Promise<Transfer> {
  const t = new Transfer({ type: 'bulk', endpoint, data });
  await dev.submit(t);
  return t;
}

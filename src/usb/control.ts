import type { UsbDevice } from './device.js';
import type { SetupPacket } from './setup.js';
import { Transfer } from './transfer.js';

/** A control transfer on endpoint 0 (data stage IN when bmRequestType says so), done. */
export async function controlTransfer(dev: UsbDevice, setup: SetupPacket, data?: Buffer): Promise<Transfer> {
  const t = new Transfer({
    type: 'control',
    endpoint: setup.bmRequestType & 0x80,
    setup,
    length: setup.wLength,
    ...(data ? { data } : {}),
  });
  await dev.submit(t);
  return t;
}

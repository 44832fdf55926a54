import { after, before } from 'node:test';
import { createDemoDisk } from '../../src/devices/mass-storage/index.js';
import { DeviceRegistry } from '../../src/server/registry.js';
import { UsbipServer } from '../../src/server/usbip/index.js';
import { UsbredirListener } from '../../src/server/usbredir/index.js';

/**
 * A 1 MiB demo disk exported over USB/IP and usbredir on loopback for the test file: listening
 * before its tests, closed after them. The ports are read once the tests run.
 */
export function oneDiskBothProtocols() {
  const registry = new DeviceRegistry();
  const entry = registry.add(createDemoDisk(1, 0));
  const usbip = new UsbipServer(registry, { host: '127.0.0.1', port: 0 });
  const usbredir = new UsbredirListener(registry, entry, { host: '127.0.0.1', port: 0 });
  const served = { registry, entry, usbipPort: 0, usbredirPort: 0 };
  before(async () => {
    served.usbipPort = (await usbip.listen()).port;
    await usbredir.listen();
    served.usbredirPort = usbredir.address!.port;
  });
  after(async () => {
    await usbip.close();
    await usbredir.close();
    await registry.closeAll();
  });
  return served;
}

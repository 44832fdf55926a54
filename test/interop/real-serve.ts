// Runs inside the guest: opens a real device through libusb (the libusb factory, until the CLI
// has --device) and exports it over USB/IP. Usage: node real-serve.js VID:PID|BUS-PORT.PATH PORT
import { type LibusbSelector, openLibusbDevice } from '../../src/devices/libusb/libusb-device.js';
import { DeviceRegistry } from '../../src/server/registry.js';
import { UsbipServer } from '../../src/server/usbip/index.js';
import { setLogLevel } from '../../src/util/log.js';

function selector(text: string): LibusbSelector {
  const ids = /^([0-9a-f]{4}):([0-9a-f]{4})$/i.exec(text);
  if (ids) return { vendorId: Number.parseInt(ids[1]!, 16), productId: Number.parseInt(ids[2]!, 16) };
  const port = /^(\d+)-(\d+(?:\.\d+)*)$/.exec(text);
  if (port) return { busNumber: Number(port[1]), portNumbers: port[2]!.split('.').map(Number) };
  throw new Error(`bad selector ${text}`);
}

const [what = '', port = '3240'] = process.argv.slice(2);
if (process.env.USBWIRE_LOG_LEVEL === 'debug') setLogLevel('debug');
const device = await openLibusbDevice(selector(what));
const registry = new DeviceRegistry();
registry.add(device);
const server = new UsbipServer(registry, { host: '127.0.0.1', port: Number(port) });
await server.listen();
console.log(`real-serve: ready ${device.name} ${device.speed}`);
const stop = async (): Promise<void> => {
  await server.close();
  await device.close();
  console.log('real-serve: closed');
  process.exit(0);
};
process.on('SIGTERM', () => void stop());
process.on('SIGINT', () => void stop());

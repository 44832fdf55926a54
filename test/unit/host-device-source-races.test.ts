// Host device sources in the cases the rig found: a USB/IP client's copy of the exported device
// attached back to the same host has the same VID:PID (the exported one must stay, not turn
// "ambiguous"), and a SIGTERM while sysfs is being read must not open the device after close().
import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { createKeyboard } from '../../src/devices/hid/index.js';
import { parseSelector } from '../../src/devices/real-host/selector.js';
import { HostDeviceSource } from '../../src/devices/real-host/source.js';
import type { UsbDevice } from '../../src/usb/device.js';
import { setLogSink } from '../../src/util/log.js';
import { FakeSysfs } from '../support/fake-sysfs.js';

const fake = new FakeSysfs();
after(() => fake.remove());
const lines: string[] = [];
setLogSink((line) => lines.push(line));

const iface = { bInterfaceNumber: '00', bInterfaceClass: '03', bInterfaceSubClass: '01', bInterfaceProtocol: '01' };
const plug = (path: string, devnum: number) =>
  fake.device(
    path,
    { busnum: path.split('-')[0]!, devnum: String(devnum), idVendor: '0627', idProduct: '0001', speed: '480' },
    iface,
  );

function source(selector: string) {
  let opens = 0;
  const devices: UsbDevice[] = [];
  const src = new HostDeviceSource({
    selector: parseSelector(selector),
    open: async () => {
      opens++;
      return createKeyboard();
    },
    host: fake,
    pollMs: 3_600_000,
  });
  src.on('device', (d) => devices.push(d));
  return { src, devices, opens: () => opens };
}

test('by VID:PID: a copy with the same ids appearing elsewhere leaves the exported device exported', async () => {
  const { src, devices } = source('0627:0001');
  plug('4-2', 3);
  await src.poll();
  assert.equal(devices.length, 1);
  let disconnects = 0;
  devices[0]!.on('disconnect', () => disconnects++);
  plug('1-1', 2); // the vhci copy, attached back to this host
  lines.length = 0;
  await src.poll();
  await src.poll();
  assert.equal(disconnects, 0, 'still exported');
  assert.ok(!lines.some((l) => /matches 2 devices/.test(l)), lines.join('\n'));
  fake.unplug('1-1');
  fake.unplug('4-2');
  await src.poll();
  assert.equal(disconnects, 1, 'unplugged once the exported device itself goes');
  // Two candidates and none exported yet: that is ambiguous, and said so.
  plug('4-2', 4);
  plug('1-1', 5);
  await src.poll();
  assert.equal(devices.length, 1);
  assert.ok(
    lines.some((l) => /0627:0001 matches 2 devices: 1-1, 4-2/.test(l)),
    lines.join('\n'),
  );
  await src.close();
  fake.unplug('1-1');
  fake.unplug('4-2');
});

test('close() while sysfs is being read: the device is not opened afterwards', async () => {
  plug('4-3', 6);
  const { src, devices, opens } = source('4-3');
  src.start(); // starts a look at once
  await src.close();
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(opens(), 0, 'opened after close');
  assert.equal(devices.length, 0);
  fake.unplug('4-3');
});

test('a device that goes away by itself (libusb saw it first) is closed too, after its users saw the disconnect', async () => {
  plug('4-4', 7);
  const { src, devices } = source('4-4');
  await src.poll();
  assert.equal(devices.length, 1);
  const device = devices[0]!;
  const order: string[] = [];
  const close = device.close.bind(device);
  device.close = () => {
    order.push('close');
    return close();
  };
  device.on('disconnect', () => order.push('server saw the disconnect'));
  device.emit('disconnect');
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(order, ['server saw the disconnect', 'close']);
  fake.unplug('4-4');
  await src.poll();
  await src.close();
  assert.equal(order.filter((o) => o === 'close').length, 1, 'closed once');
});

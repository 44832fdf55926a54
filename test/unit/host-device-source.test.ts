// A host device for export, followed through sysfs: exported when it appears, unplugged when it
// goes, the same port with another VID:PID next (claim a port), and a mounted disk refused unless
// forced. The opener is a stand-in for libusb (an emulated device per open).
import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { createKeyboard } from '../../src/devices/hid/index.js';
import { parseSelector } from '../../src/devices/real-host/selector.js';
import { HostDeviceSource } from '../../src/devices/real-host/source.js';
import type { HostUsbDevice } from '../../src/devices/real-host/sysfs.js';
import type { UsbDevice } from '../../src/usb/device.js';
import { setLogSink } from '../../src/util/log.js';
import { FakeSysfs } from '../support/fake-sysfs.js';

const fake = new FakeSysfs();
after(() => fake.remove());
const lines: string[] = [];
setLogSink((line) => lines.push(line));

const iface = { bInterfaceNumber: '00', bInterfaceClass: 'ff', bInterfaceSubClass: '00', bInterfaceProtocol: '00' };
const plug = (path: string, devnum: number, pid: string) =>
  fake.device(path, { busnum: '2', devnum: String(devnum), idVendor: '0525', idProduct: pid, speed: '480' }, iface);

function source(selector: string, force = false) {
  const opened: HostUsbDevice[] = [];
  const devices: UsbDevice[] = [];
  const src = new HostDeviceSource({
    selector: parseSelector(selector),
    open: async (d) => {
      opened.push(d);
      return createKeyboard();
    },
    host: fake,
    pollMs: 3_600_000,
    force,
  });
  src.on('device', (d) => devices.push(d));
  return { src, opened, devices };
}

test('by port path: exported when plugged, unplugged when gone, and whatever comes next on the port', async () => {
  const { src, opened, devices } = source('2-3');
  src.start();
  await src.poll();
  assert.equal(devices.length, 0);
  assert.ok(lines.some((l) => /host device 2-3: nothing plugged; exported when it appears/.test(l)));

  plug('2-3', 7, 'a4a0');
  await src.poll();
  assert.equal(devices.length, 1);
  assert.equal(opened[0]!.productId, 0xa4a0);
  let disconnects = 0;
  devices[0]!.on('disconnect', () => disconnects++);
  await src.poll();
  assert.equal(devices.length, 1, 'still the same device: nothing opened twice');

  // Firmware upload: the device drops off and comes back on the same port as another PID.
  fake.unplug('2-3');
  await src.poll();
  assert.equal(disconnects, 1, 'the exported device disconnected once');
  plug('2-3', 8, 'a4a1');
  await src.poll();
  assert.equal(devices.length, 2);
  assert.equal(opened[1]!.productId, 0xa4a1, 'the new PID on the same port is the next device');
  await src.close();
  fake.unplug('2-3');
});

test('by VID:PID: another device with the same ids elsewhere is the next device too; a swap on the port is seen', async () => {
  const { src, devices } = source('0525:a4a0');
  plug('2-4', 9, 'a4a0');
  await src.poll();
  assert.equal(devices.length, 1);
  // Same port path, new device number (re-enumerated) while we looked away: unplug + new device.
  fake.unplug('2-4');
  plug('2-4', 10, 'a4a0');
  await src.poll();
  await src.poll();
  assert.equal(devices.length, 2);
  await src.close();
  fake.unplug('2-4');
});

test('try disconnect: a disk mounted on the host is refused with what holds it; force takes it', async () => {
  fake.device(
    '2-5',
    { busnum: '2', devnum: '11', idVendor: '46f4', idProduct: '0001', speed: '480' },
    iface,
    'usb-storage',
  );
  const block = `${FakeSysfs.PCI}/2-5/2-5:1.0/host1/target1:0:0/1:0:0:0/block/sdb`;
  fake.file(`${block}/dev`, '8:16');
  fake.file('/proc/self/mountinfo', '41 22 8:16 / /media/stick rw - vfat /dev/sdb rw');
  const refused = source('2-5');
  await refused.src.poll();
  assert.equal(refused.devices.length, 0);
  assert.ok(
    lines.some((l) =>
      /host device 2-5: not exporting 2-5 \(46f4:0001\): \/dev\/sdb is mounted on \/media\/stick \(unmount or close it first, or give force/.test(
        l,
      ),
    ),
    lines.join('\n'),
  );
  const forced = source('2-5', true);
  await forced.src.poll();
  assert.equal(forced.devices.length, 1);
  assert.ok(lines.some((l) => /exporting 2-5 \(46f4:0001\) although \/dev\/sdb is mounted/.test(l)));
  await refused.src.close();
  await forced.src.close();
});

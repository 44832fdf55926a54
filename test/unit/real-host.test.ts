// The host's USB devices as sysfs shows them, selectors, and "try disconnect" (what holds a disk),
// on a fake /sys + /proc tree laid out as Linux 6.1 lays them out for a usb-storage disk.
import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { listLocal } from '../../src/cli/list-local.js';
import { whatHolds } from '../../src/devices/real-host/holders.js';
import { parseSelector, SelectorError, selectDevice } from '../../src/devices/real-host/selector.js';
import { type HostRoot, listHostDevices } from '../../src/devices/real-host/sysfs.js';
import { FakeSysfs } from '../support/fake-sysfs.js';

const fake = new FakeSysfs();
after(() => fake.remove());
const host: HostRoot = fake;
const file = (path: string, text: string) => fake.file(path, text);
const link = (path: string, target: string) => fake.link(path, target);
const device = fake.device.bind(fake);
const PCI = FakeSysfs.PCI;

const disk = { busnum: '2', devnum: '3', idVendor: '46f4', idProduct: '0001', bDeviceClass: '00', speed: '5000' };
device(
  '2-1',
  { ...disk, manufacturer: 'QEMU', product: 'QEMU USB HARDDRIVE', serial: 'one', bConfigurationValue: '1' },
  { bInterfaceNumber: '00', bInterfaceClass: '08', bInterfaceSubClass: '06', bInterfaceProtocol: '50' },
  'usb-storage',
);
device(
  '2-10.1',
  { ...disk, devnum: '5', serial: 'two', bConfigurationValue: '1' },
  { bInterfaceNumber: '00', bInterfaceClass: '08', bInterfaceSubClass: '06', bInterfaceProtocol: '50' },
);
device(
  '2-2',
  { busnum: '2', devnum: '4', idVendor: '0627', idProduct: '0001', bDeviceClass: '00', speed: '480' },
  { bInterfaceNumber: '00', bInterfaceClass: '03', bInterfaceSubClass: '01', bInterfaceProtocol: '01' },
  'usbhid',
);
file('/sys/bus/usb/devices/usb2/busnum', '2'); // the root hub: not a device to export
const BLOCK = `${PCI}/2-1/2-1:1.0/host0/target0:0:0/0:0:0:0/block`;
file(`${BLOCK}/sda/dev`, '8:0');
file(`${BLOCK}/sda/sda1/partition`, '1');
file(`${BLOCK}/sda/sda1/dev`, '8:1');
fake.mkdir(`${BLOCK}/sda/holders`);

test('sysfs: devices in port-path order with ids, names, speed, interfaces and their drivers', async () => {
  const devices = await listHostDevices(host, { strings: true });
  assert.deepEqual(
    devices.map((d) => d.path),
    ['2-1', '2-2', '2-10.1'],
  );
  const [a, kbd] = devices;
  assert.equal(a!.vendorId, 0x46f4);
  assert.equal(a!.product, 'QEMU USB HARDDRIVE');
  assert.equal(a!.serial, 'one');
  assert.equal(a!.speed, '5000');
  assert.deepEqual(
    a!.interfaces.map((i) => [i.name, i.interfaceClass, i.driver]),
    [['2-1:1.0', 8, 'usb-storage']],
  );
  assert.equal(kbd!.interfaces[0]!.driver, 'usbhid');
  assert.equal(devices[2]!.interfaces[0]!.driver, undefined);
});

test('selectors: port path, VID:PID, VID:PID:SERIAL; an ambiguous VID:PID names the candidates', async () => {
  const devices = await listHostDevices(host, { strings: true });
  assert.equal(selectDevice(parseSelector('2-10.1'), devices)?.serial, 'two');
  assert.equal(selectDevice(parseSelector('46f4:0001:one'), devices)?.path, '2-1');
  assert.equal(selectDevice(parseSelector('0627:0001'), devices)?.path, '2-2');
  assert.equal(selectDevice(parseSelector('1-9'), devices), undefined, 'nothing plugged there (yet)');
  assert.throws(
    () => selectDevice(parseSelector('46f4:0001'), devices),
    /46f4:0001 matches 2 devices: 2-1 \(serial one\), 2-10\.1 \(serial two\); give a port path or VID:PID:SERIAL/,
  );
  for (const bad of ['', '46f4', '46f4:1', 'usb2', '1-', 'x:y']) {
    assert.throws(() => parseSelector(bad), SelectorError, bad);
  }
});

test('try disconnect: a mounted partition, a holder and an open file are each named; a free disk has none', async () => {
  const [a, kbd, b] = await listHostDevices(host, { strings: true });
  assert.deepEqual(whatHolds(a!, host), []);
  file(
    '/proc/self/mountinfo',
    '22 1 0:21 / /proc rw - proc proc rw\n40 22 8:1 / /mnt/usb\\040disk rw,relatime - ext4 /dev/sda1 rw',
  );
  link(`${BLOCK}/sda/holders/dm-0`, '../../../../../../virtual/block/dm-0');
  file('/proc/4242/comm', 'dd');
  link('/proc/4242/fd/3', '/dev/sda');
  link('/proc/4242/fd/4', '/dev/null');
  assert.deepEqual(whatHolds(a!, host), [
    '/dev/sda1 is mounted on /mnt/usb disk',
    '/dev/sda is used by /dev/dm-0',
    '/dev/sda is open in process 4242 (dd)',
  ]);
  assert.deepEqual(whatHolds(kbd!, host), [], 'no block devices below a keyboard');
  assert.deepEqual(whatHolds(b!, host), [], 'nothing below the other disk');
});

test('list --local: names from the device (usb.ids as fallback), speed, classes, driver and what holds it', async () => {
  const text = await listLocal(host);
  const block = (path: string) => text.split('\n\n').find((b) => b.includes(`busid ${path} `)) ?? '';
  assert.match(
    block('2-1'),
    /^ - busid 2-1 \(46f4:0001\)\n {3}QEMU : QEMU USB HARDDRIVE \(46f4:0001\)\n {3}5000 Mbit\/s, serial one\n/,
  );
  assert.match(
    block('2-1'),
    /\(08\/06\/50\)\n {3}driver: usb-storage\n {3}in use: \/dev\/sda1 is mounted on \/mnt\/usb disk; /,
  );
  assert.match(block('2-2'), /driver: usbhid\n {3}in use: no$/);
  assert.match(block('2-10.1'), /driver: none\n {3}in use: no$/);
});

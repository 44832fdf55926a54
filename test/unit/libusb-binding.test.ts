import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { test } from 'node:test';
import { LibusbDeviceError, openLibusbDevice } from '../../src/devices/libusb/libusb-device.js';
import { libusb } from '../../src/devices/libusb/libusb-ffi.js';

const HAVE_LIBUSB = ['/lib/x86_64-linux-gnu/libusb-1.0.so.0', '/usr/lib/x86_64-linux-gnu/libusb-1.0.so.0'].some(
  existsSync,
);
const skip = HAVE_LIBUSB ? false : 'libusb-1.0 not installed on this machine';

test('the binding loads the system libusb and every declaration resolves', { skip }, () => {
  const lib = libusb();
  const ctx = lib.init();
  try {
    const { list, devices } = lib.getDeviceList(ctx);
    for (const d of devices) assert.ok(lib.busNumber(d) > 0);
    lib.freeDeviceList(list);
    assert.ok(Array.isArray(lib.pollFds(ctx)));
  } finally {
    lib.exit(ctx);
  }
});

test('a selector that matches nothing is a LibusbDeviceError naming it', { skip }, async () => {
  await assert.rejects(openLibusbDevice({ vendorId: 0xfffe, productId: 0x0bad }), (err: unknown) => {
    assert.ok(err instanceof LibusbDeviceError);
    assert.match((err as Error).message, /fffe:0bad/);
    return true;
  });
  await assert.rejects(openLibusbDevice({ busNumber: 250, portNumbers: [9, 9] }), /250-9\.9/);
});

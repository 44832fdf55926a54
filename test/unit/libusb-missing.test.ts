// Without libusb installed, real-device export says what to install (and nothing else needs it).
import assert from 'node:assert/strict';
import { test } from 'node:test';

test('missing libusb: LibusbUnavailableError says what to install', async () => {
  process.env.USBWIRE_LIBUSB = 'libusb-usbwire-absent.so.0';
  const { openLibusbDevice } = await import('../../src/devices/libusb/libusb-device.js');
  const { LibusbUnavailableError } = await import('../../src/devices/libusb/libusb-ffi.js');
  for (let i = 0; i < 2; i++) {
    await assert.rejects(openLibusbDevice({ vendorId: 1, productId: 2 }), (err: unknown) => {
      assert.ok(err instanceof LibusbUnavailableError);
      assert.match((err as Error).message, /install libusb-1\.0-0 \(Debian: apt install libusb-1\.0-0\)/);
      return true;
    });
  }
});

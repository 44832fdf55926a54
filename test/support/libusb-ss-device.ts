// A SuperSpeed device behind the fake libusb binding, laid out like a UAS disk: bulk OUT 0x01
// without streams (command pipe), bulk IN 0x82 / IN 0x83 / OUT 0x04 with 16 streams each
// (status, data in, data out), and an interrupt IN 0x85 for "not a bulk endpoint" cases.
import { LibusbDevice } from '../../src/devices/libusb/libusb-device.js';
import { XferStatus } from '../../src/devices/libusb/libusb-ffi.js';
import { FakeLibusb, type FakeSubmitted } from '../unit/libusb-fake.js';

export const SS_DEVICE = Buffer.from([18, 1, 0x00, 0x03, 0, 0, 0, 9, 0x09, 0x12, 0x03, 0x00, 0x00, 0x01, 0, 0, 0, 1]);

function endpoint(address: number, attributes: number, maxPacket: number, interval: number, streamsExp: number) {
  return [7, 5, address, attributes, maxPacket & 0xff, maxPacket >> 8, interval, 6, 0x30, 15, streamsExp, 0, 0];
}

const BODY = [
  ...[9, 4, 0, 0, 5, 0x08, 0x06, 0x62, 0],
  ...endpoint(0x01, 2, 1024, 0, 0),
  ...endpoint(0x82, 2, 1024, 0, 4),
  ...endpoint(0x83, 2, 1024, 0, 4),
  ...endpoint(0x04, 2, 1024, 0, 4),
  ...endpoint(0x85, 3, 8, 4, 0),
];
export const SS_CONFIG = Buffer.from([9, 2, 9 + BODY.length, 0, 1, 1, 0, 0x80, 50, ...BODY]);

export function isGetDescriptor(s: FakeSubmitted): boolean {
  return s.type === 0 && s.buffer[0] === 0x80 && s.buffer[1] === 6;
}

/** A LibusbDevice over FakeLibusb: descriptors and GET_CONFIGURATION answered, every other transfer left to the test. */
export async function openSuperSpeedFake(): Promise<{ lib: FakeLibusb; dev: LibusbDevice }> {
  const lib = new FakeLibusb();
  lib.autoComplete = (s) => {
    if (s.type === 0 && s.buffer[0] === 0x80 && s.buffer[1] === 8) {
      setImmediate(() => lib.complete(s, XferStatus.Completed, 1, Buffer.from([1])));
      return true;
    }
    if (!isGetDescriptor(s)) return false;
    const data = (s.buffer[3] === 1 ? SS_DEVICE : SS_CONFIG).subarray(0, s.buffer.readUInt16LE(6));
    setImmediate(() => lib.complete(s, XferStatus.Completed, data.length, data));
    return true;
  };
  const dev = new LibusbDevice(lib.asLibusb(), 1n, 2n, 'fake-uas', 'super');
  await dev.init();
  lib.submitted.length = 0;
  lib.calls.length = 0;
  return { lib, dev };
}

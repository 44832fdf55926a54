import assert from 'node:assert/strict';
import { test } from 'node:test';
import { TRANSFER, XferStatus } from '../../src/devices/libusb/libusb-ffi.js';
import { LibusbTransfer, pooledTransfers } from '../../src/devices/libusb/libusb-transfer.js';
import { TransferStatus } from '../../src/usb/status.js';
import { Transfer } from '../../src/usb/transfer.js';
import { FakeLibusb } from './libusb-fake.js';

function start(lib: FakeLibusb, t: Transfer): LibusbTransfer {
  const lt = LibusbTransfer.create(lib.asLibusb(), 7n, 0xcafen, t, () => {});
  lib.submitTransfer(lt.pointer);
  return lt;
}

test('control transfer: setup packet then OUT data in one buffer; IN data read after the setup', () => {
  const lib = new FakeLibusb();
  const out = new Transfer({
    type: 'control',
    endpoint: 0,
    setup: { bmRequestType: 0x40, bRequest: 5, wValue: 0x1234, wIndex: 2, wLength: 3 },
    data: Buffer.from([1, 2, 3]),
  });
  start(lib, out);
  const s = lib.submitted[0]!;
  assert.deepEqual([...s.buffer], [0x40, 5, 0x34, 0x12, 2, 0, 3, 0, 1, 2, 3]);
  assert.equal(s.length, 11);
  assert.equal(s.header.readBigUInt64LE(TRANSFER.devHandle), 7n);

  const inT = new Transfer({
    type: 'control',
    endpoint: 0x80,
    setup: { bmRequestType: 0xc0, bRequest: 1, wValue: 0, wIndex: 0, wLength: 4 },
    length: 4,
  });
  const lt = start(lib, inT);
  const si = lib.submitted[1]!;
  si.header.writeInt32LE(XferStatus.Completed, TRANSFER.status);
  si.header.writeInt32LE(2, TRANSFER.actualLength);
  si.buffer[8] = 0xaa;
  si.buffer[9] = 0xbb;
  lt.finish(lib.asLibusb(), false);
  assert.equal(inT.status, TransferStatus.Ok);
  assert.deepEqual([...inT.data], [0xaa, 0xbb]);
  assert.equal(lib.live, 2, 'no struct freed or leaked: the finished one waits in the pool');
  assert.equal(pooledTransfers(lib.asLibusb()), 1);
});

test('zero copy: bulk OUT hands libusb the payload itself, bulk IN data is the buffer libusb filled', () => {
  const lib = new FakeLibusb();
  const payload = Buffer.from('0123456789abcdef');
  const out = new Transfer({ type: 'bulk', endpoint: 0x02, data: payload.subarray(4, 12) });
  start(lib, out);
  const so = lib.submitted[0]!;
  assert.equal(so.buffer.buffer, payload.buffer, 'same memory as the request payload');
  assert.equal(so.buffer.byteOffset, payload.byteOffset + 4);
  assert.equal(so.length, 8);

  const inT = new Transfer({ type: 'bulk', endpoint: 0x81, length: 16 });
  const lt = start(lib, inT);
  const si = lib.submitted[1]!;
  si.buffer.write('hello');
  si.header.writeInt32LE(5, TRANSFER.actualLength);
  lt.finish(lib.asLibusb(), false);
  assert.equal(inT.data.toString(), 'hello');
  assert.equal(inT.data.buffer, si.buffer.buffer, 'no copy on the way out either');
});

test('a finished struct is reused by the next transfer; a short OUT payload is padded, not over-read', () => {
  const lib = new FakeLibusb();
  const a = start(lib, new Transfer({ type: 'bulk', endpoint: 0x81, length: 64 }));
  a.finish(lib.asLibusb(), false);
  const b = start(lib, new Transfer({ type: 'bulk', endpoint: 0x02, length: 6, data: Buffer.from([1, 2]) }));
  assert.equal(b.pointer, a.pointer);
  assert.deepEqual([...lib.submitted[1]!.buffer], [1, 2, 0, 0, 0, 0]);
  a.cancel(lib.asLibusb());
  assert.deepEqual(lib.calls, [], 'the old owner of a reused struct cannot cancel it');
});

test('short-not-ok is applied by us (libusb would report a generic error)', () => {
  const lib = new FakeLibusb();
  const t = new Transfer({ type: 'bulk', endpoint: 0x81, length: 512, flags: { shortNotOk: true } });
  const lt = start(lib, t);
  assert.equal(lib.submitted[0]!.header[TRANSFER.flags], 0, 'no LIBUSB_TRANSFER_SHORT_NOT_OK');
  lib.submitted[0]!.header.writeInt32LE(100, TRANSFER.actualLength);
  lt.finish(lib.asLibusb(), false);
  assert.equal(t.status, TransferStatus.ShortPacket);
  assert.equal(t.actualLength, 100);
});

test('zero packet flag becomes LIBUSB_TRANSFER_ADD_ZERO_PACKET; stall maps to Stall', () => {
  const lib = new FakeLibusb();
  const t = new Transfer({ type: 'bulk', endpoint: 0x02, data: Buffer.alloc(512), flags: { zeroPacket: true } });
  const lt = start(lib, t);
  assert.equal(lib.submitted[0]!.header[TRANSFER.flags], 1 << 3);
  lib.submitted[0]!.header.writeInt32LE(XferStatus.Stall, TRANSFER.status);
  lt.finish(lib.asLibusb(), false);
  assert.equal(t.status, TransferStatus.Stall);
});

test('isochronous: packets packed for libusb, unpacked to their offsets, actual length summed', () => {
  const lib = new FakeLibusb();
  const packets = () => [
    { offset: 0, length: 4, actualLength: 0, status: TransferStatus.Ok },
    { offset: 8, length: 4, actualLength: 0, status: TransferStatus.Ok },
  ];
  const out = new Transfer({
    type: 'isochronous',
    endpoint: 0x03,
    data: Buffer.from([1, 2, 3, 4, 0, 0, 0, 0, 5, 6, 7, 8]),
    isoPackets: packets(),
  });
  start(lib, out);
  const so = lib.submitted[0]!;
  assert.deepEqual([...so.buffer], [1, 2, 3, 4, 5, 6, 7, 8]);
  assert.equal(so.header.readInt32LE(TRANSFER.numIsoPackets), 2);
  assert.equal(so.header.readUInt32LE(TRANSFER.isoPackets + TRANSFER.isoPacketSize), 4);

  const inT = new Transfer({ type: 'isochronous', endpoint: 0x83, length: 12, isoPackets: packets() });
  const lt = start(lib, inT);
  const si = lib.submitted[1]!;
  si.buffer.set([9, 9, 9, 0, 7, 7, 7, 7]);
  si.header.writeUInt32LE(3, TRANSFER.isoPackets + 4);
  si.header.writeUInt32LE(4, TRANSFER.isoPackets + TRANSFER.isoPacketSize + 4);
  si.header.writeInt32LE(XferStatus.Error, TRANSFER.isoPackets + TRANSFER.isoPacketSize + 8);
  lt.finish(lib.asLibusb(), false);
  assert.equal(inT.actualLength, 7, 'libusb leaves actual_length 0 for iso: the sum of the packets');
  assert.deepEqual([...inT.data.subarray(0, 3)], [9, 9, 9]);
  assert.deepEqual([...inT.data.subarray(8, 12)], [7, 7, 7, 7]);
  assert.equal(inT.isoPackets![1]!.status, TransferStatus.IoError);
});

test('cancel reaches libusb at most once and never after the transfer was freed', () => {
  const lib = new FakeLibusb();
  const t = new Transfer({ type: 'bulk', endpoint: 0x81, length: 64 });
  const lt = start(lib, t);
  lt.cancel(lib.asLibusb());
  lt.cancel(lib.asLibusb());
  assert.deepEqual(lib.calls, ['cancel']);
  lib.submitted[0]!.header.writeInt32LE(XferStatus.Cancelled, TRANSFER.status);
  lt.finish(lib.asLibusb(), false);
  assert.equal(t.status, TransferStatus.Cancelled);
  const t2 = new Transfer({ type: 'bulk', endpoint: 0x81, length: 64 });
  const lt2 = start(lib, t2);
  lt2.finish(lib.asLibusb(), false);
  lt2.cancel(lib.asLibusb());
  assert.deepEqual(lib.calls, ['cancel']);
});

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { TRANSFER, XferStatus, XferType } from '../../src/devices/libusb/libusb-ffi.js';
import { TransferStatus } from '../../src/usb/status.js';
import { Transfer } from '../../src/usb/transfer.js';
import { setLogSink } from '../../src/util/log.js';
import { openSuperSpeedFake } from '../support/libusb-ss-device.js';

setLogSink('silent');

const tick = () => new Promise((r) => setImmediate(r));
const bulk = (endpoint: number, streamId: number, length = 512) =>
  new Transfer({ type: 'bulk', endpoint, length, streamId, data: endpoint & 0x80 ? undefined : Buffer.alloc(length) });

test('libusb streams: alloc on SuperSpeed bulk endpoints, stream transfers typed BULK_STREAM with their id', async () => {
  const { lib, dev } = await openSuperSpeedFake();
  assert.equal(await dev.allocStreams([0x82, 0x83, 0x04], 16), 16);
  assert.deepEqual(lib.calls, ['allocStreams 16 82,83,4']);

  const a = bulk(0x83, 3);
  const b = bulk(0x83, 1);
  const done = [dev.submit(a), dev.submit(b)];
  await tick();
  assert.equal(lib.submitted.length, 2);
  for (const s of lib.submitted) assert.equal(s.header[TRANSFER.type], XferType.bulkStream);
  assert.deepEqual(
    lib.submitted.map((s) => lib.streamIds.get(s.pointer)),
    [3, 1],
  );
  // Streams complete in any order.
  lib.complete(lib.submitted[1]!, XferStatus.Completed, 1, Buffer.from([1]));
  lib.complete(lib.submitted[0]!, XferStatus.Completed, 1, Buffer.from([3]));
  await Promise.all(done);
  assert.deepEqual([[...a.data], [...b.data]], [[3], [1]]);

  const plain = bulk(0x01, 0);
  const plainDone = dev.submit(plain);
  await tick();
  assert.equal(lib.submitted[2]!.header[TRANSFER.type], XferType.bulk, 'an endpoint without streams stays plain bulk');
  lib.complete(lib.submitted[2]!, XferStatus.Completed, 512);
  await plainDone;
  await dev.close();
  assert.ok(lib.calls.includes('freeStreams 82,83,4'), 'close frees the streams before the kernel driver comes back');
  assert.equal(lib.live, 0);
});

test('libusb streams: bad requests are refused without reaching libusb', async () => {
  const { lib, dev } = await openSuperSpeedFake();
  assert.equal(await dev.allocStreams([0x85], 4), TransferStatus.Invalid, 'interrupt endpoint');
  assert.equal(await dev.allocStreams([0x01], 4), TransferStatus.Invalid, 'no companion MaxStreams');
  assert.equal(await dev.allocStreams([0x86], 4), TransferStatus.Invalid, 'no such endpoint');
  assert.equal(await dev.allocStreams([0x83], 0), TransferStatus.Invalid, 'zero streams');
  assert.equal(await dev.allocStreams([], 4), TransferStatus.Invalid);
  assert.equal(await dev.freeStreams([0x83]), TransferStatus.Invalid, 'nothing allocated');
  assert.deepEqual(lib.calls, []);

  const never = bulk(0x83, 2);
  await dev.submit(never);
  assert.equal(never.status, TransferStatus.Invalid, 'stream id never allocated');
  assert.equal(await dev.allocStreams([0x83], 4), 4);
  assert.equal(await dev.allocStreams([0x83], 4), TransferStatus.Invalid, 'allocated already');
  const beyond = bulk(0x83, 5);
  await dev.submit(beyond);
  assert.equal(beyond.status, TransferStatus.Invalid, 'stream id beyond the grant');
  const zero = bulk(0x83, 0);
  await dev.submit(zero);
  assert.equal(zero.status, TransferStatus.Invalid, 'stream 0 on an endpoint with streams');
  assert.equal(lib.submitted.length, 0, 'none reached libusb');

  lib.streamsGranted = () => -12;
  assert.equal(await dev.allocStreams([0x82], 4), TransferStatus.IoError, 'libusb error (NOT_SUPPORTED) reported');
  lib.streamsGranted = () => 2;
  assert.equal(await dev.allocStreams([0x82], 4), 2, 'a partial grant is returned as such');
  await dev.close();
  assert.equal(lib.live, 0);
});

test('libusb streams: free cancels the pending stream transfers first; reset and SET_INTERFACE drop streams', async () => {
  const { lib, dev } = await openSuperSpeedFake();
  assert.equal(await dev.allocStreams([0x83, 0x04], 8), 8);
  const pending = bulk(0x83, 4);
  const other = bulk(0x01, 0);
  const pendingDone = dev.submit(pending);
  const otherDone = dev.submit(other);
  await tick();
  lib.calls.length = 0;
  const freed = dev.freeStreams([0x83, 0x04]);
  await tick();
  assert.deepEqual(lib.calls, ['cancel'], 'only the stream transfer is cancelled, free waits for it');
  lib.complete(lib.submitted[0]!, XferStatus.Cancelled);
  assert.equal(await freed, TransferStatus.Ok);
  await pendingDone;
  assert.equal(pending.status, TransferStatus.Cancelled);
  assert.deepEqual(lib.calls, ['cancel', 'freeStreams 83,4']);
  lib.complete(lib.submitted[1]!, XferStatus.Completed, 512);
  await otherDone;
  assert.equal(other.status, TransferStatus.Ok);

  assert.equal(await dev.allocStreams([0x83], 8), 8, 'allocated again after the free');
  lib.calls.length = 0;
  await dev.reset();
  assert.deepEqual(lib.calls, ['freeStreams 83', 'reset']);
  assert.equal(await dev.allocStreams([0x83], 8), 8, 'a reset leaves no streams behind');

  lib.calls.length = 0;
  const setInterface = new Transfer({
    type: 'control',
    endpoint: 0,
    setup: { bmRequestType: 0x01, bRequest: 11, wValue: 0, wIndex: 0, wLength: 0 },
  });
  await dev.submit(setInterface);
  assert.deepEqual(lib.calls, ['freeStreams 83', 'setAltSetting 0 0']);
  await dev.close();
  assert.ok(!lib.calls.slice(2).some((c) => c.startsWith('freeStreams')), 'nothing left to free on close');
  assert.equal(lib.live, 0);
});

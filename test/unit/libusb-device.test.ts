import assert from 'node:assert/strict';
import { test } from 'node:test';
import { LibusbDevice } from '../../src/devices/libusb/libusb-device.js';
import { XferStatus } from '../../src/devices/libusb/libusb-ffi.js';
import type { SetupPacket } from '../../src/usb/setup.js';
import { TransferStatus } from '../../src/usb/status.js';
import { Transfer } from '../../src/usb/transfer.js';
import { setLogSink } from '../../src/util/log.js';
import { FakeLibusb, type FakeSubmitted } from './libusb-fake.js';

setLogSink('silent');

const DEVICE = Buffer.from([18, 1, 0, 2, 0, 0, 0, 64, 0x25, 0x05, 0xa0, 0xa4, 0, 1, 0, 0, 0, 1]);
const CONFIG = Buffer.from([
  ...[9, 2, 32, 0, 1, 1, 0, 0x80, 50],
  ...[9, 4, 0, 0, 2, 0xff, 0, 0, 0],
  ...[7, 5, 0x81, 2, 0, 2, 0],
  ...[7, 5, 0x02, 2, 0, 2, 0],
]);

function isGetDescriptor(s: FakeSubmitted): boolean {
  return s.type === 0 && s.buffer[0] === 0x80 && s.buffer[1] === 6;
}

async function openFake(): Promise<{ lib: FakeLibusb; dev: LibusbDevice }> {
  const lib = new FakeLibusb();
  lib.driverActive.add(0);
  lib.autoComplete = (s) => {
    if (!isGetDescriptor(s)) return false;
    const type = s.buffer[3];
    const want = s.buffer.readUInt16LE(6);
    const data = (type === 1 ? DEVICE : CONFIG).subarray(0, want);
    setImmediate(() => lib.complete(s, XferStatus.Completed, data.length, data));
    return true;
  };
  const dev = new LibusbDevice(lib.asLibusb(), 1n, 2n, 'fake', 'high');
  await dev.init();
  lib.submitted.length = 0;
  lib.calls.length = 0;
  return { lib, dev };
}

function control(setup: SetupPacket): Transfer {
  return new Transfer({ type: 'control', endpoint: setup.bmRequestType & 0x80, setup, length: setup.wLength });
}

const VENDOR_OUT: SetupPacket = { bmRequestType: 0x40, bRequest: 1, wValue: 0, wIndex: 0, wLength: 0 };
const SET_INTERFACE: SetupPacket = { bmRequestType: 0x01, bRequest: 11, wValue: 1, wIndex: 0, wLength: 0 };

test('open reads descriptors over EP0, detaches the kernel driver once and claims; close re-attaches it', async () => {
  const lib = new FakeLibusb();
  lib.driverActive.add(0);
  lib.autoComplete = (s) => {
    const data = (s.buffer[3] === 1 ? DEVICE : CONFIG).subarray(0, s.buffer.readUInt16LE(6));
    setImmediate(() => lib.complete(s, XferStatus.Completed, data.length, data));
    return true;
  };
  const dev = new LibusbDevice(lib.asLibusb(), 1n, 2n, 'fake', 'high');
  await dev.init();
  assert.deepEqual(dev.descriptors.device, DEVICE);
  assert.deepEqual(dev.descriptors.configurations, [CONFIG]);
  assert.equal(dev.configuration, 1);
  assert.deepEqual(lib.calls, ['detach 0', 'claim 0']);
  await dev.close();
  assert.deepEqual(lib.calls.slice(2), ['release 0', 'attach 0', 'close', 'exit']);
  assert.equal(lib.live, 0, 'every transfer and buffer freed');
});

test('EP0 is a FIFO: SET_INTERFACE (a libusb call) waits for the control transfer queued before it', async () => {
  const { lib, dev } = await openFake();
  const order: string[] = [];
  const first = dev.submit(control(VENDOR_OUT)).then(() => order.push('vendor'));
  const second = dev.submit(control(SET_INTERFACE)).then(() => order.push('set-interface'));
  await new Promise((r) => setImmediate(r));
  assert.equal(lib.submitted.length, 1);
  assert.deepEqual(lib.calls, [], 'SET_INTERFACE has not overtaken the pending vendor request');
  lib.complete(lib.submitted[0]!);
  await Promise.all([first, second]);
  assert.deepEqual(order, ['vendor', 'set-interface']);
  const both = [dev.submit(control(VENDOR_OUT)), dev.submit(control(VENDOR_OUT))];
  assert.equal(lib.submitted.length, 3, 'ordinary control transfers are in flight together');
  lib.complete(lib.submitted[1]!);
  lib.complete(lib.submitted[2]!);
  await Promise.all(both);
  assert.deepEqual(lib.calls, ['setAltSetting 0 1']);
  assert.equal(dev.alternateSetting(0), 1);
  await dev.close();
});

test('CLEAR_FEATURE(ENDPOINT_HALT) goes to libusb_clear_halt, except for EP0 (a control transfer)', async () => {
  const { lib, dev } = await openFake();
  const clear = (ep: number) => control({ bmRequestType: 0x02, bRequest: 1, wValue: 0, wIndex: ep, wLength: 0 });
  const t = clear(0x81);
  await dev.submit(t);
  assert.equal(t.status, TransferStatus.Ok);
  assert.deepEqual(lib.calls, ['clearHalt 81']);
  assert.equal(lib.submitted.length, 0);
  const t0 = clear(0);
  const p = dev.submit(t0);
  await new Promise((r) => setImmediate(r));
  assert.equal(lib.submitted.length, 1, 'EP0 halt is cleared by the device itself');
  lib.complete(lib.submitted[0]!);
  await p;
  await dev.close();
});

test('SET_CONFIGURATION releases, calls libusb_set_configuration, claims again', async () => {
  const { lib, dev } = await openFake();
  const t = control({ bmRequestType: 0, bRequest: 9, wValue: 1, wIndex: 0, wLength: 0 });
  await dev.submit(t);
  assert.equal(t.status, TransferStatus.Ok);
  assert.deepEqual(lib.calls, ['release 0', 'setConfiguration 1', 'claim 0']);
  await dev.close();
});

test('cancel: once to libusb, Cancelled to the submitter, nothing after completion; a queued EP0 request is dropped', async () => {
  const { lib, dev } = await openFake();
  const t = new Transfer({ type: 'bulk', endpoint: 0x81, length: 512 });
  const p = dev.submit(t);
  dev.cancel(t);
  dev.cancel(t);
  assert.deepEqual(lib.calls, ['cancel']);
  lib.complete(lib.submitted[0]!, XferStatus.Cancelled);
  await p;
  assert.equal(t.status, TransferStatus.Cancelled);
  dev.cancel(t);
  assert.deepEqual(lib.calls, ['cancel']);

  const pending = dev.submit(control(VENDOR_OUT));
  const setInterface = dev.submit(control(SET_INTERFACE));
  const queued = control(VENDOR_OUT);
  const q = dev.submit(queued);
  dev.cancel(queued);
  await q;
  assert.equal(queued.status, TransferStatus.Cancelled);
  lib.complete(lib.submitted[1]!);
  await Promise.all([pending, setInterface]);
  assert.equal(lib.submitted.length, 2, 'the cancelled request never reached libusb');
  await dev.close();
});

test('device gone: pending transfers finish with NoDevice, then one disconnect; later submits fail at once', async () => {
  const { lib, dev } = await openFake();
  const events: string[] = [];
  dev.on('disconnect', () => events.push('disconnect'));
  const a = new Transfer({ type: 'bulk', endpoint: 0x81, length: 512 });
  const b = new Transfer({ type: 'bulk', endpoint: 0x02, data: Buffer.alloc(64) });
  const pa = dev.submit(a).then(() => events.push('a'));
  const pb = dev.submit(b).then(() => events.push('b'));
  lib.complete(lib.submitted[0]!, XferStatus.NoDevice);
  assert.deepEqual(lib.calls, ['cancel'], 'the other pending transfer is cancelled');
  lib.complete(lib.submitted[1]!, XferStatus.Cancelled);
  await Promise.all([pa, pb]);
  await new Promise((r) => setImmediate(r));
  assert.equal(a.status, TransferStatus.NoDevice);
  assert.equal(b.status, TransferStatus.NoDevice);
  assert.deepEqual(events, ['a', 'b', 'disconnect']);
  const c = new Transfer({ type: 'bulk', endpoint: 0x81, length: 8 });
  await dev.submit(c);
  assert.equal(c.status, TransferStatus.NoDevice);
  await dev.close();
});

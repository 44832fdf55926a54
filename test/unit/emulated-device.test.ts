import assert from 'node:assert/strict';
import { test } from 'node:test';
import { EmulatedDevice } from '../../src/devices/emulated-device.js';
import { decodeStringDescriptor, parseConfiguration, parseDeviceDescriptor } from '../../src/usb/descriptors.js';
import type { ControlResult, FunctionHost, InterfaceSpec, UsbFunction } from '../../src/usb/function.js';
import type { SetupPacket } from '../../src/usb/setup.js';
import { TransferStatus } from '../../src/usb/status.js';
import { Transfer } from '../../src/usb/transfer.js';
import { bulkIn, control, getDescriptor, setConfiguration } from '../support/drive.js';

/** A function with one interface, two alternate settings, a bulk IN endpoint that echoes a counter. */
class ProbeFunction implements UsbFunction {
  host!: FunctionHost;
  configured = false;
  alt = 0;
  cleared: number[] = [];
  interfaces(): InterfaceSpec[] {
    return [
      {
        number: 0,
        alternates: [
          { alternate: 0, interfaceClass: 0xff, interfaceSubClass: 0, interfaceProtocol: 0, endpoints: [] },
          {
            alternate: 1,
            interfaceClass: 0xff,
            interfaceSubClass: 0,
            interfaceProtocol: 0,
            name: 'probe',
            endpoints: [{ address: 0x81, type: 'bulk', maxPacketSize: 512, interval: 0 }],
          },
        ],
      },
    ];
  }
  bind(host: FunctionHost): void {
    this.host = host;
  }
  control(s: SetupPacket): Promise<ControlResult> | ControlResult | undefined {
    if (s.bmRequestType === 0x81 && s.bRequest === 6 && s.wValue === 0x2200) {
      return { status: TransferStatus.Ok, data: Buffer.from([0x05, 0x01]) };
    }
    if (s.bRequest === 0x44) {
      // A class request that takes its time: answered when the test says so.
      return new Promise<ControlResult>((resolve) => {
        this.slowAnswer = () => resolve({ status: TransferStatus.Ok, data: Buffer.from('late') });
      });
    }
    if (s.bRequest === 0x42) return { status: TransferStatus.Ok, data: Buffer.from('vendor-reply-longer-than-asked') };
    return undefined;
  }
  slowAnswer: (() => void) | undefined;
  /** Endpoints told that a transfer waits, in order. */
  notified: number[] = [];
  transferWaiting(address: number): void {
    this.notified.push(address);
  }
  setConfigured(c: boolean): void {
    this.configured = c;
  }
  setAlternate(_i: number, alt: number): void {
    this.alt = alt;
  }
  clearHalt(ep: number): void {
    this.cleared.push(ep);
  }
  resets = 0;
  reset(): void {
    this.resets++;
  }
  async close(): Promise<void> {}
}

function makeDevice() {
  const fn = new ProbeFunction();
  const dev = new EmulatedDevice({
    name: 'probe',
    speed: 'high',
    vendorId: 0x1209,
    productId: 0x0001,
    manufacturer: 'usbwire',
    product: 'Probe',
    serial: 'P1',
    functions: [fn],
  });
  return { dev, fn };
}

test('answers GET_DESCRIPTOR for device, configuration, strings, qualifier and other-speed', async () => {
  const { dev } = makeDevice();
  const d = await getDescriptor(dev, 1, 0, 18);
  const dd = parseDeviceDescriptor(d.data);
  assert.equal(dd.vendorId, 0x1209);
  assert.equal(dd.bcdUSB, 0x0200);
  assert.equal(dd.maxPacketSize0, 64);
  const head = await getDescriptor(dev, 2, 0, 9);
  assert.equal(head.actualLength, 9);
  const full = await getDescriptor(dev, 2, 0, head.data.readUInt16LE(2));
  assert.equal(parseConfiguration(full.data).interfaces[0]!.alternates.length, 2);
  const product = await getDescriptor(dev, 3, dd.iProduct, 255, 0x409);
  assert.equal(decodeStringDescriptor(product.data), 'Probe');
  const lang = await getDescriptor(dev, 3, 0, 255);
  assert.deepEqual([...lang.data], [4, 3, 0x09, 0x04]);
  assert.equal((await getDescriptor(dev, 6, 0, 10)).actualLength, 10);
  const other = await getDescriptor(dev, 7, 0, 255);
  assert.equal(other.data[1], 7);
  assert.equal(parseConfiguration(other.data).interfaces[0]!.alternates[1]!.endpoints[0]!.maxPacketSize, 512);
  assert.equal((await getDescriptor(dev, 3, 99, 255)).status, TransferStatus.Stall);
  assert.equal((await getDescriptor(dev, 2, 1, 255)).status, TransferStatus.Stall);
});

test('configuration and alternate settings gate the endpoints', async () => {
  const { dev, fn } = makeDevice();
  const early = bulkIn(dev, 0x81, 64);
  await early.done;
  assert.equal(early.status, TransferStatus.Invalid);
  assert.equal((await setConfiguration(dev, 2)).status, TransferStatus.Stall);
  assert.equal((await setConfiguration(dev, 1)).status, TransferStatus.Ok);
  assert.equal(dev.configuration, 1);
  assert.ok(fn.configured);
  const getConf = await control(dev, { bmRequestType: 0x80, bRequest: 8, wValue: 0, wIndex: 0, wLength: 1 });
  assert.deepEqual([...getConf.data], [1]);
  const setAlt = await control(dev, { bmRequestType: 0x01, bRequest: 11, wValue: 1, wIndex: 0, wLength: 0 });
  assert.equal(setAlt.status, TransferStatus.Ok);
  assert.equal(fn.alt, 1);
  assert.equal(dev.alternateSetting(0), 1);
  const badAlt = await control(dev, { bmRequestType: 0x01, bRequest: 11, wValue: 5, wIndex: 0, wLength: 0 });
  assert.equal(badAlt.status, TransferStatus.Stall);
  const pending = bulkIn(dev, 0x81, 64);
  assert.deepEqual(fn.notified, [0x81]);
  assert.equal(fn.host.waiting(0x81), 1);
  dev.cancel(pending);
  await pending.done;
  assert.equal(pending.status, TransferStatus.Cancelled);
});

test('endpoint halt: SET_FEATURE stalls, GET_STATUS reports, CLEAR_FEATURE clears, wedge survives', async () => {
  const { dev, fn } = makeDevice();
  await setConfiguration(dev, 1);
  await control(dev, { bmRequestType: 0x01, bRequest: 11, wValue: 1, wIndex: 0, wLength: 0 });
  await control(dev, { bmRequestType: 0x02, bRequest: 3, wValue: 0, wIndex: 0x81, wLength: 0 });
  const status = await control(dev, { bmRequestType: 0x82, bRequest: 0, wValue: 0, wIndex: 0x81, wLength: 2 });
  assert.deepEqual([...status.data], [1, 0]);
  const stalled = bulkIn(dev, 0x81, 64);
  await stalled.done;
  assert.equal(stalled.status, TransferStatus.Stall);
  await control(dev, { bmRequestType: 0x02, bRequest: 1, wValue: 0, wIndex: 0x81, wLength: 0 });
  assert.deepEqual(fn.cleared, [0x81]);
  fn.host.wedgeEndpoint(0x81);
  await control(dev, { bmRequestType: 0x02, bRequest: 1, wValue: 0, wIndex: 0x81, wLength: 0 });
  assert.ok(fn.host.isHalted(0x81));
  const unknownEp = await control(dev, { bmRequestType: 0x82, bRequest: 0, wValue: 0, wIndex: 0x85, wLength: 2 });
  assert.equal(unknownEp.status, TransferStatus.Stall);
});

test('vendor requests reach the function and IN data is cut to wLength', async () => {
  const { dev } = makeDevice();
  assert.equal(
    (await control(dev, { bmRequestType: 0xc0, bRequest: 0x42, wValue: 0, wIndex: 0, wLength: 6 })).status,
    TransferStatus.Stall,
    'unconfigured: no function',
  );
  await setConfiguration(dev, 1);
  const t = await control(dev, { bmRequestType: 0xc0, bRequest: 0x42, wValue: 0, wIndex: 0, wLength: 6 });
  assert.equal(t.data.toString(), 'vendor');
  const unknown = await control(dev, { bmRequestType: 0xc0, bRequest: 0x43, wValue: 0, wIndex: 0, wLength: 6 });
  assert.equal(unknown.status, TransferStatus.Stall);
});

test('reset unconfigures and cancels pending transfers', async () => {
  const { dev } = makeDevice();
  await setConfiguration(dev, 1);
  await control(dev, { bmRequestType: 0x01, bRequest: 11, wValue: 1, wIndex: 0, wLength: 0 });
  const pending = bulkIn(dev, 0x81, 64);
  await dev.reset();
  await pending.done;
  assert.equal(pending.status, TransferStatus.Cancelled);
  assert.equal(dev.configuration, 0);
  assert.equal(dev.alternateSetting(0), 0);
});

test('endpoint queues: FIFO take, complete, and a cancel of a taken transfer wins over a late complete', async () => {
  const { dev, fn } = makeDevice();
  await setConfiguration(dev, 1);
  await control(dev, { bmRequestType: 0x01, bRequest: 11, wValue: 1, wIndex: 0, wLength: 0 });
  const a = bulkIn(dev, 0x81, 8);
  const b = bulkIn(dev, 0x81, 8);
  assert.equal(fn.host.peek(0x81), a);
  const first = fn.host.take(0x81)!;
  assert.equal(first, a);
  assert.equal(fn.host.waiting(0x81), 1);
  first.completeIn(Buffer.from('hello'));
  assert.equal(fn.host.complete(first), true);
  await a.done;
  assert.equal(a.data.toString(), 'hello');
  const second = fn.host.take(0x81)!;
  assert.equal(second, b);
  dev.cancel(b);
  await b.done;
  assert.equal(b.status, TransferStatus.Cancelled);
  assert.equal(fn.host.complete(second), false);
  assert.equal(fn.host.take(0x81), undefined);
});

test('a halt fails the queued transfers with Stall; SET_INTERFACE flushes the old alternate setting', async () => {
  const { dev, fn } = makeDevice();
  await setConfiguration(dev, 1);
  await control(dev, { bmRequestType: 0x01, bRequest: 11, wValue: 1, wIndex: 0, wLength: 0 });
  const queued = [bulkIn(dev, 0x81, 8), bulkIn(dev, 0x81, 8)];
  fn.host.haltEndpoint(0x81);
  for (const t of queued) {
    await t.done;
    assert.equal(t.status, TransferStatus.Stall);
  }
  await control(dev, { bmRequestType: 0x02, bRequest: 1, wValue: 0, wIndex: 0x81, wLength: 0 });
  const again = bulkIn(dev, 0x81, 8);
  await control(dev, { bmRequestType: 0x01, bRequest: 11, wValue: 0, wIndex: 0, wLength: 0 });
  await again.done;
  assert.equal(again.status, TransferStatus.Cancelled);
  const gone = bulkIn(dev, 0x81, 8);
  await gone.done;
  assert.equal(gone.status, TransferStatus.Invalid);
});

test('cancelling 100k pending transfers is linear', async () => {
  const { dev } = makeDevice();
  await setConfiguration(dev, 1);
  await control(dev, { bmRequestType: 0x01, bRequest: 11, wValue: 1, wIndex: 0, wLength: 0 });
  const n = 100_000;
  const ts = Array.from({ length: n }, () => bulkIn(dev, 0x81, 8));
  const start = performance.now();
  for (let i = n - 1; i >= 0; i -= 2) dev.cancel(ts[i]!);
  await dev.reset();
  await Promise.all(ts.map((t) => t.done));
  const ms = performance.now() - start;
  assert.ok(ts.every((t) => t.status === TransferStatus.Cancelled));
  assert.ok(ms < 2000, `cancel + reset of ${n} took ${ms.toFixed(0)} ms`);
});

test('several configurations: each has its functions, GET_CONFIGURATION follows SET_CONFIGURATION', async () => {
  const a = new ProbeFunction();
  const b = new ProbeFunction();
  const dev = new EmulatedDevice({
    name: 'two configs',
    speed: 'high',
    vendorId: 0x1209,
    productId: 0x0002,
    configurations: [
      { value: 3, name: 'first', functions: [a] },
      { value: 2, name: 'second', functions: [b] },
    ],
  });
  assert.equal(parseDeviceDescriptor(dev.descriptors.device).numConfigurations, 2);
  assert.equal(parseConfiguration(dev.descriptors.configurations[1]!).value, 2);
  assert.equal((await setConfiguration(dev, 1)).status, TransferStatus.Stall);
  assert.equal((await setConfiguration(dev, 2)).status, TransferStatus.Ok);
  assert.ok(b.configured && !a.configured);
  await control(dev, { bmRequestType: 0x01, bRequest: 11, wValue: 1, wIndex: 0, wLength: 0 });
  const t = bulkIn(dev, 0x81, 8);
  assert.deepEqual(b.notified, [0x81]);
  assert.equal((await setConfiguration(dev, 3)).status, TransferStatus.Ok);
  await t.done;
  assert.equal(t.status, TransferStatus.Cancelled);
  assert.ok(a.configured && !b.configured);
  const conf = await control(dev, { bmRequestType: 0x80, bRequest: 8, wValue: 0, wIndex: 0, wLength: 1 });
  assert.deepEqual([...conf.data], [3]);
  assert.equal((await getDescriptor(dev, 7, 1, 255)).data[5], 2);
});

test('GET_DESCRIPTOR to an interface goes to its function (class descriptors such as HID reports)', async () => {
  const { dev } = makeDevice();
  await setConfiguration(dev, 1);
  const r = await control(dev, { bmRequestType: 0x81, bRequest: 6, wValue: 0x2200, wIndex: 0, wLength: 64 });
  assert.deepEqual([...r.data], [0x05, 0x01]);
  const otherIface = await control(dev, { bmRequestType: 0x81, bRequest: 6, wValue: 0x2200, wIndex: 1, wLength: 64 });
  assert.equal(otherIface.status, TransferStatus.Stall);
  const toDevice = await control(dev, { bmRequestType: 0x80, bRequest: 6, wValue: 0x0400, wIndex: 0, wLength: 9 });
  assert.equal(toDevice.status, TransferStatus.Stall);
});

test('a control transfer waiting for its answer can be cancelled; the late answer is dropped; reset cancels too', async () => {
  const { dev, fn } = makeDevice();
  await setConfiguration(dev, 1);
  const slow = { bmRequestType: 0xc0, bRequest: 0x44, wValue: 0, wIndex: 0, wLength: 8 };
  const first = controlTransfer(slow);
  const firstDone = dev.submit(first);
  await tick();
  dev.cancel(first);
  await firstDone;
  assert.equal(first.status, TransferStatus.Cancelled);
  fn.slowAnswer!();
  await tick();
  assert.equal(first.status, TransferStatus.Cancelled, 'the late answer does not overwrite the cancel');
  assert.equal(first.actualLength, 0);
  const second = controlTransfer(slow);
  const secondDone = dev.submit(second);
  await tick();
  await dev.reset();
  await secondDone;
  assert.equal(second.status, TransferStatus.Cancelled);
  await setConfiguration(dev, 1);
  const third = controlTransfer(slow);
  const thirdDone = dev.submit(third);
  await tick();
  fn.slowAnswer!();
  await thirdDone;
  assert.equal(third.data.toString(), 'late');
});

function controlTransfer(setup: SetupPacket): Transfer {
  return new Transfer({ type: 'control', endpoint: 0x80, setup, length: setup.wLength });
}

function tick(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { EmulatedDevice } from '../../src/devices/emulated-device.js';
import { decodeStringDescriptor, parseConfiguration, parseDeviceDescriptor } from '../../src/usb/descriptors.js';
import type { ControlResult, FunctionHost, InterfaceSpec, UsbFunction } from '../../src/usb/function.js';
import type { SetupPacket } from '../../src/usb/setup.js';
import { TransferStatus } from '../../src/usb/status.js';
import type { Transfer } from '../../src/usb/transfer.js';
import { bulkIn, control, getDescriptor, setConfiguration } from '../support/drive.js';

/** A function with one interface, two alternate settings, a bulk IN endpoint that echoes a counter. */
class ProbeFunction implements UsbFunction {
  host!: FunctionHost;
  configured = false;
  alt = 0;
  cleared: number[] = [];
  pending = new Map<Transfer, () => void>();
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
  control(s: SetupPacket): ControlResult | undefined {
    if (s.bRequest === 0x42) return { status: TransferStatus.Ok, data: Buffer.from('vendor-reply-longer-than-asked') };
    return undefined;
  }
  submit(t: Transfer): Promise<void> {
    return new Promise((done) => this.pending.set(t, done));
  }
  cancel(t: Transfer): void {
    const done = this.pending.get(t);
    if (!done) return;
    this.pending.delete(t);
    t.fail(TransferStatus.Cancelled);
    done();
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
  reset(): void {
    for (const t of [...this.pending.keys()]) this.cancel(t);
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
  assert.equal(fn.pending.size, 1);
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

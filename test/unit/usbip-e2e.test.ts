import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import net from 'node:net';
import { after, before, test } from 'node:test';
import { type RemoteUsbipDevice, UsbipClient } from '../../src/client/usbip/index.js';
import {
  encodeCmdSubmit,
  encodeCmdUnlink,
  encodeReqImport,
  type RequestShape,
  type RetSubmit,
  type UsbipPacket,
  UsbipParser,
} from '../../src/protocol/usbip/index.js';
import { DeviceRegistry, type ExportedDevice } from '../../src/server/registry.js';
import { UsbipServer } from '../../src/server/usbip/index.js';
import { buildConfiguration, buildDeviceDescriptor, StringTable } from '../../src/usb/descriptors.js';
import type { DeviceDescriptors, UsbDevice, UsbDeviceEvents } from '../../src/usb/device.js';
import { StandardRequest } from '../../src/usb/setup.js';
import { TransferStatus } from '../../src/usb/status.js';
import { Transfer } from '../../src/usb/transfer.js';
import type { HostPort } from '../../src/util/host-port.js';
import { setLogSink } from '../../src/util/log.js';

/** Bulk IN 0x81 answers at once, bulk OUT 0x02 records, interrupt IN 0x83 waits; ISO IN 0x84 in interface 1 alt 1. */
class FakeDevice extends EventEmitter<UsbDeviceEvents> implements UsbDevice {
  readonly name = 'fake';
  readonly speed = 'high' as const;
  readonly descriptors: DeviceDescriptors;
  configuration = 0;
  readonly alternates = new Map<number, number>();
  readonly pending = new Set<{ t: Transfer; done: () => void }>();
  readonly received: Buffer[] = [];
  resets = 0;
  ignoreCancel = false;

  constructor() {
    super();
    const device = buildDeviceDescriptor({
      bcdUSB: 0x200,
      deviceClass: 0xef,
      deviceSubClass: 2,
      deviceProtocol: 1,
      maxPacketSize0: 64,
      vendorId: 0x1209,
      productId: 0x0001,
      bcdDevice: 0x0102,
      iManufacturer: 0,
      iProduct: 0,
      iSerialNumber: 0,
      numConfigurations: 1,
    });
    const config = buildConfiguration(
      { value: 1, attributes: 0, maxPowerMa: 100, superSpeed: false },
      [
        {
          number: 0,
          alternates: [
            {
              alternate: 0,
              interfaceClass: 0xff,
              interfaceSubClass: 1,
              interfaceProtocol: 2,
              endpoints: [
                { address: 0x81, type: 'bulk', maxPacketSize: 512, interval: 0 },
                { address: 0x02, type: 'bulk', maxPacketSize: 512, interval: 0 },
                { address: 0x83, type: 'interrupt', maxPacketSize: 64, interval: 4 },
              ],
            },
          ],
        },
        {
          number: 1,
          alternates: [
            { alternate: 0, interfaceClass: 1, interfaceSubClass: 2, interfaceProtocol: 0, endpoints: [] },
            {
              alternate: 1,
              interfaceClass: 1,
              interfaceSubClass: 2,
              interfaceProtocol: 0,
              endpoints: [{ address: 0x84, type: 'isochronous', maxPacketSize: 1024, interval: 1 }],
            },
          ],
        },
      ],
      new StringTable(),
    );
    this.descriptors = { device, configurations: [config] };
  }

  alternateSetting(i: number): number {
    return this.alternates.get(i) ?? 0;
  }

  async submit(t: Transfer): Promise<void> {
    if (t.type === 'control') return this.#control(t);
    if (t.endpoint === 0x81) return t.completeIn(Buffer.alloc(t.length, 0xb1));
    if (t.endpoint === 0x02) {
      this.received.push(Buffer.from(t.data));
      t.actualLength = t.length;
      return;
    }
    if (t.endpoint === 0x84) {
      const data = Buffer.alloc(t.length);
      const lengths = [10, 0, 5];
      t.isoPackets!.forEach((p, i) => {
        p.actualLength = Math.min(p.length, lengths[i % 3]!);
        data.fill(0x40 + i, p.offset, p.offset + p.actualLength);
        if (i === 1) p.status = TransferStatus.IoError;
      });
      t.data = data;
      t.actualLength = t.isoPackets!.reduce((s, p) => s + p.actualLength, 0);
      return;
    }
    return new Promise((done) => this.pending.add({ t, done }));
  }

  #control(t: Transfer): void {
    const s = t.setup!;
    if (s.bRequest === StandardRequest.GetDescriptor && s.bmRequestType === 0x80) {
      const type = s.wValue >> 8;
      const d =
        type === 1
          ? this.descriptors.device
          : type === 2
            ? this.descriptors.configurations[s.wValue & 0xff]
            : undefined;
      if (d) t.completeIn(d.subarray(0, Math.min(d.length, s.wLength)));
      else t.fail(TransferStatus.Stall);
      return;
    }
    if (s.bRequest === StandardRequest.GetConfiguration) {
      t.completeIn(Buffer.from([this.configuration]));
      return;
    }
    if (s.bRequest === StandardRequest.SetConfiguration) {
      this.configuration = s.wValue;
      this.alternates.clear();
      return;
    }
    if (s.bRequest === StandardRequest.SetInterface) {
      this.alternates.set(s.wIndex, s.wValue);
      return;
    }
    t.fail(TransferStatus.Stall);
  }

  /** Complete the oldest pending interrupt IN with data. */
  fire(data: Buffer): void {
    const first = [...this.pending][0]!;
    this.pending.delete(first);
    first.t.completeIn(data);
    first.done();
  }

  cancel(t: Transfer): void {
    if (this.ignoreCancel) return;
    for (const p of this.pending) {
      if (p.t === t) {
        this.pending.delete(p);
        t.fail(TransferStatus.Cancelled);
        p.done();
      }
    }
  }

  async reset(): Promise<void> {
    this.resets++;
    for (const p of [...this.pending]) {
      this.pending.delete(p);
      p.t.fail(TransferStatus.Cancelled);
      p.done();
    }
    this.configuration = 0;
    this.alternates.clear();
  }

  async close(): Promise<void> {}
}

/** A bare USB/IP peer on a socket, to check the exact PDU sequence the server sends. */
class RawPeer {
  readonly socket: net.Socket;
  readonly packets: UsbipPacket[] = [];
  readonly shapes = new Map<number, RequestShape>();
  readonly closed: Promise<void>;
  #waiters: (() => void)[] = [];

  constructor(socket: net.Socket) {
    this.socket = socket;
    const parser: UsbipParser = new UsbipParser({ role: 'client', lookupRequest: (s) => this.shapes.get(s) }, (p) => {
      this.packets.push(p);
      if (p.kind === 'op-rep-import') parser.startUrbPhase();
      for (const w of this.#waiters.splice(0)) w();
    });
    socket.on('data', (c: Buffer) => parser.push(c));
    this.closed = new Promise((resolve) => socket.once('close', () => resolve()));
  }

  static async connect(a: HostPort): Promise<RawPeer> {
    const socket = net.connect(a.port, a.host);
    await new Promise((resolve) => socket.once('connect', resolve));
    return new RawPeer(socket);
  }

  async waitFor(count: number, timeoutMs = 2000): Promise<UsbipPacket[]> {
    const deadline = Date.now() + timeoutMs;
    while (this.packets.length < count) {
      if (Date.now() > deadline) throw new Error(`waited for ${count} packets, have ${this.packets.length}`);
      await new Promise<void>((resolve) => {
        this.#waiters.push(resolve);
        setTimeout(resolve, 50);
      });
    }
    return this.packets;
  }

  send(pdu: readonly Buffer[]): void {
    for (const b of pdu) this.socket.write(b);
  }

  async importDevice(busid: string): Promise<void> {
    this.send(encodeReqImport(busid));
    const [rep] = await this.waitFor(1);
    assert.equal(rep!.kind, 'op-rep-import');
    assert.equal((rep as { status: number }).status, 0);
    this.packets.length = 0;
  }
}

const logs: string[] = [];
let registry: DeviceRegistry;
let fake: FakeDevice;
let second: FakeDevice;
let entry: ExportedDevice;
let server: UsbipServer;
let address: HostPort;
const client = new UsbipClient({ timeoutMs: 2000 });
const DEVID = 0x00010001;

before(async () => {
  setLogSink((l) => logs.push(l));
  registry = new DeviceRegistry();
  fake = new FakeDevice();
  second = new FakeDevice();
  entry = registry.add(fake);
  registry.add(second);
  server = new UsbipServer(registry, { host: '127.0.0.1', port: 0 });
  address = await server.listen();
});

after(async () => {
  await server.close();
  setLogSink((l) => process.stderr.write(`${l}\n`));
});

async function until(cond: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 2000;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

async function released(): Promise<void> {
  await until(() => entry.owner === undefined, 'release');
}

test('DEVLIST lists every exported device with descriptor fields', async () => {
  const list = await client.listDevices(address);
  assert.equal(list.length, 2);
  const d = list[0]!;
  assert.equal(d.path, '/sys/devices/usbwire/1-1');
  assert.equal(d.busid, '1-1');
  assert.equal(d.busnum, 1);
  assert.equal(d.devnum, 1);
  assert.equal(d.speed, 3);
  assert.deepEqual([d.idVendor, d.idProduct, d.bcdDevice], [0x1209, 0x0001, 0x0102]);
  assert.deepEqual([d.bDeviceClass, d.bDeviceSubClass, d.bDeviceProtocol], [0xef, 2, 1]);
  assert.deepEqual([d.bConfigurationValue, d.bNumConfigurations, d.bNumInterfaces], [1, 1, 2]);
  assert.deepEqual(d.interfaces, [
    { interfaceClass: 0xff, interfaceSubClass: 1, interfaceProtocol: 2 },
    { interfaceClass: 1, interfaceSubClass: 2, interfaceProtocol: 0 },
  ]);
  assert.equal(list[1]!.busid, '1-2');
});

test('client import: descriptors over EP0, configuration tracking, bulk IN/OUT, ISO IN with alt setting', async () => {
  const dev = await client.importDevice(`127.0.0.1:${address.port}`, '1-1');
  try {
    assert.equal(entry.owner?.startsWith('usbip 127.0.0.1:'), true);
    assert.deepEqual(dev.descriptors.device, fake.descriptors.device);
    assert.deepEqual(dev.descriptors.configurations, fake.descriptors.configurations);
    assert.equal(dev.speed, 'high');
    assert.equal(dev.configuration, 0);

    const bulkBefore = new Transfer({ type: 'bulk', endpoint: 0x81, length: 512 });
    await dev.submit(bulkBefore);
    assert.equal(bulkBefore.status, TransferStatus.Invalid, 'no endpoints before SET_CONFIGURATION');

    const setConfig = new Transfer({
      type: 'control',
      endpoint: 0,
      setup: { bmRequestType: 0, bRequest: 9, wValue: 1, wIndex: 0, wLength: 0 },
    });
    await dev.submit(setConfig);
    assert.equal(setConfig.status, TransferStatus.Ok);
    assert.equal(dev.configuration, 1);
    assert.equal(fake.configuration, 1);

    const ins = Array.from({ length: 8 }, () => new Transfer({ type: 'bulk', endpoint: 0x81, length: 65536 }));
    await Promise.all(ins.map((t) => dev.submit(t)));
    for (const t of ins) {
      assert.equal(t.status, TransferStatus.Ok);
      assert.equal(t.actualLength, 65536);
      assert.ok(t.data.every((b) => b === 0xb1));
    }
    const out = new Transfer({ type: 'bulk', endpoint: 0x02, data: Buffer.from('hello usbip') });
    await dev.submit(out);
    assert.equal(out.status, TransferStatus.Ok);
    assert.equal(out.actualLength, 11);
    assert.equal(fake.received.at(-1)?.toString(), 'hello usbip');

    const isoPackets = () =>
      [0, 1, 2].map((i) => ({ offset: i * 100, length: 100, actualLength: 0, status: TransferStatus.Ok }));
    const isoEarly = new Transfer({ type: 'isochronous', endpoint: 0x84, length: 300, isoPackets: isoPackets() });
    await dev.submit(isoEarly);
    assert.equal(isoEarly.status, TransferStatus.Invalid, 'alt setting 0 has no ISO endpoint');
    const setAlt = new Transfer({
      type: 'control',
      endpoint: 0,
      setup: { bmRequestType: 1, bRequest: 11, wValue: 1, wIndex: 1, wLength: 0 },
    });
    await dev.submit(setAlt);
    assert.equal(dev.alternateSetting(1), 1);
    const iso = new Transfer({ type: 'isochronous', endpoint: 0x84, length: 300, isoPackets: isoPackets() });
    await dev.submit(iso);
    assert.equal(iso.status, TransferStatus.Ok);
    assert.equal(iso.actualLength, 15);
    assert.deepEqual(
      iso.isoPackets!.map((p) => [p.actualLength, p.status]),
      [
        [10, 'ok'],
        [0, 'io-error'],
        [5, 'ok'],
      ],
    );
    assert.ok(iso.data.subarray(0, 10).every((b) => b === 0x40));
    assert.ok(iso.data.subarray(200, 205).every((b) => b === 0x42));
    assert.ok(iso.data.subarray(10, 200).every((b) => b === 0));
  } finally {
    await dev.close();
  }
  await released();
  assert.equal(fake.configuration, 0, 'device reset on release');
});

test('unlink of a pending interrupt IN: RET_UNLINK(-ECONNRESET) and no RET_SUBMIT', async () => {
  const peer = await RawPeer.connect(address);
  await peer.importDevice('1-1');
  peer.shapes.set(1, { in: false, length: 0, isoPackets: 0 });
  peer.shapes.set(2, { in: true, length: 64, isoPackets: 0 });
  peer.send(
    encodeCmdSubmit({
      seqnum: 1,
      devid: DEVID,
      direction: 0,
      ep: 0,
      transferFlags: 0,
      transferBufferLength: 0,
      startFrame: 0,
      numberOfPackets: 0,
      interval: 0,
      setup: { bmRequestType: 0, bRequest: 9, wValue: 1, wIndex: 0, wLength: 0 },
    }),
  );
  peer.send(
    encodeCmdSubmit({
      seqnum: 2,
      devid: DEVID,
      direction: 1,
      ep: 3,
      transferFlags: 0x200,
      transferBufferLength: 64,
      startFrame: 0,
      numberOfPackets: 0,
      interval: 4,
    }),
  );
  await peer.waitFor(1);
  await until(() => fake.pending.size === 1, 'interrupt IN pending');
  peer.send(encodeCmdUnlink({ seqnum: 3, devid: DEVID, direction: 0, ep: 0, unlinkSeqnum: 2 }));
  const packets = await peer.waitFor(2);
  await new Promise((r) => setTimeout(r, 100));
  assert.equal(packets.length, 2, 'nothing after the RET_UNLINK');
  assert.equal(packets[0]!.kind, 'ret-submit');
  assert.deepEqual(packets[1], { kind: 'ret-unlink', seqnum: 3, devid: 0, direction: 0, ep: 0, status: -104 });
  peer.socket.destroy();
  await released();
});

test('unlink after completion: RET_SUBMIT first, then RET_UNLINK(0)', async () => {
  const peer = await RawPeer.connect(address);
  await peer.importDevice('1-1');
  peer.shapes.set(1, { in: false, length: 0, isoPackets: 0 });
  peer.shapes.set(2, { in: true, length: 100, isoPackets: 0 });
  peer.shapes.set(4, { in: true, length: 64, isoPackets: 0 });
  peer.send(
    encodeCmdSubmit({
      seqnum: 1,
      devid: DEVID,
      direction: 0,
      ep: 0,
      transferFlags: 0,
      transferBufferLength: 0,
      startFrame: 0,
      numberOfPackets: 0,
      interval: 0,
      setup: { bmRequestType: 0, bRequest: 9, wValue: 1, wIndex: 0, wLength: 0 },
    }),
  );
  peer.send(
    encodeCmdSubmit({
      seqnum: 2,
      devid: DEVID,
      direction: 1,
      ep: 1,
      transferFlags: 0x200,
      transferBufferLength: 100,
      startFrame: 0,
      numberOfPackets: 0,
      interval: 0,
    }),
  );
  await peer.waitFor(2);
  peer.send(encodeCmdUnlink({ seqnum: 3, devid: DEVID, direction: 0, ep: 0, unlinkSeqnum: 2 }));
  const packets = await peer.waitFor(3);
  assert.equal((packets[1] as RetSubmit).seqnum, 2);
  assert.equal((packets[1] as RetSubmit).data.length, 100);
  assert.deepEqual(packets[2], { kind: 'ret-unlink', seqnum: 3, devid: 0, direction: 0, ep: 0, status: 0 });

  // A device that finishes the transfer although cancel was asked: RET_SUBMIT, then RET_UNLINK(0).
  fake.ignoreCancel = true;
  try {
    peer.send(
      encodeCmdSubmit({
        seqnum: 4,
        devid: DEVID,
        direction: 1,
        ep: 3,
        transferFlags: 0x200,
        transferBufferLength: 64,
        startFrame: 0,
        numberOfPackets: 0,
        interval: 4,
      }),
    );
    await until(() => fake.pending.size === 1, 'interrupt IN pending');
    peer.send(encodeCmdUnlink({ seqnum: 5, devid: DEVID, direction: 0, ep: 0, unlinkSeqnum: 4 }));
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(peer.packets.length, 3, 'RET_UNLINK waits for the target to finish');
    fake.fire(Buffer.from('late'));
    const all = await peer.waitFor(5);
    assert.equal(all[3]!.kind, 'ret-submit');
    assert.equal((all[3] as RetSubmit).data.toString(), 'late');
    assert.deepEqual(all[4], { kind: 'ret-unlink', seqnum: 5, devid: 0, direction: 0, ep: 0, status: 0 });
  } finally {
    fake.ignoreCancel = false;
  }
  peer.socket.destroy();
  await released();
});

test('client cancel completes the transfer exactly once, as Cancelled', async () => {
  const dev = await client.importDevice(address, '1-1');
  await dev.submit(
    new Transfer({
      type: 'control',
      endpoint: 0,
      setup: { bmRequestType: 0, bRequest: 9, wValue: 1, wIndex: 0, wLength: 0 },
    }),
  );
  const t = new Transfer({ type: 'interrupt', endpoint: 0x83, length: 64 });
  let resolved = 0;
  const done = dev.submit(t).then(() => resolved++);
  await until(() => fake.pending.size === 1, 'interrupt IN pending');
  dev.cancel(t);
  dev.cancel(t);
  await done;
  assert.equal(t.status, TransferStatus.Cancelled);
  assert.equal(resolved, 1);
  // The connection is still fine afterwards.
  const bulk = new Transfer({ type: 'bulk', endpoint: 0x81, length: 10 });
  await dev.submit(bulk);
  assert.equal(bulk.status, TransferStatus.Ok);
  assert.equal(dev.inFlight, 0);
  await dev.close();
  await released();
});

test('import of a claimed device answers busy and logs the holder; unknown busid answers no device', async () => {
  const dev = await client.importDevice(address, '1-1');
  logs.length = 0;
  await assert.rejects(client.importDevice(address, '1-1'), /busy/);
  assert.ok(
    logs.some((l) => /1-1.*busy.*held by usbip 127\.0\.0\.1:/.test(l)),
    logs.join('\n'),
  );
  await assert.rejects(client.importDevice(address, '9-9'), /no such device/);
  registry.claim(registry.get('1-2')!, 'usbredir 10.0.0.5:4000');
  await assert.rejects(client.importDevice(address, '1-2'), /busy/);
  assert.ok(logs.some((l) => l.includes('held by usbredir 10.0.0.5:4000')));
  registry.release(registry.get('1-2')!, 'usbredir 10.0.0.5:4000');
  await dev.close();
  await released();
});

test('a hostile connection is closed while an imported device keeps working', async () => {
  const dev = await client.importDevice(address, '1-1');
  await dev.submit(
    new Transfer({
      type: 'control',
      endpoint: 0,
      setup: { bmRequestType: 0, bRequest: 9, wValue: 1, wIndex: 0, wLength: 0 },
    }),
  );
  logs.length = 0;
  const hostile = await RawPeer.connect(address);
  hostile.socket.on('error', () => {});
  hostile.socket.write(Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'));
  await hostile.closed;
  assert.ok(
    logs.some((l) => l.includes('bad-version')),
    logs.join('\n'),
  );

  // Garbage inside the URB phase of another imported connection closes only that one.
  const peer = await RawPeer.connect(address);
  await peer.importDevice('1-2');
  peer.socket.write(Buffer.alloc(48, 0xee));
  await peer.closed;
  assert.ok(logs.some((l) => l.includes('unknown-command')));

  const t = new Transfer({ type: 'bulk', endpoint: 0x81, length: 1000 });
  await dev.submit(t);
  assert.equal(t.status, TransferStatus.Ok);
  await dev.close();
  await released();
});

test('wrong devid closes the connection and releases the device', async () => {
  const peer = await RawPeer.connect(address);
  await peer.importDevice('1-1');
  peer.send(
    encodeCmdSubmit({
      seqnum: 1,
      devid: 0x00020005,
      direction: 1,
      ep: 1,
      transferFlags: 0,
      transferBufferLength: 8,
      startFrame: 0,
      numberOfPackets: 0,
      interval: 0,
    }),
  );
  await peer.closed;
  await released();
});

test('server going away: pending client transfers complete with NoDevice and disconnect fires', async () => {
  const other = new UsbipServer(registry, { host: '127.0.0.1', port: 0 });
  const where = await other.listen();
  const dev: RemoteUsbipDevice = await client.importDevice(where, '1-1');
  await dev.submit(
    new Transfer({
      type: 'control',
      endpoint: 0,
      setup: { bmRequestType: 0, bRequest: 9, wValue: 1, wIndex: 0, wLength: 0 },
    }),
  );
  const t = new Transfer({ type: 'interrupt', endpoint: 0x83, length: 64 });
  const done = dev.submit(t);
  await until(() => fake.pending.size === 1, 'interrupt IN pending');
  const disconnected = new Promise<void>((resolve) => dev.once('disconnect', resolve));
  const resetsBefore = fake.resets;
  await other.close();
  await done;
  await disconnected;
  assert.equal(t.status, TransferStatus.NoDevice);
  assert.equal(fake.pending.size, 0, 'server cancelled what was in flight');
  assert.equal(fake.resets, resetsBefore + 1);
  assert.equal(entry.owner, undefined);
  const late = new Transfer({ type: 'bulk', endpoint: 0x81, length: 8 });
  await dev.submit(late);
  assert.equal(late.status, TransferStatus.NoDevice);
});

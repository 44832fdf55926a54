import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import {
  capsFrom,
  encodePacket,
  Negotiation,
  type Packet,
  type PacketOf,
  PacketType as T,
  UsbredirParser,
} from '../../src/protocol/usbredir/index.js';
import { DeviceRegistry, type ExportedDevice } from '../../src/server/registry.js';
import { UsbredirListener } from '../../src/server/usbredir/index.js';
import { buildDeviceDescriptor } from '../../src/usb/descriptors.js';
import type { DeviceDescriptors, UsbDevice, UsbDeviceEvents } from '../../src/usb/device.js';
import type { UsbSpeed } from '../../src/usb/speed.js';
import { TransferStatus } from '../../src/usb/status.js';
import type { Transfer } from '../../src/usb/transfer.js';
import { setLogSink } from '../../src/util/log.js';

setLogSink('silent');

/** Interface 0: alt 0 = bulk IN 0x81, bulk OUT 0x02, interrupt IN 0x83; alt 1 adds interrupt OUT 0x04. */
function configDescriptor(): Buffer {
  const ep = (addr: number, attr: number, mps: number, interval: number) => [
    7,
    5,
    addr,
    attr,
    mps & 0xff,
    mps >> 8,
    interval,
  ];
  const alt0 = [9, 4, 0, 0, 3, 0xff, 0, 0, 0, ...ep(0x81, 2, 512, 0), ...ep(0x02, 2, 512, 0), ...ep(0x83, 3, 8, 4)];
  const alt1 = [
    9,
    4,
    0,
    1,
    4,
    0xff,
    1,
    0,
    0,
    ...ep(0x81, 2, 512, 0),
    ...ep(0x02, 2, 512, 0),
    ...ep(0x83, 3, 8, 4),
    ...ep(0x04, 3, 16, 4),
  ];
  const alt2 = [9, 4, 0, 2, 2, 0xff, 2, 0, 0, ...ep(0x85, 1, 256, 1), ...ep(0x06, 1, 256, 1)];
  const body = [...alt0, ...alt1, ...alt2];
  const total = 9 + body.length;
  return Buffer.from([9, 2, total & 0xff, total >> 8, 1, 1, 0, 0x80, 50, ...body]);
}

interface Waiting {
  transfer: Transfer;
  resolve: () => void;
}

/** Just enough of a device: standard requests, a bulk loopback, an interrupt IN fed by the test. */
class FakeDevice extends EventEmitter<UsbDeviceEvents> implements UsbDevice {
  readonly name = 'fake';
  readonly speed: UsbSpeed = 'high';
  readonly descriptors: DeviceDescriptors = {
    device: buildDeviceDescriptor({
      bcdUSB: 0x0200,
      deviceClass: 0,
      deviceSubClass: 0,
      deviceProtocol: 0,
      maxPacketSize0: 64,
      vendorId: 0x1234,
      productId: 0x5678,
      bcdDevice: 0x0102,
      iManufacturer: 0,
      iProduct: 0,
      iSerialNumber: 0,
      numConfigurations: 1,
    }),
    configurations: [configDescriptor()],
  };
  configuration = 1;
  alt = 0;
  resets = 0;
  bulkOut: Buffer[] = [];
  bulkIn: Buffer[] = [];
  /** Iso OUT packets received, in order; iso IN packets sent so far. */
  isoOut: Buffer[] = [];
  isoInCount = 0;
  readonly waiting = new Set<Waiting>();

  alternateSetting(): number {
    return this.alt;
  }

  submit(t: Transfer): Promise<void> {
    return new Promise((resolve) => {
      const done = () => resolve();
      if (t.type === 'control') return this.#control(t, done);
      if (t.type === 'bulk' && !t.isIn) {
        this.bulkOut.push(Buffer.from(t.data));
        t.actualLength = t.data.length;
        return done();
      }
      if (t.type === 'bulk' && this.bulkIn.length > 0) {
        t.completeIn(this.bulkIn.shift()!);
        return done();
      }
      if (t.type === 'isochronous') {
        // Completes on the next turn, like a frame boundary, so a running stream doesn't spin.
        setImmediate(() => {
          for (const pkt of t.isoPackets!) {
            if (t.isIn) {
              pkt.actualLength = 100;
              t.data = t.data.length ? t.data : Buffer.alloc(t.length);
              t.data.fill(this.isoInCount++ & 0xff, pkt.offset, pkt.offset + 100);
            } else {
              this.isoOut.push(Buffer.from(t.data.subarray(pkt.offset, pkt.offset + pkt.length)));
              pkt.actualLength = pkt.length;
            }
          }
          t.actualLength = t.isoPackets!.reduce((n, p) => n + p.actualLength, 0);
          done();
        });
        return;
      }
      if (t.type === 'interrupt' && !t.isIn) {
        t.actualLength = t.data.length;
        return done();
      }
      this.waiting.add({ transfer: t, resolve: done });
    });
  }

  #control(t: Transfer, done: () => void): void {
    const s = t.setup!;
    if (s.bmRequestType === 0x80 && s.bRequest === 6 && s.wValue >> 8 === 1) {
      t.completeIn(this.descriptors.device.subarray(0, s.wLength));
    } else if (s.bmRequestType === 0x00 && s.bRequest === 9) {
      if (s.wValue > 1) t.fail(TransferStatus.Stall);
      else this.configuration = s.wValue;
    } else if (s.bmRequestType === 0x01 && s.bRequest === 11) {
      if (s.wValue > 2) t.fail(TransferStatus.Stall);
      else this.alt = s.wValue;
    } else if (s.bmRequestType === 0x80 && s.bRequest === 8) {
      t.completeIn(Buffer.from([this.configuration]));
    } else if (s.bmRequestType === 0x81 && s.bRequest === 10) {
      t.completeIn(Buffer.from([this.alt]));
    } else if (s.bmRequestType === 0xc0 && s.bRequest === 0x42) {
      this.waiting.add({ transfer: t, resolve: done }); // never answers by itself
      return;
    } else {
      t.fail(TransferStatus.Stall);
    }
    done();
  }

  /** Complete the oldest pending transfer on `endpoint` with IN data. */
  feed(endpoint: number, data: Buffer): boolean {
    for (const w of this.waiting) {
      if (w.transfer.endpoint !== endpoint) continue;
      this.waiting.delete(w);
      w.transfer.completeIn(data);
      w.resolve();
      return true;
    }
    return false;
  }

  pendingOn(endpoint: number): number {
    return [...this.waiting].filter((w) => w.transfer.endpoint === endpoint).length;
  }

  cancel(t: Transfer): void {
    for (const w of this.waiting) {
      if (w.transfer !== t) continue;
      this.waiting.delete(w);
      t.fail(TransferStatus.Cancelled);
      w.resolve();
    }
  }

  async reset(): Promise<void> {
    this.resets++;
    for (const w of [...this.waiting]) this.cancel(w.transfer);
    this.configuration = 0;
    this.alt = 0;
  }

  async close(): Promise<void> {}
}

/** A usb-guest written with the codec, like QEMU's usb-redir (caps 0xff + disconnect ack). */
class Guest {
  readonly neg = new Negotiation('guest', capsFrom([0, 1, 2, 3, 4, 5, 6, 7]));
  readonly packets: Packet[] = [];
  readonly socket: net.Socket;
  closed = false;
  #waiters: (() => void)[] = [];

  private constructor(socket: net.Socket) {
    this.socket = socket;
    const parser = new UsbredirParser(this.neg, (p) => {
      this.packets.push(p);
      this.#wake();
    });
    socket.on('data', (c: Buffer) => parser.push(c));
    socket.on('close', () => {
      this.closed = true;
      this.#wake();
    });
    socket.on('error', () => {});
  }

  static async connect(port: number): Promise<Guest> {
    const socket = net.connect({ host: '127.0.0.1', port });
    await new Promise((resolve) => socket.once('connect', resolve));
    socket.setNoDelay(true);
    return new Guest(socket);
  }

  #wake(): void {
    const w = this.#waiters;
    this.#waiters = [];
    for (const f of w) f();
  }

  send(p: Packet): void {
    for (const part of encodePacket(p, this.neg)) this.socket.write(part);
  }

  sendHello(version: string): void {
    this.send({ type: T.Hello, id: 0n, version, caps: [...this.neg.ourCaps] });
  }

  raw(bytes: Buffer): void {
    this.socket.write(bytes);
  }

  /** Next received packet (in order), failing after a timeout. */
  async next(timeoutMs = 2000): Promise<Packet> {
    const deadline = Date.now() + timeoutMs;
    while (this.packets.length === 0) {
      if (this.closed) throw new Error('connection closed while waiting for a packet');
      const left = deadline - Date.now();
      if (left <= 0) throw new Error('timed out waiting for a packet');
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.#waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
    return this.packets.shift()!;
  }

  async expect<K extends Packet['type']>(type: K): Promise<PacketOf<K>> {
    const p = await this.next();
    assert.equal(
      p.type,
      type,
      `expected type ${type}, got ${p.type} (${JSON.stringify(p, (_, v) => (typeof v === 'bigint' ? `${v}` : v))})`,
    );
    return p as PacketOf<K>;
  }

  async waitClosed(timeoutMs = 2000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!this.closed) {
      if (Date.now() > deadline) throw new Error('connection still open');
      await new Promise((r) => setTimeout(r, 10));
    }
  }

  /** Nothing more arrives within `ms`. */
  async quiet(ms = 100): Promise<void> {
    await new Promise((r) => setTimeout(r, ms));
    assert.deepEqual(this.packets, []);
  }

  /** Hello exchange and the device announcement; returns them. */
  async handshake() {
    // Like usbredirparser_init: our hello goes out at once, before the peer's is parsed.
    this.sendHello('test guest');
    const hello = await this.expect(T.Hello);
    const interfaceInfo = await this.expect(T.InterfaceInfo);
    const epInfo = await this.expect(T.EpInfo);
    const connect = await this.expect(T.DeviceConnect);
    return { hello, interfaceInfo, epInfo, connect };
  }

  close(): void {
    this.socket.destroy();
  }
}

const EMPTY = Buffer.alloc(0);

describe('usbredir host session over loopback', () => {
  let registry: DeviceRegistry;
  let device: FakeDevice;
  let entry: ExportedDevice;
  let listener: UsbredirListener;
  let port: number;

  before(async () => {
    registry = new DeviceRegistry();
    device = new FakeDevice();
    entry = registry.add(device);
    listener = new UsbredirListener(
      registry,
      entry,
      { host: '127.0.0.1', port: 0 },
      { drainTimeoutMs: 500, ackTimeoutMs: 1000 },
    );
    await listener.listen();
    port = listener.address!.port;
  });

  after(async () => {
    await listener.close();
  });

  /** A fresh device state and a connected, handshaken guest. */
  async function connected() {
    await waitFor(() => entry.owner === undefined);
    device.configuration = 1;
    device.alt = 0;
    device.bulkIn = [];
    device.bulkOut = [];
    const guest = await Guest.connect(port);
    const info = await guest.handshake();
    return { guest, ...info };
  }

  async function waitFor(cond: () => boolean, timeoutMs = 2000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!cond()) {
      if (Date.now() > deadline) throw new Error('condition not reached');
      await new Promise((r) => setTimeout(r, 5));
    }
  }

  it('announces hello, interface_info, ep_info and device_connect', async () => {
    const { guest, hello, interfaceInfo, epInfo, connect } = await connected();
    assert.match(hello.version, /^usbwire \d+\.\d+\.\d+/);
    assert.equal(hello.caps[0], 0xfe);
    assert.deepEqual(interfaceInfo.interfaces, [
      { number: 0, interfaceClass: 0xff, interfaceSubclass: 0, interfaceProtocol: 0 },
    ]);
    const ep = (i: number) => epInfo.endpoints[i]!;
    assert.deepEqual(ep(0), { type: 0, interval: 0, interface: 0, maxPacketSize: 0, maxStreams: 0 });
    assert.equal(ep(16).type, 0);
    assert.deepEqual(ep(17), { type: 2, interval: 0, interface: 0, maxPacketSize: 512, maxStreams: 0 });
    assert.deepEqual(ep(2), { type: 2, interval: 0, interface: 0, maxPacketSize: 512, maxStreams: 0 });
    assert.deepEqual(ep(19), { type: 3, interval: 4, interface: 0, maxPacketSize: 8, maxStreams: 0 });
    assert.equal(ep(4).type, 255);
    assert.deepEqual(connect, {
      type: T.DeviceConnect,
      id: 0n,
      speed: 2,
      deviceClass: 0,
      deviceSubclass: 0,
      deviceProtocol: 0,
      vendorId: 0x1234,
      productId: 0x5678,
      deviceVersionBcd: 0x0102,
    });
    assert.equal(guest.neg.layout.headerSize, 16);
    assert.equal(entry.owner?.startsWith('usbredir '), true);
    guest.close();
  });

  it('runs control, bulk OUT and bulk IN transfers', async () => {
    const { guest } = await connected();
    guest.send({
      type: T.ControlPacket,
      id: 1n,
      endpoint: 0x80,
      request: 6,
      requestType: 0x80,
      status: 0,
      value: 0x100,
      index: 0,
      length: 18,
      data: EMPTY,
    });
    const desc = await guest.expect(T.ControlPacket);
    assert.equal(desc.id, 1n);
    assert.equal(desc.status, 0);
    assert.equal(desc.length, 18);
    assert.deepEqual(desc.data, device.descriptors.device);
    assert.deepEqual([desc.request, desc.requestType, desc.value, desc.index], [6, 0x80, 0x100, 0]);

    // An unsupported request stalls.
    guest.send({
      type: T.ControlPacket,
      id: 2n,
      endpoint: 0x00,
      request: 0x99,
      requestType: 0x40,
      status: 0,
      value: 0,
      index: 0,
      length: 3,
      data: Buffer.from([1, 2, 3]),
    });
    const stalled = await guest.expect(T.ControlPacket);
    assert.deepEqual([stalled.id, stalled.status, stalled.length, stalled.data.length], [2n, 4, 0, 0]);

    const payload = Buffer.alloc(70000, 0xab); // > 64 KiB: needs 32bits_bulk_length
    guest.send({
      type: T.BulkPacket,
      id: 0x1_0000_0003n,
      endpoint: 0x02,
      status: 0,
      length: payload.length,
      streamId: 0,
      data: payload,
    });
    const out = await guest.expect(T.BulkPacket);
    assert.deepEqual([out.id, out.status, out.length, out.data.length], [0x1_0000_0003n, 0, 70000, 0]);
    assert.deepEqual(device.bulkOut, [payload]);

    device.bulkIn.push(Buffer.from('hello usbredir'));
    guest.send({ type: T.BulkPacket, id: 4n, endpoint: 0x81, status: 0, length: 512, streamId: 0, data: EMPTY });
    const inReply = await guest.expect(T.BulkPacket);
    assert.deepEqual([inReply.id, inReply.status, inReply.length], [4n, 0, 14]);
    assert.equal(inReply.data.toString(), 'hello usbredir');

    // Bulk on an interrupt endpoint is refused with inval.
    guest.send({ type: T.BulkPacket, id: 5n, endpoint: 0x83, status: 0, length: 8, streamId: 0, data: EMPTY });
    const inval = await guest.expect(T.BulkPacket);
    assert.deepEqual([inval.id, inval.status], [5n, 2]);
    guest.close();
  });

  it('streams interrupt IN with host ids while a guest request is pending', async () => {
    const { guest } = await connected();
    guest.send({ type: T.StartInterruptReceiving, id: 10n, endpoint: 0x83 });
    const started = await guest.expect(T.InterruptReceivingStatus);
    assert.deepEqual([started.id, started.status, started.endpoint], [10n, 0, 0x83]);
    await waitFor(() => device.pendingOn(0x83) === 5);

    // A bulk IN stays pending on the device meanwhile.
    guest.send({ type: T.BulkPacket, id: 11n, endpoint: 0x81, status: 0, length: 64, streamId: 0, data: EMPTY });
    await waitFor(() => device.pendingOn(0x81) === 1);

    device.feed(0x83, Buffer.from([1, 2, 3]));
    device.feed(0x83, Buffer.from([4]));
    const a = await guest.expect(T.InterruptPacket);
    const b = await guest.expect(T.InterruptPacket);
    assert.deepEqual([a.id, a.endpoint, a.status, [...a.data]], [0n, 0x83, 0, [1, 2, 3]]);
    assert.deepEqual([b.id, b.endpoint, b.status, [...b.data]], [1n, 0x83, 0, [4]]);
    await waitFor(() => device.pendingOn(0x83) === 5); // resubmitted

    device.feed(0x81, Buffer.from('late'));
    const bulk = await guest.expect(T.BulkPacket);
    assert.deepEqual([bulk.id, bulk.data.toString()], [11n, 'late']);

    guest.send({ type: T.StopInterruptReceiving, id: 12n, endpoint: 0x83 });
    const stopped = await guest.expect(T.InterruptReceivingStatus);
    assert.deepEqual([stopped.id, stopped.status], [12n, 0]);
    await waitFor(() => device.pendingOn(0x83) === 0);
    await guest.quiet(50);

    // Interrupt OUT is an ordinary request (endpoint exists in alt 1 only: inval here).
    guest.send({ type: T.InterruptPacket, id: 13n, endpoint: 0x04, status: 0, length: 2, data: Buffer.from([9, 9]) });
    const refused = await guest.expect(T.InterruptPacket);
    assert.deepEqual([refused.id, refused.status, refused.length], [13n, 2, 0]);
    guest.close();
  });

  it('answers a cancel exactly once: cancelled if pending, nothing if already done', async () => {
    const { guest } = await connected();
    guest.send({
      type: T.ControlPacket,
      id: 20n,
      endpoint: 0x80,
      request: 0x42,
      requestType: 0xc0,
      status: 0,
      value: 0,
      index: 0,
      length: 4,
      data: EMPTY,
    });
    await waitFor(() => device.pendingOn(0x80) === 1);
    guest.send({ type: T.CancelDataPacket, id: 20n });
    const cancelled = await guest.expect(T.ControlPacket);
    assert.deepEqual([cancelled.id, cancelled.status, cancelled.length, cancelled.data.length], [20n, 1, 0, 0]);
    assert.deepEqual([cancelled.request, cancelled.requestType], [0x42, 0xc0]);
    assert.equal(device.pendingOn(0x80), 0);

    device.bulkIn.push(Buffer.from('x'));
    guest.send({ type: T.BulkPacket, id: 21n, endpoint: 0x81, status: 0, length: 64, streamId: 0, data: EMPTY });
    const done = await guest.expect(T.BulkPacket);
    assert.deepEqual([done.id, done.status], [21n, 0]);
    guest.send({ type: T.CancelDataPacket, id: 21n });
    guest.send({ type: T.CancelDataPacket, id: 999n }); // unknown: ignored
    guest.send({ type: T.GetConfiguration, id: 22n }); // barrier
    const cfg = await guest.expect(T.ConfigurationStatus);
    assert.deepEqual([cfg.id, cfg.status, cfg.configuration], [22n, 0, 1]);
    await guest.quiet(50);

    // Cancel racing a completion that already happened on the device side.
    guest.send({ type: T.BulkPacket, id: 23n, endpoint: 0x81, status: 0, length: 64, streamId: 0, data: EMPTY });
    await waitFor(() => device.pendingOn(0x81) === 1);
    device.feed(0x81, Buffer.from('won'));
    guest.send({ type: T.CancelDataPacket, id: 23n });
    const raced = await guest.expect(T.BulkPacket);
    assert.equal(raced.id, 23n);
    await guest.quiet(100);
    guest.close();
  });

  it('set_configuration / set_alt_setting: fresh interface and ep info before the status', async () => {
    const { guest } = await connected();
    guest.send({ type: T.SetConfiguration, id: 30n, configuration: 1 });
    const same = await guest.expect(T.ConfigurationStatus);
    assert.deepEqual([same.id, same.status, same.configuration], [30n, 0, 1]);

    guest.send({ type: T.SetAltSetting, id: 31n, interface: 0, alt: 1 });
    const info = await guest.expect(T.InterfaceInfo);
    assert.equal(info.interfaces[0]!.interfaceSubclass, 1);
    const ep = await guest.expect(T.EpInfo);
    assert.deepEqual(ep.endpoints[4], { type: 3, interval: 4, interface: 0, maxPacketSize: 16, maxStreams: 0 });
    const alt = await guest.expect(T.AltSettingStatus);
    assert.deepEqual([alt.id, alt.status, alt.interface, alt.alt], [31n, 0, 0, 1]);

    guest.send({ type: T.InterruptPacket, id: 32n, endpoint: 0x04, status: 0, length: 2, data: Buffer.from([9, 9]) });
    const intOut = await guest.expect(T.InterruptPacket);
    assert.deepEqual([intOut.id, intOut.status, intOut.length, intOut.data.length], [32n, 0, 2, 0]);

    guest.send({ type: T.GetAltSetting, id: 33n, interface: 0 });
    const got = await guest.expect(T.AltSettingStatus);
    assert.deepEqual([got.status, got.alt], [0, 1]);
    guest.send({ type: T.GetAltSetting, id: 34n, interface: 7 });
    const bad = await guest.expect(T.AltSettingStatus);
    assert.deepEqual([bad.status, bad.alt], [2, 255]);

    guest.send({ type: T.SetAltSetting, id: 35n, interface: 0, alt: 5 });
    const stall = await guest.expect(T.AltSettingStatus);
    assert.deepEqual([stall.status, stall.alt], [4, 1]);

    guest.send({ type: T.SetConfiguration, id: 36n, configuration: 0 });
    const none = await guest.expect(T.InterfaceInfo);
    assert.deepEqual(none.interfaces, []);
    await guest.expect(T.EpInfo);
    const unconf = await guest.expect(T.ConfigurationStatus);
    assert.deepEqual([unconf.status, unconf.configuration], [0, 0]);

    guest.send({ type: T.AllocBulkStreams, id: 37n, endpoints: 1 << 17, noStreams: 4 });
    const streams = await guest.expect(T.BulkStreamsStatus);
    assert.deepEqual([streams.id, streams.status, streams.endpoints, streams.noStreams], [37n, 3, 1 << 17, 4]);
    guest.close();
  });

  it('runs iso IN and OUT streams', async () => {
    const { guest } = await connected();
    guest.send({ type: T.SetAltSetting, id: 40n, interface: 0, alt: 2 });
    await guest.expect(T.InterfaceInfo);
    const ep = await guest.expect(T.EpInfo);
    assert.deepEqual(ep.endpoints[16 + 5], { type: 1, interval: 1, interface: 0, maxPacketSize: 256, maxStreams: 0 });
    assert.equal((await guest.expect(T.AltSettingStatus)).status, 0);

    guest.send({ type: T.StartIsoStream, id: 41n, endpoint: 0x85, pktsPerUrb: 4, noUrbs: 2 });
    const started = await guest.expect(T.IsoStreamStatus);
    assert.deepEqual([started.id, started.status, started.endpoint], [41n, 0, 0x85]);
    for (let i = 0; i < 12; i++) {
      const pkt = await guest.expect(T.IsoPacket);
      assert.equal(pkt.id, BigInt(i), 'host ids count up from 0');
      assert.deepEqual([pkt.endpoint, pkt.status, pkt.length, pkt.data.length], [0x85, 0, 100, 100]);
      assert.equal(pkt.data[0], i & 0xff);
    }
    guest.send({ type: T.StopIsoStream, id: 42n, endpoint: 0x85 });
    for (;;) {
      const p = await guest.next();
      if (p.type === T.IsoPacket) continue;
      assert.equal(p.type, T.IsoStreamStatus);
      assert.deepEqual([p.id, (p as { status: number }).status], [42n, 0]);
      break;
    }

    guest.send({ type: T.StartIsoStream, id: 43n, endpoint: 0x06, pktsPerUrb: 4, noUrbs: 2 });
    assert.equal((await guest.expect(T.IsoStreamStatus)).status, 0);
    for (let i = 0; i < 8; i++) {
      guest.send({
        type: T.IsoPacket,
        id: BigInt(100 + i),
        endpoint: 0x06,
        status: 0,
        length: 50,
        data: Buffer.alloc(50, i),
      });
    }
    await waitFor(() => device.isoOut.length >= 8);
    assert.deepEqual(
      device.isoOut.map((b) => [b.length, b[0]]),
      [0, 1, 2, 3, 4, 5, 6, 7].map((i) => [50, i]),
    );
    guest.send({ type: T.StopIsoStream, id: 44n, endpoint: 0x06 });
    assert.equal((await guest.expect(T.IsoStreamStatus)).status, 0);
    guest.close();
  });

  it('buffered bulk receiving pushes buffered_bulk_packets', async () => {
    const { guest } = await connected();
    guest.send({
      type: T.StartBulkReceiving,
      id: 40n,
      streamId: 0,
      bytesPerTransfer: 1024,
      endpoint: 0x81,
      noTransfers: 3,
    });
    const st = await guest.expect(T.BulkReceivingStatus);
    assert.deepEqual([st.id, st.status], [40n, 0]);
    await waitFor(() => device.pendingOn(0x81) === 3);
    device.feed(0x81, Buffer.from('serial data'));
    const pkt = await guest.expect(T.BufferedBulkPacket);
    assert.deepEqual(
      [pkt.id, pkt.endpoint, pkt.status, pkt.length, pkt.data.toString()],
      [0n, 0x81, 0, 11, 'serial data'],
    );
    guest.send({
      type: T.StartBulkReceiving,
      id: 41n,
      streamId: 0,
      bytesPerTransfer: 1024,
      endpoint: 0x81,
      noTransfers: 3,
    });
    const dup = await guest.expect(T.BulkReceivingStatus);
    assert.equal(dup.status, 2); // already started
    guest.send({ type: T.StopBulkReceiving, id: 42n, streamId: 0, endpoint: 0x81 });
    const stop = await guest.expect(T.BulkReceivingStatus);
    assert.deepEqual([stop.id, stop.status], [42n, 0]);
    guest.close();
  });

  it('reset cancels pending requests and resets the device', async () => {
    const { guest } = await connected();
    const resets = device.resets;
    guest.send({ type: T.BulkPacket, id: 50n, endpoint: 0x81, status: 0, length: 64, streamId: 0, data: EMPTY });
    await waitFor(() => device.pendingOn(0x81) === 1);
    guest.send({ type: T.Reset, id: 0n });
    const cancelled = await guest.expect(T.BulkPacket);
    assert.deepEqual([cancelled.id, cancelled.status], [50n, 1]);
    await waitFor(() => device.resets === resets + 1);
    guest.close();
  });

  it('closes on data before hello, and keeps serving the next guest', async () => {
    await waitFor(() => entry.owner === undefined);
    const resets = device.resets;
    const guest = await Guest.connect(port);
    await guest.expect(T.Hello);
    const head = Buffer.alloc(12);
    head.writeUInt32LE(T.Reset, 0);
    guest.raw(head);
    await guest.waitClosed();
    await waitFor(() => entry.owner === undefined);
    assert.equal(device.resets, resets); // never claimed (no hello): the device was not touched

    const next = await connected();
    next.guest.send({ type: T.GetConfiguration, id: 1n });
    assert.equal((await next.guest.expect(T.ConfigurationStatus)).status, 0);
    next.guest.close();
  });

  it('ignores a second hello', async () => {
    const { guest } = await connected();
    // After both hellos the header is 16 bytes; a second hello comes with it.
    guest.send({ type: T.Hello, id: 0n, version: 'again', caps: [0] });
    guest.send({ type: T.GetConfiguration, id: 2n });
    const cfg = await guest.expect(T.ConfigurationStatus);
    assert.deepEqual([cfg.id, cfg.status], [2n, 0]);
    assert.equal(guest.closed, false);
    guest.close();
  });

  it('closes on unknown packet types and wrong directions', async () => {
    for (const type of [77, T.DeviceConnect]) {
      const { guest } = await connected();
      const head = Buffer.alloc(16);
      head.writeUInt32LE(type, 0);
      head.writeUInt32LE(type === T.DeviceConnect ? 10 : 0, 4);
      guest.raw(Buffer.concat([head, Buffer.alloc(type === T.DeviceConnect ? 10 : 0)]));
      await guest.waitClosed();
    }
  });

  it('closes a second guest while the device is in use', async () => {
    const { guest } = await connected();
    const second = await Guest.connect(port);
    second.sendHello('second guest');
    await second.waitClosed();
    // Our hello goes out first (as usbredirhost's does); the device is never announced.
    assert.deepEqual(
      second.packets.map((p) => p.type),
      [T.Hello],
    );
    guest.send({ type: T.GetConfiguration, id: 1n });
    await guest.expect(T.ConfigurationStatus);
    guest.close();
  });

  it("does not offer a device the guest's filter rejects, and releases it on filter_reject", async () => {
    await waitFor(() => entry.owner === undefined);
    device.configuration = 1; // the vendor rule needs no interfaces, but be realistic
    const guest = await Guest.connect(port);
    guest.sendHello('filtering guest');
    await guest.expect(T.Hello);
    guest.send({ type: T.FilterFilter, id: 0n, filter: '-1,0x1234,-1,-1,0|-1,-1,-1,-1,1' });
    await guest.quiet(150);
    await waitFor(() => entry.owner === undefined);
    guest.close();

    const { guest: g2 } = await connected();
    g2.send({ type: T.FilterReject, id: 0n });
    await waitFor(() => entry.owner === undefined);
    g2.send({ type: T.GetConfiguration, id: 3n });
    const st = await g2.expect(T.ConfigurationStatus);
    assert.equal(st.status, 3); // idle session: device is gone for it
    assert.equal(g2.closed, false);
    g2.close();
  });

  it('sends device_disconnect when the device goes away and waits for the ack', async () => {
    const { guest } = await connected();
    guest.send({ type: T.BulkPacket, id: 60n, endpoint: 0x81, status: 0, length: 64, streamId: 0, data: EMPTY });
    await waitFor(() => device.pendingOn(0x81) === 1);
    device.emit('disconnect');
    const cancelled = await guest.expect(T.BulkPacket);
    assert.deepEqual([cancelled.id, cancelled.status], [60n, 1]);
    await guest.expect(T.DeviceDisconnect);
    const acked = Date.now();
    guest.send({ type: T.DeviceDisconnectAck, id: 0n });
    await guest.waitClosed();
    assert.ok(Date.now() - acked < 250, 'closes on the ack, not on the ack timeout');
    await waitFor(() => entry.owner === undefined);
  });
});

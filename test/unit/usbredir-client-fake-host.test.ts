import assert from 'node:assert/strict';
import { once } from 'node:events';
import net from 'node:net';
import { afterEach, beforeEach, test } from 'node:test';
import { UsbredirClientConnection } from '../../src/client/usbredir/connection.js';
import type { RemoteUsbredirDevice } from '../../src/client/usbredir/remote-device.js';
import { EndpointKind, Status, PacketType as T } from '../../src/protocol/usbredir/constants.js';
import { TransferStatus } from '../../src/usb/status.js';
import { hasStreams } from '../../src/usb/streams.js';
import { Transfer } from '../../src/usb/transfer.js';
import { createLogger, setLogSink } from '../../src/util/log.js';
import {
  ALL_HOST_CAPS,
  DEFAULT_ENDPOINTS,
  deviceConnectPacket,
  type FakeEndpoint,
  FakeUsbredirHost,
} from '../support/fake-usbredir-host.js';

let lines: string[] = [];
beforeEach(() => {
  lines = [];
  setLogSink((l) => lines.push(l));
});
afterEach(() => setLogSink('silent'));

const warnings = () => lines.filter((l) => / (warn|error) /.test(l));

async function open(opts: { caps?: number[]; timeoutMs?: number } = {}) {
  const { host, port, accepted } = await FakeUsbredirHost.listen(opts.caps ?? ALL_HOST_CAPS);
  const socket = net.connect({ host: '127.0.0.1', port });
  await once(socket, 'connect');
  await accepted;
  const conn = new UsbredirClientConnection(socket, {
    where: 'usbredir fake',
    logger: createLogger('client'),
    timeoutMs: opts.timeoutMs ?? 2000,
  });
  conn.start();
  await host.next(T.Hello);
  return { host, conn };
}

async function openDevice(opts: { caps?: number[]; timeoutMs?: number; endpoints?: FakeEndpoint[] } = {}) {
  const { host, conn } = await open(opts);
  host.hello();
  host.serveDescriptors();
  const ready = once(conn, 'device') as Promise<[RemoteUsbredirDevice]>;
  host.connectDevice(opts.endpoints ?? DEFAULT_ENDPOINTS);
  const [dev] = await ready;
  const disconnected = once(dev, 'disconnect');
  return { host, conn, dev, disconnected };
}

function bulk(endpoint: number, length: number, init: Partial<ConstructorParameters<typeof Transfer>[0]> = {}) {
  const t = new Transfer({ type: 'bulk', endpoint, length, ...init });
  return t;
}

/** Submit and count completions: a transfer must resolve exactly once. */
function track(dev: RemoteUsbredirDevice, t: Transfer) {
  let count = 0;
  const done = dev.submit(t).then(() => {
    count++;
  });
  return { done, count: () => count };
}

test('hello: our caps as QEMU announces them without bulk_receiving, version "usbwire <version>"', async () => {
  const { host, conn } = await open();
  const hello = host.received.find((p) => p.type === T.Hello);
  assert.ok(hello && hello.type === T.Hello);
  assert.match(hello.version, /^usbwire \d+\.\d+\.\d+/);
  assert.equal(hello.caps[0], 0b0111_1111);
  await host.close();
  await conn.closed;
});

test('bulk IN and OUT longer than 65535 to a host without 32bits_bulk_length: split at a max-packet multiple, rejoined', async () => {
  const caps = ALL_HOST_CAPS.filter((c) => c !== 6);
  const { host, conn, dev } = await openDevice({ caps });
  const t = bulk(0x81, 100_000);
  const done = dev.submit(t);
  const first = await host.next(T.BulkPacket);
  assert.equal(first.length, 65024, '127 × 512');
  const a = Buffer.alloc(65024, 1);
  host.send({ ...first, length: a.length, data: a });
  const second = await host.next(T.BulkPacket);
  assert.equal(second.length, 100_000 - 65024);
  assert.notEqual(second.id, first.id);
  const b = Buffer.alloc(1000, 2);
  host.send({ ...second, length: b.length, data: b });
  await done;
  assert.equal(t.status, TransferStatus.Ok);
  assert.equal(t.actualLength, 66024, 'a short piece ends the transfer');
  assert.deepEqual(t.data, Buffer.concat([a, b]));

  const data = Buffer.alloc(70_000, 7);
  const out = bulk(0x02, data.length, { data });
  const outDone = dev.submit(out);
  const o1 = await host.next(T.BulkPacket);
  assert.deepEqual([o1.length, o1.data.length], [65024, 65024]);
  host.send({ ...o1, length: 65024, data: Buffer.alloc(0) });
  const o2 = await host.next(T.BulkPacket);
  assert.deepEqual([o2.length, o2.data.length], [70_000 - 65024, 70_000 - 65024]);
  host.send({ ...o2, data: Buffer.alloc(0) });
  await outDone;
  assert.deepEqual([out.status, out.actualLength], [TransferStatus.Ok, 70_000]);
  await host.close();
  await conn.closed;
});

test('zero-packet flag: a bulk OUT of a multiple of max packet size is followed by a zero-length bulk_packet', async () => {
  const { host, conn, dev } = await openDevice();
  const out = bulk(0x02, 1024, { data: Buffer.alloc(1024, 3), flags: { zeroPacket: true } });
  const done = dev.submit(out);
  const p1 = await host.next(T.BulkPacket);
  assert.equal(p1.length, 1024);
  host.send({ ...p1, data: Buffer.alloc(0) });
  const zlp = await host.next(T.BulkPacket);
  assert.deepEqual([zlp.length, zlp.endpoint], [0, 0x02]);
  host.send({ ...zlp, data: Buffer.alloc(0) });
  await done;
  assert.deepEqual([out.status, out.actualLength], [TransferStatus.Ok, 1024]);
  // Not a multiple: no zero-length packet.
  const odd = bulk(0x02, 100, { data: Buffer.alloc(100), flags: { zeroPacket: true } });
  const oddDone = dev.submit(odd);
  const p2 = await host.next(T.BulkPacket);
  host.send({ ...p2, data: Buffer.alloc(0) });
  await oddDone;
  assert.equal(odd.status, TransferStatus.Ok);
  const probe = bulk(0x81, 8);
  const probeDone = dev.submit(probe);
  const p3 = await host.next(T.BulkPacket);
  assert.equal(p3.endpoint, 0x81, 'the next packet is the probe, not a zero-length OUT');
  host.send({ ...p3, length: 0, data: Buffer.alloc(0) });
  await probeDone;
  await host.close();
  await conn.closed;
});

test('short-not-ok: a short IN completes ShortPacket with its data; statuses map (stall, babble)', async () => {
  const { host, conn, dev } = await openDevice();
  const t = bulk(0x81, 512, { flags: { shortNotOk: true } });
  const done = dev.submit(t);
  const p = await host.next(T.BulkPacket);
  host.send({ ...p, length: 100, data: Buffer.alloc(100, 9) });
  await done;
  assert.deepEqual([t.status, t.actualLength], [TransferStatus.ShortPacket, 100]);
  const stall = bulk(0x81, 512);
  const stallDone = dev.submit(stall);
  const s = await host.next(T.BulkPacket);
  host.send({ ...s, status: Status.Stall, length: 0, data: Buffer.alloc(0) });
  await stallDone;
  assert.equal(stall.status, TransferStatus.Stall);
  await host.close();
  await conn.closed;
});

test('cancel while pending: cancel_data_packet with the id, the cancelled reply completes it once', async () => {
  const { host, conn, dev } = await openDevice();
  const t = bulk(0x81, 512);
  const tr = track(dev, t);
  const req = await host.next(T.BulkPacket);
  dev.cancel(t);
  dev.cancel(t);
  const cancel = await host.next(T.CancelDataPacket);
  assert.equal(cancel.id, req.id);
  host.send({ ...req, status: Status.Cancelled, length: 0, data: Buffer.alloc(0) });
  await tr.done;
  assert.equal(t.status, TransferStatus.Cancelled);
  assert.equal(tr.count(), 1);
  assert.equal(host.received.filter((p) => p.type === T.CancelDataPacket).length, 1, 'one cancel for two calls');
  await host.close();
  await conn.closed;
});

test('cancel racing a completion: the real completion wins, once; a later cancel does nothing', async () => {
  const { host, conn, dev } = await openDevice();
  const t = bulk(0x81, 512);
  const tr = track(dev, t);
  const req = await host.next(T.BulkPacket);
  dev.cancel(t);
  await host.next(T.CancelDataPacket);
  // The host had completed it already: the completion is its one reply.
  host.send({ ...req, length: 4, data: Buffer.from([1, 2, 3, 4]) });
  await tr.done;
  assert.deepEqual([t.status, [...t.data]], [TransferStatus.Ok, [1, 2, 3, 4]]);
  dev.cancel(t);
  // The connection is still good.
  const next = bulk(0x81, 8);
  const nextDone = dev.submit(next);
  const p = await host.next(T.BulkPacket);
  host.send({ ...p, length: 1, data: Buffer.from([5]) });
  await nextDone;
  assert.equal(next.status, TransferStatus.Ok);
  assert.equal(tr.count(), 1);
  assert.equal(host.received.filter((x) => x.type === T.CancelDataPacket).length, 1);
  assert.deepEqual(warnings(), []);
  await host.close();
  await conn.closed;
});

test('SET_ADDRESS stays local; SET_CONFIGURATION waits for configuration_status and takes the ep_info sent before it', async () => {
  const { host, conn, dev } = await openDevice();
  const addr = new Transfer({
    type: 'control',
    endpoint: 0,
    setup: { bmRequestType: 0, bRequest: 5, wValue: 3, wIndex: 0, wLength: 0 },
  });
  await dev.submit(addr);
  assert.equal(addr.status, TransferStatus.Ok);
  const set = new Transfer({
    type: 'control',
    endpoint: 0,
    setup: { bmRequestType: 0, bRequest: 9, wValue: 2, wIndex: 0, wLength: 0 },
  });
  const done = dev.submit(set);
  const req = await host.next(T.SetConfiguration);
  assert.equal(req.configuration, 2);
  assert.ok(!host.received.some((p) => p.type === T.ControlPacket && p.request === 5), 'SET_ADDRESS never forwarded');
  // New layout: an interrupt OUT 0x04 instead of the bulk endpoints.
  const eps: FakeEndpoint[] = [{ address: 0x04, type: EndpointKind.Interrupt, maxPacketSize: 16, interval: 1 }];
  const { epInfo } = await import('../support/fake-usbredir-host.js');
  host.send(
    { type: T.EpInfo, id: 0n, endpoints: epInfo(eps) },
    { type: T.ConfigurationStatus, id: req.id, status: 0, configuration: 2 },
  );
  await done;
  assert.equal(set.status, TransferStatus.Ok);
  assert.equal(dev.configuration, 2);
  const gone = bulk(0x81, 8);
  await dev.submit(gone);
  assert.equal(gone.status, TransferStatus.Invalid, 'bulk 0x81 is not in the new layout');
  const intOut = new Transfer({ type: 'interrupt', endpoint: 0x04, data: Buffer.from([1, 2]) });
  const intDone = dev.submit(intOut);
  const ip = await host.next(T.InterruptPacket);
  assert.deepEqual([ip.endpoint, [...ip.data]], [0x04, [1, 2]]);
  host.send({ ...ip, data: Buffer.alloc(0) });
  await intDone;
  assert.deepEqual([intOut.status, intOut.actualLength], [TransferStatus.Ok, 2]);
  // A failed SET_INTERFACE keeps the alternate setting.
  const setIf = new Transfer({
    type: 'control',
    endpoint: 0,
    setup: { bmRequestType: 1, bRequest: 11, wValue: 1, wIndex: 0, wLength: 0 },
  });
  const ifDone = dev.submit(setIf);
  const alt = await host.next(T.SetAltSetting);
  host.send({ type: T.AltSettingStatus, id: alt.id, status: Status.Stall, interface: 0, alt: 0 });
  await ifDone;
  assert.deepEqual([setIf.status, dev.alternateSetting(0)], [TransferStatus.Stall, 0]);
  await host.close();
  await conn.closed;
});

test('device_disconnect: pending transfers end NoDevice, ack sent, then a new device on the same connection', async () => {
  const { host, conn, dev, disconnected } = await openDevice();
  const t = bulk(0x81, 512);
  const tr = track(dev, t);
  await host.next(T.BulkPacket);
  host.send({ type: T.DeviceDisconnect, id: 0n });
  await disconnected;
  await tr.done;
  assert.equal(t.status, TransferStatus.NoDevice);
  await host.next(T.DeviceDisconnectAck);
  const after = bulk(0x81, 8);
  await dev.submit(after);
  assert.equal(after.status, TransferStatus.NoDevice);
  const again = once(conn, 'device') as Promise<[RemoteUsbredirDevice]>;
  host.connectDevice();
  const [dev2] = await again;
  assert.notEqual(dev2, dev);
  const t2 = bulk(0x81, 8);
  const t2Done = dev2.submit(t2);
  const p = await host.next(T.BulkPacket);
  host.send({ ...p, length: 2, data: Buffer.from([8, 9]) });
  await t2Done;
  assert.deepEqual([...t2.data], [8, 9]);
  const closing = once(dev2, 'disconnect');
  await host.close();
  await closing;
  await conn.closed;
});

test('bulk streams: alloc/free with the endpoint mask, stream ids carried in bulk packets, refusal reported', async () => {
  const endpoints: FakeEndpoint[] = [
    { address: 0x81, type: EndpointKind.Bulk, maxPacketSize: 1024, maxStreams: 16 },
    { address: 0x02, type: EndpointKind.Bulk, maxPacketSize: 1024, maxStreams: 16 },
  ];
  const { host, conn, dev } = await openDevice({ endpoints });
  assert.equal(dev.streamsSupported, true);
  assert.equal(dev.maxStreams(0x81), 16);
  if (!hasStreams(dev)) throw new Error('bulk_streams negotiated but no streams methods');
  const alloc = dev.allocStreams([0x81, 0x02], 8);
  const a = await host.next(T.AllocBulkStreams);
  assert.deepEqual([a.endpoints, a.noStreams], [(1 << 17) | (1 << 2), 8]);
  host.send({ type: T.BulkStreamsStatus, id: a.id, endpoints: a.endpoints, noStreams: 8, status: 0 });
  assert.equal(await alloc, 8, 'every stream asked for');
  const t = bulk(0x81, 1024, { streamId: 3 });
  const done = dev.submit(t);
  const p = await host.next(T.BulkPacket);
  assert.equal(p.streamId, 3);
  host.send({ ...p, length: 1, data: Buffer.from([1]) });
  await done;
  const free = dev.freeStreams([0x81, 0x02]);
  const f = await host.next(T.FreeBulkStreams);
  host.send({ type: T.BulkStreamsStatus, id: f.id, endpoints: f.endpoints, noStreams: 0, status: 0 });
  assert.equal(await free, TransferStatus.Ok);
  const refused = dev.allocStreams([0x81], 4);
  const r = await host.next(T.AllocBulkStreams);
  host.send({ type: T.BulkStreamsStatus, id: r.id, endpoints: r.endpoints, noStreams: 4, status: Status.IoError });
  assert.equal(await refused, TransferStatus.IoError);
  assert.equal(await dev.allocStreams([0x81], 32), TransferStatus.Invalid, 'more than max_streams');
  await host.close();
  await conn.closed;
});

test('bulk streams need the cap on both sides', async () => {
  const { host, conn, dev } = await openDevice({ caps: ALL_HOST_CAPS.filter((c) => c !== 0) });
  assert.equal(dev.streamsSupported, false);
  assert.equal(hasStreams(dev), false, 'no streams methods: a re-export does not announce bulk_streams');
  const t = bulk(0x81, 8, { streamId: 1 });
  await dev.submit(t);
  assert.equal(t.status, TransferStatus.Invalid);
  await host.close();
  await conn.closed;
});

test('interrupt IN: start on first use, packets buffered, the oldest dropped beyond the limit (logged once)', async () => {
  const { host, conn, dev } = await openDevice();
  const first = new Transfer({ type: 'interrupt', endpoint: 0x83, length: 8 });
  const firstDone = dev.submit(first);
  const start = await host.next(T.StartInterruptReceiving);
  assert.equal(start.endpoint, 0x83);
  host.send({ type: T.InterruptReceivingStatus, id: 0n, status: 0, endpoint: 0x83 });
  for (let i = 0; i < 1500; i++) {
    const data = Buffer.alloc(2);
    data.writeUInt16LE(i);
    host.send({ type: T.InterruptPacket, id: BigInt(i), endpoint: 0x83, status: 0, length: 2, data });
  }
  await firstDone;
  assert.equal(first.data.readUInt16LE(0), 0);
  // Wait until the flood is in, then read: 1000 kept, 1..499 dropped.
  await new Promise((r) => setTimeout(r, 100));
  const next = new Transfer({ type: 'interrupt', endpoint: 0x83, length: 8 });
  await dev.submit(next);
  assert.equal(next.data.readUInt16LE(0), 500);
  assert.equal(warnings().filter((l) => l.includes('dropping the oldest')).length, 1);
  // An unsolicited stall status ends the stream: the waiting transfer gets it, the next one restarts.
  for (let i = 0; i < 999; i++) await dev.submit(new Transfer({ type: 'interrupt', endpoint: 0x83, length: 8 }));
  const waiting = new Transfer({ type: 'interrupt', endpoint: 0x83, length: 8 });
  const waitingDone = dev.submit(waiting);
  host.send({ type: T.InterruptReceivingStatus, id: 0n, status: Status.Stall, endpoint: 0x83 });
  await waitingDone;
  assert.equal(waiting.status, TransferStatus.Stall);
  const restart = new Transfer({ type: 'interrupt', endpoint: 0x83, length: 8 });
  const restartDone = dev.submit(restart);
  await host.next(T.StartInterruptReceiving);
  host.send({ type: T.InterruptPacket, id: 0n, endpoint: 0x83, status: 0, length: 1, data: Buffer.from([42]) });
  await restartDone;
  assert.deepEqual([...restart.data], [42]);
  await host.close();
  await conn.closed;
});

/** Each bad-input case: the pending transfer ends, the device disconnects, the connection closes, one reason logged. */
async function badInput(misbehave: (host: FakeUsbredirHost, req: bigint) => void, reason: RegExp) {
  const { host, conn, dev, disconnected } = await openDevice({ timeoutMs: 300 });
  const t = bulk(0x81, 512);
  const tr = track(dev, t);
  try {
    const req = await host.next(T.BulkPacket);
    misbehave(host, req.id);
    await disconnected;
    await tr.done;
    await conn.closed;
    assert.equal(t.status, TransferStatus.NoDevice);
    assert.equal(tr.count(), 1);
    const closes = lines.filter((l) => l.includes('closing the connection'));
    assert.equal(closes.length, 1, closes.join('\n'));
    assert.match(closes[0]!, reason);
  } finally {
    await host.close();
  }
}

test('bad input: garbage bytes', async () => {
  await badInput((host) => host.raw(Buffer.from('this is not usbredir at all, not even close')), /unknown-type|packet/);
});

test('bad input: a length that lies (beyond the 128 MiB limit)', async () => {
  const head = Buffer.alloc(16);
  head.writeUInt32LE(T.BulkPacket, 0);
  head.writeUInt32LE(0xfffffff0, 4);
  await badInput((host) => host.raw(head), /packet-too-long/);
});

test('bad input: data length that disagrees with the header length', async () => {
  await badInput((host, id) => {
    // bulk_packet IN reply: header length 10 + 100 data bytes, but bulk length says 200.
    const b = Buffer.alloc(16 + 10 + 100);
    b.writeUInt32LE(T.BulkPacket, 0);
    b.writeUInt32LE(110, 4);
    b.writeBigUInt64LE(id, 8);
    b[16] = 0x81;
    b.writeUInt16LE(200, 18);
    host.raw(b);
  }, /data-length-mismatch/);
});

test('bad input: a reply for an id the client never sent', async () => {
  await badInput(
    (host, id) =>
      host.send({
        type: T.BulkPacket,
        id: id + 1000n,
        endpoint: 0x81,
        status: 0,
        length: 1,
        streamId: 0,
        data: Buffer.from([1]),
      }),
    /bulk_packet id \d+ with 1 bytes answers nothing we sent/,
  );
});

test('bad input: a reply with more data than its request asked for is refused before it is buffered', async () => {
  await badInput(
    (host, id) =>
      host.send({
        type: T.BulkPacket,
        id,
        endpoint: 0x81,
        status: 0,
        length: 8 << 20,
        streamId: 0,
        data: Buffer.alloc(8 << 20),
      }),
    /bulk_packet id \d+ carries 8388608 bytes, at most \d+ expected/,
  );
});

test('bad input: a reply of the wrong kind for a pending id', async () => {
  await badInput(
    (host, id) => host.send({ type: T.ConfigurationStatus, id, status: 0, configuration: 1 }),
    /not a pending state request/,
  );
});

test('bad input: a host that never answers a cancel (timeout closes the connection)', async () => {
  lines = [];
  const { host, conn, dev, disconnected } = await openDevice({ timeoutMs: 200 });
  const t = bulk(0x81, 512);
  const tr = track(dev, t);
  await host.next(T.BulkPacket);
  dev.cancel(t);
  await host.next(T.CancelDataPacket);
  await disconnected;
  await tr.done;
  await conn.closed;
  assert.equal(t.status, TransferStatus.NoDevice);
  assert.match(warnings().join('\n'), /no reply to cancelled bulk ep1 IN/);
  await host.close();
});

test('bad input: packets before hello', async () => {
  const { host, conn } = await open();
  host.send({ type: T.DeviceDisconnect, id: 0n });
  await conn.closed;
  assert.match(warnings().join('\n'), /device_disconnect before hello/);
  await host.close();
});

test('bad input: a host that never says hello', async () => {
  const { host, conn } = await open({ timeoutMs: 150 });
  await conn.closed;
  assert.match(warnings().join('\n'), /no hello within 150 ms/);
  await host.close();
});

test('bad input: device_connect without interface_info / ep_info', async () => {
  const { host, conn } = await open();
  host.hello();
  host.send(deviceConnectPacket(1, 2));
  await conn.closed;
  assert.match(warnings().join('\n'), /device_connect before interface_info and ep_info/);
  await host.close();
});

test('bad input: a device descriptor that is garbage: no device, connection closed', async () => {
  const { host, conn } = await open();
  let devices = 0;
  conn.on('device', () => devices++);
  host.hello();
  host.serveDescriptors(Buffer.from([5, 1, 0, 2, 0]));
  host.connectDevice();
  await conn.closed;
  assert.equal(devices, 0);
  assert.match(warnings().join('\n'), /device descriptor has 5 bytes/);
  await host.close();
});

test('bad input: the host closes mid-transfer', async () => {
  const { host, conn, dev, disconnected } = await openDevice();
  const t = bulk(0x81, 512);
  const tr = track(dev, t);
  await host.next(T.BulkPacket);
  host.socket.destroy();
  await disconnected;
  await tr.done;
  await conn.closed;
  assert.equal(t.status, TransferStatus.NoDevice);
  await host.close();
});

function isoIn(endpoint: number, packets: number, size: number): Transfer {
  const isoPackets = Array.from({ length: packets }, (_, i) => ({
    offset: i * size,
    length: size,
    actualLength: 0,
    status: TransferStatus.Ok,
  }));
  return new Transfer({ type: 'isochronous', endpoint, length: packets * size, isoPackets });
}

const ISO_ENDPOINTS: FakeEndpoint[] = [
  { address: 0x85, type: EndpointKind.Iso, maxPacketSize: 192, interval: 4 },
  { address: 0x06, type: EndpointKind.Iso, maxPacketSize: 192, interval: 4 },
];

function pushIso(host: FakeUsbredirHost, from: number, count: number): void {
  for (let i = from; i < from + count; i++) {
    const data = Buffer.alloc(4);
    data.writeUInt32LE(i);
    host.send({ type: T.IsoPacket, id: BigInt(i), endpoint: 0x85, status: 0, length: 4, data });
  }
}

const packetIds = (t: Transfer) => t.isoPackets!.map((p) => (p.actualLength ? t.data.readUInt32LE(p.offset) : -1));

test('iso IN: stream parameters as redirect.c, ~60 ms jitter buffer, underrun gives empty packets, overflow bounded, stall restarts', async () => {
  const { host, conn, dev, disconnected } = await openDevice({ endpoints: ISO_ENDPOINTS });
  const t1 = isoIn(0x85, 4, 192);
  const t1Done = dev.submit(t1);
  const start = await host.next(T.StartIsoStream);
  // bInterval 4 at high speed = 1 ms: 60 packets make 60 ms, 10 per host transfer, 6 transfers.
  assert.deepEqual([start.endpoint, start.pktsPerUrb, start.noUrbs], [0x85, 10, 6]);
  host.send({ type: T.IsoStreamStatus, id: 0n, status: 0, endpoint: 0x85 });
  pushIso(host, 0, 59);
  await new Promise((r) => setTimeout(r, 20));
  assert.equal(t1.actualLength, 0, 'not before the buffer holds the target');
  pushIso(host, 59, 1);
  await t1Done;
  assert.deepEqual(packetIds(t1), [0, 1, 2, 3]);
  assert.equal(t1.actualLength, 16);
  const t2 = isoIn(0x85, 56, 192);
  await dev.submit(t2);
  assert.deepEqual(
    packetIds(t2),
    Array.from({ length: 56 }, (_, i) => 4 + i),
  );
  // Underrun: nothing buffered, the transfer ends at its service time with empty packets.
  const t3 = isoIn(0x85, 4, 192);
  const before = performance.now();
  await dev.submit(t3);
  assert.ok(performance.now() - before >= 50);
  assert.deepEqual([t3.status, t3.actualLength, packetIds(t3)], [TransferStatus.Ok, 0, [-1, -1, -1, -1]]);
  // Overflow: 1000 packets pushed, nobody reading: as QEMU, beyond twice the target (120) new
  // packets are dropped until the buffer is back at the target.
  pushIso(host, 1000, 1000);
  await new Promise((r) => setTimeout(r, 100));
  const t4 = isoIn(0x85, 200, 192);
  await dev.submit(t4);
  const kept = packetIds(t4).filter((id) => id >= 0);
  assert.deepEqual(
    kept,
    Array.from({ length: 120 }, (_, i) => 1000 + i),
  );
  // The host stops the stream (stall): the waiting transfer gets an error, the next one restarts it.
  const parked = isoIn(0x85, 200, 192);
  const parkedDone = dev.submit(parked);
  host.send({ type: T.IsoStreamStatus, id: 0n, status: Status.Stall, endpoint: 0x85 });
  await parkedDone;
  assert.equal(parked.status, TransferStatus.IoError);
  const t5 = isoIn(0x85, 1, 192);
  const t5Done = dev.submit(t5);
  await host.next(T.StartIsoStream);
  // Disconnect: the waiting iso transfer ends NoDevice.
  host.send({ type: T.DeviceDisconnect, id: 0n });
  await disconnected;
  await t5Done;
  assert.equal(t5.status, TransferStatus.NoDevice);
  await host.close();
  await conn.closed;
});

test('iso OUT: start_iso_stream with twice the transfers, packets sent as they come, completed at stream pace', async () => {
  const { host, conn, dev } = await openDevice({ endpoints: ISO_ENDPOINTS });
  const data = Buffer.alloc(3 * 192);
  for (let i = 0; i < data.length; i++) data[i] = i & 0xff;
  const isoPackets = [0, 1, 2].map((i) => ({
    offset: i * 192,
    length: 192,
    actualLength: 0,
    status: TransferStatus.Ok,
  }));
  const t = new Transfer({ type: 'isochronous', endpoint: 0x06, data, isoPackets });
  await dev.submit(t);
  assert.deepEqual([t.status, t.actualLength], [TransferStatus.Ok, 576]);
  const start = await host.next(T.StartIsoStream);
  assert.deepEqual([start.endpoint, start.pktsPerUrb, start.noUrbs], [0x06, 10, 12]);
  for (let i = 0; i < 3; i++) {
    const p = await host.next(T.IsoPacket);
    assert.deepEqual(p.data, data.subarray(i * 192, (i + 1) * 192));
  }
  // 200 packets of 1 ms each: beyond 60 ms ahead of the stream, completions wait.
  const started = performance.now();
  for (let i = 0; i < 20; i++) {
    const pk = Array.from({ length: 10 }, (_, j) => ({
      offset: j * 4,
      length: 4,
      actualLength: 0,
      status: TransferStatus.Ok,
    }));
    await dev.submit(new Transfer({ type: 'isochronous', endpoint: 0x06, data: Buffer.alloc(40), isoPackets: pk }));
  }
  const ms = performance.now() - started;
  assert.ok(ms >= 100, `203 packets at 1 ms with 60 ms ahead take over 100 ms, took ${ms.toFixed(0)}`);
  await host.close();
  await conn.closed;
});

test('a host that unredirects reports cancelled for what we did not cancel: an I/O error; in-flight transfers are capped', async () => {
  const { host, conn, dev } = await openDevice();
  const t = bulk(0x81, 8);
  const done = dev.submit(t);
  const p = await host.next(T.BulkPacket);
  host.send({ ...p, status: Status.Cancelled, length: 0, data: Buffer.alloc(0) });
  await done;
  assert.equal(t.status, TransferStatus.IoError);
  const many = Array.from({ length: 4097 }, () => bulk(0x81, 8));
  const all = many.map((x) => dev.submit(x));
  await all[4096];
  assert.equal(many[4096]!.status, TransferStatus.IoError);
  assert.equal(dev.inFlight, 4096);
  // Transfers parked on an interrupt stream count too.
  for (let i = 0; i < 100; i++) {
    host.send({ ...(await host.next(T.BulkPacket)), status: Status.Stall, length: 0, data: Buffer.alloc(0) });
  }
  await Promise.all(all.slice(0, 100));
  const parked = Array.from({ length: 101 }, () => new Transfer({ type: 'interrupt', endpoint: 0x83, length: 8 }));
  const parkedDone = parked.map((x) => dev.submit(x));
  await parkedDone[100];
  assert.equal(parked[100]!.status, TransferStatus.IoError);
  assert.equal(dev.inFlight, 4096);
  await host.close();
  await Promise.all([...all, ...parkedDone]);
  assert.ok(many.slice(100, 4096).every((x) => x.status === TransferStatus.NoDevice));
  assert.ok(parked.slice(0, 100).every((x) => x.status === TransferStatus.NoDevice));
  await conn.closed;
});

test('iso stream parameters follow redirect.c: ~100 host completions a second, 60 ms of packets, OUT doubled, at most 32 × 16', async () => {
  const { isoParams } = await import('../../src/client/usbredir/iso.js');
  const pick = (p: ReturnType<typeof isoParams>) => [p.target, p.pktsPerUrb, p.noUrbs];
  assert.deepEqual(pick(isoParams('high', 1, true)), [480, 32, 15]);
  assert.deepEqual(pick(isoParams('high', 1, false)), [480, 32, 16]);
  assert.deepEqual(pick(isoParams('full', 1, true)), [60, 10, 6]);
  assert.deepEqual(pick(isoParams('full', 1, false)), [60, 10, 12]);
  // bInterval 7 at high speed: one packet every 8 ms, 7 of them make the 60 ms.
  assert.deepEqual(pick(isoParams('high', 7, true)), [7, 1, 7]);
});

test('cancel between two pieces of a split transfer: the rest is not sent, it ends Cancelled with the first piece', async () => {
  const { host, conn, dev } = await openDevice({ caps: ALL_HOST_CAPS.filter((c) => c !== 6) });
  const t = bulk(0x81, 100_000);
  const tr = track(dev, t);
  const first = await host.next(T.BulkPacket);
  dev.cancel(t);
  const cancel = await host.next(T.CancelDataPacket);
  assert.equal(cancel.id, first.id);
  // The first piece had completed: its reply wins the race, and no second piece follows.
  host.send({ ...first, length: 65024, data: Buffer.alloc(65024, 5) });
  await tr.done;
  assert.deepEqual([t.status, t.actualLength, tr.count()], [TransferStatus.Cancelled, 65024, 1]);
  const probe = bulk(0x81, 8);
  const probeDone = dev.submit(probe);
  const p = await host.next(T.BulkPacket);
  assert.equal(p.length, 8, 'the next packet is the probe, not a second piece');
  host.send({ ...p, length: 0, data: Buffer.alloc(0) });
  await probeDone;
  await host.close();
  await conn.closed;
});

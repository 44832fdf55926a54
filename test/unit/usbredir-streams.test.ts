import assert from 'node:assert/strict';
import { once } from 'node:events';
import net from 'node:net';
import { test } from 'node:test';
import { XferStatus } from '../../src/devices/libusb/libusb-ffi.js';
import { Cap, Status, PacketType as T } from '../../src/protocol/usbredir/constants.js';
import type { Packet, PacketOf } from '../../src/protocol/usbredir/packets.js';
import { UsbredirHostSession } from '../../src/server/usbredir/session.js';
import type { UsbDevice } from '../../src/usb/device.js';
import { TransferStatus } from '../../src/usb/status.js';
import { hasStreams } from '../../src/usb/streams.js';
import { Transfer } from '../../src/usb/transfer.js';
import { createLogger, setLogSink } from '../../src/util/log.js';
import { openSuperSpeedFake } from '../support/libusb-ss-device.js';
import { ParkingDevice } from '../support/parking-device.js';
import { until } from '../support/usbip-wire.js';
import { importOverUsbredir } from '../support/usbredir-client-pair.js';
import { UsbredirWire } from '../support/usbredir-wire.js';

setLogSink(process.env.STREAMS_DEBUG ? (l) => console.error(l) : 'silent');

const tick = () => new Promise((r) => setImmediate(r));
const EMPTY = Buffer.alloc(0);

function bulk(endpoint: number, streamId: number, length = 64): Transfer {
  const data = endpoint & 0x80 ? undefined : Buffer.alloc(length, streamId);
  return new Transfer({ type: 'bulk', endpoint, length, streamId, data });
}

test('bulk streams end to end: our client allocates through our server onto a libusb device, streams complete out of order, free cancels', async () => {
  const { lib, dev } = await openSuperSpeedFake();
  const pair = await importOverUsbredir(dev);
  const remote = pair.remote;
  // Control transfers (the client reading descriptors) are at libusb too: count the others.
  const data = () => lib.submitted.filter((s) => s.type !== 0);
  if (!hasStreams(remote)) throw new Error('the server did not announce bulk_streams for a device with streams');
  assert.equal(remote.maxStreams(0x83), 16, 'ep_info max_streams from the companion descriptor');
  assert.equal(remote.maxStreams(0x01), 0);

  assert.equal(await remote.allocStreams([0x82, 0x83, 0x04], 16), 16);
  assert.deepEqual(
    lib.calls.filter((c) => c.startsWith('allocStreams')),
    ['allocStreams 16 4,82,83'],
  );

  // Three reads on three streams; the device answers the last one first.
  const reads = [1, 2, 3].map((s) => bulk(0x83, s));
  const order: number[] = [];
  const readsDone = reads.map((t) => remote.submit(t).then(() => order.push(t.streamId)));
  await until(() => data().length === 3, 'three stream transfers at libusb');
  const byStream = (id: number) => data().find((s) => lib.streamIds.get(s.pointer) === id)!;
  for (const id of [3, 1, 2]) lib.complete(byStream(id), XferStatus.Completed, id, Buffer.alloc(id, 0x30 + id));
  await Promise.all(readsDone);
  assert.deepEqual(order, [3, 1, 2], 'each stream completes on its own');
  for (const t of reads) assert.deepEqual([...t.data], Array(t.streamId).fill(0x30 + t.streamId));

  // Without streams (the command pipe) replies keep the request order even if the device does not.
  const writes = [bulk(0x01, 0, 32), bulk(0x01, 0, 16)];
  const wrote: number[] = [];
  const writesDone = writes.map((t) => remote.submit(t).then(() => wrote.push(t.length)));
  await until(() => data().length === 5, 'two command writes at libusb');
  lib.complete(data()[4]!, XferStatus.Completed, 16);
  await new Promise((r) => setTimeout(r, 20));
  assert.deepEqual(wrote, [], 'the second reply waits for the first');
  lib.complete(data()[3]!, XferStatus.Completed, 32);
  await Promise.all(writesDone);
  assert.deepEqual(wrote, [32, 16]);

  // A read still pending when the guest frees the streams ends cancelled, then the streams go.
  const pending = bulk(0x83, 7);
  const pendingDone = remote.submit(pending);
  await until(() => data().length === 6, 'a pending stream read');
  lib.calls.length = 0;
  const freed = remote.freeStreams([0x82, 0x83, 0x04]);
  await until(() => lib.calls.includes('cancel'), 'cancel of the pending read');
  lib.complete(data()[5]!, XferStatus.Cancelled);
  assert.equal(await freed, TransferStatus.Ok);
  await pendingDone;
  // The host answered cancelled; a cancel the client did not ask for is an I/O error (as in QEMU).
  assert.equal(pending.status, TransferStatus.IoError);
  assert.deepEqual(lib.calls, ['cancel', 'freeStreams 4,82,83']);

  const late = bulk(0x83, 1);
  await remote.submit(late);
  assert.equal(late.status, TransferStatus.Invalid, 'stream ids are gone with the free');
  assert.equal(data().length, 6, 'refused by the server, not sent to libusb');
  await pair.close();
  await dev.close();
  assert.equal(lib.live, 0);
});

/** Our server on a socket, a raw guest wire (all caps) on the other side. */
async function rawGuest(device: UsbDevice): Promise<{ wire: UsbredirWire; close(): Promise<void> }> {
  let session: UsbredirHostSession | undefined;
  const server = net.createServer((socket) => {
    session = new UsbredirHostSession(socket, { device, peer: 'test', logger: createLogger('host') });
    session.start();
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const wire = await UsbredirWire.connect((server.address() as net.AddressInfo).port);
  await wire.attach();
  return {
    wire,
    async close() {
      wire.socket.end();
      await session?.done;
      server.close();
    },
  };
}

async function next<K extends Packet['type']>(wire: UsbredirWire, type: K): Promise<PacketOf<K>> {
  let found: Packet | undefined;
  await until(() => {
    const at = wire.packets.findIndex((p) => p.type === type);
    if (at >= 0) [found] = wire.packets.splice(at, 1);
    return found !== undefined;
  }, `packet type ${type}`);
  return found as PacketOf<K>;
}

function bulkPacket(id: bigint, endpoint: number, streamId: number, length = 8): Packet {
  const data = endpoint & 0x80 ? EMPTY : Buffer.alloc(length);
  return { type: T.BulkPacket, id, endpoint, status: 0, length, streamId, data };
}

test('bulk streams from a raw guest: bad requests get a clear status and nothing reaches the device', async () => {
  const { lib, dev } = await openSuperSpeedFake();
  const { wire, close } = await rawGuest(dev);
  const hello = wire.packets.find((p) => p.type === T.Hello) as PacketOf<typeof T.Hello>;
  assert.ok((hello.caps[0]! & (1 << Cap.BulkStreams)) !== 0, 'bulk_streams announced');
  const ep = (wire.packets.find((p) => p.type === T.EpInfo) as PacketOf<typeof T.EpInfo>).endpoints;
  assert.deepEqual(
    [ep[1]!.maxStreams, ep[16 + 2]!.maxStreams, ep[16 + 3]!.maxStreams, ep[4]!.maxStreams, ep[16 + 5]!.maxStreams],
    [0, 16, 16, 16, 0],
  );
  const alloc = async (id: bigint, mask: number, noStreams: number) => {
    wire.send([{ type: T.AllocBulkStreams, id, endpoints: mask, noStreams }]);
    const r = await next(wire, T.BulkStreamsStatus);
    assert.deepEqual([r.id, r.endpoints, r.noStreams], [id, mask, noStreams]);
    return r.status;
  };
  const reply = async (p: Packet) => {
    wire.send([p]);
    return (await next(wire, T.BulkPacket)).status;
  };
  const IN_3 = 1 << (16 + 3);
  assert.equal(await alloc(1n, 1 << (16 + 5), 4), Status.Inval, 'interrupt endpoint');
  assert.equal(await alloc(2n, 1 << 1, 4), Status.Inval, 'bulk endpoint without streams');
  assert.equal(await alloc(3n, IN_3, 32), Status.Inval, 'more than max_streams');
  assert.equal(await alloc(4n, IN_3, 0), Status.Inval, 'zero streams');
  assert.equal(await alloc(5n, 0, 4), Status.Inval, 'no endpoints');
  assert.equal(await reply(bulkPacket(10n, 0x83, 1)), Status.Inval, 'stream id never allocated');
  assert.deepEqual(lib.calls, [], 'none reached libusb');
  assert.equal(lib.submitted.length, 0);

  lib.streamsGranted = () => 4;
  assert.equal(await alloc(6n, IN_3, 16), Status.IoError, 'a partial grant fails (no partial grant in usbredir)');
  assert.deepEqual(lib.calls, ['allocStreams 16 83', 'freeStreams 83'], 'and is given back');
  lib.streamsGranted = (n) => n;
  assert.equal(await alloc(7n, IN_3, 16), Status.Success);
  assert.equal(await reply(bulkPacket(11n, 0x83, 17)), Status.Inval, 'stream id beyond the grant');
  assert.equal(await reply(bulkPacket(12n, 0x83, 0)), Status.Inval, 'stream 0 on an endpoint with streams');
  assert.equal(lib.submitted.length, 0);
  assert.equal(await alloc(8n, IN_3, 16), Status.Success, 'allocating again replaces the streams');
  assert.deepEqual(lib.calls.slice(-2), ['freeStreams 83', 'allocStreams 16 83']);

  // A refusal on an endpoint without streams waits for the request before it there.
  wire.send([bulkPacket(20n, 0x01, 0), bulkPacket(21n, 0x01, 5)]);
  await until(() => lib.submitted.length === 1, 'the first command write at libusb');
  await new Promise((r) => setTimeout(r, 20));
  assert.equal(
    wire.packets.some((p) => p.type === T.BulkPacket),
    false,
    'no reply overtakes the pending one',
  );
  lib.complete(lib.submitted[0]!, XferStatus.Completed, 8);
  const first = await next(wire, T.BulkPacket);
  const second = await next(wire, T.BulkPacket);
  assert.deepEqual([first.id, first.status, second.id, second.status], [20n, Status.Success, 21n, Status.Inval]);

  // Free with a read pending: the read is answered cancelled, then the status.
  wire.send([bulkPacket(30n, 0x83, 2), { type: T.FreeBulkStreams, id: 31n, endpoints: IN_3 }]);
  await until(() => lib.calls.includes('cancel'), 'cancel of the pending read');
  const cancelled = await next(wire, T.BulkPacket);
  assert.deepEqual([cancelled.id, cancelled.status], [30n, Status.Cancelled]);
  lib.complete(lib.submitted[1]!, XferStatus.Cancelled);
  const freed = await next(wire, T.BulkStreamsStatus);
  assert.deepEqual([freed.id, freed.status], [31n, Status.Success]);
  wire.send([{ type: T.FreeBulkStreams, id: 32n, endpoints: IN_3 }]);
  assert.equal((await next(wire, T.BulkStreamsStatus)).status, Status.Success, 'freeing twice is not a failure');
  wire.send([{ type: T.FreeBulkStreams, id: 33n, endpoints: 1 << (16 + 5) }]);
  assert.equal((await next(wire, T.BulkStreamsStatus)).status, Status.Inval, 'free on a non-bulk endpoint');
  await tick();
  assert.equal(wire.packets.filter((p) => p.type === T.BulkPacket).length, 0, 'one reply per request');
  await close();
  await dev.close();
  assert.equal(lib.live, 0);
});

test('a bridge carries streams: a device imported over usbredir is re-exported with bulk_streams, stream ids go through both hops', async () => {
  const { lib, dev } = await openSuperSpeedFake();
  const pair = await importOverUsbredir(dev);
  const { wire, close } = await rawGuest(pair.remote);
  const hello = wire.packets.find((p) => p.type === T.Hello) as PacketOf<typeof T.Hello>;
  assert.ok((hello.caps[0]! & (1 << Cap.BulkStreams)) !== 0, 'the re-export announces bulk_streams');
  const IN_3 = 1 << (16 + 3);
  wire.send([{ type: T.AllocBulkStreams, id: 1n, endpoints: IN_3, noStreams: 16 }]);
  assert.equal((await next(wire, T.BulkStreamsStatus)).status, Status.Success);
  assert.ok(lib.calls.includes('allocStreams 16 83'), 'allocated on the device at the far end');
  wire.send([bulkPacket(2n, 0x83, 9, 4)]);
  await until(() => lib.submitted.some((s) => lib.streamIds.get(s.pointer) === 9), 'stream 9 at libusb');
  const s = [...lib.submitted].reverse().find((x) => lib.streamIds.get(x.pointer) === 9)!;
  lib.complete(s, XferStatus.Completed, 4, Buffer.from([9, 9, 9, 9]));
  const r = await next(wire, T.BulkPacket);
  assert.deepEqual([r.id, r.streamId, r.status, [...r.data]], [2n, 9, Status.Success, [9, 9, 9, 9]]);
  await close();
  await pair.close();
  await dev.close();
  assert.equal(lib.live, 0);
});

test('a device without streams: no bulk_streams in the hello, alloc answered with an error, stream ids refused', async () => {
  const device = new ParkingDevice();
  const { wire, close } = await rawGuest(device);
  const hello = wire.packets.find((p) => p.type === T.Hello) as PacketOf<typeof T.Hello>;
  assert.equal(hello.caps[0]! & (1 << Cap.BulkStreams), 0);
  wire.send([{ type: T.SetConfiguration, id: 1n, configuration: 1 }]);
  await next(wire, T.ConfigurationStatus);
  wire.send([{ type: T.AllocBulkStreams, id: 2n, endpoints: 1 << 17, noStreams: 4 }]);
  assert.equal((await next(wire, T.BulkStreamsStatus)).status, Status.IoError);
  wire.send([bulkPacket(3n, 0x81, 2)]);
  assert.equal((await next(wire, T.BulkPacket)).status, Status.Inval);
  assert.equal(device.submitted, 1, 'only SET_CONFIGURATION reached the device');
  await close();
});

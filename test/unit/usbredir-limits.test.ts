import assert from 'node:assert/strict';
import net from 'node:net';
import { after, test } from 'node:test';
import { PacketType as T } from '../../src/protocol/usbredir/constants.js';
import { DeviceRegistry } from '../../src/server/registry.js';
import { type SessionTuning, UsbredirListener } from '../../src/server/usbredir/server.js';
import { setLogSink } from '../../src/util/log.js';
import { ParkingDevice } from '../support/parking-device.js';
import { until } from '../support/usbip-wire.js';
import { bulkIn, UsbredirWire } from '../support/usbredir-wire.js';

setLogSink('silent');

// A test that fails must not leave a server listening: the file would never exit.
const open: { close(): Promise<void> }[] = [];
after(() => Promise.all(open.map((s) => s.close())));

async function serve(tuning: SessionTuning = {}) {
  const registry = new DeviceRegistry();
  const device = new ParkingDevice();
  device.configuration = 1;
  const entry = registry.add(device);
  const listener = new UsbredirListener(registry, entry, { host: '127.0.0.1', port: 0 }, tuning);
  await listener.listen();
  open.push(listener);
  return { device, entry, listener, port: listener.address!.port };
}

const settle = () => new Promise((r) => setTimeout(r, 100));

test('usbredir: at the transfer cap the server stops taking requests, and takes the rest as they complete', async () => {
  const { device, listener, port } = await serve({ maxTransfersInFlight: 40 });
  const guest = await UsbredirWire.connect(port);
  await guest.attach();
  guest.send(Array.from({ length: 1000 }, (_, i) => bulkIn(BigInt(i + 1), 512)));
  await until(() => device.parked > 0, 'requests parked');
  await settle();
  assert.ok(device.parked <= 40, `${device.parked} parked`);
  let answered = 0;
  while (answered < 1000) {
    const batch = device.parkedTransfers();
    for (const t of batch) device.complete(t);
    answered += batch.length;
    await until(() => device.parked > 0 || answered >= 1000, 'more requests taken');
    assert.ok(device.parked <= 40);
  }
  await until(() => guest.packets.filter((p) => p.type === T.BulkPacket).length === 1000, 'every reply');
  assert.equal(guest.closed, false);
  guest.socket.destroy();
  await listener.close();
});

test('usbredir: the byte cap counts IN lengths', async () => {
  const { device, listener, port } = await serve({ maxBytesInFlight: 64 * 1024 });
  const guest = await UsbredirWire.connect(port);
  await guest.attach();
  guest.send(Array.from({ length: 100 }, (_, i) => bulkIn(BigInt(i + 1), 4096)));
  await until(() => device.parked === 16, '16 × 4 KiB parked');
  await settle();
  assert.equal(device.parked, 16);
  guest.socket.destroy();
  await listener.close();
});

async function parkedGuest(n: number, id: (i: number) => bigint) {
  const served = await serve({ maxTransfersInFlight: 2 * n, maxBytesInFlight: 2 ** 40 });
  const guest = await UsbredirWire.connect(served.port);
  await guest.attach();
  guest.send(Array.from({ length: n }, (_, i) => bulkIn(id(i), 64)));
  await until(() => served.device.parked === n, `${n} parked`, 30_000);
  return { ...served, guest };
}

test('usbredir: closing a connection with 100k requests pending takes linear time', async (t) => {
  const N = 100_000;
  const { device, entry, listener, guest } = await parkedGuest(N, (i) => BigInt(i + 1));
  const started = performance.now();
  guest.socket.destroy();
  await until(() => entry.owner === undefined, 'teardown', 30_000);
  const ms = performance.now() - started;
  t.diagnostic(`teardown of ${N}: ${ms.toFixed(0)} ms`);
  assert.equal(device.parked, 0);
  assert.ok(ms < 10_000, `teardown took ${ms.toFixed(0)} ms`);
  await listener.close();
});

test('usbredir: a reset with 100k requests on one reused id takes linear time', async (t) => {
  const N = 100_000;
  const { device, listener, guest } = await parkedGuest(N, () => 7n);
  const started = performance.now();
  guest.send([{ type: T.Reset, id: 0n }]);
  await until(() => device.resets === 1, 'reset', 30_000);
  const ms = performance.now() - started;
  t.diagnostic(`reset cancelling ${N}: ${ms.toFixed(0)} ms`);
  assert.equal(device.parked, 0);
  assert.ok(ms < 10_000, `reset took ${ms.toFixed(0)} ms`);
  guest.socket.destroy();
  await listener.close();
});

test('usbredir: a transfer longer than maxTransferLength closes the connection at its header', async () => {
  const logs: string[] = [];
  setLogSink((l) => logs.push(l));
  const { device, entry, listener, port } = await serve({ maxTransferLength: 1024 * 1024 });
  const guest = await UsbredirWire.connect(port);
  await guest.attach();
  guest.send([bulkIn(1n, 1024 * 1024)]);
  await until(() => device.parked === 1, 'a transfer at the limit is taken');
  const submitted = device.submitted;
  guest.send([bulkIn(2n, 1024 * 1024 + 512)]);
  await until(() => guest.closed, 'closed');
  assert.equal(device.submitted, submitted, 'the long one never reached the device');
  assert.ok(
    logs.some((l) => /transfer of 1049088 bytes > limit 1048576/.test(l)),
    logs.join('\n'),
  );
  await until(() => entry.owner === undefined, 'released');
  await listener.close();
  setLogSink('silent');
});

test('usbredir: a hello claiming megabytes of data is refused at its header', async () => {
  const { listener, port } = await serve();
  const socket = net.connect(port, '127.0.0.1');
  socket.on('error', () => {});
  let received = 0;
  socket.on('data', (c: Buffer) => {
    received += c.length;
  });
  const closed = new Promise((resolve) => socket.once('close', resolve));
  const header = Buffer.alloc(12 + 64);
  header.writeUInt32LE(T.Hello, 0);
  header.writeUInt32LE(64 + 100 * 1024 * 1024, 4);
  header.write('hostile', 12);
  socket.write(Buffer.concat([header, Buffer.alloc(4096)]));
  await closed;
  assert.ok(received < 1024, 'closed after our hello, nothing more');
  await listener.close();
});

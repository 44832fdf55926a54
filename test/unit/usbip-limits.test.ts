import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { Errno } from '../../src/protocol/usbip/index.js';
import { DEFAULT_MAX_TRANSFERS_IN_FLIGHT } from '../../src/server/limits.js';
import { DeviceRegistry } from '../../src/server/registry.js';
import { UsbipServer, type UsbipServerOptions } from '../../src/server/usbip/index.js';
import { setLogSink } from '../../src/util/log.js';
import { ParkingDevice } from '../support/parking-device.js';
import { inSubmit, UsbipWire, unlink, until } from '../support/usbip-wire.js';

setLogSink('silent');

// A test that fails must not leave a server listening: the file would never exit.
const open: { close(): Promise<void> }[] = [];
after(() => Promise.all(open.map((s) => s.close())));

async function serve(options: UsbipServerOptions = {}) {
  const registry = new DeviceRegistry();
  const device = new ParkingDevice();
  device.configuration = 1;
  const entry = registry.add(device);
  const server = new UsbipServer(registry, { host: '127.0.0.1', port: 0 }, options);
  const address = await server.listen();
  open.push(server);
  return { device, entry, server, address };
}

function submits(from: number, count: number, length = 512): Buffer[][] {
  return Array.from({ length: count }, (_, i) => inSubmit(from + i, 1, length));
}

const settle = () => new Promise((r) => setTimeout(r, 100));

test('USB/IP: at the transfer cap the server stops taking requests, and takes the rest as transfers complete', async () => {
  const { device, server, address } = await serve({ maxTransfersInFlight: 50 });
  const wire = await UsbipWire.import(address);
  wire.send(submits(1, 2000));
  await until(() => device.parked === 50, '50 parked');
  await settle();
  assert.equal(device.parked, 50, 'no more than the cap in flight');
  let completed = 0;
  while (completed < 2000) {
    const batch = device.parkedTransfers();
    for (const t of batch) device.complete(t);
    completed += batch.length;
    await until(() => device.parked > 0 || device.submitted >= 2000, 'more requests taken');
    assert.ok(device.parked <= 50);
  }
  await until(() => wire.packets.length === 1 + 2000, 'every RET_SUBMIT');
  assert.equal(wire.closed, false, 'pipelining past the cap is not an error');
  wire.socket.destroy();
  await server.close();
});

test('USB/IP: the byte cap counts IN lengths', async () => {
  const { device, server, address } = await serve({ maxBytesInFlight: 64 * 1024 });
  const wire = await UsbipWire.import(address);
  wire.send(submits(1, 100, 4096));
  await until(() => device.parked === 16, '16 × 4 KiB parked');
  await settle();
  assert.equal(device.parked, 16);
  wire.socket.destroy();
  await server.close();
});

test('USB/IP: over the cap, input is read only up to a bound, then the client backs up', async () => {
  const { device, server, address } = await serve({ maxTransfersInFlight: 10 });
  const wire = await UsbipWire.import(address);
  wire.send(submits(1, 20));
  await until(() => device.parked === 10, 'cap reached');
  // 40 MiB more than socket buffers and the held input together; never parsed, so seqnums may repeat.
  const more = Buffer.concat(submits(100, 20_000, 8).flat());
  for (let i = 0; i < 40; i++) wire.socket.write(more);
  await settle();
  await settle();
  assert.ok(wire.socket.writableLength > 16 * 1024 * 1024, `client backlog ${wire.socket.writableLength}`);
  assert.equal(device.parked, 10);
  assert.equal(wire.closed, false);
  wire.socket.destroy();
  await server.close();
});

test('USB/IP: a client held at the cap that closes is noticed at once', async () => {
  const { device, entry, server, address } = await serve({ maxTransfersInFlight: 10 });
  const wire = await UsbipWire.import(address);
  wire.send(submits(1, 100));
  await until(() => device.parked === 10, 'cap reached');
  wire.socket.end();
  await until(() => entry.owner === undefined, 'release after the client closed', 2000);
  assert.equal(device.parked, 0, 'everything in flight cancelled');
  await server.close();
});

test('USB/IP: default caps leave a keyboard-like client alone: 32 interrupt INs pending, then unlinked', async () => {
  assert.ok(DEFAULT_MAX_TRANSFERS_IN_FLIGHT >= 1024);
  const { device, server, address } = await serve();
  const wire = await UsbipWire.import(address);
  wire.send(Array.from({ length: 32 }, (_, i) => inSubmit(1 + i, 3, 8)));
  await until(() => device.parked === 32, '32 interrupt INs pending');
  wire.send(Array.from({ length: 32 }, (_, i) => unlink(100 + i, 1 + i)));
  await until(() => wire.packets.length === 1 + 32, '32 RET_UNLINK');
  for (const p of wire.packets.slice(1)) {
    assert.equal(p.kind, 'ret-unlink');
    assert.equal((p as { status: number }).status, -Errno.ECONNRESET);
  }
  wire.socket.destroy();
  await server.close();
});

test('USB/IP: closing a connection with 100k transfers pending takes linear time and other clients are served meanwhile', async (t) => {
  const N = 100_000;
  const { device, entry, server, address } = await serve({ maxTransfersInFlight: 2 * N, maxBytesInFlight: 2 ** 40 });
  const busy = await UsbipWire.import(address);
  busy.send(submits(1, N, 64));
  await until(() => device.parked === N, `${N} parked`, 30_000);

  const started = performance.now();
  busy.socket.destroy();
  // Another client lists devices while the first one is torn down.
  const { UsbipClient } = await import('../../src/client/usbip/index.js');
  const listed = new UsbipClient({ timeoutMs: 5000 }).listDevices(address).then(() => performance.now() - started);
  await until(() => entry.owner === undefined, 'teardown', 30_000);
  const teardownMs = performance.now() - started;
  const listMs = await listed;
  t.diagnostic(`teardown ${teardownMs.toFixed(0)} ms, device list answered after ${listMs.toFixed(0)} ms`);
  assert.equal(device.parked, 0);
  assert.ok(teardownMs < 10_000, `teardown of ${N} took ${teardownMs.toFixed(0)} ms`);
  assert.ok(listMs < 5000, `device list took ${listMs.toFixed(0)} ms during teardown`);
  await server.close();
});

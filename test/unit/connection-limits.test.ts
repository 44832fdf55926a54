import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import net from 'node:net';
import { test } from 'node:test';
import { ConnectionGate } from '../../src/server/connection-gate.js';
import { DeviceRegistry } from '../../src/server/registry.js';
import { UsbipServer } from '../../src/server/usbip/index.js';
import { UsbredirListener } from '../../src/server/usbredir/index.js';
import { applyPeerTimeout, setPeerTimeout } from '../../src/transport/peer-timeout.js';
import { createLogger, setLogSink } from '../../src/util/log.js';
import { ParkingDevice } from '../support/parking-device.js';
import { inSubmit, UsbipWire, until } from '../support/usbip-wire.js';

setLogSink('silent');

function connect(port: number): Promise<{ socket: net.Socket; closed: Promise<void> }> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1', () =>
      resolve({ socket, closed: new Promise((r) => socket.once('close', () => r())) }),
    );
    socket.on('error', () => {});
  });
}

test('limits: connections over the per-address cap are closed at once; the count is shared by all listeners', async () => {
  const registry = new DeviceRegistry();
  const device = new ParkingDevice();
  device.configuration = 1;
  registry.add(device);
  const logs: string[] = [];
  setLogSink((l) => logs.push(l));
  const gate = new ConnectionGate({ maxConnectionsPerAddress: 3 }, createLogger('test'));
  const usbip = new UsbipServer(registry, { host: '127.0.0.1', port: 0 }, { gate });
  const address = await usbip.listen();
  const redir = new UsbredirListener(registry, registry.get('1-1')!, { host: '127.0.0.1', port: 0 }, { gate });
  await redir.listen();
  const kept = [await connect(address.port), await connect(address.port), await connect(redir.address!.port)];
  await until(() => gate.total === 3, 'three admitted');
  const over = await connect(address.port);
  await over.closed;
  const overRedir = await connect(redir.address!.port);
  await overRedir.closed;
  assert.equal(gate.total, 3);
  for (const k of kept) k.socket.destroy();
  await until(() => gate.total === 0, 'all counted out');
  const again = await connect(address.port);
  await until(() => gate.total === 1, 'admitted again once others closed');
  again.socket.destroy();
  await usbip.close();
  await redir.close();
  setLogSink('silent');
});

test('limits: a client that stops reading its replies is dropped after the write-stall timeout, and its device freed', async () => {
  const registry = new DeviceRegistry();
  const device = new ParkingDevice();
  device.configuration = 1;
  const entry = registry.add(device);
  const logs: string[] = [];
  setLogSink((l) => logs.push(l));
  const server = new UsbipServer(registry, { host: '127.0.0.1', port: 0 }, { writeStallTimeoutMs: 300 });
  const address = await server.listen();
  const wire = await UsbipWire.import(address);
  assert.ok(entry.owner);
  wire.socket.pause();
  wire.send(Array.from({ length: 600 }, (_, i) => inSubmit(i + 1, 1, 65536)));
  // The device answers everything at once: 39 MiB of replies the client never reads.
  const answer = setInterval(() => {
    for (const t of device.parkedTransfers()) device.complete(t);
  }, 5);
  await until(() => entry.owner === undefined, 'the device released', 10_000);
  clearInterval(answer);
  assert.ok(
    logs.some((l) => /not drained for 300 ms \(the peer stopped reading\), closing/.test(l)),
    logs.join('\n'),
  );
  wire.socket.destroy();
  await server.close();
  setLogSink('silent');
});

test('limits: sockets get keepalive probes and TCP_USER_TIMEOUT within the peer timeout', async (t) => {
  let koffi: { load(n: string): { func(s: string): (...a: unknown[]) => number } };
  try {
    koffi = createRequire(import.meta.url)('koffi');
  } catch {
    t.skip('koffi not available');
    return;
  }
  const getsockopt = koffi.load('libc.so.6').func('int getsockopt(int, int, int, _Out_ void *, _Inout_ uint32_t *)');
  const server = net.createServer(() => {}).listen(0, '127.0.0.1');
  await new Promise((r) => server.once('listening', r));
  const { socket } = await connect((server.address() as net.AddressInfo).port);
  setPeerTimeout(12_000);
  applyPeerTimeout(socket);
  const fd = (socket as unknown as { _handle: { fd: number } })._handle.fd;
  const read = (level: number, name: number) => {
    const out = new Int32Array(1);
    assert.equal(getsockopt(fd, level, name, out, [4]), 0);
    return out[0];
  };
  assert.equal(read(1, 9), 1, 'SO_KEEPALIVE');
  assert.equal(read(6, 4), 6, 'TCP_KEEPIDLE: half the timeout');
  assert.equal(read(6, 5), 1, 'TCP_KEEPINTVL');
  assert.equal(read(6, 6), 5, 'TCP_KEEPCNT');
  assert.equal(read(6, 18), 12_000, 'TCP_USER_TIMEOUT');
  setPeerTimeout(20_000);
  socket.destroy();
  server.close();
});

import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, test } from 'node:test';
import { UsbipClient } from '../../src/client/usbip/index.js';
import { encodeReqImport } from '../../src/protocol/usbip/index.js';
import { DEFAULT_HANDSHAKE_TIMEOUT_MS } from '../../src/server/limits.js';
import { DeviceRegistry } from '../../src/server/registry.js';
import { UsbipServer } from '../../src/server/usbip/index.js';
import { UsbredirListener } from '../../src/server/usbredir/index.js';
import type { HostPort } from '../../src/util/host-port.js';
import { setLogSink } from '../../src/util/log.js';
import { ParkingDevice } from '../support/parking-device.js';
import { until } from '../support/usbip-wire.js';
import { UsbredirWire } from '../support/usbredir-wire.js';

const HANDSHAKE_MS = 300;
const logs: string[] = [];
const registry = new DeviceRegistry();
const entry = registry.add(new ParkingDevice());
const usbip = new UsbipServer(registry, { host: '127.0.0.1', port: 0 }, { handshakeTimeoutMs: HANDSHAKE_MS });
const usbredir = new UsbredirListener(
  registry,
  entry,
  { host: '127.0.0.1', port: 0 },
  { handshakeTimeoutMs: HANDSHAKE_MS },
);
let usbipAddress: HostPort;
let usbredirPort: number;

before(async () => {
  setLogSink((l) => logs.push(l));
  usbipAddress = await usbip.listen();
  await usbredir.listen();
  usbredirPort = usbredir.address!.port;
});

after(async () => {
  await usbip.close();
  await usbredir.close();
  setLogSink((l) => process.stderr.write(`${l}\n`));
});

/** A connection that sends `bytes` (maybe nothing) and then stays silent; resolves when the server closes it. */
async function silent(port: number, bytes = Buffer.alloc(0)) {
  const socket = net.connect({ host: '127.0.0.1', port });
  socket.on('error', () => {});
  socket.on('data', () => {});
  await new Promise((resolve) => socket.once('connect', resolve));
  if (bytes.length > 0) socket.write(bytes);
  const opened = performance.now();
  const closed = new Promise<number>((resolve) => socket.once('close', () => resolve(performance.now() - opened)));
  return { socket, closed };
}

test('the default handshake timeout is 10 s', () => {
  assert.equal(DEFAULT_HANDSHAKE_TIMEOUT_MS, 10_000);
});

test('usbredir: a connection that never says hello claims nothing and is closed after the timeout', async () => {
  logs.length = 0;
  const quiet = await silent(usbredirPort);
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(entry.owner, undefined, 'no claim before hello');

  // The device is free for a USB/IP import...
  const dev = await new UsbipClient({ timeoutMs: 2000 }).importDevice(usbipAddress, '1-1');
  await dev.close();
  await until(() => entry.owner === undefined, 'USB/IP release');
  // ...and for a second usbredir guest.
  const guest = await UsbredirWire.connect(usbredirPort);
  await guest.attach();
  guest.socket.destroy();
  await until(() => entry.owner === undefined, 'usbredir release');

  const ms = await quiet.closed;
  assert.ok(ms >= HANDSHAKE_MS - 20 && ms < HANDSHAKE_MS + 1000, `closed after ${ms.toFixed(0)} ms`);
  assert.ok(
    logs.some((l) => l.includes(`no hello within ${HANDSHAKE_MS} ms, closing`)),
    logs.join('\n'),
  );
});

test('usbredir: a guest whose hello finds the device busy is closed, and the holder keeps it', async () => {
  const first = await UsbredirWire.connect(usbredirPort);
  await first.attach();
  const owner = entry.owner;
  const second = await UsbredirWire.connect(usbredirPort);
  second.send([{ type: 0, id: 0n, version: 'late guest', caps: [...second.neg.ourCaps] }]);
  await until(() => second.closed, 'busy guest closed');
  assert.equal(entry.owner, owner);
  first.socket.destroy();
  await until(() => entry.owner === undefined, 'release');
});

test('USB/IP: no OP_REQ within the timeout closes the connection, even when bytes trickle in', async () => {
  logs.length = 0;
  const quiet = await silent(usbipAddress.port);
  // An OP_REQ_IMPORT sent a byte every 50 ms: it would take 2 s to complete.
  const request = Buffer.concat(encodeReqImport('1-1'));
  const trickle = await silent(usbipAddress.port, request.subarray(0, 1));
  let sent = 1;
  const timer = setInterval(() => trickle.socket.write(request.subarray(sent, ++sent)), 50);
  const [a, b] = await Promise.all([quiet.closed, trickle.closed]);
  clearInterval(timer);
  for (const ms of [a, b]) assert.ok(ms >= HANDSHAKE_MS - 20 && ms < HANDSHAKE_MS + 1000, `closed after ${ms} ms`);
  assert.ok(logs.some((l) => l.includes(`no complete request within ${HANDSHAKE_MS} ms`)));
});

test('USB/IP: after import, silence is normal', async () => {
  const dev = await new UsbipClient({ timeoutMs: 2000 }).importDevice(usbipAddress, '1-1');
  await new Promise((r) => setTimeout(r, HANDSHAKE_MS * 2));
  assert.match(entry.owner ?? '', /usbip/);
  await dev.close();
  await until(() => entry.owner === undefined, 'release');
});

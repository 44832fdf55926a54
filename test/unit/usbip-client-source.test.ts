// UsbipSource: imports a device from a USB/IP server, sees it go when the server goes, retries
// with backoff, and hands out a new device when the server is back.
import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, test } from 'node:test';
import { type RemoteUsbipDevice, UsbipSource } from '../../src/client/usbip/index.js';
import { createGadgetZero, LB_BULK_IN, LB_BULK_OUT } from '../../src/devices/gadget-zero/index.js';
import { DeviceRegistry } from '../../src/server/registry.js';
import { UsbipServer } from '../../src/server/usbip/index.js';
import type { UsbDevice } from '../../src/usb/device.js';
import { TransferStatus } from '../../src/usb/status.js';
import { Transfer } from '../../src/usb/transfer.js';
import type { HostPort } from '../../src/util/host-port.js';
import { createLogger, setLogLevel, setLogSink } from '../../src/util/log.js';
import { bulkIn, bulkOut, setConfiguration } from '../support/drive.js';
import { until } from '../support/usbip-wire.js';

const lines: string[] = [];
before(() => setLogSink((l) => lines.push(l)));
after(() => setLogSink((l) => process.stderr.write(`${l}\n`)));

function nextDevice(source: UsbipSource, ms = 5000): Promise<UsbDevice> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no device within ${ms} ms`)), ms);
    source.once('device', (d) => {
      clearTimeout(timer);
      resolve(d);
    });
  });
}

function disconnected(device: UsbDevice, ms = 5000): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no disconnect within ${ms} ms`)), ms);
    device.once('disconnect', () => {
      clearTimeout(timer);
      resolve();
    });
  });
}

async function startServer(port = 0): Promise<{ server: UsbipServer; address: HostPort }> {
  const registry = new DeviceRegistry();
  registry.add(createGadgetZero({ name: 'gz loopback' }));
  const server = new UsbipServer(registry, { host: '127.0.0.1', port }, { logger: createLogger('test-server') });
  return { server, address: await server.listen() };
}

async function loopback(device: UsbDevice, payload: Buffer): Promise<Buffer> {
  assert.equal((await setConfiguration(device, 2)).status, TransferStatus.Ok);
  assert.equal((await bulkOut(device, LB_BULK_OUT, payload)).status, TransferStatus.Ok);
  const inT = bulkIn(device, LB_BULK_IN, payload.length);
  await inT.done;
  assert.equal(inT.status, TransferStatus.Ok);
  return inT.data.subarray(0, inT.actualLength);
}

test('server goes away: pending transfer ends NoDevice, disconnect once; server back: a new device', async () => {
  let { server, address } = await startServer();
  const source = new UsbipSource({ address, busid: '1-1', minRetryMs: 50, maxRetryMs: 200, timeoutMs: 2000 });
  assert.equal(source.description, `usbip://127.0.0.1:${address.port}/1-1`);
  try {
    const first = nextDevice(source);
    source.start();
    const dev1 = (await first) as RemoteUsbipDevice;
    assert.match(dev1.name, /^usbip:\/\/127\.0\.0\.1:\d+\/1-1 /);
    assert.deepEqual(await loopback(dev1, Buffer.from('first import')), Buffer.from('first import'));

    // A bulk IN on an empty loopback stays pending until the server goes.
    const pending = new Transfer({ type: 'bulk', endpoint: LB_BULK_IN, length: 64 });
    const done = dev1.submit(pending);
    let disconnects = 0;
    dev1.on('disconnect', () => disconnects++);
    const gone = disconnected(dev1);
    await server.close();
    await gone;
    await done;
    assert.equal(pending.status, TransferStatus.NoDevice);
    assert.equal(disconnects, 1);

    // Let a few retries fail (connection refused) before the server comes back on the same port.
    await new Promise((r) => setTimeout(r, 400));
    const failures = lines.filter((l) => l.includes(source.description) && l.includes('retrying'));
    assert.equal(failures.length, 1, `one warning for repeated identical failures, got:\n${failures.join('\n')}`);
    const second = nextDevice(source);
    ({ server } = await startServer(address.port));
    const dev2 = await second;
    assert.notEqual(dev2, dev1);
    assert.deepEqual(await loopback(dev2, Buffer.from('second import')), Buffer.from('second import'));
    assert.equal(disconnects, 1);

    const closedDisconnect = disconnected(dev2);
    await source.close();
    await closedDisconnect;
    assert.equal(source.state, 'closed');
  } finally {
    await source.close();
    await server.close();
  }
});

test('import refused (unknown busid) is retried until close; close stops it', async () => {
  const { server, address } = await startServer();
  const source = new UsbipSource({ address, busid: '9-9', minRetryMs: 20, maxRetryMs: 40 });
  let devices = 0;
  source.on('device', () => devices++);
  try {
    source.start();
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(devices, 0);
    const warned = lines.filter((l) => l.includes(source.description) && l.includes('no such device'));
    assert.equal(warned.length, 1);
  } finally {
    await source.close();
    await server.close();
  }
  assert.equal(source.state, 'closed');
});

function delays(source: UsbipSource): number[] {
  const tag = `${source.description}: next import in `;
  return lines.filter((l) => l.includes(tag)).map((l) => Number(l.slice(l.indexOf(tag) + tag.length).split(' ')[0]));
}

test('backoff doubles up to the maximum, and starts over after an import that lasted', async () => {
  setLogLevel('debug');
  const { server, address } = await startServer();
  await server.close();
  const source = new UsbipSource({ address, busid: '1-1', minRetryMs: 20, maxRetryMs: 100, timeoutMs: 2000 });
  let restarted: UsbipServer | undefined;
  try {
    source.start();
    await until(() => delays(source).length >= 6, 'six failed imports');
    assert.deepEqual(delays(source).slice(0, 6), [20, 40, 80, 100, 100, 100]);
    const device = nextDevice(source);
    restarted = (await startServer(address.port)).server;
    const dev = await device;
    await new Promise((r) => setTimeout(r, 150));
    const before = delays(source).length;
    const gone = disconnected(dev);
    await restarted.close();
    await gone;
    await until(() => delays(source).length > before, 'the retry after the disconnect');
    assert.equal(delays(source)[before], 20, 'an import that lasted resets the backoff');
  } finally {
    setLogLevel('info');
    await source.close();
    await restarted?.close();
  }
});

test('close() while an import waits for a silent server returns at once and leaves nothing open', async () => {
  // Reads and ignores everything: the import reply never comes.
  const silent = net.createServer((s) => s.on('error', () => {}).resume());
  await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
  const port = (silent.address() as net.AddressInfo).port;
  const source = new UsbipSource({ address: { host: '127.0.0.1', port }, busid: '1-1', timeoutMs: 10_000 });
  try {
    source.start();
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(source.state, 'importing');
    const started = Date.now();
    await source.close();
    assert.ok(Date.now() - started < 500, 'close did not wait for the import timeout');
    const open = () => new Promise<number>((r) => silent.getConnections((_e, n) => r(n)));
    for (let i = 0; i < 100 && (await open()) > 0; i++) await new Promise((r) => setTimeout(r, 10));
    assert.equal(await open(), 0, 'the import connection was closed');
  } finally {
    await new Promise((r) => silent.close(r));
  }
});

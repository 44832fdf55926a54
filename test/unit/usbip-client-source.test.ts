// UsbipSource: imports a device from a USB/IP server, sees it go when the server goes, retries
// with backoff, and hands out a new device when the server is back.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { type RemoteUsbipDevice, UsbipSource } from '../../src/client/usbip/index.js';
import { createGadgetZero, LB_BULK_IN, LB_BULK_OUT } from '../../src/devices/gadget-zero/index.js';
import { DeviceRegistry } from '../../src/server/registry.js';
import { UsbipServer } from '../../src/server/usbip/index.js';
import type { UsbDevice } from '../../src/usb/device.js';
import { TransferStatus } from '../../src/usb/status.js';
import { Transfer } from '../../src/usb/transfer.js';
import type { HostPort } from '../../src/util/host-port.js';
import { createLogger, setLogSink } from '../../src/util/log.js';
import { bulkIn, bulkOut, setConfiguration } from '../support/drive.js';

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

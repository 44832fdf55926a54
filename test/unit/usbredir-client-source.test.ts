import assert from 'node:assert/strict';
import { once } from 'node:events';
import { test } from 'node:test';
import type { RemoteUsbredirDevice } from '../../src/client/usbredir/index.js';
import { UsbredirConnectSource, UsbredirListenSource } from '../../src/client/usbredir/index.js';
import {
  createGadgetZero,
  GZERO_LOOPBACK_CONFIG,
  LB_BULK_IN,
  LB_BULK_OUT,
} from '../../src/devices/gadget-zero/index.js';
import { DeviceRegistry } from '../../src/server/registry.js';
import { UsbredirConnector, UsbredirListener } from '../../src/server/usbredir/index.js';
import type { UsbDevice } from '../../src/usb/device.js';
import { TransferStatus } from '../../src/usb/status.js';
import { setLogSink } from '../../src/util/log.js';
import { bulkIn, bulkOut, setConfiguration } from '../support/drive.js';

setLogSink('silent');

async function loopbackWorks(dev: UsbDevice): Promise<void> {
  assert.equal((await setConfiguration(dev, GZERO_LOOPBACK_CONFIG)).status, TransferStatus.Ok);
  const data = Buffer.from('through the bridge');
  assert.equal((await bulkOut(dev, LB_BULK_OUT, data)).status, TransferStatus.Ok);
  const back = bulkIn(dev, LB_BULK_IN, 512);
  await back.done;
  assert.deepEqual(back.data.subarray(0, back.actualLength), data);
}

test('usbredir:// source: connects to a listening host, and after the host goes away connects again: a new device', async () => {
  const registry = new DeviceRegistry();
  const entry = registry.add(createGadgetZero());
  let listener = new UsbredirListener(registry, entry, { host: '127.0.0.1', port: 0 });
  await listener.listen();
  const port = listener.address!.port;
  const source = new UsbredirConnectSource({ address: { host: '127.0.0.1', port }, minRetryMs: 50, maxRetryMs: 200 });
  assert.equal(source.description, `usbredir://127.0.0.1:${port}`);
  try {
    const first = once(source, 'device') as Promise<[RemoteUsbredirDevice]>;
    source.start();
    const [dev1] = await first;
    await loopbackWorks(dev1);

    const gone = once(dev1, 'disconnect');
    const second = once(source, 'device') as Promise<[RemoteUsbredirDevice]>;
    await listener.close();
    await gone;
    const stale = bulkIn(dev1, LB_BULK_IN, 8);
    await stale.done;
    assert.equal(stale.status, TransferStatus.NoDevice);

    listener = new UsbredirListener(registry, entry, { host: '127.0.0.1', port });
    await listener.listen();
    const [dev2] = await second;
    assert.notEqual(dev2, dev1);
    await loopbackWorks(dev2);
    const closing = once(dev2, 'disconnect');
    await source.close();
    await closing;
  } finally {
    await source.close();
    await listener.close();
  }
});

test('usbredir-listen:// source: a host that connects brings its device; closing the source disconnects it', async () => {
  const source = new UsbredirListenSource({ address: { host: '127.0.0.1', port: 0 } });
  assert.equal(source.description, 'usbredir-listen://127.0.0.1:0');
  source.start();
  await source.listening;
  const port = source.address!.port;
  assert.ok(port > 0);
  const registry = new DeviceRegistry();
  const entry = registry.add(createGadgetZero());
  const connector = new UsbredirConnector(registry, entry, { host: '127.0.0.1', port }, { minRetryMs: 50 });
  try {
    const arrived = once(source, 'device') as Promise<[RemoteUsbredirDevice]>;
    connector.start();
    const [dev] = await arrived;
    await loopbackWorks(dev);
    const gone = once(dev, 'disconnect');
    await source.close();
    await gone;
  } finally {
    await connector.close();
    await source.close();
  }
});

test('usbredir:// source: nobody listening: retries with backoff, never throws, stops on close', async () => {
  const source = new UsbredirConnectSource({ address: { host: '127.0.0.1', port: 1 }, minRetryMs: 20, maxRetryMs: 40 });
  source.start();
  await new Promise((r) => setTimeout(r, 150));
  await source.close();
});

test('usbredir:// source: close does not wait for a connect attempt that hangs', async () => {
  // A non-routable address keeps the attempt pending until the connect timeout (where routed).
  const source = new UsbredirConnectSource({ address: { host: '10.255.255.1', port: 9 }, timeoutMs: 5000 });
  source.start();
  await new Promise((r) => setTimeout(r, 50));
  const started = performance.now();
  await source.close();
  assert.ok(performance.now() - started < 1000);
});

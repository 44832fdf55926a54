import assert from 'node:assert/strict';
import { test } from 'node:test';
import { UsbipClient } from '../../src/client/usbip/index.js';
import {
  createGadgetZero,
  GZERO_LOOPBACK_CONFIG,
  GZERO_SOURCE_SINK_CONFIG,
  LB_BULK_IN,
  LB_BULK_OUT,
  patternMismatch,
  SS_ISO_IN,
} from '../../src/devices/gadget-zero/index.js';
import { DeviceRegistry } from '../../src/server/registry.js';
import { UsbipServer } from '../../src/server/usbip/index.js';
import { TransferStatus } from '../../src/usb/status.js';
import { Transfer } from '../../src/usb/transfer.js';
import { setLogSink } from '../../src/util/log.js';
import { bulkIn, bulkOut, control, setConfiguration } from '../support/drive.js';
import { importOverUsbredir } from '../support/usbredir-client-pair.js';

setLogSink('silent');

test('bridge: a device imported over usbredir, re-exported over USB/IP, used by a USB/IP client', async () => {
  const gz = createGadgetZero();
  const pair = await importOverUsbredir(gz);
  const registry = new DeviceRegistry();
  registry.add(pair.remote);
  const usbip = new UsbipServer(registry, { host: '127.0.0.1', port: 0 });
  const { port } = await usbip.listen();
  const dev = await new UsbipClient().importDevice({ host: '127.0.0.1', port }, '1-1');
  try {
    assert.deepEqual(dev.descriptors.device, gz.descriptors.device);
    // SET_CONFIGURATION as a control URB becomes set_configuration on the usbredir side.
    assert.equal((await setConfiguration(dev, GZERO_LOOPBACK_CONFIG)).status, TransferStatus.Ok);
    assert.equal(gz.configuration, GZERO_LOOPBACK_CONFIG);
    assert.equal(pair.remote.configuration, GZERO_LOOPBACK_CONFIG);
    for (const size of [10, 512, 4096]) {
      const data = Buffer.alloc(size, size & 0xff);
      assert.equal((await bulkOut(dev, LB_BULK_OUT, data)).status, TransferStatus.Ok);
      const back = bulkIn(dev, LB_BULK_IN, 4096);
      await back.done;
      assert.deepEqual(back.data.subarray(0, back.actualLength), data);
    }
    // An unlink on the USB/IP side becomes cancel_data_packet on the usbredir side.
    const idle = bulkIn(dev, LB_BULK_IN, 512);
    await new Promise((r) => setTimeout(r, 20));
    dev.cancel(idle);
    await idle.done;
    assert.equal(idle.status, TransferStatus.Cancelled);
  } finally {
    await dev.close();
    await usbip.close();
    await pair.close();
  }
});

test('bridge: usbredir to usbredir (two hops): descriptors, SET_INTERFACE and iso IN through both jitter buffers', async () => {
  const gz = createGadgetZero({ pattern: 1 });
  const inner = await importOverUsbredir(gz);
  const outer = await importOverUsbredir(inner.remote);
  const dev = outer.remote;
  try {
    assert.deepEqual(dev.descriptors.configurations, gz.descriptors.configurations);
    assert.equal((await setConfiguration(dev, GZERO_SOURCE_SINK_CONFIG)).status, TransferStatus.Ok);
    const setIf = { bmRequestType: 0x01, bRequest: 11, wValue: 1, wIndex: 0, wLength: 0 };
    assert.equal((await control(dev, setIf)).status, TransferStatus.Ok);
    assert.deepEqual([gz.alternateSetting(0), inner.remote.alternateSetting(0), dev.alternateSetting(0)], [1, 1, 1]);
    // Iso is real time: a jitter buffer that runs dry (a loaded machine) answers empty packets, as
    // a host controller would. What arrives must be the pattern, and a running stream fills transfers.
    let full = 0;
    for (let i = 0; i < 200 && full < 3; i++) {
      const isoPackets = Array.from({ length: 8 }, (_, j) => ({
        offset: j * 1024,
        length: 1024,
        actualLength: 0,
        status: TransferStatus.Ok,
      }));
      const t = new Transfer({ type: 'isochronous', endpoint: SS_ISO_IN, length: 8192, isoPackets });
      await dev.submit(t);
      assert.equal(t.status, TransferStatus.Ok);
      for (const p of t.isoPackets!) {
        assert.ok(p.actualLength === 0 || p.actualLength === 1024, `packet of ${p.actualLength} bytes`);
        assert.equal(patternMismatch(t.data.subarray(p.offset, p.offset + p.actualLength), 1, 1024), -1);
      }
      if (t.actualLength === 8192) full++;
    }
    assert.equal(full, 3, 'three full transfers once the stream runs');
  } finally {
    await outer.close();
    await inner.close();
  }
});

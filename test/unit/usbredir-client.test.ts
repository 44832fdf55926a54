import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  createGadgetZero,
  fillPattern,
  GZERO_LOOPBACK_CONFIG,
  GZERO_SOURCE_SINK_CONFIG,
  LB_BULK_IN,
  LB_BULK_OUT,
  patternMismatch,
  REQ_CONTROL_READ,
  REQ_CONTROL_WRITE,
  SS_BULK_IN,
  SS_BULK_OUT,
} from '../../src/devices/gadget-zero/index.js';
import { parseDeviceDescriptor } from '../../src/usb/descriptors.js';
import { TransferStatus } from '../../src/usb/status.js';
import { setLogSink } from '../../src/util/log.js';
import { bulkIn, bulkOut, control, setConfiguration } from '../support/drive.js';
import { importOverUsbredir } from '../support/usbredir-client-pair.js';

setLogSink('silent');

test('gadget zero through the usbredir client: descriptors, speed, configuration, vendor control, bulk', async () => {
  const gz = createGadgetZero();
  const pair = await importOverUsbredir(gz);
  const dev = pair.remote;
  try {
    assert.equal(dev.speed, 'high');
    assert.deepEqual(dev.descriptors.device, gz.descriptors.device);
    assert.deepEqual(dev.descriptors.configurations, gz.descriptors.configurations);
    assert.equal(parseDeviceDescriptor(dev.descriptors.device).vendorId, 0x0525);
    assert.equal(dev.configuration, gz.configuration);

    const set = await setConfiguration(dev, GZERO_SOURCE_SINK_CONFIG);
    assert.equal(set.status, TransferStatus.Ok);
    assert.equal(dev.configuration, GZERO_SOURCE_SINK_CONFIG);
    assert.equal(gz.configuration, GZERO_SOURCE_SINK_CONFIG);
    const get = await control(dev, { bmRequestType: 0x80, bRequest: 8, wValue: 0, wIndex: 0, wLength: 1 });
    assert.equal(get.status, TransferStatus.Ok);
    assert.deepEqual([...get.data.subarray(0, get.actualLength)], [GZERO_SOURCE_SINK_CONFIG]);

    // Vendor control write then read back (ctrl_out test of usbtest).
    const payload = Buffer.from(Array.from({ length: 200 }, (_, i) => (i * 7) & 0xff));
    const w = await control(
      dev,
      { bmRequestType: 0x40, bRequest: REQ_CONTROL_WRITE, wValue: 0, wIndex: 0, wLength: 200 },
      payload,
    );
    assert.equal(w.status, TransferStatus.Ok);
    assert.equal(w.actualLength, 200);
    const r = await control(dev, {
      bmRequestType: 0xc0,
      bRequest: REQ_CONTROL_READ,
      wValue: 0,
      wIndex: 0,
      wLength: 200,
    });
    assert.equal(r.status, TransferStatus.Ok);
    assert.deepEqual(r.data.subarray(0, r.actualLength), payload);

    // Source/sink bulk: IN carries the pattern, OUT is accepted.
    const inT = bulkIn(dev, SS_BULK_IN, 4096);
    await inT.done;
    assert.equal(inT.status, TransferStatus.Ok);
    assert.equal(inT.actualLength, 4096);
    assert.equal(patternMismatch(inT.data.subarray(0, 4096), 0, 512), -1);
    const out = await bulkOut(dev, SS_BULK_OUT, fillPattern(Buffer.alloc(4096), 0, 512));
    assert.equal(out.status, TransferStatus.Ok);
    assert.equal(out.actualLength, 4096);
  } finally {
    await pair.close();
  }
});

test('loopback through the usbredir client: data out comes back in', async () => {
  const gz = createGadgetZero();
  const pair = await importOverUsbredir(gz);
  const dev = pair.remote;
  try {
    assert.equal((await setConfiguration(dev, GZERO_LOOPBACK_CONFIG)).status, TransferStatus.Ok);
    for (const size of [1, 512, 4096]) {
      const data = Buffer.from(Array.from({ length: size }, (_, i) => (i * 13 + size) & 0xff));
      const out = await bulkOut(dev, LB_BULK_OUT, data);
      assert.equal(out.status, TransferStatus.Ok);
      const back = bulkIn(dev, LB_BULK_IN, 4096);
      await back.done;
      assert.equal(back.status, TransferStatus.Ok);
      assert.deepEqual(back.data.subarray(0, back.actualLength), data);
    }
  } finally {
    await pair.close();
  }
});

test('cancel through our usbredir host, both orders: pending IN cancelled; IN racing its completion ends once, no data lost', async (ctx) => {
  const gz = createGadgetZero();
  const pair = await importOverUsbredir(gz);
  const dev = pair.remote;
  try {
    assert.equal((await setConfiguration(dev, GZERO_LOOPBACK_CONFIG)).status, TransferStatus.Ok);
    // Nothing to loop back: the IN stays pending until cancelled.
    const idle = bulkIn(dev, LB_BULK_IN, 512);
    await new Promise((r) => setTimeout(r, 20));
    dev.cancel(idle);
    await idle.done;
    assert.equal(idle.status, TransferStatus.Cancelled);
    assert.equal(dev.inFlight, 0);

    // An IN waits on the device; the cancel and the data that completes it race to the host.
    let cancelled = 0;
    let completed = 0;
    for (let i = 0; i < 40; i++) {
      const data = Buffer.from(`packet ${i}`);
      const t = bulkIn(dev, LB_BULK_IN, 512);
      let ends = 0;
      const counted = t.done.then(() => ends++);
      await new Promise((r) => setTimeout(r, 1));
      let out: Promise<unknown>;
      if (i % 2) {
        dev.cancel(t);
        out = bulkOut(dev, LB_BULK_OUT, data);
      } else {
        out = bulkOut(dev, LB_BULK_OUT, data);
        dev.cancel(t);
      }
      await Promise.all([counted, out]);
      assert.equal(ends, 1);
      if (t.status === TransferStatus.Ok) {
        completed++;
        assert.deepEqual(t.data.subarray(0, t.actualLength), data);
        continue;
      }
      assert.equal(t.status, TransferStatus.Cancelled);
      cancelled++;
      // Cancelled before the data came: the data is still there for the next IN.
      const again = bulkIn(dev, LB_BULK_IN, 512);
      await again.done;
      assert.deepEqual(again.data.subarray(0, again.actualLength), data);
    }
    ctx.diagnostic(`cancel won ${cancelled} times, the completion ${completed} times`);
    assert.ok(cancelled > 0 && completed > 0, 'both orders happened');
    assert.equal(cancelled + completed, 40);
    assert.equal(dev.inFlight, 0);
  } finally {
    await pair.close();
  }
});

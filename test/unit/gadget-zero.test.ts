import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  createGadgetZero,
  fillPattern,
  GZERO_LOOPBACK_CONFIG,
  GZERO_SERIAL,
  GZERO_SOURCE_SINK_CONFIG,
  LB_BULK_IN,
  LB_BULK_OUT,
  patternMismatch,
  REQ_CONTROL_READ,
  REQ_CONTROL_WRITE,
  SS_BULK_IN,
  SS_BULK_OUT,
  SS_ISO_IN,
  SS_ISO_OUT,
} from '../../src/devices/gadget-zero/index.js';
import {
  DescriptorType,
  decodeStringDescriptor,
  parseConfiguration,
  parseDeviceDescriptor,
} from '../../src/usb/descriptors.js';
import { TransferStatus } from '../../src/usb/status.js';
import { Transfer } from '../../src/usb/transfer.js';
import { setLogSink } from '../../src/util/log.js';
import { bulkIn, bulkOut, control, getDescriptor, setConfiguration } from '../support/drive.js';

setLogSink('silent');

const vendorWrite = (length: number, wValue = 0, wIndex = 0) => ({
  bmRequestType: 0x40,
  bRequest: REQ_CONTROL_WRITE,
  wValue,
  wIndex,
  wLength: length,
});
const vendorRead = (length: number, wValue = 0, wIndex = 0) => ({
  bmRequestType: 0xc0,
  bRequest: REQ_CONTROL_READ,
  wValue,
  wIndex,
  wLength: length,
});
const setInterface = (alt: number) => ({ bmRequestType: 0x01, bRequest: 11, wValue: alt, wIndex: 0, wLength: 0 });
const endpointStatus = (ep: number) => ({ bmRequestType: 0x82, bRequest: 0, wValue: 0, wIndex: ep, wLength: 2 });
const clearHalt = (ep: number) => ({ bmRequestType: 0x02, bRequest: 1, wValue: 0, wIndex: ep, wLength: 0 });

async function stringAt(dev: ReturnType<typeof createGadgetZero>, index: number): Promise<string> {
  const t = await getDescriptor(dev, DescriptorType.String, index, 255, 0x0409);
  return decodeStringDescriptor(t.data.subarray(0, t.actualLength));
}

test('device descriptor: 0525:a4a0, bcdUSB 2.00, vendor class, two configurations, g_zero strings', async () => {
  const dev = createGadgetZero();
  const d = parseDeviceDescriptor((await getDescriptor(dev, DescriptorType.Device, 0, 18)).data);
  assert.deepEqual(
    [d.vendorId, d.productId, d.bcdUSB, d.deviceClass, d.numConfigurations],
    [0x0525, 0xa4a0, 0x0200, 0xff, 2],
  );
  assert.equal(await stringAt(dev, d.iProduct), 'Gadget Zero');
  assert.equal(await stringAt(dev, d.iSerialNumber), GZERO_SERIAL);
  const status = await control(dev, { bmRequestType: 0x80, bRequest: 0, wValue: 0, wIndex: 0, wLength: 2 });
  assert.equal(status.data[0]! & 1, 1, 'self-powered');
});

test('configurations: source/sink (3) first with bulk alt 0 and bulk+iso alt 1, loopback (2) second', async () => {
  const dev = createGadgetZero();
  const ss = parseConfiguration((await getDescriptor(dev, DescriptorType.Configuration, 0, 1024)).data);
  const lb = parseConfiguration((await getDescriptor(dev, DescriptorType.Configuration, 1, 1024)).data);
  assert.equal(ss.value, GZERO_SOURCE_SINK_CONFIG);
  assert.equal(lb.value, GZERO_LOOPBACK_CONFIG);
  assert.equal(ss.attributes & 0x40, 0x40, 'self-powered');
  assert.equal(await stringAt(dev, ss.iConfiguration), 'source and sink data');
  assert.equal(await stringAt(dev, lb.iConfiguration), 'loop input to output');
  const [alt0, alt1] = ss.interfaces[0]!.alternates;
  assert.equal(alt0!.interfaceClass, 0xff);
  assert.deepEqual(
    alt0!.endpoints.map((e) => [e.address, e.type, e.maxPacketSize]),
    [
      [SS_BULK_IN, 'bulk', 512],
      [SS_BULK_OUT, 'bulk', 512],
    ],
  );
  assert.deepEqual(
    alt1!.endpoints.map((e) => [e.address, e.type, e.maxPacketSize, e.interval]),
    [
      [SS_BULK_IN, 'bulk', 512, 0],
      [SS_BULK_OUT, 'bulk', 512, 0],
      [SS_ISO_IN, 'isochronous', 1024, 4],
      [SS_ISO_OUT, 'isochronous', 1024, 4],
    ],
  );
  assert.deepEqual(
    lb.interfaces[0]!.alternates[0]!.endpoints.map((e) => [e.address, e.type]),
    [
      [LB_BULK_IN, 'bulk'],
      [LB_BULK_OUT, 'bulk'],
    ],
  );
  // Full speed (other-speed configuration): iso wMaxPacketSize is capped at 1023, sink listed first.
  const other = parseConfiguration((await getDescriptor(dev, DescriptorType.OtherSpeedConfiguration, 0, 1024)).data);
  assert.deepEqual(
    other.interfaces[0]!.alternates[1]!.endpoints.map((e) => [e.address, e.maxPacketSize]),
    [
      [SS_BULK_OUT, 64],
      [SS_BULK_IN, 64],
      [SS_ISO_OUT, 1023],
      [SS_ISO_IN, 1023],
    ],
  );
  const swapped = createGadgetZero({ loopDefault: true });
  const first = parseConfiguration((await getDescriptor(swapped, DescriptorType.Configuration, 0, 1024)).data);
  assert.equal(first.value, GZERO_LOOPBACK_CONFIG, 'loopdefault puts loopback first');
});

test('vendor 0x5b stores the data stage, 0x5c reads it back; other shapes STALL', async () => {
  const dev = createGadgetZero();
  assert.equal((await setConfiguration(dev, 3)).status, TransferStatus.Ok);
  for (const len of [1, 64, 255, 4096]) {
    const data = Buffer.alloc(len);
    for (let i = 0; i < len; i++) data[i] = (i + len) & 0xff;
    assert.equal((await control(dev, vendorWrite(len), data)).status, TransferStatus.Ok);
    const r = await control(dev, vendorRead(len));
    assert.equal(r.status, TransferStatus.Ok);
    assert.deepEqual(r.data.subarray(0, r.actualLength), data, `round trip of ${len} bytes`);
  }
  const stall = async (s: Parameters<typeof control>[1], data?: Buffer) =>
    assert.equal((await control(dev, s, data)).status, TransferStatus.Stall, JSON.stringify(s));
  await stall(vendorWrite(4097), Buffer.alloc(4097));
  await stall(vendorRead(4097));
  await stall(vendorWrite(4, 1), Buffer.alloc(4));
  await stall(vendorRead(4, 0, 1));
  await stall({ ...vendorWrite(4), bmRequestType: 0x41 }, Buffer.alloc(4));
  await stall({ ...vendorRead(4), bmRequestType: 0xc1 });
  await stall({ ...vendorRead(4), bRequest: 0x5d });
  // The device keeps working after the STALLs.
  assert.equal((await control(dev, vendorRead(2))).status, TransferStatus.Ok);
  // The loopback configuration has no vendor requests (g_zero routes them to source/sink only).
  await setConfiguration(dev, 2);
  await stall(vendorRead(4));
});

test('pattern helpers: zeros and mod63 restart at every packet boundary', () => {
  const b = fillPattern(Buffer.alloc(1100), 1, 512);
  assert.deepEqual([b[0], b[62], b[63], b[511], b[512], b[513]], [0, 62, 0, 511 % 63, 0, 1]);
  assert.equal(patternMismatch(b, 1, 512), -1);
  b[700] ^= 1;
  assert.equal(patternMismatch(b, 1, 512), 700);
  assert.equal(patternMismatch(Buffer.alloc(10), 0, 512), -1);
  assert.equal(patternMismatch(Buffer.from([0, 0, 3]), 0, 512), 2);
  assert.equal(patternMismatch(Buffer.from([9, 9]), 2, 512), -1, 'pattern 2 checks nothing');
});

for (const pattern of [0, 1] as const) {
  test(`source/sink pattern ${pattern}: IN is the pattern at any length, OUT checks it and halts on a bad byte`, async () => {
    const dev = createGadgetZero({ pattern });
    await setConfiguration(dev, 3);
    for (const len of [0, 1, 511, 512, 513, 2048, 65536]) {
      const t = bulkIn(dev, SS_BULK_IN, len, { shortNotOk: true });
      await t.done;
      assert.equal(t.status, TransferStatus.Ok);
      assert.equal(t.actualLength, len);
      assert.equal(patternMismatch(t.data.subarray(0, len), pattern, 512), -1);
      assert.equal(pattern === 1 && len > 100 ? t.data[100] : 0, pattern === 1 && len > 100 ? 100 % 63 : 0);
      const o = await bulkOut(dev, SS_BULK_OUT, Buffer.from(t.data.subarray(0, len)));
      assert.equal(o.status, TransferStatus.Ok, `OUT of ${len} pattern bytes`);
      assert.equal(o.actualLength, len);
    }
    // A bad byte in the first 4096-byte request of a 12 KiB transfer: that request is received,
    // the endpoint halts, the rest of the transfer meets the STALL.
    const bad = fillPattern(Buffer.alloc(12288), pattern, 512);
    bad[1000] = 0x77;
    const o = await bulkOut(dev, SS_BULK_OUT, bad);
    assert.equal(o.status, TransferStatus.Stall);
    assert.equal(o.actualLength, 4096);
    assert.equal((await control(dev, endpointStatus(SS_BULK_OUT))).data[0], 1, 'OUT halted');
    assert.equal((await bulkOut(dev, SS_BULK_OUT, Buffer.alloc(8))).status, TransferStatus.Stall);
    const inMeanwhile = bulkIn(dev, SS_BULK_IN, 64);
    await inMeanwhile.done;
    assert.equal(inMeanwhile.status, TransferStatus.Ok, 'IN unaffected');
    assert.equal((await control(dev, clearHalt(SS_BULK_OUT))).status, TransferStatus.Ok);
    assert.equal((await control(dev, endpointStatus(SS_BULK_OUT))).data[0], 0);
    const good = await bulkOut(dev, SS_BULK_OUT, fillPattern(Buffer.alloc(100), pattern, 512));
    assert.equal(good.status, TransferStatus.Ok, 'sinks again after CLEAR_FEATURE(HALT)');
    // A bad byte in the last request of a transfer: the whole transfer is received, then the halt.
    const late = fillPattern(Buffer.alloc(600), pattern, 512);
    late[599] = 0x55;
    const l = await bulkOut(dev, SS_BULK_OUT, late);
    assert.deepEqual([l.status, l.actualLength], [TransferStatus.Ok, 600]);
    assert.equal((await control(dev, endpointStatus(SS_BULK_OUT))).data[0], 1);
  });
}

function isoTransfer(endpoint: number, packets: number, size: number, data?: Buffer): Transfer {
  return new Transfer({
    type: 'isochronous',
    endpoint,
    length: packets * size,
    ...(data ? { data } : {}),
    isoPackets: Array.from({ length: packets }, (_, i) => ({
      offset: i * size,
      length: size,
      actualLength: 0,
      status: TransferStatus.Ok,
    })),
  });
}

test('alt setting 1: iso IN packets carry the pattern, iso OUT is accepted, paced one packet per interval', async () => {
  const dev = createGadgetZero({ pattern: 1 });
  await setConfiguration(dev, 3);
  const notYet = isoTransfer(SS_ISO_IN, 1, 1024);
  await dev.submit(notYet);
  assert.equal(notYet.status, TransferStatus.Invalid, 'no iso endpoint in alt 0');
  assert.equal((await control(dev, setInterface(1))).status, TransferStatus.Ok);
  const start = performance.now();
  const tin = isoTransfer(SS_ISO_IN, 8, 1024);
  const tout = isoTransfer(SS_ISO_OUT, 8, 1024, Buffer.alloc(8192, 0x33));
  await Promise.all([dev.submit(tin), dev.submit(tout)]);
  const ms = performance.now() - start;
  assert.ok(ms >= 7, `8 packets at bInterval 4 (1 ms) took ${ms.toFixed(1)} ms`);
  assert.equal(tin.status, TransferStatus.Ok);
  assert.equal(tin.actualLength, 8192);
  for (const p of tin.isoPackets!) {
    assert.deepEqual([p.status, p.actualLength], [TransferStatus.Ok, 1024]);
    assert.equal(patternMismatch(tin.data.subarray(p.offset, p.offset + 1024), 1, 1024), -1);
  }
  assert.equal(tout.status, TransferStatus.Ok);
  assert.deepEqual(
    tout.isoPackets!.map((p) => p.actualLength),
    Array(8).fill(1024),
  );
  // Bulk still works in alt 1; cancel of a pending iso transfer completes it as cancelled.
  const b = bulkIn(dev, SS_BULK_IN, 512);
  await b.done;
  assert.equal(b.status, TransferStatus.Ok);
  const pending = isoTransfer(SS_ISO_IN, 50, 1024);
  const done = dev.submit(pending);
  dev.cancel(pending);
  await done;
  assert.equal(pending.status, TransferStatus.Cancelled);
  // Back to alt 0: the iso endpoints are gone.
  await control(dev, setInterface(0));
  const gone = isoTransfer(SS_ISO_OUT, 1, 1024, Buffer.alloc(1024));
  await dev.submit(gone);
  assert.equal(gone.status, TransferStatus.Invalid);
  await dev.close();
});

test('loopback: OUT comes back IN in order, in buflen pieces; full buffers hold OUT back, nothing lost', async () => {
  const dev = createGadgetZero({ qlen: 4, bulkBuflen: 1024 });
  await setConfiguration(dev, 2);
  const sent: Buffer[] = [];
  const outs: Promise<Transfer>[] = [];
  // 4 requests × 1024 bytes of room: the first 4 KiB is taken, the rest waits.
  for (let i = 0; i < 6; i++) {
    const data = Buffer.alloc(1024 + (i % 2) * 512, i + 1).subarray(0, i === 5 ? 10 : undefined);
    sent.push(data);
    outs.push(bulkOut(dev, LB_BULK_OUT, data));
  }
  const settled = new Set<number>();
  outs.forEach((p, i) => void p.then(() => settled.add(i)));
  await new Promise((r) => setImmediate(r));
  assert.deepEqual([...settled].sort(), [0, 1, 2], 'only what fits in qlen × buflen is taken');
  const back: Buffer[] = [];
  while (back.reduce((n, b) => n + b.length, 0) < sent.reduce((n, b) => n + b.length, 0)) {
    const t = bulkIn(dev, LB_BULK_IN, 4096);
    await t.done;
    assert.equal(t.status, TransferStatus.Ok);
    back.push(Buffer.from(t.data.subarray(0, t.actualLength)));
    assert.ok(t.actualLength <= 1024, 'one request per IN transfer');
  }
  assert.deepEqual(Buffer.concat(back), Buffer.concat(sent));
  for (const o of await Promise.all(outs)) assert.equal(o.status, TransferStatus.Ok);
  // A short IN transfer takes part of a request; the rest comes next.
  await bulkOut(dev, LB_BULK_OUT, Buffer.from('hello world'));
  const a = bulkIn(dev, LB_BULK_IN, 5);
  const b = bulkIn(dev, LB_BULK_IN, 512);
  await Promise.all([a.done, b.done]);
  assert.equal(`${a.data.subarray(0, a.actualLength)}|${b.data.subarray(0, b.actualLength)}`, 'hello| world');
  // Nothing buffered: an IN transfer waits (NAK) until OUT data arrives.
  const waiting = bulkIn(dev, LB_BULK_IN, 64);
  let done = false;
  void waiting.done.then(() => {
    done = true;
  });
  await new Promise((r) => setImmediate(r));
  assert.equal(done, false);
  await bulkOut(dev, LB_BULK_OUT, Buffer.from([1, 2, 3]));
  await waiting.done;
  assert.deepEqual(waiting.data.subarray(0, waiting.actualLength), Buffer.from([1, 2, 3]));
  // Switching configuration drops what was buffered.
  await bulkOut(dev, LB_BULK_OUT, Buffer.from([9]));
  await setConfiguration(dev, 2);
  const after = bulkIn(dev, LB_BULK_IN, 64);
  await new Promise((r) => setImmediate(r));
  dev.cancel(after);
  await after.done;
  assert.equal(after.status, TransferStatus.Cancelled);
});

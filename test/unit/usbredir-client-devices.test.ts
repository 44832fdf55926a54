import assert from 'node:assert/strict';
import { test } from 'node:test';
import { GUEST_CAPS } from '../../src/client/usbredir/connection.js';
import {
  createGadgetZero,
  GZERO_SOURCE_SINK_CONFIG,
  patternMismatch,
  SS_BULK_IN,
  SS_ISO_IN,
  SS_ISO_OUT,
} from '../../src/devices/gadget-zero/index.js';
import { createKeyboard } from '../../src/devices/hid/index.js';
import { MemoryBackend } from '../../src/devices/mass-storage/backend/index.js';
import { BOT_IN, BOT_OUT } from '../../src/devices/mass-storage/bot-function.js';
import { CSW_SIGNATURE, encodeCbw } from '../../src/devices/mass-storage/bot-wire.js';
import { createBotDisk } from '../../src/devices/mass-storage/index.js';
import { Cap } from '../../src/protocol/usbredir/constants.js';
import type { UsbDevice } from '../../src/usb/device.js';
import { TransferStatus } from '../../src/usb/status.js';
import { type IsoPacket, Transfer } from '../../src/usb/transfer.js';
import { setLogSink } from '../../src/util/log.js';
import { bulkIn, bulkOut, control, setConfiguration } from '../support/drive.js';
import { prng } from '../support/prng.js';
import { importOverUsbredir } from '../support/usbredir-client-pair.js';

setLogSink('silent');

let tag = 1;
function rw10(op: number, lba: number, blocks: number): Buffer {
  const cdb = [op, 0, lba >>> 24, (lba >> 16) & 0xff, (lba >> 8) & 0xff, lba & 0xff, 0, blocks >> 8, blocks & 0xff, 0];
  return Buffer.from(cdb);
}

async function botCommand(dev: UsbDevice, cdb: Buffer, dataIn: boolean, length: number, out?: Buffer) {
  const t = ++tag;
  const c = await bulkOut(dev, BOT_OUT, encodeCbw({ tag: t, dataTransferLength: length, dataIn, lun: 0, cdb }));
  assert.equal(c.status, TransferStatus.Ok, 'CBW');
  let data: Buffer | undefined;
  if (dataIn) {
    const d = bulkIn(dev, BOT_IN, length);
    await d.done;
    assert.equal(d.status, TransferStatus.Ok, 'data IN');
    data = d.data.subarray(0, d.actualLength);
  } else if (out) {
    const d = await bulkOut(dev, BOT_OUT, out);
    assert.deepEqual([d.status, d.actualLength], [TransferStatus.Ok, out.length], 'data OUT');
  }
  const s = bulkIn(dev, BOT_IN, 13);
  await s.done;
  assert.equal(s.data.readUInt32LE(0), CSW_SIGNATURE);
  assert.deepEqual([s.data.readUInt32LE(4), s.data.readUInt32LE(8), s.data[12]], [t, 0, 0], 'CSW');
  return data;
}

async function diskRoundTrip(caps?: readonly number[]) {
  const backend = new MemoryBackend(4 * 1024 * 1024);
  const disk = createBotDisk(backend, { name: 'disk' });
  const pair = await importOverUsbredir(disk, caps ? { caps } : {});
  const dev = pair.remote;
  try {
    assert.equal((await setConfiguration(dev, 1)).status, TransferStatus.Ok);
    const rand = prng(7);
    const image = Buffer.alloc(256 * 1024);
    for (let i = 0; i < image.length; i++) image[i] = Math.floor(rand() * 256);
    // 256 KiB WRITE(10) at LBA 100, then READ(10) back, and the backing store holds it too.
    await botCommand(dev, rw10(0x2a, 100, 512), false, image.length, image);
    assert.deepEqual(await backend.read(100 * 512, image.length), image);
    const back = await botCommand(dev, rw10(0x28, 100, 512), true, image.length);
    assert.deepEqual(back, image);
    const small = await botCommand(dev, rw10(0x28, 101, 1), true, 512);
    assert.deepEqual(small, image.subarray(512, 1024));
  } finally {
    await pair.close();
  }
}

test('disk (BOT) through the usbredir client: WRITE(10) and READ(10) of 256 KiB, data checked', async () => {
  await diskRoundTrip();
});

test('disk through a client without 32bits_bulk_length: 256 KiB transfers split in pieces and rejoined', async () => {
  await diskRoundTrip(GUEST_CAPS.filter((c) => c !== Cap.BulkLength32Bits));
});

test('disk through a client without 64bits_ids: 32-bit ids', async () => {
  await diskRoundTrip(GUEST_CAPS.filter((c) => c !== Cap.Ids64Bits));
});

function isoTransfer(endpoint: number, packets: number, size: number, data?: Buffer): Transfer {
  const isoPackets: IsoPacket[] = [];
  for (let i = 0; i < packets; i++)
    isoPackets.push({ offset: i * size, length: size, actualLength: 0, status: TransferStatus.Ok });
  return new Transfer({ type: 'isochronous', endpoint, length: packets * size, isoPackets, ...(data ? { data } : {}) });
}

const setInterface = (alt: number) => ({ bmRequestType: 0x01, bRequest: 11, wValue: alt, wIndex: 0, wLength: 0 });

test('gadget zero iso through the usbredir client: SET_INTERFACE refreshes the endpoints, iso IN after the jitter buffer, iso OUT', async () => {
  const gz = createGadgetZero({ pattern: 1 });
  const pair = await importOverUsbredir(gz);
  const dev = pair.remote;
  try {
    assert.equal((await setConfiguration(dev, GZERO_SOURCE_SINK_CONFIG)).status, TransferStatus.Ok);
    const before = isoTransfer(SS_ISO_IN, 1, 1024);
    await dev.submit(before);
    assert.equal(before.status, TransferStatus.Invalid, 'alt 0 has no iso endpoint');

    assert.equal((await control(dev, setInterface(1))).status, TransferStatus.Ok);
    assert.equal(dev.alternateSetting(0), 1);
    assert.equal(gz.alternateSetting(0), 1);
    const getIf = await control(dev, { bmRequestType: 0x81, bRequest: 10, wValue: 0, wIndex: 0, wLength: 1 });
    assert.deepEqual([getIf.status, getIf.data[0]], [TransferStatus.Ok, 1]);

    const start = performance.now();
    const tin = isoTransfer(SS_ISO_IN, 8, 1024);
    await dev.submit(tin);
    const ms = performance.now() - start;
    assert.ok(ms >= 50, `the first iso IN waits for ~60 ms of packets, took ${ms.toFixed(1)} ms`);
    assert.equal(tin.status, TransferStatus.Ok);
    assert.equal(tin.actualLength, 8192);
    for (const p of tin.isoPackets!) {
      assert.deepEqual([p.status, p.actualLength], [TransferStatus.Ok, 1024]);
      assert.equal(patternMismatch(tin.data.subarray(p.offset, p.offset + 1024), 1, 1024), -1);
    }
    // The next ones come from the buffer.
    for (let i = 0; i < 5; i++) {
      const more = isoTransfer(SS_ISO_IN, 8, 1024);
      await dev.submit(more);
      assert.equal(more.actualLength, 8192);
    }

    const tout = isoTransfer(SS_ISO_OUT, 8, 1024, Buffer.alloc(8192, 0x33));
    await dev.submit(tout);
    assert.deepEqual([tout.status, tout.actualLength], [TransferStatus.Ok, 8192]);
    assert.ok(tout.isoPackets!.every((p) => p.actualLength === 1024 && p.status === TransferStatus.Ok));

    const b = bulkIn(dev, SS_BULK_IN, 512);
    await b.done;
    assert.equal(b.status, TransferStatus.Ok);

    // A pending iso IN is cancelled by SET_INTERFACE (its stream stops) or by cancel.
    const parked = isoTransfer(SS_ISO_IN, 200, 1024);
    const parkedDone = dev.submit(parked);
    dev.cancel(parked);
    await parkedDone;
    assert.equal(parked.status, TransferStatus.Cancelled);

    assert.equal((await control(dev, setInterface(0))).status, TransferStatus.Ok);
    assert.equal(dev.alternateSetting(0), 0);
    const after = isoTransfer(SS_ISO_OUT, 1, 1024, Buffer.alloc(1024));
    await dev.submit(after);
    assert.equal(after.status, TransferStatus.Invalid, 'alt 0 again: no iso endpoint');
  } finally {
    await pair.close();
  }
});

test('keyboard through the usbredir client: interrupt IN reports buffered until asked, in order', async () => {
  const kb = createKeyboard();
  const pair = await importOverUsbredir(kb);
  const dev = pair.remote;
  try {
    assert.equal((await setConfiguration(dev, 1)).status, TransferStatus.Ok);
    const first = new Transfer({ type: 'interrupt', endpoint: 0x81, length: 8 });
    const firstDone = dev.submit(first);
    kb.input.type('ab');
    await firstDone;
    assert.equal(first.status, TransferStatus.Ok);
    assert.deepEqual([...first.data.subarray(0, first.actualLength)], [0, 0, 4, 0, 0, 0, 0, 0]);
    // The rest of the reports arrive while nobody asks: they wait in the buffer.
    await new Promise((r) => setTimeout(r, 50));
    const reports: number[][] = [];
    for (let i = 0; i < 3; i++) {
      const t = new Transfer({ type: 'interrupt', endpoint: 0x81, length: 8 });
      await dev.submit(t);
      assert.equal(t.status, TransferStatus.Ok);
      reports.push([...t.data.subarray(0, t.actualLength)]);
    }
    assert.deepEqual(reports, [
      [0, 0, 0, 0, 0, 0, 0, 0],
      [0, 0, 5, 0, 0, 0, 0, 0],
      [0, 0, 0, 0, 0, 0, 0, 0],
    ]);
    // A waiting interrupt IN ends Cancelled on cancel; the device still works afterwards.
    const idle = new Transfer({ type: 'interrupt', endpoint: 0x81, length: 8 });
    const idleDone = dev.submit(idle);
    dev.cancel(idle);
    await idleDone;
    assert.equal(idle.status, TransferStatus.Cancelled);
    // SET_CONFIGURATION stops interrupt receiving; the next transfer starts it again.
    const parked = new Transfer({ type: 'interrupt', endpoint: 0x81, length: 8 });
    const parkedDone = dev.submit(parked);
    assert.equal((await setConfiguration(dev, 1)).status, TransferStatus.Ok);
    await parkedDone;
    assert.equal(parked.status, TransferStatus.Cancelled);
    const again = new Transfer({ type: 'interrupt', endpoint: 0x81, length: 8 });
    const againDone = dev.submit(again);
    kb.input.type('c');
    await againDone;
    assert.deepEqual([...again.data.subarray(0, again.actualLength)], [0, 0, 6, 0, 0, 0, 0, 0]);
  } finally {
    await pair.close();
  }
});

test('port reset through the usbredir client: back to the configuration the host reports', async () => {
  const gz = createGadgetZero();
  const pair = await importOverUsbredir(gz);
  const dev = pair.remote;
  try {
    assert.equal((await setConfiguration(dev, GZERO_SOURCE_SINK_CONFIG)).status, TransferStatus.Ok);
    await dev.reset();
    assert.equal(dev.configuration, gz.configuration);
    assert.equal((await setConfiguration(dev, GZERO_SOURCE_SINK_CONFIG)).status, TransferStatus.Ok);
    const b = bulkIn(dev, SS_BULK_IN, 512);
    await b.done;
    assert.equal(b.status, TransferStatus.Ok);
  } finally {
    await pair.close();
  }
});

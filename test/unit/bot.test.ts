import assert from 'node:assert/strict';
import { test } from 'node:test';
import { MemoryBackend } from '../../src/devices/mass-storage/backend/index.js';
import { BOT_IN, BOT_OUT } from '../../src/devices/mass-storage/bot-function.js';
import { CSW_SIGNATURE, encodeCbw } from '../../src/devices/mass-storage/bot-wire.js';
import { createBotDisk } from '../../src/devices/mass-storage/index.js';
import type { UsbDevice } from '../../src/usb/device.js';
import { TransferStatus } from '../../src/usb/status.js';
import { bulkIn, bulkOut, control, setConfiguration } from '../support/drive.js';

const BLOCKS = 2048;

async function makeDisk() {
  const backend = new MemoryBackend(BLOCKS * 512);
  const pattern = Buffer.alloc(BLOCKS * 512);
  for (let i = 0; i < pattern.length; i++) pattern[i] = (i * 7 + (i >> 9)) & 0xff;
  await backend.write(0, pattern);
  const dev = createBotDisk(backend, { name: 'test disk' });
  await setConfiguration(dev, 1);
  return { dev, backend, pattern };
}

let tag = 100;
function cbw(cdb: number[], length: number, dataIn: boolean) {
  return encodeCbw({ tag: ++tag, dataTransferLength: length, dataIn, lun: 0, cdb: Buffer.from(cdb) });
}

function rw10(op: number, lba: number, blocks: number): number[] {
  return [op, 0, lba >>> 24, (lba >> 16) & 0xff, (lba >> 8) & 0xff, lba & 0xff, 0, blocks >> 8, blocks & 0xff, 0];
}

async function csw(dev: UsbDevice) {
  const t = bulkIn(dev, BOT_IN, 13);
  await t.done;
  assert.equal(t.status, TransferStatus.Ok, 'CSW read');
  assert.equal(t.data.readUInt32LE(0), CSW_SIGNATURE);
  return { tag: t.data.readUInt32LE(4), residue: t.data.readUInt32LE(8), status: t.data[12] };
}

async function inCommand(dev: UsbDevice, cdb: number[], length: number) {
  await bulkOut(dev, BOT_OUT, cbw(cdb, length, true));
  const data = bulkIn(dev, BOT_IN, length);
  await data.done;
  return { data, csw: await csw(dev) };
}

test('Get Max LUN answers 0; bad class requests stall', async () => {
  const { dev } = await makeDisk();
  const t = await control(dev, { bmRequestType: 0xa1, bRequest: 0xfe, wValue: 0, wIndex: 0, wLength: 1 });
  assert.deepEqual([...t.data], [0]);
  const bad = await control(dev, { bmRequestType: 0xa1, bRequest: 0xfe, wValue: 1, wIndex: 0, wLength: 1 });
  assert.equal(bad.status, TransferStatus.Stall);
});

test('INQUIRY and READ(10) return data with exact residues', async () => {
  const { dev, pattern } = await makeDisk();
  const inq = await inCommand(dev, [0x12, 0, 0, 0, 36, 0], 36);
  assert.equal(inq.data.actualLength, 36);
  assert.deepEqual(inq.csw, { tag, residue: 0, status: 0 });
  const rd = await inCommand(dev, rw10(0x28, 10, 8), 4096);
  assert.ok(rd.data.data.equals(pattern.subarray(10 * 512, 18 * 512)));
  assert.deepEqual(rd.csw, { tag, residue: 0, status: 0 });
});

test('an IN transfer posted before the command waits for its data', async () => {
  const { dev, pattern } = await makeDisk();
  const early = bulkIn(dev, BOT_IN, 512);
  await bulkOut(dev, BOT_OUT, cbw(rw10(0x28, 3, 1), 512, true));
  await early.done;
  assert.ok(early.data.equals(pattern.subarray(3 * 512, 4 * 512)));
  assert.equal((await csw(dev)).status, 0);
});

test('WRITE(10) lands in the backend before the CSW, in one or several OUT transfers', async () => {
  const { dev, backend } = await makeDisk();
  const data = Buffer.alloc(240 * 512, 0xa5);
  await bulkOut(dev, BOT_OUT, cbw(rw10(0x2a, 100, 240), data.length, false));
  const out = await bulkOut(dev, BOT_OUT, data);
  assert.equal(out.actualLength, data.length);
  assert.ok((await backend.read(100 * 512, data.length)).equals(data));
  assert.deepEqual(await csw(dev), { tag, residue: 0, status: 0 });

  const split = Buffer.alloc(3 * 512);
  split.fill(1, 0, 512).fill(2, 512, 1024).fill(3, 1024);
  await bulkOut(dev, BOT_OUT, cbw(rw10(0x2a, 7, 3), split.length, false));
  await bulkOut(dev, BOT_OUT, split.subarray(0, 700));
  await bulkOut(dev, BOT_OUT, split.subarray(700, 1100));
  await bulkOut(dev, BOT_OUT, split.subarray(1100));
  assert.equal((await csw(dev)).status, 0);
  assert.ok((await backend.read(7 * 512, split.length)).equals(split));
});

test('host expects more than the device has (Hi > Di): short data, residue reported', async () => {
  const { dev } = await makeDisk();
  const r = await inCommand(dev, [0x1a, 0, 0x3f, 0, 192, 0], 192);
  assert.ok(r.data.actualLength < 192 && r.data.actualLength >= 4);
  assert.equal(r.csw.residue, 192 - r.data.actualLength);
  assert.equal(r.csw.status, 0);
});

test('out-of-range READ fails with sense LBA OUT OF RANGE', async () => {
  const { dev } = await makeDisk();
  const r = await inCommand(dev, rw10(0x28, BLOCKS - 1, 2), 1024);
  assert.equal(r.data.actualLength, 0);
  assert.deepEqual(r.csw, { tag, residue: 1024, status: 1 });
  const sense = await inCommand(dev, [0x03, 0, 0, 0, 18, 0], 18);
  assert.equal(sense.data.data[2]! & 0x0f, 0x05);
  assert.equal(sense.data.data[12], 0x21);
});

test('phase errors halt the data pipe and report status 2', async () => {
  const { dev } = await makeDisk();
  // Host expects IN, device wants OUT (WRITE).
  await bulkOut(dev, BOT_OUT, cbw(rw10(0x2a, 0, 1), 512, true));
  const data = bulkIn(dev, BOT_IN, 512);
  await data.done;
  assert.equal(data.status, TransferStatus.Stall);
  await control(dev, { bmRequestType: 0x02, bRequest: 1, wValue: 0, wIndex: BOT_IN, wLength: 0 });
  assert.equal((await csw(dev)).status, 2);
  // Host expects no data, device wants to send some.
  await bulkOut(dev, BOT_OUT, cbw(rw10(0x28, 0, 1), 0, true));
  assert.equal((await csw(dev)).status, 2);
  // Device would send more than the host asked for.
  await bulkOut(dev, BOT_OUT, cbw(rw10(0x28, 0, 4), 512, true));
  const short = bulkIn(dev, BOT_IN, 512);
  await short.done;
  assert.equal(short.status, TransferStatus.Stall);
  await control(dev, { bmRequestType: 0x02, bRequest: 1, wValue: 0, wIndex: BOT_IN, wLength: 0 });
  assert.equal((await csw(dev)).status, 2);
});

test('an invalid CBW wedges both pipes until Reset Recovery', async () => {
  const { dev } = await makeDisk();
  await bulkOut(dev, BOT_OUT, Buffer.from('not a command block wrapper'));
  const t = bulkIn(dev, BOT_IN, 13);
  await t.done;
  assert.equal(t.status, TransferStatus.Stall);
  const clear = (ep: number) => control(dev, { bmRequestType: 0x02, bRequest: 1, wValue: 0, wIndex: ep, wLength: 0 });
  await clear(BOT_IN);
  const still = bulkIn(dev, BOT_IN, 13);
  await still.done;
  assert.equal(still.status, TransferStatus.Stall, 'CLEAR_FEATURE alone must not unwedge');
  const reset = await control(dev, { bmRequestType: 0x21, bRequest: 0xff, wValue: 0, wIndex: 0, wLength: 0 });
  assert.equal(reset.status, TransferStatus.Ok);
  await clear(BOT_IN);
  await clear(BOT_OUT);
  const inq = await inCommand(dev, [0x12, 0, 0, 0, 36, 0], 36);
  assert.equal(inq.csw.status, 0);
});

test('a pending IN can be cancelled; a bus reset cancels and reports UNIT ATTENTION', async () => {
  const { dev } = await makeDisk();
  const t = bulkIn(dev, BOT_IN, 13);
  dev.cancel(t);
  await t.done;
  assert.equal(t.status, TransferStatus.Cancelled);
  const t2 = bulkIn(dev, BOT_IN, 13);
  await dev.reset();
  await t2.done;
  assert.equal(t2.status, TransferStatus.Cancelled);
  await setConfiguration(dev, 1);
  await bulkOut(dev, BOT_OUT, cbw([0, 0, 0, 0, 0, 0], 0, false));
  assert.equal((await csw(dev)).status, 1);
  const sense = await inCommand(dev, [0x03, 0, 0, 0, 18, 0], 18);
  assert.equal(sense.data.data[2]! & 0x0f, 0x06);
});

test('a SuperSpeed disk has USB 3 descriptors: bcdUSB 3.2, 1024-byte bulk with companions, BOS, no qualifier', async () => {
  const { getDescriptor } = await import('../support/drive.js');
  const { parseConfiguration, parseDeviceDescriptor } = await import('../../src/usb/descriptors.js');
  const dev = createBotDisk(new MemoryBackend(1 << 20), { name: 'ss', speed: 'super' });
  const dd = parseDeviceDescriptor((await getDescriptor(dev, 1, 0, 18)).data);
  assert.equal(dd.bcdUSB, 0x0320);
  assert.equal(dd.maxPacketSize0, 9);
  const cfg = parseConfiguration((await getDescriptor(dev, 2, 0, 255)).data);
  for (const ep of cfg.interfaces[0]!.alternates[0]!.endpoints) {
    assert.equal(ep.maxPacketSize, 1024);
    assert.equal(ep.companionAttributes, 0);
  }
  const bos = await getDescriptor(dev, 0x0f, 0, 255);
  assert.equal(bos.status, TransferStatus.Ok);
  assert.equal(bos.data[1], 0x0f);
  assert.equal(bos.data.readUInt16LE(2), bos.data.length);
  assert.equal((await getDescriptor(dev, 6, 0, 10)).status, TransferStatus.Stall);
});

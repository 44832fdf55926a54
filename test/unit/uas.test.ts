import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { test } from 'node:test';
import { MemoryBackend } from '../../src/devices/mass-storage/backend/index.js';
import { BOT_IN, BOT_OUT } from '../../src/devices/mass-storage/bot-function.js';
import { encodeCbw } from '../../src/devices/mass-storage/bot-wire.js';
import { createBotDisk } from '../../src/devices/mass-storage/index.js';
import { Cdb } from '../../src/devices/mass-storage/scsi/cdb-builders.js';
import { UAS_COMMAND, UAS_STATUS } from '../../src/devices/mass-storage/uas-target-port.js';
import {
  encodeCommandIu,
  encodeTaskManagementIu,
  ResponseCode,
  TaskFunction,
} from '../../src/devices/mass-storage/uas-wire.js';
import { parseConfiguration } from '../../src/usb/descriptors.js';
import type { UsbSpeed } from '../../src/usb/speed.js';
import { TransferStatus } from '../../src/usb/status.js';
import { Transfer } from '../../src/usb/transfer.js';
import { bulkIn, bulkOut, control } from '../support/drive.js';
import { GatedBackend, settled } from '../support/gated-backend.js';
import { DATA_IN, DATA_OUT, ReadyModeHost, streamCommand, uasConnect } from '../support/uas-host.js';

const BLOCKS = 4096;
const BS = 512;

function pattern(): Buffer {
  const b = Buffer.alloc(BLOCKS * BS);
  for (let i = 0; i < b.length; i += 4) b.writeUInt32LE((i * 2654435761) >>> 0, i);
  return b;
}

async function makeDisk(speed: UsbSpeed, backend = new MemoryBackend(BLOCKS * BS)) {
  const image = pattern();
  await backend.write(0, image);
  const dev = createBotDisk(backend, { name: 'uas disk', speed, transport: 'uas' });
  return { dev, backend, image };
}

const read10 = (lba: number, blocks: number) => Cdb.read10(lba, blocks);
const write10 = (lba: number, blocks: number) => Cdb.write10(lba, blocks);
const TEST_UNIT_READY = Cdb.testUnitReady();

/** Bytes that differ per seed and per position (sha256 counter stream). */
function fill(seed: number, length: number): Buffer {
  const parts: Buffer[] = [];
  for (let i = 0; i * 32 < length; i++) parts.push(createHash('sha256').update(`${seed}:${i}`).digest());
  return Buffer.concat(parts).subarray(0, length);
}

test('descriptors: alt 0 BOT, alt 1 UAS with four pipe usage descriptors, streams at SuperSpeed only', async () => {
  for (const speed of ['super', 'high'] as const) {
    const { dev } = await makeDisk(speed);
    const config = parseConfiguration(dev.descriptors.configurations[0]!);
    const alts = config.interfaces[0]!.alternates;
    assert.deepEqual(
      alts.map((a) => [a.alternate, a.interfaceClass, a.interfaceSubClass, a.interfaceProtocol, a.endpoints.length]),
      [
        [0, 8, 6, 0x50, 2],
        [1, 8, 6, 0x62, 4],
      ],
    );
    const uas = alts[1]!.endpoints;
    assert.deepEqual(
      uas.map((e) => [e.address, [...e.extra]]),
      [
        [UAS_COMMAND, [4, 0x24, 1, 0]],
        [UAS_STATUS, [4, 0x24, 2, 0]],
        [DATA_IN, [4, 0x24, 3, 0]],
        [DATA_OUT, [4, 0x24, 4, 0]],
      ],
    );
    if (speed === 'super')
      assert.deepEqual(
        uas.map((e) => e.companionAttributes),
        [0, 5, 5, 5],
      );
    else
      assert.deepEqual(
        uas.map((e) => e.companionAttributes),
        [undefined, undefined, undefined, undefined],
      );
    assert.equal(typeof dev.allocStreams, speed === 'super' ? 'function' : 'undefined');
    await dev.close();
  }
});

test('a BOT disk has no streams to offer', () => {
  const dev = createBotDisk(new MemoryBackend(1 << 20), { name: 'bot', speed: 'super' });
  assert.equal(dev.allocStreams, undefined);
});

test('SuperSpeed: 30 reads and writes in flight on their streams, completed in any order, every byte right', async () => {
  const { dev, backend, image } = await makeDisk('super');
  assert.equal(await uasConnect(dev, 256), 32, 'grants what bMaxStreams says');
  const jobs: Promise<void>[] = [];
  const expected = Buffer.from(image);
  for (let tag = 1; tag <= 30; tag++) {
    const lba = tag * 64;
    if (tag % 3 === 0) {
      const data = fill(tag, 32 * BS);
      data.copy(expected, lba * BS);
      jobs.push(
        streamCommand(dev, tag, write10(lba, 32), { out: data }).then((r) => assert.equal(r.status, 0, `write ${tag}`)),
      );
    } else {
      jobs.push(
        streamCommand(dev, tag, read10(lba, 32), { in: 32 * BS }).then((r) => {
          assert.equal(r.status, 0);
          assert.ok(r.data.equals(image.subarray(lba * BS, (lba + 32) * BS)), `read ${tag}`);
        }),
      );
    }
  }
  await Promise.all(jobs);
  assert.ok((await backend.read(0, BLOCKS * BS)).equals(expected), 'the image holds exactly what was written');
  await dev.close();
});

test('high speed: READ READY / WRITE READY flow, many commands in flight, one data phase per pipe at a time', async () => {
  const { dev, backend, image } = await makeDisk('high');
  await uasConnect(dev);
  const host = new ReadyModeHost(dev);
  const expected = Buffer.from(image);
  const jobs: Promise<void>[] = [];
  for (let tag = 1; tag <= 24; tag++) {
    const lba = 100 + tag * 40;
    if (tag % 2 === 0) {
      const data = fill(tag, 16 * BS);
      data.copy(expected, lba * BS);
      jobs.push(host.command(tag, write10(lba, 16), { out: data }).then((r) => assert.equal(r.status, 0)));
    } else {
      jobs.push(
        host.command(tag, read10(lba, 16), { in: 16 * BS }).then((r) => {
          assert.equal(r.status, 0);
          assert.ok(r.data.equals(image.subarray(lba * BS, (lba + 16) * BS)), `read ${tag}`);
        }),
      );
    }
  }
  await Promise.all(jobs);
  assert.ok((await backend.read(0, BLOCKS * BS)).equals(expected));
  const kinds = host.ius.map((iu) => iu.kind);
  assert.equal(kinds.filter((k) => k === 'read-ready').length, 12);
  assert.equal(kinds.filter((k) => k === 'write-ready').length, 12);
  assert.equal(kinds.filter((k) => k === 'sense').length, 24);
  host.close();
  await dev.close();
});

test('no status before the write is in the backing store', async () => {
  const backend = new GatedBackend(BLOCKS * BS);
  const { dev } = await makeDisk('super', backend);
  await uasConnect(dev, 32);
  backend.writesStarted = 0;
  backend.hold();
  const reply = streamCommand(dev, 5, write10(10, 8), { out: fill(5, 8 * BS) });
  const read = streamCommand(dev, 6, read10(2000, 8), { in: 8 * BS });
  assert.equal((await read).status, 0, 'a read is not held up by a write in flight');
  assert.equal(await settled(reply), false, 'status waits for the write');
  assert.equal(backend.writesStarted, 1);
  backend.open();
  assert.equal((await reply).status, 0);
  assert.ok((await backend.read(10 * BS, 8 * BS)).equals(fill(5, 8 * BS)));
  await dev.close();
});

test('errors carry their sense in the SENSE IU; a LOGICAL UNIT RESET makes the next command report UNIT ATTENTION', async () => {
  const { dev } = await makeDisk('high');
  await uasConnect(dev);
  const host = new ReadyModeHost(dev);
  const out = await host.command(1, read10(BLOCKS, 1), { in: BS });
  assert.equal(out.status, 2);
  assert.deepEqual([out.sense[2]! & 0x0f, out.sense[12]], [5, 0x21], 'LBA out of range');
  host.raw(encodeTaskManagementIu(2, TaskFunction.LogicalUnitReset, 0));
  const ua = await host.command(3, TEST_UNIT_READY);
  assert.equal(ua.status, 2);
  assert.deepEqual([ua.sense[2]! & 0x0f, ua.sense[12]], [6, 0x29]);
  assert.equal((await host.command(4, TEST_UNIT_READY)).status, 0);
  assert.ok(host.ius.some((iu) => iu.kind === 'response' && iu.tag === 2 && iu.code === ResponseCode.Complete));
  const lun = await host.command(5, TEST_UNIT_READY);
  assert.equal(lun.status, 0);
  host.close();
  await dev.close();
});

test('bad input: a tag reused in flight, ABORT TASK mid-write, malformed IUs, an IU for another LUN', async () => {
  const backend = new GatedBackend(BLOCKS * BS);
  const { dev, image } = await makeDisk('high', backend);
  await uasConnect(dev);
  const host = new ReadyModeHost(dev);
  backend.writesStarted = 0;
  backend.hold();
  const held = host.command(7, write10(50, 4), { out: fill(7, 4 * BS) });
  while (backend.writesStarted === 0) await new Promise((r) => setImmediate(r));
  // Same tag again while the write runs: the task is aborted and the host told.
  host.raw(encodeCommandIu(7, TEST_UNIT_READY));
  await new Promise((r) => setTimeout(r, 10));
  assert.ok(host.ius.some((iu) => iu.kind === 'response' && iu.tag === 7 && iu.code === ResponseCode.OverlappedTag));
  const aborted = host.command(8, write10(60, 4), { out: fill(8, 4 * BS) });
  while (backend.writesStarted < 2) await new Promise((r) => setImmediate(r));
  host.raw(encodeTaskManagementIu(9, TaskFunction.AbortTask, 8));
  host.raw(Buffer.from([0x01, 0, 0]));
  host.raw(Buffer.from([0x09, 0, 0, 11]));
  host.raw(encodeCommandIu(12, TEST_UNIT_READY, { lun: 3 }));
  host.raw(encodeTaskManagementIu(13, 0x99, 0));
  await new Promise((r) => setTimeout(r, 10));
  backend.open();
  const responses = () => host.ius.flatMap((iu) => (iu.kind === 'response' ? [[iu.tag, iu.code]] : []));
  while (responses().length < 4) await new Promise((r) => setTimeout(r, 5));
  assert.deepEqual(
    responses().sort((a, b) => a[0]! - b[0]!),
    [
      [7, ResponseCode.OverlappedTag],
      [9, ResponseCode.Complete],
      [11, ResponseCode.InvalidIu],
      [13, ResponseCode.NotSupported],
    ],
  );
  const lun = host.ius.find((iu) => iu.kind === 'sense' && iu.tag === 12);
  assert.ok(lun?.kind === 'sense' && lun.status === 2 && lun.sense[12] === 0x25, 'LOGICAL UNIT NOT SUPPORTED');
  assert.equal((await held).status, -1 - ResponseCode.OverlappedTag, 'task 7 ends with the RESPONSE IU, no SENSE IU');
  assert.equal(host.ius.filter((iu) => iu.kind === 'sense' && iu.tag === 7).length, 0);
  assert.equal(await settled(aborted), false, 'no status for the aborted task 8');
  // A write the host sent whole still lands whole; nothing else changed.
  assert.ok((await backend.read(50 * BS, 4 * BS)).equals(fill(7, 4 * BS)));
  assert.ok((await backend.read(0, 50 * BS)).equals(image.subarray(0, 50 * BS)));
  // The port still works.
  const r = await host.command(20, read10(0, 8), { in: 8 * BS });
  assert.ok(r.status === 0 && r.data.equals(image.subarray(0, 8 * BS)));
  host.close();
  await dev.close();
});

test('streams: an id never allocated fails, a tag outside the streams is dropped, free_bulk_streams with commands pending', async () => {
  const backend = new GatedBackend(BLOCKS * BS);
  const { dev, image } = await makeDisk('super', backend);
  await uasConnect(dev, 16);
  const stray = new Transfer({ type: 'bulk', endpoint: DATA_IN, length: 512, streamId: 17 });
  await dev.submit(stray);
  assert.equal(stray.status, TransferStatus.Invalid);
  const zero = new Transfer({ type: 'bulk', endpoint: DATA_IN, length: 512 });
  await dev.submit(zero);
  assert.equal(zero.status, TransferStatus.Invalid, 'stream 0 on an endpoint with streams');
  await bulkOut(dev, UAS_COMMAND, encodeCommandIu(40, TEST_UNIT_READY));
  // Commands pending when the host frees the streams: their transfers complete Cancelled.
  backend.hold();
  const status = bulkIn(dev, UAS_STATUS, 64);
  Object.assign(status, {});
  const pendingStatus = new Transfer({ type: 'bulk', endpoint: UAS_STATUS, length: 64, streamId: 3 });
  const pendingData = new Transfer({ type: 'bulk', endpoint: DATA_OUT, data: fill(3, 8 * BS), streamId: 3 });
  const p1 = dev.submit(pendingStatus);
  const p2 = dev.submit(pendingData);
  await bulkOut(dev, UAS_COMMAND, encodeCommandIu(3, write10(100, 8)));
  assert.equal(await dev.freeStreams!([UAS_STATUS, DATA_IN, DATA_OUT]), TransferStatus.Ok);
  await p1;
  assert.equal(pendingStatus.status, TransferStatus.Cancelled);
  backend.open();
  await p2;
  await status.done;
  assert.equal(await uasConnect(dev, 16), 16, 'allocated again');
  const r = await streamCommand(dev, 3, read10(0, 4), { in: 4 * BS });
  assert.ok(r.status === 2 || r.data.equals(image.subarray(0, 4 * BS)), 'works again (a unit attention is fine)');
  await dev.close();
});

test('alternate setting 0 is still Bulk-Only Transport', async () => {
  const { dev, image } = await makeDisk('super');
  await control(dev, { bmRequestType: 0x00, bRequest: 9, wValue: 1, wIndex: 0, wLength: 0 });
  const lun = await control(dev, { bmRequestType: 0xa1, bRequest: 0xfe, wValue: 0, wIndex: 0, wLength: 1 });
  assert.deepEqual([...lun.data.subarray(0, lun.actualLength)], [0]);
  await bulkOut(
    dev,
    BOT_OUT,
    encodeCbw({ tag: 1, dataTransferLength: 4 * BS, dataIn: true, lun: 0, cdb: read10(8, 4) }),
  );
  const data = bulkIn(dev, BOT_IN, 4 * BS);
  await data.done;
  assert.ok(data.data.equals(image.subarray(8 * BS, 12 * BS)));
  const csw = bulkIn(dev, BOT_IN, 13);
  await csw.done;
  assert.equal(csw.data[12], 0);
  await dev.close();
});

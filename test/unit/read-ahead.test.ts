import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, it } from 'node:test';
import { EmulatedDevice } from '../../src/devices/emulated-device.js';
import { MemoryBackend } from '../../src/devices/mass-storage/backend/memory-backend.js';
import { BotFunction } from '../../src/devices/mass-storage/bot-function.js';
import { BotInitiator } from '../../src/devices/mass-storage/bot-initiator.js';
import { CSW_SIZE, encodeCbw } from '../../src/devices/mass-storage/bot-wire.js';
import { createBotDisk } from '../../src/devices/mass-storage/index.js';
import { withReadAhead } from '../../src/devices/mass-storage/read-ahead/index.js';
import { Cdb } from '../../src/devices/mass-storage/scsi/cdb-builders.js';
import { ScsiDisk } from '../../src/devices/mass-storage/scsi/scsi-disk.js';
import { parseSense, Sense } from '../../src/devices/mass-storage/scsi/sense.js';
import type { UsbDevice } from '../../src/usb/device.js';
import { TransferStatus } from '../../src/usb/status.js';
import { Transfer } from '../../src/usb/transfer.js';
import { BotHost } from '../support/bot-host.js';
import { bulkIn, bulkOut, control } from '../support/drive.js';
import { GatedBackend, settled } from '../support/gated-backend.js';
import { prng } from '../support/prng.js';
import { TapDevice } from './read-ahead-fakes.js';

const KiB = 1024;
const MiB = 1024 * KiB;
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

function patterned(size: number, seed = 1): Buffer {
  const b = Buffer.alloc(size);
  for (let i = 0; i < size; i += 4) b.writeUInt32LE(Math.imul(i + seed, 2654435761) >>> 0, i);
  return b;
}

/** A memory disk whose reads fail (MEDIUM ERROR) from `badFrom` bytes on. */
class FailingBackend extends MemoryBackend {
  constructor(
    size: number,
    readonly badFrom: number,
  ) {
    super(size);
  }
  override async read(offset: number, length: number): Promise<Buffer> {
    if (offset + length > this.badFrom) throw Object.assign(new Error('EIO'), { code: 'EIO' });
    return super.read(offset, length);
  }
}

function botDisk(backend: MemoryBackend): { dev: EmulatedDevice; scsi: ScsiDisk } {
  const scsi = new ScsiDisk(backend, {
    readOnly: false,
    removable: true,
    vendor: 'usbwire',
    product: 'Test',
    revision: '0100',
    serial: 'RA0001',
  });
  const dev = new EmulatedDevice({
    name: 'read-ahead test disk',
    speed: 'high',
    vendorId: 0x1209,
    productId: 0x0001,
    bcdDevice: 0x0100,
    manufacturer: 'usbwire',
    product: 'Test',
    serial: 'RA0001',
    maxPowerMa: 100,
    functions: [new BotFunction(scsi)],
  });
  return { dev, scsi };
}

async function readAll(host: BotHost, size: number, chunk: number): Promise<Buffer> {
  const parts: Buffer[] = [];
  for (let at = 0; at < size; at += chunk) parts.push(await host.read(at / 512, chunk / 512));
  return Buffer.concat(parts);
}

/** A READ(10) the way a host with scatter-gather does it: CBW, `pieces` data INs and the CSW posted at once. */
async function splitRead(dev: UsbDevice, tag: number, lba: number, blocks: number, pieces: number) {
  const length = blocks * 512;
  const cbw = new Transfer({
    type: 'bulk',
    endpoint: 0x02,
    data: encodeCbw({ tag, dataTransferLength: length, dataIn: true, lun: 0, cdb: Cdb.read10(lba, blocks) }),
  });
  const data = Array.from(
    { length: pieces },
    () => new Transfer({ type: 'bulk', endpoint: 0x81, length: length / pieces }),
  );
  const csw = new Transfer({ type: 'bulk', endpoint: 0x81, length: CSW_SIZE });
  await Promise.all([cbw, ...data, csw].map((t) => dev.submit(t)));
  assert.equal(csw.status, TransferStatus.Ok);
  assert.equal(csw.data.readUInt32LE(4), tag, 'CSW tag');
  assert.equal(csw.data[12], 0, 'CSW status');
  assert.equal(csw.data.readUInt32LE(8), 0, 'residue');
  for (const t of data) assert.equal(t.actualLength, t.length);
  return Buffer.concat(data.map((t) => t.data.subarray(0, t.actualLength)));
}

const until = async (cond: () => boolean, what: string) => {
  for (let i = 0; i < 500 && !cond(); i++) await new Promise((r) => setTimeout(r, 2));
  assert.ok(cond(), what);
};

describe('read-ahead', () => {
  it('a sequential scan returns the disk byte for byte, mostly from prefetched data', async () => {
    const image = patterned(8 * MiB);
    const ra = withReadAhead(createBotDisk(MemoryBackend.fromBuffer(image), { name: 'disk' }));
    const host = await BotHost.open(ra);
    assert.equal(sha(await readAll(host, image.length, 64 * KiB)), sha(image));
    const s = ra.stats();
    assert.ok(s.hitRate > 0.8, `hit rate ${s.hitRate}`);
    assert.equal(s.hits + s.misses, 128);
    assert.ok(s.usedBytes <= s.prefetchedBytes);
    assert.ok(s.prefetchedBytes <= image.length, 'never past the capacity');
    await ra.close();
  });

  it('serves a hit across however many IN transfers the host posts, with back-to-back hosts too', async () => {
    const image = patterned(2 * MiB, 7);
    const ra = withReadAhead(createBotDisk(MemoryBackend.fromBuffer(image), { name: 'disk' }));
    const ini = await BotInitiator.open(ra);
    for (let lba = 0; lba < 1024; lba += 64) {
      const r = await ini.execute(Cdb.read10(lba, 64));
      assert.equal(r.status, 'good');
      assert.ok(r.data!.equals(image.subarray(lba * 512, (lba + 64) * 512)), `LBA ${lba}`);
    }
    for (let lba = 1024, tag = 1; lba < 4096; lba += 128, tag++) {
      const got = await splitRead(ra, tag, lba, 128, 4);
      assert.ok(got.equals(image.subarray(lba * 512, (lba + 128) * 512)), `split read at LBA ${lba}`);
    }
    assert.ok(ra.stats().hits > 30, JSON.stringify(ra.stats()));
    await ra.close();
  });

  it('a write into a prefetched range is never acknowledged early and the next read returns the new data', async () => {
    const image = patterned(4 * MiB, 3);
    const backend = MemoryBackend.fromBuffer(image);
    const ra = withReadAhead(createBotDisk(backend, { name: 'disk' }));
    const host = await BotHost.open(ra);
    for (let lba = 0; lba < 512; lba += 128) await host.read(lba, 128);
    await until(() => ra.stats().prefetchedBytes >= 256 * KiB, 'prefetched past LBA 768');
    const fresh = patterned(64 * KiB, 99);
    await host.write(640, fresh);
    assert.ok((await backend.read(640 * 512, fresh.length)).equals(fresh), 'the write is in the image');
    const back = await host.read(512, 256); // 512..767 spans the write at 640..767
    assert.ok(back.subarray(128 * 512).equals(fresh), 'the new data');
    assert.ok(back.subarray(0, 128 * 512).equals(image.subarray(512 * 512, 640 * 512)));
    await ra.close();
  });

  it('random reads prefetch little', async () => {
    const image = patterned(16 * MiB, 5);
    const ra = withReadAhead(createBotDisk(MemoryBackend.fromBuffer(image), { name: 'disk' }));
    const host = await BotHost.open(ra);
    const rand = prng(42);
    let read = 0;
    for (let i = 0; i < 200; i++) {
      const lba = Math.floor(rand() * (image.length / 512 - 32));
      const got = await host.read(lba, 32);
      assert.ok(got.equals(image.subarray(lba * 512, (lba + 32) * 512)));
      read += got.length;
    }
    const s = ra.stats();
    assert.ok(s.prefetchedBytes < read / 10, `prefetched ${s.prefetchedBytes} for ${read} read`);
    await ra.close();
  });

  it('a port reset in the middle of a prefetch is clean', async () => {
    const image = patterned(4 * MiB, 11);
    const tap = new TapDevice(createBotDisk(MemoryBackend.fromBuffer(image), { name: 'disk' }), 3);
    const ra = withReadAhead(tap);
    let host = await BotHost.open(ra);
    for (let lba = 0; lba < 256; lba += 64) await host.read(lba, 64);
    await until(() => tap.events.filter((e) => e === 'submit out2').length > 4, 'a prefetch started');
    await ra.reset();
    assert.equal(ra.configuration, 0);
    host = await BotHost.open(ra);
    // The disk reports the reset to the host's first command; the read-ahead must not swallow it.
    const ini = new BotInitiator(ra, { interfaceNumber: 0, inEp: 0x81, outEp: 0x02 }, { firstTag: 1000 });
    const first = await ini.execute(Cdb.testUnitReady());
    assert.equal(first.status, 'check-condition');
    assert.equal(parseSense(first.sense!)?.asc, Sense.PowerOnResetOccurred.asc);
    assert.equal(sha(await readAll(host, image.length, 64 * KiB)), sha(image));
    await ra.close();
  });

  it('a prefetch that fails is invisible to the host: no error, no sense', async () => {
    const image = patterned(2 * MiB, 13);
    const badFrom = MiB + 256 * KiB;
    const backend = new FailingBackend(image.length, badFrom);
    await backend.write(0, image);
    const ra = withReadAhead(createBotDisk(backend, { name: 'disk' }));
    const ini = await BotInitiator.open(ra);
    for (let at = 0; at < MiB; at += 64 * KiB) {
      const r = await ini.execute(Cdb.read10(at / 512, 128));
      assert.equal(r.status, 'good');
      assert.ok(r.data!.equals(image.subarray(at, at + 64 * KiB)));
    }
    await until(() => ra.stats().failedPrefetches > 0, 'a prefetch ran into the bad region');
    const sense = await ini.execute(Cdb.requestSense(18));
    assert.equal(sense.status, 'good');
    assert.equal(parseSense(sense.data!)?.key, 0, 'NO SENSE: the failed prefetch left nothing behind');
    for (let at = MiB; at < badFrom; at += 64 * KiB) {
      const r = await ini.execute(Cdb.read10(at / 512, 128));
      assert.equal(r.status, 'good', `read at ${at}`);
      assert.ok(r.data!.equals(image.subarray(at, at + 64 * KiB)));
    }
    const bad = await ini.execute(Cdb.read10(badFrom / 512, 128));
    assert.equal(bad.status, 'check-condition', "the host's own read of the bad region fails");
    assert.equal(parseSense(bad.sense!)?.key, Sense.UnrecoveredReadError.key);
    await ra.close();
  });

  it('a UNIT ATTENTION that a prefetch ran into reaches the host', async () => {
    const image = patterned(4 * MiB, 17);
    const { dev, scsi } = botDisk(MemoryBackend.fromBuffer(image));
    const ra = withReadAhead(dev, { maxChunkBytes: 64 * KiB, windowBytes: 128 * KiB });
    const ini = await BotInitiator.open(ra);
    for (let lba = 0; lba < 128; lba += 32) assert.equal((await ini.execute(Cdb.read10(lba, 32))).status, 'good');
    await until(() => ra.stats().prefetches > 0, 'prefetching');
    scsi.reset(); // the device resets itself (firmware, another initiator): UNIT ATTENTION pending
    const hit = await ini.execute(Cdb.read10(128, 32)); // from the cache; its prefetch meets the attention
    assert.equal(hit.status, 'good');
    await until(() => ra.stats().failedPrefetches > 0, 'the prefetch ran into the UNIT ATTENTION');
    const lba = 160;
    const r = await ini.execute(Cdb.read10(lba, 32));
    assert.equal(r.status, 'check-condition', 'the host is told');
    assert.equal(parseSense(r.sense!)?.asc, Sense.PowerOnResetOccurred.asc);
    const after = await ini.execute(Cdb.read10(lba, 32));
    assert.equal(after.status, 'good');
    assert.ok(after.data!.equals(image.subarray(lba * 512, (lba + 32) * 512)));
    await ra.close();
  });

  it("a write's CSW is the device's: it comes only once the data is in the image", async () => {
    const backend = new GatedBackend(MiB);
    const ra = withReadAhead(createBotDisk(backend, { name: 'disk' }));
    const host = await BotHost.open(ra);
    for (let lba = 0; lba < 64; lba += 16) await host.read(lba, 16);
    backend.hold();
    const write = host.write(80, Buffer.alloc(8 * 512, 0xee));
    await until(() => backend.writesStarted === 1, 'the write reached the backend');
    assert.equal(await settled(write), false, 'no status while the write is held');
    backend.open();
    await write;
    assert.equal(backend.writesDone, 1);
    assert.ok((await host.read(80, 8)).equals(Buffer.alloc(8 * 512, 0xee)));
    await ra.close();
  });

  it('a Bulk-Only reset and SET_CONFIGURATION drop the cache', async () => {
    const image = patterned(2 * MiB, 23);
    const ra = withReadAhead(createBotDisk(MemoryBackend.fromBuffer(image), { name: 'disk' }));
    const ini = await BotInitiator.open(ra);
    const readAt = async (lba: number) => {
      const r = await ini.execute(Cdb.read10(lba, 64));
      assert.equal(r.status, 'good');
      assert.ok(r.data!.equals(image.subarray(lba * 512, (lba + 64) * 512)), `LBA ${lba}`);
    };
    for (let lba = 0; lba < 256; lba += 64) await readAt(lba);
    await until(() => ra.stats().prefetchedBytes > 0, 'prefetched');
    assert.equal(await ini.reset(), true);
    const misses = ra.stats().misses;
    await readAt(256);
    assert.equal(ra.stats().misses, misses + 1, 'after the reset the read goes to the device');
    await readAt(320);
    await readAt(384);
    await until(() => ra.stats().prefetches > 2, 'prefetching again');
    const config = await control(ra, { bmRequestType: 0, bRequest: 9, wValue: 1, wIndex: 0, wLength: 0 });
    assert.equal(config.status, TransferStatus.Ok);
    const again = ra.stats().misses;
    await readAt(448);
    assert.equal(ra.stats().misses, again + 1, 'after SET_CONFIGURATION the read goes to the device');
    await ra.close();
  });

  it("an invalid CBW passes through; after the host's Reset Recovery all works again", async () => {
    const image = patterned(MiB, 29);
    const ra = withReadAhead(createBotDisk(MemoryBackend.fromBuffer(image), { name: 'disk' }));
    const ini = await BotInitiator.open(ra);
    for (let lba = 0; lba < 128; lba += 32) assert.equal((await ini.execute(Cdb.read10(lba, 32))).status, 'good');
    assert.equal((await bulkOut(ra, 0x02, Buffer.alloc(31, 0x55))).status, TransferStatus.Ok);
    const wedged = bulkIn(ra, 0x81, CSW_SIZE);
    await wedged.done;
    assert.equal(wedged.status, TransferStatus.Stall, 'the device wedged, as BOT requires');
    assert.equal(await ini.reset(), true);
    for (let lba = 128; lba < 512; lba += 32) {
      const r = await ini.execute(Cdb.read10(lba, 32));
      assert.equal(r.status, 'good');
      assert.ok(r.data!.equals(image.subarray(lba * 512, (lba + 32) * 512)));
    }
    assert.ok(ra.stats().hits > 0, 'prefetching again after the recovery');
    await ra.close();
  });

  it('cancelling a passed-through host transfer cancels it at the device', async () => {
    const tap = new TapDevice(createBotDisk(new MemoryBackend(MiB), { name: 'disk' }));
    const ra = withReadAhead(tap);
    await BotHost.open(ra);
    tap.swallow = (t) => t.isIn && t.length === 4096;
    const cbw = encodeCbw({ tag: 5, dataTransferLength: 4096, dataIn: true, lun: 0, cdb: Cdb.read10(0, 8) });
    assert.equal((await bulkOut(ra, 0x02, cbw)).status, TransferStatus.Ok);
    const data = bulkIn(ra, 0x81, 4096);
    await until(() => tap.events.includes('submit in1'), 'the data read reached the device');
    ra.cancel(data);
    await data.done;
    assert.equal(data.status, TransferStatus.Cancelled);
    await ra.close();
  });

  it('on a UAS disk: read-ahead on its Bulk-Only setting, hands off when the host selects UAS', async () => {
    const image = patterned(2 * MiB, 31);
    const ra = withReadAhead(createBotDisk(MemoryBackend.fromBuffer(image), { name: 'uas disk', transport: 'uas' }));
    const host = await BotHost.open(ra);
    for (let lba = 0; lba < 1024; lba += 64) {
      assert.ok((await host.read(lba, 64)).equals(image.subarray(lba * 512, (lba + 64) * 512)));
    }
    assert.ok(ra.stats().hits > 8, JSON.stringify(ra.stats()));
    const alt1 = await control(ra, { bmRequestType: 0x01, bRequest: 11, wValue: 1, wIndex: 0, wLength: 0 });
    assert.equal(alt1.status, TransferStatus.Ok);
    assert.equal(ra.alternateSetting(0), 1);
    // A CBW on the UAS command pipe is not ours to read: it goes to the device untouched.
    const prefetches = ra.stats().prefetches;
    const iu = await bulkOut(ra, 0x04, Buffer.alloc(32));
    assert.notEqual(iu.status, TransferStatus.Cancelled);
    assert.equal(ra.stats().prefetches, prefetches);
    await ra.close();
    const bot = withReadAhead(createBotDisk(new MemoryBackend(MiB), { name: 'bot disk' }));
    assert.equal(bot.allocStreams, undefined, 'no streams where the device has none');
    const superSpeed = withReadAhead(
      createBotDisk(new MemoryBackend(MiB), { name: 'uas disk', transport: 'uas', speed: 'super' }),
    );
    assert.equal(typeof superSpeed.allocStreams, 'function', 'a SuperSpeed UAS disk keeps its bulk streams');
    await bot.close();
    await superSpeed.close();
  });

  it('cancelling a host transfer held by the read-ahead completes it Cancelled', async () => {
    const ra = withReadAhead(createBotDisk(new MemoryBackend(MiB), { name: 'disk' }));
    await BotHost.open(ra);
    const early = new Transfer({ type: 'bulk', endpoint: 0x81, length: 512 });
    const done = ra.submit(early); // no CBW yet: held
    ra.cancel(early);
    await done;
    assert.equal(early.status, TransferStatus.Cancelled);
    const host = await BotHost.open(ra);
    assert.equal((await host.read(0, 1)).length, 512);
    await ra.close();
  });
});

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { MemoryBackend } from '../../src/devices/mass-storage/backend/index.js';
import { presentBotAsUas } from '../../src/devices/mass-storage/bot-as-uas.js';
import { queuesEarlyTransfers } from '../../src/devices/mass-storage/bot-initiator.js';
import { createBotDisk } from '../../src/devices/mass-storage/index.js';
import { Cdb } from '../../src/devices/mass-storage/scsi/cdb-builders.js';
import { parseConfiguration, parseDeviceDescriptor } from '../../src/usb/descriptors.js';
import type { UsbDevice } from '../../src/usb/device.js';
import type { Transfer } from '../../src/usb/transfer.js';
import { ReadyModeHost, streamCommand, uasConnect } from '../support/uas-host.js';

const BLOCKS = 2048;

async function botDisk() {
  const backend = new MemoryBackend(BLOCKS * 512);
  const image = Buffer.alloc(BLOCKS * 512);
  for (let i = 0; i < image.length; i += 2) image.writeUInt16LE((i & 0xffff) ^ (i >> 16), i);
  await backend.write(0, image);
  const bot = createBotDisk(backend, { name: 'bot disk', serial: 'BOT123' });
  // Count how many BOT commands the wrapper has in the device at once.
  let cbwsInFlight = 0;
  let maxInFlight = 0;
  const submit = bot.submit.bind(bot);
  bot.submit = async (t: Transfer) => {
    const cbw = t.endpoint === 0x02 && t.length === 31;
    const csw = t.endpoint === 0x81 && t.length === 13;
    if (cbw) maxInFlight = Math.max(maxInFlight, ++cbwsInFlight);
    await submit(t);
    if (csw) cbwsInFlight--;
  };
  return { bot, backend, image, maxInFlight: () => maxInFlight };
}

test('a BOT disk as UAS: same ids and strings, UAS alternate setting, streams at the speed asked for', async () => {
  const { bot } = await botDisk();
  const dev = await presentBotAsUas(bot, { speed: 'super' });
  const d = parseDeviceDescriptor(dev.descriptors.device);
  const inner = parseDeviceDescriptor(bot.descriptors.device);
  assert.deepEqual([d.vendorId, d.productId], [inner.vendorId, inner.productId]);
  const alts = parseConfiguration(dev.descriptors.configurations[0]!).interfaces[0]!.alternates;
  assert.deepEqual(
    alts.map((a) => a.interfaceProtocol),
    [0x50, 0x62],
  );
  assert.equal(dev.speed, 'super');
  assert.equal(typeof dev.allocStreams, 'function');
  await dev.close();
});

test('many UAS commands in flight reach the BOT device one at a time, every byte right, sense from REQUEST SENSE', async () => {
  const { bot, backend, image, maxInFlight } = await botDisk();
  const dev = await presentBotAsUas(bot, { speed: 'super' });
  await uasConnect(dev, 32);
  const expected = Buffer.from(image);
  const jobs: Promise<void>[] = [];
  for (let tag = 1; tag <= 24; tag++) {
    const lba = tag * 50;
    if (tag % 4 === 0) {
      const data = Buffer.alloc(8 * 512, tag);
      data.copy(expected, lba * 512);
      jobs.push(streamCommand(dev, tag, Cdb.write10(lba, 8), { out: data }).then((r) => assert.equal(r.status, 0)));
    } else {
      jobs.push(
        streamCommand(dev, tag, Cdb.read10(lba, 16), { in: 16 * 512 }).then((r) => {
          assert.equal(r.status, 0, `tag ${tag}`);
          assert.ok(r.data.equals(image.subarray(lba * 512, (lba + 16) * 512)), `data of tag ${tag}`);
        }),
      );
    }
  }
  await Promise.all(jobs);
  assert.ok((await backend.read(0, BLOCKS * 512)).equals(expected));
  assert.equal(maxInFlight(), 1, 'BOT sees one command at a time');
  const bad = await streamCommand(dev, 25, Cdb.read10(BLOCKS + 5, 1), { in: 512 });
  assert.equal(bad.status, 2);
  assert.deepEqual([bad.sense[2]! & 0x0f, bad.sense[12]], [5, 0x21], 'the BOT disk’s own sense');
  await dev.close();
});

test('high speed without streams: READ/WRITE READY in front of a BOT disk', async () => {
  const { bot, image } = await botDisk();
  const dev = await presentBotAsUas(bot);
  assert.equal(dev.speed, 'high');
  await uasConnect(dev);
  const host = new ReadyModeHost(dev);
  const replies = await Promise.all(
    [1, 2, 3, 4].map((tag) => host.command(tag, Cdb.read10(tag * 10, 4), { in: 2048 })),
  );
  for (const [i, r] of replies.entries()) {
    assert.ok(r.data.equals(image.subarray((i + 1) * 10 * 512, ((i + 1) * 10 + 4) * 512)));
  }
  host.close();
  await dev.close();
});

test('the BOT device going away takes the UAS device with it', async () => {
  const { bot } = await botDisk();
  const dev = await presentBotAsUas(bot);
  const gone = new Promise<void>((resolve) => dev.once('disconnect', resolve));
  await bot.close();
  bot.emit('disconnect');
  await gone;
});

test('early transfers are queued by usbwire disks only: pipelined phases for them, one phase at a time for others', async () => {
  const { bot } = await botDisk();
  assert.equal(queuesEarlyTransfers(bot), true, 'an emulated disk');
  const remoteLike = (vid: number, pid: number) => {
    const device = Buffer.from(bot.descriptors.device);
    device.writeUInt16LE(vid, 8);
    device.writeUInt16LE(pid, 10);
    return { descriptors: { device, configurations: [] } } as unknown as UsbDevice;
  };
  assert.equal(queuesEarlyTransfers(remoteLike(0x1209, 0x0001)), true, 'a usbwire disk across a server');
  assert.equal(queuesEarlyTransfers(remoteLike(0x46f4, 0x0001)), false, "QEMU's usb-storage");
  assert.equal(queuesEarlyTransfers(remoteLike(0x1209, 0x0002)), false, 'another usbwire device');
  await bot.close();
});

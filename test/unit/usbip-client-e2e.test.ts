// RemoteUsbipDevice against usbwire's own USB/IP server: an emulated disk read and written over
// BOT with the data checked against the backend, gadget zero iso IN/OUT with packet descriptors,
// configuration and alternate settings kept in step, cancel, reset. (Compatibility with the
// kernel's usbipd is the rig's job; this checks the client end to end over the wire.)
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { RemoteUsbipDevice } from '../../src/client/usbip/index.js';
import {
  createGadgetZero,
  fillPattern,
  GZERO_LOOPBACK_CONFIG,
  GZERO_SOURCE_SINK_CONFIG,
  LB_BULK_IN,
  SS_ISO_IN,
  SS_ISO_OUT,
} from '../../src/devices/gadget-zero/index.js';
import { createKeyboard } from '../../src/devices/hid/index.js';
import { MemoryBackend } from '../../src/devices/mass-storage/backend/index.js';
import { BOT_IN, BOT_OUT } from '../../src/devices/mass-storage/bot-function.js';
import { CSW_SIGNATURE, encodeCbw } from '../../src/devices/mass-storage/bot-wire.js';
import { createBotDisk } from '../../src/devices/mass-storage/index.js';
import { DeviceRegistry } from '../../src/server/registry.js';
import { UsbipServer } from '../../src/server/usbip/index.js';
import type { UsbDevice } from '../../src/usb/device.js';
import { TransferStatus } from '../../src/usb/status.js';
import { type IsoPacket, Transfer } from '../../src/usb/transfer.js';
import type { HostPort } from '../../src/util/host-port.js';
import { setLogSink } from '../../src/util/log.js';
import { bulkIn, bulkOut, control, setConfiguration } from '../support/drive.js';

const BLOCKS = 4096;
const ISO_MAX_PACKET = 600;
let server: UsbipServer;
let address: HostPort;
let backend: MemoryBackend;
let image: Buffer;
const keyboard = createKeyboard();
const gadget = createGadgetZero({ pattern: 1, isocMaxPacket: ISO_MAX_PACKET, name: 'gz' });

before(async () => {
  setLogSink('silent');
  backend = new MemoryBackend(BLOCKS * 512);
  image = Buffer.alloc(BLOCKS * 512);
  for (let i = 0; i < image.length; i++) image[i] = (i * 13 + (i >> 9)) & 0xff;
  await backend.write(0, image);
  const registry = new DeviceRegistry();
  registry.add(createBotDisk(backend, { name: 'disk' }));
  registry.add(keyboard);
  registry.add(gadget);
  server = new UsbipServer(registry, { host: '127.0.0.1', port: 0 });
  address = await server.listen();
});

after(async () => {
  await server.close();
  setLogSink((l) => process.stderr.write(`${l}\n`));
});

let tag = 1;
async function scsi(dev: UsbDevice, cdb: number[], dataIn: boolean, data: Buffer | number) {
  const length = typeof data === 'number' ? data : data.length;
  const cbw = encodeCbw({ tag: ++tag, dataTransferLength: length, dataIn, lun: 0, cdb: Buffer.from(cdb) });
  assert.equal((await bulkOut(dev, BOT_OUT, cbw)).status, TransferStatus.Ok, 'CBW');
  let payload: Buffer = Buffer.alloc(0);
  if (dataIn) {
    const t = bulkIn(dev, BOT_IN, length);
    await t.done;
    assert.equal(t.status, TransferStatus.Ok, 'data IN');
    payload = t.data.subarray(0, t.actualLength);
  } else if (length > 0) {
    assert.equal((await bulkOut(dev, BOT_OUT, data as Buffer)).status, TransferStatus.Ok, 'data OUT');
  }
  const csw = bulkIn(dev, BOT_IN, 13);
  await csw.done;
  assert.equal(csw.data.readUInt32LE(0), CSW_SIGNATURE);
  assert.equal(csw.data.readUInt32LE(4), tag);
  assert.equal(csw.data[12], 0, 'CSW status passed');
  return payload;
}

const rw10 = (op: number, lba: number, blocks: number) => [
  op,
  0,
  lba >>> 24,
  (lba >> 16) & 0xff,
  (lba >> 8) & 0xff,
  lba & 0xff,
  0,
  blocks >> 8,
  blocks & 0xff,
  0,
];

test('disk over BOT: reads the image, writes land in the backend, read back matches', async () => {
  const dev = await RemoteUsbipDevice.import(address, '1-1', { timeoutMs: 3000 });
  try {
    assert.equal(dev.speed, 'high');
    assert.equal(dev.configuration, 0);
    assert.equal(dev.descriptors.configurations.length, 1);
    assert.equal((await setConfiguration(dev, 1)).status, TransferStatus.Ok);
    assert.equal(dev.configuration, 1);

    const read = await scsi(dev, rw10(0x28, 100, 64), true, 64 * 512);
    assert.ok(read.equals(image.subarray(100 * 512, 164 * 512)), 'READ(10) returns the image');

    const fresh = Buffer.alloc(128 * 512);
    for (let i = 0; i < fresh.length; i++) fresh[i] = (i * 31 + 7) & 0xff;
    await scsi(dev, rw10(0x2a, 1000, 128), false, fresh);
    assert.ok((await backend.read(1000 * 512, fresh.length)).equals(fresh), 'WRITE(10) landed in the backend');
    const back = await scsi(dev, rw10(0x28, 1000, 128), true, fresh.length);
    assert.ok(back.equals(fresh), 'read back through the client');
    assert.ok(
      (await backend.read(999 * 512, 512)).equals(image.subarray(999 * 512, 1000 * 512)),
      'neighbours untouched',
    );
  } finally {
    await dev.close();
  }
});

test('keyboard: descriptors as the device has them; an interrupt IN with no key pressed cancels cleanly', async () => {
  const dev = await RemoteUsbipDevice.import(address, '1-2', { timeoutMs: 3000 });
  try {
    assert.deepEqual(dev.descriptors.device, keyboard.descriptors.device);
    assert.deepEqual(dev.descriptors.configurations, keyboard.descriptors.configurations);
    assert.equal((await setConfiguration(dev, 1)).status, TransferStatus.Ok);
    const t = new Transfer({ type: 'interrupt', endpoint: 0x81, length: 8 });
    const done = dev.submit(t);
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(dev.inFlight, 1);
    dev.cancel(t);
    await done;
    assert.equal(t.status, TransferStatus.Cancelled);
    assert.equal(dev.inFlight, 0);
  } finally {
    await dev.close();
  }
});

function isoPackets(count: number, stride: number, length: number): IsoPacket[] {
  return Array.from({ length: count }, (_, i) => ({
    offset: i * stride,
    length,
    actualLength: 0,
    status: TransferStatus.Ok,
  }));
}

test('gadget zero: alt setting tracked, iso IN packed and spread back, iso OUT lengths, config change, reset', async () => {
  const dev = await RemoteUsbipDevice.import(address, '1-3', { timeoutMs: 3000 });
  try {
    assert.equal((await setConfiguration(dev, GZERO_SOURCE_SINK_CONFIG)).status, TransferStatus.Ok);
    assert.equal(dev.configuration, GZERO_SOURCE_SINK_CONFIG);
    assert.equal(dev.alternateSetting(0), 0);
    const setAlt = await control(dev, { bmRequestType: 1, bRequest: 11, wValue: 1, wIndex: 0, wLength: 0 });
    assert.equal(setAlt.status, TransferStatus.Ok);
    assert.equal(dev.alternateSetting(0), 1);
    assert.equal(gadget.alternateSetting(0), 1, 'the device itself changed');

    // 1024-byte slots, the device fills 600 of each: the wire carries 4 × 600 packed bytes.
    const packets = isoPackets(4, 1024, 1024);
    const iso = new Transfer({ type: 'isochronous', endpoint: SS_ISO_IN, length: 4096, isoPackets: packets });
    await dev.submit(iso);
    assert.equal(iso.status, TransferStatus.Ok);
    assert.equal(iso.actualLength, 4 * ISO_MAX_PACKET);
    const expected = fillPattern(Buffer.alloc(ISO_MAX_PACKET), 1, ISO_MAX_PACKET);
    for (const p of packets) {
      assert.equal(p.actualLength, ISO_MAX_PACKET);
      assert.equal(p.status, TransferStatus.Ok);
      assert.ok(iso.data.subarray(p.offset, p.offset + ISO_MAX_PACKET).equals(expected), `packet at ${p.offset}`);
    }

    const outPackets = isoPackets(3, 500, 500);
    const out = new Transfer({
      type: 'isochronous',
      endpoint: SS_ISO_OUT,
      data: Buffer.alloc(1500, 7),
      isoPackets: outPackets,
    });
    await dev.submit(out);
    assert.equal(out.status, TransferStatus.Ok);
    assert.deepEqual(
      outPackets.map((p) => p.actualLength),
      [500, 500, 500],
    );

    assert.equal((await setConfiguration(dev, GZERO_LOOPBACK_CONFIG)).status, TransferStatus.Ok);
    assert.equal(dev.configuration, GZERO_LOOPBACK_CONFIG);
    assert.equal(dev.alternateSetting(0), 0, 'a new configuration starts at alt 0');

    const parked = bulkIn(dev, LB_BULK_IN, 512);
    await dev.reset();
    await parked.done;
    assert.equal(parked.status, TransferStatus.Cancelled);
    assert.equal(dev.configuration, 0, 'usbwire unconfigures on port reset; the client read it back');
    assert.equal(gadget.configuration, 0);
    assert.equal((await setConfiguration(dev, GZERO_LOOPBACK_CONFIG)).status, TransferStatus.Ok);
  } finally {
    await dev.close();
  }
});

test('invalid transfers are refused locally, without a round trip', async () => {
  const dev = await RemoteUsbipDevice.import(address, '1-3', { timeoutMs: 3000 });
  try {
    const noPackets = new Transfer({ type: 'isochronous', endpoint: SS_ISO_IN, length: 64 });
    await dev.submit(noPackets);
    assert.equal(noPackets.status, TransferStatus.Invalid);
    const beyond = new Transfer({
      type: 'isochronous',
      endpoint: SS_ISO_IN,
      length: 64,
      isoPackets: isoPackets(1, 32, 64),
    });
    await dev.submit(beyond);
    assert.equal(beyond.status, TransferStatus.Invalid);
    const noSetup = new Transfer({ type: 'control', endpoint: 0x80, length: 8 });
    await dev.submit(noSetup);
    assert.equal(noSetup.status, TransferStatus.Invalid);
    assert.equal(dev.inFlight, 0);
  } finally {
    await dev.close();
  }
});

// Safe detach through the control endpoint, with a disk imported over USB/IP by our own client:
// refused while the host locked the medium (409 naming the busid, the holder and why; the CLI
// exits 1), accepted once unlocked (writes in flight finish and are flushed before the holder's
// connection closes), and forced: the host sees UNIT ATTENTION / NOT READY, MEDIUM NOT PRESENT
// before it loses the device, and the next importer finds the medium back.
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { detachDevice } from '../../src/cli/control-client.js';
import { UsbipClient } from '../../src/client/usbip/index.js';
import { CSW_SIZE, encodeCbw } from '../../src/devices/mass-storage/bot-wire.js';
import { createBotDisk } from '../../src/devices/mass-storage/index.js';
import { Cdb } from '../../src/devices/mass-storage/scsi/cdb-builders.js';
import { ControlServer, detachAllForStop, route } from '../../src/server/control/index.js';
import { DeviceRegistry } from '../../src/server/registry.js';
import { UsbipServer } from '../../src/server/usbip/index.js';
import type { UsbDevice } from '../../src/usb/device.js';
import { TransferStatus } from '../../src/usb/status.js';
import { bulkIn, bulkOut, setConfiguration } from '../support/drive.js';
import { GatedBackend, settled } from '../support/gated-backend.js';

const backend = new GatedBackend(1 << 20);
const registry = new DeviceRegistry();
const entry = registry.add(createBotDisk(backend, { name: 'test disk' }));
const usbip = new UsbipServer(registry, { host: '127.0.0.1', port: 0 });
const where = await usbip.listen();
const sock = join(mkdtempSync(join(tmpdir(), 'usbwire-detach-')), 'c.sock');
const control = new ControlServer(registry, { kind: 'unix', path: sock });
await control.listen();
const client = new UsbipClient();
after(async () => {
  await control.close();
  await usbip.close();
  await registry.closeAll();
});

let tag = 0;
/** One SCSI command over BOT: CBW, optional data, CSW. Returns the CSW status and data in. */
async function scsi(dev: UsbDevice, cdb: Buffer, io: { in?: number; out?: Buffer } = {}) {
  const length = io.in ?? io.out?.length ?? 0;
  const cbw = encodeCbw({ tag: ++tag, dataTransferLength: length, dataIn: io.in !== undefined, lun: 0, cdb });
  assert.equal((await bulkOut(dev, 0x02, cbw)).status, TransferStatus.Ok, 'CBW');
  let data: Buffer | undefined;
  if (io.in !== undefined) {
    const t = bulkIn(dev, 0x81, io.in);
    await t.done;
    data = t.data.subarray(0, t.actualLength);
  } else if (io.out) assert.equal((await bulkOut(dev, 0x02, io.out)).status, TransferStatus.Ok, 'data out');
  const csw = bulkIn(dev, 0x81, CSW_SIZE);
  await csw.done;
  assert.equal(csw.status, TransferStatus.Ok, 'CSW');
  return { status: csw.data[12]!, data };
}

async function senseKey(dev: UsbDevice): Promise<string> {
  const { data } = await scsi(dev, Cdb.requestSense(18), { in: 18 });
  return [data![2]! & 0xf, data![12]!, data![13]!].map((n) => n.toString(16).padStart(2, '0')).join('/');
}

async function attach(): Promise<UsbDevice> {
  const dev = await client.importDevice(where, entry.busid);
  assert.equal((await setConfiguration(dev, 1)).status, TransferStatus.Ok);
  await scsi(dev, Cdb.testUnitReady()); // the power-on unit attention
  await senseKey(dev);
  return dev;
}

const post = (body?: unknown) => route(registry, 'POST', `/devices/${entry.busid}/detach`, body);
const gone = (dev: UsbDevice) => new Promise<void>((resolve) => dev.once('disconnect', resolve));

test('refused while the host locks the medium: 409 names busid, holder and the lock; the CLI exits 1', async () => {
  const dev = await attach();
  assert.equal((await scsi(dev, Cdb.preventAllowMediumRemoval(true))).status, 0);
  const r = await post();
  assert.equal(r.status, 409);
  const body = r.body as { error: string; held: { owner: string; reason: string } };
  assert.match(body.held.owner, /^usbip 127\.0\.0\.1:\d+$/);
  assert.match(body.held.reason, /PREVENT ALLOW MEDIUM REMOVAL/);
  assert.match(body.error, new RegExp(`^${entry.busid} \\(test disk\\) is held by usbip 127\\.0\\.0\\.1:\\d+: `));
  assert.match(body.error, /--force/);
  const cli = await detachDevice({ kind: 'unix', path: sock }, entry.busid, false);
  assert.equal(cli.status, 1);
  assert.match(cli.lines.join('\n'), /is held by usbip .*mounted or open/);
  assert.equal(entry.owner, body.held.owner, 'the holder keeps the device');
  const data = Buffer.alloc(512, 0x11);
  assert.equal((await scsi(dev, Cdb.write10(3, 1), { out: data })).status, 0, 'and keeps writing');
  assert.deepEqual(await backend.read(3 * 512, 512), data);
  assert.equal((await post({ force: 'yes' })).status, 400);

  // Unlocked (the guest unmounted): accepted; a write in flight finishes and is flushed first.
  assert.equal((await scsi(dev, Cdb.preventAllowMediumRemoval(false))).status, 0);
  backend.hold();
  const write = scsi(dev, Cdb.write10(5, 2), { out: Buffer.alloc(1024, 0x22) });
  while (backend.writesStarted < 2) await new Promise((r) => setTimeout(r, 5));
  const flushesBefore = backend.flushes;
  const lost = gone(dev);
  const detached = post();
  assert.equal(await settled(detached), false, 'the detach waits for the write in flight');
  assert.equal(entry.owner !== undefined, true);
  backend.open();
  assert.equal((await write).status, 0, 'the write in flight completes GOOD');
  const answer = await detached;
  assert.equal(answer.status, 200, JSON.stringify(answer.body));
  assert.deepEqual(answer.body, { detached: body.held.owner, ejected: true });
  assert.ok(backend.flushes > flushesBefore, 'flushed');
  assert.deepEqual(await backend.read(5 * 512, 1024), Buffer.alloc(1024, 0x22));
  await lost;
  assert.equal(entry.owner, undefined, 'free once answered');
});

test('forced while locked: the host sees the medium removed, then loses the device; the next one gets it back', async () => {
  const dev = await attach();
  assert.equal((await scsi(dev, Cdb.preventAllowMediumRemoval(true))).status, 0);
  const detached = post({ force: true });
  // The host's next commands (a write the guest had queued) learn that the medium is gone.
  const w = await scsi(dev, Cdb.write10(9, 1), { out: Buffer.alloc(512, 0x33) });
  assert.equal(w.status, 1, 'a new write fails');
  assert.equal(await senseKey(dev), '06/3a/00', 'UNIT ATTENTION, MEDIUM NOT PRESENT');
  // The CSW of that REQUEST SENSE went out: the host has the news, the connection may close.
  const lost = gone(dev);
  const answer = await detached;
  assert.equal(answer.status, 200);
  const body = answer.body as { detached: string; ejected: boolean; forcedHold: string; hostNoticed: boolean };
  assert.equal(body.ejected, true);
  assert.equal(body.hostNoticed, true);
  assert.match(body.forcedHold, /PREVENT/);
  assert.deepEqual(await backend.read(9 * 512, 512), Buffer.alloc(512), 'the refused write is not in the image');
  await lost;
  const next = await attach();
  assert.equal((await scsi(next, Cdb.testUnitReady())).status, 0, 'the medium is back for the next host');
  const { data } = await scsi(next, Cdb.read10(5, 2), { in: 1024 });
  assert.deepEqual(data, Buffer.alloc(1024, 0x22));
  const lostNext = gone(next);
  assert.equal((await post()).status, 200);
  await lostNext;
  assert.equal((await post()).status, 409, 'a free device: nothing to detach');
});

/** What serve does on SIGTERM; `insist` is the second signal. */
function stopping(): { done: Promise<void>; insist: () => void } {
  let insist!: () => void;
  const done = detachAllForStop(registry, {
    force: false,
    insist: new Promise((r) => (insist = r)),
    why: 'SIGTERM',
    pollMs: 10,
  });
  return { done, insist: () => insist() };
}

test('stop (SIGTERM): waits while a host holds a disk, goes on when it unlocks, or forces when insisted', async () => {
  const dev = await attach();
  assert.equal((await scsi(dev, Cdb.preventAllowMediumRemoval(true))).status, 0);
  const stop = stopping().done;
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(await settled(stop), false, 'waits while the disk is locked');
  assert.notEqual(entry.owner, undefined);
  const lost = gone(dev);
  assert.equal((await scsi(dev, Cdb.preventAllowMediumRemoval(false))).status, 0);
  await stop;
  await lost;
  assert.equal(entry.owner, undefined);

  const again = await attach();
  assert.equal((await scsi(again, Cdb.preventAllowMediumRemoval(true))).status, 0);
  const lostAgain = gone(again);
  const forced = stopping();
  await new Promise((r) => setTimeout(r, 30));
  forced.insist();
  await new Promise((r) => setTimeout(r, 10));
  assert.equal((await scsi(again, Cdb.testUnitReady())).status, 1);
  assert.equal(await senseKey(again), '06/3a/00');
  await forced.done;
  await lostAgain;
  assert.equal(entry.owner, undefined);
});

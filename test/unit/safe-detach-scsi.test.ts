// The SCSI side of safe detach: the host's medium lock (PREVENT ALLOW MEDIUM REMOVAL) as a hold,
// and an operator's medium removal: running commands finish first, then UNIT ATTENTION 06/3A/00
// once and NOT READY, MEDIUM NOT PRESENT after it, until the medium is put back.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MemoryBackend } from '../../src/devices/mass-storage/backend/memory-backend.js';
import { diskSafeRelease } from '../../src/devices/mass-storage/safe-release.js';
import { Cdb } from '../../src/devices/mass-storage/scsi/cdb-builders.js';
import { ScsiDisk } from '../../src/devices/mass-storage/scsi/scsi-disk.js';
import { parseSense, type SenseCode } from '../../src/devices/mass-storage/scsi/sense.js';
import { GatedBackend, settled } from '../support/gated-backend.js';

const MEDIUM_REMOVED = { key: 6, asc: 0x3a, ascq: 0 };
const NO_MEDIUM = { key: 2, asc: 0x3a, ascq: 0 };
const MEDIUM_CHANGED = { key: 6, asc: 0x28, ascq: 0 };

async function senseOf(d: ScsiDisk, cdb: Buffer, data?: Buffer): Promise<SenseCode | undefined> {
  const r = await d.execute(cdb, data);
  if (r.status === 'good') return undefined;
  const s = parseSense(r.sense!)!;
  return { key: s.key, asc: s.asc, ascq: s.ascq };
}

describe('the host locks the medium', () => {
  it('PREVENT is a hold with its reason and time; ALLOW and a bus reset lift it', async () => {
    const d = new ScsiDisk(new MemoryBackend(1 << 20), { removable: true });
    const release = diskSafeRelease(d);
    assert.equal(release.hold(), undefined);
    const before = Date.now();
    assert.equal(await senseOf(d, Cdb.preventAllowMediumRemoval(true)), undefined);
    assert.ok(d.mediumLockedSince!.getTime() >= before);
    assert.match(release.hold()!, /PREVENT ALLOW MEDIUM REMOVAL, prevent=1.*mounted or open/);
    assert.equal(await senseOf(d, Cdb.preventAllowMediumRemoval(false)), undefined);
    assert.equal(release.hold(), undefined);
    await d.execute(Cdb.preventAllowMediumRemoval(true));
    d.reset();
    assert.equal(release.hold(), undefined, 'a bus reset forgets the lock');
  });

  it('a second PREVENT keeps the time of the first', async () => {
    const d = new ScsiDisk(new MemoryBackend(1 << 20), { removable: true });
    await d.execute(Cdb.preventAllowMediumRemoval(true));
    const first = d.mediumLockedSince;
    await new Promise((r) => setTimeout(r, 5));
    await d.execute(Cdb.preventAllowMediumRemoval(true));
    assert.equal(d.mediumLockedSince, first);
  });
});

describe('the operator removes the medium', () => {
  it('a write in flight finishes whole first; then 06/3A/00 once, then 02/3A/00 for everything', async () => {
    const backend = new GatedBackend(1 << 20);
    const d = new ScsiDisk(backend, { removable: true });
    await d.execute(Cdb.preventAllowMediumRemoval(true));
    backend.hold();
    const data = Buffer.alloc(4096, 0x5a);
    const write = d.execute(Cdb.write10(8, 8), data);
    const removed = d.removeMedium();
    assert.equal(await settled(removed), false, 'removal waits for the write in flight');
    backend.open();
    assert.equal((await write).status, 'good', 'the write that was running completes');
    await removed;
    assert.deepEqual(await backend.read(8 * 512, 4096), data);
    assert.deepEqual(await senseOf(d, Cdb.testUnitReady()), MEDIUM_REMOVED);
    assert.deepEqual(await senseOf(d, Cdb.testUnitReady()), NO_MEDIUM);
    assert.deepEqual(await senseOf(d, Cdb.read10(0, 1)), NO_MEDIUM);
    assert.deepEqual(await senseOf(d, Cdb.write10(0, 1), Buffer.alloc(512)), NO_MEDIUM);
    assert.deepEqual(await senseOf(d, Cdb.startStopUnit({ start: true, loadEject: true })), NO_MEDIUM, 'no load');
    assert.deepEqual(await backend.read(0, 512), Buffer.alloc(512), 'the refused write changed nothing');
    assert.equal(d.mediumLockedSince, undefined, 'no medium, nothing held');
    assert.equal((await d.execute(Cdb.inquiry())).status, 'good', 'INQUIRY still answers');
  });

  it('the host has been told once REQUEST SENSE reported it and the host went on', async () => {
    const d = new ScsiDisk(new MemoryBackend(1 << 20), { removable: true });
    await d.removeMedium();
    assert.equal(await settled(d.removalSeenByHost), false);
    assert.equal((await d.execute(Cdb.read10(0, 1))).status, 'check-condition');
    assert.equal(await settled(d.removalSeenByHost), false, 'failed, but the host does not know why yet');
    const r = await d.execute(Cdb.requestSense(18));
    assert.deepEqual(
      { key: r.data![2]! & 0xf, asc: r.data![12], ascq: r.data![13] },
      MEDIUM_REMOVED,
      'REQUEST SENSE reports the removal',
    );
    assert.equal(await settled(d.removalSeenByHost), false, 'its data may still be on the way');
    await d.execute(Cdb.testUnitReady());
    assert.equal(await settled(d.removalSeenByHost), true, 'the host went on: it has the news');
  });

  it('... or once the transport delivered the status of that REQUEST SENSE', async () => {
    const d = new ScsiDisk(new MemoryBackend(1 << 20), { removable: true });
    await d.removeMedium();
    d.statusDelivered();
    assert.equal(await settled(d.removalSeenByHost), false, 'not before it was reported');
    await d.execute(Cdb.read10(0, 1));
    d.statusDelivered();
    await d.execute(Cdb.requestSense(18));
    assert.equal(await settled(d.removalSeenByHost), false);
    d.statusDelivered();
    assert.equal(await settled(d.removalSeenByHost), true);
  });

  it('a bus reset does not bring the medium back; insertMedium does, with 06/28/00', async () => {
    const d = new ScsiDisk(new MemoryBackend(1 << 20), { removable: true });
    await d.execute(Cdb.preventAllowMediumRemoval(true));
    await d.removeMedium();
    d.reset();
    await d.execute(Cdb.testUnitReady()); // power-on reset UA
    assert.deepEqual(await senseOf(d, Cdb.testUnitReady()), NO_MEDIUM);
    d.insertMedium();
    assert.deepEqual(await senseOf(d, Cdb.testUnitReady()), MEDIUM_CHANGED);
    assert.equal(await senseOf(d, Cdb.testUnitReady()), undefined);
    assert.equal(d.mediumRemovalPrevented, false, 'the next host starts unlocked');
    assert.equal((await d.execute(Cdb.read10(0, 1))).status, 'good');
  });

  it('the SafeRelease of a disk: eject waits, flush flushes, restore loads', async () => {
    const backend = new GatedBackend(1 << 20);
    const d = new ScsiDisk(backend, { removable: true });
    const release = diskSafeRelease(d);
    backend.hold();
    const write = d.execute(Cdb.write10(1, 1), Buffer.alloc(512, 1));
    const ejected = release.eject();
    assert.equal(await settled(ejected), false);
    backend.open();
    const { noticed } = await ejected;
    assert.equal((await write).status, 'good');
    await release.flush();
    assert.equal(backend.flushes, 1);
    await d.execute(Cdb.testUnitReady());
    await d.execute(Cdb.requestSense(18));
    await d.execute(Cdb.testUnitReady());
    await noticed;
    release.restore();
    assert.equal(d.mediumPresent, true);
  });
});

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MemoryBackend } from '../../src/devices/mass-storage/backend/memory-backend.js';
import { Cdb } from '../../src/devices/mass-storage/scsi/cdb-builders.js';
import { ScsiDisk, type ScsiDiskOptions } from '../../src/devices/mass-storage/scsi/scsi-disk.js';
import { parseSense, type SenseCode } from '../../src/devices/mass-storage/scsi/sense.js';

const newDisk = (options: ScsiDiskOptions = {}) => new ScsiDisk(new MemoryBackend(1024 * 1024), options);

async function senseOf(d: ScsiDisk, cdb: Buffer): Promise<SenseCode | undefined> {
  const r = await d.execute(cdb);
  if (r.status === 'good') return undefined;
  const s = parseSense(r.sense!)!;
  return { key: s.key, asc: s.asc, ascq: s.ascq };
}

async function requestSense(d: ScsiDisk, allocation = 18): Promise<Buffer> {
  const r = await d.execute(Cdb.requestSense(allocation));
  assert.equal(r.status, 'good');
  return r.data!;
}

const NO_SENSE = [0x70, 0, 0, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
const INVALID_OPCODE = { key: 5, asc: 0x20, ascq: 0 };
const INVALID_FIELD = { key: 5, asc: 0x24, ascq: 0 };
const RESET_OCCURRED = { key: 6, asc: 0x29, ascq: 0 };
const NO_MEDIUM = { key: 2, asc: 0x3a, ascq: 0 };

describe('REQUEST SENSE', () => {
  it('reports the last failure once, then NO SENSE', async () => {
    const d = newDisk();
    assert.deepEqual(await senseOf(d, Buffer.from([0xff, 0, 0, 0, 0, 0])), INVALID_OPCODE);
    const sense = await requestSense(d);
    assert.deepEqual([...sense], [0x70, 0, 5, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x20, 0, 0, 0, 0, 0]);
    assert.deepEqual([...(await requestSense(d))], NO_SENSE);
  });

  it('a successful command clears the previous sense (BOT hosts ask right after the failure)', async () => {
    const d = newDisk();
    await d.execute(Cdb.read10(1e6, 1));
    assert.equal((await d.execute(Cdb.testUnitReady())).status, 'good');
    assert.deepEqual([...(await requestSense(d))], NO_SENSE);
  });

  it('keeps the LBA in INFORMATION and honours the allocation length (Linux asks 18 or 96)', async () => {
    const d = newDisk();
    await d.execute(Cdb.read10(5000, 1));
    const d2 = newDisk();
    await d2.execute(Cdb.read10(5000, 1));
    assert.deepEqual(parseSense(await requestSense(d, 96)), { key: 5, asc: 0x21, ascq: 0, information: 5000 });
    assert.equal(d.plan(Cdb.requestSense(96)).length, 18);
    assert.deepEqual([...(await requestSense(d2, 3))], [0xf0, 0, 5]);
  });

  it('DESC=1 fails INVALID FIELD IN CDB (fixed format only)', async () => {
    const d = newDisk();
    assert.deepEqual(await senseOf(d, Cdb.requestSense(18, true)), INVALID_FIELD);
    assert.deepEqual(parseSense(await requestSense(d)), INVALID_FIELD);
  });
});

describe('unit attention after reset()', () => {
  it('fails the next ordinary command once with 06/29/00; INQUIRY and REQUEST SENSE are exempt', async () => {
    const d = newDisk();
    d.reset();
    assert.equal(d.plan(Cdb.read10(0, 1)).direction, 'none');
    assert.equal(d.plan(Cdb.inquiry()).direction, 'in');
    assert.equal((await d.execute(Cdb.inquiry())).status, 'good');
    assert.deepEqual(await senseOf(d, Cdb.read10(0, 1)), RESET_OCCURRED);
    assert.deepEqual(parseSense(await requestSense(d)), RESET_OCCURRED);
    assert.equal((await d.execute(Cdb.read10(0, 1))).status, 'good');
    assert.equal((await d.execute(Cdb.testUnitReady())).status, 'good');
  });

  it('takes precedence over an invalid opcode', async () => {
    const d = newDisk();
    d.reset();
    assert.deepEqual(await senseOf(d, Buffer.from([0xee, 0, 0, 0, 0, 0])), RESET_OCCURRED);
    assert.deepEqual(await senseOf(d, Buffer.from([0xee, 0, 0, 0, 0, 0])), INVALID_OPCODE);
  });

  it('REQUEST SENSE with nothing else pending reports and clears it (SPC)', async () => {
    const d = newDisk();
    d.reset();
    assert.deepEqual(parseSense(await requestSense(d)), RESET_OCCURRED);
    assert.equal((await d.execute(Cdb.testUnitReady())).status, 'good');
  });

  it('clears pending sense and medium-removal prevention', async () => {
    const d = newDisk({ removable: true });
    await d.execute(Cdb.preventAllowMediumRemoval(true));
    await d.execute(Cdb.read10(1e6, 1));
    d.reset();
    assert.equal(d.mediumRemovalPrevented, false);
    assert.deepEqual(parseSense(await requestSense(d)), RESET_OCCURRED);
  });
});

describe('TEST UNIT READY, START STOP UNIT, PREVENT ALLOW MEDIUM REMOVAL', () => {
  it('TEST UNIT READY is good with no data', async () => {
    const d = newDisk();
    assert.deepEqual(d.plan(Cdb.testUnitReady()), { opcode: 0, name: 'TestUnitReady', direction: 'none', length: 0 });
    assert.deepEqual(await d.execute(Cdb.testUnitReady()), { status: 'good' });
  });

  it('eject on a removable unit makes media commands fail NOT READY / MEDIUM NOT PRESENT until load', async () => {
    const d = newDisk({ removable: true });
    assert.equal((await d.execute(Cdb.startStopUnit({ start: false, loadEject: true }))).status, 'good');
    assert.equal(d.mediumPresent, false);
    for (const cdb of [Cdb.testUnitReady(), Cdb.readCapacity10(), Cdb.read10(0, 1), Cdb.synchronizeCache10()]) {
      assert.deepEqual(await senseOf(d, cdb), NO_MEDIUM);
    }
    assert.equal((await d.execute(Cdb.inquiry())).status, 'good');
    assert.equal((await d.execute(Cdb.modeSense6())).status, 'good');
    assert.equal((await d.execute(Cdb.readFormatCapacities()))!.data![8], 0x03, 'no media descriptor');
    assert.equal((await d.execute(Cdb.startStopUnit({ start: true, loadEject: true }))).status, 'good');
    assert.equal((await d.execute(Cdb.testUnitReady())).status, 'good');
  });

  it('eject while removal is prevented fails 05/53/02; allow lifts it', async () => {
    const d = newDisk({ removable: true });
    assert.equal((await d.execute(Cdb.preventAllowMediumRemoval(true))).status, 'good');
    assert.equal(d.mediumRemovalPrevented, true);
    assert.deepEqual(await senseOf(d, Cdb.startStopUnit({ start: false, loadEject: true })), {
      key: 5,
      asc: 0x53,
      ascq: 2,
    });
    assert.equal(d.mediumPresent, true);
    await d.execute(Cdb.preventAllowMediumRemoval(false));
    assert.equal((await d.execute(Cdb.startStopUnit({ start: false, loadEject: true }))).status, 'good');
    assert.equal(d.mediumPresent, false);
  });

  it('a fixed disk ignores eject and stop; PREVENT values 2 and 3 are invalid', async () => {
    const d = newDisk();
    assert.equal((await d.execute(Cdb.startStopUnit({ start: false, loadEject: true }))).status, 'good');
    assert.equal((await d.execute(Cdb.startStopUnit({ start: false }))).status, 'good');
    assert.equal(d.mediumPresent, true);
    const persistent = Cdb.preventAllowMediumRemoval(false);
    persistent[4] = 2;
    assert.deepEqual(await senseOf(d, persistent), INVALID_FIELD);
  });
});

describe('REPORT LUNS and unsupported commands', () => {
  it('REPORT LUNS lists the configured LUNs', async () => {
    const one = await newDisk().execute(Cdb.reportLuns(16));
    assert.deepEqual([...one.data!], [0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    const many = await newDisk({ luns: [0, 3, 300] }).execute(Cdb.reportLuns(64));
    assert.equal(many.data!.length, 32);
    assert.deepEqual([...many.data!.subarray(0, 4)], [0, 0, 0, 24]);
    assert.deepEqual([...many.data!.subarray(16, 18)], [0, 3]);
    assert.deepEqual([...many.data!.subarray(24, 26)], [0x41, 0x2c]);
  });

  it('REPORT LUNS rejects an allocation length below 16 and unknown SELECT REPORT', async () => {
    assert.deepEqual(await senseOf(newDisk(), Cdb.reportLuns(8)), INVALID_FIELD);
    const cdb = Cdb.reportLuns(16);
    cdb[2] = 5;
    assert.deepEqual(await senseOf(newDisk(), cdb), INVALID_FIELD);
  });

  it('unknown opcodes (MODE SELECT, REPORT SUPPORTED OPCODES, WRITE SAME...) fail 05/20/00', async () => {
    for (const opcode of [0x15, 0x55, 0xa3, 0x41, 0x93, 0x42, 0x04, 0xff]) {
      const cdb = Buffer.alloc(16);
      cdb[0] = opcode;
      const d = newDisk();
      assert.equal(d.plan(cdb).direction, 'none');
      assert.deepEqual(await senseOf(d, cdb), INVALID_OPCODE, opcode.toString(16));
    }
    assert.deepEqual(await senseOf(newDisk(), Buffer.alloc(0)), INVALID_OPCODE);
  });

  it('a CDB shorter than its opcode requires fails INVALID FIELD IN CDB', async () => {
    assert.deepEqual(await senseOf(newDisk(), Cdb.read10(0, 1).subarray(0, 6)), INVALID_FIELD);
    assert.equal((await newDisk().execute(Buffer.concat([Cdb.inquiry(), Buffer.alloc(6)]))).status, 'good');
  });
});

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MemoryBackend } from '../../src/devices/mass-storage/backend/memory-backend.js';
import { Cdb } from '../../src/devices/mass-storage/scsi/cdb-builders.js';
import { buildNoLunInquiry } from '../../src/devices/mass-storage/scsi/inquiry.js';
import { ScsiDisk } from '../../src/devices/mass-storage/scsi/scsi-disk.js';
import { parseSense } from '../../src/devices/mass-storage/scsi/sense.js';

const disk = (options: ConstructorParameters<typeof ScsiDisk>[1] = {}) =>
  new ScsiDisk(new MemoryBackend(1024 * 1024), {
    vendor: 'ACME',
    product: 'Flash',
    revision: '2.5',
    serial: 'SN0001',
    ...options,
  });

async function good(d: ScsiDisk, cdb: Buffer): Promise<Buffer> {
  const r = await d.execute(cdb);
  assert.equal(r.status, 'good', `sense ${r.sense?.toString('hex')}`);
  assert.equal(d.plan(cdb).length, r.data?.length ?? 0, 'plan length matches the data returned');
  return r.data ?? Buffer.alloc(0);
}

async function invalidField(d: ScsiDisk, cdb: Buffer): Promise<void> {
  const r = await d.execute(cdb);
  assert.equal(r.status, 'check-condition');
  assert.deepEqual(parseSense(r.sense!), { key: 5, asc: 0x24, ascq: 0 });
  assert.equal(d.plan(cdb).direction, 'none');
}

describe('INQUIRY', () => {
  it('standard data: the 36-byte layout Linux usb-storage asks for', async () => {
    const data = await good(disk(), Buffer.from('120000002400', 'hex'));
    assert.equal(data.length, 36);
    assert.deepEqual([...data.subarray(0, 8)], [0x00, 0x00, 0x05, 0x12, 31, 0, 0, 0]);
    assert.equal(data.toString('ascii', 8, 16), 'ACME    ');
    assert.equal(data.toString('ascii', 16, 32), 'Flash           ');
    assert.equal(data.toString('ascii', 32, 36), '2.5 ');
  });

  it('RMB and CMDQUE follow the options', async () => {
    const data = await good(disk({ removable: true, taggedQueuing: true }), Cdb.inquiry(36));
    assert.equal(data[1], 0x80);
    assert.equal(data[7], 0x02);
  });

  it('truncates to the allocation length and plans exactly that', async () => {
    const d = disk();
    assert.deepEqual(d.plan(Cdb.inquiry(5)), { opcode: 0x12, name: 'Inquiry', direction: 'in', length: 5 });
    assert.deepEqual(d.plan(Cdb.inquiry(255)), { opcode: 0x12, name: 'Inquiry', direction: 'in', length: 36 });
    assert.equal((await good(d, Cdb.inquiry(5)))[4], 31);
    assert.equal(d.plan(Cdb.inquiry(0)).direction, 'none');
    assert.equal((await good(d, Cdb.inquiry(0))).length, 0);
  });

  it('rejects CmdDt and a page code without EVPD', async () => {
    await invalidField(disk(), Buffer.from('120200002400', 'hex'));
    await invalidField(disk(), Buffer.from('120080002400', 'hex'));
  });

  it('VPD 00 lists the supported pages in ascending order', async () => {
    assert.deepEqual([...(await good(disk(), Cdb.inquiry(255, 0x00)))], [0, 0, 0, 5, 0x00, 0x80, 0x83, 0xb0, 0xb1]);
    assert.deepEqual(
      [...(await good(disk({ serial: undefined }), Cdb.inquiry(255, 0x00)))],
      [0, 0, 0, 4, 0x00, 0x83, 0xb0, 0xb1],
    );
  });

  it('VPD 80 carries the serial; unsupported without one', async () => {
    const data = await good(disk(), Cdb.inquiry(255, 0x80));
    assert.deepEqual([...data.subarray(0, 4)], [0, 0x80, 0, 6]);
    assert.equal(data.toString('ascii', 4), 'SN0001');
    await invalidField(disk({ serial: undefined }), Cdb.inquiry(255, 0x80));
  });

  it('VPD 83 has a T10 vendor id designator and a stable NAA designator from the serial', async () => {
    const data = await good(disk(), Cdb.inquiry(255, 0x83));
    assert.deepEqual([...data.subarray(0, 4)], [0, 0x83, 0, data.length - 4]);
    const t10 = data.subarray(4);
    assert.deepEqual([...t10.subarray(0, 4)], [0x02, 0x01, 0, 8 + 16 + 6]);
    assert.equal(t10.toString('ascii', 4, 4 + 30), 'ACME    Flash           SN0001');
    const naa = t10.subarray(4 + 30);
    assert.deepEqual([...naa.subarray(0, 4)], [0x01, 0x03, 0, 8]);
    assert.equal(naa[4]! >> 4, 3, 'NAA 3, locally assigned');
    assert.equal(naa.length, 12);
    const again = await good(disk(), Cdb.inquiry(255, 0x83));
    assert.deepEqual(again, data, 'same identity, same designators');
    const other = await good(disk({ serial: 'SN0002' }), Cdb.inquiry(255, 0x83));
    assert.notDeepEqual(other.subarray(-8), data.subarray(-8));
  });

  it('VPD B0 block limits and B1 non-rotating', async () => {
    const b0 = await good(disk({ maxTransferBlocks: 2048 }), Cdb.inquiry(255, 0xb0));
    assert.equal(b0.length, 64);
    assert.deepEqual([...b0.subarray(0, 4)], [0, 0xb0, 0, 0x3c]);
    assert.equal(b0.readUInt32BE(8), 2048);
    const b1 = await good(disk(), Cdb.inquiry(255, 0xb1));
    assert.equal(b1.length, 64);
    assert.deepEqual([...b1.subarray(0, 6)], [0, 0xb1, 0, 0x3c, 0, 1]);
  });

  it('unsupported VPD pages fail INVALID FIELD IN CDB', async () => {
    for (const page of [0x01, 0x86, 0xb2, 0xff]) await invalidField(disk(), Cdb.inquiry(255, page));
  });

  it('answers for a missing LUN with PQ 3 / PDT 0x1F', () => {
    const data = buildNoLunInquiry();
    assert.equal(data.length, 36);
    assert.equal(data[0], 0x7f);
  });

  it('validates identity strings', () => {
    assert.throws(() => disk({ vendor: 'TOO LONG VENDOR' }), /vendor .* longer than 8/);
    assert.throws(() => disk({ product: 'caf\u00e9' }), /printable ASCII/);
    assert.throws(() => disk({ serial: '  ' }), /blank/);
  });
});

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { BlockBackend } from '../../src/devices/mass-storage/backend/block-backend.js';
import { MemoryBackend } from '../../src/devices/mass-storage/backend/memory-backend.js';
import { Cdb } from '../../src/devices/mass-storage/scsi/cdb-builders.js';
import { ScsiDisk } from '../../src/devices/mass-storage/scsi/scsi-disk.js';
import { parseSense, type SenseCode } from '../../src/devices/mass-storage/scsi/sense.js';

const MiB = 1024 * 1024;

/** A backend that only reports a size: capacity commands never touch data. */
function sizedOnly(size: number): BlockBackend {
  const never = () => Promise.reject(new Error('not used'));
  return { size, readOnly: false, read: never, write: never, flush: never, close: never };
}

async function good(d: ScsiDisk, cdb: Buffer): Promise<Buffer> {
  const r = await d.execute(cdb);
  assert.equal(r.status, 'good', `sense ${r.sense?.toString('hex')}`);
  assert.equal(d.plan(cdb).length, r.data?.length ?? 0, 'plan length matches the data returned');
  return r.data ?? Buffer.alloc(0);
}

async function fails(d: ScsiDisk, cdb: Buffer, sense: SenseCode): Promise<void> {
  assert.equal(d.plan(cdb).direction, 'none');
  const r = await d.execute(cdb);
  assert.equal(r.status, 'check-condition');
  assert.deepEqual(parseSense(r.sense!), sense);
}

const INVALID_FIELD = { key: 5, asc: 0x24, ascq: 0 };

describe('READ CAPACITY', () => {
  it('(10) reports the last LBA and 512-byte blocks', async () => {
    const data = await good(new ScsiDisk(new MemoryBackend(64 * MiB)), Buffer.from('25000000000000000000', 'hex'));
    assert.deepEqual([...data], [0x00, 0x01, 0xff, 0xff, 0x00, 0x00, 0x02, 0x00]);
  });

  it('(10) saturates at 0xFFFFFFFF when the last LBA needs more than 32 bits; (16) has it', async () => {
    const blocks = 2 ** 32 + 10;
    const d = new ScsiDisk(sizedOnly(blocks * 512));
    assert.deepEqual([...(await good(d, Cdb.readCapacity10()))], [0xff, 0xff, 0xff, 0xff, 0, 0, 2, 0]);
    const rc16 = await good(d, Cdb.readCapacity16(32));
    assert.equal(rc16.length, 32);
    assert.equal(rc16.readBigUInt64BE(0), BigInt(blocks - 1));
    assert.equal(rc16.readUInt32BE(8), 512);
    assert.deepEqual([...rc16.subarray(12)], new Array(20).fill(0));
  });

  it('(10) at exactly 2^32 blocks still fits: last LBA 0xFFFFFFFF', async () => {
    const d = new ScsiDisk(sizedOnly(2 ** 32 * 512));
    assert.equal((await good(d, Cdb.readCapacity10())).readUInt32BE(0), 0xffffffff);
  });

  it('(16) honours the allocation length', async () => {
    const d = new ScsiDisk(new MemoryBackend(MiB));
    assert.deepEqual([...(await good(d, Cdb.readCapacity16(12)))], [0, 0, 0, 0, 0, 0, 0x07, 0xff, 0, 0, 2, 0]);
    assert.equal((await good(d, Cdb.readCapacity16(0))).length, 0);
  });

  it('rejects LBA without PMI and unknown SERVICE ACTION IN(16) actions', async () => {
    const d = new ScsiDisk(new MemoryBackend(MiB));
    const withLba = Cdb.readCapacity10();
    withLba.writeUInt32BE(5, 2);
    await fails(d, withLba, INVALID_FIELD);
    withLba[8] = 1; // PMI
    assert.equal((await good(d, withLba)).readUInt32BE(0), 2047);
    const otherAction = Cdb.readCapacity16();
    otherAction[1] = 0x11;
    await fails(d, otherAction, INVALID_FIELD);
  });

  it('READ FORMAT CAPACITIES: one formatted-media descriptor', async () => {
    const data = await good(new ScsiDisk(new MemoryBackend(MiB)), Cdb.readFormatCapacities(252));
    assert.deepEqual([...data], [0, 0, 0, 8, 0, 0, 0x08, 0x00, 0x02, 0x00, 0x02, 0x00]);
  });
});

describe('MODE SENSE', () => {
  const d = new ScsiDisk(new MemoryBackend(MiB));
  const readOnly = new ScsiDisk(new MemoryBackend(MiB), { readOnly: true });

  it('(6) page 3F as Linux sends it: header, block descriptor, caching+control+IE pages', async () => {
    const data = await good(d, Buffer.from('1a003f00c000', 'hex'));
    assert.equal(data.length, 4 + 8 + 20 + 12 + 12);
    assert.deepEqual([...data.subarray(0, 4)], [data.length - 1, 0, 0x10, 8]);
    assert.deepEqual([...data.subarray(4, 12)], [0, 0, 0x08, 0x00, 0, 0, 0x02, 0x00]);
    const caching = data.subarray(12, 32);
    assert.deepEqual([...caching.subarray(0, 3)], [0x08, 0x12, 0x04], 'caching page, WCE set');
    assert.deepEqual([...data.subarray(32, 34)], [0x0a, 0x0a]);
    assert.deepEqual([...data.subarray(44, 47)], [0x1c, 0x0a, 0x08]);
  });

  it('sets WP in the header when read-only', async () => {
    assert.equal((await good(readOnly, Cdb.modeSense6()))[2], 0x90);
    assert.equal((await good(readOnly, Cdb.modeSense10()))[3], 0x90);
  });

  it('DBD leaves out the block descriptor', async () => {
    const data = await good(d, Cdb.modeSense6({ page: 0x08, dbd: true }));
    assert.deepEqual([...data.subarray(0, 4)], [23, 0, 0x10, 0]);
    assert.equal(data.length, 24);
    assert.equal(data[4], 0x08);
  });

  it('(10) header, and the long LBA block descriptor with LLBAA', async () => {
    const data = await good(d, Cdb.modeSense10({ page: 0x0a }));
    assert.deepEqual([...data.subarray(0, 8)], [0, 8 + 8 + 12 - 2, 0, 0x10, 0, 0, 0, 8]);
    const long = await good(d, Cdb.modeSense10({ page: 0x0a, llbaa: true }));
    assert.deepEqual([...long.subarray(0, 8)], [0, 8 + 16 + 12 - 2, 0, 0x10, 1, 0, 0, 16]);
    assert.equal(long.readBigUInt64BE(8), 2048n);
    assert.equal(long.readUInt32BE(20), 512);
  });

  it('truncates to the allocation length while the header still reports the full length', async () => {
    const data = await good(d, Cdb.modeSense6({ allocation: 4 }));
    assert.deepEqual([...data], [4 + 8 + 44 - 1, 0, 0x10, 8]);
    const ten = await good(d, Cdb.modeSense10({ allocation: 3 }));
    assert.deepEqual([...ten], [0, 8 + 8 + 44 - 2, 0]);
  });

  it('PC=1 returns pages with zeroed (unchangeable) fields; PC=2 equals current', async () => {
    const changeable = await good(d, Cdb.modeSense6({ page: 0x08, pc: 1, dbd: true }));
    assert.deepEqual([...changeable.subarray(4)], [0x08, 0x12, ...new Array(18).fill(0)]);
    assert.deepEqual(await good(d, Cdb.modeSense6({ pc: 2 })), await good(d, Cdb.modeSense6({ pc: 0 })));
  });

  it('PC=3 fails SAVING PARAMETERS NOT SUPPORTED; unknown page or subpage INVALID FIELD', async () => {
    await fails(d, Cdb.modeSense6({ pc: 3 }), { key: 5, asc: 0x39, ascq: 0 });
    await fails(d, Cdb.modeSense10({ page: 0x05 }), INVALID_FIELD);
    await fails(d, Cdb.modeSense6({ page: 0x08, subpage: 1 }), INVALID_FIELD);
    assert.equal((await good(d, Cdb.modeSense6({ subpage: 0xff })))[0], 4 + 8 + 44 - 1);
  });
});

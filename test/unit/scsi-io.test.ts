import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import type { BlockBackend } from '../../src/devices/mass-storage/backend/block-backend.js';
import { FileBackend } from '../../src/devices/mass-storage/backend/file-backend.js';
import { MemoryBackend } from '../../src/devices/mass-storage/backend/memory-backend.js';
import { Cdb } from '../../src/devices/mass-storage/scsi/cdb-builders.js';
import { ScsiDisk } from '../../src/devices/mass-storage/scsi/scsi-disk.js';
import { parseSense, type SenseCode } from '../../src/devices/mass-storage/scsi/sense.js';

const BLOCKS = 2048;

function pattern(blocks: number, seed: number): Buffer {
  const b = Buffer.alloc(blocks * 512);
  for (let i = 0; i < b.length; i++) b[i] = (i * 31 + seed) & 0xff;
  return b;
}

/** Records every backend call so tests can prove nothing was touched. */
class SpyBackend implements BlockBackend {
  readonly calls: string[] = [];
  constructor(private readonly inner: BlockBackend) {}
  get size() {
    return this.inner.size;
  }
  get readOnly() {
    return this.inner.readOnly;
  }
  read(offset: number, length: number) {
    this.calls.push(`read ${offset} ${length}`);
    return this.inner.read(offset, length);
  }
  write(offset: number, data: Buffer) {
    this.calls.push(`write ${offset} ${data.length}`);
    return this.inner.write(offset, data);
  }
  flush() {
    this.calls.push('flush');
    return this.inner.flush();
  }
  close() {
    return this.inner.close();
  }
}

function spyDisk(options: ConstructorParameters<typeof ScsiDisk>[1] = {}) {
  const spy = new SpyBackend(new MemoryBackend(BLOCKS * 512));
  return { spy, disk: new ScsiDisk(spy, options) };
}

async function fails(d: ScsiDisk, cdb: Buffer, sense: SenseCode & { information?: number }, dataOut?: Buffer) {
  const r = await d.execute(cdb, dataOut);
  assert.equal(r.status, 'check-condition');
  assert.equal(r.data, undefined);
  assert.equal(r.sense?.length, 18);
  assert.deepEqual(parseSense(r.sense!), sense);
}

const OUT_OF_RANGE = { key: 5, asc: 0x21, ascq: 0 };
const INVALID_FIELD = { key: 5, asc: 0x24, ascq: 0 };

describe('READ / WRITE', () => {
  it('round-trips through every CDB size on a MemoryBackend', async () => {
    const d = new ScsiDisk(new MemoryBackend(BLOCKS * 512));
    const variants = [
      [Cdb.write6, Cdb.read6],
      [Cdb.write10, Cdb.read10],
      [Cdb.write12, Cdb.read12],
      [Cdb.write16, Cdb.read16],
    ] as const;
    for (const [i, [write, read]] of variants.entries()) {
      const lba = 100 * (i + 1);
      const data = pattern(3, i);
      assert.deepEqual(d.plan(write(lba, 3)), {
        opcode: write(0, 0)[0],
        name: d.plan(write(lba, 3)).name,
        direction: 'out',
        length: 1536,
      });
      assert.equal((await d.execute(write(lba, 3), data)).status, 'good');
      assert.equal(d.plan(read(lba, 3)).direction, 'in');
      const r = await d.execute(read(lba, 3));
      assert.equal(r.status, 'good');
      assert.deepEqual(r.data, data);
    }
  });

  it('READ(6)/WRITE(6) treat 0 blocks as 256; READ(10)/WRITE(10) 0 blocks move no data', async () => {
    const { disk, spy } = spyDisk();
    assert.deepEqual(disk.plan(Cdb.read6(0, 0)).length, 256 * 512);
    assert.equal((await disk.execute(Cdb.read6(0, 0))).data?.length, 256 * 512);
    for (const cdb of [Cdb.read10(5, 0), Cdb.write10(5, 0), Cdb.read16(5, 0)]) {
      assert.deepEqual([disk.plan(cdb).direction, disk.plan(cdb).length], ['none', 0]);
      assert.deepEqual(await disk.execute(cdb), { status: 'good' });
    }
    assert.deepEqual(spy.calls, [`read 0 ${256 * 512}`]);
  });

  it('writes through a FileBackend land in the file; FUA flushes', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'usbwire-scsi-'));
    try {
      const path = join(dir, 'disk.img');
      await writeFile(path, Buffer.alloc(BLOCKS * 512));
      const spy = new SpyBackend(await FileBackend.open(path));
      const d = new ScsiDisk(spy);
      const data = pattern(4, 9);
      assert.equal((await d.execute(Cdb.write10(1000, 4, { fua: true }), data)).status, 'good');
      assert.deepEqual(spy.calls, [`write ${1000 * 512} 2048`, 'flush']);
      const file = await readFile(path);
      assert.deepEqual(file.subarray(1000 * 512, 1004 * 512), data);
      assert.deepEqual((await d.execute(Cdb.read10(1000, 4))).data, data);
      assert.equal((await d.execute(Cdb.write10(BLOCKS - 1, 1), pattern(1, 2))).status, 'good');
      assert.deepEqual((await readFile(path)).subarray(-512), pattern(1, 2));
      await spy.close();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('out-of-range transfers fail 05/21/00 with the LBA and touch nothing', async () => {
    const { disk, spy } = spyDisk();
    const cases = [
      Cdb.read10(BLOCKS, 1),
      Cdb.read10(BLOCKS - 1, 2),
      Cdb.read10(BLOCKS, 0),
      Cdb.write10(BLOCKS - 1, 2),
      Cdb.read16(2n ** 64n - 1n, 1),
      Cdb.write16(2n ** 40n, 1),
      Cdb.read12(0, 0xffffffff),
      Cdb.read16(1, 0xffffffff),
      Cdb.read6(0x1fffff, 1),
      Cdb.verify10(BLOCKS, 1),
      Cdb.synchronizeCache10(BLOCKS, 0),
    ];
    for (const cdb of cases) {
      assert.equal(disk.plan(cdb).direction, 'none', cdb.toString('hex'));
      const r = await disk.execute(cdb, pattern(2, 0));
      assert.equal(r.status, 'check-condition');
      const sense = parseSense(r.sense!)!;
      assert.deepEqual({ key: sense.key, asc: sense.asc, ascq: sense.ascq }, OUT_OF_RANGE);
    }
    await fails(disk, Cdb.read10(BLOCKS + 5, 1), { ...OUT_OF_RANGE, information: BLOCKS + 5 });
    assert.deepEqual(spy.calls, []);
  });

  it('transfers above the maximum transfer length fail INVALID FIELD IN CDB without allocating', async () => {
    const { disk, spy } = spyDisk({ maxTransferBlocks: 128 });
    await fails(disk, Cdb.read10(0, 129), INVALID_FIELD);
    await fails(disk, Cdb.write12(0, 129), INVALID_FIELD, pattern(129, 0));
    assert.equal((await disk.execute(Cdb.read10(0, 128))).data?.length, 128 * 512);
    assert.deepEqual(spy.calls, [`read 0 ${128 * 512}`]);
  });

  it('writes to a read-only unit fail DATA PROTECT 07/27/00 and leave the medium untouched', async () => {
    const { disk, spy } = spyDisk({ readOnly: true });
    for (const cdb of [Cdb.write6(0, 1), Cdb.write10(0, 1), Cdb.write12(0, 1), Cdb.write16(0, 1), Cdb.write10(0, 0)]) {
      assert.equal(disk.plan(cdb).direction, 'none');
      await fails(disk, cdb, { key: 7, asc: 0x27, ascq: 0 }, pattern(1, 1));
    }
    assert.deepEqual(spy.calls, []);
    const roBackend = new ScsiDisk(MemoryBackend.fromBuffer(pattern(4, 0), { readOnly: true }));
    assert.equal(roBackend.readOnly, true);
    await fails(roBackend, Cdb.write10(0, 1), { key: 7, asc: 0x27, ascq: 0 }, pattern(1, 1));
    assert.deepEqual((await roBackend.execute(Cdb.read10(0, 4))).data, pattern(4, 0));
  });

  it('a write with missing or short data-out fails DATA PHASE ERROR and writes nothing', async () => {
    const { disk, spy } = spyDisk();
    await fails(disk, Cdb.write10(0, 2), { key: 0xb, asc: 0x4b, ascq: 0 });
    await fails(disk, Cdb.write10(0, 2), { key: 0xb, asc: 0x4b, ascq: 0 }, pattern(1, 0));
    assert.equal((await disk.execute(Cdb.write10(0, 1), pattern(2, 0))).status, 'good', 'excess data-out is ignored');
    assert.deepEqual(spy.calls, ['write 0 512']);
  });

  it('protection fields (RDPROTECT/WRPROTECT) are rejected', async () => {
    const { disk } = spyDisk();
    const cdb = Cdb.read10(0, 1);
    cdb[1] = 0x20;
    await fails(disk, cdb, INVALID_FIELD);
  });

  it('backend failures map to medium errors', async () => {
    const broken: BlockBackend = {
      size: 4096,
      readOnly: false,
      read: () => Promise.reject(new Error('EIO')),
      write: () => Promise.reject(new Error('EIO')),
      flush: () => Promise.reject(new Error('EIO')),
      close: () => Promise.resolve(),
    };
    const d = new ScsiDisk(broken);
    await fails(d, Cdb.read10(0, 1), { key: 3, asc: 0x11, ascq: 0 });
    await fails(d, Cdb.write10(0, 1), { key: 3, asc: 0x0c, ascq: 2 }, pattern(1, 0));
    await fails(d, Cdb.synchronizeCache10(), { key: 3, asc: 0x0c, ascq: 2 });
  });
});

describe('VERIFY and SYNCHRONIZE CACHE', () => {
  it('BYTCHK=0 only range-checks', async () => {
    const { disk, spy } = spyDisk();
    assert.equal(disk.plan(Cdb.verify10(0, 100)).direction, 'none');
    assert.deepEqual(await disk.execute(Cdb.verify10(0, 100)), { status: 'good' });
    assert.deepEqual(await disk.execute(Cdb.verify16(BLOCKS - 1, 1)), { status: 'good' });
    assert.deepEqual(spy.calls, []);
  });

  it('BYTCHK=1 compares data-out with the medium; MISCOMPARE reports the offset', async () => {
    const { disk } = spyDisk();
    const data = pattern(2, 4);
    await disk.execute(Cdb.write10(10, 2), data);
    assert.deepEqual(disk.plan(Cdb.verify10(10, 2, 1)), {
      opcode: 0x2f,
      name: 'Verify10',
      direction: 'out',
      length: 1024,
    });
    assert.deepEqual(await disk.execute(Cdb.verify10(10, 2, 1), data), { status: 'good' });
    const changed = Buffer.from(data);
    changed[700] ^= 0xff;
    await fails(disk, Cdb.verify16(10, 2, 1), { key: 0xe, asc: 0x1d, ascq: 0, information: 700 }, changed);
  });

  it('BYTCHK=3 compares one block against every block; BYTCHK=2 is invalid', async () => {
    const { disk } = spyDisk();
    const block = pattern(1, 8);
    await disk.execute(Cdb.write10(20, 3), Buffer.concat([block, block, block]));
    assert.equal(disk.plan(Cdb.verify10(20, 3, 3)).length, 512);
    assert.deepEqual(await disk.execute(Cdb.verify10(20, 3, 3), block), { status: 'good' });
    await fails(disk, Cdb.verify10(19, 3, 3), { key: 0xe, asc: 0x1d, ascq: 0, information: 0 }, block);
    await fails(disk, Cdb.verify10(20, 3, 2), INVALID_FIELD, block);
  });

  it('SYNCHRONIZE CACHE (10) and (16) flush the backend', async () => {
    const { disk, spy } = spyDisk();
    assert.deepEqual(await disk.execute(Cdb.synchronizeCache10()), { status: 'good' });
    assert.deepEqual(await disk.execute(Cdb.synchronizeCache16(5, 10)), { status: 'good' });
    assert.deepEqual(spy.calls, ['flush', 'flush']);
  });
});

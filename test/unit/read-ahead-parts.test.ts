import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { CSW_SIZE } from '../../src/devices/mass-storage/bot-wire.js';
import { cdbEffect } from '../../src/devices/mass-storage/read-ahead/cdb-effects.js';
import { ExtentCache } from '../../src/devices/mass-storage/read-ahead/extent-cache.js';
import { cswOf, LocalReply } from '../../src/devices/mass-storage/read-ahead/local-reply.js';
import { SequentialPolicy } from '../../src/devices/mass-storage/read-ahead/sequential-policy.js';
import { Cdb } from '../../src/devices/mass-storage/scsi/cdb-builders.js';
import { TransferStatus } from '../../src/usb/status.js';
import { Transfer } from '../../src/usb/transfer.js';

const blocks = (lba: number, n: number) => {
  const b = Buffer.alloc(n * 512);
  for (let i = 0; i < n; i++) b.fill((lba + i) & 0xff, i * 512, (i + 1) * 512);
  return b;
};

describe('ExtentCache', () => {
  it('reads across chunks, keeps one run, truncates at an invalidated range', () => {
    const c = new ExtentCache(512);
    c.append(10, blocks(10, 4));
    c.append(14, blocks(14, 4));
    assert.ok(c.covers(11, 6));
    assert.ok(!c.covers(9, 2));
    assert.ok(!c.covers(17, 2));
    assert.ok(c.read(11, 6).equals(blocks(11, 6)));
    assert.ok(c.invalidate(13, 1));
    assert.deepEqual([c.start, c.end], [10, 13]);
    assert.ok(c.read(10, 3).equals(blocks(10, 3)));
    assert.ok(!c.invalidate(20, 5), 'outside: nothing dropped');
    c.append(40, blocks(40, 2)); // not contiguous: a new run
    assert.deepEqual([c.start, c.end], [40, 42]);
    c.append(42, blocks(42, 2));
    c.dropBefore(43);
    assert.deepEqual([c.start, c.end], [42, 44]);
    c.invalidate(0, 100);
    assert.ok(c.empty);
  });
});

describe('SequentialPolicy', () => {
  it('needs two sequential reads, grows chunks by doubling, bounds how far ahead', () => {
    const p = new SequentialPolicy({ maxChunkBytes: 256 * 1024, windowBytes: 1024 * 1024 });
    p.onRead(100, 8, 512);
    assert.ok(!p.sequential);
    p.onRead(108, 8, 512);
    assert.ok(p.sequential);
    assert.equal(p.nextLba, 116);
    assert.equal(p.chunkBlocks(512), 16, 'twice the last read');
    assert.equal(p.aheadBytes(), 2 * 16 * 512, 'twice what was read in the run');
    p.fetched(16, 512);
    assert.equal(p.chunkBlocks(512), 32);
    p.fetched(512, 512);
    assert.equal(p.chunkBlocks(512), 512, 'capped at maxChunkBytes');
    for (let lba = 116; lba < 116 + 8 * 1000; lba += 8) p.onRead(lba, 8, 512);
    assert.equal(p.aheadBytes(), 1024 * 1024, 'capped at the window');
    p.onRead(5, 8, 512);
    assert.ok(!p.sequential, 'a jump starts over');
    assert.equal(p.chunkBlocks(512), 16);
  });
});

describe('cdbEffect', () => {
  it('sorts host commands by what they do to cached blocks', () => {
    assert.deepEqual(cdbEffect(Cdb.read10(7, 3), false), { kind: 'read', lba: 7, blocks: 3 });
    assert.deepEqual(cdbEffect(Cdb.read16(2 ** 33, 8), false), { kind: 'read', lba: 2 ** 33, blocks: 8 });
    assert.deepEqual(cdbEffect(Cdb.read6(5, 0), false), { kind: 'read', lba: 5, blocks: 256 });
    assert.deepEqual(cdbEffect(Cdb.write10(9, 2), true), { kind: 'write', lba: 9, blocks: 2 });
    assert.deepEqual(cdbEffect(Cdb.write12(9, 2), true), { kind: 'write', lba: 9, blocks: 2 });
    assert.deepEqual(cdbEffect(Cdb.verify10(4, 4, 1), true), { kind: 'write', lba: 4, blocks: 4 });
    const writeSame16 = Buffer.alloc(16);
    writeSame16[0] = 0x93;
    assert.deepEqual(cdbEffect(writeSame16, true), { kind: 'drop-all' }, 'WRITE SAME of 0 blocks: to the end');
    for (const cdb of [Cdb.testUnitReady(), Cdb.inquiry(), Cdb.synchronizeCache10(), Cdb.verify10(0, 8, 0)]) {
      assert.deepEqual(cdbEffect(cdb, false), { kind: 'keep' }, cdb.toString('hex'));
    }
    for (const [cdb, out] of [
      [Cdb.startStopUnit({ start: false, loadEject: true }), false],
      [Buffer.from([0x15, 0, 0, 0, 12, 0]), true], // MODE SELECT (6)
      [Buffer.from([0x42, 0, 0, 0, 0, 0, 0, 0, 24, 0]), true], // UNMAP
      [Buffer.from([0x04, 0, 0, 0, 0, 0]), false], // FORMAT UNIT
      [Cdb.inquiry(), true], // a harmless opcode, but with data-out: who knows
      [Buffer.from([0xc5, 0, 0, 0, 0, 0]), false], // vendor specific
    ] as const) {
      assert.deepEqual(cdbEffect(cdb, out), { kind: 'drop-all' }, cdb.toString('hex'));
    }
  });
});

describe('LocalReply', () => {
  const inT = (length: number) => new Transfer({ type: 'bulk', endpoint: 0x81, length });

  it('splits the data over the host transfers, then sends the CSW', () => {
    const r = new LocalReply(7, 3000, Buffer.alloc(3000, 1), 0);
    const a = inT(1024);
    const b = inT(4096);
    const csw = inT(CSW_SIZE);
    assert.equal(r.serve(a), false);
    assert.equal(r.serve(b), false);
    assert.equal(r.serve(csw), true);
    assert.deepEqual([a.actualLength, b.actualLength], [1024, 1976]);
    assert.deepEqual(cswOf(csw, 7), { status: 0, residue: 0 });
  });

  it('ends data short of the host length with a zero-length packet on a transfer boundary, residue in the CSW', () => {
    const r = new LocalReply(9, 4096, Buffer.alloc(1024), 1);
    const a = inT(1024);
    const zlp = inT(3072);
    const csw = inT(512);
    r.serve(a);
    r.serve(zlp);
    assert.equal(r.serve(csw), true);
    assert.equal(a.actualLength, 1024);
    assert.equal(zlp.actualLength, 0);
    assert.deepEqual(cswOf(csw, 9), { status: 1, residue: 3072 });
  });

  it('a CSW read shorter than 13 bytes babbles; short-not-ok data reads end ShortPacket', () => {
    const r = new LocalReply(1, 0, Buffer.alloc(0), 0);
    const tiny = inT(8);
    assert.equal(r.serve(tiny), false);
    assert.equal(tiny.status, TransferStatus.Babble);
    const s = new LocalReply(2, 1024, Buffer.alloc(512), 0);
    const strict = new Transfer({ type: 'bulk', endpoint: 0x81, length: 1024, flags: { shortNotOk: true } });
    s.serve(strict);
    assert.equal(strict.status, TransferStatus.ShortPacket);
  });
});

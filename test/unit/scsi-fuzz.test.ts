import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { BlockBackend } from '../../src/devices/mass-storage/backend/block-backend.js';
import { MemoryBackend } from '../../src/devices/mass-storage/backend/memory-backend.js';
import { Op } from '../../src/devices/mass-storage/scsi/opcodes.js';
import { ScsiDisk } from '../../src/devices/mass-storage/scsi/scsi-disk.js';
import { prng } from '../support/prng.js';

const MAX_TRANSFER_BYTES = 256 * 512;
const KNOWN_OPCODES = Object.values(Op) as number[];

/** Fails the test if the disk ever asks the backend for an oversized or out-of-range transfer. */
class GuardedBackend implements BlockBackend {
  private readonly inner = new MemoryBackend(4 * 1024 * 1024);
  readonly size = this.inner.size;
  readonly readOnly = false;
  read(offset: number, length: number) {
    assert.ok(length <= MAX_TRANSFER_BYTES && offset + length <= this.size, `read ${offset}+${length}`);
    return this.inner.read(offset, length);
  }
  write(offset: number, data: Buffer) {
    assert.ok(data.length <= MAX_TRANSFER_BYTES && offset + data.length <= this.size, `write ${offset}+${data.length}`);
    return this.inner.write(offset, data);
  }
  flush() {
    return this.inner.flush();
  }
  close() {
    return this.inner.close();
  }
}

describe('random CDBs', () => {
  it('never throw, never transfer beyond limits, and agree with plan()', async () => {
    const random = prng(0x5c51);
    const disk = new ScsiDisk(new GuardedBackend(), { removable: true, maxTransferBlocks: 256, serial: 'FUZZ' });
    const byte = () => Math.floor(random() * 256);
    for (let i = 0; i < 20000; i++) {
      const length = Math.floor(random() * 17);
      const cdb = Buffer.alloc(length);
      for (let j = 0; j < length; j++) cdb[j] = byte();
      // Mostly known opcodes, with high bits of length fields often set to probe huge counts.
      if (length > 0 && random() < 0.8) cdb[0] = KNOWN_OPCODES[Math.floor(random() * KNOWN_OPCODES.length)]!;
      if (random() < 0.3) for (let j = 2; j < length; j++) if (random() < 0.5) cdb[j] = 0;
      if (random() < 0.01) disk.reset();

      const plan = disk.plan(cdb);
      assert.ok(plan.length >= 0 && plan.length <= Math.max(MAX_TRANSFER_BYTES, 0xffff));
      assert.equal(plan.direction === 'none', plan.length === 0);
      const dataOut = plan.direction === 'out' ? Buffer.alloc(plan.length, byte()) : undefined;
      const result = await disk.execute(cdb, dataOut);
      if (result.status === 'good') {
        assert.equal(result.sense, undefined);
        assert.equal(result.data?.length ?? 0, plan.direction === 'in' ? plan.length : 0, cdb.toString('hex'));
      } else {
        assert.equal(result.sense?.length, 18);
        assert.equal(result.data, undefined);
      }
    }
  });
});

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MemoryBackend } from '../../src/devices/mass-storage/backend/memory-backend.js';

describe('MemoryBackend', () => {
  it('is sparse: a 1 GiB disk allocates nothing until written, and unwritten data reads as zeros', async () => {
    const backend = new MemoryBackend(1024 ** 3);
    assert.equal(backend.size, 1024 ** 3);
    assert.equal(backend.allocatedBytes, 0);
    assert.deepEqual(await backend.read(512 * 1000, 1024), Buffer.alloc(1024));
    assert.equal(backend.allocatedBytes, 0);
    await backend.write(1024 ** 3 - 512, Buffer.alloc(512, 0xab));
    assert.equal(backend.allocatedBytes, 64 * 1024);
  });

  it('round-trips writes that straddle chunk boundaries', async () => {
    const backend = new MemoryBackend(1024 * 1024);
    const data = Buffer.alloc(200 * 1024);
    for (let i = 0; i < data.length; i++) data[i] = (i * 7 + 3) & 0xff;
    await backend.write(64 * 1024 - 512, data);
    assert.deepEqual(await backend.read(64 * 1024 - 512, data.length), data);
    assert.deepEqual(await backend.read(0, 512), Buffer.alloc(512));
  });

  it('returns fresh buffers that do not alias the stored data', async () => {
    const backend = new MemoryBackend(4096);
    await backend.write(0, Buffer.alloc(512, 1));
    const first = await backend.read(0, 512);
    first.fill(9);
    assert.deepEqual(await backend.read(0, 512), Buffer.alloc(512, 1));
  });

  it('rejects bad sizes, out-of-range access, writes when read-only, and use after close', async () => {
    assert.throws(() => new MemoryBackend(0), /empty/);
    assert.throws(() => new MemoryBackend(1000), /not a multiple of 512/);
    const backend = new MemoryBackend(4096);
    await assert.rejects(backend.read(4096 - 512, 1024), RangeError);
    await assert.rejects(backend.write(-512, Buffer.alloc(512)), RangeError);
    const readOnly = MemoryBackend.fromBuffer(Buffer.alloc(1024, 5), { readOnly: true });
    assert.deepEqual(await readOnly.read(0, 1024), Buffer.alloc(1024, 5));
    await assert.rejects(readOnly.write(0, Buffer.alloc(512)), /read-only/);
    await backend.close();
    await assert.rejects(backend.read(0, 512), /closed/);
  });
});

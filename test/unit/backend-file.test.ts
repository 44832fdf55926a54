import assert from 'node:assert/strict';
import { chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { FileBackend } from '../../src/devices/mass-storage/backend/file-backend.js';

describe('FileBackend', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'usbwire-backend-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  const startsWith = (prefix: string) => (e: Error) => e.message.startsWith(prefix);

  async function image(name: string, content: Buffer): Promise<string> {
    const path = join(dir, name);
    await writeFile(path, content);
    return path;
  }

  it('writes reach the file before the promise resolves, and reads return them', async () => {
    const path = await image('rw.img', Buffer.alloc(64 * 1024));
    const backend = await FileBackend.open(path);
    assert.equal(backend.size, 64 * 1024);
    assert.equal(backend.readOnly, false);
    const data = Buffer.alloc(3 * 512);
    for (let i = 0; i < data.length; i++) data[i] = (i * 13) & 0xff;
    await backend.write(4096, data);
    const onDisk = await readFile(path);
    assert.deepEqual(onDisk.subarray(4096, 4096 + data.length), data);
    assert.deepEqual(onDisk.subarray(0, 4096), Buffer.alloc(4096));
    assert.deepEqual(await backend.read(4096, data.length), data);
    await backend.flush();
    await backend.close();
    await assert.rejects(backend.read(0, 512), /closed/);
  });

  it('small reads are not slices of a shared pool', async () => {
    const path = await image('pool.img', Buffer.alloc(4096, 0x5a));
    const backend = await FileBackend.open(path, { readOnly: true });
    const a = await backend.read(0, 16);
    const b = await backend.read(16, 16);
    assert.equal(a.byteOffset, 0);
    assert.equal(a.buffer.byteLength, 16);
    assert.notEqual(a.buffer, b.buffer);
    await backend.close();
  });

  it('read-only backends refuse writes and leave the file alone', async () => {
    const path = await image('ro.img', Buffer.alloc(1024, 7));
    const backend = await FileBackend.open(path, { readOnly: true });
    assert.equal(backend.readOnly, true);
    await assert.rejects(backend.write(0, Buffer.alloc(512)), /read-only/);
    await backend.close();
    assert.deepEqual(await readFile(path), Buffer.alloc(1024, 7));
  });

  it('rejects out-of-range access', async () => {
    const backend = await FileBackend.open(await image('range.img', Buffer.alloc(1024)));
    await assert.rejects(backend.read(512, 1024), RangeError);
    await assert.rejects(backend.write(1024, Buffer.alloc(512)), RangeError);
    await backend.close();
  });

  it('gives clear errors naming the file', async () => {
    const missing = join(dir, 'missing.img');
    await assert.rejects(FileBackend.open(missing), (e: Error) => e.message === `${missing}: no such file`);
    await assert.rejects(FileBackend.open(dir, { readOnly: true }), startsWith(`${dir}: is a directory`));
    await assert.rejects(FileBackend.open(dir), startsWith(`${dir}: is a directory`));
    const odd = await image('odd.img', Buffer.alloc(1000));
    await assert.rejects(FileBackend.open(odd), startsWith(`${odd}: size 1000 bytes is not a multiple of 512`));
    const empty = await image('empty.img', Buffer.alloc(0));
    await assert.rejects(FileBackend.open(empty), startsWith(`${empty}: image is empty`));
    await assert.rejects(FileBackend.open('/dev/null'), (e: Error) =>
      e.message.includes('not a regular file or block device'),
    );
  });

  it('reports permission problems', {
    skip: process.getuid?.() === 0 ? 'root ignores file modes' : false,
  }, async () => {
    const path = await image('locked.img', Buffer.alloc(512));
    await chmod(path, 0o444);
    await assert.rejects(
      FileBackend.open(path),
      startsWith(`${path}: permission denied opening for reading and writing`),
    );
    const backend = await FileBackend.open(path, { readOnly: true });
    await backend.close();
  });
});

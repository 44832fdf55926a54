import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { test } from 'node:test';
import { UsbipClient } from '../../src/client/usbip/index.js';
import { MemoryBackend } from '../../src/devices/mass-storage/backend/memory-backend.js';
import { createBotDisk } from '../../src/devices/mass-storage/index.js';
import { withReadAhead } from '../../src/devices/mass-storage/read-ahead/index.js';
import { DeviceRegistry } from '../../src/server/registry.js';
import { UsbipServer } from '../../src/server/usbip/index.js';
import type { UsbDevice } from '../../src/usb/device.js';
import { BotHost } from '../support/bot-host.js';
import { TapDevice } from './read-ahead-fakes.js';

const KiB = 1024;
const MiB = 1024 * KiB;
const DELAY_MS = 5;
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

function image(size: number): Buffer {
  const b = Buffer.alloc(size);
  for (let i = 0; i < size; i += 4) b.writeUInt32LE(Math.imul(i + 77, 2654435761) >>> 0, i);
  return b;
}

async function sequentialRead(dev: UsbDevice, size: number): Promise<{ ms: number; data: Buffer }> {
  const host = await BotHost.open(dev);
  const parts: Buffer[] = [];
  const started = performance.now();
  for (let at = 0; at < size; at += 64 * KiB) parts.push(await host.read(at / 512, 128));
  return { ms: performance.now() - started, data: Buffer.concat(parts) };
}

test('over USB/IP, read-ahead in front of a disk 5 ms away makes sequential 64 KiB reads at least 2x faster', async () => {
  const disk = image(4 * MiB);
  const slow = () => new TapDevice(createBotDisk(MemoryBackend.fromBuffer(disk), { name: 'slow disk' }), DELAY_MS);
  const readAhead = withReadAhead(slow());
  const registry = new DeviceRegistry();
  registry.add(readAhead);
  registry.add(slow());
  const server = new UsbipServer(registry, { host: '127.0.0.1', port: 0 });
  const address = await server.listen();
  const client = new UsbipClient({ timeoutMs: 5000 });
  try {
    const withRa = await sequentialRead(await client.importDevice(address, '1-1'), disk.length);
    const plain = await sequentialRead(await client.importDevice(address, '1-2'), disk.length);
    assert.equal(sha(withRa.data), sha(disk));
    assert.equal(sha(plain.data), sha(disk));
    const s = readAhead.stats();
    const mbps = (ms: number) => (disk.length / MiB / (ms / 1000)).toFixed(1);
    console.log(
      `4 MiB in 64 KiB reads, ${DELAY_MS} ms per device transfer: plain ${mbps(plain.ms)} MB/s, ` +
        `read-ahead ${mbps(withRa.ms)} MB/s, hit rate ${(s.hitRate * 100).toFixed(0)}%`,
    );
    assert.ok(plain.ms >= 2 * withRa.ms, `plain ${plain.ms.toFixed(0)} ms, read-ahead ${withRa.ms.toFixed(0)} ms`);
    assert.ok(s.hitRate > 0.8, `hit rate ${s.hitRate}`);
  } finally {
    await server.close();
    await registry.closeAll();
  }
});

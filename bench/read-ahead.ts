// Read-ahead across a long link: a BOT memory disk exported over USB/IP, reached through
// `usbwire delay-proxy` at several round-trip times, read sequentially (64 KiB READ(10)s, one at a
// time) by a host next to the importing side, once plainly and once through withReadAhead on the
// imported device (the `--remote URL,read-ahead` arrangement: prefetches cross the link, hits do not),
// its prefetches one BOT phase at a time (the default for a device that is not usbwire's own) and
// pipelined (CBW, data and CSW back to back: right here, the far disk is usbwire's BOT function).
// Standalone: node dist/bench/read-ahead.js [--quick]
import { RemoteUsbipDevice } from '../src/client/usbip/index.js';
import { MemoryBackend } from '../src/devices/mass-storage/backend/index.js';
import { createBotDisk } from '../src/devices/mass-storage/index.js';
import { withReadAhead } from '../src/devices/mass-storage/read-ahead/index.js';
import { DeviceRegistry } from '../src/server/registry.js';
import { UsbipServer } from '../src/server/usbip/index.js';
import { DelayProxy } from '../src/transport/delay-proxy.js';
import type { UsbDevice } from '../src/usb/device.js';
import type { HostPort } from '../src/util/host-port.js';
import { setLogSink } from '../src/util/log.js';
import { BotHost } from '../test/support/bot-host.js';

const READ_BLOCKS = 128; // 64 KiB
const DISK_BLOCKS = 64 * 1024; // 32 MiB

/** Sequential 64 KiB reads for about `budgetMs` (at least 8): MB/s. */
async function sequentialRead(dev: UsbDevice, budgetMs: number): Promise<number> {
  const host = await BotHost.open(dev);
  // A disk imported again reports UNIT ATTENTION (reset occurred) once; Linux retries, so does this.
  await host.read(0, 1).catch(() => host.read(0, 1));
  const start = performance.now();
  let reads = 0;
  while (reads < 8 || performance.now() - start < budgetMs) {
    await host.read((reads * READ_BLOCKS) % DISK_BLOCKS, READ_BLOCKS);
    reads++;
  }
  return (reads * READ_BLOCKS * 512) / ((performance.now() - start) / 1000) / 1e6;
}

async function throughProxy<T>(to: HostPort, rttMs: number, run: (at: HostPort) => Promise<T>): Promise<T> {
  const half = { delayMs: rttMs / 2 };
  const proxy = new DelayProxy({ listen: { host: '127.0.0.1', port: 0 }, to, up: half, down: half });
  try {
    return await run(await proxy.listen());
  } finally {
    await proxy.close();
  }
}

/** A memory disk exported over USB/IP on loopback: the far end of the link. */
async function farDisk(): Promise<{ server: UsbipServer; address: HostPort }> {
  const registry = new DeviceRegistry();
  registry.add(createBotDisk(new MemoryBackend(DISK_BLOCKS * 512), { name: 'disk' }));
  const server = new UsbipServer(registry, { host: '127.0.0.1', port: 0 });
  return { server, address: await server.listen() };
}

export async function readAheadTable(quick: boolean): Promise<string> {
  setLogSink('silent');
  const { server, address } = await farDisk();
  const budgetMs = quick ? 500 : 2000;
  const rows: string[] = [];
  try {
    for (const rttMs of [1, 5, 10, 20]) {
      const plain = await throughProxy(address, rttMs, async (at) => {
        const dev = await RemoteUsbipDevice.import(at, '1-1', { timeoutMs: 10_000 });
        try {
          return await sequentialRead(dev, budgetMs);
        } finally {
          await dev.close();
        }
      });
      const withReadAheadOf = (pipelined: boolean) =>
        throughProxy(address, rttMs, async (at) => {
          const ra = withReadAhead(await RemoteUsbipDevice.import(at, '1-1', { timeoutMs: 10_000 }), { pipelined });
          try {
            return [await sequentialRead(ra, budgetMs), ra.stats().hitRate] as const;
          } finally {
            await ra.close();
          }
        });
      const [ahead, hitRate] = await withReadAheadOf(false);
      const [piped] = await withReadAheadOf(true);
      rows.push(
        `| ${rttMs} ms | ${plain.toFixed(2)} | ${ahead.toFixed(2)} (${(ahead / plain).toFixed(1)}x) | ` +
          `${piped.toFixed(2)} (${(piped / plain).toFixed(1)}x) | ${(hitRate * 100).toFixed(0)}% |`,
      );
    }
  } finally {
    await server.close();
  }
  return [
    'read-ahead: BOT sequential 64 KiB READ(10)s of a disk imported over USB/IP through usbwire delay-proxy',
    '| RTT | plain MB/s | read-ahead MB/s | read-ahead, pipelined prefetch MB/s | hit rate |',
    '| --- | --- | --- | --- | --- |',
    ...rows,
  ].join('\n');
}

if (import.meta.url === `file://${process.argv[1]}`) {
  console.log(await readAheadTable(process.argv.includes('--quick')));
}

// (e) Bulk-Only storage across a long link: our USB/IP client reads a memory disk through
// `usbwire delay-proxy` at several round-trip times, one 64 KiB READ(10) at a time, beside the
// same reads with no proxy in the same run. BOT pays three round trips per command (CBW, data,
// CSW): this is the baseline that UAS, BOT-as-UAS and read-ahead are measured against.
import { RemoteUsbipDevice } from '../src/client/usbip/index.js';
import { MemoryBackend } from '../src/devices/mass-storage/backend/index.js';
import { createBotDisk } from '../src/devices/mass-storage/index.js';
import { DeviceRegistry } from '../src/server/registry.js';
import { UsbipServer } from '../src/server/usbip/index.js';
import { DelayProxy } from '../src/transport/delay-proxy.js';
import type { HostPort } from '../src/util/host-port.js';
import { setLogSink } from '../src/util/log.js';
import { BotHost } from '../test/support/bot-host.js';

const READ_BLOCKS = 128; // 64 KiB
const DISK_BLOCKS = 64 * 1024; // 32 MiB

/** Sequential 64 KiB reads for about `budgetMs` (at least 4): MB/s. */
async function sequentialRead(at: HostPort, budgetMs: number): Promise<{ mbps: number; reads: number }> {
  const dev = await RemoteUsbipDevice.import(at, '1-1', { timeoutMs: 10_000 });
  try {
    const host = await BotHost.open(dev);
    // A disk imported again reports UNIT ATTENTION (reset occurred) once, as SCSI requires; Linux
    // retries after REQUEST SENSE, so does this.
    await host.read(0, 1).catch(() => host.read(0, 1));
    const start = performance.now();
    let reads = 0;
    while (reads < 4 || performance.now() - start < budgetMs) {
      await host.read((reads * READ_BLOCKS) % (DISK_BLOCKS - READ_BLOCKS), READ_BLOCKS);
      reads++;
    }
    const s = (performance.now() - start) / 1000;
    return { mbps: (reads * READ_BLOCKS * 512) / s / 1e6, reads };
  } finally {
    await dev.close();
  }
}

export async function latencyTable(quick: boolean): Promise<string> {
  setLogSink('silent');
  const registry = new DeviceRegistry();
  registry.add(createBotDisk(new MemoryBackend(DISK_BLOCKS * 512), { name: 'disk' }));
  const server = new UsbipServer(registry, { host: '127.0.0.1', port: 0 });
  const address = await server.listen();
  const budgetMs = quick ? 500 : 2000;
  const rows: string[] = [];
  try {
    const direct = await sequentialRead(address, budgetMs);
    rows.push(`| none (loopback) | ${direct.reads} | ${direct.mbps.toFixed(1)} | 1.00 |`);
    for (const rttMs of [1, 5, 10, 20]) {
      const half = { delayMs: rttMs / 2 };
      const proxy = new DelayProxy({ listen: { host: '127.0.0.1', port: 0 }, to: address, up: half, down: half });
      const at = await proxy.listen();
      try {
        const r = await sequentialRead(at, budgetMs);
        rows.push(`| ${rttMs} ms | ${r.reads} | ${r.mbps.toFixed(2)} | ${(r.mbps / direct.mbps).toFixed(3)} |`);
      } finally {
        await proxy.close();
      }
    }
  } finally {
    await server.close();
  }
  return [
    '(e) BOT sequential read, one 64 KiB READ(10) at a time, usbwire USB/IP client through usbwire delay-proxy',
    '| RTT | reads | MB/s | vs no proxy |',
    '| --- | --- | --- | --- |',
    ...rows,
  ].join('\n');
}

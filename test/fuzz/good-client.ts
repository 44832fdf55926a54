/**
 * The well-behaved client served while the fuzz connections run: writes random blocks to its own
 * disk, reads them back and compares, one operation after the other, each within a bound.
 */
import { once } from 'node:events';
import net from 'node:net';
import { RemoteUsbipDevice } from '../../src/client/usbip/remote-device.js';
import { UsbredirClientConnection } from '../../src/client/usbredir/connection.js';
import type { RemoteUsbredirDevice } from '../../src/client/usbredir/remote-device.js';
import type { UsbDevice } from '../../src/usb/device.js';
import { createLogger } from '../../src/util/log.js';
import { BotHost } from '../support/bot-host.js';
import { prng } from '../support/prng.js';
import { DISK_BYTES, withDeadline } from './scenario.js';

/** One write + read-back of up to 8 blocks must finish within this, fuzz or not. */
export const GOOD_OP_BOUND_MS = 5000;

export interface GoodStats {
  name: string;
  ops: number;
  bytes: number;
  maxMs: number;
  error: string | undefined;
}

export class GoodClient {
  readonly stats: GoodStats;
  #stop = false;
  #loop: Promise<void> | undefined;
  #close: () => Promise<void>;

  private constructor(
    name: string,
    readonly dev: UsbDevice,
    close: () => Promise<void>,
  ) {
    this.stats = { name, ops: 0, bytes: 0, maxMs: 0, error: undefined };
    this.#close = close;
  }

  static async usbip(port: number, busid: string): Promise<GoodClient> {
    const dev = await RemoteUsbipDevice.import({ host: '127.0.0.1', port }, busid, { logger: createLogger('good') });
    return new GoodClient(`usbip ${busid}`, dev, () => dev.close());
  }

  static async usbredir(port: number): Promise<GoodClient> {
    const socket = net.connect(port, '127.0.0.1');
    await once(socket, 'connect');
    const conn = new UsbredirClientConnection(socket, { where: 'good', logger: createLogger('good'), timeoutMs: 5000 });
    const ready = once(conn, 'device') as Promise<[RemoteUsbredirDevice]>;
    conn.start();
    const [dev] = await withDeadline(ready, 5000, 'usbredir good client attach');
    return new GoodClient('usbredir disk', dev, () => conn.close());
  }

  start(seed: number): void {
    this.#loop = this.#run(seed).catch((err: unknown) => {
      this.stats.error = ((err as Error)?.message ?? String(err)).split('\n')[0];
    });
  }

  async #run(seed: number): Promise<void> {
    const rand = prng(seed);
    const host = await withDeadline(BotHost.open(this.dev), GOOD_OP_BOUND_MS, 'SET_CONFIGURATION');
    const blocks = DISK_BYTES / 512;
    while (!this.#stop) {
      const count = 1 + Math.floor(rand() * 8);
      const lba = Math.floor(rand() * (blocks - count));
      const data = Buffer.alloc(count * 512);
      for (let i = 0; i < data.length; i++) data[i] = Math.floor(rand() * 256);
      const started = Date.now();
      await withDeadline(
        (async () => {
          await host.write(lba, data);
          const back = await host.read(lba, count);
          if (!back.equals(data))
            throw new Error(`read back of ${count} blocks at ${lba} differs from what was written`);
        })(),
        GOOD_OP_BOUND_MS,
        `write + read of ${count} blocks at ${lba}`,
      );
      const ms = Date.now() - started;
      this.stats.maxMs = Math.max(this.stats.maxMs, ms);
      this.stats.ops++;
      this.stats.bytes += 2 * data.length;
      // Leave the loop some air: it is the control group, not a load generator.
      await new Promise((r) => setTimeout(r, 5));
    }
  }

  async stop(): Promise<GoodStats> {
    this.#stop = true;
    await this.#loop;
    await this.#close();
    return this.stats;
  }
}

export function describeGood(s: GoodStats): string {
  return `${s.name}: ${s.ops} write+verify ops (${(s.bytes / 2 ** 20).toFixed(1)} MiB), slowest ${s.maxMs} ms${s.error ? `, ERROR ${s.error}` : ''}`;
}

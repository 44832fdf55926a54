// USB/IP bulk IN and OUT throughput on loopback (gadget zero's source/sink behind our server, our
// client in this process) against a raw TCP pump each way; the device side runs in a child process.
//   node dist/bench/usbip-throughput.js [totalMiB]
import { type ChildProcess, fork } from 'node:child_process';
import net from 'node:net';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { UsbipClient } from '../src/client/usbip/index.js';
import { GZERO_SOURCE_SINK_CONFIG, SS_BULK_IN, SS_BULK_OUT } from '../src/devices/gadget-zero/index.js';
import { tuneSocket } from '../src/transport/tcp.js';
import { Transfer } from '../src/usb/transfer.js';
import { setLogSink } from '../src/util/log.js';

export interface UsbipBenchOptions {
  /** Bytes to move (default 1 GiB). */
  totalBytes?: number;
  /** Bulk IN transfer size (default 64 KiB); also the raw pump's write size. */
  transferSize?: number;
  /** Transfers kept in flight (default 8). */
  inFlight?: number;
}

const defaults = (o: UsbipBenchOptions) => ({
  totalBytes: o.totalBytes ?? 1024 * 1024 * 1024,
  transferSize: o.transferSize ?? 64 * 1024,
  inFlight: o.inFlight ?? 8,
});

const childScript = fileURLToPath(new URL('./usbip-bench-child.js', import.meta.url));

async function startChild(args: string[]): Promise<{ child: ChildProcess; port: number }> {
  const child = fork(childScript, args, { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const port = await new Promise<number>((resolve, reject) => {
    child.once('message', (m) => resolve((m as { port: number }).port));
    child.once('exit', (code) => reject(new Error(`bench child exited with ${code}`)));
  });
  return { child, port };
}

/** Disconnecting IPC makes the child exit on its own (so --cpu-prof profiles get written); kill if it lingers. */
async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  if (child.connected) child.disconnect();
  const timer = setTimeout(() => child.kill(), 2000);
  await exited;
  clearTimeout(timer);
}

const mbPerSecond = (bytes: number, ms: number) => bytes / 1e6 / (ms / 1000);

/** MB/s (10^6 bytes/s) of bulk IN from gadget zero's source through UsbipServer (child) → UsbipClient. */
export function benchUsbipBulkIn(opts: UsbipBenchOptions = {}): Promise<number> {
  return benchUsbipBulk('in', opts);
}

/** MB/s of bulk OUT through UsbipClient → UsbipServer (child) into gadget zero's sink (which checks every byte). */
export function benchUsbipBulkOut(opts: UsbipBenchOptions = {}): Promise<number> {
  return benchUsbipBulk('out', opts);
}

async function benchUsbipBulk(direction: 'in' | 'out', opts: UsbipBenchOptions): Promise<number> {
  const { totalBytes, transferSize, inFlight } = defaults(opts);
  const { child, port } = await startChild(['usbip']);
  const client = new UsbipClient({ maxTransferLength: Math.max(transferSize, 1024 * 1024) });
  const dev = await client.importDevice({ host: '127.0.0.1', port }, '1-1');
  // Gadget zero's sink checks the pattern (zeros): one buffer serves every OUT transfer.
  const zeros = Buffer.alloc(direction === 'out' ? transferSize : 0);
  try {
    await dev.submit(
      new Transfer({
        type: 'control',
        endpoint: 0,
        setup: { bmRequestType: 0, bRequest: 9, wValue: GZERO_SOURCE_SINK_CONFIG, wIndex: 0, wLength: 0 },
      }),
    );
    let requested = 0;
    let moved = 0;
    const start = performance.now();
    const lane = async () => {
      while (requested < totalBytes) {
        const length = Math.min(transferSize, totalBytes - requested);
        requested += length;
        const t =
          direction === 'in'
            ? new Transfer({ type: 'bulk', endpoint: SS_BULK_IN, length })
            : new Transfer({ type: 'bulk', endpoint: SS_BULK_OUT, data: zeros.subarray(0, length) });
        await dev.submit(t);
        if (t.status !== 'ok') throw new Error(`bulk ${direction.toUpperCase()} failed: ${t.status}`);
        moved += t.actualLength;
      }
    };
    await Promise.all(Array.from({ length: inFlight }, lane));
    const ms = performance.now() - start;
    if (moved !== totalBytes) throw new Error(`moved ${moved} of ${totalBytes}`);
    return mbPerSecond(moved, ms);
  } finally {
    await dev.close();
    await stopChild(child);
  }
}

/** MB/s of the same bytes written raw over loopback TCP in transferSize writes from a child process. */
export async function benchRawTcpPump(opts: UsbipBenchOptions = {}): Promise<number> {
  const { totalBytes, transferSize } = defaults(opts);
  const { child, port } = await startChild(['raw', String(transferSize), String(totalBytes)]);
  try {
    return await new Promise<number>((resolve, reject) => {
      const socket = net.connect(port, '127.0.0.1');
      let received = 0;
      let start = 0;
      socket.once('connect', () => {
        tuneSocket(socket);
        start = performance.now();
      });
      socket.on('data', (chunk: Buffer) => {
        received += chunk.length;
      });
      socket.once('end', () => {
        const ms = performance.now() - start;
        socket.destroy();
        if (received !== totalBytes) reject(new Error(`received ${received} of ${totalBytes}`));
        else resolve(mbPerSecond(received, ms));
      });
      socket.once('error', reject);
    });
  } finally {
    await stopChild(child);
  }
}

/** MB/s of the same bytes written raw from this process to a reading child over loopback TCP. */
export async function benchRawTcpSink(opts: UsbipBenchOptions = {}): Promise<number> {
  const { totalBytes, transferSize } = defaults(opts);
  const { child, port } = await startChild(['sink', String(totalBytes)]);
  const chunk = Buffer.alloc(transferSize, 0xa5);
  try {
    return await new Promise<number>((resolve, reject) => {
      const socket = net.connect(port, '127.0.0.1');
      let start = 0;
      let sent = 0;
      const pump = () => {
        while (sent < totalBytes) {
          const n = Math.min(transferSize, totalBytes - sent);
          sent += n;
          if (!socket.write(n === transferSize ? chunk : chunk.subarray(0, n))) return void socket.once('drain', pump);
        }
      };
      socket.once('connect', () => {
        tuneSocket(socket);
        start = performance.now();
        pump();
      });
      socket.on('data', () => {});
      socket.once('end', () => {
        const ms = performance.now() - start;
        socket.destroy();
        resolve(mbPerSecond(totalBytes, ms));
      });
      socket.once('error', reject);
    });
  } finally {
    await stopChild(child);
  }
}

/** Bulk IN and OUT through gadget zero at each transfer size, beside the raw TCP pump of the same run. */
export async function usbipBulkTable(totalBytes: number, sizes = [64 * 1024, 1024 * 1024]): Promise<string> {
  const rows = ['| direction | transfer | raw TCP MB/s | USB/IP MB/s | ratio |', '| --- | --- | --- | --- | --- |'];
  for (const transferSize of sizes) {
    const opts = { totalBytes, transferSize, inFlight: 8 };
    const label = transferSize >= 1 << 20 ? `${transferSize >> 20} MiB` : `${transferSize >> 10} KiB`;
    const rawIn = await benchRawTcpPump(opts);
    const usbipIn = await benchUsbipBulkIn(opts);
    rows.push(`| bulk IN | ${label} | ${rawIn.toFixed(0)} | ${usbipIn.toFixed(0)} | ${(usbipIn / rawIn).toFixed(2)} |`);
    const rawOut = await benchRawTcpSink(opts);
    const usbipOut = await benchUsbipBulkOut(opts);
    rows.push(
      `| bulk OUT | ${label} | ${rawOut.toFixed(0)} | ${usbipOut.toFixed(0)} | ${(usbipOut / rawOut).toFixed(2)} |`,
    );
  }
  return rows.join('\n');
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  setLogSink('silent');
  const mib = Number(process.argv[2]) || 1024;
  console.log(`gadget zero source/sink over USB/IP on loopback, ${mib} MiB per run, 8 transfers in flight`);
  console.log(await usbipBulkTable(mib * 1024 * 1024));
}

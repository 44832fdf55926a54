// USB/IP bulk IN throughput on loopback against raw TCP, sender in a child process for both.
//   node dist/bench/usbip-throughput.js [totalMiB] [inFlight] [transferKiB]
import { type ChildProcess, fork } from 'node:child_process';
import net from 'node:net';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { UsbipClient } from '../src/client/usbip/index.js';
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

/** MB/s (10^6 bytes/s) of bulk IN through UsbipServer (child process) → UsbipClient (this process). */
export async function benchUsbipBulkIn(opts: UsbipBenchOptions = {}): Promise<number> {
  const { totalBytes, transferSize, inFlight } = defaults(opts);
  const { child, port } = await startChild(['usbip', String(transferSize)]);
  const client = new UsbipClient({ maxTransferLength: Math.max(transferSize, 1024 * 1024) });
  const dev = await client.importDevice({ host: '127.0.0.1', port }, '1-1');
  try {
    await dev.submit(
      new Transfer({
        type: 'control',
        endpoint: 0,
        setup: { bmRequestType: 0, bRequest: 9, wValue: 1, wIndex: 0, wLength: 0 },
      }),
    );
    let requested = 0;
    let received = 0;
    const start = performance.now();
    const lane = async () => {
      while (requested < totalBytes) {
        const length = Math.min(transferSize, totalBytes - requested);
        requested += length;
        const t = new Transfer({ type: 'bulk', endpoint: 0x81, length });
        await dev.submit(t);
        if (t.status !== 'ok') throw new Error(`bulk IN failed: ${t.status}`);
        received += t.actualLength;
      }
    };
    await Promise.all(Array.from({ length: inFlight }, lane));
    const ms = performance.now() - start;
    if (received !== totalBytes) throw new Error(`received ${received} of ${totalBytes}`);
    return mbPerSecond(received, ms);
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

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  setLogSink('silent');
  const [mib, k, kib] = process.argv.slice(2).map(Number);
  const opts: UsbipBenchOptions = {
    totalBytes: (mib || 1024) * 1024 * 1024,
    inFlight: k || 8,
    transferSize: (kib || 64) * 1024,
  };
  const d = defaults(opts);
  console.log(`moving ${d.totalBytes / 1048576} MiB, ${d.transferSize / 1024} KiB transfers, ${d.inFlight} in flight`);
  const raw = await benchRawTcpPump(opts);
  console.log(`raw TCP pump:      ${raw.toFixed(0)} MB/s`);
  const usbip = await benchUsbipBulkIn(opts);
  console.log(`USB/IP bulk IN:    ${usbip.toFixed(0)} MB/s`);
  console.log(`ratio USB/IP/raw:  ${(usbip / raw).toFixed(2)}`);
}

// CDC-ACM serial: (1) CPU of an attached idle port (usbwire serve as a child, our USB/IP client
// keeps a bulk IN and the notification IN pending as Linux cdc-acm does), (2) throughput host
// end → client and client → host end over loopback beside a raw TCP pump in the same run.
//   node dist/bench/serial.js [--quick]
import { type ChildProcess, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { type RemoteUsbipDevice, UsbipClient } from '../src/client/usbip/index.js';
import { Transfer } from '../src/usb/transfer.js';
import { setLogSink } from '../src/util/log.js';
import { benchRawTcpPump } from './usbip-throughput.js';

const BIN = fileURLToPath(new URL('../../bin/usbwire.js', import.meta.url));
const CLOCK_TICKS = 100; // USER_HZ on Linux: the unit of utime/stime in /proc/PID/stat
const DATA_IN = 0x81;
const DATA_OUT = 0x02;
const NOTIFY = 0x83;

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

/** utime + stime of a process, in seconds. */
function cpuSeconds(pid: number): number {
  const stat = readFileSync(join('/proc', String(pid), 'stat'), 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS;
}

interface Rig {
  server: ChildProcess;
  dev: RemoteUsbipDevice;
  hostEnd: net.Socket;
  stop(): Promise<void>;
}

/** `usbwire serve --usbip ... --serial tcp:...`, imported by our client, configured, DTR up, host end connected. */
async function attach(): Promise<Rig> {
  const [usbip, tcp] = await Promise.all([freePort(), freePort()]);
  const server = spawn(
    process.execPath,
    [BIN, 'serve', '--usbip', `127.0.0.1:${usbip}`, '--serial', `tcp:127.0.0.1:${tcp}`],
    {
      stdio: ['ignore', 'pipe', 'ignore'],
    },
  );
  await new Promise<void>((resolve, reject) => {
    server.stdout?.on('data', (d: Buffer) => d.toString().includes('listening') && resolve());
    server.once('exit', (code) => reject(new Error(`usbwire serve exited with ${code}`)));
  });
  const hostEnd = net.connect(tcp, '127.0.0.1');
  await new Promise((r) => hostEnd.once('connect', r));
  hostEnd.setNoDelay(true);
  const dev = await new UsbipClient().importDevice({ host: '127.0.0.1', port: usbip }, '1-1');
  const ctrl = (bmRequestType: number, bRequest: number, wValue: number) =>
    dev.submit(
      new Transfer({ type: 'control', endpoint: 0, setup: { bmRequestType, bRequest, wValue, wIndex: 0, wLength: 0 } }),
    );
  await ctrl(0x00, 9, 1); // SET_CONFIGURATION 1
  await ctrl(0x21, 0x22, 3); // SET_CONTROL_LINE_STATE DTR|RTS, as on open()
  return {
    server,
    dev,
    hostEnd,
    stop: async () => {
      hostEnd.destroy();
      await dev.close();
      const exited = new Promise((r) => server.once('exit', r));
      server.kill('SIGTERM');
      await exited;
    },
  };
}

/** Percent of one CPU the server used over `seconds` with the port attached and idle. */
export async function benchSerialIdleCpu(seconds = 10): Promise<number> {
  const rig = await attach();
  try {
    // The carrier notification completes at once (the host end is connected); the next one and
    // the bulk IN stay pending, as the kernel leaves them.
    const first = new Transfer({ type: 'interrupt', endpoint: NOTIFY, length: 16 });
    await rig.dev.submit(first);
    if (first.data[8] !== 3) throw new Error(`SERIAL_STATE ${first.data[8]}, expected DCD|DSR`);
    void rig.dev.submit(new Transfer({ type: 'interrupt', endpoint: NOTIFY, length: 16 }));
    void rig.dev.submit(new Transfer({ type: 'bulk', endpoint: DATA_IN, length: 1024 }));
    await new Promise((r) => setTimeout(r, 500));
    const before = cpuSeconds(rig.server.pid!);
    await new Promise((r) => setTimeout(r, seconds * 1000));
    return ((cpuSeconds(rig.server.pid!) - before) / seconds) * 100;
  } finally {
    await rig.stop();
  }
}

const mbPerSecond = (bytes: number, ms: number) => bytes / 1e6 / (ms / 1000);

/** MB/s host end → client (bulk IN, `inFlight` × `size` pending) and client → host end (bulk OUT). */
export async function benchSerialThroughput(
  totalBytes: number,
  size = 16 * 1024,
  inFlight = 8,
): Promise<{ toClient: number; toHostEnd: number }> {
  const rig = await attach();
  try {
    const chunk = Buffer.alloc(64 * 1024, 0x5a);
    let start = performance.now();
    let written = 0;
    const pump = () => {
      while (
        written < totalBytes &&
        rig.hostEnd.write(chunk.subarray(0, Math.min(chunk.length, totalBytes - written)))
      ) {
        written += Math.min(chunk.length, totalBytes - written);
      }
    };
    rig.hostEnd.on('drain', pump);
    let received = 0;
    const lane = async () => {
      while (received < totalBytes) {
        const t = new Transfer({ type: 'bulk', endpoint: DATA_IN, length: size });
        await rig.dev.submit(t);
        if (t.status !== 'ok') throw new Error(`bulk IN: ${t.status}`);
        received += t.actualLength;
      }
    };
    // The last lanes stay pending once everything arrived (and fail when the device closes).
    const lanes = Array.from({ length: inFlight }, () => lane().catch(() => {}));
    pump();
    while (received < totalBytes) await Promise.race([...lanes, new Promise((r) => setTimeout(r, 5))]);
    const toClient = mbPerSecond(received, performance.now() - start);

    let arrived = 0;
    const allArrived = new Promise<void>((resolve) =>
      rig.hostEnd.on('data', (d: Buffer) => {
        arrived += d.length;
        if (arrived >= totalBytes) resolve();
      }),
    );
    start = performance.now();
    let sent = 0;
    const outLane = async () => {
      while (sent < totalBytes) {
        const n = Math.min(size, totalBytes - sent);
        sent += n;
        const t = new Transfer({ type: 'bulk', endpoint: DATA_OUT, data: chunk.subarray(0, n) });
        await rig.dev.submit(t);
        if (t.status !== 'ok') throw new Error(`bulk OUT: ${t.status}`);
      }
    };
    await Promise.all(Array.from({ length: inFlight }, outLane));
    await allArrived;
    return { toClient, toHostEnd: mbPerSecond(arrived, performance.now() - start) };
  } finally {
    await rig.stop();
  }
}

/** The table `npm run bench` prints. */
export async function serialBench(opts: { quick?: boolean } = {}): Promise<void> {
  const totalBytes = (opts.quick ? 32 : 128) * 1024 * 1024;
  const raw = await benchRawTcpPump({ totalBytes, transferSize: 16 * 1024 });
  const serial = await benchSerialThroughput(totalBytes);
  const idle = await benchSerialIdleCpu(opts.quick ? 3 : 10);
  console.log(`serial: CDC-ACM over USB/IP on loopback, 16 KiB transfers, 8 in flight, ${totalBytes >> 20} MiB`);
  console.log('| path | MB/s | vs raw TCP |');
  console.log('| --- | --- | --- |');
  console.log(`| raw TCP pump | ${raw.toFixed(0)} | 1.00 |`);
  for (const [name, v] of [
    ['host end → USB/IP client (bulk IN)', serial.toClient],
    ['USB/IP client → host end (bulk OUT)', serial.toHostEnd],
  ] as const) {
    console.log(`| serial ${name} | ${v.toFixed(0)} | ${(v / raw).toFixed(2)} |`);
  }
  console.log(
    `idle attached serial port (bulk IN + notification pending, host end connected): usbwire CPU ${idle.toFixed(2)} % ` +
      `over ${opts.quick ? 3 : 10} s (${idle < 1 ? 'under' : 'OVER'} the 1 % budget)`,
  );
  console.log('');
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  setLogSink('silent');
  await serialBench({ quick: process.argv.includes('--quick') });
}

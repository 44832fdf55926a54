// HID benchmarks against a real `usbwire serve --keyboard` child process:
// (a) CPU of the server while an attached keyboard sits idle with interrupt INs pending (as the
//     kernel's usbhid keeps them), read from /proc/PID/stat over 10 s;
// (b) latency from a key action on the control endpoint to the report completing the client's
//     interrupt IN, beside a plain HTTP round trip on the same control socket.
//   node dist/bench/hid.js [--quick]
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { UsbipClient } from '../src/client/usbip/index.js';
import type { RemoteUsbipDevice } from '../src/client/usbip/remote-device.js';
import { Transfer } from '../src/usb/transfer.js';
import { setLogSink } from '../src/util/log.js';

const BIN = fileURLToPath(new URL('../../bin/usbwire.js', import.meta.url));
const CLOCK_TICKS = 100; // USER_HZ on Linux

interface Server {
  child: ChildProcess;
  sock: string;
  port: number;
  dir: string;
}

async function startServer(): Promise<Server> {
  const dir = mkdtempSync(join(tmpdir(), 'usbwire-hid-bench-'));
  const sock = join(dir, 'control.sock');
  const port = 20000 + Math.floor(Math.random() * 20000);
  const child = spawn(
    process.execPath,
    [BIN, 'serve', '--keyboard', '--usbip', `127.0.0.1:${port}`, '--control', `unix:${sock}`, '--log-level', 'warn'],
    {
      stdio: ['ignore', 'pipe', 'inherit'],
    },
  );
  await new Promise<void>((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (d) => {
      out += d;
      if (/control: listening/.test(out)) resolve();
    });
    child.once('exit', (code) => reject(new Error(`usbwire serve exited (${code}): ${out}`)));
  });
  return { child, sock, port, dir };
}

function cpuTicks(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return Number(fields[11]) + Number(fields[12]); // utime + stime (fields 14, 15)
}

async function control(dev: RemoteUsbipDevice, bmRequestType: number, bRequest: number, wValue: number): Promise<void> {
  const t = new Transfer({
    type: 'control',
    endpoint: 0,
    setup: { bmRequestType, bRequest, wValue, wIndex: 0, wLength: 0 },
  });
  await dev.submit(t);
  if (t.status !== 'ok') throw new Error(`control ${bRequest} failed: ${t.status}`);
}

/** Attach like usbhid: SET_CONFIGURATION(1), SET_IDLE(0). */
async function attach(port: number): Promise<RemoteUsbipDevice> {
  const dev = await new UsbipClient().importDevice({ host: '127.0.0.1', port }, '1-1');
  await control(dev, 0x00, 9, 1);
  await control(dev, 0x21, 0x0a, 0);
  return dev;
}

function interruptIn(dev: RemoteUsbipDevice): { t: Transfer; done: Promise<number> } {
  const t = new Transfer({ type: 'interrupt', endpoint: 0x81, length: 8 });
  return { t, done: dev.submit(t).then(() => performance.now()) };
}

function post(agent: Agent, sock: string, path: string, body: unknown): Promise<unknown> {
  const payload = Buffer.from(JSON.stringify(body));
  return new Promise((resolve, reject) => {
    const req = request(
      {
        socketPath: sock,
        agent,
        method: 'POST',
        path,
        headers: { 'content-type': 'application/json', 'content-length': payload.length },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          if (res.statusCode !== 200) reject(new Error(`${path}: HTTP ${res.statusCode} ${Buffer.concat(chunks)}`));
          else resolve(JSON.parse(Buffer.concat(chunks).toString()));
        });
      },
    );
    req.on('error', reject);
    req.end(payload);
  });
}

const pct = (xs: number[], p: number) =>
  [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))]!;

/** (a) CPU % of the server over `seconds` with the keyboard attached and idle. */
async function idleCpu(srv: Server, dev: RemoteUsbipDevice, seconds: number): Promise<number> {
  const pending = interruptIn(dev); // usbhid keeps one interrupt URB in flight
  const before = cpuTicks(srv.child.pid!);
  await new Promise((r) => setTimeout(r, seconds * 1000));
  const used = cpuTicks(srv.child.pid!) - before;
  dev.cancel(pending.t);
  await pending.done;
  return (used / CLOCK_TICKS / seconds) * 100;
}

/** (b) ms from the key action request to the report arriving, and of a plain HTTP round trip. */
async function latency(
  srv: Server,
  dev: RemoteUsbipDevice,
  events: number,
): Promise<{ key: number[]; http: number[] }> {
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  const key: number[] = [];
  const http: number[] = [];
  try {
    for (let i = 0; i < events + 50; i++) {
      const warm = i < 50;
      const h0 = performance.now();
      await post(agent, srv.sock, '/devices/1-1/actions/leds', {});
      const h = performance.now() - h0;
      const pending = interruptIn(dev);
      const k0 = performance.now();
      const [arrived] = await Promise.all([
        pending.done,
        post(agent, srv.sock, '/devices/1-1/actions/key', { combo: 'a', action: i % 2 ? 'up' : 'down' }),
      ]);
      if (pending.t.status !== 'ok' || pending.t.data[2] !== (i % 2 ? 0 : 0x04))
        throw new Error(`report ${i} wrong: ${pending.t.data.toString('hex')}`);
      if (!warm) {
        key.push(arrived - k0);
        http.push(h);
      }
    }
  } finally {
    agent.destroy();
  }
  return { key, http };
}

export async function hidBench(quick = false): Promise<void> {
  setLogSink('silent');
  const srv = await startServer();
  try {
    const dev = await attach(srv.port);
    const seconds = quick ? 3 : 10;
    const cpu = await idleCpu(srv, dev, seconds);
    console.log(
      `(hid a) attached idle keyboard, 1 interrupt IN pending: usbwire CPU ${cpu.toFixed(2)} % over ${seconds} s (target < 1 %)`,
    );
    const events = quick ? 200 : 1000;
    const { key, http } = await latency(srv, dev, events);
    const row = (name: string, xs: number[], base: number[]) =>
      `| ${name} | ${pct(xs, 50).toFixed(3)} | ${pct(xs, 99).toFixed(3)} | ${(pct(xs, 50) / pct(base, 50)).toFixed(2)} |`;
    console.log(
      `(hid b) key action on the control socket → interrupt IN completed at the USB/IP client, ${events} events, loopback`,
    );
    console.log('| path | p50 ms | p99 ms | p50 vs HTTP |');
    console.log('| --- | --- | --- | --- |');
    console.log(row('HTTP round trip on the control socket (leds action)', http, http));
    console.log(row('key action → report at the client', key, http));
    console.log('');
    await dev.close();
  } finally {
    srv.child.kill('SIGTERM');
    await new Promise((r) => srv.child.once('exit', r));
    rmSync(srv.dir, { recursive: true, force: true });
  }
}

if (import.meta.url === `file://${process.argv[1]}`) await hidBench(process.argv.includes('--quick'));

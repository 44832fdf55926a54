/**
 * The clients under fuzz, in their own process: for each input from the driver, a fake server
 * replays a mutated server stream (paced on what the client sends, as in the capture) and our
 * USB/IP or usbredir client runs the capture's exercise against it, every step under a deadline.
 */
import { once } from 'node:events';
import net from 'node:net';
import { UsbipClient } from '../../src/client/usbip/index.js';
import { RemoteUsbipDevice } from '../../src/client/usbip/remote-device.js';
import { UsbredirClientConnection } from '../../src/client/usbredir/connection.js';
import type { RemoteUsbredirDevice } from '../../src/client/usbredir/remote-device.js';
import { createLogger, type Logger, setLogSink } from '../../src/util/log.js';
import { isInternalError, reportCrashes, sendToDriver } from './child.js';
import { installAllocationGuard, largestAllocation } from './codec.js';
import { type DeviceKind, exercise, withDeadline } from './scenario.js';

export interface ClientInput {
  type: 'input';
  id: number;
  protocol: 'usbip' | 'usbredir';
  /** Transcript name: 'devlist', 'import-unknown' or a device kind. */
  name: string;
  kind: DeviceKind | undefined;
  busid: string;
  bytes: string;
  /** [offset in bytes, client bytes to wait for] per server write. */
  pacing: [number, number][];
  /** FIN once everything is sent (else the client's own timeouts must end it). */
  finAtEnd: boolean;
}

export interface ClientOutcome {
  type: 'done';
  id: number;
  outcome: string;
  /** A broken promise: a step past its deadline, an internal error logged. */
  failure: string | undefined;
  /** The largest single Buffer allocation in this process so far, and where. */
  largestAlloc: { bytes: number; where: string };
}

/** Client timeouts used under fuzz (import, hello, descriptors, unlink). */
const CLIENT_TIMEOUT_MS = 500;
/** Wait for a transfer before cancelling it; then the cancel must be done within CANCEL_BOUND_MS. */
const WAIT_MS = 150;
const CANCEL_BOUND_MS = CLIENT_TIMEOUT_MS + 2000;
/** Connect + import (or hello + device), and close, each within this. */
const STEP_BOUND_MS = CLIENT_TIMEOUT_MS + 3000;

const send = sendToDriver;
/** Internal-error log lines by input id (each input logs under its own scope, "fuzz#ID"). */
const internal = new Map<number, string[]>();
setLogSink((line) => {
  if (!isInternalError(line)) return;
  const id = /\[fuzz#(\d+)/.exec(line);
  const key = id ? Number(id[1]) : -1;
  internal.set(key, [...(internal.get(key) ?? []), line]);
});
reportCrashes();
installAllocationGuard(true);

/** Write the stream in the captured pieces, each once the client has sent what it had sent then (or after a pause). */
function replay(socket: net.Socket, input: ClientInput): void {
  const bytes = Buffer.from(input.bytes, 'base64');
  socket.on('error', () => {});
  let clientBytes = 0;
  let next = 0;
  let timer: NodeJS.Timeout | undefined;
  const pump = (force: boolean) => {
    clearTimeout(timer);
    while (next < input.pacing.length && !socket.destroyed) {
      const [at, after] = input.pacing[next]!;
      if (!force && clientBytes < after) break;
      force = false;
      const end = next + 1 < input.pacing.length ? input.pacing[next + 1]![0] : bytes.length;
      socket.write(bytes.subarray(at, Math.max(at, end)));
      next++;
    }
    if (socket.destroyed) return;
    if (next < input.pacing.length) timer = setTimeout(() => pump(true), 20);
    else if (input.finAtEnd) timer = setTimeout(() => socket.end(), 20);
  };
  socket.on('data', (c: Buffer) => {
    clientBytes += c.length;
    pump(false);
  });
  socket.once('close', () => clearTimeout(timer));
  pump(false);
}

/** A fake server for one input: every connection to it gets the input's stream. */
async function fakeServer(input: ClientInput): Promise<{ port: number; close: () => void }> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
    replay(socket, input);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    port: (server.address() as net.AddressInfo).port,
    close: () => {
      server.close();
      for (const s of sockets) s.destroy();
    },
  };
}

async function runUsbip(input: ClientInput, port: number, log: Logger): Promise<string> {
  const where = { host: '127.0.0.1', port };
  if (input.name === 'devlist') {
    const client = new UsbipClient({ timeoutMs: CLIENT_TIMEOUT_MS, logger: log });
    return withDeadline(
      client.listDevices(where).then(
        (d) => `listed ${d.length} devices`,
        () => 'refused',
      ),
      STEP_BOUND_MS,
      'device list',
    );
  }
  const dev = await withDeadline(
    RemoteUsbipDevice.import(where, input.busid, { timeoutMs: CLIENT_TIMEOUT_MS, logger: log }).catch(() => undefined),
    STEP_BOUND_MS,
    'import',
  );
  if (!dev) return 'refused';
  if (input.kind) await exercise(input.kind, dev, { waitMs: WAIT_MS, cancelMs: CANCEL_BOUND_MS, strict: false });
  await withDeadline(dev.close(), STEP_BOUND_MS, 'close');
  return 'imported';
}

async function runUsbredir(input: ClientInput, port: number, log: Logger): Promise<string> {
  const socket = net.connect(port, '127.0.0.1');
  socket.on('error', () => {});
  await withDeadline(new Promise((r) => socket.once('connect', r)), STEP_BOUND_MS, 'connect');
  const conn = new UsbredirClientConnection(socket, { where: 'fuzz', logger: log, timeoutMs: CLIENT_TIMEOUT_MS });
  const dev = new Promise<RemoteUsbredirDevice | undefined>((resolve) => {
    conn.once('device', resolve);
    conn.once('close', () => resolve(undefined));
  });
  conn.start();
  // Without a device_connect a guest waits (QEMU does, and a host may connect one later); only
  // a connection the server ended must be over within the bound.
  const d = await withDeadline(dev, STEP_BOUND_MS, 'device or close').catch((err: unknown) => {
    if (input.finAtEnd) throw err;
    return 'waiting' as const;
  });
  if (d === 'waiting') {
    await withDeadline(conn.close(), STEP_BOUND_MS, 'close');
    return 'waiting for a device';
  }
  if (d && input.kind) await exercise(input.kind, d, { waitMs: WAIT_MS, cancelMs: CANCEL_BOUND_MS, strict: false });
  await withDeadline(conn.close(), STEP_BOUND_MS, 'close');
  return d ? 'device' : 'no device';
}

process.on('message', async (input: ClientInput) => {
  const fake = await fakeServer(input);
  const log = createLogger(`fuzz#${input.id}`);
  let outcome = '';
  let failure: string | undefined;
  try {
    outcome =
      input.protocol === 'usbip' ? await runUsbip(input, fake.port, log) : await runUsbredir(input, fake.port, log);
  } catch (err) {
    failure = (err as Error)?.stack ?? String(err);
  }
  fake.close();
  const lines = [...(internal.get(input.id) ?? []), ...(internal.get(-1) ?? [])];
  internal.delete(input.id);
  internal.delete(-1);
  if (!failure && lines.length > 0) failure = `client logged: ${lines.join(' | ')}`;
  const reply: ClientOutcome = { type: 'done', id: input.id, outcome, failure, largestAlloc: largestAllocation() };
  send(reply);
});

send({ type: 'ready' });

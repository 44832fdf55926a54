/**
 * The live server under fuzz, in its own process (a crash is an exit, memory is its own): both
 * protocols on loopback exporting buildDevices(). Talks to the driver over IPC.
 */
import { UsbipServer } from '../../src/server/usbip/index.js';
import { UsbredirListener } from '../../src/server/usbredir/server.js';
import { setLogSink } from '../../src/util/log.js';
import { isInternalError, reportCrashes, sendToDriver } from './child.js';
import { installAllocationGuard, largestAllocation } from './codec.js';
import { peakRssMiB, resetPeakRss } from './report.js';
import { buildDevices, FUZZ_KINDS } from './scenario.js';

export interface ServerReady {
  type: 'ready';
  usbip: number;
  usbredir: Record<string, number>;
  /** The same devices behind servers with tiny in-flight caps, so holding and releasing input happens all the time. */
  tight: { usbip: number; usbredir: Record<string, number> };
  busid: Record<string, string>;
  good: { usbip: string; usbredir: string };
}

export interface ServerStats {
  type: 'stats';
  peakRssMiB: number;
  rssMiB: number;
  heapUsedMiB: number;
  externalMiB: number;
  owners: [string, string | undefined][];
  /** Log lines that name an internal error (a bug, not a protocol error). */
  internal: string[];
  warnings: number;
  /** The largest single Buffer allocation since the last reset, and its call site. */
  largestAlloc: { bytes: number; where: string };
}

const send = sendToDriver;
const internal: string[] = [];
let warnings = 0;
setLogSink((line) => {
  if (isInternalError(line)) {
    if (internal.length < 20) internal.push(line);
  } else if (/ warn {2}\[/.test(line)) warnings++;
});

reportCrashes();

installAllocationGuard(true);
const devices = buildDevices();
const TIGHT = { maxTransfersInFlight: 2, maxBytesInFlight: 4096, handshakeTimeoutMs: 1000 };
const loopback = { host: '127.0.0.1', port: 0 };
const address = await new UsbipServer(devices.registry, loopback).listen();
const tightAddress = await new UsbipServer(devices.registry, loopback, TIGHT).listen();
const ports: Record<string, number> = {};
const tightPorts: Record<string, number> = {};
const listen = async (name: string, busid: string, into: Record<string, number>, tuning = {}) => {
  const l = new UsbredirListener(devices.registry, devices.registry.get(busid)!, loopback, tuning);
  await l.listen();
  into[name] = l.address!.port;
};
for (const kind of FUZZ_KINDS) {
  await listen(kind, devices.busid[kind], ports);
  await listen(kind, devices.busid[kind], tightPorts, TIGHT);
}
await listen('good', devices.goodUsbredir.busid, ports);

process.on('message', (m: { type: string }) => {
  if (m.type === 'reset-peak') {
    resetPeakRss();
    largestAllocation(true);
    internal.length = 0;
    warnings = 0;
    send({ type: 'reset' });
  } else if (m.type === 'stats') {
    (globalThis as { gc?: () => void }).gc?.();
    const mem = process.memoryUsage();
    const stats: ServerStats = {
      type: 'stats',
      peakRssMiB: peakRssMiB(),
      rssMiB: mem.rss / 2 ** 20,
      heapUsedMiB: mem.heapUsed / 2 ** 20,
      externalMiB: mem.external / 2 ** 20,
      owners: devices.registry.list().map((e) => [e.busid, e.owner]),
      internal: [...internal],
      warnings,
      largestAlloc: largestAllocation(),
    };
    send(stats);
  } else if (m.type === 'exit') {
    process.exit(0);
  }
});

const ready: ServerReady = {
  type: 'ready',
  usbip: address.port,
  usbredir: ports,
  tight: { usbip: tightAddress.port, usbredir: tightPorts },
  busid: devices.busid,
  good: { usbip: devices.goodUsbip.busid, usbredir: devices.goodUsbredir.busid },
};
send(ready);

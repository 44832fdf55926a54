// A client that stops reading does not slow the others and is dropped by the write-stall
// timeout. One `usbwire serve` process (the real CLI, limits from a config file) exports two
// disks (the second over USB/IP and usbredir); a good USB/IP client reads one with BOT READ(10) of 64 KiB as fast as it can, while a
// stuck client (USB/IP, then usbredir) takes the other, pipelines thousands of READs and never reads a reply.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { UsbipClient } from '../../src/client/usbip/index.js';
import { encodeCbw } from '../../src/devices/mass-storage/bot-wire.js';
import { OpStatus } from '../../src/protocol/usbip/constants.js';
import { encodeCmdSubmit, encodeReqImport, UsbipParser } from '../../src/protocol/usbip/index.js';
import { PacketType as T } from '../../src/protocol/usbredir/constants.js';
import type { Packet } from '../../src/protocol/usbredir/packets.js';
import { setLogSink } from '../../src/util/log.js';
import { BotHost } from '../support/bot-host.js';
import { until } from '../support/usbip-wire.js';
import { bulkIn, UsbredirWire } from '../support/usbredir-wire.js';
import { freePort, type Serve, startServe } from './faults-serve.js';

setLogSink('silent');

const STALL_MS = 2500;
const MEASURE_MS = 1000;
const DISK = 32 * 1024 * 1024;
const dir = mkdtempSync(join(tmpdir(), 'usbwire-stuck-'));
after(() => rmSync(dir, { recursive: true, force: true }));

/** Two disks over USB/IP, limits from a config file. */
function serve(args: string[]): Promise<Serve> {
  for (const n of ['good.img', 'stuck.img']) writeFileSync(join(dir, n), Buffer.alloc(DISK, 0x5a));
  const config = join(dir, 'serve.json');
  writeFileSync(
    config,
    JSON.stringify({
      control: 'none',
      devices: [{ disk: 'good.img' }, { disk: 'stuck.img' }],
      limits: { writeStallTimeoutMs: STALL_MS },
    }),
  );
  return startServe(['--config', config, ...args]);
}

/**
 * MiB/s of 64 KiB BOT READs on `bot`: the best of five windows of ms/5, so that another process
 * taking the shared CPU for a moment does not pass for a slowdown.
 */
async function readRate(bot: BotHost, ms: number): Promise<number> {
  let best = 0;
  let lba = 0;
  for (let w = 0; w < 5; w++) {
    const t0 = performance.now();
    let bytes = 0;
    while (performance.now() - t0 < ms / 5) {
      bytes += (await bot.read(lba, 128)).length;
      lba = (lba + 128) % (DISK / 512);
    }
    best = Math.max(best, bytes / (1 << 20) / ((performance.now() - t0) / 1000));
  }
  return best;
}

/** CBW of a 64 KiB READ(10), the k-th of a sweep over the disk. */
function readCbw(k: number): Buffer {
  const cdb = Buffer.alloc(10);
  cdb[0] = 0x28;
  cdb.writeUInt32BE((k * 128) % (DISK / 512), 2);
  cdb.writeUInt16BE(128, 7);
  return encodeCbw({ tag: k + 1, dataTransferLength: 65536, dataIn: true, lun: 0, cdb });
}

/** Import `busid` over a raw socket, then pipeline `commands` 64 KiB BOT READs and never read a reply. */
async function stuckClient(port: number, busid: string, commands: number): Promise<net.Socket> {
  const socket = net.connect({ host: '127.0.0.1', port });
  socket.on('error', () => {});
  await new Promise((r) => socket.once('connect', r));
  const status = await new Promise<number>((resolveStatus) => {
    const parser = new UsbipParser({ role: 'client' }, (p) => {
      if (p.kind === 'op-rep-import') resolveStatus(p.status);
    });
    socket.on('data', (c: Buffer) => parser.push(c));
    socket.write(Buffer.concat(encodeReqImport(busid)));
  });
  assert.equal(status, OpStatus.Ok, 'stuck client imports its disk');
  socket.removeAllListeners('data');
  socket.pause();
  const devid = 0x00010000 | Number(busid.split('-')[1]);
  const base = { devid, transferFlags: 0, startFrame: 0, numberOfPackets: 0, interval: 0 };
  const pdus: Buffer[] = [];
  let seqnum = 1;
  const setConfiguration = { bmRequestType: 0, bRequest: 9, wValue: 1, wIndex: 0, wLength: 0 };
  pdus.push(
    ...encodeCmdSubmit({
      ...base,
      seqnum: seqnum++,
      direction: 0,
      ep: 0,
      transferBufferLength: 0,
      setup: setConfiguration,
    }),
  );
  for (let k = 0; k < commands; k++) {
    const cbw = readCbw(k);
    pdus.push(
      ...encodeCmdSubmit({
        ...base,
        seqnum: seqnum++,
        direction: 0,
        ep: 2,
        transferBufferLength: cbw.length,
        data: cbw,
      }),
      ...encodeCmdSubmit({ ...base, seqnum: seqnum++, direction: 1, ep: 1, transferBufferLength: 65536 }),
      ...encodeCmdSubmit({ ...base, seqnum: seqnum++, direction: 1, ep: 1, transferBufferLength: 13 }),
    );
  }
  socket.write(Buffer.concat(pdus));
  return socket;
}

/** The same as a usbredir guest: hello, device_connect, then the READs, never reading a reply. */
async function stuckUsbredirClient(port: number, commands: number): Promise<net.Socket> {
  const wire = await UsbredirWire.connect(port);
  await wire.attach();
  wire.socket.pause();
  const packets: Packet[] = [{ type: T.SetConfiguration, id: 1n, configuration: 1 }];
  let id = 2n;
  for (let k = 0; k < commands; k++) {
    const cbw = readCbw(k);
    packets.push(
      { type: T.BulkPacket, id: id++, endpoint: 0x02, status: 0, length: cbw.length, streamId: 0, data: cbw },
      bulkIn(id++, 65536),
      bulkIn(id++, 13),
    );
  }
  wire.send(packets);
  return wire.socket;
}

/** Try an import of `busid`: its OP_REP_IMPORT status (the connection is closed again at once). */
async function importStatus(port: number, busid: string): Promise<number> {
  const socket = net.connect({ host: '127.0.0.1', port });
  socket.on('error', () => {});
  try {
    return await new Promise<number>((resolveStatus, reject) => {
      const parser = new UsbipParser({ role: 'client' }, (p) => {
        if (p.kind === 'op-rep-import') resolveStatus(p.status);
      });
      socket.on('data', (c: Buffer) => parser.push(c));
      socket.on('close', () => reject(new Error('closed without a reply')));
      socket.once('connect', () => socket.write(Buffer.concat(encodeReqImport(busid))));
    });
  } finally {
    socket.destroy();
  }
}

for (const kind of ['usbip', 'usbredir'] as const) {
  test(`faults: a ${kind} client that stops reading does not slow a USB/IP client, and is dropped after the write-stall timeout`, {
    timeout: 60_000,
  }, async (t) => {
    const redirPort = await freePort();
    const srv = await serve(['--usbredir', `127.0.0.1:${redirPort}=1-2`]);
    const good = await new UsbipClient().importDevice({ host: '127.0.0.1', port: srv.port }, '1-1');
    const bot = await BotHost.open(good);
    await readRate(bot, 300); // warm up
    const alone = await readRate(bot, MEASURE_MS);

    const t0 = Date.now();
    const stuck =
      kind === 'usbip' ? await stuckClient(srv.port, '1-2', 3000) : await stuckUsbredirClient(redirPort, 3000);
    // Give the server time to fill the stuck client's socket and queue: from then on it is stalled.
    await new Promise((r) => setTimeout(r, 500));
    assert.equal(await importStatus(srv.port, '1-2'), OpStatus.DevBusy, 'the stuck client holds its disk');
    const withStuck = await readRate(bot, MEASURE_MS);
    assert.ok(!/stopped reading\), closing/.test(srv.output()), 'measured while the stuck client was still connected');

    await until(
      () => /stopped reading\), closing/.test(srv.output()),
      'the stall timeout closing the stuck client',
      20_000,
    );
    const droppedMs = Date.now() - t0;
    // Released (reset, claim dropped): the next client gets the disk.
    for (;;) {
      const status = await importStatus(srv.port, '1-2');
      if (status === OpStatus.Ok) break;
      assert.equal(status, OpStatus.DevBusy);
      assert.ok(Date.now() - t0 < STALL_MS + 10_000, "the stuck client's disk is freed");
      await new Promise((r) => setTimeout(r, 50));
    }
    const freedMs = Date.now() - t0;
    const after = await readRate(bot, MEASURE_MS);
    stuck.destroy();
    await good.close();
    t.diagnostic(
      `good client 64 KiB READs: alone ${alone.toFixed(1)} MiB/s, with the stuck client ${withStuck.toFixed(1)} MiB/s, after it was dropped ${after.toFixed(1)} MiB/s; stuck client dropped ${droppedMs} ms after it started (timeout ${STALL_MS} ms), its disk free again at ${freedMs} ms`,
    );
    // Generous: the machine is shared; a stuck client that held the server up would show as a collapse.
    assert.ok(withStuck > 0.35 * Math.min(alone, after), `good client slowed: ${alone} → ${withStuck} MiB/s`);
    assert.ok(droppedMs >= STALL_MS - 500, `dropped only after the timeout (${droppedMs} ms)`);
    srv.proc.kill('SIGTERM');
    await srv.exited;
  });
}

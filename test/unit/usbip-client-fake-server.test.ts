// RemoteUsbipDevice against a scripted USB/IP server: the unlink race in both orders (as the
// kernel's stub_rx.c / stub_tx.c produce them), state read at import, and a misbehaving server
// for each kind of bad input. The scripted server answers EP0 like a device (gadget zero's
// descriptors) and leaves every other URB to the test.
import assert from 'node:assert/strict';
import net from 'node:net';
import { after, afterEach, before, test } from 'node:test';
import { type RemoteDeviceOptions, RemoteUsbipDevice } from '../../src/client/usbip/index.js';
import { MAX_BYTES_IN_FLIGHT, MAX_TRANSFERS_IN_FLIGHT } from '../../src/client/usbip/urb-session.js';
import {
  createGadgetZero,
  GZERO_SOURCE_SINK_CONFIG,
  SS_BULK_IN,
  SS_ISO_IN,
} from '../../src/devices/gadget-zero/index.js';
import { createKeyboard } from '../../src/devices/hid/index.js';
import {
  type CmdSubmit,
  type CmdUnlink,
  Errno,
  encodeOpCommon,
  encodeRepImport,
  encodeRetSubmit,
  encodeRetUnlink,
  OP_REP_IMPORT,
  OpStatus,
  type RetSubmitFields,
  type UsbipDeviceInfo,
  UsbipParser,
} from '../../src/protocol/usbip/index.js';
import { parseConfiguration } from '../../src/usb/descriptors.js';
import type { DeviceDescriptors } from '../../src/usb/device.js';
import { TransferStatus } from '../../src/usb/status.js';
import { Transfer } from '../../src/usb/transfer.js';
import type { HostPort } from '../../src/util/host-port.js';
import { createLogger, setLogSink } from '../../src/util/log.js';
import { prng } from '../support/prng.js';
import { until } from '../support/usbip-wire.js';

const GZ_DESCRIPTORS: DeviceDescriptors = createGadgetZero().descriptors;
const DEVID = 0x00010002;

interface FakeOptions {
  descriptors?: DeviceDescriptors;
  /** What GET_CONFIGURATION / GET_INTERFACE answer. */
  configuration?: number;
  alternate?: number;
  /** 'silent': never answer the import; a number: that op status; a buffer: these bytes instead. */
  importReply?: 'ok' | 'silent' | number | Buffer;
  /** Non-EP0 URBs (and EP0 ones the fake does not know); default: left pending. */
  onUrb?: (conn: FakeConn, cmd: CmdSubmit) => void;
  onUnlink?: (conn: FakeConn, cmd: CmdUnlink) => void;
  /** Linux enum usb_device_speed in the import reply (default high). */
  speed?: number;
  /** Leave EP0 requests unanswered too. */
  silentEp0?: boolean;
}

class FakeConn {
  readonly submits: CmdSubmit[] = [];
  readonly unlinks: CmdUnlink[] = [];
  closed = false;
  constructor(readonly socket: net.Socket) {}

  retSubmit(cmd: CmdSubmit, f: Partial<RetSubmitFields> = {}): void {
    this.socket.write(retSubmitBytes(cmd.seqnum, f));
  }

  retUnlink(cmd: CmdUnlink, status: number): void {
    this.socket.write(Buffer.concat(encodeRetUnlink({ seqnum: cmd.seqnum, devid: 0, direction: 0, ep: 0, status })));
  }

  /** The CMD_SUBMIT of the n-th non-EP0 URB. */
  urb(n: number): CmdSubmit {
    return this.submits.filter((s) => s.ep !== 0)[n]!;
  }
}

class FakeServer {
  readonly conns: FakeConn[] = [];
  #server!: net.Server;
  address!: HostPort;

  static async start(opts: FakeOptions = {}): Promise<FakeServer> {
    const f = new FakeServer();
    f.#server = net.createServer((s) => f.#accept(s, opts));
    await new Promise<void>((r) => f.#server.listen(0, '127.0.0.1', r));
    f.address = { host: '127.0.0.1', port: (f.#server.address() as net.AddressInfo).port };
    return f;
  }

  #accept(socket: net.Socket, o: FakeOptions): void {
    const conn = new FakeConn(socket);
    this.conns.push(conn);
    const descriptors = o.descriptors ?? GZ_DESCRIPTORS;
    socket.setNoDelay(true);
    socket.on('error', () => {});
    socket.on('close', () => {
      conn.closed = true;
    });
    const parser: UsbipParser = new UsbipParser({ role: 'server' }, (p) => {
      if (p.kind === 'op-req-import') {
        const reply = o.importReply ?? 'ok';
        if (reply === 'silent') return;
        if (Buffer.isBuffer(reply)) socket.write(reply);
        else if (typeof reply === 'number') socket.end(Buffer.concat(encodeRepImport(reply)));
        else {
          socket.write(
            Buffer.concat(encodeRepImport(OpStatus.Ok, { ...deviceInfo(p.busid, descriptors), speed: o.speed ?? 3 })),
          );
          parser.startUrbPhase();
        }
      } else if (p.kind === 'cmd-submit') {
        conn.submits.push(p);
        if (o.silentEp0) return;
        if (p.ep !== 0 || !answerEp0(conn, p, descriptors, o)) o.onUrb?.(conn, p);
      } else if (p.kind === 'cmd-unlink') {
        conn.unlinks.push(p);
        o.onUnlink?.(conn, p);
      }
    });
    socket.on('data', (c: Buffer) => {
      try {
        parser.push(c);
      } catch {
        socket.destroy();
      }
    });
  }

  async close(): Promise<void> {
    for (const c of this.conns) c.socket.destroy();
    await new Promise((r) => this.#server.close(r));
  }
}

function retSubmitBytes(seqnum: number, f: Partial<RetSubmitFields> = {}): Buffer {
  return Buffer.concat(
    encodeRetSubmit({
      seqnum,
      devid: 0,
      direction: 0,
      ep: 0,
      status: 0,
      actualLength: 0,
      startFrame: 0,
      numberOfPackets: 0,
      errorCount: 0,
      ...f,
    }),
  );
}

function deviceInfo(busid: string, d: DeviceDescriptors): UsbipDeviceInfo {
  return {
    path: '/sys/devices/fake/usb1/1-2',
    busid,
    busnum: DEVID >>> 16,
    devnum: DEVID & 0xffff,
    speed: 3,
    idVendor: d.device.readUInt16LE(8),
    idProduct: d.device.readUInt16LE(10),
    bcdDevice: d.device.readUInt16LE(12),
    bDeviceClass: d.device[4]!,
    bDeviceSubClass: d.device[5]!,
    bDeviceProtocol: d.device[6]!,
    bConfigurationValue: 0,
    bNumConfigurations: d.configurations.length,
    bNumInterfaces: 1,
  };
}

/** Standard EP0 requests a device answers; false for anything else. */
function answerEp0(conn: FakeConn, cmd: CmdSubmit, d: DeviceDescriptors, o: FakeOptions): boolean {
  const s = cmd.setup;
  const reply = (data: Buffer) => {
    const out = data.subarray(0, s.wLength);
    conn.retSubmit(cmd, { actualLength: out.length, data: out });
  };
  if (s.bmRequestType === 0x80 && s.bRequest === 6 && s.wValue >> 8 === 1) reply(d.device);
  else if (s.bmRequestType === 0x80 && s.bRequest === 6 && s.wValue >> 8 === 2) {
    const config = d.configurations[s.wValue & 0xff];
    if (!config) conn.retSubmit(cmd, { status: -Errno.EPIPE });
    else reply(config);
  } else if (s.bmRequestType === 0x80 && s.bRequest === 8) reply(Buffer.from([o.configuration ?? 0]));
  else if (s.bmRequestType === 0x81 && s.bRequest === 10) reply(Buffer.from([o.alternate ?? 0]));
  else if ((s.bmRequestType === 0 && s.bRequest === 9) || (s.bmRequestType === 1 && s.bRequest === 11)) {
    conn.retSubmit(cmd);
  } else return false;
  return true;
}

const lines: string[] = [];
let fake: FakeServer | undefined;
const opened: RemoteUsbipDevice[] = [];
before(() => setLogSink((l) => lines.push(l)));
after(() => setLogSink((l) => process.stderr.write(`${l}\n`)));
afterEach(async () => {
  await Promise.all(opened.splice(0).map((d) => d.close()));
  await fake?.close();
  fake = undefined;
  lines.length = 0;
});

async function importFrom(opts: FakeOptions, deviceOpts: RemoteDeviceOptions = {}): Promise<RemoteUsbipDevice> {
  fake = await FakeServer.start(opts);
  const dev = await RemoteUsbipDevice.import(fake.address, '1-2', {
    timeoutMs: 2000,
    logger: createLogger('client'),
    ...deviceOpts,
  });
  opened.push(dev);
  return dev;
}

function bulkIn(length = 512): Transfer {
  return new Transfer({ type: 'bulk', endpoint: SS_BULK_IN, length });
}

/** Submit, and count how many times the promise settles (must be once). */
function submitCounted(dev: RemoteUsbipDevice, t: Transfer): { done: Promise<void>; settled: () => number } {
  let n = 0;
  const done = dev.submit(t).then(() => {
    n++;
  });
  return { done, settled: () => n };
}

async function tick(ms = 30): Promise<void> {
  await new Promise((r) => setTimeout(r, ms));
}

/** The connection is still usable: one more URB goes round. */
async function stillWorks(dev: RemoteUsbipDevice): Promise<void> {
  const t = bulkIn(4);
  const before = fake!.conns[0]!.submits.length;
  const done = dev.submit(t);
  await until(() => fake!.conns[0]!.submits.length > before, 'the next CMD_SUBMIT');
  const cmd = fake!.conns[0]!.submits.at(-1)!;
  fake!.conns[0]!.retSubmit(cmd, { actualLength: 4, data: Buffer.from('live') });
  await done;
  assert.equal(t.status, TransferStatus.Ok);
  assert.equal(t.data.toString(), 'live');
}

function closeLines(): string[] {
  return lines.filter((l) => l.includes('disconnected'));
}

// ---- state read at import ----

test('import reads descriptors, the current configuration and alternate settings', async () => {
  const dev = await importFrom({ configuration: GZERO_SOURCE_SINK_CONFIG, alternate: 1 });
  assert.deepEqual(dev.descriptors.device, GZ_DESCRIPTORS.device);
  assert.deepEqual(dev.descriptors.configurations, GZ_DESCRIPTORS.configurations);
  assert.equal(dev.configuration, GZERO_SOURCE_SINK_CONFIG);
  assert.equal(dev.alternateSetting(0), 1);
  assert.equal(dev.speed, 'high');
  assert.match(dev.name, /^usbip:\/\/127\.0\.0\.1:\d+\/1-2 0525:a4a0$/);
});

// ---- the unlink race, both orders ----

test('unlink race: RET_SUBMIT before RET_UNLINK(0) completes with the data, once', async () => {
  const dev = await importFrom({
    onUnlink: (c, u) => {
      const target = c.submits.find((s) => s.seqnum === u.unlinkSeqnum)!;
      c.retSubmit(target, { actualLength: 5, data: Buffer.from('raced') });
      c.retUnlink(u, 0);
    },
  });
  const t = bulkIn();
  const { done, settled } = submitCounted(dev, t);
  await until(() => fake!.conns[0]!.urb(0) !== undefined, 'CMD_SUBMIT');
  dev.cancel(t);
  dev.cancel(t);
  await done;
  assert.equal(t.status, TransferStatus.Ok);
  assert.equal(t.data.toString(), 'raced');
  await stillWorks(dev);
  assert.equal(fake!.conns[0]!.unlinks.length, 1, 'one CMD_UNLINK however often cancel is called');
  assert.equal(settled(), 1);
  assert.equal(dev.inFlight, 0);
});

test('unlink race: RET_UNLINK(0) before RET_SUBMIT: Cancelled once, the late RET_SUBMIT is read and dropped', async () => {
  const dev = await importFrom({
    onUnlink: (c, u) => {
      const target = c.submits.find((s) => s.seqnum === u.unlinkSeqnum)!;
      c.retUnlink(u, 0);
      c.retSubmit(target, { actualLength: 4, data: Buffer.from('late') });
    },
  });
  const t = bulkIn();
  const { done, settled } = submitCounted(dev, t);
  await until(() => fake!.conns[0]!.urb(0) !== undefined, 'CMD_SUBMIT');
  dev.cancel(t);
  await done;
  assert.equal(t.status, TransferStatus.Cancelled);
  await stillWorks(dev);
  assert.equal(t.status, TransferStatus.Cancelled, 'the late RET_SUBMIT changed nothing');
  assert.equal(t.actualLength, 0);
  assert.equal(settled(), 1);
  assert.equal(closeLines().length, 0);
});

/** Two bulk INs submitted, seen by the server, then both cancelled; resolves when both are done. */
async function submitTwoAndCancel(dev: RemoteUsbipDevice): Promise<[Transfer, Transfer]> {
  const a = bulkIn();
  const b = bulkIn();
  const done = [dev.submit(a), dev.submit(b)];
  await until(() => fake!.conns[0]!.urb(1) !== undefined, 'CMD_SUBMITs');
  dev.cancel(a);
  dev.cancel(b);
  await Promise.all(done);
  return [a, b];
}

test('unlink: RET_UNLINK(-ECONNRESET) alone is Cancelled; a URB status in RET_UNLINK is kept', async () => {
  const dev = await importFrom({
    onUnlink: (c, u) => c.retUnlink(u, c.urb(0).seqnum === u.unlinkSeqnum ? -Errno.ECONNRESET : -Errno.EPIPE),
  });
  const [a, b] = await submitTwoAndCancel(dev);
  assert.equal(a.status, TransferStatus.Cancelled);
  assert.equal(b.status, TransferStatus.Stall, 'finished with a stall while being unlinked');
  await stillWorks(dev);
});

test('unlink left unanswered: cancelled here after the timeout, one warning, connection kept', async () => {
  const dev = await importFrom({}, { timeoutMs: 300 });
  const [t, u] = await submitTwoAndCancel(dev);
  assert.equal(t.status, TransferStatus.Cancelled);
  assert.equal(u.status, TransferStatus.Cancelled);
  assert.equal(lines.filter((l) => l.includes('unanswered')).length, 1);
  // The answers arriving late are accepted quietly.
  const conn = fake!.conns[0]!;
  conn.retUnlink(conn.unlinks[0]!, -Errno.ECONNRESET);
  conn.retSubmit(conn.urb(1), { actualLength: 2, data: Buffer.from('xx') });
  await stillWorks(dev);
  assert.equal(u.status, TransferStatus.Cancelled);
});

// ---- iso ----

test('iso IN: packed data goes back to each packet offset, per-packet status and lengths', async () => {
  const dev = await importFrom({
    onUrb: (c, cmd) => {
      const iso = cmd.isoPackets!;
      const actual = [100, 0, 37];
      c.retSubmit(cmd, {
        actualLength: 137,
        numberOfPackets: iso.length,
        errorCount: 1,
        data: Buffer.concat([Buffer.alloc(100, 0xa1), Buffer.alloc(37, 0xc3)]),
        isoPackets: iso.map((p, i) => ({ ...p, actualLength: actual[i]!, status: i === 1 ? -Errno.EPROTO : 0 })),
      });
    },
  });
  const packets = [0, 1, 2].map((i) => ({ offset: i * 200, length: 200, actualLength: 0, status: TransferStatus.Ok }));
  const t = new Transfer({ type: 'isochronous', endpoint: SS_ISO_IN, length: 600, isoPackets: packets });
  await dev.submit(t);
  const cmd = fake!.conns[0]!.urb(0);
  assert.deepEqual(
    cmd.isoPackets!.map((p) => [p.offset, p.length]),
    [
      [0, 200],
      [200, 200],
      [400, 200],
    ],
  );
  assert.equal(t.status, TransferStatus.Ok);
  assert.equal(t.actualLength, 137);
  assert.deepEqual(
    packets.map((p) => [p.actualLength, p.status]),
    [
      [100, TransferStatus.Ok],
      [0, TransferStatus.IoError],
      [37, TransferStatus.Ok],
    ],
  );
  assert.ok(t.data.subarray(0, 100).equals(Buffer.alloc(100, 0xa1)));
  assert.ok(t.data.subarray(400, 437).equals(Buffer.alloc(37, 0xc3)));
});

// ---- what the kernel's stub needs that a usbredir-born transfer lacks ----

test('interrupt and iso transfers without an interval get the one a Linux driver would give', async () => {
  const dev = await importFrom({
    configuration: GZERO_SOURCE_SINK_CONFIG,
    alternate: 1,
    onUrb: (c, cmd) => c.retSubmit(cmd, { numberOfPackets: cmd.numberOfPackets, isoPackets: cmd.isoPackets }),
  });
  const packets = [{ offset: 0, length: 1024, actualLength: 0, status: TransferStatus.Ok }];
  await dev.submit(new Transfer({ type: 'isochronous', endpoint: SS_ISO_IN, length: 1024, isoPackets: packets }));
  await dev.submit(
    new Transfer({ type: 'isochronous', endpoint: SS_ISO_IN, length: 1024, isoPackets: packets, interval: 2 }),
  );
  await dev.submit(bulkIn());
  const conn = fake!.conns[0]!;
  // Gadget zero's iso endpoints at high speed: bInterval 4 → 1 << 3 microframes.
  assert.deepEqual(
    [0, 1, 2].map((i) => conn.urb(i).interval),
    [8, 2, 0],
  );
});

test('keyboard interrupt IN at full speed: the interval is bInterval frames', async () => {
  const kbd = createKeyboard();
  const dev = await importFrom({ descriptors: kbd.descriptors, configuration: 1, speed: 2 });
  const t = new Transfer({ type: 'interrupt', endpoint: 0x81, length: 8 });
  const done = dev.submit(t);
  await until(() => fake!.conns[0]!.urb(0) !== undefined, 'CMD_SUBMIT');
  const bInterval = parseConfiguration(kbd.descriptors.configurations[0]!).interfaces[0]!.alternates[0]!.endpoints[0]!
    .interval;
  assert.equal(fake!.conns[0]!.urb(0).interval, bInterval);
  assert.equal(dev.speed, 'full');
  await dev.close();
  await done;
});

// ---- bad input ----

async function expectDisconnect(dev: RemoteUsbipDevice, pending: Transfer[], act: () => void, why: RegExp) {
  let disconnects = 0;
  dev.on('disconnect', () => disconnects++);
  const done = pending.map((t) => dev.submit(t));
  await until(() => fake!.conns[0]!.submits.filter((s) => s.ep !== 0).length >= pending.length, 'CMD_SUBMITs');
  act();
  await Promise.all(done);
  await tick();
  for (const t of pending) assert.equal(t.status, TransferStatus.NoDevice);
  assert.equal(disconnects, 1);
  const logged = closeLines();
  assert.equal(logged.length, 1, `one line saying why, got:\n${lines.join('\n')}`);
  assert.match(logged[0]!, why);
  const after = bulkIn();
  await dev.submit(after);
  assert.equal(after.status, TransferStatus.NoDevice);
  assert.equal(dev.connected, false);
}

test('garbage in the URB phase closes the connection with the reason', async () => {
  const dev = await importFrom({});
  await expectDisconnect(
    dev,
    [bulkIn(), bulkIn()],
    () => fake!.conns[0]!.socket.write(Buffer.alloc(48, 0xee)),
    /protocol error: unknown-command/,
  );
});

test('RET_SUBMIT with actual_length beyond the request closes, without reading the claimed bytes', async () => {
  const dev = await importFrom({});
  await expectDisconnect(
    dev,
    [bulkIn(512)],
    () => {
      const c = fake!.conns[0]!;
      // Claims 1 GiB follow; only the header is sent.
      c.socket.write(retSubmitBytes(c.urb(0).seqnum, { actualLength: 0x40000000 }));
    },
    /protocol error: (bad-length|transfer-too-long)/,
  );
});

test('RET_SUBMIT with actual_length a little over the request closes (bad-length)', async () => {
  const dev = await importFrom({});
  await expectDisconnect(
    dev,
    [bulkIn(8)],
    () => fake!.conns[0]!.retSubmit(fake!.conns[0]!.urb(0), { actualLength: 9, data: Buffer.alloc(9) }),
    /bad-length.*actual_length 9 > requested 8/,
  );
});

test('RET_SUBMIT for a seqnum never sent closes (unknown-seqnum)', async () => {
  const dev = await importFrom({});
  await expectDisconnect(
    dev,
    [bulkIn()],
    () => fake!.conns[0]!.retSubmit({ ...fake!.conns[0]!.urb(0), seqnum: 0x7777 }),
    /unknown-seqnum.*30583/,
  );
});

test('RET_UNLINK for an unlink never sent closes (unknown-seqnum)', async () => {
  const dev = await importFrom({});
  await expectDisconnect(
    dev,
    [bulkIn()],
    () => fake!.conns[0]!.retUnlink({ ...({} as CmdUnlink), seqnum: 0x4242 }, 0),
    /RET_UNLINK for unknown seqnum/,
  );
});

test('iso reply with more packets than asked closes (bad-packet-count), nothing allocated for them', async () => {
  const dev = await importFrom({
    onUrb: (c, cmd) => {
      c.socket.write(retSubmitBytes(cmd.seqnum, { numberOfPackets: 100000 }));
    },
  });
  let disconnects = 0;
  dev.on('disconnect', () => disconnects++);
  const packets = [{ offset: 0, length: 64, actualLength: 0, status: TransferStatus.Ok }];
  const t = new Transfer({ type: 'isochronous', endpoint: SS_ISO_IN, length: 64, isoPackets: packets });
  await dev.submit(t);
  assert.equal(t.status, TransferStatus.NoDevice);
  await tick();
  assert.equal(disconnects, 1);
  assert.match(closeLines()[0]!, /bad-packet-count.*100000/);
});

test('iso packet actual_length over its requested length closes', async () => {
  const dev = await importFrom({
    onUrb: (c, cmd) =>
      c.retSubmit(cmd, {
        actualLength: 80,
        numberOfPackets: 1,
        data: Buffer.alloc(80),
        isoPackets: [{ offset: 0, length: 100, actualLength: 80, status: 0 }],
      }),
  });
  const packets = [{ offset: 0, length: 64, actualLength: 0, status: TransferStatus.Ok }];
  const t = new Transfer({ type: 'isochronous', endpoint: SS_ISO_IN, length: 100, isoPackets: packets });
  await dev.submit(t);
  assert.equal(t.status, TransferStatus.NoDevice);
  await tick();
  assert.match(closeLines()[0]!, /bad-iso-descriptor.*ISO packet 0 actual_length 80 > requested 64/);
});

test('server closing inside a packet: transfers end NoDevice, the log says truncated', async () => {
  const dev = await importFrom({});
  await expectDisconnect(
    dev,
    [bulkIn(64)],
    () => {
      const c = fake!.conns[0]!;
      const pdu = retSubmitBytes(c.urb(0).seqnum, { actualLength: 64, data: Buffer.alloc(64) });
      c.socket.end(pdu.subarray(0, 60));
    },
    /server closed the connection: protocol error: truncated/,
  );
});

test('a server that never answers a URB: pending is legitimate, close() finishes it with NoDevice', async () => {
  const dev = await importFrom({});
  const t = bulkIn();
  const done = dev.submit(t);
  await until(() => fake!.conns[0]!.urb(0) !== undefined, 'CMD_SUBMIT');
  await tick(100);
  assert.equal(dev.inFlight, 1);
  let disconnects = 0;
  dev.on('disconnect', () => disconnects++);
  await dev.close();
  await done;
  assert.equal(t.status, TransferStatus.NoDevice);
  assert.equal(disconnects, 1);
  assert.match(closeLines()[0]!, /disconnected: closed/);
  await dev.close();
  assert.equal(disconnects, 1);
});

test('in-flight cap: submits beyond the count or byte cap fail at once; nothing queues without bound', async () => {
  const dev = await importFrom({});
  const parked = Array.from({ length: MAX_TRANSFERS_IN_FLIGHT }, () => bulkIn(16));
  const done = parked.map((t) => dev.submit(t));
  const over = bulkIn(16);
  await dev.submit(over);
  assert.equal(over.status, TransferStatus.IoError);
  assert.equal(dev.inFlight, MAX_TRANSFERS_IN_FLIGHT);
  await dev.close();
  await Promise.all(done);
  assert.ok(parked.every((t) => t.status === TransferStatus.NoDevice));

  const dev2 = await RemoteUsbipDevice.import(fake!.address, '1-2', { timeoutMs: 2000 });
  opened.push(dev2);
  const big = [bulkIn(MAX_BYTES_IN_FLIGHT / 2), bulkIn(MAX_BYTES_IN_FLIGHT / 2)];
  const bigDone = big.map((t) => dev2.submit(t));
  const more = bulkIn(1);
  await dev2.submit(more);
  assert.equal(more.status, TransferStatus.IoError);
  await dev2.close();
  await Promise.all(bigDone);
});

// ---- bad input during the import ----

async function importFails(opts: FakeOptions, why: RegExp, timeoutMs = 2000): Promise<void> {
  fake = await FakeServer.start(opts);
  await assert.rejects(RemoteUsbipDevice.import(fake.address, '1-2', { timeoutMs }), (err: Error) => {
    assert.equal(err.name, 'UsbipImportError');
    assert.match(err.message, why);
    return true;
  });
  await until(() => fake!.conns.every((c) => c.closed), 'the connection to close');
  assert.equal(closeLines().length, 0, 'the rejection carries the reason; nothing else is logged');
}

test('import reply that never comes: rejected after the timeout, connection closed', async () => {
  await importFails({ importReply: 'silent' }, /1-2 from 127\.0\.0\.1:\d+: no import reply within 200 ms/, 200);
});

test('import refused: busy / no such device', async () => {
  await importFails({ importReply: OpStatus.DevBusy }, /refused: device busy/);
  await fake!.close();
  await importFails({ importReply: OpStatus.NoDev }, /refused: no such device/);
});

test('import reply with a bad version, or garbage, is rejected with the reason', async () => {
  const bad = encodeOpCommon(OP_REP_IMPORT, 0);
  bad.writeUInt16BE(0x0106, 0);
  await importFails({ importReply: bad }, /protocol error: bad-version/);
  await fake!.close();
  await importFails({ importReply: Buffer.alloc(8, 0x41) }, /protocol error: bad-version/);
});

test('descriptors that lie about their length are rejected at import', async () => {
  const config = Buffer.from(GZ_DESCRIPTORS.configurations[0]!);
  config.writeUInt16LE(config.length + 100, 2);
  await importFails(
    { descriptors: { device: GZ_DESCRIPTORS.device, configurations: [config, GZ_DESCRIPTORS.configurations[1]!] } },
    /configuration 0: got \d+ of \d+ bytes/,
  );
});

test('descriptors that never come: rejected after the timeout', async () => {
  await importFails({ silentEp0: true }, /no descriptors within 300 ms/, 300);
});

// ---- fuzz ----

/** A correct reply to `cmd`, with a few bytes changed at random and sometimes junk after it. */
function mutatedReply(cmd: CmdSubmit, rnd: () => number): Buffer {
  const iso = cmd.isoPackets;
  const good = iso
    ? retSubmitBytes(cmd.seqnum, {
        actualLength: iso.length * 8,
        numberOfPackets: iso.length,
        data: Buffer.alloc(iso.length * 8, 0x11),
        isoPackets: iso.map((p) => ({ ...p, actualLength: 8 })),
      })
    : retSubmitBytes(cmd.seqnum, {
        actualLength: cmd.direction === 1 ? cmd.transferBufferLength : Math.min(cmd.transferBufferLength, 16),
        data: cmd.direction === 1 ? Buffer.alloc(cmd.transferBufferLength, 0x22) : undefined,
      });
  const flips = Math.floor(rnd() * 4);
  for (let k = 0; k < flips; k++) good[Math.floor(rnd() * good.length)] = Math.floor(rnd() * 256);
  if (rnd() < 0.3) return Buffer.concat([good, Buffer.from(Array.from({ length: 60 }, () => Math.floor(rnd() * 256)))]);
  return good;
}

test('fuzz: mutated replies never throw; every transfer settles once; at most one disconnect, logged once', async () => {
  for (let seed = 1; seed <= 40; seed++) {
    const rnd = prng(seed);
    const dev = await importFrom({ onUrb: (c, cmd) => c.socket.write(mutatedReply(cmd, rnd)) });
    let disconnects = 0;
    dev.on('disconnect', () => disconnects++);
    const transfers = [
      bulkIn(64),
      new Transfer({
        type: 'isochronous',
        endpoint: SS_ISO_IN,
        length: 3 * 64,
        isoPackets: [0, 1, 2].map((i) => ({ offset: i * 64, length: 64, actualLength: 0, status: TransferStatus.Ok })),
      }),
      new Transfer({ type: 'bulk', endpoint: 0x01, data: Buffer.alloc(32, 0x33) }),
    ];
    const settled = transfers.map(() => 0);
    const done = transfers.map((t, i) =>
      dev.submit(t).then(() => {
        settled[i]!++;
      }),
    );
    await tick(20);
    await dev.close();
    await Promise.all(done);
    assert.deepEqual(settled, [1, 1, 1], `seed ${seed}`);
    assert.equal(dev.inFlight, 0);
    assert.ok(disconnects <= 1, `seed ${seed}: ${disconnects} disconnects`);
    assert.ok(closeLines().length <= 1, `seed ${seed}: ${closeLines().join('\n')}`);
    opened.length = 0;
    lines.length = 0;
    await fake!.close();
    fake = undefined;
  }
});

import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { test } from 'node:test';
import { ACM_DATA_IN, ACM_DATA_OUT, ACM_NOTIFY, HOST_TO_GUEST_BOUND } from '../../src/devices/serial/acm-function.js';
import type { HostEnd, HostEndEvents } from '../../src/devices/serial/host-end.js';
import { createSerialDevice, type SerialDevice } from '../../src/devices/serial/index.js';
import { parseConfiguration, parseDeviceDescriptor } from '../../src/usb/descriptors.js';
import type { SetupPacket } from '../../src/usb/setup.js';
import { TransferStatus } from '../../src/usb/status.js';
import { Transfer } from '../../src/usb/transfer.js';
import { setLogSink } from '../../src/util/log.js';
import { bulkIn, bulkOut, control, getDescriptor, setConfiguration } from '../support/drive.js';

const logLines: string[] = [];
setLogSink((l) => logLines.push(l));

/** A host end under the test's control: records writes, says "full" on demand. */
class FakeEnd extends EventEmitter<HostEndEvents> implements HostEnd {
  readonly description = 'fake';
  connected = false;
  full = false;
  paused = false;
  written: Buffer[] = [];
  async open(): Promise<void> {}
  write(d: Buffer): boolean {
    if (!this.connected) return true;
    this.written.push(d);
    return !this.full;
  }
  pause(): void {
    this.paused = true;
  }
  resume(): void {
    this.paused = false;
  }
  async close(): Promise<void> {}
  plug(): void {
    this.connected = true;
    this.emit('connect', 'peer');
  }
  unplug(): void {
    this.connected = false;
    this.emit('disconnect');
  }
}

async function configured(): Promise<{ dev: SerialDevice; end: FakeEnd }> {
  const end = new FakeEnd();
  const dev = await createSerialDevice(end, { index: 2 });
  assert.equal((await setConfiguration(dev, 1)).status, TransferStatus.Ok);
  return { dev, end };
}

const tick = () => new Promise((r) => setImmediate(r));
const cls = (bRequest: number, wValue: number, wLength: number, wIndex = 0, dirIn = false): SetupPacket => ({
  bmRequestType: dirIn ? 0xa1 : 0x21,
  bRequest,
  wValue,
  wIndex,
  wLength,
});
const coding = (baud: number, stop: number, parity: number, bits: number) => {
  const b = Buffer.alloc(7);
  b.writeUInt32LE(baud, 0);
  b[4] = stop;
  b[5] = parity;
  b[6] = bits;
  return b;
};
const setCoding = (dev: SerialDevice, data: Buffer, over: Partial<SetupPacket> = {}) =>
  control(dev, { ...cls(0x20, 0, data.length), ...over }, data);
const getCoding = (dev: SerialDevice, over: Partial<SetupPacket> = {}) =>
  control(dev, { ...cls(0x21, 0, 7, 0, true), ...over });
const status = (dev: SerialDevice) => dev.actions.status!({}) as Record<string, unknown>;

test('descriptors: composite-style device with an IAD, ACM comm interface + data interface', async () => {
  const { dev } = await configured();
  const d = parseDeviceDescriptor((await getDescriptor(dev, 1, 0, 18)).data);
  assert.deepEqual([d.deviceClass, d.deviceSubClass, d.deviceProtocol], [0xef, 0x02, 0x01]);
  assert.equal(d.vendorId, 0x1209);
  const raw = (await getDescriptor(dev, 2, 0, 512)).data;
  const iad = raw.indexOf(Buffer.from([8, 0x0b, 0, 2, 2, 2, 1]));
  assert.ok(iad > 0, 'IAD for interfaces 0-1, class 02/02/01');
  const config = parseConfiguration(raw);
  const [comm, data] = config.interfaces.map((i) => i.alternates[0]!);
  assert.deepEqual([comm!.interfaceClass, comm!.interfaceSubClass, comm!.interfaceProtocol], [2, 2, 1]);
  assert.deepEqual(comm!.extra, Buffer.from([5, 0x24, 0, 0x10, 1, 5, 0x24, 1, 0, 1, 4, 0x24, 2, 6, 5, 0x24, 6, 0, 1]));
  assert.deepEqual(
    comm!.endpoints.map((e) => [e.address, e.type, e.maxPacketSize]),
    [[ACM_NOTIFY, 'interrupt', 16]],
  );
  assert.equal(data!.interfaceClass, 0x0a);
  assert.deepEqual(
    data!.endpoints.map((e) => [e.address, e.type, e.maxPacketSize]),
    [
      [ACM_DATA_IN, 'bulk', 512],
      [ACM_DATA_OUT, 'bulk', 512],
    ],
  );
});

test('line coding: set, get back, logged as "serial 1-3: line coding 115200 8N1", shown by the status action', async () => {
  const { dev } = await configured();
  assert.deepEqual((await getCoding(dev)).data, coding(9600, 0, 0, 8), 'power-on default 9600 8N1');
  logLines.length = 0;
  assert.equal((await setCoding(dev, coding(115200, 0, 0, 8))).status, TransferStatus.Ok);
  assert.ok(
    logLines.some((l) => l.includes('serial 1-3: line coding 115200 8N1')),
    logLines.join('\n'),
  );
  assert.deepEqual((await getCoding(dev)).data, coding(115200, 0, 0, 8));
  assert.equal((await setCoding(dev, coding(19200, 2, 2, 7))).status, TransferStatus.Ok);
  assert.deepEqual(status(dev).lineCoding, {
    baud: 19200,
    dataBits: 7,
    parity: 'even',
    stopBits: 2,
    text: '19200 7E2',
  });
});

test('bad class requests STALL and change nothing; the device keeps working', async () => {
  const { dev } = await configured();
  await setCoding(dev, coding(57600, 0, 0, 8));
  const stalls: [string, Promise<Transfer>][] = [
    ['zero baud', setCoding(dev, coding(0, 0, 0, 8))],
    ['9 data bits', setCoding(dev, coding(9600, 0, 0, 9))],
    ['stop bits 3', setCoding(dev, coding(9600, 3, 0, 8))],
    ['parity 5', setCoding(dev, coding(9600, 0, 5, 8))],
    ['wLength 6', setCoding(dev, coding(9600, 0, 0, 8).subarray(0, 6))],
    ['wLength 8', setCoding(dev, Buffer.concat([coding(9600, 0, 0, 8), Buffer.alloc(1)]))],
    ['wIndex 1 (data interface)', setCoding(dev, coding(9600, 0, 0, 8), { wIndex: 1 })],
    ['wIndex 0x100', setCoding(dev, coding(9600, 0, 0, 8), { wIndex: 0x100 })],
    ['wValue 1', setCoding(dev, coding(9600, 0, 0, 8), { wValue: 1 })],
    ['GET_LINE_CODING wLength 6', getCoding(dev, { wLength: 6 })],
    ['GET_LINE_CODING as OUT', control(dev, cls(0x21, 0, 0))],
    ['control lines bit 2', control(dev, cls(0x22, 0x04, 0))],
    ['control lines with data', control(dev, cls(0x22, 1, 2), Buffer.alloc(2))],
    ['SEND_BREAK with data', control(dev, cls(0x23, 10, 1), Buffer.alloc(1))],
    ['unknown request 0x24', control(dev, cls(0x24, 0, 0))],
    ['vendor type', control(dev, { ...cls(0x20, 0, 7), bmRequestType: 0x41 }, coding(9600, 0, 0, 8))],
  ];
  for (const [what, p] of stalls) assert.equal((await p).status, TransferStatus.Stall, what);
  assert.deepEqual((await getCoding(dev)).data, coding(57600, 0, 0, 8), 'line coding unchanged');
  assert.equal((await control(dev, cls(0x23, 0xffff, 0))).status, TransferStatus.Ok, 'SEND_BREAK until cleared');
  assert.equal((await control(dev, cls(0x23, 0, 0))).status, TransferStatus.Ok, 'break off');
});

test('SET_CONTROL_LINE_STATE: DTR/RTS in the status action and the log', async () => {
  const { dev, end } = await configured();
  assert.deepEqual(status(dev), {
    lineCoding: { baud: 9600, dataBits: 8, parity: 'none', stopBits: 1, text: '9600 8N1' },
    dtr: false,
    rts: false,
    connected: false,
  });
  logLines.length = 0;
  await control(dev, cls(0x22, 3, 0));
  end.plug();
  assert.deepEqual([status(dev).dtr, status(dev).rts, status(dev).connected], [true, true, true]);
  assert.ok(logLines.some((l) => l.includes('serial 1-3: DTR on, RTS on')));
  await control(dev, cls(0x22, 1, 0));
  assert.deepEqual([status(dev).dtr, status(dev).rts], [true, false]);
});

test('guest → host end: OUT transfers stop being taken while the host end is full, resume on drain', async () => {
  const { dev, end } = await configured();
  end.plug();
  end.full = true;
  const first = await bulkOut(dev, ACM_DATA_OUT, Buffer.from('one'));
  assert.equal(first.status, TransferStatus.Ok, 'the write that filled the buffer completes');
  let secondDone = false;
  let thirdDone = false;
  const second = bulkOut(dev, ACM_DATA_OUT, Buffer.from('two')).then((t) => {
    secondDone = true;
    return t;
  });
  const third = bulkOut(dev, ACM_DATA_OUT, Buffer.from('three')).then((t) => {
    thirdDone = true;
    return t;
  });
  await tick();
  await tick();
  assert.equal(secondDone || thirdDone, false, 'held in the core while the host end is full');
  assert.deepEqual(end.written.map(String), ['one']);
  end.full = false;
  end.emit('drain');
  assert.equal((await second).actualLength, 3);
  assert.equal((await third).actualLength, 5);
  assert.deepEqual(end.written.map(String), ['one', 'two', 'three'], 'in order, nothing dropped');
});

test('guest → host end: without a client the bytes are discarded and the guest never blocks', async () => {
  const { dev, end } = await configured();
  const t = await bulkOut(dev, ACM_DATA_OUT, Buffer.alloc(4096, 1));
  assert.equal(t.status, TransferStatus.Ok);
  assert.equal(t.actualLength, 4096);
  assert.equal(end.written.length, 0);
  // A client that goes while the guest is held releases it (the rest is discarded).
  end.plug();
  end.full = true;
  await bulkOut(dev, ACM_DATA_OUT, Buffer.from('x'));
  const held = bulkOut(dev, ACM_DATA_OUT, Buffer.from('y'));
  await tick();
  end.unplug();
  assert.equal((await held).status, TransferStatus.Ok);
});

test('host end → guest: waiting IN transfers complete at once, split to their length, short ends the read', async () => {
  const { dev, end } = await configured();
  end.plug();
  const a = bulkIn(dev, ACM_DATA_IN, 512);
  end.emit('data', Buffer.from('hello'));
  await a.done;
  assert.equal(a.data.toString(), 'hello');
  const big = Buffer.alloc(1200, 7);
  end.emit('data', big);
  const parts = [bulkIn(dev, ACM_DATA_IN, 512), bulkIn(dev, ACM_DATA_IN, 512), bulkIn(dev, ACM_DATA_IN, 512)];
  await Promise.all(parts.map((p) => p.done));
  assert.deepEqual(
    parts.map((p) => p.actualLength),
    [512, 512, 176],
  );
  assert.deepEqual(Buffer.concat(parts.map((p) => p.data)), big);
  let waiting = true;
  const idle = bulkIn(dev, ACM_DATA_IN, 512);
  void idle.done.then(() => {
    waiting = false;
  });
  await tick();
  assert.equal(waiting, true, 'no data: the IN transfer stays pending (NAK)');
  await dev.close();
});

test('host end → guest: the host end is paused above the bound and resumed once the guest read', async () => {
  const { dev, end } = await configured();
  end.plug();
  const chunk = Buffer.alloc(16 * 1024);
  let sent = 0;
  while (!end.paused) {
    chunk.fill(sent & 0xff);
    end.emit('data', Buffer.from(chunk));
    sent += chunk.length;
    assert.ok(sent <= HOST_TO_GUEST_BOUND + chunk.length, 'paused once above the bound');
  }
  const got: Buffer[] = [];
  let read = 0;
  while (end.paused) {
    const t = bulkIn(dev, ACM_DATA_IN, 1024);
    await t.done;
    got.push(t.data);
    read += t.actualLength;
  }
  assert.ok(read >= sent - HOST_TO_GUEST_BOUND / 2, 'resumed once at most half the bound is held');
  while (read < sent) {
    const t = bulkIn(dev, ACM_DATA_IN, 4096);
    await t.done;
    got.push(t.data);
    read += t.actualLength;
  }
  const all = Buffer.concat(got);
  assert.equal(all.length, sent);
  for (let i = 0; i < sent / chunk.length; i++) assert.equal(all[i * chunk.length], (i * chunk.length) & 0xff);
});

test('SERIAL_STATE: the notification waits for a change, DCD|DSR on connect, cleared on disconnect', async () => {
  const { dev, end } = await configured();
  const intr = () => {
    const t = new Transfer({ type: 'interrupt', endpoint: ACM_NOTIFY, length: 16 }) as Transfer & {
      done: Promise<void>;
    };
    t.done = dev.submit(t);
    return t;
  };
  const first = intr();
  let done = false;
  void first.done.then(() => {
    done = true;
  });
  await tick();
  assert.equal(done, false, 'nothing to report yet: pending');
  end.plug();
  await first.done;
  assert.deepEqual(first.data, Buffer.from([0xa1, 0x20, 0, 0, 0, 0, 2, 0, 3, 0]));
  const second = intr();
  await tick();
  end.unplug();
  await second.done;
  assert.deepEqual(second.data, Buffer.from([0xa1, 0x20, 0, 0, 0, 0, 2, 0, 0, 0]));
  // After a reconfiguration the host's view is unknown: the current state is reported again.
  end.plug();
  await setConfiguration(dev, 0);
  await setConfiguration(dev, 1);
  const third = intr();
  await third.done;
  assert.equal(third.data[8], 3);
});

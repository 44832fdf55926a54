// Gadget zero over our own USB/IP server and client on loopback (the wire path: CMD_SUBMIT /
// RET_SUBMIT, STALL as -EPIPE, CMD_UNLINK), plus one exact PDU sequence checked with a bare peer.
import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, test } from 'node:test';
import { type RemoteUsbipDevice, UsbipClient } from '../../src/client/usbip/index.js';
import {
  createGadgetZero,
  fillPattern,
  LB_BULK_IN,
  LB_BULK_OUT,
  patternMismatch,
  REQ_CONTROL_READ,
  REQ_CONTROL_WRITE,
  SS_BULK_IN,
  SS_BULK_OUT,
  SS_ISO_IN,
} from '../../src/devices/gadget-zero/index.js';
import {
  encodeCmdSubmit,
  encodeCmdUnlink,
  encodeReqImport,
  type RequestShape,
  type UsbipPacket,
  UsbipParser,
} from '../../src/protocol/usbip/index.js';
import { DeviceRegistry } from '../../src/server/registry.js';
import { UsbipServer } from '../../src/server/usbip/index.js';
import type { SetupPacket } from '../../src/usb/setup.js';
import { TransferStatus } from '../../src/usb/status.js';
import { Transfer } from '../../src/usb/transfer.js';
import type { HostPort } from '../../src/util/host-port.js';
import { setLogSink } from '../../src/util/log.js';

let server: UsbipServer;
let address: HostPort;
const client = new UsbipClient({ timeoutMs: 3000 });

before(async () => {
  setLogSink('silent');
  const registry = new DeviceRegistry();
  registry.add(createGadgetZero({ pattern: 1, name: 'gz mod63' }));
  registry.add(createGadgetZero({ name: 'gz zeros' }));
  server = new UsbipServer(registry, { host: '127.0.0.1', port: 0 });
  address = await server.listen();
});

after(async () => {
  await server.close();
  setLogSink((l) => process.stderr.write(`${l}\n`));
});

async function ctrl(dev: RemoteUsbipDevice, setup: SetupPacket, data?: Buffer): Promise<Transfer> {
  const t = new Transfer({
    type: 'control',
    endpoint: setup.bmRequestType & 0x80,
    setup,
    length: setup.wLength,
    ...(data ? { data } : {}),
  });
  await dev.submit(t);
  return t;
}

async function bulk(dev: RemoteUsbipDevice, endpoint: number, lengthOrData: number | Buffer): Promise<Transfer> {
  const t =
    typeof lengthOrData === 'number'
      ? new Transfer({ type: 'bulk', endpoint, length: lengthOrData, flags: { shortNotOk: true } })
      : new Transfer({ type: 'bulk', endpoint, data: lengthOrData });
  await dev.submit(t);
  return t;
}

const setConfig = (value: number): SetupPacket => ({
  bmRequestType: 0,
  bRequest: 9,
  wValue: value,
  wIndex: 0,
  wLength: 0,
});

test('USB/IP: source/sink mod63 pattern both ways, vendor 0x5b/0x5c, halt on a bad byte and clear', async () => {
  const dev = await client.importDevice(address, '1-1');
  try {
    assert.deepEqual(
      [dev.descriptors.device.readUInt16LE(8), dev.descriptors.device.readUInt16LE(10)],
      [0x0525, 0xa4a0],
    );
    assert.equal((await ctrl(dev, setConfig(3))).status, TransferStatus.Ok);
    const inflight = await Promise.all([1, 512, 4096, 65536, 1 << 20].map((n) => bulk(dev, SS_BULK_IN, n)));
    for (const t of inflight) {
      assert.equal(t.status, TransferStatus.Ok);
      assert.equal(patternMismatch(t.data.subarray(0, t.actualLength), 1, 512), -1);
    }
    assert.equal(inflight.at(-1)!.actualLength, 1 << 20);
    const out = await bulk(dev, SS_BULK_OUT, fillPattern(Buffer.alloc(65536), 1, 512));
    assert.deepEqual([out.status, out.actualLength], [TransferStatus.Ok, 65536]);

    const payload = Buffer.from(Array.from({ length: 300 }, (_, i) => (i * 7) & 0xff));
    const w = { bmRequestType: 0x40, bRequest: REQ_CONTROL_WRITE, wValue: 0, wIndex: 0, wLength: 300 };
    assert.equal((await ctrl(dev, w, payload)).status, TransferStatus.Ok);
    const r = await ctrl(dev, { ...w, bmRequestType: 0xc0, bRequest: REQ_CONTROL_READ });
    assert.deepEqual(r.data.subarray(0, r.actualLength), payload);

    const bad = fillPattern(Buffer.alloc(2048), 1, 512);
    bad[10] = 0xee;
    assert.equal(
      (await bulk(dev, SS_BULK_OUT, bad)).status,
      TransferStatus.Ok,
      'the request with the bad byte is received',
    );
    assert.equal(
      (await bulk(dev, SS_BULK_OUT, Buffer.alloc(512))).status,
      TransferStatus.Stall,
      'then the endpoint halts',
    );
    const status = await ctrl(dev, { bmRequestType: 0x82, bRequest: 0, wValue: 0, wIndex: SS_BULK_OUT, wLength: 2 });
    assert.equal(status.data[0], 1);
    await ctrl(dev, { bmRequestType: 0x02, bRequest: 1, wValue: 0, wIndex: SS_BULK_OUT, wLength: 0 });
    assert.equal((await bulk(dev, SS_BULK_OUT, fillPattern(Buffer.alloc(700), 1, 512))).status, TransferStatus.Ok);
  } finally {
    await dev.close();
  }
});

test('USB/IP: iso IN in alt 1 and the loopback configuration', async () => {
  const dev = await client.importDevice(address, '1-2');
  try {
    await ctrl(dev, setConfig(3));
    assert.equal((await ctrl(dev, { bmRequestType: 1, bRequest: 11, wValue: 1, wIndex: 0, wLength: 0 })).status, 'ok');
    const iso = new Transfer({
      type: 'isochronous',
      endpoint: SS_ISO_IN,
      length: 4096,
      isoPackets: [0, 1, 2, 3].map((i) => ({
        offset: i * 1024,
        length: 1024,
        actualLength: 0,
        status: TransferStatus.Ok,
      })),
    });
    await dev.submit(iso);
    assert.equal(iso.status, TransferStatus.Ok);
    assert.deepEqual(
      iso.isoPackets!.map((p) => p.actualLength),
      [1024, 1024, 1024, 1024],
    );
    assert.equal(iso.actualLength, 4096);

    await ctrl(dev, setConfig(2));
    const data = Buffer.from(Array.from({ length: 10000 }, (_, i) => i % 251));
    const o = await bulk(dev, LB_BULK_OUT, data);
    assert.equal(o.status, TransferStatus.Ok);
    const back: Buffer[] = [];
    while (Buffer.concat(back).length < data.length) {
      const t = new Transfer({ type: 'bulk', endpoint: LB_BULK_IN, length: 4096 });
      await dev.submit(t);
      assert.equal(t.status, TransferStatus.Ok);
      back.push(Buffer.from(t.data.subarray(0, t.actualLength)));
    }
    assert.deepEqual(Buffer.concat(back), data);
  } finally {
    await dev.close();
  }
});

/** A bare USB/IP peer: writes PDUs exactly as given and collects the replies. */
async function rawImport(busid: string) {
  const socket = net.connect(address.port, address.host);
  await new Promise((r) => socket.once('connect', r));
  const shapes = new Map<number, RequestShape>();
  const packets: UsbipPacket[] = [];
  const parser: UsbipParser = new UsbipParser({ role: 'client', lookupRequest: (s) => shapes.get(s) }, (p) => {
    packets.push(p);
    if (p.kind === 'op-rep-import') parser.startUrbPhase();
  });
  socket.on('data', (c: Buffer) => parser.push(c));
  const until = async (n: number) => {
    for (let i = 0; i < 100 && packets.length < n; i++) await new Promise((r) => setTimeout(r, 10));
    return packets;
  };
  socket.write(Buffer.concat(encodeReqImport(busid)));
  await until(1);
  packets.length = 0;
  return { socket, shapes, packets, until };
}

test('USB/IP: a CMD_UNLINK that arrives before the CMD_SUBMIT it names cancels that URB (usbtest 24 over vhci-hcd)', async () => {
  const peer = await rawImport('1-2');
  try {
    const base = (seqnum: number, ep: number) => ({ seqnum, devid: 0x10002, direction: 0, ep });
    const submit = (seqnum: number, ep: number, data: Buffer, setup?: SetupPacket) => {
      peer.shapes.set(seqnum, { in: false, length: data.length, isoPackets: 0 });
      return encodeCmdSubmit({
        ...base(seqnum, ep),
        transferFlags: 0,
        transferBufferLength: data.length,
        startFrame: 0,
        numberOfPackets: 0,
        interval: 0,
        data,
        ...(setup ? { setup } : {}),
      });
    };
    peer.socket.write(Buffer.concat(submit(1, 0, Buffer.alloc(0), setConfig(3))));
    await peer.until(1);
    peer.packets.length = 0;
    // vhci-hcd's order when usbtest unlinks URB 4 while its submit is still queued.
    const pdus = [
      submit(2, 1, Buffer.alloc(2048)),
      encodeCmdUnlink({ ...base(4, 1), unlinkSeqnum: 3 }),
      submit(3, 1, Buffer.alloc(2048)),
    ];
    peer.socket.write(Buffer.concat(pdus.flat()));
    const got = await peer.until(2);
    await new Promise((r) => setTimeout(r, 50));
    const seen = got
      .map((p) => `${p.kind} ${(p as { seqnum: number }).seqnum} ${'status' in p ? p.status : ''}`)
      .sort();
    assert.deepEqual(
      seen,
      ['ret-submit 2 0', 'ret-unlink 4 -104'],
      'URB 3 unlinked before it ran: no RET_SUBMIT for it',
    );
  } finally {
    peer.socket.destroy();
  }
});

import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  Errno,
  encodeCmdSubmit,
  encodeCmdUnlink,
  encodeRepDevlist,
  encodeRepImport,
  encodeReqDevlist,
  encodeReqImport,
  encodeRetSubmit,
  encodeRetUnlink,
  errnoToStatus,
  OP_REP_IMPORT,
  type RequestShape,
  statusToErrno,
  type UsbipDevlistEntry,
  type UsbipPacket,
  UsbipParser,
} from '../../src/protocol/usbip/index.js';
import { TransferStatus } from '../../src/usb/status.js';

const device: UsbipDevlistEntry = {
  path: '/sys/devices/usbwire/1-1',
  busid: '1-1',
  busnum: 1,
  devnum: 1,
  speed: 3,
  idVendor: 0x1d6b,
  idProduct: 0x0104,
  bcdDevice: 0x0100,
  bDeviceClass: 0,
  bDeviceSubClass: 0,
  bDeviceProtocol: 0,
  bConfigurationValue: 1,
  bNumConfigurations: 1,
  bNumInterfaces: 2,
  interfaces: [
    { interfaceClass: 8, interfaceSubClass: 6, interfaceProtocol: 0x50 },
    { interfaceClass: 3, interfaceSubClass: 1, interfaceProtocol: 1 },
  ],
};

const cat = (pdu: readonly Buffer[]) => Buffer.concat(pdu);

function parseAll(role: 'server' | 'client', bytes: Buffer, shapes?: Map<number, RequestShape>): UsbipPacket[] {
  const out: UsbipPacket[] = [];
  const parser: UsbipParser = new UsbipParser({ role, lookupRequest: (s) => shapes?.get(s) }, (p) => {
    out.push(p);
    if (p.kind.startsWith('op-')) parser.startUrbPhase();
  });
  parser.push(bytes);
  parser.end();
  return out;
}

test('op_common layout: version 0x0111, code, status big-endian', () => {
  assert.deepEqual([...encodeReqDevlist()[0]], [0x01, 0x11, 0x80, 0x05, 0, 0, 0, 0]);
  const rep = encodeRepImport(2);
  assert.equal(rep.length, 1);
  assert.deepEqual([...rep[0]], [0x01, 0x11, 0x00, 0x03, 0, 0, 0, 2]);
});

test('OP_REQ_IMPORT is 40 bytes with a NUL-padded busid', () => {
  const b = cat(encodeReqImport('1-12'));
  assert.equal(b.length, 40);
  assert.equal(b.subarray(8, 12).toString(), '1-12');
  assert.ok(b.subarray(12).every((x) => x === 0));
  assert.deepEqual(parseAll('server', b), [{ kind: 'op-req-import', busid: '1-12' }]);
  assert.throws(() => encodeReqImport('x'.repeat(32)), RangeError);
});

test('usbip_usb_device field offsets match the kernel layout', () => {
  const b = cat(encodeRepImport(0, device));
  assert.equal(b.length, 8 + 312);
  const d = b.subarray(8);
  assert.equal(d.subarray(0, 24).toString(), '/sys/devices/usbwire/1-1');
  assert.equal(d.subarray(0x100, 0x103).toString(), '1-1');
  assert.equal(d.readUInt32BE(0x120), 1);
  assert.equal(d.readUInt32BE(0x124), 1);
  assert.equal(d.readUInt32BE(0x128), 3);
  assert.equal(d.readUInt16BE(0x12c), 0x1d6b);
  assert.equal(d.readUInt16BE(0x12e), 0x0104);
  assert.equal(d.readUInt16BE(0x130), 0x0100);
  assert.deepEqual([...d.subarray(0x132, 0x138)], [0, 0, 0, 1, 1, 2]);
  const { interfaces: _, ...info } = device;
  assert.deepEqual(parseAll('client', b), [{ kind: 'op-rep-import', status: 0, device: info }]);
  assert.equal(b.readUInt16BE(2), OP_REP_IMPORT);
});

test('DEVLIST reply round trip: 12 + Σ(312 + 4·nif) bytes', () => {
  const second = { ...device, busid: '1-2', devnum: 2, bNumInterfaces: 0, interfaces: [] };
  const b = cat(encodeRepDevlist([device, second]));
  assert.equal(b.length, 12 + 312 + 8 + 312);
  assert.deepEqual(parseAll('client', b), [{ kind: 'op-rep-devlist', status: 0, devices: [device, second] }]);
  assert.deepEqual(parseAll('client', cat(encodeRepDevlist([]))), [{ kind: 'op-rep-devlist', status: 0, devices: [] }]);
  assert.throws(() => encodeRepDevlist([{ ...device, bNumInterfaces: 1 }]), RangeError);
});

test('the protocol doc example CMD_SUBMIT / RET_SUBMIT (HID interrupt IN) encodes byte for byte', () => {
  const cmd = cat(
    encodeCmdSubmit({
      seqnum: 0xd05,
      devid: 0x0001000f,
      direction: 1,
      ep: 1,
      transferFlags: 0x200,
      transferBufferLength: 64,
      startFrame: -1,
      numberOfPackets: 0,
      interval: 4,
    }),
  );
  const words =
    '00000001 00000d05 0001000f 00000001 00000001 00000200 00000040 ffffffff 00000000 00000004 00000000 00000000';
  assert.equal(cmd.toString('hex'), words.replaceAll(' ', ''));
  const data = Buffer.alloc(64, 0xab);
  const ret = encodeRetSubmit({
    seqnum: 0xd05,
    devid: 0,
    direction: 0,
    ep: 0,
    status: 0,
    actualLength: 64,
    startFrame: -1,
    numberOfPackets: 0,
    errorCount: 0,
    data,
  });
  assert.equal(ret.length, 2, 'header and payload stay separate for writev');
  assert.equal(ret[1], data, 'payload is not copied');
  const expected =
    '00000003 00000d05 00000000 00000000 00000000 00000000 00000040 ffffffff 00000000 00000000 00000000 00000000';
  assert.equal(ret[0].toString('hex'), expected.replaceAll(' ', ''));
});

test('URB PDUs round trip through the parser', () => {
  const setup = { bmRequestType: 0x80, bRequest: 6, wValue: 0x0100, wIndex: 0, wLength: 18 };
  const isoPackets = [
    { offset: 0, length: 100, actualLength: 0, status: 0 },
    { offset: 100, length: 100, actualLength: 0, status: 0 },
  ];
  const cmds = [
    encodeCmdSubmit({
      seqnum: 1,
      devid: 0x10001,
      direction: 1,
      ep: 0,
      transferFlags: 0x200,
      transferBufferLength: 18,
      startFrame: 0,
      numberOfPackets: 0,
      interval: 0,
      setup,
    }),
    encodeCmdSubmit({
      seqnum: 2,
      devid: 0x10001,
      direction: 0,
      ep: 2,
      transferFlags: 0x40,
      transferBufferLength: 5,
      startFrame: 0,
      numberOfPackets: -1,
      interval: 0,
      data: Buffer.from('hello'),
    }),
    encodeCmdSubmit({
      seqnum: 3,
      devid: 0x10001,
      direction: 0,
      ep: 3,
      transferFlags: 2,
      transferBufferLength: 200,
      startFrame: 7,
      numberOfPackets: 2,
      interval: 1,
      data: Buffer.alloc(200, 7),
      isoPackets,
    }),
    encodeCmdUnlink({ seqnum: 4, devid: 0x10001, direction: 0, ep: 0, unlinkSeqnum: 2 }),
  ];
  const packets = parseAll('server', Buffer.concat([cat(encodeReqImport('1-1')), ...cmds.map(cat)]));
  assert.equal(packets.length, 5);
  const [, c1, c2, c3, u] = packets;
  assert.equal(c1!.kind, 'cmd-submit');
  if (c1!.kind !== 'cmd-submit' || c2!.kind !== 'cmd-submit' || c3!.kind !== 'cmd-submit') throw new Error();
  assert.deepEqual(c1.setup, setup);
  assert.equal(c1.data.length, 0);
  assert.equal(c1.isoPackets, undefined);
  assert.equal(c2.numberOfPackets, -1);
  assert.equal(c2.data.toString(), 'hello');
  assert.equal(c3.startFrame, 7);
  assert.deepEqual(c3.isoPackets, isoPackets);
  assert.equal(c3.data.length, 200);
  assert.deepEqual(u, { kind: 'cmd-unlink', seqnum: 4, devid: 0x10001, direction: 0, ep: 0, unlinkSeqnum: 2 });

  const shapes = new Map<number, RequestShape>([
    [1, { in: true, length: 18, isoPackets: 0 }],
    [2, { in: false, length: 5, isoPackets: 0 }],
    [3, { in: true, length: 200, isoPackets: 2 }],
  ]);
  const rets = [
    encodeRetSubmit({
      seqnum: 1,
      devid: 0,
      direction: 0,
      ep: 0,
      status: 0,
      actualLength: 18,
      startFrame: 0,
      numberOfPackets: 0,
      errorCount: 0,
      data: Buffer.alloc(18, 1),
    }),
    encodeRetSubmit({
      seqnum: 2,
      devid: 0,
      direction: 0,
      ep: 0,
      status: -Errno.EPIPE,
      actualLength: 5,
      startFrame: 0,
      numberOfPackets: -1,
      errorCount: 0,
    }),
    encodeRetSubmit({
      seqnum: 3,
      devid: 0,
      direction: 0,
      ep: 0,
      status: 0,
      actualLength: 150,
      startFrame: 0,
      numberOfPackets: 2,
      errorCount: 1,
      data: [Buffer.alloc(100, 1), Buffer.alloc(50, 2)],
      isoPackets: [
        { offset: 0, length: 100, actualLength: 100, status: 0 },
        { offset: 100, length: 100, actualLength: 50, status: -Errno.EPROTO },
      ],
    }),
    encodeRetUnlink({ seqnum: 9, devid: 0, direction: 0, ep: 0, status: -Errno.ECONNRESET }),
  ];
  const replies = parseAll('client', Buffer.concat([cat(encodeRepImport(0, device)), ...rets.map(cat)]), shapes);
  assert.equal(replies.length, 5);
  const [, r1, r2, r3, ru] = replies;
  if (r1!.kind !== 'ret-submit' || r2!.kind !== 'ret-submit' || r3!.kind !== 'ret-submit') throw new Error();
  assert.equal(r1.data.length, 18);
  assert.equal(r2.status, -32);
  assert.equal(r2.actualLength, 5);
  assert.equal(r2.data.length, 0, 'OUT replies carry no data');
  assert.equal(r3.data.length, 150);
  assert.equal(r3.isoPackets![1]!.status, -71);
  assert.deepEqual(ru, { kind: 'ret-unlink', seqnum: 9, devid: 0, direction: 0, ep: 0, status: -104 });
});

test('TransferStatus ↔ errno (§2.5)', () => {
  const table: [TransferStatus, number][] = [
    [TransferStatus.Ok, 0],
    [TransferStatus.Stall, -32],
    [TransferStatus.Cancelled, -104],
    [TransferStatus.NoDevice, -19],
    [TransferStatus.Babble, -75],
    [TransferStatus.Timeout, -110],
    [TransferStatus.Invalid, -22],
    [TransferStatus.ShortPacket, -121],
    [TransferStatus.IoError, -71],
  ];
  for (const [status, errno] of table) {
    assert.equal(statusToErrno(status), errno);
    assert.equal(errnoToStatus(errno), status);
  }
  assert.equal(errnoToStatus(-108), TransferStatus.NoDevice);
  assert.equal(errnoToStatus(-2), TransferStatus.Cancelled);
  assert.equal(errnoToStatus(-84), TransferStatus.IoError);
  assert.equal(errnoToStatus(-9999), TransferStatus.IoError);
});

import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  DEFAULT_MAX_TRANSFER_LENGTH,
  encodeCmdSubmit,
  encodeCmdUnlink,
  encodeRepDevlist,
  encodeRepImport,
  encodeReqImport,
  encodeRetSubmit,
  encodeRetUnlink,
  type RequestShape,
  type UsbipDevlistEntry,
  type UsbipErrorReason,
  type UsbipPacket,
  UsbipParser,
  UsbipProtocolError,
} from '../../src/protocol/usbip/index.js';
import { prng } from '../support/prng.js';

const cat = (pdus: readonly (readonly Buffer[])[]) => Buffer.concat(pdus.flat());

const entry: UsbipDevlistEntry = {
  path: '/sys/devices/usbwire/1-1',
  busid: '1-1',
  busnum: 1,
  devnum: 1,
  speed: 2,
  idVendor: 1,
  idProduct: 2,
  bcdDevice: 3,
  bDeviceClass: 0,
  bDeviceSubClass: 0,
  bDeviceProtocol: 0,
  bConfigurationValue: 1,
  bNumConfigurations: 1,
  bNumInterfaces: 1,
  interfaces: [{ interfaceClass: 3, interfaceSubClass: 0, interfaceProtocol: 0 }],
};
const { interfaces: _ignored, ...info } = entry;

const base = { devid: 0x10001, direction: 0, ep: 0 };
const reply = { devid: 0, direction: 0, ep: 0 };
const iso3 = [
  { offset: 0, length: 10, actualLength: 0, status: 0 },
  { offset: 10, length: 10, actualLength: 0, status: 0 },
  { offset: 20, length: 10, actualLength: 0, status: 0 },
];

/** Client → server: import, then a mix of every CMD shape. */
const serverStream = cat([
  encodeReqImport('1-1'),
  encodeCmdSubmit({
    ...base,
    seqnum: 1,
    direction: 1,
    transferFlags: 0x200,
    transferBufferLength: 18,
    startFrame: 0,
    numberOfPackets: 0,
    interval: 0,
    setup: { bmRequestType: 0x80, bRequest: 6, wValue: 0x100, wIndex: 0, wLength: 18 },
  }),
  encodeCmdSubmit({
    ...base,
    seqnum: 2,
    ep: 2,
    transferFlags: 0,
    transferBufferLength: 300,
    startFrame: 0,
    numberOfPackets: 0,
    interval: 0,
    data: Buffer.alloc(300, 0x5a),
  }),
  encodeCmdSubmit({
    ...base,
    seqnum: 3,
    ep: 3,
    transferFlags: 2,
    transferBufferLength: 30,
    startFrame: 0,
    numberOfPackets: 3,
    interval: 1,
    data: Buffer.alloc(30, 3),
    isoPackets: iso3,
  }),
  encodeCmdSubmit({
    ...base,
    seqnum: 4,
    direction: 1,
    ep: 3,
    transferFlags: 0x202,
    transferBufferLength: 30,
    startFrame: 0,
    numberOfPackets: 3,
    interval: 1,
    isoPackets: iso3,
  }),
  encodeCmdUnlink({ ...base, seqnum: 5, unlinkSeqnum: 2 }),
  encodeCmdSubmit({
    ...base,
    seqnum: 6,
    direction: 0,
    ep: 0,
    transferFlags: 0,
    transferBufferLength: 0,
    startFrame: 0,
    numberOfPackets: -1,
    interval: 0,
  }),
]);

const shapes = new Map<number, RequestShape>([
  [1, { in: true, length: 18, isoPackets: 0 }],
  [2, { in: false, length: 300, isoPackets: 0 }],
  [4, { in: true, length: 30, isoPackets: 3 }],
  [6, { in: true, length: 0, isoPackets: 0 }],
]);

/** Server → client: import reply, then every RET shape. */
const clientStream = cat([
  encodeRepImport(0, info),
  encodeRetSubmit({
    ...reply,
    seqnum: 1,
    status: 0,
    actualLength: 18,
    startFrame: 0,
    numberOfPackets: 0,
    errorCount: 0,
    data: Buffer.alloc(18, 1),
  }),
  encodeRetUnlink({ ...reply, seqnum: 5, status: -104 }),
  encodeRetSubmit({
    ...reply,
    seqnum: 2,
    status: 0,
    actualLength: 300,
    startFrame: 0,
    numberOfPackets: 0,
    errorCount: 0,
  }),
  encodeRetSubmit({
    ...reply,
    seqnum: 4,
    status: 0,
    actualLength: 15,
    startFrame: 0,
    numberOfPackets: 3,
    errorCount: 0,
    data: [Buffer.alloc(5, 1), Buffer.alloc(10, 2)],
    isoPackets: [
      { offset: 0, length: 10, actualLength: 5, status: 0 },
      { offset: 10, length: 10, actualLength: 0, status: 0 },
      { offset: 20, length: 10, actualLength: 10, status: 0 },
    ],
  }),
  encodeRetSubmit({
    ...reply,
    seqnum: 6,
    status: -32,
    actualLength: 0,
    startFrame: 0,
    numberOfPackets: -1,
    errorCount: 0,
  }),
]);

const devlistStream = cat([
  encodeRepDevlist([entry, { ...entry, busid: '1-2', bNumInterfaces: 0, interfaces: [] }, entry]),
]);

interface Scenario {
  name: string;
  role: 'server' | 'client';
  stream: Buffer;
  packets: number;
}
const scenarios: Scenario[] = [
  { name: 'server requests', role: 'server', stream: serverStream, packets: 7 },
  { name: 'client replies', role: 'client', stream: clientStream, packets: 6 },
  { name: 'devlist reply', role: 'client', stream: devlistStream, packets: 1 },
];

function newParser(role: 'server' | 'client', out: UsbipPacket[], maxTransferLength?: number) {
  const parser: UsbipParser = new UsbipParser({ role, maxTransferLength, lookupRequest: (s) => shapes.get(s) }, (p) => {
    out.push(p);
    if (p.kind === 'op-req-import' || p.kind === 'op-rep-import') parser.startUrbPhase();
  });
  return parser;
}

function parseChunks(role: 'server' | 'client', chunks: Buffer[]): UsbipPacket[] {
  const out: UsbipPacket[] = [];
  const parser = newParser(role, out);
  for (const c of chunks) parser.push(c);
  parser.end();
  return out;
}

/** Deep-equal that ignores whether a payload is a view or a copy. */
function normalise(packets: UsbipPacket[]): unknown {
  return JSON.parse(JSON.stringify(packets));
}

for (const s of scenarios) {
  test(`parser: ${s.name} split at every byte boundary gives the same packets`, () => {
    const whole = parseChunks(s.role, [s.stream]);
    assert.equal(whole.length, s.packets);
    const expected = normalise(whole);
    for (let i = 0; i <= s.stream.length; i++) {
      const got = parseChunks(s.role, [s.stream.subarray(0, i), s.stream.subarray(i)]);
      assert.deepEqual(normalise(got), expected, `split at ${i}`);
    }
    const bytewise = [];
    for (let i = 0; i < s.stream.length; i++) bytewise.push(s.stream.subarray(i, i + 1));
    assert.deepEqual(normalise(parseChunks(s.role, bytewise)), expected, 'one byte at a time');
  });

  test(`parser: ${s.name} cut short reports 'truncated' at end of stream`, () => {
    for (let i = 1; i < s.stream.length; i++) {
      const out: UsbipPacket[] = [];
      const parser = newParser(s.role, out);
      parser.push(s.stream.subarray(0, i));
      try {
        parser.end();
      } catch (err) {
        assert.ok(err instanceof UsbipProtocolError && err.reason === 'truncated', `cut at ${i}: ${String(err)}`);
        continue;
      }
      // Only a cut exactly between packets may end cleanly.
      const again = parseChunks(s.role, [s.stream.subarray(0, i)]);
      assert.equal(again.length, out.length);
    }
  });
}

test('parser: payloads within one chunk are views, not copies', () => {
  const out = parseChunks('server', [serverStream]);
  const bulk = out.find((p) => p.kind === 'cmd-submit' && p.seqnum === 2);
  assert.ok(bulk && bulk.kind === 'cmd-submit');
  assert.equal(bulk.data.buffer, serverStream.buffer);
  // Straddling two chunks: a copy of exactly the payload.
  const at = serverStream.indexOf(Buffer.alloc(300, 0x5a)) + 150;
  const split = parseChunks('server', [serverStream.subarray(0, at), serverStream.subarray(at)]);
  const copied = split.find((p) => p.kind === 'cmd-submit' && p.seqnum === 2);
  assert.ok(copied && copied.kind === 'cmd-submit');
  assert.notEqual(copied.data.buffer, serverStream.buffer);
  assert.deepEqual(copied.data, Buffer.alloc(300, 0x5a));
});

test('parser: bytes after an op message wait until the owner switches phase', () => {
  const out: UsbipPacket[] = [];
  const parser = new UsbipParser({ role: 'server' }, (p) => out.push(p));
  parser.push(serverStream);
  assert.equal(out.length, 1);
  assert.equal(parser.phase, 'paused');
  assert.equal(parser.bufferedBytes, serverStream.length - 40);
  parser.startUrbPhase();
  assert.equal(out.length, 7);
});

function expectError(role: 'server' | 'client', bytes: Buffer, reason: UsbipErrorReason, urb = true, max?: number) {
  const parser = new UsbipParser({ role, maxTransferLength: max, lookupRequest: (s) => shapes.get(s) }, () => {});
  if (urb) parser.startUrbPhase();
  assert.throws(
    () => parser.push(bytes),
    (err: unknown) => err instanceof UsbipProtocolError && err.reason === reason,
    `expected ${reason}`,
  );
  // A failed parser stays failed.
  assert.throws(() => parser.push(Buffer.alloc(1)), UsbipProtocolError);
}

const submitHeader = (over: Partial<Parameters<typeof encodeCmdSubmit>[0]>) =>
  encodeCmdSubmit({
    ...base,
    seqnum: 1,
    transferFlags: 0,
    transferBufferLength: 0,
    startFrame: 0,
    numberOfPackets: 0,
    interval: 0,
    ...over,
  })[0];

test('parser: malformed op messages', () => {
  const badVersion = Buffer.from([0x01, 0x06, 0x80, 0x05, 0, 0, 0, 0]);
  expectError('server', badVersion, 'bad-version', false);
  expectError('server', Buffer.from([0x01, 0x11, 0x80, 0x02, 0, 0, 0, 0]), 'unknown-op', false);
  expectError('server', Buffer.from([0x01, 0x11, 0x00, 0x05, 0, 0, 0, 0]), 'unknown-op', false);
  const noNul = Buffer.concat([encodeReqImport('1-1')[0].subarray(0, 8), Buffer.alloc(32, 0x41)]);
  expectError('server', noNul, 'bad-field', false);
  const manyDevices = Buffer.from([0x01, 0x11, 0x00, 0x05, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff]);
  expectError('client', manyDevices, 'too-many-devices', false);
});

test('parser: oversized and inconsistent URB headers are rejected before any payload is read', () => {
  expectError('server', submitHeader({ transferBufferLength: 0x7fffffff }), 'transfer-too-long');
  expectError('server', submitHeader({ transferBufferLength: DEFAULT_MAX_TRANSFER_LENGTH + 1 }), 'transfer-too-long');
  expectError('server', submitHeader({ transferBufferLength: 4096 }), 'transfer-too-long', true, 1024);
  expectError('server', submitHeader({ transferBufferLength: -1 }), 'bad-length');
  expectError('server', submitHeader({ numberOfPackets: 1025 }), 'bad-packet-count');
  expectError('server', submitHeader({ numberOfPackets: -2 }), 'bad-packet-count');
  expectError('server', submitHeader({ direction: 2 }), 'bad-field');
  expectError('server', submitHeader({ ep: 16 }), 'bad-field');
  const badIso = cat([
    encodeCmdSubmit({
      ...base,
      seqnum: 1,
      direction: 1,
      ep: 1,
      transferFlags: 0,
      transferBufferLength: 20,
      startFrame: 0,
      numberOfPackets: 2,
      interval: 0,
      isoPackets: [
        { offset: 0, length: 10, actualLength: 0, status: 0 },
        { offset: 15, length: 10, actualLength: 0, status: 0 },
      ],
    }),
  ]);
  expectError('server', badIso, 'bad-iso-descriptor');
  const overlapping = cat([
    encodeCmdSubmit({
      ...base,
      seqnum: 1,
      direction: 1,
      ep: 1,
      transferFlags: 0,
      transferBufferLength: 20,
      startFrame: 0,
      numberOfPackets: 3,
      interval: 0,
      isoPackets: [0, 0, 0].map(() => ({ offset: 0, length: 10, actualLength: 0, status: 0 })),
    }),
  ]);
  expectError('server', overlapping, 'bad-iso-descriptor');
  const unknown = Buffer.alloc(48);
  unknown.writeUInt32BE(7, 0);
  expectError('server', unknown, 'unknown-command');
  expectError('server', encodeRetUnlink({ ...reply, seqnum: 1, status: 0 })[0], 'unexpected-packet');
  expectError('client', encodeCmdUnlink({ ...base, seqnum: 1, unlinkSeqnum: 1 })[0], 'unexpected-packet');
});

test('parser: RET_SUBMIT checked against the request it answers', () => {
  const ret = (over: Partial<Parameters<typeof encodeRetSubmit>[0]>) =>
    cat([
      encodeRetSubmit({
        ...reply,
        seqnum: 1,
        status: 0,
        actualLength: 0,
        startFrame: 0,
        numberOfPackets: 0,
        errorCount: 0,
        ...over,
      }),
    ]);
  expectError('client', ret({ seqnum: 99 }), 'unknown-seqnum');
  expectError('client', ret({ actualLength: 19 }), 'bad-length');
  expectError('client', ret({ seqnum: 4, numberOfPackets: 2 }), 'bad-packet-count');
  const mismatch = ret({
    seqnum: 4,
    actualLength: 12,
    numberOfPackets: 3,
    data: Buffer.alloc(12),
    isoPackets: [
      { offset: 0, length: 10, actualLength: 5, status: 0 },
      { offset: 10, length: 10, actualLength: 5, status: 0 },
      { offset: 20, length: 10, actualLength: 5, status: 0 },
    ],
  });
  expectError('client', mismatch, 'bad-iso-descriptor');
  const tooMuch = ret({
    seqnum: 4,
    actualLength: 11,
    numberOfPackets: 3,
    data: Buffer.alloc(11),
    isoPackets: [
      { offset: 0, length: 10, actualLength: 11, status: 0 },
      { offset: 10, length: 10, actualLength: 0, status: 0 },
      { offset: 20, length: 10, actualLength: 0, status: 0 },
    ],
  });
  expectError('client', tooMuch, 'bad-iso-descriptor');
});

test('parser: a header claiming a large payload allocates nothing until the bytes arrive', () => {
  const out: UsbipPacket[] = [];
  const parser = newParser('server', out);
  parser.startUrbPhase();
  const before = process.memoryUsage().arrayBuffers;
  const claimed = 30 * 1024 * 1024;
  for (let i = 0; i < 20; i++) {
    const p = newParser('server', out);
    p.startUrbPhase();
    p.push(submitHeader({ seqnum: i, ep: 1, transferBufferLength: claimed }));
    p.push(Buffer.alloc(10));
  }
  const grown = process.memoryUsage().arrayBuffers - before;
  assert.ok(grown < 4 * 1024 * 1024, `grew by ${grown} bytes`);
  assert.equal(out.length, 0);
});

function fuzzOnce(role: 'server' | 'client', bytes: Buffer, rand: () => number, urb: boolean): 'ok' | 'error' {
  const parser: UsbipParser = new UsbipParser(
    { role, maxTransferLength: 1 << 20, lookupRequest: (s) => shapes.get(s) },
    (p) => {
      if (p.kind.startsWith('op-') && rand() < 0.7) parser.startUrbPhase();
    },
  );
  if (urb) parser.startUrbPhase();
  try {
    let at = 0;
    while (at < bytes.length) {
      const n = 1 + Math.floor(rand() * 200);
      parser.push(bytes.subarray(at, at + n));
      at += n;
    }
    parser.end();
    return 'ok';
  } catch (err) {
    if (!(err instanceof UsbipProtocolError)) throw err;
    return 'error';
  }
}

test('parser: random and mutated streams only ever yield UsbipProtocolError', () => {
  const rand = prng(0x5eed);
  const valid = [
    { role: 'server' as const, stream: serverStream },
    { role: 'client' as const, stream: clientStream },
    { role: 'client' as const, stream: devlistStream },
  ];
  const before = process.memoryUsage().arrayBuffers;
  let errors = 0;
  for (let i = 0; i < 20_000; i++) {
    const pick = valid[i % valid.length]!;
    let bytes: Buffer;
    if (i % 4 === 0) {
      bytes = Buffer.alloc(Math.floor(rand() * 400));
      for (let j = 0; j < bytes.length; j++) bytes[j] = Math.floor(rand() * 256);
    } else {
      bytes = Buffer.from(pick.stream);
      const flips = 1 + Math.floor(rand() * 6);
      for (let f = 0; f < flips; f++) bytes[Math.floor(rand() * bytes.length)] = Math.floor(rand() * 256);
      if (rand() < 0.3) bytes = bytes.subarray(0, Math.floor(rand() * bytes.length));
    }
    if (fuzzOnce(pick.role, bytes, rand, i % 8 === 1) === 'error') errors++;
  }
  assert.ok(errors > 5_000, `${errors} errors`);
  const grown = process.memoryUsage().arrayBuffers - before;
  assert.ok(grown < 64 * 1024 * 1024, `grew by ${grown} bytes`);
});

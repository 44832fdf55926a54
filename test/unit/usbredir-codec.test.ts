import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  Cap,
  capsFrom,
  encodePacket,
  endpointAddress,
  endpointIndex,
  MAX_BULK_TRANSFER_SIZE,
  Negotiation,
  type Packet,
  type Role,
  statusFromRedir,
  statusToRedir,
  PacketType as T,
  UsbredirParser,
  UsbredirProtocolError,
} from '../../src/protocol/usbredir/index.js';
import { TransferStatus } from '../../src/usb/status.js';

const ALL = [0, 1, 2, 3, 4, 5, 6, 7];
const NO_STREAMS = [1, 2, 3, 4, 5, 6, 7];

/** Both sides after exchanging hellos. */
function pair(hostCaps: number[], guestCaps: number[]) {
  const host = new Negotiation('host', capsFrom(hostCaps));
  const guest = new Negotiation('guest', capsFrom(guestCaps));
  host.setPeerCaps(guest.ourCaps);
  guest.setPeerCaps(host.ourCaps);
  return { host, guest };
}

function parseAll(neg: Negotiation, chunks: Buffer[]): Packet[] {
  const out: Packet[] = [];
  const parser = new UsbredirParser(neg, (p) => out.push(p));
  for (const c of chunks) parser.push(c);
  assert.equal(parser.buffered, 0);
  return out;
}

function wire(p: Packet, neg: Negotiation): Buffer {
  return Buffer.concat(encodePacket(p, neg));
}

const d = (n: number, seed = 1) => Buffer.from(Array.from({ length: n }, (_, i) => (i * 7 + seed) & 0xff));

function epInfo(): Packet {
  return {
    type: T.EpInfo,
    id: 0n,
    endpoints: Array.from({ length: 32 }, (_, i) => ({
      type: i === 0 || i === 16 ? 0 : i % 5 === 0 ? 2 : 255,
      interval: i % 5 === 0 ? 0 : i & 0xf,
      interface: i % 3,
      maxPacketSize: i === 0 || i === 16 ? 0 : 512 + i,
      maxStreams: i === 21 ? 32 : 0,
    })),
  };
}

/** Packets a usb-host sends. */
function hostPackets(): Packet[] {
  return [
    {
      type: T.DeviceConnect,
      id: 0n,
      speed: 2,
      deviceClass: 0xef,
      deviceSubclass: 2,
      deviceProtocol: 1,
      vendorId: 0x1d6b,
      productId: 0x0104,
      deviceVersionBcd: 0x0510,
    },
    { type: T.DeviceDisconnect, id: 0n },
    {
      type: T.InterfaceInfo,
      id: 0n,
      interfaces: [
        { number: 0, interfaceClass: 8, interfaceSubclass: 6, interfaceProtocol: 0x50 },
        { number: 2, interfaceClass: 3, interfaceSubclass: 1, interfaceProtocol: 1 },
      ],
    },
    epInfo(),
    { type: T.ConfigurationStatus, id: 5n, status: 0, configuration: 1 },
    { type: T.AltSettingStatus, id: 6n, status: 4, interface: 1, alt: 255 },
    { type: T.IsoStreamStatus, id: 7n, status: 0, endpoint: 0x81 },
    { type: T.InterruptReceivingStatus, id: 8n, status: 4, endpoint: 0x83 },
    { type: T.BulkStreamsStatus, id: 9n, endpoints: 0x30004, noStreams: 16, status: 3 },
    { type: T.FilterFilter, id: 0n, filter: '0x03,-1,-1,-1,0|-1,-1,-1,-1,1' },
    { type: T.BulkReceivingStatus, id: 10n, streamId: 0, endpoint: 0x81, status: 0 },
    {
      type: T.ControlPacket,
      id: 11n,
      endpoint: 0x80,
      request: 6,
      requestType: 0x80,
      status: 0,
      value: 0x100,
      index: 0,
      length: 18,
      data: d(18),
    },
    {
      type: T.ControlPacket,
      id: 12n,
      endpoint: 0x00,
      request: 9,
      requestType: 0x00,
      status: 0,
      value: 1,
      index: 0,
      length: 0,
      data: Buffer.alloc(0),
    },
    { type: T.BulkPacket, id: 13n, endpoint: 0x81, status: 0, length: 700, streamId: 0, data: d(700) },
    { type: T.BulkPacket, id: 14n, endpoint: 0x02, status: 0, length: 65535, streamId: 3, data: Buffer.alloc(0) },
    { type: T.IsoPacket, id: 15n, endpoint: 0x81, status: 0, length: 192, data: d(192) },
    { type: T.InterruptPacket, id: 16n, endpoint: 0x83, status: 0, length: 8, data: d(8) },
    { type: T.InterruptPacket, id: 17n, endpoint: 0x04, status: 4, length: 3, data: Buffer.alloc(0) },
    { type: T.BufferedBulkPacket, id: 18n, streamId: 0, length: 512, endpoint: 0x81, status: 0, data: d(512) },
  ];
}

/** Packets a usb-guest sends. */
function guestPackets(): Packet[] {
  return [
    { type: T.Reset, id: 0n },
    { type: T.SetConfiguration, id: 1n, configuration: 2 },
    { type: T.GetConfiguration, id: 2n },
    { type: T.SetAltSetting, id: 3n, interface: 1, alt: 2 },
    { type: T.GetAltSetting, id: 4n, interface: 1 },
    { type: T.StartIsoStream, id: 5n, endpoint: 0x81, pktsPerUrb: 8, noUrbs: 4 },
    { type: T.StopIsoStream, id: 6n, endpoint: 0x81 },
    { type: T.StartInterruptReceiving, id: 7n, endpoint: 0x83 },
    { type: T.StopInterruptReceiving, id: 8n, endpoint: 0x83 },
    { type: T.AllocBulkStreams, id: 9n, endpoints: 0x30004, noStreams: 16 },
    { type: T.FreeBulkStreams, id: 10n, endpoints: 0x30004 },
    { type: T.CancelDataPacket, id: 11n },
    { type: T.FilterReject, id: 0n },
    { type: T.FilterFilter, id: 0n, filter: '0x08,0x1234,-1,-1,1' },
    { type: T.DeviceDisconnectAck, id: 0n },
    { type: T.StartBulkReceiving, id: 12n, streamId: 0, bytesPerTransfer: 4096, endpoint: 0x81, noTransfers: 5 },
    { type: T.StopBulkReceiving, id: 13n, streamId: 0, endpoint: 0x81 },
    {
      type: T.ControlPacket,
      id: 14n,
      endpoint: 0x80,
      request: 6,
      requestType: 0x80,
      status: 0,
      value: 0x200,
      index: 0,
      length: 255,
      data: Buffer.alloc(0),
    },
    {
      type: T.ControlPacket,
      id: 15n,
      endpoint: 0x00,
      request: 0x22,
      requestType: 0x21,
      status: 0,
      value: 3,
      index: 0,
      length: 7,
      data: d(7),
    },
    { type: T.BulkPacket, id: 16n, endpoint: 0x02, status: 0, length: 1000, streamId: 0, data: d(1000) },
    { type: T.BulkPacket, id: 0xfffffffen, endpoint: 0x81, status: 0, length: 512, streamId: 0, data: Buffer.alloc(0) },
    { type: T.IsoPacket, id: 17n, endpoint: 0x03, status: 0, length: 96, data: d(96) },
    { type: T.InterruptPacket, id: 18n, endpoint: 0x04, status: 0, length: 3, data: d(3) },
  ];
}

const CAP_PACKETS = new Map<number, number>([
  [T.FilterFilter, Cap.Filter],
  [T.FilterReject, Cap.Filter],
  [T.DeviceDisconnectAck, Cap.DeviceDisconnectAck],
  [T.StartBulkReceiving, Cap.BulkReceiving],
  [T.StopBulkReceiving, Cap.BulkReceiving],
  [T.BulkReceivingStatus, Cap.BulkReceiving],
  [T.BufferedBulkPacket, Cap.BulkReceiving],
]);

/** What the receiver sees: fields that the layout leaves out read as 0. */
function asReceived(p: Packet, receiver: Negotiation): Packet {
  const layout = receiver.layout;
  if (p.type === T.DeviceConnect && layout.deviceConnectSize === 8) return { ...p, deviceVersionBcd: 0 };
  if (p.type === T.EpInfo) {
    return {
      ...p,
      endpoints: p.endpoints.map((e) => ({
        ...e,
        maxPacketSize: layout.epInfoSize >= 160 ? e.maxPacketSize : 0,
        maxStreams: layout.epInfoSize === 288 ? e.maxStreams : 0,
      })),
    };
  }
  return p;
}

const COMBOS: { name: string; host: number[]; guest: number[] }[] = [
  { name: 'all caps both sides', host: ALL, guest: ALL },
  { name: 'usbwire host vs QEMU guest', host: NO_STREAMS, guest: ALL },
  { name: 'no caps at all', host: [], guest: [] },
  { name: 'host 64-bit ids, guest not', host: ALL, guest: [1, 2, 4, 6] },
  { name: 'guest all, host only ep_info max packet + 32-bit bulk', host: [4, 6], guest: ALL },
  { name: 'streams without max packet size (dropped)', host: [0, 1, 5], guest: [0, 1, 5] },
];

describe('usbredir codec round trips', () => {
  for (const combo of COMBOS) {
    it(combo.name, () => {
      const { host, guest } = pair(combo.host, combo.guest);
      const flows: [Packet[], Negotiation, Negotiation][] = [
        [hostPackets(), host, guest],
        [guestPackets(), guest, host],
      ];
      for (const [packets, sender, receiver] of flows) {
        for (const p of packets) {
          const cap = CAP_PACKETS.get(p.type);
          if (cap !== undefined && !sender.peerHas(cap)) {
            assert.throws(
              () => encodePacket(p, sender),
              (e: unknown) => e instanceof UsbredirProtocolError && e.reason === 'missing-capability',
            );
            continue;
          }
          if (p.type === T.BulkPacket && p.length > 0xffff && sender.layout.bulkHeaderSize === 8) continue;
          const [head, data] = encodePacket(p, sender);
          assert.equal(head.length, sender.layout.headerSize + (head.readUInt32LE(4) - data.length));
          const got = parseAll(receiver, [Buffer.concat([head, data])]);
          assert.deepEqual(got, [asReceived(p, receiver)], `type ${p.type}`);
        }
      }
    });
  }

  it('uses the negotiated struct sizes', () => {
    const cases: [number[], number[], number, number, number, number][] = [
      [ALL, ALL, 16, 10, 288, 10],
      [NO_STREAMS, ALL, 16, 10, 160, 10],
      [[], ALL, 12, 8, 96, 8],
      [[0, 4], [0, 4], 12, 8, 288, 8],
      [[0], [0], 12, 8, 96, 8],
    ];
    for (const [h, g, header, connect, ep, bulk] of cases) {
      const { host } = pair(h, g);
      assert.deepEqual(host.layout, {
        headerSize: header,
        deviceConnectSize: connect,
        epInfoSize: ep,
        bulkHeaderSize: bulk,
      });
    }
  });

  it('sends the hello with a 12-byte header and 68-byte length', () => {
    const neg = new Negotiation('host', capsFrom(ALL));
    const [head, data] = encodePacket({ type: T.Hello, id: 0n, version: 'usbwire 0.1.0', caps: [...neg.ourCaps] }, neg);
    assert.equal(head.length, 12 + 64);
    assert.deepEqual([head.readUInt32LE(0), head.readUInt32LE(4), head.readUInt32LE(8)], [0, 68, 0]);
    assert.equal(head.toString('latin1', 12, 12 + 13), 'usbwire 0.1.0');
    assert.equal(head[12 + 13], 0);
    assert.deepEqual([...data], [0xff, 0, 0, 0]);
  });

  it('bulk lengths above 65535 need 32bits_bulk_length on both sides', () => {
    const big: Packet = {
      type: T.BulkPacket,
      id: 1n,
      endpoint: 0x81,
      status: 0,
      length: 0x123456,
      streamId: 0,
      data: Buffer.alloc(0),
    };
    const { guest, host } = pair(ALL, ALL);
    assert.deepEqual(parseAll(host, [wire(big, guest)]), [big]);
    const narrow = pair([], []);
    assert.throws(() => encodePacket(big, narrow.guest), UsbredirProtocolError);
  });

  it('refuses to encode what the peer would reject', () => {
    const { host, guest } = pair(ALL, ALL);
    const reason = (r: string) => (e: unknown) => e instanceof UsbredirProtocolError && e.reason === r;
    assert.throws(() => encodePacket({ type: T.Reset, id: 0n }, host), reason('wrong-direction'));
    assert.throws(() => encodePacket({ type: T.DeviceDisconnect, id: 0n }, guest), reason('wrong-direction'));
    assert.throws(
      () =>
        encodePacket(
          { type: T.InterruptPacket, id: 1n, endpoint: 0x81, status: 0, length: 8, data: Buffer.alloc(0) },
          guest,
        ),
      reason('wrong-direction'),
    );
    assert.throws(
      () =>
        encodePacket(
          { type: T.BulkPacket, id: 1n, endpoint: 0x02, status: 0, length: 8, streamId: 0, data: d(4) },
          guest,
        ),
      reason('data-length-mismatch'),
    );
    assert.throws(
      () =>
        encodePacket(
          { type: T.BulkPacket, id: 1n, endpoint: 0x02, status: 0, length: 8, streamId: 0, data: d(8) },
          host,
        ),
      reason('unexpected-data'),
    );
    assert.throws(
      () => encodePacket({ type: T.StartInterruptReceiving, id: 1n, endpoint: 0x03 }, guest),
      reason('not-an-in-endpoint'),
    );
    assert.throws(
      () => encodePacket({ type: T.SetConfiguration, id: 1n, configuration: 256 }, guest),
      reason('bad-value'),
    );
  });
});

describe('usbredir streaming parser', () => {
  /** A guest's whole stream: hello (12-byte header) then packets with 16-byte headers. */
  function guestStream(): { chunks: Buffer[]; packets: Packet[] } {
    // The hello goes out before the peer's hello is known (12-byte header), the rest after.
    const guest = new Negotiation('guest', capsFrom(ALL));
    const hello: Packet = { type: T.Hello, id: 0n, version: 'qemu usb-redir guest 7.2.22', caps: [0xff] };
    const first = wire(hello, guest);
    guest.setPeerCaps(capsFrom(NO_STREAMS));
    const rest = guestPackets();
    return { chunks: [first, ...rest.map((p) => wire(p, guest))], packets: [hello, ...rest] };
  }

  function expected(packets: Packet[]) {
    const host = new Negotiation('host', capsFrom(NO_STREAMS));
    host.setPeerCaps([0xff]);
    return packets.map((p) => asReceived(p, host));
  }

  it('parses a stream split at every byte boundary', () => {
    const { chunks, packets } = guestStream();
    const all = Buffer.concat(chunks);
    const want = expected(packets);
    for (let i = 0; i <= all.length; i++) {
      const neg = new Negotiation('host', capsFrom(NO_STREAMS));
      const got = parseAll(neg, [all.subarray(0, i), all.subarray(i)]);
      assert.deepEqual(got, want, `split at ${i}`);
      assert.equal(neg.layout.headerSize, 16);
    }
  });

  it('parses a stream fed one byte at a time and in three pieces', () => {
    const { chunks, packets } = guestStream();
    const all = Buffer.concat(chunks);
    const want = expected(packets);
    const bytes = [...all].map((b) => Buffer.from([b]));
    assert.deepEqual(parseAll(new Negotiation('host', capsFrom(NO_STREAMS)), bytes), want);
    for (let i = 1; i < all.length; i += 37) {
      for (let j = i; j < all.length; j += 53) {
        const got = parseAll(new Negotiation('host', capsFrom(NO_STREAMS)), [
          all.subarray(0, i),
          all.subarray(i, j),
          all.subarray(j),
        ]);
        assert.deepEqual(got, want);
      }
    }
  });

  it('hands out views of the received chunk for data inside one chunk', () => {
    const { host, guest } = pair(NO_STREAMS, ALL);
    const chunk = wire(
      { type: T.BulkPacket, id: 1n, endpoint: 0x02, status: 0, length: 1000, streamId: 0, data: d(1000) },
      guest,
    );
    const got = parseAll(host, [chunk]);
    const p = got[0]!;
    assert.equal(p.type, T.BulkPacket);
    if (p.type !== T.BulkPacket) return;
    assert.equal(p.data.buffer, chunk.buffer);
    assert.equal(p.data.byteOffset, chunk.byteOffset + chunk.length - 1000);
    // Straddling data is copied into one buffer of its own.
    const split = parseAll(host, [chunk.subarray(0, 500), chunk.subarray(500)])[0]!;
    assert.ok(split.type === T.BulkPacket && split.data.equals(d(1000)));
    chunk.fill(0);
    assert.ok(split.data.equals(d(1000)));
    assert.ok(p.data.equals(Buffer.alloc(1000)));
  });

  it('ignores a second hello for the layout', () => {
    const host = new Negotiation('host', capsFrom(NO_STREAMS));
    const raw = new Negotiation('guest', capsFrom(ALL));
    const hello = wire({ type: T.Hello, id: 0n, version: 'g', caps: [0xff] }, raw);
    const out: Packet[] = [];
    const parser = new UsbredirParser(host, (p) => out.push(p));
    parser.push(hello);
    assert.equal(host.layout.headerSize, 16);
    // The second hello arrives with the now-current 16-byte header and changes nothing.
    raw.setPeerCaps(host.ourCaps);
    const second = encodePacket({ type: T.Hello, id: 0n, version: 'again', caps: [0] }, raw);
    const h16 = Buffer.alloc(16);
    second[0].copy(h16, 0, 0, 12);
    parser.push(Buffer.concat([h16, second[0].subarray(12), second[1]]));
    assert.equal(out.length, 2);
    assert.equal(host.layout.headerSize, 16);
    assert.deepEqual(host.peerCaps, [0xff]);
  });
});

describe('usbredir parser errors', () => {
  function header(type: number, length: number, id = 0, size = 12): Buffer {
    const b = Buffer.alloc(size);
    b.writeUInt32LE(type, 0);
    b.writeUInt32LE(length, 4);
    b.writeUInt32LE(id, 8);
    return b;
  }

  function expectError(role: Role, bytes: Buffer, reason: string, caps: number[] = ALL, peer?: number[]) {
    const neg = new Negotiation(role, capsFrom(caps));
    if (peer) neg.setPeerCaps(capsFrom(peer));
    const parser = new UsbredirParser(neg, () => {});
    assert.throws(
      () => parser.push(bytes),
      (e: unknown) => e instanceof UsbredirProtocolError && e.reason === reason,
      `expected ${reason}`,
    );
    // The parser stays failed.
    assert.throws(() => parser.push(Buffer.alloc(1)), UsbredirProtocolError);
  }

  it('rejects unknown types and wrong directions', () => {
    expectError('host', header(50, 0), 'unknown-type');
    expectError('host', header(105, 0), 'unknown-type');
    expectError('host', header(T.DeviceConnect, 10), 'wrong-direction');
    expectError('host', header(T.EpInfo, 96), 'wrong-direction');
    expectError('guest', header(T.Reset, 0), 'wrong-direction');
    expectError('guest', header(T.CancelDataPacket, 0), 'wrong-direction');
    expectError('host', header(T.BufferedBulkPacket, 10), 'wrong-direction');
  });

  it('rejects bad lengths before reading data', () => {
    expectError('host', header(T.SetConfiguration, 0), 'length-too-short');
    expectError('host', header(T.Reset, 5), 'unexpected-data');
    expectError('host', header(T.Hello, 10), 'length-too-short');
    expectError('host', header(T.ControlPacket, 0xffffffff), 'packet-too-long');
    expectError('host', header(T.ControlPacket, 1024 + 128 * 1024 * 1024 + 1), 'packet-too-long');
  });

  it('rejects data length mismatches and data in the wrong direction', () => {
    const bulkOut = Buffer.alloc(8);
    bulkOut[0] = 0x02;
    bulkOut.writeUInt16LE(10, 2);
    // 16-bit bulk header (no caps): announces 10 bytes, carries 5.
    expectError('host', Buffer.concat([header(T.BulkPacket, 8 + 5), bulkOut, d(5)]), 'data-length-mismatch', []);
    const bulkIn = Buffer.from(bulkOut);
    bulkIn[0] = 0x81;
    expectError('host', Buffer.concat([header(T.BulkPacket, 8 + 10), bulkIn, d(10)]), 'unexpected-data', []);
    const intIn = Buffer.from([0x81, 0, 8, 0]);
    expectError('host', Buffer.concat([header(T.InterruptPacket, 4), intIn]), 'wrong-direction', []);
    expectError('host', Buffer.concat([header(T.IsoPacket, 4), intIn]), 'wrong-direction', []);
    const isoOut = Buffer.from([0x02, 0, 8, 0]);
    expectError('guest', Buffer.concat([header(T.IsoPacket, 4), isoOut]), 'wrong-direction', []);
  });

  it('checks type-header contents', () => {
    const info = Buffer.alloc(132);
    info.writeUInt32LE(33, 0);
    expectError('guest', Buffer.concat([header(T.InterfaceInfo, 132), info]), 'too-many-interfaces');
    expectError(
      'host',
      Buffer.concat([header(T.StartInterruptReceiving, 1), Buffer.from([0x03])]),
      'not-an-in-endpoint',
    );
    expectError(
      'guest',
      Buffer.concat([header(T.InterruptReceivingStatus, 2), Buffer.from([0, 0x03])]),
      'not-an-in-endpoint',
    );
    expectError('host', header(T.FilterReject, 0), 'missing-capability', [1, 3, 4, 5, 6, 7]);
    expectError('host', header(T.DeviceDisconnectAck, 0), 'missing-capability', [1, 2]);
    expectError('host', Buffer.concat([header(T.FilterFilter, 3), Buffer.from('a,b')]), 'bad-filter-data');
    expectError('host', header(T.FilterFilter, 0), 'bad-filter-data');
    const sbr = Buffer.alloc(10);
    sbr.writeUInt32LE(MAX_BULK_TRANSFER_SIZE + 1, 4);
    sbr[8] = 0x81;
    expectError('host', Buffer.concat([header(T.StartBulkReceiving, 10), sbr]), 'transfer-too-long');
    expectError('host', Buffer.concat([header(T.StartBulkReceiving, 10), sbr]), 'missing-capability', [1, 2]);
  });

  it('rejects bulk lengths over 128 MiB from the header, without the data', () => {
    const neg = new Negotiation('host', capsFrom(ALL));
    neg.setPeerCaps(capsFrom(ALL));
    const th = Buffer.alloc(10);
    th[0] = 0x81; // IN request: no data, length is what the guest wants
    const len = MAX_BULK_TRANSFER_SIZE + 1;
    th.writeUInt16LE(len & 0xffff, 2);
    th.writeUInt16LE(len >>> 16, 8);
    const parser = new UsbredirParser(neg, () => assert.fail('no packet expected'));
    assert.throws(
      () => parser.push(Buffer.concat([header(T.BulkPacket, 10, 1, 16), th])),
      (e: unknown) => e instanceof UsbredirProtocolError && e.reason === 'transfer-too-long',
    );
    // An OUT packet announcing 100 MiB is accepted and waits for its data without allocating it.
    const out = Buffer.alloc(10);
    out[0] = 0x02;
    const big = 100 * 1024 * 1024;
    out.writeUInt16LE(big & 0xffff, 2);
    out.writeUInt16LE(big >>> 16, 8);
    const before = process.memoryUsage().arrayBuffers;
    const waiting = new UsbredirParser(neg, () => assert.fail('no packet expected'));
    waiting.push(Buffer.concat([header(T.BulkPacket, 10 + big, 1, 16), out, d(100)]));
    assert.ok(process.memoryUsage().arrayBuffers - before < 10 * 1024 * 1024);
    assert.equal(waiting.buffered, 100);
  });
});

describe('usbredir status and endpoint mapping', () => {
  it('maps statuses both ways, unknown codes as errors', () => {
    for (const s of [
      TransferStatus.Ok,
      TransferStatus.Cancelled,
      TransferStatus.Invalid,
      TransferStatus.IoError,
      TransferStatus.Stall,
      TransferStatus.Timeout,
      TransferStatus.Babble,
    ]) {
      assert.equal(statusFromRedir(statusToRedir(s)), s);
    }
    assert.equal(statusToRedir(TransferStatus.NoDevice), 3);
    assert.equal(statusFromRedir(7), TransferStatus.IoError);
    assert.equal(statusFromRedir(255), TransferStatus.IoError);
  });

  it('maps endpoint addresses to indexes', () => {
    assert.equal(endpointIndex(0x00), 0);
    assert.equal(endpointIndex(0x80), 16);
    assert.equal(endpointIndex(0x8f), 31);
    assert.equal(endpointIndex(0x02), 2);
    for (let i = 0; i < 32; i++) assert.equal(endpointIndex(endpointAddress(i)), i);
  });
});

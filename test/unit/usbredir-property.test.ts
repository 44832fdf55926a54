// Property tests (fast-check): every usbredir packet type, in every layout the caps of both sides
// can negotiate, encodes and decodes back to itself; and arbitrary bytes make the parser throw
// nothing but UsbredirProtocolError.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import {
  Cap,
  capsFrom,
  type EpInfoEntry,
  encodePacket,
  Negotiation,
  type Packet,
  type Role,
  PacketType as T,
  UsbredirParser,
  UsbredirProtocolError,
} from '../../src/protocol/usbredir/index.js';
import { bytes, pushInPieces, RUNS, rec, u8, u16, u32 } from '../fuzz/arbitraries.js';

const inEp = u8.map((e) => e | 0x80);
const latin1 = (maxLength: number) =>
  fc.array(fc.integer({ min: 1, max: 0xff }), { maxLength }).map((c) => String.fromCharCode(...c));
const capsArb = fc.subarray([0, 1, 2, 3, 4, 5, 6, 7]).map((list) => capsFrom(list));

interface Side {
  /** Who sends this packet. */
  sender: Role;
  p: Packet;
}

/** Every packet type a `sender` may send, with fields as wide as the layout allows. */
function packets(host: Negotiation): fc.Arbitrary<Side> {
  const both = (cap: number) => host.both(cap);
  const id = both(Cap.Ids64Bits) ? fc.bigInt(0n, 0xffffffffffffffffn) : u32.map(BigInt);
  const toGuest = <P extends Packet>(a: fc.Arbitrary<P>) => a.map((p): Side => ({ sender: 'host', p }));
  const toHost = <P extends Packet>(a: fc.Arbitrary<P>) => a.map((p): Side => ({ sender: 'guest', p }));
  const bulkMax = both(Cap.BulkLength32Bits) ? 128 * 1024 * 1024 : 0xffff;
  const epInfoSize = host.layout.epInfoSize;
  const endpoint: fc.Arbitrary<EpInfoEntry> = rec({
    type: u8,
    interval: u8,
    interface: u8,
    maxPacketSize: epInfoSize >= 160 ? u16 : fc.constant(0),
    maxStreams: epInfoSize === 288 ? u32 : fc.constant(0),
  });
  /**
   * A data packet whose data travels with it (OUT to the host, IN to the guest), at most 4 KiB of
   * it, or a request/status without data whose length field takes any value.
   */
  const dataPacket = <K extends 100 | 101 | 102 | 103>(type: K, maxLength: number) =>
    rec({
      id,
      toHost: fc.boolean(),
      withData: fc.boolean(),
      ep: u8,
      status: u8,
      request: u8,
      requestType: u8,
      value: u16,
      index: u16,
      streamId: u32,
      length: fc.integer({ min: 0, max: maxLength }),
    })
      .filter((r) => {
        // Iso always carries data; interrupt to the host only as OUT data.
        if (type === T.IsoPacket) return r.withData;
        if (type === T.InterruptPacket && r.toHost) return r.withData;
        return true;
      })
      .chain((r) => {
        const isIn = r.toHost !== r.withData;
        const endpointAddress = isIn ? r.ep | 0x80 : r.ep & 0x7f;
        const length = r.withData ? r.length % 4097 : r.length;
        return (r.withData ? bytes(length) : fc.constant(Buffer.alloc(0))).map((data): Side => {
          const base = { id: r.id, endpoint: endpointAddress, status: r.status, length, data };
          const sender: Role = r.toHost ? 'guest' : 'host';
          switch (type) {
            case T.ControlPacket:
              return {
                sender,
                p: {
                  ...base,
                  type: T.ControlPacket,
                  request: r.request,
                  requestType: r.requestType,
                  value: r.value,
                  index: r.index,
                },
              };
            case T.BulkPacket:
              return { sender, p: { ...base, type: T.BulkPacket, streamId: r.streamId } };
            case T.IsoPacket:
              return { sender, p: { ...base, type: T.IsoPacket } };
            default:
              return { sender, p: { ...base, type: T.InterruptPacket } };
          }
        });
      });
  const all: fc.Arbitrary<Side>[] = [
    toGuest(
      rec({
        type: fc.constant(T.DeviceConnect),
        id,
        speed: u8,
        deviceClass: u8,
        deviceSubclass: u8,
        deviceProtocol: u8,
        vendorId: u16,
        productId: u16,
        deviceVersionBcd: both(Cap.ConnectDeviceVersion) ? u16 : fc.constant(0),
      }),
    ),
    toGuest(rec({ type: fc.constant(T.DeviceDisconnect), id })),
    toHost(rec({ type: fc.constant(T.Reset), id })),
    toGuest(
      rec({
        type: fc.constant(T.InterfaceInfo),
        id,
        interfaces: fc.array(rec({ number: u8, interfaceClass: u8, interfaceSubclass: u8, interfaceProtocol: u8 }), {
          maxLength: 32,
        }),
      }),
    ),
    toGuest(
      rec({
        type: fc.constant(T.EpInfo),
        id,
        endpoints: fc.array(endpoint, { minLength: 32, maxLength: 32 }),
      }),
    ),
    toHost(rec({ type: fc.constant(T.SetConfiguration), id, configuration: u8 })),
    toHost(rec({ type: fc.constant(T.GetConfiguration), id })),
    toGuest(rec({ type: fc.constant(T.ConfigurationStatus), id, status: u8, configuration: u8 })),
    toHost(rec({ type: fc.constant(T.SetAltSetting), id, interface: u8, alt: u8 })),
    toHost(rec({ type: fc.constant(T.GetAltSetting), id, interface: u8 })),
    toGuest(rec({ type: fc.constant(T.AltSettingStatus), id, status: u8, interface: u8, alt: u8 })),
    toHost(rec({ type: fc.constant(T.StartIsoStream), id, endpoint: u8, pktsPerUrb: u8, noUrbs: u8 })),
    toHost(rec({ type: fc.constant(T.StopIsoStream), id, endpoint: u8 })),
    toGuest(rec({ type: fc.constant(T.IsoStreamStatus), id, status: u8, endpoint: u8 })),
    toHost(rec({ type: fc.constant(T.StartInterruptReceiving), id, endpoint: inEp })),
    toHost(rec({ type: fc.constant(T.StopInterruptReceiving), id, endpoint: inEp })),
    toGuest(rec({ type: fc.constant(T.InterruptReceivingStatus), id, status: u8, endpoint: inEp })),
    toHost(rec({ type: fc.constant(T.AllocBulkStreams), id, endpoints: u32, noStreams: u32 })),
    toHost(rec({ type: fc.constant(T.FreeBulkStreams), id, endpoints: u32 })),
    toGuest(rec({ type: fc.constant(T.BulkStreamsStatus), id, endpoints: u32, noStreams: u32, status: u8 })),
    toHost(rec({ type: fc.constant(T.CancelDataPacket), id })),
    dataPacket(T.ControlPacket, 0xffff),
    dataPacket(T.BulkPacket, bulkMax),
    dataPacket(T.IsoPacket, 0xffff),
    dataPacket(T.InterruptPacket, 0xffff),
  ];
  if (both(Cap.Filter)) {
    all.push(toHost(rec({ type: fc.constant(T.FilterReject), id })));
    all.push(
      rec({ type: fc.constant(T.FilterFilter), id, filter: latin1(200) }).chain((p) =>
        fc.constantFrom<Role>('host', 'guest').map((sender): Side => ({ sender, p })),
      ),
    );
  }
  if (both(Cap.DeviceDisconnectAck)) all.push(toHost(rec({ type: fc.constant(T.DeviceDisconnectAck), id })));
  if (both(Cap.BulkReceiving)) {
    all.push(
      toHost(
        rec({
          type: fc.constant(T.StartBulkReceiving),
          id,
          streamId: u32,
          bytesPerTransfer: fc.integer({ min: 0, max: 128 * 1024 * 1024 }),
          endpoint: inEp,
          noTransfers: u8,
        }),
      ),
      toHost(rec({ type: fc.constant(T.StopBulkReceiving), id, streamId: u32, endpoint: inEp })),
      toGuest(rec({ type: fc.constant(T.BulkReceivingStatus), id, streamId: u32, endpoint: inEp, status: u8 })),
      toGuest(
        rec({ id, streamId: u32, endpoint: inEp, status: u8, length: fc.integer({ min: 0, max: 4096 }) }).chain((r) =>
          bytes(r.length).map((data) => ({ ...r, type: T.BufferedBulkPacket, data })),
        ),
      ),
    );
  }
  return fc.oneof(...all);
}

function pair(hostCaps: number[], guestCaps: number[]): { host: Negotiation; guest: Negotiation } {
  const host = new Negotiation('host', hostCaps);
  const guest = new Negotiation('guest', guestCaps);
  host.setPeerCaps(guest.ourCaps);
  guest.setPeerCaps(host.ourCaps);
  return { host, guest };
}

function decodeOne(receiver: Negotiation, wire: Buffer): Packet[] {
  const out: Packet[] = [];
  new UsbredirParser(receiver, (p) => out.push(p)).push(wire);
  return out;
}

test('usbredir: every packet type round-trips encode → decode in every negotiated layout', () => {
  fc.assert(
    fc.property(
      fc.tuple(capsArb, capsArb).chain(([h, g]) => {
        return packets(pair(h, g).host).map((side) => ({ h, g, side }));
      }),
      ({ h, g, side }) => {
        const { host, guest } = pair(h, g);
        const [sender, receiver] = side.sender === 'host' ? [host, guest] : [guest, host];
        const wire = Buffer.concat(encodePacket(side.p, sender));
        const got = decodeOne(receiver, wire);
        assert.equal(got.length, 1);
        assert.deepStrictEqual(got[0], side.p);
      },
    ),
    { numRuns: RUNS * 10 },
  );
});

test('usbredir: hello round-trips (version up to 63 characters, caps words), before any layout applies', () => {
  fc.assert(
    fc.property(
      fc.constantFrom<Role>('host', 'guest'),
      u32.map(BigInt),
      latin1(63),
      fc.array(u32, { minLength: 1, maxLength: 4 }),
      (sender, id, version, caps) => {
        const from = new Negotiation(sender, [0]);
        const to = new Negotiation(sender === 'host' ? 'guest' : 'host', [0]);
        const p: Packet = { type: T.Hello, id, version, caps };
        const got = decodeOne(to, Buffer.concat(encodePacket(p, from)));
        assert.deepStrictEqual(got, [p]);
      },
    ),
    { numRuns: RUNS },
  );
});

test('usbredir: arbitrary bytes, in arbitrary pieces, only ever raise UsbredirProtocolError', () => {
  fc.assert(
    fc.property(
      fc.constantFrom<Role>('host', 'guest'),
      capsArb,
      fc.uint8Array({ maxLength: 600 }),
      fc.array(fc.integer({ min: 1, max: 64 }), { minLength: 1, maxLength: 20 }),
      (role, caps, input, pieces) => {
        const parser = new UsbredirParser(new Negotiation(role, caps), () => {});
        pushInPieces(
          (b) => parser.push(b),
          input,
          pieces,
          (err) => err instanceof UsbredirProtocolError,
        );
        assert.ok(parser.buffered <= input.length);
      },
    ),
    { numRuns: RUNS * 10 },
  );
});

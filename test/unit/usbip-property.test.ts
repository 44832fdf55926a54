// Property tests (fast-check): every USB/IP packet type encodes and decodes back to itself, and
// arbitrary bytes make the parser (either role, either phase) throw nothing but UsbipProtocolError.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import {
  type IsoDescriptor,
  type RequestShape,
  type UsbipDeviceInfo,
  type UsbipPacket,
  UsbipParser,
  UsbipProtocolError,
} from '../../src/protocol/usbip/index.js';
import { bytes, i32, pushInPieces, RUNS, rec, u8, u16, u32 } from '../fuzz/arbitraries.js';
import { encodeUsbipPacket } from '../fuzz/codec.js';

/** A NUL-free string of at most `max` UTF-8 bytes (the fixed fields keep one byte for the NUL). */
const fixedString = (max: number) =>
  fc.string({ unit: 'grapheme', maxLength: max }).filter((s) => !s.includes('\0') && Buffer.byteLength(s) < max);

const deviceInfo: fc.Arbitrary<UsbipDeviceInfo> = rec({
  path: fixedString(256),
  busid: fixedString(32),
  busnum: u32,
  devnum: u32,
  speed: u32,
  idVendor: u16,
  idProduct: u16,
  bcdDevice: u16,
  bDeviceClass: u8,
  bDeviceSubClass: u8,
  bDeviceProtocol: u8,
  bConfigurationValue: u8,
  bNumConfigurations: u8,
  bNumInterfaces: u8,
});
const devlistEntry = fc
  .tuple(
    deviceInfo,
    fc.array(rec({ interfaceClass: u8, interfaceSubClass: u8, interfaceProtocol: u8 }), { maxLength: 8 }),
  )
  .map(([d, interfaces]) => ({ ...d, bNumInterfaces: interfaces.length, interfaces }));
const failedStatus = u32.filter((s) => s !== 0);

/** ISO descriptors that fit a buffer of `length`, back to back from offset 0. */
function isoLayout(length: number, count: number): fc.Arbitrary<{ offset: number; length: number }[]> {
  return fc
    .array(fc.integer({ min: 0, max: Math.floor(length / Math.max(count, 1)) }), {
      minLength: count,
      maxLength: count,
    })
    .map((lengths) => {
      let offset = 0;
      return lengths.map((l) => {
        const d = { offset, length: l };
        offset += l;
        return d;
      });
    });
}

const basic = { seqnum: u32, devid: u32, direction: fc.constantFrom(0, 1), ep: fc.integer({ min: 0, max: 15 }) };
const setup = rec({ bmRequestType: u8, bRequest: u8, wValue: u16, wIndex: u16, wLength: u16 });

const cmdSubmit: fc.Arbitrary<UsbipPacket> = rec({
  ...basic,
  transferFlags: u32,
  transferBufferLength: fc.integer({ min: 0, max: 4096 }),
  startFrame: i32,
  isoCount: fc.integer({ min: -1, max: 8 }),
  interval: i32,
  setup,
}).chain(({ isoCount, ...h }) =>
  fc
    .tuple(
      h.direction === 0 ? bytes(h.transferBufferLength) : fc.constant(Buffer.alloc(0)),
      isoCount > 0 ? isoLayout(h.transferBufferLength, isoCount) : fc.constant(undefined),
      fc.array(i32, { minLength: 8, maxLength: 8 }),
    )
    .map(([data, layout, statuses]) => ({
      kind: 'cmd-submit' as const,
      ...h,
      numberOfPackets: isoCount,
      data,
      isoPackets: layout?.map((d, i): IsoDescriptor => ({ ...d, actualLength: 0, status: statuses[i]! })),
    })),
);

/** A RET_SUBMIT with the request it answers (the client parser needs that shape). */
const retSubmit: fc.Arbitrary<{ p: UsbipPacket; shape: RequestShape }> = rec({
  ...basic,
  in: fc.boolean(),
  requested: fc.integer({ min: 0, max: 4096 }),
  isoCount: fc.integer({ min: 0, max: 8 }),
  nonIsoPackets: fc.constantFrom(0, -1),
  status: i32,
  startFrame: i32,
  errorCount: i32,
}).chain((r) =>
  fc
    .tuple(
      r.isoCount > 0 ? isoLayout(r.requested, r.isoCount) : fc.constant(undefined),
      fc.array(fc.double({ min: 0, max: 1, noNaN: true }), { minLength: 8, maxLength: 8 }),
      fc.array(i32, { minLength: 8, maxLength: 8 }),
      fc.integer({ min: 0, max: r.requested }),
    )
    .chain(([layout, fractions, statuses, nonIsoActual]) => {
      const isoPackets = layout?.map(
        (d, i): IsoDescriptor => ({ ...d, actualLength: Math.floor(d.length * fractions[i]!), status: statuses[i]! }),
      );
      // ISO IN: the packed data is the sum of the packets' actual lengths.
      const actualLength = isoPackets ? isoPackets.reduce((s, d) => s + d.actualLength, 0) : nonIsoActual;
      return (r.in ? bytes(actualLength) : fc.constant(Buffer.alloc(0))).map((data) => ({
        shape: { in: r.in, length: r.requested, isoPackets: r.isoCount },
        p: {
          kind: 'ret-submit' as const,
          seqnum: r.seqnum,
          devid: r.devid,
          direction: r.direction,
          ep: r.ep,
          status: r.status,
          actualLength,
          startFrame: r.startFrame,
          numberOfPackets: r.isoCount > 0 ? r.isoCount : r.nonIsoPackets,
          errorCount: r.errorCount,
          data,
          isoPackets,
        },
      }));
    }),
);

function decode(role: 'server' | 'client', urb: boolean, wire: Buffer, shape?: RequestShape): UsbipPacket[] {
  const out: UsbipPacket[] = [];
  const parser = new UsbipParser({ role, lookupRequest: () => shape }, (p) => out.push(p));
  if (urb) parser.startUrbPhase();
  parser.push(wire);
  return out;
}

function roundTrip(role: 'server' | 'client', urb: boolean, p: UsbipPacket, shape?: RequestShape): void {
  assert.deepStrictEqual(decode(role, urb, encodeUsbipPacket(p), shape), [p]);
}

test('USB/IP: op requests round-trip (server role)', () => {
  roundTrip('server', false, { kind: 'op-req-devlist' });
  fc.assert(
    fc.property(fixedString(32), (busid) => roundTrip('server', false, { kind: 'op-req-import', busid })),
    { numRuns: RUNS },
  );
});

test('USB/IP: op replies round-trip (client role), success and failure', () => {
  fc.assert(
    fc.property(
      fc.oneof(
        fc
          .array(devlistEntry, { maxLength: 4 })
          .map((devices) => ({ kind: 'op-rep-devlist' as const, status: 0, devices })),
        failedStatus.map((status) => ({ kind: 'op-rep-devlist' as const, status, devices: [] })),
        deviceInfo.map((device) => ({ kind: 'op-rep-import' as const, status: 0, device })),
        failedStatus.map((status) => ({ kind: 'op-rep-import' as const, status, device: undefined })),
      ),
      (p) => roundTrip('client', false, p),
    ),
    { numRuns: RUNS },
  );
});

test('USB/IP: CMD_SUBMIT (OUT data, IN, ISO descriptors, both non-ISO packet counts) and CMD_UNLINK round-trip', () => {
  fc.assert(
    fc.property(
      fc.oneof(
        cmdSubmit,
        rec({ ...basic, unlinkSeqnum: u32 }).map((u) => ({ kind: 'cmd-unlink' as const, ...u })),
      ),
      (p) => roundTrip('server', true, p),
    ),
    { numRuns: RUNS * 3 },
  );
});

test('USB/IP: RET_SUBMIT (IN data, ISO packed data and descriptors) and RET_UNLINK round-trip', () => {
  fc.assert(
    fc.property(
      fc.oneof(
        retSubmit,
        rec({ ...basic, status: i32 }).map((u) => ({
          p: { kind: 'ret-unlink' as const, ...u },
          shape: undefined as RequestShape | undefined,
        })),
      ),
      ({ p, shape }) => roundTrip('client', true, p, shape),
    ),
    { numRuns: RUNS * 3 },
  );
});

test('USB/IP: arbitrary bytes, in arbitrary pieces, either role and phase, only raise UsbipProtocolError', () => {
  const shape: RequestShape = { in: true, length: 512, isoPackets: 0 };
  fc.assert(
    fc.property(
      fc.constantFrom<'server' | 'client'>('server', 'client'),
      fc.boolean(),
      fc.uint8Array({ maxLength: 800 }),
      fc.array(fc.integer({ min: 1, max: 64 }), { minLength: 1, maxLength: 20 }),
      (role, urb, input, pieces) => {
        const parser = new UsbipParser({ role, maxTransferLength: 1 << 16, lookupRequest: () => shape }, (p) => {
          if (p.kind === 'op-req-import' || p.kind === 'op-rep-import') parser.startUrbPhase();
        });
        if (urb) parser.startUrbPhase();
        const typed = (err: unknown) => err instanceof UsbipProtocolError;
        pushInPieces((b) => parser.push(b), input, pieces, typed);
        pushInPieces(() => parser.end(), new Uint8Array(1), [1], typed);
        assert.ok(parser.bufferedBytes <= input.length);
      },
    ),
    { numRuns: RUNS * 10 },
  );
});

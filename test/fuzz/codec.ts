/**
 * Codec targets: one mutated stream through a parser, in the given pieces. Oracles: the parser
 * throws nothing but its typed protocol error; it never buffers more than it was given; no
 * allocation is larger than the input (nothing sized from a length field); every packet it emits
 * encodes back and decodes to the same packet.
 */
import assert from 'node:assert/strict';
import {
  encodeCmdSubmit,
  encodeCmdUnlink,
  encodeRepDevlist,
  encodeRepImport,
  encodeReqDevlist,
  encodeReqImport,
  encodeRetSubmit,
  encodeRetUnlink,
  type RequestShape,
  type UsbipPacket,
  UsbipParser,
  UsbipProtocolError,
} from '../../src/protocol/usbip/index.js';
import {
  encodePacket,
  Negotiation,
  type Packet,
  type Role,
  PacketType as T,
  UsbredirParser,
  UsbredirProtocolError,
} from '../../src/protocol/usbredir/index.js';

export class FuzzFailure extends Error {
  override name = 'FuzzFailure';
}

// ---- allocation guard ----

let largestAlloc = 0;
let largestWhere = '';
let guarding = false;
let always = false;

/** Record the largest Buffer allocation made while `fn` runs (the parsers allocate only through these). */
function measureAllocations<T>(fn: () => T): { result: T; largest: number } {
  largestAlloc = 0;
  guarding = true;
  try {
    return { result: fn(), largest: largestAlloc };
  } finally {
    guarding = false;
  }
}

/** The largest allocation since the last reset (with `installAllocationGuard(true)`), and where it was made. */
export function largestAllocation(reset = false): { bytes: number; where: string } {
  const r = { bytes: largestAlloc, where: largestWhere };
  if (reset) {
    largestAlloc = 0;
    largestWhere = '';
  }
  return r;
}

/** Wrap Buffer's allocators so every allocation size is seen (`all`: outside measureAllocations too). */
export function installAllocationGuard(all = false): void {
  always ||= all;
  if ((Buffer.alloc as { guarded?: boolean }).guarded) return;
  const realAlloc = Buffer.alloc;
  const realAllocUnsafe = Buffer.allocUnsafe;
  const realAllocUnsafeSlow = Buffer.allocUnsafeSlow;
  const note = (n: unknown) => {
    if (!(guarding || always) || typeof n !== 'number' || n <= largestAlloc) return;
    if (!always) {
      largestAlloc = n;
      return;
    }
    // Live targets: only what usbwire's own code allocates, not the harness.
    const frames = (new Error().stack ?? '').split('\n').slice(3);
    if (!frames.some((f) => f.includes('/src/'))) return;
    largestAlloc = n;
    largestWhere = frames
      .slice(0, 4)
      .map((l) =>
        l
          .trim()
          .replace(/^at /, '')
          .replace(/\(file:.*\/(src|test)\//, '($1/'),
      )
      .join(' < ');
  };
  Buffer.alloc = Object.assign(
    ((size: number, ...rest: unknown[]) => {
      note(size);
      return (realAlloc as (...a: unknown[]) => Buffer)(size, ...rest);
    }) as typeof Buffer.alloc,
    { guarded: true },
  );
  Buffer.allocUnsafe = ((size: number) => {
    note(size);
    return realAllocUnsafe(size);
  }) as typeof Buffer.allocUnsafe;
  Buffer.allocUnsafeSlow = ((size: number) => {
    note(size);
    return realAllocUnsafeSlow(size);
  }) as typeof Buffer.allocUnsafeSlow;
}

/** Feed `bytes` in `chunks`; returns the packets and the typed error that stopped it, if any. */
function feed(
  push: (b: Buffer) => void,
  buffered: () => number,
  bytes: Buffer,
  chunks: readonly number[],
  isTyped: (e: unknown) => boolean,
): { error: Error | undefined } {
  let at = 0;
  const { result, largest } = measureAllocations(() => {
    for (const n of chunks) {
      try {
        push(bytes.subarray(at, at + n));
      } catch (err) {
        if (!isTyped(err)) {
          throw new FuzzFailure(`untyped error after ${at} bytes: ${(err as Error)?.stack ?? String(err)}`);
        }
        return { error: err as Error };
      }
      at += n;
      if (buffered() > at) throw new FuzzFailure(`parser buffers ${buffered()} bytes after ${at} pushed`);
    }
    return { error: undefined };
  });
  if (largest > Math.max(bytes.length, 64)) {
    throw new FuzzFailure(`allocation of ${largest} bytes from a ${bytes.length}-byte input`);
  }
  return result;
}

// ---- USB/IP ----

export interface UsbipCase {
  role: 'server' | 'client';
  bytes: Buffer;
  chunks: readonly number[];
  /** Client role: the requests the captured client made, by seqnum. */
  shapes: ReadonlyMap<number, RequestShape>;
}

export function requestShapes(toServer: Buffer): Map<number, RequestShape> {
  const shapes = new Map<number, RequestShape>();
  const parser: UsbipParser = new UsbipParser({ role: 'server' }, (p) => {
    if (p.kind === 'op-req-import') parser.startUrbPhase();
    if (p.kind === 'cmd-submit') {
      shapes.set(p.seqnum, {
        in: p.direction === 1,
        length: p.transferBufferLength,
        isoPackets: Math.max(0, p.numberOfPackets),
      });
    }
  });
  parser.push(toServer);
  return shapes;
}

function usbipParser(c: UsbipCase, onPacket: (p: UsbipPacket, urb: boolean) => void): UsbipParser {
  const parser: UsbipParser = new UsbipParser(
    { role: c.role, maxTransferLength: 1 << 20, lookupRequest: (s) => c.shapes.get(s) },
    (p) => {
      const urb = parser.phase === 'urb';
      onPacket(p, urb);
      // As the server and the client do: URBs follow a successful import.
      if (p.kind === 'op-req-import' || (p.kind === 'op-rep-import' && p.status === 0)) parser.startUrbPhase();
    },
  );
  return parser;
}

/** Any USB/IP packet as its wire bytes. */
export function encodeUsbipPacket(p: UsbipPacket): Buffer {
  switch (p.kind) {
    case 'op-req-devlist':
      return Buffer.concat(encodeReqDevlist());
    case 'op-req-import':
      return Buffer.concat(encodeReqImport(p.busid));
    case 'op-rep-devlist':
      return Buffer.concat(encodeRepDevlist(p.devices, p.status));
    case 'op-rep-import':
      return Buffer.concat(encodeRepImport(p.status, p.device));
    case 'cmd-submit':
      return Buffer.concat(encodeCmdSubmit(p));
    case 'cmd-unlink':
      return Buffer.concat(encodeCmdUnlink(p));
    case 'ret-submit':
      return Buffer.concat(encodeRetSubmit(p));
    case 'ret-unlink':
      return Buffer.concat(encodeRetUnlink(p));
  }
}

function encodeUsbip(p: UsbipPacket): Buffer | undefined {
  try {
    return encodeUsbipPacket(p);
  } catch (err) {
    // A path or busid decoded from invalid UTF-8 may not fit its field once re-encoded.
    if (err instanceof RangeError && /longer than/.test(err.message)) return undefined;
    throw err;
  }
}

function roundTripUsbip(c: UsbipCase, p: UsbipPacket, urb: boolean): void {
  const bytes = encodeUsbip(p);
  if (!bytes) return;
  const again: UsbipPacket[] = [];
  const parser = usbipParser(c, (q) => again.push(q));
  if (urb) parser.startUrbPhase();
  try {
    parser.push(bytes);
  } catch (err) {
    throw new FuzzFailure(`${p.kind} re-encoded does not parse: ${(err as Error).message}`);
  }
  try {
    assert.deepStrictEqual(again[0], p);
  } catch (err) {
    throw new FuzzFailure(`${p.kind} does not round-trip: ${(err as Error).message}`);
  }
}

export function runUsbipCase(c: UsbipCase): { packets: number; error: string | undefined } {
  const packets: [UsbipPacket, boolean][] = [];
  const parser = usbipParser(c, (p, urb) => packets.push([p, urb]));
  const { error } = feed(
    (b) => parser.push(b),
    () => parser.bufferedBytes,
    c.bytes,
    c.chunks,
    (e) => e instanceof UsbipProtocolError,
  );
  if (!error) {
    try {
      parser.end();
    } catch (err) {
      if (!(err instanceof UsbipProtocolError)) throw new FuzzFailure(`end() threw ${String(err)}`);
    }
  }
  for (const [p, urb] of packets) roundTripUsbip(c, p, urb);
  return { packets: packets.length, error: error && (error as UsbipProtocolError).reason };
}

// ---- usbredir ----

export interface UsbredirCase {
  /** The parser's side: 'host' reads what a guest sends, 'guest' what a host sends. */
  role: Role;
  ourCaps: readonly number[];
  bytes: Buffer;
  chunks: readonly number[];
}

function negotiated(role: Role, ourCaps: readonly number[], peerCaps: readonly number[] | undefined): Negotiation {
  const n = new Negotiation(role, ourCaps);
  if (peerCaps) n.setPeerCaps(peerCaps);
  return n;
}

/** Hello: the version field holds 63 characters and a NUL; missing caps words read as 0. */
function normalise(p: Packet): Packet {
  if (p.type !== T.Hello) return p;
  const caps = [...p.caps];
  while (caps.length > 0 && caps[caps.length - 1] === 0) caps.pop();
  return { ...p, version: p.version.slice(0, 63), caps };
}

function roundTripUsbredir(c: UsbredirCase, p: Packet, peerCaps: readonly number[] | undefined): void {
  const other: Role = c.role === 'host' ? 'guest' : 'host';
  // The sender as the parser saw it: its caps are what the parser was told in its hello.
  const sender = negotiated(other, peerCaps ?? [0], peerCaps ? c.ourCaps : undefined);
  let parts: [Buffer, Buffer];
  try {
    parts = encodePacket(p, sender);
  } catch (err) {
    throw new FuzzFailure(`type ${p.type} as parsed cannot be encoded: ${(err as Error).message}`);
  }
  const again: Packet[] = [];
  const parser = new UsbredirParser(negotiated(c.role, c.ourCaps, peerCaps), (q) => again.push(q));
  try {
    parser.push(Buffer.concat(parts));
  } catch (err) {
    throw new FuzzFailure(`type ${p.type} re-encoded does not parse: ${(err as Error).message}`);
  }
  try {
    assert.deepStrictEqual(normalise(again[0]!), normalise(p));
  } catch (err) {
    throw new FuzzFailure(`type ${p.type} does not round-trip: ${(err as Error).message}`);
  }
}

export function runUsbredirCase(c: UsbredirCase): { packets: number; error: string | undefined } {
  const neg = new Negotiation(c.role, c.ourCaps);
  // Each packet with the peer caps in force when it was parsed (a hello changes them).
  const packets: [Packet, readonly number[] | undefined][] = [];
  const parser = new UsbredirParser(neg, (p) => packets.push([p, p.type === T.Hello ? undefined : neg.peerCaps]));
  const { error } = feed(
    (b) => parser.push(b),
    () => parser.buffered,
    c.bytes,
    c.chunks,
    (e) => e instanceof UsbredirProtocolError,
  );
  let hellos = 0;
  for (const [p, peerCaps] of packets) {
    // A second hello is parsed with the first one's layout; usbredirparser ignores it too.
    if (p.type === T.Hello && hellos++ > 0) continue;
    roundTripUsbredir(c, p, peerCaps);
  }
  return { packets: packets.length, error: error && (error as UsbredirProtocolError).reason };
}

import { encodeSetup, parseSetup, type SetupPacket } from '../../usb/setup.js';
import {
  ISO_DESCRIPTOR_SIZE,
  URB_HEADER_SIZE,
  USBIP_CMD_SUBMIT,
  USBIP_CMD_UNLINK,
  USBIP_RET_SUBMIT,
  USBIP_RET_UNLINK,
} from './constants.js';
import type { Pdu } from './op.js';

/** struct usbip_header_basic. Replies from a server carry devid/direction/ep = 0. */
export interface UrbBasic {
  seqnum: number;
  devid: number;
  /** USBIP_DIR_OUT (0) or USBIP_DIR_IN (1). */
  direction: number;
  /** Endpoint number 0..15, no direction bit. */
  ep: number;
}

/** struct usbip_iso_packet_descriptor. `status` is 0 or a negative errno. */
export interface IsoDescriptor {
  offset: number;
  length: number;
  actualLength: number;
  status: number;
}

export interface CmdSubmit extends UrbBasic {
  kind: 'cmd-submit';
  transferFlags: number;
  transferBufferLength: number;
  startFrame: number;
  /** Signed: non-ISO senders use 0 or -1. */
  numberOfPackets: number;
  interval: number;
  setup: SetupPacket;
  /** OUT data (transferBufferLength bytes); empty for IN. */
  data: Buffer;
  /** Present when numberOfPackets > 0. */
  isoPackets: IsoDescriptor[] | undefined;
}

export interface RetSubmit extends UrbBasic {
  kind: 'ret-submit';
  status: number;
  actualLength: number;
  startFrame: number;
  numberOfPackets: number;
  errorCount: number;
  /** IN data: actualLength bytes (ISO: packed back to back). Empty for OUT. */
  data: Buffer;
  isoPackets: IsoDescriptor[] | undefined;
}

export interface CmdUnlink extends UrbBasic {
  kind: 'cmd-unlink';
  unlinkSeqnum: number;
}

export interface RetUnlink extends UrbBasic {
  kind: 'ret-unlink';
  status: number;
}

export type UrbPacket = CmdSubmit | RetSubmit | CmdUnlink | RetUnlink;

const ZERO_SETUP: SetupPacket = Object.freeze({ bmRequestType: 0, bRequest: 0, wValue: 0, wIndex: 0, wLength: 0 });

function writeBasic(b: Buffer, command: number, u: UrbBasic): void {
  b.writeUInt32BE(command, 0);
  b.writeUInt32BE(u.seqnum >>> 0, 4);
  b.writeUInt32BE(u.devid >>> 0, 8);
  b.writeUInt32BE(u.direction >>> 0, 12);
  b.writeUInt32BE(u.ep >>> 0, 16);
}

export function encodeIsoDescriptors(packets: readonly IsoDescriptor[]): Buffer {
  const b = Buffer.alloc(packets.length * ISO_DESCRIPTOR_SIZE);
  let at = 0;
  for (const p of packets) {
    b.writeUInt32BE(p.offset >>> 0, at);
    b.writeUInt32BE(p.length >>> 0, at + 4);
    b.writeUInt32BE(p.actualLength >>> 0, at + 8);
    b.writeInt32BE(p.status | 0, at + 12);
    at += ISO_DESCRIPTOR_SIZE;
  }
  return b;
}

export function decodeIsoDescriptors(b: Buffer, at: number, count: number): IsoDescriptor[] {
  const out: IsoDescriptor[] = new Array(count);
  for (let i = 0; i < count; i++) {
    const o = at + i * ISO_DESCRIPTOR_SIZE;
    out[i] = {
      offset: b.readUInt32BE(o),
      length: b.readUInt32BE(o + 4),
      actualLength: b.readUInt32BE(o + 8),
      status: b.readInt32BE(o + 12),
    };
  }
  return out;
}

function withPayload(header: Buffer, data: Buffer | readonly Buffer[], iso: readonly IsoDescriptor[] | undefined): Pdu {
  const pdu: Pdu = [header];
  if (Buffer.isBuffer(data)) {
    if (data.length > 0) pdu.push(data);
  } else {
    for (const piece of data) if (piece.length > 0) pdu.push(piece);
  }
  if (iso && iso.length > 0) pdu.push(encodeIsoDescriptors(iso));
  return pdu;
}

export type CmdSubmitFields = Omit<CmdSubmit, 'kind' | 'setup' | 'data' | 'isoPackets'> & {
  setup?: SetupPacket;
  data?: Buffer;
  isoPackets?: readonly IsoDescriptor[];
};

/**
 * A 48-byte URB header from Node's pool (one allocation per transfer otherwise). Every encoder
 * below writes all 48 bytes, zeroing the padding itself.
 */
function header(): Buffer {
  return Buffer.allocUnsafe(URB_HEADER_SIZE);
}

export function encodeCmdSubmit(f: CmdSubmitFields): Pdu {
  const b = header();
  writeBasic(b, USBIP_CMD_SUBMIT, f);
  b.writeUInt32BE(f.transferFlags >>> 0, 0x14);
  b.writeInt32BE(f.transferBufferLength | 0, 0x18);
  b.writeInt32BE(f.startFrame | 0, 0x1c);
  b.writeInt32BE(f.numberOfPackets | 0, 0x20);
  b.writeInt32BE(f.interval | 0, 0x24);
  encodeSetup(f.setup ?? ZERO_SETUP, b, 0x28);
  return withPayload(b, f.data ?? [], f.isoPackets);
}

export type RetSubmitFields = Omit<RetSubmit, 'kind' | 'data' | 'isoPackets'> & {
  /** IN data; a list is written back to back (ISO IN packs packets without copying). */
  data?: Buffer | readonly Buffer[];
  isoPackets?: readonly IsoDescriptor[];
};

export function encodeRetSubmit(f: RetSubmitFields): Pdu {
  const b = header();
  writeBasic(b, USBIP_RET_SUBMIT, f);
  b.writeInt32BE(f.status | 0, 0x14);
  b.writeInt32BE(f.actualLength | 0, 0x18);
  b.writeInt32BE(f.startFrame | 0, 0x1c);
  b.writeInt32BE(f.numberOfPackets | 0, 0x20);
  b.writeInt32BE(f.errorCount | 0, 0x24);
  b.fill(0, 0x28);
  return withPayload(b, f.data ?? [], f.isoPackets);
}

export function encodeCmdUnlink(f: Omit<CmdUnlink, 'kind'>): Pdu {
  const b = header();
  writeBasic(b, USBIP_CMD_UNLINK, f);
  b.writeUInt32BE(f.unlinkSeqnum >>> 0, 0x14);
  b.fill(0, 0x18);
  return [b];
}

export function encodeRetUnlink(f: Omit<RetUnlink, 'kind'>): Pdu {
  const b = header();
  writeBasic(b, USBIP_RET_UNLINK, f);
  b.writeInt32BE(f.status | 0, 0x14);
  b.fill(0, 0x18);
  return [b];
}

/** Fixed header fields of CMD_SUBMIT; the parser adds data and ISO descriptors. */
// The readers below build each packet as one literal with all its fields (no spreads): a fixed
// shape per packet kind keeps the per-PDU hot path monomorphic and allocation-light.

export function readCmdSubmitHeader(b: Buffer, at: number): Omit<CmdSubmit, 'data' | 'isoPackets'> {
  return {
    kind: 'cmd-submit',
    seqnum: b.readUInt32BE(at + 4),
    devid: b.readUInt32BE(at + 8),
    direction: b.readUInt32BE(at + 12),
    ep: b.readUInt32BE(at + 16),
    transferFlags: b.readUInt32BE(at + 0x14),
    transferBufferLength: b.readInt32BE(at + 0x18),
    startFrame: b.readInt32BE(at + 0x1c),
    numberOfPackets: b.readInt32BE(at + 0x20),
    interval: b.readInt32BE(at + 0x24),
    setup: parseSetup(b, at + 0x28),
  };
}

export function readRetSubmitHeader(b: Buffer, at: number): Omit<RetSubmit, 'data' | 'isoPackets'> {
  return {
    kind: 'ret-submit',
    seqnum: b.readUInt32BE(at + 4),
    devid: b.readUInt32BE(at + 8),
    direction: b.readUInt32BE(at + 12),
    ep: b.readUInt32BE(at + 16),
    status: b.readInt32BE(at + 0x14),
    actualLength: b.readInt32BE(at + 0x18),
    startFrame: b.readInt32BE(at + 0x1c),
    numberOfPackets: b.readInt32BE(at + 0x20),
    errorCount: b.readInt32BE(at + 0x24),
  };
}

export function readCmdUnlink(b: Buffer, at: number): CmdUnlink {
  return {
    kind: 'cmd-unlink',
    seqnum: b.readUInt32BE(at + 4),
    devid: b.readUInt32BE(at + 8),
    direction: b.readUInt32BE(at + 12),
    ep: b.readUInt32BE(at + 16),
    unlinkSeqnum: b.readUInt32BE(at + 0x14),
  };
}

export function readRetUnlink(b: Buffer, at: number): RetUnlink {
  return {
    kind: 'ret-unlink',
    seqnum: b.readUInt32BE(at + 4),
    devid: b.readUInt32BE(at + 8),
    direction: b.readUInt32BE(at + 12),
    ep: b.readUInt32BE(at + 16),
    status: b.readInt32BE(at + 0x14),
  };
}

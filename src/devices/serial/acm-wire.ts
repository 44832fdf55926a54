// CDC-ACM wire formats (CDC 1.2 + PSTN 1.2): functional descriptors, line coding, class
// requests and the SERIAL_STATE notification. Pure: bytes in, values out.

export const CDC_CLASS_COMM = 0x02;
export const CDC_SUBCLASS_ACM = 0x02;
export const CDC_PROTOCOL_AT = 0x01;
export const CDC_CLASS_DATA = 0x0a;

export const AcmRequest = {
  SetLineCoding: 0x20,
  GetLineCoding: 0x21,
  SetControlLineState: 0x22,
  SendBreak: 0x23,
} as const;

const CS_INTERFACE = 0x24;
const FD_HEADER = 0x00;
const FD_CALL_MANAGEMENT = 0x01;
const FD_ACM = 0x02;
const FD_UNION = 0x06;

/** ACM bmCapabilities: bit1 line coding / control line state / serial state, bit2 SEND_BREAK. */
export const ACM_CAPABILITIES = 0x02 | 0x04;

/**
 * Header, Call Management (no call management: the host multiplexes nothing over the data
 * interface), ACM and Union, in the order f_acm.c writes them.
 */
export function acmFunctionalDescriptors(commInterface: number, dataInterface: number): Buffer {
  return Buffer.from([
    ...[0x05, CS_INTERFACE, FD_HEADER, 0x10, 0x01],
    ...[0x05, CS_INTERFACE, FD_CALL_MANAGEMENT, 0x00, dataInterface],
    ...[0x04, CS_INTERFACE, FD_ACM, ACM_CAPABILITIES],
    ...[0x05, CS_INTERFACE, FD_UNION, commInterface, dataInterface],
  ]);
}

export const LINE_CODING_SIZE = 7;

export type Parity = 'none' | 'odd' | 'even' | 'mark' | 'space';
export type StopBits = 1 | 1.5 | 2;

export interface LineCoding {
  baud: number;
  dataBits: 5 | 6 | 7 | 8 | 16;
  parity: Parity;
  stopBits: StopBits;
}

const PARITIES: readonly Parity[] = ['none', 'odd', 'even', 'mark', 'space'];
const STOP_BITS: readonly StopBits[] = [1, 1.5, 2];
const DATA_BITS = [5, 6, 7, 8, 16] as const;

/** What a fresh port reports before the host sets anything (f_acm: 9600 8N1). */
export const DEFAULT_LINE_CODING: LineCoding = { baud: 9600, dataBits: 8, parity: 'none', stopBits: 1 };

/** Decode the 7-byte line coding; a string says why it is refused. */
export function parseLineCoding(b: Buffer): LineCoding | string {
  if (b.length !== LINE_CODING_SIZE) return `line coding of ${b.length} bytes (want ${LINE_CODING_SIZE})`;
  const baud = b.readUInt32LE(0);
  const stopBits = STOP_BITS[b[4]!];
  const parity = PARITIES[b[5]!];
  const dataBits = DATA_BITS.find((d) => d === b[6]);
  if (baud === 0) return 'zero baud rate';
  if (stopBits === undefined) return `bCharFormat ${b[4]} (want 0, 1 or 2)`;
  if (parity === undefined) return `bParityType ${b[5]} (want 0..4)`;
  if (dataBits === undefined) return `bDataBits ${b[6]} (want 5, 6, 7, 8 or 16)`;
  return { baud, dataBits, parity, stopBits };
}

export function encodeLineCoding(c: LineCoding): Buffer {
  const b = Buffer.alloc(LINE_CODING_SIZE);
  b.writeUInt32LE(c.baud, 0);
  b[4] = STOP_BITS.indexOf(c.stopBits);
  b[5] = PARITIES.indexOf(c.parity);
  b[6] = c.dataBits;
  return b;
}

/** "115200 8N1", the way terminal programs write it. */
export function describeLineCoding(c: LineCoding): string {
  return `${c.baud} ${c.dataBits}${c.parity[0]!.toUpperCase()}${c.stopBits}`;
}

/** SET_CONTROL_LINE_STATE wValue bits. */
export const ControlLine = { Dtr: 0x01, Rts: 0x02 } as const;

/** SERIAL_STATE bitmap (PSTN 6.5.4): the signals the device reports to the host. */
export const SerialState = {
  Dcd: 0x01,
  Dsr: 0x02,
  Break: 0x04,
  Ring: 0x08,
  Framing: 0x10,
  Parity: 0x20,
  Overrun: 0x40,
} as const;

const NOTIFICATION_SERIAL_STATE = 0x20;
export const SERIAL_STATE_SIZE = 10;

/** The SERIAL_STATE notification: a setup-like header (A1 20 0000 ifnum 0002) and the bitmap. */
export function encodeSerialState(commInterface: number, bitmap: number): Buffer {
  const b = Buffer.alloc(SERIAL_STATE_SIZE);
  b[0] = 0xa1;
  b[1] = NOTIFICATION_SERIAL_STATE;
  b.writeUInt16LE(0, 2);
  b.writeUInt16LE(commInterface, 4);
  b.writeUInt16LE(2, 6);
  b.writeUInt16LE(bitmap, 8);
  return b;
}

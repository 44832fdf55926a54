/** SCSI status bytes (SAM), as carried in a UAS Sense IU. */
export const ScsiStatusByte = {
  Good: 0x00,
  CheckCondition: 0x02,
  Busy: 0x08,
  ReservationConflict: 0x18,
  TaskSetFull: 0x28,
} as const;

export const SenseKey = {
  NoSense: 0x0,
  NotReady: 0x2,
  MediumError: 0x3,
  HardwareError: 0x4,
  IllegalRequest: 0x5,
  UnitAttention: 0x6,
  DataProtect: 0x7,
  AbortedCommand: 0xb,
  Miscompare: 0xe,
} as const;

export interface SenseCode {
  readonly key: number;
  readonly asc: number;
  readonly ascq: number;
}

const code = (key: number, asc: number, ascq: number): SenseCode => Object.freeze({ key, asc, ascq });

/** Sense key / ASC / ASCQ triples (devices.md §1.10, plus SBC/SPC codes for VERIFY and data-phase errors). */
export const Sense = {
  NoSense: code(0x0, 0x00, 0x00),
  BecomingReady: code(0x2, 0x04, 0x01),
  MediumNotPresent: code(0x2, 0x3a, 0x00),
  UnrecoveredReadError: code(0x3, 0x11, 0x00),
  WriteError: code(0x3, 0x0c, 0x02),
  CommunicationFailure: code(0x4, 0x08, 0x00),
  InternalTargetFailure: code(0x4, 0x44, 0x00),
  InvalidCommandOperationCode: code(0x5, 0x20, 0x00),
  LbaOutOfRange: code(0x5, 0x21, 0x00),
  InvalidFieldInCdb: code(0x5, 0x24, 0x00),
  LogicalUnitNotSupported: code(0x5, 0x25, 0x00),
  InvalidFieldInParameterList: code(0x5, 0x26, 0x00),
  SavingParametersNotSupported: code(0x5, 0x39, 0x00),
  MediumRemovalPrevented: code(0x5, 0x53, 0x02),
  MediumMayHaveChanged: code(0x6, 0x28, 0x00),
  /** The medium went away (QEMU's UNIT_ATTENTION_NO_MEDIUM on eject). */
  MediumRemoved: code(0x6, 0x3a, 0x00),
  PowerOnResetOccurred: code(0x6, 0x29, 0x00),
  WriteProtected: code(0x7, 0x27, 0x00),
  DataPhaseError: code(0xb, 0x4b, 0x00),
  OverlappedCommandsAttempted: code(0xb, 0x4e, 0x00),
  Miscompare: code(0xe, 0x1d, 0x00),
} as const;

export const FIXED_SENSE_LENGTH = 18;

/**
 * Fixed-format sense data (SPC, response code 0x70 = current error). `information` (e.g. the
 * failing LBA, or the miscompare offset) sets VALID when it fits the 32-bit field.
 */
export function buildFixedSense(sense: SenseCode, information?: number): Buffer {
  const b = Buffer.alloc(FIXED_SENSE_LENGTH);
  const valid = information !== undefined && information >= 0 && information <= 0xffffffff;
  b[0] = 0x70 | (valid ? 0x80 : 0);
  b[2] = sense.key & 0x0f;
  if (valid) b.writeUInt32BE(information, 3);
  b[7] = FIXED_SENSE_LENGTH - 8;
  b[12] = sense.asc;
  b[13] = sense.ascq;
  return b;
}

export interface ParsedSense extends SenseCode {
  /** Present when the VALID bit is set. */
  information?: number;
}

/** Decodes fixed (0x70/0x71) or descriptor (0x72/0x73) sense data; undefined if unrecognised. */
export function parseSense(b: Buffer): ParsedSense | undefined {
  if (b.length < 1) return undefined;
  const responseCode = b[0]! & 0x7f;
  if ((responseCode === 0x70 || responseCode === 0x71) && b.length >= 14) {
    const parsed: ParsedSense = { key: b[2]! & 0x0f, asc: b[12]!, ascq: b[13]! };
    return b[0]! & 0x80 ? { ...parsed, information: b.readUInt32BE(3) } : parsed;
  }
  if ((responseCode === 0x72 || responseCode === 0x73) && b.length >= 4) {
    return { key: b[1]! & 0x0f, asc: b[2]!, ascq: b[3]! };
  }
  return undefined;
}

export function isSameSense(a: SenseCode, b: SenseCode): boolean {
  return a.key === b.key && a.asc === b.asc && a.ascq === b.ascq;
}

export function describeSense(s: SenseCode): string {
  const hex = (n: number) => n.toString(16).padStart(2, '0');
  return `${hex(s.key)}/${hex(s.asc)}/${hex(s.ascq)}`;
}

export const Op = {
  TestUnitReady: 0x00,
  RequestSense: 0x03,
  Read6: 0x08,
  Write6: 0x0a,
  Inquiry: 0x12,
  ModeSelect6: 0x15,
  ModeSense6: 0x1a,
  StartStopUnit: 0x1b,
  PreventAllowMediumRemoval: 0x1e,
  ReadFormatCapacities: 0x23,
  ReadCapacity10: 0x25,
  Read10: 0x28,
  Write10: 0x2a,
  Verify10: 0x2f,
  SynchronizeCache10: 0x35,
  ModeSelect10: 0x55,
  ModeSense10: 0x5a,
  Read16: 0x88,
  Write16: 0x8a,
  Verify16: 0x8f,
  SynchronizeCache16: 0x91,
  ServiceActionIn16: 0x9e,
  ReportLuns: 0xa0,
  Read12: 0xa8,
  Write12: 0xaa,
} as const;

export const SERVICE_ACTION_READ_CAPACITY_16 = 0x10;

/** CDB length implied by the group code (bits 7:5 of the opcode); undefined for reserved/vendor groups. */
export function cdbLengthForOpcode(opcode: number): number | undefined {
  switch (opcode >> 5) {
    case 0:
      return 6;
    case 1:
    case 2:
      return 10;
    case 4:
      return 16;
    case 5:
      return 12;
    default:
      return undefined;
  }
}

const NAMES = new Map<number, string>(Object.entries(Op).map(([name, value]) => [value, name]));

export function opcodeName(opcode: number): string {
  return NAMES.get(opcode) ?? `opcode 0x${opcode.toString(16).padStart(2, '0')}`;
}

/** Bulk-Only Transport wrappers (USB Mass Storage Class BOT 1.0), little-endian. */
export const CBW_SIZE = 31;
export const CSW_SIZE = 13;
export const CBW_SIGNATURE = 0x43425355;
export const CSW_SIGNATURE = 0x53425355;

export const CswStatus = { Passed: 0, Failed: 1, PhaseError: 2 } as const;

export interface Cbw {
  tag: number;
  dataTransferLength: number;
  /** True for a data-IN (device to host) data stage. */
  dataIn: boolean;
  lun: number;
  cdb: Buffer;
}

/** Parse a CBW; returns a reason string if it is not valid and meaningful. */
export function parseCbw(b: Buffer): Cbw | string {
  if (b.length !== CBW_SIZE) return `CBW of ${b.length} bytes (expected 31)`;
  if (b.readUInt32LE(0) !== CBW_SIGNATURE) return `bad CBW signature 0x${b.readUInt32LE(0).toString(16)}`;
  const flags = b[12]!;
  const cbLength = b[14]! & 0x1f;
  if ((flags & 0x7f) !== 0) return `reserved CBW flag bits set (0x${flags.toString(16)})`;
  if (cbLength < 1 || cbLength > 16) return `bad CBW command length ${cbLength}`;
  return {
    tag: b.readUInt32LE(4),
    dataTransferLength: b.readUInt32LE(8),
    dataIn: (flags & 0x80) !== 0,
    lun: b[13]! & 0x0f,
    cdb: Buffer.from(b.subarray(15, 15 + cbLength)),
  };
}

export function encodeCbw(c: Cbw): Buffer {
  const b = Buffer.alloc(CBW_SIZE);
  b.writeUInt32LE(CBW_SIGNATURE, 0);
  b.writeUInt32LE(c.tag >>> 0, 4);
  b.writeUInt32LE(c.dataTransferLength >>> 0, 8);
  b[12] = c.dataIn ? 0x80 : 0;
  b[13] = c.lun;
  b[14] = c.cdb.length;
  c.cdb.copy(b, 15);
  return b;
}

export function encodeCsw(tag: number, residue: number, status: number): Buffer {
  const b = Buffer.alloc(CSW_SIZE);
  b.writeUInt32LE(CSW_SIGNATURE, 0);
  b.writeUInt32LE(tag >>> 0, 4);
  b.writeUInt32LE(residue >>> 0, 8);
  b[12] = status;
  return b;
}

import { Op } from './opcodes.js';

/** LBA and block count of a READ/WRITE/VERIFY/SYNCHRONIZE CACHE CDB (length already checked). */
export interface BlockExtent {
  /** May exceed Number.MAX_SAFE_INTEGER for hostile 64-bit LBAs; only ever compared. */
  readonly lba: number;
  readonly blocks: number;
}

export function decodeExtent(cdb: Buffer): BlockExtent {
  switch (cdb[0]) {
    case Op.Read6:
    case Op.Write6: {
      const blocks = cdb[4]!;
      // READ(6)/WRITE(6) are the only ones where 0 means 256 blocks.
      return { lba: cdb.readUIntBE(1, 3) & 0x1fffff, blocks: blocks === 0 ? 256 : blocks };
    }
    case Op.Read10:
    case Op.Write10:
    case Op.Verify10:
    case Op.SynchronizeCache10:
      return { lba: cdb.readUInt32BE(2), blocks: cdb.readUInt16BE(7) };
    case Op.Read12:
    case Op.Write12:
      return { lba: cdb.readUInt32BE(2), blocks: cdb.readUInt32BE(6) };
    default: // the 16-byte forms
      return { lba: Number(cdb.readBigUInt64BE(2)), blocks: cdb.readUInt32BE(10) };
  }
}

/** True when [lba, lba+blocks) lies on the medium; an LBA past the end fails even with 0 blocks. */
export function extentInRange(extent: BlockExtent, capacityBlocks: number): boolean {
  return extent.lba < capacityBlocks && extent.lba + extent.blocks <= capacityBlocks;
}

/** RDPROTECT/WRPROTECT/VRPROTECT (byte 1 bits 7:5); READ(6)/WRITE(6) have no such field. */
export function protectionField(cdb: Buffer): number {
  return cdb[0] === Op.Read6 || cdb[0] === Op.Write6 ? 0 : cdb[1]! >> 5;
}

/** FUA (byte 1 bit 3) of WRITE(10/12/16). */
export function forceUnitAccess(cdb: Buffer): boolean {
  return cdb[0] !== Op.Write6 && (cdb[1]! & 0x08) !== 0;
}

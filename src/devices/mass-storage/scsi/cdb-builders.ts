import { Op, SERVICE_ACTION_READ_CAPACITY_16 } from './opcodes.js';

/** CDB constructors for tests and for glue code that synthesizes commands. */

function cdb(length: number, opcode: number, fill?: (b: Buffer) => void): Buffer {
  const b = Buffer.alloc(length);
  b[0] = opcode;
  fill?.(b);
  return b;
}

export interface TransferFlags {
  fua?: boolean;
}

export const Cdb = {
  testUnitReady: () => cdb(6, Op.TestUnitReady),
  requestSense: (allocation = 18, desc = false) =>
    cdb(6, Op.RequestSense, (b) => {
      b[1] = desc ? 1 : 0;
      b[4] = allocation;
    }),
  inquiry: (allocation = 36, vpdPage?: number) =>
    cdb(6, Op.Inquiry, (b) => {
      if (vpdPage !== undefined) {
        b[1] = 0x01;
        b[2] = vpdPage;
      }
      b.writeUInt16BE(allocation, 3);
    }),
  modeSense6: (o: { page?: number; pc?: number; subpage?: number; dbd?: boolean; allocation?: number } = {}) =>
    cdb(6, Op.ModeSense6, (b) => {
      b[1] = o.dbd ? 0x08 : 0;
      b[2] = ((o.pc ?? 0) << 6) | (o.page ?? 0x3f);
      b[3] = o.subpage ?? 0;
      b[4] = o.allocation ?? 192;
    }),
  modeSense10: (
    o: { page?: number; pc?: number; subpage?: number; dbd?: boolean; llbaa?: boolean; allocation?: number } = {},
  ) =>
    cdb(10, Op.ModeSense10, (b) => {
      b[1] = (o.dbd ? 0x08 : 0) | (o.llbaa ? 0x10 : 0);
      b[2] = ((o.pc ?? 0) << 6) | (o.page ?? 0x3f);
      b[3] = o.subpage ?? 0;
      b.writeUInt16BE(o.allocation ?? 192, 7);
    }),
  startStopUnit: (o: { start: boolean; loadEject?: boolean }) =>
    cdb(6, Op.StartStopUnit, (b) => {
      b[4] = (o.start ? 0x01 : 0) | (o.loadEject ? 0x02 : 0);
    }),
  preventAllowMediumRemoval: (prevent: boolean) =>
    cdb(6, Op.PreventAllowMediumRemoval, (b) => {
      b[4] = prevent ? 1 : 0;
    }),
  readFormatCapacities: (allocation = 252) => cdb(10, Op.ReadFormatCapacities, (b) => b.writeUInt16BE(allocation, 7)),
  readCapacity10: () => cdb(10, Op.ReadCapacity10),
  readCapacity16: (allocation = 32) =>
    cdb(16, Op.ServiceActionIn16, (b) => {
      b[1] = SERVICE_ACTION_READ_CAPACITY_16;
      b.writeUInt32BE(allocation, 10);
    }),
  reportLuns: (allocation = 16 + 8 * 16) => cdb(12, Op.ReportLuns, (b) => b.writeUInt32BE(allocation, 6)),
  read6: (lba: number, blocks: number) => rw6(Op.Read6, lba, blocks),
  write6: (lba: number, blocks: number) => rw6(Op.Write6, lba, blocks),
  read10: (lba: number, blocks: number, f: TransferFlags = {}) => rw10(Op.Read10, lba, blocks, f),
  write10: (lba: number, blocks: number, f: TransferFlags = {}) => rw10(Op.Write10, lba, blocks, f),
  read12: (lba: number, blocks: number, f: TransferFlags = {}) => rw12(Op.Read12, lba, blocks, f),
  write12: (lba: number, blocks: number, f: TransferFlags = {}) => rw12(Op.Write12, lba, blocks, f),
  read16: (lba: number | bigint, blocks: number, f: TransferFlags = {}) => rw16(Op.Read16, lba, blocks, f),
  write16: (lba: number | bigint, blocks: number, f: TransferFlags = {}) => rw16(Op.Write16, lba, blocks, f),
  /** byteCheck: 0 = medium only, 1 = compare all data-out, 3 = compare one block against each. */
  verify10: (lba: number, blocks: number, byteCheck = 0) =>
    cdb(10, Op.Verify10, (b) => {
      b[1] = byteCheck << 1;
      b.writeUInt32BE(lba, 2);
      b.writeUInt16BE(blocks, 7);
    }),
  verify16: (lba: number | bigint, blocks: number, byteCheck = 0) =>
    cdb(16, Op.Verify16, (b) => {
      b[1] = byteCheck << 1;
      b.writeBigUInt64BE(BigInt(lba), 2);
      b.writeUInt32BE(blocks, 10);
    }),
  synchronizeCache10: (lba = 0, blocks = 0) =>
    cdb(10, Op.SynchronizeCache10, (b) => {
      b.writeUInt32BE(lba, 2);
      b.writeUInt16BE(blocks, 7);
    }),
  synchronizeCache16: (lba: number | bigint = 0, blocks = 0) =>
    cdb(16, Op.SynchronizeCache16, (b) => {
      b.writeBigUInt64BE(BigInt(lba), 2);
      b.writeUInt32BE(blocks, 10);
    }),
};

/** `blocks` 256 is encoded as 0, as READ(6)/WRITE(6) define. */
function rw6(opcode: number, lba: number, blocks: number): Buffer {
  return cdb(6, opcode, (b) => {
    b.writeUIntBE(lba & 0x1fffff, 1, 3);
    b[4] = blocks & 0xff;
  });
}

function rw10(opcode: number, lba: number, blocks: number, f: TransferFlags): Buffer {
  return cdb(10, opcode, (b) => {
    b[1] = f.fua ? 0x08 : 0;
    b.writeUInt32BE(lba, 2);
    b.writeUInt16BE(blocks, 7);
  });
}

function rw12(opcode: number, lba: number, blocks: number, f: TransferFlags): Buffer {
  return cdb(12, opcode, (b) => {
    b[1] = f.fua ? 0x08 : 0;
    b.writeUInt32BE(lba, 2);
    b.writeUInt32BE(blocks, 6);
  });
}

function rw16(opcode: number, lba: number | bigint, blocks: number, f: TransferFlags): Buffer {
  return cdb(16, opcode, (b) => {
    b[1] = f.fua ? 0x08 : 0;
    b.writeBigUInt64BE(BigInt(lba), 2);
    b.writeUInt32BE(blocks, 10);
  });
}

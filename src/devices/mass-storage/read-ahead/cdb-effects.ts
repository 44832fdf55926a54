import { transferBlocks, transferLba } from '../scsi/cdb-plan.js';
import { Op } from '../scsi/opcodes.js';
import { protectionField } from '../scsi/transfer-fields.js';

/** What a host's command means for cached blocks. */
export type CdbEffect =
  | { kind: 'read'; lba: number; blocks: number }
  /** The blocks may change: forget them. */
  | { kind: 'write'; lba: number; blocks: number }
  | { kind: 'keep' }
  /** Anything else, that could change the medium in ways we do not model: forget everything. */
  | { kind: 'drop-all' };

const KEEP: CdbEffect = Object.freeze({ kind: 'keep' });

const READS = new Set<number>([Op.Read6, Op.Read10, Op.Read12, Op.Read16]);

/** WRITE, WRITE AND VERIFY, WRITE SAME, COMPARE AND WRITE: block-addressed changes. */
const WRITES = new Set<number>([Op.Write6, Op.Write10, Op.Write12, Op.Write16, 0x2e, 0xae, 0x8e, 0x41, 0x93, 0x89]);

const VERIFIES = new Set<number>([Op.Verify10, 0xaf, Op.Verify16]);

/** Commands that neither change the medium nor move data to it. */
const HARMLESS = new Set<number>([
  Op.TestUnitReady,
  Op.RequestSense,
  Op.Inquiry,
  Op.ModeSense6,
  Op.ModeSense10,
  Op.PreventAllowMediumRemoval,
  Op.ReadFormatCapacities,
  Op.ReadCapacity10,
  Op.SynchronizeCache10,
  Op.SynchronizeCache16,
  Op.ServiceActionIn16,
  Op.ReportLuns,
  0x37, // READ DEFECT DATA
  0x4a, // GET EVENT STATUS NOTIFICATION
  0x4d, // LOG SENSE
  0xa3, // MAINTENANCE IN (REPORT SUPPORTED OPERATION CODES...)
]);

export function cdbEffect(cdb: Buffer, hasDataOut: boolean): CdbEffect {
  const opcode = cdb[0];
  if (opcode === undefined || cdb.length < 6) return { kind: 'drop-all' };
  if (READS.has(opcode) && !hasDataOut) {
    return protectionField(cdb) === 0 ? { kind: 'read', lba: transferLba(cdb), blocks: transferBlocks(cdb) } : KEEP;
  }
  const compareAndWrite = opcode === 0x89;
  if (WRITES.has(opcode) || (VERIFIES.has(opcode) && hasDataOut)) {
    const blocks = compareAndWrite ? (cdb[13] ?? 0) : transferBlocks(cdb);
    // WRITE SAME with 0 blocks means up to the end of the medium.
    return blocks === 0 ? { kind: 'drop-all' } : { kind: 'write', lba: transferLba(cdb), blocks };
  }
  if (VERIFIES.has(opcode) || (HARMLESS.has(opcode) && !hasDataOut)) return KEEP;
  return { kind: 'drop-all' };
}

/** Commands that a pending UNIT ATTENTION does not fail (SPC), so their success proves nothing. */
export const UNIT_ATTENTION_EXEMPT = new Set<number>([Op.Inquiry, Op.RequestSense, Op.ReportLuns]);

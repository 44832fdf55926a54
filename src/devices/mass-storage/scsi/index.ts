export { buildReadCapacity10, buildReadCapacity16, buildReadFormatCapacities } from './capacity.js';
export { Cdb, type TransferFlags } from './cdb-builders.js';
export { BLOCK_SIZE } from './decode.js';
export type { DiskIdentity } from './identity.js';
export { buildNoLunInquiry, buildStandardInquiry, STANDARD_INQUIRY_LENGTH, VpdPage } from './inquiry.js';
export { ModePage } from './mode-sense.js';
export { cdbLengthForOpcode, Op, opcodeName } from './opcodes.js';
export { buildReportLuns } from './report-luns.js';
export { type CommandPlan, type DataDirection, ScsiDisk, type ScsiDiskOptions, type ScsiResult } from './scsi-disk.js';
export {
  buildFixedSense,
  describeSense,
  FIXED_SENSE_LENGTH,
  isSameSense,
  type ParsedSense,
  parseSense,
  ScsiStatusByte,
  Sense,
  type SenseCode,
  SenseKey,
} from './sense.js';

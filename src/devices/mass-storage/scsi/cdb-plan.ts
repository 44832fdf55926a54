import { BLOCK_SIZE } from './decode.js';
import { Op, SERVICE_ACTION_READ_CAPACITY_16 } from './opcodes.js';
import { decodeExtent } from './transfer-fields.js';

/** Data phase a CDB asks for, as an initiator must announce it in a CBW or a UAS COMMAND IU. */
export interface CdbPlan {
  readonly direction: 'in' | 'out' | 'none';
  readonly length: number;
}

const NONE: CdbPlan = Object.freeze({ direction: 'none', length: 0 });

const plan = (direction: 'in' | 'out', length: number): CdbPlan => (length > 0 ? { direction, length } : NONE);
const u16 = (cdb: Buffer, at: number) => (cdb.length >= at + 2 ? cdb.readUInt16BE(at) : 0);
const u24 = (cdb: Buffer, at: number) => (cdb.length >= at + 3 ? cdb.readUIntBE(at, 3) : 0);
const u32 = (cdb: Buffer, at: number) => (cdb.length >= at + 4 ? cdb.readUInt32BE(at) : 0);
const byte = (cdb: Buffer, at: number) => cdb[at] ?? 0;

/** Block count of a block-addressed CDB by its size group (6, 10, 12, 16 bytes). */
export function transferBlocks(cdb: Buffer): number {
  switch (cdb.length >= 6 ? byte(cdb, 0) >> 5 : -1) {
    case 0:
      return decodeExtent(cdb).blocks;
    case 1:
    case 2:
      return u16(cdb, 7);
    case 5:
      return u32(cdb, 6);
    case 4:
      return u32(cdb, 10);
    default:
      return 0;
  }
}

/** LBA of a block-addressed CDB (0 when the CDB is too short; may exceed 2^53 for hostile CDBs). */
export function transferLba(cdb: Buffer): number {
  const group = cdb.length >= 6 ? byte(cdb, 0) >> 5 : -1;
  if (group === 0) return decodeExtent(cdb).lba;
  if (group === 4) return cdb.length >= 10 ? Number(cdb.readBigUInt64BE(2)) : 0;
  return u32(cdb, 2);
}

const VERIFY_OPS = new Set<number>([Op.Verify10, 0xaf, Op.Verify16]);

/** VERIFY with BYTCHK: none (0), all blocks (1), one block compared against each (3). */
function verifyPlan(cdb: Buffer, blockSize: number): CdbPlan {
  const byteCheck = (byte(cdb, 1) >> 1) & 0x03;
  if (byteCheck === 0 || byteCheck === 2) return NONE;
  return plan('out', byteCheck === 1 ? transferBlocks(cdb) * blockSize : blockSize);
}

/** ATA PASS-THROUGH (12)/(16): SAT-4 T_DIR, BYT_BLOK, T_TYPE, T_LENGTH. */
function ataPassThroughPlan(cdb: Buffer, blockSize: number): CdbPlan {
  const sixteen = byte(cdb, 0) === 0x85;
  const protocol = (byte(cdb, 1) >> 1) & 0x0f;
  const flags = byte(cdb, 2);
  const tLength = flags & 0x03;
  // Protocols 0-3 (hard reset, SRST, non-data...) and 15 (return response) move no data.
  if (tLength === 0 || protocol < 4 || protocol === 15) return NONE;
  const extend = sixteen && (byte(cdb, 1) & 0x01) !== 0;
  let count: number;
  if (tLength === 3) return NONE; // length in the TPSIU: not used by usb-storage hosts
  if (tLength === 1) count = sixteen ? byte(cdb, 4) | (extend ? byte(cdb, 3) << 8 : 0) : byte(cdb, 3);
  else count = sixteen ? byte(cdb, 6) | (extend ? byte(cdb, 5) << 8 : 0) : byte(cdb, 4);
  const byteBlock = (flags & 0x04) !== 0;
  const unit = byteBlock ? ((flags & 0x10) !== 0 ? blockSize : 512) : 1;
  return plan((flags & 0x08) !== 0 ? 'in' : 'out', count * unit);
}

type Planner = (cdb: Buffer, blockSize: number) => CdbPlan;

const blocksIn: Planner = (cdb, bs) => plan('in', transferBlocks(cdb) * bs);
const blocksOut: Planner = (cdb, bs) => plan('out', transferBlocks(cdb) * bs);
const none: Planner = () => NONE;
const inAt =
  (read: (cdb: Buffer) => number): Planner =>
  (cdb) =>
    plan('in', read(cdb));
const outAt =
  (read: (cdb: Buffer) => number): Planner =>
  (cdb) =>
    plan('out', read(cdb));

const PLANNERS = new Map<number, Planner>([
  [Op.TestUnitReady, none],
  [Op.RequestSense, inAt((c) => byte(c, 4))],
  [Op.Read6, blocksIn],
  [Op.Write6, blocksOut],
  [Op.Inquiry, inAt((c) => u16(c, 3))],
  [Op.ModeSelect6, outAt((c) => byte(c, 4))],
  [Op.ModeSense6, inAt((c) => byte(c, 4))],
  [Op.StartStopUnit, none],
  [0x1d, outAt((c) => u16(c, 3))], // SEND DIAGNOSTIC
  [Op.PreventAllowMediumRemoval, none],
  [Op.ReadFormatCapacities, inAt((c) => u16(c, 7))],
  [Op.ReadCapacity10, () => plan('in', 8)],
  [Op.Read10, blocksIn],
  [Op.Write10, blocksOut],
  [0x2e, blocksOut], // WRITE AND VERIFY (10)
  [Op.SynchronizeCache10, none],
  [0x37, inAt((c) => u16(c, 7))], // READ DEFECT DATA (10)
  [0x3b, outAt((c) => u24(c, 6))], // WRITE BUFFER
  [0x3c, inAt((c) => u24(c, 6))], // READ BUFFER
  [0x41, (_c, bs) => plan('out', bs)], // WRITE SAME (10)
  [0x42, outAt((c) => u16(c, 7))], // UNMAP
  [0x43, inAt((c) => u16(c, 7))], // READ TOC/PMA/ATIP
  [0x46, inAt((c) => u16(c, 7))], // GET CONFIGURATION
  [0x4a, inAt((c) => u16(c, 7))], // GET EVENT STATUS NOTIFICATION
  [0x4c, outAt((c) => u16(c, 7))], // LOG SELECT
  [0x4d, inAt((c) => u16(c, 7))], // LOG SENSE
  [Op.ModeSelect10, outAt((c) => u16(c, 7))],
  [Op.ModeSense10, inAt((c) => u16(c, 7))],
  [0x5e, inAt((c) => u16(c, 7))], // PERSISTENT RESERVE IN
  [0x5f, outAt((c) => u32(c, 5))], // PERSISTENT RESERVE OUT
  [0x85, ataPassThroughPlan], // ATA PASS-THROUGH (16)
  [Op.Read16, blocksIn],
  [0x89, (c, bs) => plan('out', 2 * byte(c, 13) * bs)], // COMPARE AND WRITE
  [Op.Write16, blocksOut],
  [0x8e, blocksOut], // WRITE AND VERIFY (16)
  [Op.SynchronizeCache16, none],
  [0x93, (c, bs) => ((byte(c, 1) & 0x01) !== 0 ? NONE : plan('out', bs))], // WRITE SAME (16), NDOB
  [Op.ServiceActionIn16, inAt((c) => u32(c, 10))], // READ CAPACITY (16), GET LBA STATUS...
  [Op.ReportLuns, inAt((c) => u32(c, 6))],
  [0xa1, ataPassThroughPlan], // ATA PASS-THROUGH (12)
  [0xa2, inAt((c) => u32(c, 6))], // SECURITY PROTOCOL IN
  [0xa3, inAt((c) => u32(c, 6))], // MAINTENANCE IN: REPORT SUPPORTED OPERATION CODES / TMFs
  [Op.Read12, blocksIn],
  [Op.Write12, blocksOut],
  [0xae, blocksOut], // WRITE AND VERIFY (12)
  [0xb5, outAt((c) => u32(c, 6))], // SECURITY PROTOCOL OUT
]);

/**
 * Direction and length of the data phase of a CDB, from its opcode (SPC/SBC/SAT/MMC), for the
 * commands Linux and Windows send to a disk. Unknown opcodes plan no data. Block-addressed
 * commands use `blockSize` (see CdbPlanner, which learns it from READ CAPACITY).
 */
export function planCdb(cdb: Buffer, blockSize = BLOCK_SIZE): CdbPlan {
  if (cdb.length === 0) return NONE;
  const opcode = cdb[0]!;
  if (VERIFY_OPS.has(opcode)) return verifyPlan(cdb, blockSize);
  return (PLANNERS.get(opcode) ?? none)(cdb, blockSize);
}

/** planCdb with the block size taken from the READ CAPACITY replies it has been shown. */
export class CdbPlanner {
  blockSize = BLOCK_SIZE;
  /** Number of blocks, once a READ CAPACITY reply was seen. */
  capacityBlocks: number | undefined;

  plan(cdb: Buffer): CdbPlan {
    return planCdb(cdb, this.blockSize);
  }

  /** Learn from a successful command's data-in. */
  observe(cdb: Buffer, data: Buffer | undefined): void {
    if (!data) return;
    const capacity = parseCapacityReply(cdb, data);
    if (!capacity) return;
    this.blockSize = capacity.blockSize;
    this.capacityBlocks = capacity.blocks;
  }
}

/** Block size and count from a READ CAPACITY (10) or (16) reply; undefined for anything else. */
export function parseCapacityReply(cdb: Buffer, data: Buffer): { blocks: number; blockSize: number } | undefined {
  let lastLba: number;
  let blockSize: number;
  if (cdb[0] === Op.ReadCapacity10 && data.length >= 8) {
    lastLba = data.readUInt32BE(0);
    blockSize = data.readUInt32BE(4);
    if (lastLba === 0xffffffff) return undefined; // the host must ask READ CAPACITY (16)
  } else if (
    cdb[0] === Op.ServiceActionIn16 &&
    (byte(cdb, 1) & 0x1f) === SERVICE_ACTION_READ_CAPACITY_16 &&
    data.length >= 12
  ) {
    lastLba = Number(data.readBigUInt64BE(0));
    blockSize = data.readUInt32BE(8);
  } else return undefined;
  if (blockSize < 256 || blockSize > 65536 || !Number.isSafeInteger(lastLba + 1)) return undefined;
  return { blocks: lastLba + 1, blockSize };
}

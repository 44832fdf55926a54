import { buildReadCapacity10, buildReadCapacity16, buildReadFormatCapacities } from './capacity.js';
import type { DiskIdentity } from './identity.js';
import { buildStandardInquiry, buildVpdPage } from './inquiry.js';
import { buildModeSense } from './mode-sense.js';
import { cdbLengthForOpcode, Op, SERVICE_ACTION_READ_CAPACITY_16 } from './opcodes.js';
import { buildReportLuns } from './report-luns.js';
import { Sense, type SenseCode } from './sense.js';
import { decodeExtent, extentInRange, forceUnitAccess, protectionField } from './transfer-fields.js';

export const BLOCK_SIZE = 512;

/** Everything decoding depends on; decoding itself never changes it. */
export interface DecodeContext {
  readonly identity: DiskIdentity;
  readonly capacityBlocks: number;
  readonly readOnly: boolean;
  readonly mediumPresent: boolean;
  readonly unitAttention: SenseCode | undefined;
  readonly maxTransferBlocks: number;
  readonly luns: readonly number[];
}

export type VerifyCompare = 'none' | 'full' | 'single-block';

/** A CDB checked against the current state; byte offsets/lengths are in bytes. */
export type DecodedCommand =
  | { kind: 'fail'; sense: SenseCode; information?: number; unitAttention?: boolean }
  | { kind: 'reply'; data: Buffer }
  | { kind: 'request-sense'; allocation: number }
  | { kind: 'no-data' }
  | { kind: 'start-stop'; loadEject: boolean; start: boolean }
  | { kind: 'prevent-removal'; prevent: boolean }
  | { kind: 'synchronize-cache' }
  | { kind: 'read'; offset: number; length: number }
  | { kind: 'write'; offset: number; length: number; fua: boolean }
  | { kind: 'verify'; offset: number; length: number; compare: VerifyCompare };

const fail = (sense: SenseCode, information?: number): DecodedCommand =>
  information === undefined ? { kind: 'fail', sense } : { kind: 'fail', sense, information };

/** Commands that neither report nor clear a pending unit attention (SPC). */
const UNIT_ATTENTION_EXEMPT = new Set<number>([Op.Inquiry, Op.RequestSense, Op.ReportLuns]);
/** Commands that work without a medium (the rest fail NOT READY, MEDIUM NOT PRESENT). */
const NO_MEDIUM_OK = new Set<number>([
  Op.Inquiry,
  Op.RequestSense,
  Op.ReportLuns,
  Op.ModeSense6,
  Op.ModeSense10,
  Op.StartStopUnit,
  Op.PreventAllowMediumRemoval,
  Op.ReadFormatCapacities,
]);

export function decodeCommand(cdb: Buffer, ctx: DecodeContext): DecodedCommand {
  if (cdb.length === 0) return fail(Sense.InvalidCommandOperationCode);
  const opcode = cdb[0]!;
  const handler = HANDLERS.get(opcode);
  if (ctx.unitAttention && !UNIT_ATTENTION_EXEMPT.has(opcode)) {
    return { kind: 'fail', sense: ctx.unitAttention, unitAttention: true };
  }
  if (!handler) return fail(Sense.InvalidCommandOperationCode);
  if (cdb.length < (cdbLengthForOpcode(opcode) ?? 0)) return fail(Sense.InvalidFieldInCdb);
  if (!ctx.mediumPresent && !NO_MEDIUM_OK.has(opcode)) return fail(Sense.MediumNotPresent);
  return handler(cdb, ctx);
}

type Handler = (cdb: Buffer, ctx: DecodeContext) => DecodedCommand;

function reply(data: Buffer, allocation: number): DecodedCommand {
  return { kind: 'reply', data: data.length > allocation ? data.subarray(0, allocation) : data };
}

const inquiry: Handler = (cdb, ctx) => {
  const evpd = (cdb[1]! & 0x01) !== 0;
  const cmdDt = (cdb[1]! & 0x02) !== 0;
  const page = cdb[2]!;
  const allocation = cdb.readUInt16BE(3);
  if (cmdDt || (!evpd && page !== 0)) return fail(Sense.InvalidFieldInCdb);
  if (!evpd) return reply(buildStandardInquiry(ctx.identity), allocation);
  const vpd = buildVpdPage(page, ctx);
  return vpd ? reply(vpd, allocation) : fail(Sense.InvalidFieldInCdb);
};

const requestSense: Handler = (cdb) => {
  // We only produce fixed-format sense; SPC says DESC=1 then fails INVALID FIELD IN CDB.
  if (cdb[1]! & 0x01) return fail(Sense.InvalidFieldInCdb);
  return { kind: 'request-sense', allocation: cdb[4]! };
};

const modeSense: Handler = (cdb, ctx) => {
  const tenByte = cdb[0] === Op.ModeSense10;
  const result = buildModeSense(
    {
      tenByte,
      disableBlockDescriptors: (cdb[1]! & 0x08) !== 0,
      longLba: tenByte && (cdb[1]! & 0x10) !== 0,
      pageControl: cdb[2]! >> 6,
      page: cdb[2]! & 0x3f,
      subpage: cdb[3]!,
    },
    { readOnly: ctx.readOnly, blocks: ctx.mediumPresent ? ctx.capacityBlocks : 0, blockSize: BLOCK_SIZE },
  );
  if (!Buffer.isBuffer(result)) return fail(result);
  return reply(result, tenByte ? cdb.readUInt16BE(7) : cdb[4]!);
};

const readCapacity10: Handler = (cdb, ctx) => {
  const pmi = (cdb[8]! & 0x01) !== 0;
  if (!pmi && cdb.readUInt32BE(2) !== 0) return fail(Sense.InvalidFieldInCdb);
  return { kind: 'reply', data: buildReadCapacity10(ctx.capacityBlocks, BLOCK_SIZE) };
};

const serviceActionIn16: Handler = (cdb, ctx) => {
  if ((cdb[1]! & 0x1f) !== SERVICE_ACTION_READ_CAPACITY_16) return fail(Sense.InvalidFieldInCdb);
  return reply(buildReadCapacity16(ctx.capacityBlocks, BLOCK_SIZE), cdb.readUInt32BE(10));
};

const readFormatCapacities: Handler = (cdb, ctx) =>
  reply(buildReadFormatCapacities(ctx.capacityBlocks, BLOCK_SIZE, ctx.mediumPresent), cdb.readUInt16BE(7));

const reportLuns: Handler = (cdb, ctx) => {
  const selectReport = cdb[2]!;
  const allocation = cdb.readUInt32BE(6);
  if (selectReport > 0x02 || allocation < 16) return fail(Sense.InvalidFieldInCdb);
  // Select report 1 asks for well-known LUNs only; we have none.
  return reply(buildReportLuns(selectReport === 0x01 ? [] : ctx.luns), allocation);
};

const startStopUnit: Handler = (cdb) => {
  const powerCondition = cdb[4]! >> 4;
  // A non-zero POWER CONDITION makes START and LOEJ ignored (SBC); we have no power states.
  if (powerCondition !== 0) return { kind: 'no-data' };
  return { kind: 'start-stop', loadEject: (cdb[4]! & 0x02) !== 0, start: (cdb[4]! & 0x01) !== 0 };
};

const preventAllow: Handler = (cdb) => {
  const prevent = cdb[4]! & 0x03;
  if (prevent > 1) return fail(Sense.InvalidFieldInCdb); // persistent prevention is obsolete
  return { kind: 'prevent-removal', prevent: prevent === 1 };
};

const readWrite: Handler = (cdb, ctx) => {
  const isWrite = cdb[0] === Op.Write6 || cdb[0] === Op.Write10 || cdb[0] === Op.Write12 || cdb[0] === Op.Write16;
  if (isWrite && ctx.readOnly) return fail(Sense.WriteProtected);
  if (protectionField(cdb) !== 0) return fail(Sense.InvalidFieldInCdb);
  const extent = decodeExtent(cdb);
  if (!extentInRange(extent, ctx.capacityBlocks)) return fail(Sense.LbaOutOfRange, extent.lba);
  // Checked after the range so a huge transfer is never sized, let alone allocated.
  if (extent.blocks > ctx.maxTransferBlocks) return fail(Sense.InvalidFieldInCdb);
  const offset = extent.lba * BLOCK_SIZE;
  const length = extent.blocks * BLOCK_SIZE;
  return isWrite ? { kind: 'write', offset, length, fua: forceUnitAccess(cdb) } : { kind: 'read', offset, length };
};

const BYTCHK_MODES: readonly (VerifyCompare | undefined)[] = ['none', 'full', undefined, 'single-block'];

const verify: Handler = (cdb, ctx) => {
  const compare = BYTCHK_MODES[(cdb[1]! >> 1) & 0x03];
  if (!compare || protectionField(cdb) !== 0) return fail(Sense.InvalidFieldInCdb);
  const extent = decodeExtent(cdb);
  if (!extentInRange(extent, ctx.capacityBlocks)) return fail(Sense.LbaOutOfRange, extent.lba);
  if (compare !== 'none' && extent.blocks > ctx.maxTransferBlocks) return fail(Sense.InvalidFieldInCdb);
  return { kind: 'verify', offset: extent.lba * BLOCK_SIZE, length: extent.blocks * BLOCK_SIZE, compare };
};

const synchronizeCache: Handler = (cdb, ctx) => {
  const extent = decodeExtent(cdb); // 0 blocks = up to the end of the medium
  if (!extentInRange(extent, ctx.capacityBlocks)) return fail(Sense.LbaOutOfRange, extent.lba);
  return { kind: 'synchronize-cache' };
};

const HANDLERS = new Map<number, Handler>([
  [Op.TestUnitReady, () => ({ kind: 'no-data' })],
  [Op.RequestSense, requestSense],
  [Op.Inquiry, inquiry],
  [Op.ModeSense6, modeSense],
  [Op.ModeSense10, modeSense],
  [Op.StartStopUnit, startStopUnit],
  [Op.PreventAllowMediumRemoval, preventAllow],
  [Op.ReadFormatCapacities, readFormatCapacities],
  [Op.ReadCapacity10, readCapacity10],
  [Op.ServiceActionIn16, serviceActionIn16],
  [Op.ReportLuns, reportLuns],
  [Op.Read6, readWrite],
  [Op.Read10, readWrite],
  [Op.Read12, readWrite],
  [Op.Read16, readWrite],
  [Op.Write6, readWrite],
  [Op.Write10, readWrite],
  [Op.Write12, readWrite],
  [Op.Write16, readWrite],
  [Op.Verify10, verify],
  [Op.Verify16, verify],
  [Op.SynchronizeCache10, synchronizeCache],
  [Op.SynchronizeCache16, synchronizeCache],
]);

import { asciiField, type DiskIdentity, naaLocallyAssigned } from './identity.js';

export const STANDARD_INQUIRY_LENGTH = 36;
const PERIPHERAL_DISK = 0x00;
/** SPC-3, like QEMU: lets a UAS host use RC16 first and probe VPD pages (BOT hosts skip VPD anyway). */
const VERSION_SPC3 = 0x05;

export function buildStandardInquiry(identity: DiskIdentity): Buffer {
  const b = Buffer.alloc(STANDARD_INQUIRY_LENGTH);
  b[0] = PERIPHERAL_DISK;
  b[1] = identity.removable ? 0x80 : 0;
  b[2] = VERSION_SPC3;
  b[3] = 0x10 | 0x02; // HISUP, response data format 2
  b[4] = STANDARD_INQUIRY_LENGTH - 5;
  b[7] = identity.taggedQueuing ? 0x02 : 0; // CMDQUE
  asciiField(identity.vendor, 8).copy(b, 8);
  asciiField(identity.product, 16).copy(b, 16);
  asciiField(identity.revision, 4).copy(b, 32);
  return b;
}

/**
 * Standard INQUIRY data for a LUN that does not exist (PQ 3, PDT 0x1F): INQUIRY to such a LUN
 * must still succeed (f_mass_storage `bad_lun_okay`).
 */
export function buildNoLunInquiry(): Buffer {
  const b = Buffer.alloc(STANDARD_INQUIRY_LENGTH);
  b[0] = 0x7f;
  b[2] = VERSION_SPC3;
  b[3] = 0x02;
  b[4] = STANDARD_INQUIRY_LENGTH - 5;
  return b;
}

export const VpdPage = {
  SupportedPages: 0x00,
  UnitSerialNumber: 0x80,
  DeviceIdentification: 0x83,
  BlockLimits: 0xb0,
  BlockDeviceCharacteristics: 0xb1,
} as const;

export interface VpdContext {
  readonly identity: DiskIdentity;
  readonly maxTransferBlocks: number;
}

/** The VPD page, or undefined when it is not supported (caller answers INVALID FIELD IN CDB). */
export function buildVpdPage(page: number, ctx: VpdContext): Buffer | undefined {
  switch (page) {
    case VpdPage.SupportedPages:
      return vpd(page, Buffer.from(supportedPages(ctx.identity)));
    case VpdPage.UnitSerialNumber:
      return ctx.identity.serial === undefined ? undefined : vpd(page, Buffer.from(ctx.identity.serial, 'ascii'));
    case VpdPage.DeviceIdentification:
      return vpd(page, deviceIdentification(ctx.identity));
    case VpdPage.BlockLimits:
      return vpd(page, blockLimits(ctx.maxTransferBlocks));
    case VpdPage.BlockDeviceCharacteristics:
      return vpd(page, blockDeviceCharacteristics());
    default:
      return undefined;
  }
}

function supportedPages(identity: DiskIdentity): number[] {
  const pages: number[] = [VpdPage.SupportedPages];
  if (identity.serial !== undefined) pages.push(VpdPage.UnitSerialNumber);
  pages.push(VpdPage.DeviceIdentification, VpdPage.BlockLimits, VpdPage.BlockDeviceCharacteristics);
  return pages;
}

function vpd(page: number, body: Buffer): Buffer {
  const header = Buffer.alloc(4);
  header[0] = PERIPHERAL_DISK;
  header[1] = page;
  header.writeUInt16BE(body.length, 2);
  return Buffer.concat([header, body]);
}

const CODE_SET_BINARY = 0x1;
const CODE_SET_ASCII = 0x2;
const DESIGNATOR_T10_VENDOR = 0x1;
const DESIGNATOR_NAA = 0x3;

function designator(codeSet: number, type: number, value: Buffer): Buffer {
  // Association 0 (the logical unit), protocol identifier not valid (PIV 0).
  return Buffer.concat([Buffer.from([codeSet, type, 0, value.length]), value]);
}

function deviceIdentification(identity: DiskIdentity): Buffer {
  const t10Value = Buffer.concat([
    asciiField(identity.vendor, 8),
    asciiField(identity.product, 16),
    Buffer.from(identity.serial ?? '', 'ascii'),
  ]);
  const designators = [designator(CODE_SET_ASCII, DESIGNATOR_T10_VENDOR, t10Value)];
  if (identity.serial !== undefined) {
    designators.push(designator(CODE_SET_BINARY, DESIGNATOR_NAA, naaLocallyAssigned(identity)));
  }
  return Buffer.concat(designators);
}

const LONG_VPD_BODY = 0x3c;

function blockLimits(maxTransferBlocks: number): Buffer {
  const b = Buffer.alloc(LONG_VPD_BODY); // offsets below are page offsets − 4
  b.writeUInt32BE(maxTransferBlocks, 8 - 4); // MAXIMUM TRANSFER LENGTH
  // Optimal granularity/length, UNMAP and WRITE SAME limits: 0 = not reported / unsupported.
  return b;
}

function blockDeviceCharacteristics(): Buffer {
  const b = Buffer.alloc(LONG_VPD_BODY);
  b.writeUInt16BE(0x0001, 4 - 4); // MEDIUM ROTATION RATE: non-rotating
  return b;
}

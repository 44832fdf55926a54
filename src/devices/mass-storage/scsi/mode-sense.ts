import { Sense, type SenseCode } from './sense.js';

export const ModePage = {
  Caching: 0x08,
  Control: 0x0a,
  InformationalExceptions: 0x1c,
  All: 0x3f,
} as const;

export const PageControl = { Current: 0, Changeable: 1, Default: 2, Saved: 3 } as const;

export interface ModeSenseRequest {
  readonly tenByte: boolean;
  /** DBD: leave out the block descriptor. */
  readonly disableBlockDescriptors: boolean;
  /** LLBAA (MODE SENSE(10) only): 16-byte block descriptor. */
  readonly longLba: boolean;
  readonly pageControl: number;
  readonly page: number;
  readonly subpage: number;
}

export interface ModeSenseMedium {
  readonly readOnly: boolean;
  readonly blocks: number;
  readonly blockSize: number;
}

const DEVICE_SPECIFIC_WP = 0x80;
/** DPOFUA: we honour FUA on writes, so the host may use it. */
const DEVICE_SPECIFIC_DPOFUA = 0x10;

/** Full (untruncated) MODE SENSE parameter data, or the sense code to fail with. */
export function buildModeSense(req: ModeSenseRequest, medium: ModeSenseMedium): Buffer | SenseCode {
  if (req.pageControl === PageControl.Saved) return Sense.SavingParametersNotSupported;
  // We have no subpages: subpage 0xFF ("all subpages") yields subpage 0 only.
  if (req.subpage !== 0x00 && req.subpage !== 0xff) return Sense.InvalidFieldInCdb;
  const pages = selectPages(req.page, req.pageControl === PageControl.Changeable);
  if (!pages) return Sense.InvalidFieldInCdb;

  const blockDescriptor = req.disableBlockDescriptors ? Buffer.alloc(0) : buildBlockDescriptor(req, medium);
  const headerLength = req.tenByte ? 8 : 4;
  const header = Buffer.alloc(headerLength);
  const deviceSpecific = DEVICE_SPECIFIC_DPOFUA | (medium.readOnly ? DEVICE_SPECIFIC_WP : 0);
  const total = headerLength + blockDescriptor.length + pages.length;
  if (req.tenByte) {
    header.writeUInt16BE(total - 2, 0);
    header[3] = deviceSpecific;
    header[4] = blockDescriptor.length === 16 ? 0x01 : 0; // LONGLBA
    header.writeUInt16BE(blockDescriptor.length, 6);
  } else {
    header[0] = Math.min(total - 1, 0xff);
    header[2] = deviceSpecific;
    header[3] = blockDescriptor.length;
  }
  return Buffer.concat([header, blockDescriptor, pages]);
}

function buildBlockDescriptor(req: ModeSenseRequest, medium: ModeSenseMedium): Buffer {
  if (req.tenByte && req.longLba) {
    const b = Buffer.alloc(16);
    b.writeBigUInt64BE(BigInt(medium.blocks), 0);
    b.writeUInt32BE(medium.blockSize, 12);
    return b;
  }
  // SBC short LBA descriptor: NUMBER OF LOGICAL BLOCKS saturates at 0xFFFFFFFF.
  const b = Buffer.alloc(8);
  b.writeUInt32BE(Math.min(medium.blocks, 0xffffffff), 0);
  b.writeUIntBE(medium.blockSize, 5, 3);
  return b;
}

/** Pages in ascending page-code order (as page 0x3F requires), or undefined for an unknown page. */
function selectPages(page: number, changeable: boolean): Buffer | undefined {
  const builders: Record<number, (changeable: boolean) => Buffer> = {
    [ModePage.Caching]: cachingPage,
    [ModePage.Control]: controlPage,
    [ModePage.InformationalExceptions]: informationalExceptionsPage,
  };
  if (page === ModePage.All) {
    return Buffer.concat(
      Object.keys(builders)
        .map(Number)
        .sort((a, b) => a - b)
        .map((p) => builders[p]!(changeable)),
    );
  }
  return builders[page]?.(changeable);
}

/** Nothing is changeable (no MODE SELECT), so a PC=1 page is all zeros after its 2-byte header. */
function page(code: number, length: number, fill: (b: Buffer) => void, changeable: boolean): Buffer {
  const b = Buffer.alloc(2 + length);
  b[0] = code;
  b[1] = length;
  if (!changeable) fill(b);
  return b;
}

function cachingPage(changeable: boolean): Buffer {
  return page(
    ModePage.Caching,
    0x12,
    (b) => {
      b[2] = 0x04; // WCE: writes land in the OS page cache; SYNCHRONIZE CACHE/FUA make them durable
      b.writeUInt16BE(0xffff, 4); // DISABLE PRE-FETCH TRANSFER LENGTH
      b.writeUInt16BE(0xffff, 8); // MAXIMUM PRE-FETCH
      b.writeUInt16BE(0xffff, 10); // MAXIMUM PRE-FETCH CEILING
    },
    changeable,
  );
}

function controlPage(changeable: boolean): Buffer {
  // All defaults: fixed-format sense (D_SENSE 0), restricted reordering, QErr 0.
  return page(ModePage.Control, 0x0a, () => {}, changeable);
}

function informationalExceptionsPage(changeable: boolean): Buffer {
  return page(
    ModePage.InformationalExceptions,
    0x0a,
    (b) => {
      b[2] = 0x08; // DEXCPT: no informational exception reporting
    },
    changeable,
  );
}

/** READ CAPACITY(10): last LBA (0xFFFFFFFF when it does not fit, telling the host to use RC16). */
export function buildReadCapacity10(blocks: number, blockSize: number): Buffer {
  const b = Buffer.alloc(8);
  b.writeUInt32BE(Math.min(blocks - 1, 0xffffffff), 0);
  b.writeUInt32BE(blockSize, 4);
  return b;
}

export const READ_CAPACITY_16_LENGTH = 32;

/** READ CAPACITY(16): no protection, one logical block per physical block, no thin provisioning. */
export function buildReadCapacity16(blocks: number, blockSize: number): Buffer {
  const b = Buffer.alloc(READ_CAPACITY_16_LENGTH);
  b.writeBigUInt64BE(BigInt(blocks - 1), 0);
  b.writeUInt32BE(blockSize, 8);
  return b;
}

const DESCRIPTOR_FORMATTED_MEDIA = 0x02;
const DESCRIPTOR_NO_MEDIA = 0x03;

/** READ FORMAT CAPACITIES (UFI; Windows): capacity list header + current/maximum capacity descriptor. */
export function buildReadFormatCapacities(blocks: number, blockSize: number, mediumPresent: boolean): Buffer {
  const b = Buffer.alloc(12);
  b[3] = 8; // capacity list length
  b.writeUInt32BE(Math.min(blocks, 0xffffffff), 4);
  b[8] = mediumPresent ? DESCRIPTOR_FORMATTED_MEDIA : DESCRIPTOR_NO_MEDIA;
  b.writeUIntBE(blockSize, 9, 3);
  return b;
}

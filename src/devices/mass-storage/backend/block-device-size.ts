import { readFile } from 'node:fs/promises';

/**
 * Size in bytes of a Linux block device, from /sys/dev/block/MAJ:MIN/size (always counted in
 * 512-byte units). stat() reports 0 for block devices and Node has no BLKGETSIZE64 ioctl.
 */
export async function blockDeviceSize(rdev: bigint): Promise<number | undefined> {
  const major = ((rdev >> 8n) & 0xfffn) | ((rdev >> 32n) & ~0xfffn);
  const minor = (rdev & 0xffn) | ((rdev >> 12n) & ~0xffn);
  try {
    const text = await readFile(`/sys/dev/block/${major}:${minor}/size`, 'utf8');
    const sectors = Number.parseInt(text.trim(), 10);
    return Number.isSafeInteger(sectors * 512) ? sectors * 512 : undefined;
  } catch {
    return undefined;
  }
}

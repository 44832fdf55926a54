export type UsbSpeed = 'low' | 'full' | 'high' | 'super' | 'super-plus';

export function isSuperSpeed(speed: UsbSpeed): boolean {
  return speed === 'super' || speed === 'super-plus';
}

/** Bulk wMaxPacketSize at a speed (the only one allowed at high speed and SuperSpeed). */
export function bulkMaxPacket(speed: UsbSpeed): number {
  return isSuperSpeed(speed) ? 1024 : speed === 'high' ? 512 : 64;
}

/** Max packet size of endpoint 0 in the device descriptor for each speed (SuperSpeed: exponent 9). */
export function ep0MaxPacketFor(speed: UsbSpeed): number {
  return speed === 'low' ? 8 : speed === 'full' ? 64 : speed === 'high' ? 64 : 9;
}

/** Milliseconds between packets of an iso endpoint: 2^(bInterval-1) (micro)frames. */
export function isoIntervalMs(speed: UsbSpeed, bInterval: number): number {
  const frames = 2 ** (Math.min(16, Math.max(1, bInterval)) - 1);
  return speed === 'full' || speed === 'low' ? frames : frames / 8;
}

export type UsbSpeed = 'low' | 'full' | 'high' | 'super' | 'super-plus';

/** Max packet size of endpoint 0 in the device descriptor for each speed (SuperSpeed: exponent 9). */
export function ep0MaxPacketFor(speed: UsbSpeed): number {
  return speed === 'low' ? 8 : speed === 'full' ? 64 : speed === 'high' ? 64 : 9;
}

import type { ParsedEndpoint } from './descriptors.js';
import type { UsbDevice } from './device.js';

/** A device that carries USB 3 bulk streams: `Transfer.streamId` 1..n after allocStreams granted n. */
export type UsbStreams = Required<Pick<UsbDevice, 'allocStreams' | 'freeStreams'>>;

export function hasStreams(device: UsbDevice): device is UsbDevice & UsbStreams {
  return typeof device.allocStreams === 'function' && typeof device.freeStreams === 'function';
}

/**
 * Streams a SuperSpeed bulk endpoint supports, from its companion descriptor's bmAttributes
 * (MaxStreams in bits 4:0 is an exponent; 16 is the largest the spec defines): 0 for none.
 */
export function maxStreamsOf(ep: Pick<ParsedEndpoint, 'type' | 'companionAttributes'>): number {
  if (ep.type !== 'bulk' || ep.companionAttributes === undefined) return 0;
  const exponent = Math.min(ep.companionAttributes & 0x1f, 16);
  return exponent === 0 ? 0 : 2 ** exponent;
}

import { packetTypeName } from '../../protocol/usbredir/constants.js';
import type { Packet } from '../../protocol/usbredir/packets.js';

export const EMPTY = Buffer.alloc(0);

export function hex2(n: number): string {
  return n.toString(16).padStart(2, '0');
}

export function hex4(n: number): string {
  return n.toString(16).padStart(4, '0');
}

export function describePacket(p: Packet): string {
  return `${packetTypeName(p.type)} id ${p.id}`;
}

import { packetTypeName } from '../../protocol/usbredir/constants.js';
import type { Packet } from '../../protocol/usbredir/packets.js';

export const EMPTY = Buffer.alloc(0);

export function describePacket(p: Packet): string {
  return `${packetTypeName(p.type)} id ${p.id}`;
}

import {
  Cap,
  isKnownPacketType,
  MAX_BULK_TRANSFER_SIZE,
  MAX_INTERFACES,
  packetTypeName,
  PacketType as T,
} from './constants.js';
import { UsbredirProtocolError } from './errors.js';
import type { Layout, Negotiation } from './negotiation.js';
import type { Packet } from './packets.js';

type Flow = 'to-host' | 'to-guest' | 'both';

const FLOW: Record<number, Flow> = {
  [T.Hello]: 'both',
  [T.DeviceConnect]: 'to-guest',
  [T.DeviceDisconnect]: 'to-guest',
  [T.Reset]: 'to-host',
  [T.InterfaceInfo]: 'to-guest',
  [T.EpInfo]: 'to-guest',
  [T.SetConfiguration]: 'to-host',
  [T.GetConfiguration]: 'to-host',
  [T.ConfigurationStatus]: 'to-guest',
  [T.SetAltSetting]: 'to-host',
  [T.GetAltSetting]: 'to-host',
  [T.AltSettingStatus]: 'to-guest',
  [T.StartIsoStream]: 'to-host',
  [T.StopIsoStream]: 'to-host',
  [T.IsoStreamStatus]: 'to-guest',
  [T.StartInterruptReceiving]: 'to-host',
  [T.StopInterruptReceiving]: 'to-host',
  [T.InterruptReceivingStatus]: 'to-guest',
  [T.AllocBulkStreams]: 'to-host',
  [T.FreeBulkStreams]: 'to-host',
  [T.BulkStreamsStatus]: 'to-guest',
  [T.CancelDataPacket]: 'to-host',
  [T.FilterReject]: 'to-host',
  [T.FilterFilter]: 'both',
  [T.DeviceDisconnectAck]: 'to-host',
  [T.StartBulkReceiving]: 'to-host',
  [T.StopBulkReceiving]: 'to-host',
  [T.BulkReceivingStatus]: 'to-guest',
  [T.ControlPacket]: 'both',
  [T.BulkPacket]: 'both',
  [T.IsoPacket]: 'both',
  [T.InterruptPacket]: 'both',
  [T.BufferedBulkPacket]: 'to-guest',
};

const FIXED_SIZE: Record<number, number> = {
  [T.Hello]: 64,
  [T.DeviceDisconnect]: 0,
  [T.Reset]: 0,
  [T.InterfaceInfo]: 4 + 4 * MAX_INTERFACES,
  [T.SetConfiguration]: 1,
  [T.GetConfiguration]: 0,
  [T.ConfigurationStatus]: 2,
  [T.SetAltSetting]: 2,
  [T.GetAltSetting]: 1,
  [T.AltSettingStatus]: 3,
  [T.StartIsoStream]: 3,
  [T.StopIsoStream]: 1,
  [T.IsoStreamStatus]: 2,
  [T.StartInterruptReceiving]: 1,
  [T.StopInterruptReceiving]: 1,
  [T.InterruptReceivingStatus]: 2,
  [T.AllocBulkStreams]: 8,
  [T.FreeBulkStreams]: 4,
  [T.BulkStreamsStatus]: 9,
  [T.CancelDataPacket]: 0,
  [T.FilterReject]: 0,
  [T.FilterFilter]: 0,
  [T.DeviceDisconnectAck]: 0,
  [T.StartBulkReceiving]: 10,
  [T.StopBulkReceiving]: 5,
  [T.BulkReceivingStatus]: 6,
  [T.ControlPacket]: 10,
  [T.IsoPacket]: 4,
  [T.InterruptPacket]: 4,
  [T.BufferedBulkPacket]: 10,
};

/** Packet types that may carry data after their type header (direction checked separately). */
const MAY_CARRY_DATA = new Set<number>([
  T.Hello,
  T.FilterFilter,
  T.ControlPacket,
  T.BulkPacket,
  T.IsoPacket,
  T.InterruptPacket,
  T.BufferedBulkPacket,
]);

export function mayCarryData(type: number): boolean {
  return MAY_CARRY_DATA.has(type);
}

/** Size of the type-specific header on this connection. */
export function typeHeaderSize(type: number, layout: Layout): number {
  switch (type) {
    case T.DeviceConnect:
      return layout.deviceConnectSize;
    case T.EpInfo:
      return layout.epInfoSize;
    case T.BulkPacket:
      return layout.bulkHeaderSize;
    default:
      return FIXED_SIZE[type] ?? -1;
  }
}

/** Whether a packet of `type` goes to the host side, seen from `neg` receiving or sending it. */
function goesToHost(neg: Negotiation, sending: boolean): boolean {
  return (neg.role === 'host') !== sending;
}

/** Type and direction check, possible from the 12/16-byte header alone. */
export function checkTypeAndDirection(type: number, neg: Negotiation, sending: boolean): void {
  if (!isKnownPacketType(type)) {
    throw new UsbredirProtocolError('unknown-type', `unknown packet type ${type}`, type);
  }
  const flow = FLOW[type]!;
  if (flow === 'both') return;
  const toHost = goesToHost(neg, sending);
  if ((flow === 'to-host') !== toHost) {
    const where = toHost ? 'to a usb-host' : 'to a usb-guest';
    throw new UsbredirProtocolError('wrong-direction', `${packetTypeName(type)} sent ${where}`, type);
  }
}

/** Endpoint and length of a data packet's transfer, for the data direction rule. */
function dataTransfer(p: Packet): { endpoint: number; length: number } | undefined {
  switch (p.type) {
    case T.ControlPacket:
    case T.BulkPacket:
    case T.IsoPacket:
    case T.InterruptPacket:
    case T.BufferedBulkPacket:
      return { endpoint: p.endpoint, length: p.length };
    default:
      return undefined;
  }
}

function requireCap(neg: Negotiation, sending: boolean, cap: number, type: number, capName: string): void {
  const ok = sending ? neg.peerHas(cap) : neg.weHave(cap);
  if (!ok) {
    const who = sending ? 'peer lacks' : 'we lack';
    throw new UsbredirProtocolError('missing-capability', `${packetTypeName(type)} but ${who} cap ${capName}`, type);
  }
}

function requireIn(endpoint: number, type: number): void {
  if (!(endpoint & 0x80)) {
    const ep = endpoint.toString(16).padStart(2, '0');
    throw new UsbredirProtocolError('not-an-in-endpoint', `${packetTypeName(type)} on non-IN endpoint ${ep}`, type);
  }
}

/**
 * The checks of usbredirparser_verify_type_header, on a packet whose type header is decoded and
 * whose data (of `dataLength` bytes) has not been read or allocated yet.
 */
export function verifyTypeHeader(p: Packet, dataLength: number, neg: Negotiation, sending: boolean): void {
  const type = p.type;
  switch (p.type) {
    case T.InterfaceInfo:
      if (p.interfaces.length > MAX_INTERFACES) {
        throw new UsbredirProtocolError('too-many-interfaces', `interface_count ${p.interfaces.length} > 32`, type);
      }
      break;
    case T.StartInterruptReceiving:
    case T.StopInterruptReceiving:
    case T.InterruptReceivingStatus:
      requireIn(p.endpoint, type);
      break;
    case T.FilterReject:
    case T.FilterFilter:
      requireCap(neg, sending, Cap.Filter, type, 'filter');
      if (p.type === T.FilterFilter && dataLength < 1) {
        throw new UsbredirProtocolError('bad-filter-data', 'filter_filter without data', type);
      }
      break;
    case T.DeviceDisconnectAck:
      requireCap(neg, sending, Cap.DeviceDisconnectAck, type, 'device_disconnect_ack');
      break;
    case T.StartBulkReceiving:
      requireCap(neg, sending, Cap.BulkReceiving, type, 'bulk_receiving');
      if (p.bytesPerTransfer > MAX_BULK_TRANSFER_SIZE) {
        throw new UsbredirProtocolError(
          'transfer-too-long',
          `bytes_per_transfer ${p.bytesPerTransfer} > ${MAX_BULK_TRANSFER_SIZE}`,
          type,
        );
      }
      requireIn(p.endpoint, type);
      break;
    case T.StopBulkReceiving:
    case T.BulkReceivingStatus:
      requireCap(neg, sending, Cap.BulkReceiving, type, 'bulk_receiving');
      requireIn(p.endpoint, type);
      break;
    case T.BulkPacket:
      if (p.length > MAX_BULK_TRANSFER_SIZE) {
        throw new UsbredirProtocolError(
          'transfer-too-long',
          `bulk length ${p.length} > ${MAX_BULK_TRANSFER_SIZE}`,
          type,
        );
      }
      break;
    case T.BufferedBulkPacket:
      requireCap(neg, sending, Cap.BulkReceiving, type, 'bulk_receiving');
      if (p.length > MAX_BULK_TRANSFER_SIZE) {
        throw new UsbredirProtocolError(
          'transfer-too-long',
          `buffered bulk length ${p.length} > ${MAX_BULK_TRANSFER_SIZE}`,
          type,
        );
      }
      break;
  }

  const transfer = dataTransfer(p);
  if (!transfer) return;
  const toHost = goesToHost(neg, sending);
  const isIn = (transfer.endpoint & 0x80) !== 0;
  const ep = transfer.endpoint.toString(16).padStart(2, '0');
  if (isIn !== toHost) {
    // Data flows with this packet: IN data to the guest, OUT data to the host.
    if (dataLength !== transfer.length) {
      throw new UsbredirProtocolError(
        'data-length-mismatch',
        `${packetTypeName(type)} ep ${ep}: ${dataLength} data bytes but header length ${transfer.length}`,
        type,
      );
    }
    return;
  }
  if (dataLength !== 0) {
    throw new UsbredirProtocolError(
      'unexpected-data',
      `${packetTypeName(type)} ep ${ep} carries unexpected data`,
      type,
    );
  }
  const wrongWay = type === T.IsoPacket || type === T.BufferedBulkPacket || (type === T.InterruptPacket && toHost);
  if (wrongWay) {
    throw new UsbredirProtocolError(
      'wrong-direction',
      `${packetTypeName(type)} ep ${ep} sent in the wrong direction`,
      type,
    );
  }
}

import { HELLO_VERSION_SIZE, MAX_ENDPOINTS, MAX_INTERFACES, PacketType as T } from './constants.js';
import { UsbredirProtocolError } from './errors.js';
import type { Layout, Negotiation } from './negotiation.js';
import type { EpInfoEntry, InterfaceInfoEntry, Packet } from './packets.js';
import { checkTypeAndDirection, typeHeaderSize, verifyTypeHeader } from './rules.js';

const EMPTY = Buffer.alloc(0);

/**
 * Decode a type-specific header (exactly `typeHeaderSize` bytes). Data-bearing fields (hello
 * caps, filter string, transfer data) are left empty for `attachData`.
 */
export function decodeTypeHeader(type: number, id: bigint, b: Buffer, layout: Layout): Packet {
  switch (type) {
    case T.Hello: {
      const nul = b.indexOf(0);
      const version = b.toString('latin1', 0, nul < 0 || nul > HELLO_VERSION_SIZE ? HELLO_VERSION_SIZE : nul);
      return { type, id, version, caps: [] };
    }
    case T.DeviceConnect:
      return {
        type,
        id,
        speed: b[0]!,
        deviceClass: b[1]!,
        deviceSubclass: b[2]!,
        deviceProtocol: b[3]!,
        vendorId: b.readUInt16LE(4),
        productId: b.readUInt16LE(6),
        deviceVersionBcd: layout.deviceConnectSize === 10 ? b.readUInt16LE(8) : 0,
      };
    case T.DeviceDisconnect:
    case T.Reset:
    case T.GetConfiguration:
    case T.CancelDataPacket:
    case T.FilterReject:
    case T.DeviceDisconnectAck:
      return { type, id };
    case T.InterfaceInfo: {
      const count = b.readUInt32LE(0);
      if (count > MAX_INTERFACES) {
        throw new UsbredirProtocolError('too-many-interfaces', `interface_count ${count} > 32`, type);
      }
      const interfaces: InterfaceInfoEntry[] = [];
      for (let i = 0; i < count; i++) {
        interfaces.push({
          number: b[4 + i]!,
          interfaceClass: b[4 + 32 + i]!,
          interfaceSubclass: b[4 + 64 + i]!,
          interfaceProtocol: b[4 + 96 + i]!,
        });
      }
      return { type, id, interfaces };
    }
    case T.EpInfo: {
      const endpoints: EpInfoEntry[] = [];
      for (let i = 0; i < MAX_ENDPOINTS; i++) {
        endpoints.push({
          type: b[i]!,
          interval: b[32 + i]!,
          interface: b[64 + i]!,
          maxPacketSize: layout.epInfoSize >= 160 ? b.readUInt16LE(96 + 2 * i) : 0,
          maxStreams: layout.epInfoSize === 288 ? b.readUInt32LE(160 + 4 * i) : 0,
        });
      }
      return { type, id, endpoints };
    }
    case T.SetConfiguration:
      return { type, id, configuration: b[0]! };
    case T.ConfigurationStatus:
      return { type, id, status: b[0]!, configuration: b[1]! };
    case T.SetAltSetting:
      return { type, id, interface: b[0]!, alt: b[1]! };
    case T.GetAltSetting:
      return { type, id, interface: b[0]! };
    case T.AltSettingStatus:
      return { type, id, status: b[0]!, interface: b[1]!, alt: b[2]! };
    case T.StartIsoStream:
      return { type, id, endpoint: b[0]!, pktsPerUrb: b[1]!, noUrbs: b[2]! };
    case T.StopIsoStream:
    case T.StartInterruptReceiving:
    case T.StopInterruptReceiving:
      return { type, id, endpoint: b[0]! };
    case T.IsoStreamStatus:
    case T.InterruptReceivingStatus:
      return { type, id, status: b[0]!, endpoint: b[1]! };
    case T.AllocBulkStreams:
      return { type, id, endpoints: b.readUInt32LE(0), noStreams: b.readUInt32LE(4) };
    case T.FreeBulkStreams:
      return { type, id, endpoints: b.readUInt32LE(0) };
    case T.BulkStreamsStatus:
      return { type, id, endpoints: b.readUInt32LE(0), noStreams: b.readUInt32LE(4), status: b[8]! };
    case T.FilterFilter:
      return { type, id, filter: '' };
    case T.StartBulkReceiving:
      return {
        type,
        id,
        streamId: b.readUInt32LE(0),
        bytesPerTransfer: b.readUInt32LE(4),
        endpoint: b[8]!,
        noTransfers: b[9]!,
      };
    case T.StopBulkReceiving:
      return { type, id, streamId: b.readUInt32LE(0), endpoint: b[4]! };
    case T.BulkReceivingStatus:
      return { type, id, streamId: b.readUInt32LE(0), endpoint: b[4]!, status: b[5]! };
    case T.ControlPacket:
      return {
        type,
        id,
        endpoint: b[0]!,
        request: b[1]!,
        requestType: b[2]!,
        status: b[3]!,
        value: b.readUInt16LE(4),
        index: b.readUInt16LE(6),
        length: b.readUInt16LE(8),
        data: EMPTY,
      };
    case T.BulkPacket: {
      const high = layout.bulkHeaderSize === 10 ? b.readUInt16LE(8) : 0;
      return {
        type,
        id,
        endpoint: b[0]!,
        status: b[1]!,
        length: b.readUInt16LE(2) + high * 0x10000,
        streamId: b.readUInt32LE(4),
        data: EMPTY,
      };
    }
    case T.IsoPacket:
    case T.InterruptPacket:
      return { type, id, endpoint: b[0]!, status: b[1]!, length: b.readUInt16LE(2), data: EMPTY };
    case T.BufferedBulkPacket:
      return {
        type,
        id,
        streamId: b.readUInt32LE(0),
        length: b.readUInt32LE(4),
        endpoint: b[8]!,
        status: b[9]!,
        data: EMPTY,
      };
    default:
      throw new UsbredirProtocolError('unknown-type', `unknown packet type ${type}`, type);
  }
}

/** Put the data part of a packet in place (hello caps, filter string, transfer data). */
export function attachData(p: Packet, data: Buffer): void {
  switch (p.type) {
    case T.Hello:
      for (let o = 0; o + 4 <= data.length; o += 4) p.caps.push(data.readUInt32LE(o));
      break;
    case T.FilterFilter:
      if (data.length < 1 || data[data.length - 1] !== 0) {
        throw new UsbredirProtocolError('bad-filter-data', 'filter_filter data is not NUL-terminated', p.type);
      }
      p.filter = data.toString('latin1', 0, data.length - 1);
      break;
    case T.ControlPacket:
    case T.BulkPacket:
    case T.IsoPacket:
    case T.InterruptPacket:
    case T.BufferedBulkPacket:
      p.data = data;
      break;
  }
}

function u8(v: number, what: string): number {
  if (!Number.isInteger(v) || v < 0 || v > 0xff)
    throw new UsbredirProtocolError('bad-value', `${what} ${v} is not a u8`);
  return v;
}
function u16(v: number, what: string): number {
  if (!Number.isInteger(v) || v < 0 || v > 0xffff) {
    throw new UsbredirProtocolError('bad-value', `${what} ${v} is not a u16`);
  }
  return v;
}
function u32(v: number, what: string): number {
  if (!Number.isInteger(v) || v < 0 || v > 0xffffffff) {
    throw new UsbredirProtocolError('bad-value', `${what} ${v} is not a u32`);
  }
  return v;
}

function writeTypeHeader(p: Packet, b: Buffer, layout: Layout): void {
  switch (p.type) {
    case T.Hello:
      b.write(p.version.slice(0, HELLO_VERSION_SIZE - 1), 0, 'latin1');
      break;
    case T.DeviceConnect:
      b[0] = u8(p.speed, 'speed');
      b[1] = u8(p.deviceClass, 'device_class');
      b[2] = u8(p.deviceSubclass, 'device_subclass');
      b[3] = u8(p.deviceProtocol, 'device_protocol');
      b.writeUInt16LE(u16(p.vendorId, 'vendor_id'), 4);
      b.writeUInt16LE(u16(p.productId, 'product_id'), 6);
      if (layout.deviceConnectSize === 10) b.writeUInt16LE(u16(p.deviceVersionBcd, 'device_version_bcd'), 8);
      break;
    case T.InterfaceInfo:
      if (p.interfaces.length > MAX_INTERFACES) {
        throw new UsbredirProtocolError('too-many-interfaces', `${p.interfaces.length} interfaces > 32`, p.type);
      }
      b.writeUInt32LE(p.interfaces.length, 0);
      p.interfaces.forEach((e, i) => {
        b[4 + i] = u8(e.number, 'interface');
        b[4 + 32 + i] = u8(e.interfaceClass, 'interface_class');
        b[4 + 64 + i] = u8(e.interfaceSubclass, 'interface_subclass');
        b[4 + 96 + i] = u8(e.interfaceProtocol, 'interface_protocol');
      });
      break;
    case T.EpInfo:
      if (p.endpoints.length !== MAX_ENDPOINTS) {
        throw new UsbredirProtocolError('bad-value', `ep_info needs 32 entries, got ${p.endpoints.length}`, p.type);
      }
      p.endpoints.forEach((e, i) => {
        b[i] = u8(e.type, 'ep type');
        b[32 + i] = u8(e.interval, 'interval');
        b[64 + i] = u8(e.interface, 'interface');
        if (layout.epInfoSize >= 160) b.writeUInt16LE(u16(e.maxPacketSize, 'max_packet_size'), 96 + 2 * i);
        if (layout.epInfoSize === 288) b.writeUInt32LE(u32(e.maxStreams, 'max_streams'), 160 + 4 * i);
      });
      break;
    case T.SetConfiguration:
      b[0] = u8(p.configuration, 'configuration');
      break;
    case T.ConfigurationStatus:
      b[0] = u8(p.status, 'status');
      b[1] = u8(p.configuration, 'configuration');
      break;
    case T.SetAltSetting:
      b[0] = u8(p.interface, 'interface');
      b[1] = u8(p.alt, 'alt');
      break;
    case T.GetAltSetting:
      b[0] = u8(p.interface, 'interface');
      break;
    case T.AltSettingStatus:
      b[0] = u8(p.status, 'status');
      b[1] = u8(p.interface, 'interface');
      b[2] = u8(p.alt, 'alt');
      break;
    case T.StartIsoStream:
      b[0] = u8(p.endpoint, 'endpoint');
      b[1] = u8(p.pktsPerUrb, 'pkts_per_urb');
      b[2] = u8(p.noUrbs, 'no_urbs');
      break;
    case T.StopIsoStream:
    case T.StartInterruptReceiving:
    case T.StopInterruptReceiving:
      b[0] = u8(p.endpoint, 'endpoint');
      break;
    case T.IsoStreamStatus:
    case T.InterruptReceivingStatus:
      b[0] = u8(p.status, 'status');
      b[1] = u8(p.endpoint, 'endpoint');
      break;
    case T.AllocBulkStreams:
      b.writeUInt32LE(u32(p.endpoints, 'endpoints'), 0);
      b.writeUInt32LE(u32(p.noStreams, 'no_streams'), 4);
      break;
    case T.FreeBulkStreams:
      b.writeUInt32LE(u32(p.endpoints, 'endpoints'), 0);
      break;
    case T.BulkStreamsStatus:
      b.writeUInt32LE(u32(p.endpoints, 'endpoints'), 0);
      b.writeUInt32LE(u32(p.noStreams, 'no_streams'), 4);
      b[8] = u8(p.status, 'status');
      break;
    case T.StartBulkReceiving:
      b.writeUInt32LE(u32(p.streamId, 'stream_id'), 0);
      b.writeUInt32LE(u32(p.bytesPerTransfer, 'bytes_per_transfer'), 4);
      b[8] = u8(p.endpoint, 'endpoint');
      b[9] = u8(p.noTransfers, 'no_transfers');
      break;
    case T.StopBulkReceiving:
      b.writeUInt32LE(u32(p.streamId, 'stream_id'), 0);
      b[4] = u8(p.endpoint, 'endpoint');
      break;
    case T.BulkReceivingStatus:
      b.writeUInt32LE(u32(p.streamId, 'stream_id'), 0);
      b[4] = u8(p.endpoint, 'endpoint');
      b[5] = u8(p.status, 'status');
      break;
    case T.ControlPacket:
      b[0] = u8(p.endpoint, 'endpoint');
      b[1] = u8(p.request, 'request');
      b[2] = u8(p.requestType, 'requesttype');
      b[3] = u8(p.status, 'status');
      b.writeUInt16LE(u16(p.value, 'value'), 4);
      b.writeUInt16LE(u16(p.index, 'index'), 6);
      b.writeUInt16LE(u16(p.length, 'length'), 8);
      break;
    case T.BulkPacket:
      b[0] = u8(p.endpoint, 'endpoint');
      b[1] = u8(p.status, 'status');
      if (layout.bulkHeaderSize === 10) {
        u32(p.length, 'length');
        b.writeUInt16LE(p.length & 0xffff, 2);
        b.writeUInt16LE(Math.floor(p.length / 0x10000), 8);
      } else {
        b.writeUInt16LE(u16(p.length, 'bulk length without 32bits_bulk_length'), 2);
      }
      b.writeUInt32LE(u32(p.streamId, 'stream_id'), 4);
      break;
    case T.IsoPacket:
    case T.InterruptPacket:
      b[0] = u8(p.endpoint, 'endpoint');
      b[1] = u8(p.status, 'status');
      b.writeUInt16LE(u16(p.length, 'length'), 2);
      break;
    case T.BufferedBulkPacket:
      b.writeUInt32LE(u32(p.streamId, 'stream_id'), 0);
      b.writeUInt32LE(u32(p.length, 'length'), 4);
      b[8] = u8(p.endpoint, 'endpoint');
      b[9] = u8(p.status, 'status');
      break;
  }
}

function dataOf(p: Packet): Buffer {
  switch (p.type) {
    case T.Hello: {
      const words = p.caps.length > 0 ? p.caps : [0];
      const b = Buffer.alloc(4 * words.length);
      for (const [i, w] of words.entries()) b.writeUInt32LE(w >>> 0, 4 * i);
      return b;
    }
    case T.FilterFilter:
      return Buffer.from(`${p.filter}\0`, 'latin1');
    case T.ControlPacket:
    case T.BulkPacket:
    case T.IsoPacket:
    case T.InterruptPacket:
    case T.BufferedBulkPacket:
      return p.data;
    default:
      return EMPTY;
  }
}

/**
 * Encode a packet for this connection as [header + type header, data] (data may be empty), for
 * cork/writev without copying the data. Throws UsbredirProtocolError for a packet the peer's
 * parser would reject (wrong direction, missing cap, data in the wrong direction...).
 */
export function encodePacket(p: Packet, neg: Negotiation): [Buffer, Buffer] {
  checkTypeAndDirection(p.type, neg, true);
  const data = dataOf(p);
  verifyTypeHeader(p, data.length, neg, true);
  const layout = neg.layout;
  // As in usbredirparser: the header size of the moment. Our hello goes out before the peer's
  // hello is parsed, so it always has the 12-byte header; a (pointless) later hello would not.
  const headerSize = layout.headerSize;
  const thSize = typeHeaderSize(p.type, layout);
  const head = Buffer.alloc(headerSize + thSize);
  head.writeUInt32LE(p.type, 0);
  head.writeUInt32LE(thSize + data.length, 4);
  if (p.id < 0n || p.id > (headerSize === 16 ? 0xffffffffffffffffn : 0xffffffffn)) {
    throw new UsbredirProtocolError(
      'bad-value',
      `id ${p.id} does not fit a ${headerSize === 16 ? 64 : 32}-bit id`,
      p.type,
    );
  }
  if (headerSize === 16) head.writeBigUInt64LE(p.id, 8);
  else head.writeUInt32LE(Number(p.id), 8);
  writeTypeHeader(p, head.subarray(headerSize), layout);
  return [head, data];
}

/** usbredir protocol 0.7 numbers (usbredirproto.h). */

export const PacketType = {
  Hello: 0,
  DeviceConnect: 1,
  DeviceDisconnect: 2,
  Reset: 3,
  InterfaceInfo: 4,
  EpInfo: 5,
  SetConfiguration: 6,
  GetConfiguration: 7,
  ConfigurationStatus: 8,
  SetAltSetting: 9,
  GetAltSetting: 10,
  AltSettingStatus: 11,
  StartIsoStream: 12,
  StopIsoStream: 13,
  IsoStreamStatus: 14,
  StartInterruptReceiving: 15,
  StopInterruptReceiving: 16,
  InterruptReceivingStatus: 17,
  AllocBulkStreams: 18,
  FreeBulkStreams: 19,
  BulkStreamsStatus: 20,
  CancelDataPacket: 21,
  FilterReject: 22,
  FilterFilter: 23,
  DeviceDisconnectAck: 24,
  StartBulkReceiving: 25,
  StopBulkReceiving: 26,
  BulkReceivingStatus: 27,
  ControlPacket: 100,
  BulkPacket: 101,
  IsoPacket: 102,
  InterruptPacket: 103,
  BufferedBulkPacket: 104,
} as const;
export type PacketType = (typeof PacketType)[keyof typeof PacketType];

const TYPE_NAMES = new Map<number, string>(
  Object.entries(PacketType).map(([name, n]) => [
    n,
    name.replace(/[A-Z]/g, (c, i) => (i ? '_' : '') + c.toLowerCase()),
  ]),
);

/** "bulk_packet" for 101, "type 77" for unknown numbers. */
export function packetTypeName(type: number): string {
  return TYPE_NAMES.get(type) ?? `type ${type}`;
}

export function isKnownPacketType(type: number): type is PacketType {
  return TYPE_NAMES.has(type);
}

/** Capability bit numbers (bit n of caps word n / 32). */
export const Cap = {
  BulkStreams: 0,
  ConnectDeviceVersion: 1,
  Filter: 2,
  DeviceDisconnectAck: 3,
  EpInfoMaxPacketSize: 4,
  Ids64Bits: 5,
  BulkLength32Bits: 6,
  BulkReceiving: 7,
} as const;
export type Cap = (typeof Cap)[keyof typeof Cap];

export const Status = {
  Success: 0,
  Cancelled: 1,
  Inval: 2,
  IoError: 3,
  Stall: 4,
  Timeout: 5,
  Babble: 6,
} as const;

export const Speed = { Low: 0, Full: 1, High: 2, Super: 3, Unknown: 255 } as const;

export const EndpointKind = { Control: 0, Iso: 1, Bulk: 2, Interrupt: 3, Invalid: 255 } as const;

/** Longest `length` a packet may announce (usbredirparser MAX_PACKET_SIZE). */
export const MAX_PACKET_SIZE = 1024 + 128 * 1024 * 1024;
/** Longest bulk / buffered bulk transfer (MAX_BULK_TRANSFER_SIZE). */
export const MAX_BULK_TRANSFER_SIZE = 128 * 1024 * 1024;

export const HELLO_VERSION_SIZE = 64;
export const HEADER_SIZE_32 = 12;
export const HEADER_SIZE_64 = 16;
export const MAX_INTERFACES = 32;
export const MAX_ENDPOINTS = 32;

/** Index used by ep_info arrays and stream bitmasks: 0-15 OUT, 16-31 IN. */
export function endpointIndex(address: number): number {
  return ((address & 0x80) >> 3) | (address & 0x0f);
}

export function endpointAddress(index: number): number {
  return ((index & 0x10) << 3) | (index & 0x0f);
}

import { EndpointKind, type PacketType as T } from './constants.js';

/**
 * Typed usbredir packets. `id` is the header id (guest-chosen for requests, echoed in replies,
 * host counters for streams, 0 for unsolicited ones). Status fields keep the raw byte so unknown
 * codes survive; map them with `statusFromRedir`.
 */
interface Base<K extends number> {
  type: K;
  id: bigint;
}

export interface HelloPacket extends Base<typeof T.Hello> {
  version: string;
  /** Capability words; a receiver treats missing words as 0. */
  caps: number[];
}
export interface DeviceConnectPacket extends Base<typeof T.DeviceConnect> {
  speed: number;
  deviceClass: number;
  deviceSubclass: number;
  deviceProtocol: number;
  vendorId: number;
  productId: number;
  /** Only on the wire when both sides have connect_device_version; 0 otherwise. */
  deviceVersionBcd: number;
}
export type DeviceDisconnectPacket = Base<typeof T.DeviceDisconnect>;
export type ResetPacket = Base<typeof T.Reset>;

export interface InterfaceInfoEntry {
  number: number;
  interfaceClass: number;
  interfaceSubclass: number;
  interfaceProtocol: number;
}
export interface InterfaceInfoPacket extends Base<typeof T.InterfaceInfo> {
  /** At most 32 entries (interface_count). */
  interfaces: InterfaceInfoEntry[];
}

export interface EpInfoEntry {
  /** 0 control, 1 iso, 2 bulk, 3 interrupt, 255 invalid. */
  type: number;
  interval: number;
  interface: number;
  /** 0 unless both sides have ep_info_max_packet_size. */
  maxPacketSize: number;
  /** 0 unless both sides have bulk_streams. */
  maxStreams: number;
}

/** ep_info's entry for an endpoint the device does not have. */
export const NO_ENDPOINT: EpInfoEntry = Object.freeze({
  type: EndpointKind.Invalid,
  interval: 0,
  interface: 0,
  maxPacketSize: 0,
  maxStreams: 0,
});
export interface EpInfoPacket extends Base<typeof T.EpInfo> {
  /** Exactly 32 entries, by endpoint index (see `endpointIndex`). */
  endpoints: EpInfoEntry[];
}

export interface SetConfigurationPacket extends Base<typeof T.SetConfiguration> {
  configuration: number;
}
export type GetConfigurationPacket = Base<typeof T.GetConfiguration>;
export interface ConfigurationStatusPacket extends Base<typeof T.ConfigurationStatus> {
  status: number;
  configuration: number;
}
export interface SetAltSettingPacket extends Base<typeof T.SetAltSetting> {
  interface: number;
  alt: number;
}
export interface GetAltSettingPacket extends Base<typeof T.GetAltSetting> {
  interface: number;
}
export interface AltSettingStatusPacket extends Base<typeof T.AltSettingStatus> {
  status: number;
  interface: number;
  alt: number;
}
export interface StartIsoStreamPacket extends Base<typeof T.StartIsoStream> {
  endpoint: number;
  pktsPerUrb: number;
  noUrbs: number;
}
export interface StopIsoStreamPacket extends Base<typeof T.StopIsoStream> {
  endpoint: number;
}
export interface IsoStreamStatusPacket extends Base<typeof T.IsoStreamStatus> {
  status: number;
  endpoint: number;
}
export interface StartInterruptReceivingPacket extends Base<typeof T.StartInterruptReceiving> {
  endpoint: number;
}
export interface StopInterruptReceivingPacket extends Base<typeof T.StopInterruptReceiving> {
  endpoint: number;
}
export interface InterruptReceivingStatusPacket extends Base<typeof T.InterruptReceivingStatus> {
  status: number;
  endpoint: number;
}
export interface AllocBulkStreamsPacket extends Base<typeof T.AllocBulkStreams> {
  /** Bitmask by endpoint index. */
  endpoints: number;
  noStreams: number;
}
export interface FreeBulkStreamsPacket extends Base<typeof T.FreeBulkStreams> {
  endpoints: number;
}
export interface BulkStreamsStatusPacket extends Base<typeof T.BulkStreamsStatus> {
  endpoints: number;
  noStreams: number;
  status: number;
}
/** `id` is the id of the data packet to cancel. */
export type CancelDataPacket = Base<typeof T.CancelDataPacket>;
export type FilterRejectPacket = Base<typeof T.FilterReject>;
export interface FilterFilterPacket extends Base<typeof T.FilterFilter> {
  /** Filter string without the terminating NUL. */
  filter: string;
}
export type DeviceDisconnectAckPacket = Base<typeof T.DeviceDisconnectAck>;
export interface StartBulkReceivingPacket extends Base<typeof T.StartBulkReceiving> {
  streamId: number;
  bytesPerTransfer: number;
  endpoint: number;
  noTransfers: number;
}
export interface StopBulkReceivingPacket extends Base<typeof T.StopBulkReceiving> {
  streamId: number;
  endpoint: number;
}
export interface BulkReceivingStatusPacket extends Base<typeof T.BulkReceivingStatus> {
  streamId: number;
  endpoint: number;
  status: number;
}

/** Data packets: `data` is present (possibly empty) on the wire only in the transfer's direction. */
export interface ControlPacket extends Base<typeof T.ControlPacket> {
  endpoint: number;
  request: number;
  requestType: number;
  status: number;
  value: number;
  index: number;
  length: number;
  data: Buffer;
}
export interface BulkPacket extends Base<typeof T.BulkPacket> {
  endpoint: number;
  status: number;
  /** Full length (length | length_high << 16 when both sides have 32bits_bulk_length). */
  length: number;
  streamId: number;
  data: Buffer;
}
export interface IsoPacket extends Base<typeof T.IsoPacket> {
  endpoint: number;
  status: number;
  length: number;
  data: Buffer;
}
export interface InterruptPacket extends Base<typeof T.InterruptPacket> {
  endpoint: number;
  status: number;
  length: number;
  data: Buffer;
}
export interface BufferedBulkPacket extends Base<typeof T.BufferedBulkPacket> {
  streamId: number;
  length: number;
  endpoint: number;
  status: number;
  data: Buffer;
}

export type DataPacket = ControlPacket | BulkPacket | IsoPacket | InterruptPacket | BufferedBulkPacket;

export type Packet =
  | HelloPacket
  | DeviceConnectPacket
  | DeviceDisconnectPacket
  | ResetPacket
  | InterfaceInfoPacket
  | EpInfoPacket
  | SetConfigurationPacket
  | GetConfigurationPacket
  | ConfigurationStatusPacket
  | SetAltSettingPacket
  | GetAltSettingPacket
  | AltSettingStatusPacket
  | StartIsoStreamPacket
  | StopIsoStreamPacket
  | IsoStreamStatusPacket
  | StartInterruptReceivingPacket
  | StopInterruptReceivingPacket
  | InterruptReceivingStatusPacket
  | AllocBulkStreamsPacket
  | FreeBulkStreamsPacket
  | BulkStreamsStatusPacket
  | CancelDataPacket
  | FilterRejectPacket
  | FilterFilterPacket
  | DeviceDisconnectAckPacket
  | StartBulkReceivingPacket
  | StopBulkReceivingPacket
  | BulkReceivingStatusPacket
  | DataPacket;

export type PacketOf<K extends Packet['type']> = Extract<Packet, { type: K }>;

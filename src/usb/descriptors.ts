import type { AltSettingSpec, AssociationSpec, EndpointSpec, InterfaceSpec } from './function.js';

export const DescriptorType = {
  Device: 0x01,
  Configuration: 0x02,
  String: 0x03,
  Interface: 0x04,
  Endpoint: 0x05,
  DeviceQualifier: 0x06,
  OtherSpeedConfiguration: 0x07,
  InterfaceAssociation: 0x0b,
  Bos: 0x0f,
  DeviceCapability: 0x10,
  SsEndpointCompanion: 0x30,
} as const;

export const EndpointTypeCode = { control: 0, isochronous: 1, bulk: 2, interrupt: 3 } as const;
export type EndpointType = keyof typeof EndpointTypeCode;
const ENDPOINT_TYPES: EndpointType[] = ['control', 'isochronous', 'bulk', 'interrupt'];

/** A descriptor from a device (remote or local) that does not parse. */
export class DescriptorError extends Error {
  override name = 'DescriptorError';
}

export interface DeviceDescriptor {
  bcdUSB: number;
  deviceClass: number;
  deviceSubClass: number;
  deviceProtocol: number;
  maxPacketSize0: number;
  vendorId: number;
  productId: number;
  bcdDevice: number;
  iManufacturer: number;
  iProduct: number;
  iSerialNumber: number;
  numConfigurations: number;
}

export const DEVICE_DESCRIPTOR_SIZE = 18;

export function buildDeviceDescriptor(d: DeviceDescriptor): Buffer {
  const b = Buffer.alloc(DEVICE_DESCRIPTOR_SIZE);
  b[0] = DEVICE_DESCRIPTOR_SIZE;
  b[1] = DescriptorType.Device;
  b.writeUInt16LE(d.bcdUSB, 2);
  b[4] = d.deviceClass;
  b[5] = d.deviceSubClass;
  b[6] = d.deviceProtocol;
  b[7] = d.maxPacketSize0;
  b.writeUInt16LE(d.vendorId, 8);
  b.writeUInt16LE(d.productId, 10);
  b.writeUInt16LE(d.bcdDevice, 12);
  b[14] = d.iManufacturer;
  b[15] = d.iProduct;
  b[16] = d.iSerialNumber;
  b[17] = d.numConfigurations;
  return b;
}

export function parseDeviceDescriptor(b: Uint8Array): DeviceDescriptor {
  if (b.length < DEVICE_DESCRIPTOR_SIZE) throw new DescriptorError(`device descriptor has ${b.length} bytes, need 18`);
  if (b[0] !== DEVICE_DESCRIPTOR_SIZE || b[1] !== DescriptorType.Device) {
    throw new DescriptorError(`not a device descriptor (bLength ${b[0]}, bDescriptorType ${b[1]})`);
  }
  const u16 = (o: number) => b[o]! | (b[o + 1]! << 8);
  return {
    bcdUSB: u16(2),
    deviceClass: b[4]!,
    deviceSubClass: b[5]!,
    deviceProtocol: b[6]!,
    maxPacketSize0: b[7]!,
    vendorId: u16(8),
    productId: u16(10),
    bcdDevice: u16(12),
    iManufacturer: b[14]!,
    iProduct: b[15]!,
    iSerialNumber: b[16]!,
    numConfigurations: b[17]!,
  };
}

export interface ParsedEndpoint {
  address: number;
  type: EndpointType;
  /** Raw wMaxPacketSize (bits 12:11 carry the high-bandwidth multiplier). */
  maxPacketSize: number;
  interval: number;
  /** SuperSpeed companion bmAttributes (bulk: streams exponent in bits 4:0), if present. */
  companionAttributes?: number;
  /** Class-specific descriptors that follow the endpoint. */
  extra: Buffer;
}

export interface ParsedAltSetting {
  interfaceNumber: number;
  alternate: number;
  interfaceClass: number;
  interfaceSubClass: number;
  interfaceProtocol: number;
  iInterface: number;
  extra: Buffer;
  endpoints: ParsedEndpoint[];
}

export interface ParsedInterface {
  number: number;
  alternates: ParsedAltSetting[];
}

export interface ParsedConfiguration {
  value: number;
  attributes: number;
  maxPower: number;
  iConfiguration: number;
  interfaces: ParsedInterface[];
}

/**
 * Parse a full configuration descriptor. Everything is bounds-checked: a remote device sending
 * garbage yields a DescriptorError, never an exception from reading out of range.
 */
export function parseConfiguration(b: Uint8Array): ParsedConfiguration {
  if (b.length < 9) throw new DescriptorError(`configuration descriptor has ${b.length} bytes, need 9`);
  if (b[1] !== DescriptorType.Configuration && b[1] !== DescriptorType.OtherSpeedConfiguration) {
    throw new DescriptorError(`not a configuration descriptor (type ${b[1]})`);
  }
  if (b[0]! < 9) throw new DescriptorError(`configuration bLength ${b[0]} < 9`);
  const total = b[2]! | (b[3]! << 8);
  if (total < b[0]! || total > b.length) {
    throw new DescriptorError(`configuration wTotalLength ${total} does not fit the ${b.length} bytes received`);
  }
  const config: ParsedConfiguration = {
    value: b[5]!,
    iConfiguration: b[6]!,
    attributes: b[7]!,
    maxPower: b[8]!,
    interfaces: [],
  };
  let alt: ParsedAltSetting | undefined;
  let ep: ParsedEndpoint | undefined;
  let pos = b[0]!;
  while (pos < total) {
    if (total - pos < 2) throw new DescriptorError(`truncated descriptor at offset ${pos}`);
    const len = b[pos]!;
    const type = b[pos + 1]!;
    if (len < 2 || pos + len > total) throw new DescriptorError(`bad descriptor length ${len} at offset ${pos}`);
    const body = Buffer.from(b.buffer, b.byteOffset + pos, len);
    if (type === DescriptorType.Interface) {
      if (len < 9) throw new DescriptorError(`interface descriptor too short (${len}) at offset ${pos}`);
      alt = {
        interfaceNumber: body[2]!,
        alternate: body[3]!,
        interfaceClass: body[5]!,
        interfaceSubClass: body[6]!,
        interfaceProtocol: body[7]!,
        iInterface: body[8]!,
        extra: Buffer.alloc(0),
        endpoints: [],
      };
      ep = undefined;
      let iface = config.interfaces.find((i) => i.number === alt!.interfaceNumber);
      if (!iface) {
        iface = { number: alt.interfaceNumber, alternates: [] };
        config.interfaces.push(iface);
      }
      iface.alternates.push(alt);
    } else if (type === DescriptorType.Endpoint) {
      if (len < 7) throw new DescriptorError(`endpoint descriptor too short (${len}) at offset ${pos}`);
      if (!alt) throw new DescriptorError(`endpoint descriptor outside an interface at offset ${pos}`);
      ep = {
        address: body[2]!,
        type: ENDPOINT_TYPES[body[3]! & 3]!,
        maxPacketSize: body[4]! | (body[5]! << 8),
        interval: body[6]!,
        extra: Buffer.alloc(0),
      };
      if ((ep.address & 0x0f) === 0) throw new DescriptorError(`endpoint descriptor for endpoint 0 at offset ${pos}`);
      alt.endpoints.push(ep);
    } else if (type === DescriptorType.SsEndpointCompanion && ep) {
      if (len >= 4) ep.companionAttributes = body[3]!;
    } else if (ep) {
      ep.extra = Buffer.concat([ep.extra, body]);
    } else if (alt) {
      alt.extra = Buffer.concat([alt.extra, body]);
    }
    pos += len;
  }
  return config;
}

/** The endpoints usable in a configuration given the selected alternate settings. */
export function activeEndpoints(config: ParsedConfiguration, altOf: (iface: number) => number): ParsedEndpoint[] {
  const eps: ParsedEndpoint[] = [];
  for (const iface of config.interfaces) {
    const alt = iface.alternates.find((a) => a.alternate === altOf(iface.number)) ?? iface.alternates[0];
    if (alt) eps.push(...alt.endpoints);
  }
  return eps;
}

/** Allocates string descriptor indexes (index 0 is the language table). */
export class StringTable {
  readonly #strings: string[] = [];

  add(s: string | undefined): number {
    if (s === undefined || s === '') return 0;
    const at = this.#strings.indexOf(s);
    if (at >= 0) return at + 1;
    this.#strings.push(s);
    return this.#strings.length;
  }

  /** The string descriptor for an index, or undefined if there is none. */
  descriptor(index: number): Buffer | undefined {
    if (index === 0) return Buffer.from([4, DescriptorType.String, 0x09, 0x04]);
    const s = this.#strings[index - 1];
    if (s === undefined) return undefined;
    const text = Buffer.from(s.slice(0, 126), 'utf16le');
    return Buffer.concat([Buffer.from([2 + text.length, DescriptorType.String]), text]);
  }
}

export function decodeStringDescriptor(b: Uint8Array): string {
  if (b.length < 2 || b[1] !== DescriptorType.String) throw new DescriptorError('not a string descriptor');
  const len = Math.min(b[0]!, b.length);
  return Buffer.from(b.buffer, b.byteOffset + 2, Math.max(0, (len - 2) & ~1)).toString('utf16le');
}

export interface ConfigurationOptions {
  value: number;
  attributes: number;
  maxPowerMa: number;
  superSpeed: boolean;
  name?: number;
}

function buildEndpoint(e: EndpointSpec, superSpeed: boolean): Buffer[] {
  const d = Buffer.alloc(7);
  d[0] = 7;
  d[1] = DescriptorType.Endpoint;
  d[2] = e.address;
  d[3] = EndpointTypeCode[e.type];
  d.writeUInt16LE(e.maxPacketSize, 4);
  d[6] = e.interval;
  const parts: Buffer[] = [d];
  if (superSpeed) {
    const c = Buffer.alloc(6);
    c[0] = 6;
    c[1] = DescriptorType.SsEndpointCompanion;
    c[2] = e.companion?.maxBurst ?? 0;
    c[3] = e.companion?.attributes ?? 0;
    c.writeUInt16LE(e.companion?.bytesPerInterval ?? (e.type === 'bulk' ? 0 : e.maxPacketSize), 4);
    parts.push(c);
  }
  if (e.extra) parts.push(e.extra);
  return parts;
}

function buildAltSetting(number: number, a: AltSettingSpec, strings: StringTable, superSpeed: boolean): Buffer[] {
  const d = Buffer.alloc(9);
  d[0] = 9;
  d[1] = DescriptorType.Interface;
  d[2] = number;
  d[3] = a.alternate;
  d[4] = a.endpoints.length;
  d[5] = a.interfaceClass;
  d[6] = a.interfaceSubClass;
  d[7] = a.interfaceProtocol;
  d[8] = strings.add(a.name);
  const parts: Buffer[] = [d];
  if (a.extra) parts.push(a.extra);
  for (const e of a.endpoints) parts.push(...buildEndpoint(e, superSpeed));
  return parts;
}

function buildAssociation(first: number, a: AssociationSpec, strings: StringTable): Buffer {
  return Buffer.from([
    8,
    DescriptorType.InterfaceAssociation,
    first,
    a.count,
    a.functionClass,
    a.functionSubClass,
    a.functionProtocol,
    strings.add(a.name),
  ]);
}

/** Build a full configuration descriptor; interface numbers in `interfaces` are absolute. */
export function buildConfiguration(
  opts: ConfigurationOptions,
  interfaces: InterfaceSpec[],
  strings: StringTable,
  type: number = DescriptorType.Configuration,
): Buffer {
  const parts: Buffer[] = [];
  for (const iface of interfaces) {
    if (iface.association) parts.push(buildAssociation(iface.number, iface.association, strings));
    for (const alt of iface.alternates) parts.push(...buildAltSetting(iface.number, alt, strings, opts.superSpeed));
  }
  const head = Buffer.alloc(9);
  const body = Buffer.concat(parts);
  head[0] = 9;
  head[1] = type;
  head.writeUInt16LE(9 + body.length, 2);
  head[4] = interfaces.length;
  head[5] = opts.value;
  head[6] = opts.name ?? 0;
  head[7] = opts.attributes | 0x80;
  head[8] = Math.min(255, Math.ceil(opts.maxPowerMa / (opts.superSpeed ? 8 : 2)));
  return Buffer.concat([head, body]);
}

/** DEVICE_QUALIFIER for a high/full-speed device: what it would look like at the other speed. */
export function buildDeviceQualifier(d: DeviceDescriptor, otherMaxPacket0: number): Buffer {
  const b = Buffer.alloc(10);
  b[0] = 10;
  b[1] = DescriptorType.DeviceQualifier;
  b.writeUInt16LE(d.bcdUSB, 2);
  b[4] = d.deviceClass;
  b[5] = d.deviceSubClass;
  b[6] = d.deviceProtocol;
  b[7] = otherMaxPacket0;
  b[8] = d.numConfigurations;
  return b;
}

/** BOS with a USB 2.0 extension (LPM off) and, for SuperSpeed devices, the SuperSpeed capability. */
export function buildBos(superSpeed: boolean): Buffer {
  const usb2 = Buffer.from([7, DescriptorType.DeviceCapability, 0x02, 0x00, 0, 0, 0]);
  const caps = [usb2];
  if (superSpeed) {
    // SuperSpeed USB device capability: speeds FS|HS|SS supported, lowest functional FS, no U1/U2 latencies.
    caps.push(Buffer.from([10, DescriptorType.DeviceCapability, 0x03, 0x00, 0x0e, 0x00, 0x01, 0x0a, 0xff, 0x07]));
  }
  const body = Buffer.concat(caps);
  const head = Buffer.from([5, DescriptorType.Bos, 0, 0, caps.length]);
  head.writeUInt16LE(5 + body.length, 2);
  return Buffer.concat([head, body]);
}

/** A USB SETUP packet (the 8 bytes that start every control transfer). */
export interface SetupPacket {
  bmRequestType: number;
  bRequest: number;
  wValue: number;
  wIndex: number;
  wLength: number;
}

export const SETUP_SIZE = 8;

export const RequestType = {
  DirIn: 0x80,
  TypeMask: 0x60,
  Standard: 0x00,
  Class: 0x20,
  Vendor: 0x40,
  RecipientMask: 0x1f,
  Device: 0x00,
  Interface: 0x01,
  Endpoint: 0x02,
  Other: 0x03,
} as const;

export const StandardRequest = {
  GetStatus: 0x00,
  ClearFeature: 0x01,
  SetFeature: 0x03,
  SetAddress: 0x05,
  GetDescriptor: 0x06,
  SetDescriptor: 0x07,
  GetConfiguration: 0x08,
  SetConfiguration: 0x09,
  GetInterface: 0x0a,
  SetInterface: 0x0b,
  SynchFrame: 0x0c,
} as const;

export const Feature = {
  EndpointHalt: 0x00,
  DeviceRemoteWakeup: 0x01,
  TestMode: 0x02,
} as const;

export function parseSetup(buf: Uint8Array, offset = 0): SetupPacket {
  if (buf.length - offset < SETUP_SIZE) throw new RangeError('setup packet needs 8 bytes');
  return {
    bmRequestType: buf[offset]!,
    bRequest: buf[offset + 1]!,
    wValue: buf[offset + 2]! | (buf[offset + 3]! << 8),
    wIndex: buf[offset + 4]! | (buf[offset + 5]! << 8),
    wLength: buf[offset + 6]! | (buf[offset + 7]! << 8),
  };
}

export function encodeSetup(s: SetupPacket, out: Buffer = Buffer.alloc(SETUP_SIZE), offset = 0): Buffer {
  out[offset] = s.bmRequestType;
  out[offset + 1] = s.bRequest;
  out.writeUInt16LE(s.wValue, offset + 2);
  out.writeUInt16LE(s.wIndex, offset + 4);
  out.writeUInt16LE(s.wLength, offset + 6);
  return out;
}

export function isIn(s: SetupPacket): boolean {
  return (s.bmRequestType & RequestType.DirIn) !== 0;
}

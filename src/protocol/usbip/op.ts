import {
  BUSID_SIZE,
  OP_COMMON_SIZE,
  OP_REP_DEVLIST,
  OP_REP_IMPORT,
  OP_REQ_DEVLIST,
  OP_REQ_IMPORT,
  PATH_SIZE,
  USB_DEVICE_SIZE,
  USB_INTERFACE_SIZE,
  USBIP_VERSION,
} from './constants.js';

export interface UsbipInterfaceInfo {
  interfaceClass: number;
  interfaceSubClass: number;
  interfaceProtocol: number;
}

/** struct usbip_usb_device (312 bytes). */
export interface UsbipDeviceInfo {
  path: string;
  busid: string;
  busnum: number;
  devnum: number;
  /** Linux enum usb_device_speed. */
  speed: number;
  idVendor: number;
  idProduct: number;
  bcdDevice: number;
  bDeviceClass: number;
  bDeviceSubClass: number;
  bDeviceProtocol: number;
  bConfigurationValue: number;
  bNumConfigurations: number;
  bNumInterfaces: number;
}

/** A DEVLIST entry: the device and its interface triplets (bNumInterfaces of them). */
export interface UsbipDevlistEntry extends UsbipDeviceInfo {
  interfaces: UsbipInterfaceInfo[];
}

export type Pdu = [Buffer, ...Buffer[]];

export function encodeOpCommon(code: number, status: number, out = Buffer.alloc(OP_COMMON_SIZE), at = 0): Buffer {
  out.writeUInt16BE(USBIP_VERSION, at);
  out.writeUInt16BE(code, at + 2);
  out.writeUInt32BE(status >>> 0, at + 4);
  return out;
}

function writeFixedString(s: string, size: number, out: Buffer, at: number, what: string): void {
  const bytes = Buffer.from(s, 'utf8');
  // One byte stays NUL: the C side reads these with strncpy/strcmp.
  if (bytes.length >= size) throw new RangeError(`${what} "${s}" longer than ${size - 1} bytes`);
  bytes.copy(out, at);
}

function readFixedString(buf: Buffer, at: number, size: number): string {
  const field = buf.subarray(at, at + size);
  const nul = field.indexOf(0);
  return field.subarray(0, nul < 0 ? size : nul).toString('utf8');
}

export function encodeUsbDevice(d: UsbipDeviceInfo, out = Buffer.alloc(USB_DEVICE_SIZE), at = 0): Buffer {
  out.fill(0, at, at + USB_DEVICE_SIZE);
  writeFixedString(d.path, PATH_SIZE, out, at, 'path');
  writeFixedString(d.busid, BUSID_SIZE, out, at + 0x100, 'busid');
  out.writeUInt32BE(d.busnum, at + 0x120);
  out.writeUInt32BE(d.devnum, at + 0x124);
  out.writeUInt32BE(d.speed, at + 0x128);
  out.writeUInt16BE(d.idVendor, at + 0x12c);
  out.writeUInt16BE(d.idProduct, at + 0x12e);
  out.writeUInt16BE(d.bcdDevice, at + 0x130);
  out[at + 0x132] = d.bDeviceClass;
  out[at + 0x133] = d.bDeviceSubClass;
  out[at + 0x134] = d.bDeviceProtocol;
  out[at + 0x135] = d.bConfigurationValue;
  out[at + 0x136] = d.bNumConfigurations;
  out[at + 0x137] = d.bNumInterfaces;
  return out;
}

export function decodeUsbDevice(buf: Buffer, at = 0): UsbipDeviceInfo {
  if (buf.length - at < USB_DEVICE_SIZE) throw new RangeError('usbip_usb_device needs 312 bytes');
  return {
    path: readFixedString(buf, at, PATH_SIZE),
    busid: readFixedString(buf, at + 0x100, BUSID_SIZE),
    busnum: buf.readUInt32BE(at + 0x120),
    devnum: buf.readUInt32BE(at + 0x124),
    speed: buf.readUInt32BE(at + 0x128),
    idVendor: buf.readUInt16BE(at + 0x12c),
    idProduct: buf.readUInt16BE(at + 0x12e),
    bcdDevice: buf.readUInt16BE(at + 0x130),
    bDeviceClass: buf[at + 0x132]!,
    bDeviceSubClass: buf[at + 0x133]!,
    bDeviceProtocol: buf[at + 0x134]!,
    bConfigurationValue: buf[at + 0x135]!,
    bNumConfigurations: buf[at + 0x136]!,
    bNumInterfaces: buf[at + 0x137]!,
  };
}

export function decodeInterfaces(buf: Buffer, at: number, count: number): UsbipInterfaceInfo[] {
  const out: UsbipInterfaceInfo[] = [];
  for (let i = 0; i < count; i++) {
    const o = at + i * USB_INTERFACE_SIZE;
    out.push({ interfaceClass: buf[o]!, interfaceSubClass: buf[o + 1]!, interfaceProtocol: buf[o + 2]! });
  }
  return out;
}

export function encodeReqDevlist(): Pdu {
  return [encodeOpCommon(OP_REQ_DEVLIST, 0)];
}

/** Each entry must carry exactly bNumInterfaces interfaces: the reader relies on that count. */
export function encodeRepDevlist(devices: readonly UsbipDevlistEntry[], status = 0): Pdu {
  const head = Buffer.alloc(OP_COMMON_SIZE + 4);
  encodeOpCommon(OP_REP_DEVLIST, status, head);
  head.writeUInt32BE(devices.length, OP_COMMON_SIZE);
  let size = 0;
  for (const d of devices) {
    if (d.interfaces.length !== d.bNumInterfaces) {
      throw new RangeError(
        `device ${d.busid}: ${d.interfaces.length} interfaces but bNumInterfaces ${d.bNumInterfaces}`,
      );
    }
    size += USB_DEVICE_SIZE + USB_INTERFACE_SIZE * d.interfaces.length;
  }
  if (size === 0) return [head];
  const body = Buffer.alloc(size);
  let at = 0;
  for (const d of devices) {
    encodeUsbDevice(d, body, at);
    at += USB_DEVICE_SIZE;
    for (const i of d.interfaces) {
      body[at] = i.interfaceClass;
      body[at + 1] = i.interfaceSubClass;
      body[at + 2] = i.interfaceProtocol;
      at += USB_INTERFACE_SIZE;
    }
  }
  return [head, body];
}

export function encodeReqImport(busid: string): Pdu {
  const b = Buffer.alloc(OP_COMMON_SIZE + BUSID_SIZE);
  encodeOpCommon(OP_REQ_IMPORT, 0, b);
  writeFixedString(busid, BUSID_SIZE, b, OP_COMMON_SIZE, 'busid');
  return [b];
}

/** On failure (status != 0) nothing follows op_common. */
export function encodeRepImport(status: number, device?: UsbipDeviceInfo): Pdu {
  const head = encodeOpCommon(OP_REP_IMPORT, status);
  if (status !== 0) return [head];
  if (!device) throw new RangeError('a successful import reply needs the device');
  return [head, encodeUsbDevice(device)];
}

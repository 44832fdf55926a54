/** HID class wire format shared by the keyboard and the mouse (HID 1.11 §7). */

export const HID_CLASS = 0x03;
export const BOOT_SUBCLASS = 0x01;
export const BOOT_PROTOCOL_KEYBOARD = 0x01;
export const BOOT_PROTOCOL_MOUSE = 0x02;

export const HidDescriptorType = { Hid: 0x21, Report: 0x22 } as const;

export const HidRequest = {
  GetReport: 0x01,
  GetIdle: 0x02,
  GetProtocol: 0x03,
  SetReport: 0x09,
  SetIdle: 0x0a,
  SetProtocol: 0x0b,
} as const;

export const ReportType = { Input: 1, Output: 2, Feature: 3 } as const;

/** GET/SET_PROTOCOL values; a device comes out of reset in report protocol. */
export const HidProtocol = { Boot: 0, Report: 1 } as const;

/** The 9-byte HID descriptor that follows the interface descriptor (one report descriptor). */
export function hidDescriptor(reportDescriptorLength: number): Buffer {
  const d = Buffer.alloc(9);
  d[0] = 9;
  d[1] = HidDescriptorType.Hid;
  d.writeUInt16LE(0x0111, 2); // bcdHID 1.11
  d[4] = 0; // bCountryCode: not localized
  d[5] = 1; // bNumDescriptors
  d[6] = HidDescriptorType.Report;
  d.writeUInt16LE(reportDescriptorLength, 7);
  return d;
}

/** SET_IDLE's duration (wValue high byte) is in units of 4 ms; 0 means "report only on change". */
export function idleMs(duration: number): number {
  return duration * 4;
}

/** Bytes from hex pairs separated by spaces, one string per descriptor item group. */
export function hexBytes(...groups: string[]): Buffer {
  return Buffer.from(groups.join(' ').replaceAll(' ', ''), 'hex');
}

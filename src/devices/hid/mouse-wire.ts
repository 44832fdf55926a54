/** Boot mouse reports: buttons, dx, dy and a wheel byte (HID 1.11 appendix B.2, plus a wheel as QEMU's usb-mouse). */

import { hexBytes } from './hid-wire.js';

export const MOUSE_REPORT_SIZE = 4;

/** Three buttons, X/Y/wheel relative in -127..127 (the same items as QEMU's usb-mouse, 52 bytes). */
export const MOUSE_REPORT_DESCRIPTOR = hexBytes(
  '05 01 09 02 a1 01', // Generic Desktop, Mouse, Collection (Application)
  '09 01 a1 00', // Pointer, Collection (Physical)
  '05 09 19 01 29 03 15 00 25 01 95 03 75 01 81 02', // 3 buttons
  '95 01 75 05 81 01', // padding
  '05 01 09 30 09 31 09 38 15 81 25 7f 75 08 95 03 81 06', // X, Y, wheel: relative, -127..127
  'c0 c0', // End Collections
);

export const MouseButton = { left: 0x01, right: 0x02, middle: 0x04 } as const;
export type MouseButtonName = keyof typeof MouseButton;

const MAX_STEP = 127;

export interface MouseReport {
  buttons: number;
  dx: number;
  dy: number;
  wheel: number;
}

export function encodeMouseReport(r: MouseReport): Buffer {
  const b = Buffer.alloc(MOUSE_REPORT_SIZE);
  b[0] = r.buttons & 0x07;
  b.writeInt8(r.dx, 1);
  b.writeInt8(r.dy, 2);
  b.writeInt8(r.wheel, 3);
  return b;
}

export function decodeMouseReport(b: Buffer): MouseReport {
  return { buttons: b[0]! & 0x07, dx: b.readInt8(1), dy: b.readInt8(2), wheel: b.readInt8(3) };
}

/** A movement split into reports of at most ±127 per axis (the last steps carry the remainder). */
export function moveReports(dx: number, dy: number, wheel: number, buttons: number): Buffer[] {
  const reports: Buffer[] = [];
  let x = dx;
  let y = dy;
  let w = wheel;
  do {
    const sx = clampStep(x);
    const sy = clampStep(y);
    const sw = clampStep(w);
    reports.push(encodeMouseReport({ buttons, dx: sx, dy: sy, wheel: sw }));
    x -= sx;
    y -= sy;
    w -= sw;
  } while (x !== 0 || y !== 0 || w !== 0);
  return reports;
}

function clampStep(v: number): number {
  return Math.max(-MAX_STEP, Math.min(MAX_STEP, v));
}

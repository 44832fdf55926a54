/**
 * Boot keyboard reports and US-layout text: pure functions from what the operator asks for to
 * the 8-byte reports the host reads (HID 1.11 appendix B.1; usages from HID Usage Tables §10).
 */

import { hexBytes } from './hid-wire.js';

export const KEYBOARD_REPORT_SIZE = 8;
export const LED_REPORT_SIZE = 1;
const MAX_KEYS = 6;
/** Usage 0x01 in every key slot: more keys down than the report can carry. */
const ERROR_ROLL_OVER = 0x01;

/**
 * The boot keyboard's report descriptor (the same items as QEMU's usb-kbd, 63 bytes): 8 modifier
 * bits, a reserved byte, 5 LED output bits + 3 padding, 6 key codes.
 */
export const KEYBOARD_REPORT_DESCRIPTOR = hexBytes(
  '05 01 09 06 a1 01', // Generic Desktop, Keyboard, Collection (Application)
  '75 01 95 08 05 07 19 e0 29 e7 15 00 25 01 81 02', // 8 modifier bits (usages E0-E7)
  '95 01 75 08 81 01', // reserved byte
  '95 05 75 01 05 08 19 01 29 05 91 02', // 5 LED bits (output)
  '95 01 75 03 91 01', // LED padding
  '95 06 75 08 15 00 25 ff 05 07 19 00 29 ff 81 00', // 6 key codes (array)
  'c0', // End Collection
);

/** Modifier bits of byte 0. */
export const Modifier = {
  LeftCtrl: 0x01,
  LeftShift: 0x02,
  LeftAlt: 0x04,
  LeftGui: 0x08,
  RightCtrl: 0x10,
  RightShift: 0x20,
  RightAlt: 0x40,
  RightGui: 0x80,
} as const;

const MODIFIER_USAGE_FIRST = 0xe0;

/** The state the host sees: modifier bits and the keys down, in the order they went down. */
export interface KeyboardState {
  modifiers: number;
  keys: number[];
}

export function encodeKeyboardReport(state: KeyboardState): Buffer {
  const r = Buffer.alloc(KEYBOARD_REPORT_SIZE);
  r[0] = state.modifiers & 0xff;
  if (state.keys.length > MAX_KEYS) r.fill(ERROR_ROLL_OVER, 2);
  else for (const [i, k] of state.keys.entries()) r[2 + i] = k;
  return r;
}

export function decodeKeyboardReport(r: Buffer): KeyboardState {
  return { modifiers: r[0] ?? 0, keys: [...r.subarray(2, KEYBOARD_REPORT_SIZE)].filter((k) => k !== 0) };
}

/** LED output report bits (HID Usage Tables §11, LED page usages 1-5). */
export interface LedState {
  numLock: boolean;
  capsLock: boolean;
  scrollLock: boolean;
  compose: boolean;
  kana: boolean;
  raw: number;
}

export function decodeLeds(byte: number): LedState {
  return {
    numLock: (byte & 0x01) !== 0,
    capsLock: (byte & 0x02) !== 0,
    scrollLock: (byte & 0x04) !== 0,
    compose: (byte & 0x08) !== 0,
    kana: (byte & 0x10) !== 0,
    raw: byte,
  };
}

/** One key (a usage from the keyboard page) with or without Shift, as a US layout types a character. */
export interface KeyStroke {
  usage: number;
  shift: boolean;
}

const UNSHIFTED_ROW = '1234567890';
const SHIFTED_ROW = '!@#$%^&*()';
/** Punctuation keys 0x2d..0x38 with their unshifted and shifted characters (0x32 is the non-US #). */
const PUNCTUATION: [number, string, string][] = [
  [0x2d, '-', '_'],
  [0x2e, '=', '+'],
  [0x2f, '[', '{'],
  [0x30, ']', '}'],
  [0x31, '\\', '|'],
  [0x33, ';', ':'],
  [0x34, "'", '"'],
  [0x35, '`', '~'],
  [0x36, ',', '<'],
  [0x37, '.', '>'],
  [0x38, '/', '?'],
];

const CHAR_KEYS: Map<string, KeyStroke> = (() => {
  const m = new Map<string, KeyStroke>();
  for (let i = 0; i < 26; i++) {
    const lower = String.fromCharCode(0x61 + i);
    m.set(lower, { usage: 0x04 + i, shift: false });
    m.set(lower.toUpperCase(), { usage: 0x04 + i, shift: true });
  }
  for (let i = 0; i < 10; i++) {
    m.set(UNSHIFTED_ROW[i]!, { usage: 0x1e + i, shift: false });
    m.set(SHIFTED_ROW[i]!, { usage: 0x1e + i, shift: true });
  }
  for (const [usage, plain, shifted] of PUNCTUATION) {
    m.set(plain, { usage, shift: false });
    m.set(shifted, { usage, shift: true });
  }
  m.set('\n', { usage: 0x28, shift: false });
  m.set('\t', { usage: 0x2b, shift: false });
  m.set(' ', { usage: 0x2c, shift: false });
  return m;
})();

/** The keystroke that types `ch` on a US keyboard, undefined for characters it has no key for. */
export function keyForChar(ch: string): KeyStroke | undefined {
  return CHAR_KEYS.get(ch === '\r' ? '\n' : ch);
}

const NAMED_KEYS: Record<string, number> = {
  enter: 0x28,
  return: 0x28,
  esc: 0x29,
  escape: 0x29,
  backspace: 0x2a,
  tab: 0x2b,
  space: 0x2c,
  minus: 0x2d,
  equal: 0x2e,
  capslock: 0x39,
  printscreen: 0x46,
  sysrq: 0x46,
  scrolllock: 0x47,
  pause: 0x48,
  insert: 0x49,
  home: 0x4a,
  pageup: 0x4b,
  delete: 0x4c,
  del: 0x4c,
  end: 0x4d,
  pagedown: 0x4e,
  right: 0x4f,
  left: 0x50,
  down: 0x51,
  up: 0x52,
  numlock: 0x53,
  menu: 0x65,
};

const MODIFIER_NAMES: Record<string, number> = {
  ctrl: Modifier.LeftCtrl,
  control: Modifier.LeftCtrl,
  lctrl: Modifier.LeftCtrl,
  rctrl: Modifier.RightCtrl,
  shift: Modifier.LeftShift,
  lshift: Modifier.LeftShift,
  rshift: Modifier.RightShift,
  alt: Modifier.LeftAlt,
  lalt: Modifier.LeftAlt,
  ralt: Modifier.RightAlt,
  altgr: Modifier.RightAlt,
  super: Modifier.LeftGui,
  meta: Modifier.LeftGui,
  win: Modifier.LeftGui,
  gui: Modifier.LeftGui,
  lsuper: Modifier.LeftGui,
  rsuper: Modifier.RightGui,
};

/** A key combination: modifier bits plus at most one non-modifier key (0 for modifiers alone). */
export interface KeyCombo {
  modifiers: number;
  usage: number;
}

/** A combination that cannot be parsed; the message names the part and what is accepted. */
export class KeyComboError extends RangeError {
  override name = 'KeyComboError';
}

/**
 * Parse "ctrl+alt+f2", "shift+a", "enter", "esc", "f1".."f24", arrows ("left", "up"...), a
 * single printable character ("a", "/", "+"), or "0xNN" for any keyboard-page usage.
 */
export function parseKeyCombo(text: string): KeyCombo {
  const trimmed = text.trim();
  if (trimmed === '') throw new KeyComboError('empty key combination');
  // "+" alone and combos ending in "+" ("ctrl++") name the plus key itself.
  const parts =
    trimmed === '+' ? ['+'] : trimmed.endsWith('++') ? [...trimmed.slice(0, -2).split('+'), '+'] : trimmed.split('+');
  let modifiers = 0;
  let usage = 0;
  for (const raw of parts) {
    const part = raw.length === 1 ? raw : raw.toLowerCase();
    const mod = MODIFIER_NAMES[part];
    if (mod !== undefined) {
      modifiers |= mod;
      continue;
    }
    const key = keyNamed(part);
    if (key === undefined)
      throw new KeyComboError(
        `unknown key "${raw}" in "${text}" (e.g. ctrl+alt+f2, shift+a, enter, esc, f1, left, 0x04)`,
      );
    if (usage !== 0) throw new KeyComboError(`"${text}" names more than one non-modifier key`);
    usage = key.usage;
    if (key.shift) modifiers |= Modifier.LeftShift;
  }
  return { modifiers, usage };
}

function keyNamed(part: string): KeyStroke | undefined {
  const named = NAMED_KEYS[part];
  if (named !== undefined) return { usage: named, shift: false };
  const f = /^f(\d{1,2})$/.exec(part);
  if (f) {
    const n = Number(f[1]);
    if (n >= 1 && n <= 12) return { usage: 0x3a + n - 1, shift: false };
    if (n >= 13 && n <= 24) return { usage: 0x68 + n - 13, shift: false };
    return undefined;
  }
  const hex = /^0x([0-9a-f]{1,2})$/.exec(part);
  if (hex) {
    const usage = Number.parseInt(hex[1]!, 16);
    // 0-3 are error codes, 0xe0-0xe7 are modifiers (named above)
    return usage >= 0x04 && usage < MODIFIER_USAGE_FIRST ? { usage, shift: false } : undefined;
  }
  if (part.length === 1) return keyForChar(part);
  return undefined;
}

/** A text the keyboard cannot type; names the first such character and its position. */
export class UntypableTextError extends RangeError {
  override name = 'UntypableTextError';
}

/**
 * The reports that type `text` on top of `held` (modifiers and keys the operator holds down):
 * for every character a report with its key down (and Shift if it needs one) and one with it up.
 */
export function textReports(text: string, held: KeyboardState): Buffer[] {
  const strokes: KeyStroke[] = [];
  let index = 0;
  for (const ch of text) {
    const k = keyForChar(ch);
    if (!k) {
      const code = ch.codePointAt(0)!.toString(16).padStart(4, '0');
      throw new UntypableTextError(
        `cannot type ${JSON.stringify(ch)} (U+${code}) at position ${index}: US layout, printable ASCII, tab and newline only`,
      );
    }
    strokes.push(k);
    index++;
  }
  const reports: Buffer[] = [];
  for (const k of strokes) {
    const modifiers = held.modifiers | (k.shift ? Modifier.LeftShift : 0);
    reports.push(encodeKeyboardReport({ modifiers, keys: withKey(held.keys, k.usage) }));
    reports.push(encodeKeyboardReport(held));
  }
  return reports;
}

/** The reports for pressing a combination (down then up) on top of `held`. */
export function comboPressReports(combo: KeyCombo, held: KeyboardState): Buffer[] {
  return [encodeKeyboardReport(comboDown(combo, held)), encodeKeyboardReport(held)];
}

/** The state after holding a combination down. */
export function comboDown(combo: KeyCombo, held: KeyboardState): KeyboardState {
  return {
    modifiers: held.modifiers | combo.modifiers,
    keys: combo.usage ? withKey(held.keys, combo.usage) : held.keys,
  };
}

/** The state after letting a combination go. */
export function comboUp(combo: KeyCombo, held: KeyboardState): KeyboardState {
  return { modifiers: held.modifiers & ~combo.modifiers, keys: held.keys.filter((k) => k !== combo.usage) };
}

function withKey(keys: number[], usage: number): number[] {
  return keys.includes(usage) ? keys : [...keys, usage];
}

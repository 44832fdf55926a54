import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  comboPressReports,
  decodeKeyboardReport,
  decodeLeds,
  encodeKeyboardReport,
  KEYBOARD_REPORT_DESCRIPTOR,
  KeyComboError,
  keyForChar,
  Modifier,
  parseKeyCombo,
  textReports,
  UntypableTextError,
} from '../../src/devices/hid/keyboard-wire.js';
import { decodeMouseReport, MOUSE_REPORT_DESCRIPTOR, moveReports } from '../../src/devices/hid/mouse-wire.js';

const hex = (b: Buffer) => b.toString('hex');
const none = { modifiers: 0, keys: [] };

test('report descriptors have the lengths the HID descriptor announces (QEMU: 63 and 52)', () => {
  assert.equal(KEYBOARD_REPORT_DESCRIPTOR.length, 63);
  assert.equal(MOUSE_REPORT_DESCRIPTOR.length, 52);
  assert.equal(KEYBOARD_REPORT_DESCRIPTOR.at(-1), 0xc0);
});

test('boot keyboard report: modifiers, reserved byte, six keys, roll-over past six', () => {
  assert.equal(hex(encodeKeyboardReport({ modifiers: Modifier.LeftShift, keys: [0x04, 0x05] })), '0200040500000000');
  assert.equal(hex(encodeKeyboardReport({ modifiers: 0, keys: [4, 5, 6, 7, 8, 9, 10] })), '0000010101010101');
  assert.deepEqual(decodeKeyboardReport(Buffer.from('0500040000000000', 'hex')), { modifiers: 5, keys: [4] });
});

test('US layout: letters, shifted letters and symbols, digits, whitespace', () => {
  assert.deepEqual(keyForChar('a'), { usage: 0x04, shift: false });
  assert.deepEqual(keyForChar('Z'), { usage: 0x1d, shift: true });
  assert.deepEqual(keyForChar('0'), { usage: 0x27, shift: false });
  assert.deepEqual(keyForChar('!'), { usage: 0x1e, shift: true });
  assert.deepEqual(keyForChar(')'), { usage: 0x27, shift: true });
  assert.deepEqual(keyForChar('~'), { usage: 0x35, shift: true });
  assert.deepEqual(keyForChar('|'), { usage: 0x31, shift: true });
  assert.deepEqual(keyForChar('\n'), { usage: 0x28, shift: false });
  assert.deepEqual(keyForChar(' '), { usage: 0x2c, shift: false });
  assert.equal(keyForChar('é'), undefined);
});

test('text → a down and an up report per character, Shift only where needed', () => {
  const r = textReports('Hi!', none).map(hex);
  assert.deepEqual(r, [
    '02000b0000000000',
    '0000000000000000',
    '00000c0000000000',
    '0000000000000000',
    '02001e0000000000',
    '0000000000000000',
  ]);
  // a repeated letter goes up in between, so the host sees two presses
  assert.deepEqual(textReports('ll', none).map(hex), [
    '00000f0000000000',
    '0000000000000000',
    '00000f0000000000',
    '0000000000000000',
  ]);
});

test('text typed while keys are held keeps them in every report', () => {
  const held = { modifiers: Modifier.LeftShift, keys: [] };
  assert.deepEqual(textReports('a', held).map(hex), ['0200040000000000', '0200000000000000']);
  const ctrlHeld = { modifiers: Modifier.LeftCtrl, keys: [0x2c] };
  assert.deepEqual(textReports('B', ctrlHeld).map(hex), ['03002c0500000000', '01002c0000000000']);
});

test('untypable text is refused whole with the position', () => {
  assert.throws(
    () => textReports('ok\u00e9', none),
    (e: Error) => e instanceof UntypableTextError && /position 2/.test(e.message),
  );
});

test('key combinations', () => {
  assert.deepEqual(parseKeyCombo('ctrl+alt+f2'), { modifiers: Modifier.LeftCtrl | Modifier.LeftAlt, usage: 0x3b });
  assert.deepEqual(parseKeyCombo('Enter'), { modifiers: 0, usage: 0x28 });
  assert.deepEqual(parseKeyCombo('esc'), { modifiers: 0, usage: 0x29 });
  assert.deepEqual(parseKeyCombo('f12'), { modifiers: 0, usage: 0x45 });
  assert.deepEqual(parseKeyCombo('f13'), { modifiers: 0, usage: 0x68 });
  assert.deepEqual(parseKeyCombo('left'), { modifiers: 0, usage: 0x50 });
  assert.deepEqual(parseKeyCombo('shift'), { modifiers: Modifier.LeftShift, usage: 0 });
  assert.deepEqual(parseKeyCombo('A'), { modifiers: Modifier.LeftShift, usage: 0x04 });
  assert.deepEqual(parseKeyCombo('ctrl++'), { modifiers: Modifier.LeftCtrl | Modifier.LeftShift, usage: 0x2e });
  assert.deepEqual(parseKeyCombo('+'), { modifiers: Modifier.LeftShift, usage: 0x2e });
  assert.deepEqual(parseKeyCombo('0x04'), { modifiers: 0, usage: 0x04 });
  for (const bad of ['', 'ctrl+nope', 'a+b', 'f25', '0xe0', '0x00', 'ctrl+']) {
    assert.throws(() => parseKeyCombo(bad), KeyComboError, bad);
  }
  assert.deepEqual(comboPressReports(parseKeyCombo('ctrl+alt+f2'), none).map(hex), [
    '05003b0000000000',
    '0000000000000000',
  ]);
});

test('LED output report bits', () => {
  assert.deepEqual(decodeLeds(0x02), {
    numLock: false,
    capsLock: true,
    scrollLock: false,
    compose: false,
    kana: false,
    raw: 2,
  });
  assert.equal(decodeLeds(0x1f).kana, true);
});

test('mouse: movement split into ±127 steps, buttons kept, wheel signed', () => {
  const r = moveReports(300, -5, 0, 1).map(decodeMouseReport);
  assert.deepEqual(r, [
    { buttons: 1, dx: 127, dy: -5, wheel: 0 },
    { buttons: 1, dx: 127, dy: 0, wheel: 0 },
    { buttons: 1, dx: 46, dy: 0, wheel: 0 },
  ]);
  assert.deepEqual(moveReports(0, 0, -3, 0).map(decodeMouseReport), [{ buttons: 0, dx: 0, dy: 0, wheel: -3 }]);
  assert.equal(moveReports(0, 0, 0, 0).length, 1);
  assert.equal(hex(moveReports(-1, 1, 0, 0)[0]!), '00ff0100');
});

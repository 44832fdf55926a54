import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  acmFunctionalDescriptors,
  DEFAULT_LINE_CODING,
  describeLineCoding,
  encodeLineCoding,
  encodeSerialState,
  parseLineCoding,
  SerialState,
} from '../../src/devices/serial/acm-wire.js';

/** The 7 bytes as a host sends them: dwDTERate LE32, bCharFormat, bParityType, bDataBits. */
const coding = (baud: number, stop: number, parity: number, bits: number) =>
  Buffer.from([baud & 0xff, (baud >>> 8) & 0xff, (baud >>> 16) & 0xff, baud >>> 24, stop, parity, bits]);

test('line coding: decode, encode back, describe', () => {
  const c = parseLineCoding(coding(115200, 0, 0, 8));
  assert.deepEqual(c, { baud: 115200, dataBits: 8, parity: 'none', stopBits: 1 });
  assert.equal(describeLineCoding(c as Exclude<typeof c, string>), '115200 8N1');
  assert.equal(describeLineCoding({ baud: 19200, dataBits: 7, parity: 'even', stopBits: 2 }), '19200 7E2');
  assert.equal(describeLineCoding({ baud: 300, dataBits: 5, parity: 'mark', stopBits: 1.5 }), '300 5M1.5');
  for (const raw of [coding(9600, 1, 1, 5), coding(921600, 2, 4, 16), coding(0xffffffff, 0, 3, 6)]) {
    const parsed = parseLineCoding(raw);
    assert.equal(typeof parsed, 'object');
    assert.deepEqual(encodeLineCoding(parsed as Exclude<typeof parsed, string>), raw);
  }
  assert.deepEqual(encodeLineCoding(DEFAULT_LINE_CODING), coding(9600, 0, 0, 8));
});

test('line coding: absurd values and wrong sizes are refused with a reason', () => {
  assert.match(parseLineCoding(coding(0, 0, 0, 8)) as string, /zero baud/);
  assert.match(parseLineCoding(coding(9600, 3, 0, 8)) as string, /bCharFormat 3/);
  assert.match(parseLineCoding(coding(9600, 0, 5, 8)) as string, /bParityType 5/);
  for (const bits of [0, 4, 9, 15, 17, 255]) {
    assert.match(parseLineCoding(coding(9600, 0, 0, bits)) as string, new RegExp(`bDataBits ${bits}`));
  }
  assert.match(parseLineCoding(Buffer.alloc(6)) as string, /6 bytes/);
  assert.match(parseLineCoding(Buffer.alloc(8)) as string, /8 bytes/);
});

test('functional descriptors: header 1.10, call management, ACM caps 0x06, union', () => {
  assert.deepEqual(
    acmFunctionalDescriptors(2, 3),
    Buffer.from([5, 0x24, 0, 0x10, 1, 5, 0x24, 1, 0, 3, 4, 0x24, 2, 0x06, 5, 0x24, 6, 2, 3]),
  );
});

test('SERIAL_STATE notification: A1 20 0000 <iface> 0200 <bitmap>', () => {
  assert.deepEqual(
    encodeSerialState(4, SerialState.Dcd | SerialState.Dsr),
    Buffer.from([0xa1, 0x20, 0, 0, 4, 0, 2, 0, 3, 0]),
  );
});

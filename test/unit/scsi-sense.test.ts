import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { buildFixedSense, describeSense, parseSense, Sense } from '../../src/devices/mass-storage/scsi/sense.js';

describe('SCSI sense builder', () => {
  it('builds 18-byte fixed-format sense', () => {
    const b = buildFixedSense(Sense.InvalidFieldInCdb);
    assert.equal(b.length, 18);
    assert.deepEqual([...b], [0x70, 0, 0x05, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x24, 0, 0, 0, 0, 0]);
  });

  it('sets VALID and INFORMATION when given a 32-bit value', () => {
    const b = buildFixedSense(Sense.LbaOutOfRange, 0x01020304);
    assert.equal(b[0], 0xf0);
    assert.deepEqual([...b.subarray(3, 7)], [1, 2, 3, 4]);
    assert.equal(buildFixedSense(Sense.LbaOutOfRange, 2 ** 40)[0], 0x70);
  });

  it('uses the exact triples of the table', () => {
    const triples: [keyof typeof Sense, string][] = [
      ['NoSense', '00/00/00'],
      ['BecomingReady', '02/04/01'],
      ['MediumNotPresent', '02/3a/00'],
      ['UnrecoveredReadError', '03/11/00'],
      ['WriteError', '03/0c/02'],
      ['CommunicationFailure', '04/08/00'],
      ['InvalidCommandOperationCode', '05/20/00'],
      ['LbaOutOfRange', '05/21/00'],
      ['InvalidFieldInCdb', '05/24/00'],
      ['LogicalUnitNotSupported', '05/25/00'],
      ['InvalidFieldInParameterList', '05/26/00'],
      ['SavingParametersNotSupported', '05/39/00'],
      ['MediumRemovalPrevented', '05/53/02'],
      ['MediumMayHaveChanged', '06/28/00'],
      ['PowerOnResetOccurred', '06/29/00'],
      ['WriteProtected', '07/27/00'],
      ['OverlappedCommandsAttempted', '0b/4e/00'],
      ['Miscompare', '0e/1d/00'],
    ];
    for (const [name, text] of triples) assert.equal(describeSense(Sense[name]), text, name);
  });

  it('parses what it builds, and descriptor format', () => {
    assert.deepEqual(parseSense(buildFixedSense(Sense.WriteProtected)), { key: 7, asc: 0x27, ascq: 0 });
    assert.deepEqual(parseSense(buildFixedSense(Sense.Miscompare, 5)), {
      key: 0xe,
      asc: 0x1d,
      ascq: 0,
      information: 5,
    });
    assert.deepEqual(parseSense(Buffer.from([0x72, 0x06, 0x29, 0x00, 0, 0, 0, 0])), { key: 6, asc: 0x29, ascq: 0 });
    assert.equal(parseSense(Buffer.from([0x12])), undefined);
  });
});

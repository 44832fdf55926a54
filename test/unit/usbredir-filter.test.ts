import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  checkFilter,
  type FilterDeviceInfo,
  FilterParseError,
  formatFilter,
  parseFilter,
} from '../../src/protocol/usbredir/filter.js';

const rule = (deviceClass: number, vendorId: number, productId: number, deviceVersionBcd: number, allow: boolean) => ({
  deviceClass,
  vendorId,
  productId,
  deviceVersionBcd,
  allow,
});

describe('usbredir filter strings', () => {
  it('parses hex, octal, decimal and -1', () => {
    assert.deepEqual(parseFilter('0x03,-1,-1,-1,0|-1,-1,-1,-1,1'), [
      rule(3, -1, -1, -1, false),
      rule(-1, -1, -1, -1, true),
    ]);
    assert.deepEqual(parseFilter('010,0X1d6B,260,0,5'), [rule(8, 0x1d6b, 260, 0, true)]);
    assert.deepEqual(parseFilter(' 8,+1,0x0,00,0'), [rule(8, 1, 0, 0, false)]);
  });

  it('has strtok semantics: empty rules and tokens are skipped', () => {
    assert.deepEqual(parseFilter(''), []);
    assert.deepEqual(parseFilter('||'), []);
    assert.deepEqual(parseFilter('|8,-1,-1,-1,1||'), [rule(8, -1, -1, -1, true)]);
    assert.deepEqual(parseFilter(',,8,,-1,-1,-1,1,'), [rule(8, -1, -1, -1, true)]);
  });

  it('rejects bad strings', () => {
    const bad = [
      '1,2,3,4',
      '1,2,3,4,5,6',
      '08,-1,-1,-1,1', // 8 is not an octal digit
      '0x,-1,-1,-1,1',
      '0xg,-1,-1,-1,1',
      '3 ,-1,-1,-1,1',
      'a,-1,-1,-1,1',
      '-,-1,-1,-1,1',
      '256,-1,-1,-1,1',
      '-2,-1,-1,-1,1',
      '3,0x10000,-1,-1,1',
      '3,-1,65536,-1,1',
      '3,-1,-1,0x10000,1',
      '3,-1,-1,-1,99999999999',
      '8,-1,-1,-1,1|9,-1,-1',
    ];
    for (const s of bad) assert.throws(() => parseFilter(s), FilterParseError, s);
  });

  it('prints like usbredirfilter_rules_to_string and round-trips', () => {
    const rules = [rule(3, -1, -1, -1, false), rule(8, 0x1d6b, 0x104, 0x510, true), rule(-1, -1, -1, -1, true)];
    const text = formatFilter(rules);
    assert.equal(text, '0x03,-1,-1,-1,0|0x08,0x1d6b,0x0104,0x0510,1|-1,-1,-1,-1,1');
    assert.deepEqual(parseFilter(text), rules);
    assert.equal(formatFilter(rules, { token: ':', rule: '|' }), text.replaceAll(',', ':'));
    assert.deepEqual(parseFilter('0x08:-1:-1:-1:1|-1:-1:-1:-1:0', { token: ':', rule: '|' }), [
      rule(8, -1, -1, -1, true),
      rule(-1, -1, -1, -1, false),
    ]);
    assert.throws(() => formatFilter([rule(300, -1, -1, -1, true)]), FilterParseError);
  });
});

function device(over: Partial<FilterDeviceInfo>): FilterDeviceInfo {
  return {
    deviceClass: 0,
    deviceSubclass: 0,
    deviceProtocol: 0,
    vendorId: 0x1234,
    productId: 0x5678,
    deviceVersionBcd: 0x0100,
    interfaces: [],
    ...over,
  };
}
const iface = (interfaceClass: number, interfaceSubclass = 0, interfaceProtocol = 0) => ({
  interfaceClass,
  interfaceSubclass,
  interfaceProtocol,
});

describe('usbredir filter check', () => {
  const spiceDefault = parseFilter('0x03,-1,-1,-1,0|-1,-1,-1,-1,1');

  it('checks the device class, then each interface; first match wins', () => {
    assert.deepEqual(checkFilter(spiceDefault, device({ interfaces: [iface(8, 6, 0x50)] })), { allowed: true });
    assert.deepEqual(checkFilter(spiceDefault, device({ deviceClass: 3 })), {
      allowed: false,
      reason: 'denied',
      rule: 0,
    });
    assert.equal(checkFilter(spiceDefault, device({ interfaces: [iface(8), iface(3, 1, 1)] })).allowed, false);
    const byVendor = parseFilter('-1,0x1234,-1,-1,1|-1,-1,-1,-1,0');
    assert.equal(checkFilter(byVendor, device({ interfaces: [iface(3, 1, 1)] })).allowed, true);
    assert.equal(checkFilter(byVendor, device({ vendorId: 1, interfaces: [iface(8)] })).allowed, false);
    const version = parseFilter('-1,-1,-1,0x0100,0|-1,-1,-1,-1,1');
    assert.equal(checkFilter(version, device({ interfaces: [iface(8)] })).allowed, false);
    assert.equal(checkFilter(version, device({ deviceVersionBcd: 0x0200, interfaces: [iface(8)] })).allowed, true);
  });

  it('skips the device class pass for 0x00 and 0xEF', () => {
    const denyMisc = parseFilter('0xef,-1,-1,-1,0|0x00,-1,-1,-1,0|-1,-1,-1,-1,1');
    assert.equal(checkFilter(denyMisc, device({ deviceClass: 0xef, interfaces: [iface(8)] })).allowed, true);
    assert.equal(checkFilter(denyMisc, device({ deviceClass: 0x00, interfaces: [iface(8)] })).allowed, true);
    assert.equal(checkFilter(denyMisc, device({ deviceClass: 0xff, interfaces: [iface(8)] })).allowed, true);
    assert.equal(
      checkFilter(parseFilter('0xff,-1,-1,-1,0|-1,-1,-1,-1,1'), device({ deviceClass: 0xff })).allowed,
      false,
    );
  });

  it('denies when nothing matches unless default allow', () => {
    const onlyStorage = parseFilter('0x08,-1,-1,-1,1');
    assert.deepEqual(checkFilter(onlyStorage, device({ interfaces: [iface(7)] })), {
      allowed: false,
      reason: 'no-match',
    });
    assert.deepEqual(checkFilter(onlyStorage, device({ interfaces: [iface(7)] }), { defaultAllow: true }), {
      allowed: true,
    });
    assert.deepEqual(checkFilter([], device({ interfaces: [iface(7)] })), { allowed: false, reason: 'no-match' });
    assert.deepEqual(checkFilter([], device({ interfaces: [] })), { allowed: true });
  });

  it('skips non-boot HID interfaces of multi-interface devices, but not all of them', () => {
    const noHid = parseFilter('0x03,-1,-1,-1,0|-1,-1,-1,-1,1');
    // A keyboard's vendor HID interface next to a storage interface is skipped ...
    assert.equal(checkFilter(noHid, device({ interfaces: [iface(8), iface(3, 0, 0)] })).allowed, true);
    // ... unless asked not to skip.
    assert.equal(
      checkFilter(noHid, device({ interfaces: [iface(8), iface(3, 0, 0)] }), { dontSkipNonBootHid: true }).allowed,
      false,
    );
    // A single non-boot HID interface is not skipped.
    assert.equal(checkFilter(noHid, device({ interfaces: [iface(3, 0, 0)] })).allowed, false);
    // Only non-boot HID interfaces: still checked (the 0.7.1 KVM switch fix).
    assert.equal(checkFilter(noHid, device({ interfaces: [iface(3, 0, 0), iface(3, 0, 0)] })).allowed, false);
    // A boot keyboard interface is never skipped.
    assert.equal(checkFilter(noHid, device({ interfaces: [iface(8), iface(3, 1, 1)] })).allowed, false);
  });

  it('reports invalid rules', () => {
    assert.deepEqual(checkFilter([rule(999, -1, -1, -1, true)], device({})), {
      allowed: false,
      reason: 'invalid-rules',
    });
  });
});

import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  buildConfiguration,
  DescriptorError,
  decodeStringDescriptor,
  parseConfiguration,
  parseDeviceDescriptor,
  StringTable,
} from '../../src/usb/descriptors.js';

const iface = {
  number: 0,
  alternates: [
    {
      alternate: 0,
      interfaceClass: 8,
      interfaceSubClass: 6,
      interfaceProtocol: 0x50,
      endpoints: [
        { address: 0x81, type: 'bulk' as const, maxPacketSize: 512, interval: 0 },
        { address: 0x02, type: 'bulk' as const, maxPacketSize: 512, interval: 0 },
      ],
    },
    {
      alternate: 1,
      interfaceClass: 8,
      interfaceSubClass: 6,
      interfaceProtocol: 0x62,
      name: 'uas',
      endpoints: [
        {
          address: 0x83,
          type: 'interrupt' as const,
          maxPacketSize: 64,
          interval: 4,
          extra: Buffer.from([4, 0x24, 1, 0]),
        },
      ],
    },
  ],
};

test('configuration descriptors round-trip through build and parse', () => {
  const strings = new StringTable();
  const cfg = buildConfiguration({ value: 1, attributes: 0, maxPowerMa: 100, superSpeed: false }, [iface], strings);
  assert.equal(cfg.readUInt16LE(2), cfg.length);
  const parsed = parseConfiguration(cfg);
  assert.equal(parsed.value, 1);
  assert.equal(parsed.attributes, 0x80);
  assert.equal(parsed.maxPower, 50);
  assert.equal(parsed.interfaces.length, 1);
  const [a0, a1] = parsed.interfaces[0]!.alternates;
  assert.deepEqual(
    a0!.endpoints.map((e) => [e.address, e.type, e.maxPacketSize]),
    [
      [0x81, 'bulk', 512],
      [0x02, 'bulk', 512],
    ],
  );
  assert.equal(a1!.interfaceProtocol, 0x62);
  assert.deepEqual([...a1!.endpoints[0]!.extra], [4, 0x24, 1, 0]);
  assert.equal(decodeStringDescriptor(strings.descriptor(a1!.iInterface)!), 'uas');
});

test('SuperSpeed configurations carry endpoint companions', () => {
  const cfg = buildConfiguration(
    { value: 1, attributes: 0, maxPowerMa: 96, superSpeed: true },
    [iface],
    new StringTable(),
  );
  const parsed = parseConfiguration(cfg);
  assert.equal(parsed.interfaces[0]!.alternates[0]!.endpoints[0]!.companionAttributes, 0);
  assert.equal(parsed.maxPower, 12);
});

test('malformed configuration descriptors are errors, not crashes', () => {
  const good = buildConfiguration(
    { value: 1, attributes: 0, maxPowerMa: 100, superSpeed: false },
    [iface],
    new StringTable(),
  );
  const cases: Buffer[] = [
    Buffer.alloc(0),
    good.subarray(0, 8),
    good.subarray(0, 20),
    Buffer.from([9, 2, 0xff, 0xff, 1, 1, 0, 0x80, 50]),
    Buffer.concat([Buffer.from([9, 2, 11, 0, 1, 1, 0, 0x80, 50]), Buffer.from([0, 4])]),
    Buffer.concat([Buffer.from([9, 2, 16, 0, 1, 1, 0, 0x80, 50]), Buffer.from([7, 5, 0x81, 2, 0, 2, 0])]),
  ];
  for (const c of cases) assert.throws(() => parseConfiguration(c), DescriptorError);
  let seed = 1;
  for (let i = 0; i < 2000; i++) {
    const b = Buffer.from(good);
    for (let k = 0; k < 3; k++) {
      seed = (seed * 1103515245 + 12345) >>> 0;
      b[seed % b.length] = seed >>> 24;
    }
    try {
      parseConfiguration(b);
    } catch (err) {
      assert.ok(err instanceof DescriptorError, String(err));
    }
  }
});

test('device descriptors are validated', () => {
  assert.throws(() => parseDeviceDescriptor(Buffer.alloc(17)), DescriptorError);
  assert.throws(() => parseDeviceDescriptor(Buffer.alloc(18)), DescriptorError);
});

import assert from 'node:assert/strict';
import net from 'node:net';
import { test } from 'node:test';
import { UsbipClient } from '../../src/client/usbip/client.js';
import { UsbipImportError } from '../../src/client/usbip/remote-device.js';
import { AccessPolicy, AccessRuleError, describeClient } from '../../src/server/access.js';
import { DeviceRegistry } from '../../src/server/registry.js';
import { UsbipServer } from '../../src/server/usbip/index.js';
import { UsbredirListener } from '../../src/server/usbredir/index.js';
import { setLogSink } from '../../src/util/log.js';
import { ParkingDevice } from '../support/parking-device.js';

const alice = {
  address: '10.1.2.3',
  certificate: { subject: 'CN=alice,O=lab', altNames: ['DNS:alice.lab', 'email:a@lab'] },
};
const bob = { address: '192.168.7.9', psk: 'bob-laptop' };
const plain = { address: '::ffff:10.9.9.9' };
const v6 = { address: 'fd00::42' };

test('access: no rules means everyone may use everything', () => {
  assert.equal(AccessPolicy.open.restricted, false);
  assert.ok(AccessPolicy.open.allows(plain, '1-7'));
});

test('access: clients by certificate name, PSK identity, address and prefix; devices by bus id', () => {
  const p = AccessPolicy.parse([
    { clients: ['cert:alice'], devices: ['1-1'] },
    { clients: ['cert:alice.lab', 'psk:bob-laptop'], devices: ['1-2'] },
    { clients: 'address:10.9.0.0/16', devices: ['1-3'] },
    { clients: ['address:fd00::/8'], devices: '*' },
    { clients: ['psk:*'], devices: ['1-4'] },
  ]);
  assert.ok(p.restricted);
  assert.ok(p.allows(alice, '1-1'));
  assert.ok(p.allows(alice, '1-2'), 'a subjectAltName without its type');
  assert.ok(!p.allows(alice, '1-3'));
  assert.ok(p.allows(bob, '1-2'));
  assert.ok(!p.allows(bob, '1-1'));
  assert.ok(p.allows(bob, '1-4'), 'psk:* is any PSK client');
  assert.ok(!p.allows(alice, '1-4'));
  assert.ok(p.allows(plain, '1-3'), 'an IPv4-mapped address matches an IPv4 prefix');
  assert.ok(!p.allows(plain, '1-1'));
  assert.ok(p.allows(v6, '1-9'));
  assert.ok(!p.allows({ address: 'fe80::1' }, '1-9'));
  assert.ok(!p.allows({ address: '10.1.2.3' }, '1-1'), 'the address of a certificate holder is not the certificate');
  assert.deepEqual(p.unknownDevices(['1-1', '1-2', '1-3']), ['1-4']);
});

test('access: a bad rule says what is wrong and where', () => {
  const bad: [unknown, RegExp][] = [
    [{}, /must be a list/],
    [[{ clients: ['*'] }], /access\[0\]\.devices: expected a non-empty list/],
    [[{ clients: [], devices: ['1-1'] }], /access\[0\]\.clients: expected a non-empty list/],
    [[{ clients: ['user:x'], devices: ['1-1'] }], /"user:x": expected \*, address/],
    [[{ clients: ['address:10.0.0.300'], devices: ['1-1'] }], /not an IP address/],
    [[{ clients: ['address:10.0.0.0/33'], devices: ['1-1'] }], /prefix must be 0-32/],
    [[{ clients: ['*'], devices: ['disk'] }], /"disk" is not a bus id/],
    [[{ clients: ['*'], devices: ['1-1'], extra: 1 }], /unknown key "extra"/],
    [[{ clients: ['psk:'], devices: ['1-1'] }], /names nobody/],
  ];
  for (const [value, message] of bad)
    assert.throws(
      () => AccessPolicy.parse(value),
      (e) => e instanceof AccessRuleError && message.test(e.message),
    );
});

test('access: log names', () => {
  assert.equal(describeClient(alice), 'cert CN=alice,O=lab (10.1.2.3)');
  assert.equal(describeClient(bob), 'psk bob-laptop (192.168.7.9)');
  assert.equal(describeClient(plain), '::ffff:10.9.9.9');
});

async function twoDevices() {
  const registry = new DeviceRegistry();
  for (let i = 0; i < 2; i++) {
    const d = new ParkingDevice();
    d.configuration = 1;
    registry.add(d);
  }
  return registry;
}

test('access over USB/IP: DEVLIST shows only what the client may use, an import of another device is NoDev', async () => {
  const logs: string[] = [];
  setLogSink((line) => logs.push(line));
  const registry = await twoDevices();
  const access = AccessPolicy.parse([{ clients: ['address:127.0.0.1'], devices: ['1-2'] }]);
  const server = new UsbipServer(registry, { host: '127.0.0.1', port: 0 }, { access });
  const address = await server.listen();
  const client = new UsbipClient();
  const list = await client.listDevices(address);
  assert.deepEqual(
    list.map((d) => d.busid),
    ['1-2'],
  );
  await assert.rejects(client.importDevice(address, '1-1'), (e) => e instanceof UsbipImportError);
  assert.ok(
    logs.some((l) => /import of 1-1 refused: 127\.0\.0\.1 may not use it/.test(l)),
    logs.join('\n'),
  );
  const device = await client.importDevice(address, '1-2');
  await device.close();
  await server.close();
  setLogSink('silent');
});

test('access over usbredir: a client that may not use the device is closed before the hello', async () => {
  setLogSink('silent');
  const registry = await twoDevices();
  const access = AccessPolicy.parse([{ clients: ['address:10.0.0.1'], devices: ['*'] }]);
  const listener = new UsbredirListener(registry, registry.get('1-1')!, { host: '127.0.0.1', port: 0 }, { access });
  await listener.listen();
  const socket = net.connect(listener.address!.port, '127.0.0.1');
  let received = 0;
  socket.on('data', (c: Buffer) => {
    received += c.length;
  });
  await new Promise((resolve) => socket.once('close', resolve));
  assert.equal(received, 0, 'not even a hello');
  assert.equal(registry.get('1-1')!.owner, undefined);
  await listener.close();
});

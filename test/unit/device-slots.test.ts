// A remote device's slot in the registry: the busid exists before the device, the servers hide or
// hold it while it is away, and a device that comes back is exported under the same busid.
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { test } from 'node:test';
import { DeviceSlots } from '../../src/cli/device-slots.js';
import { UsbipClient } from '../../src/client/usbip/index.js';
import { createKeyboard, createMouse } from '../../src/devices/hid/index.js';
import { PacketType as T } from '../../src/protocol/usbredir/constants.js';
import { DeviceRegistry } from '../../src/server/registry.js';
import { UsbipServer } from '../../src/server/usbip/index.js';
import { UsbredirListener } from '../../src/server/usbredir/index.js';
import type { UsbDevice } from '../../src/usb/device.js';
import type { DeviceSource, DeviceSourceEvents } from '../../src/usb/source.js';
import { TransferStatus } from '../../src/usb/status.js';
import { getDescriptor } from '../support/drive.js';
import { until } from '../support/usbip-wire.js';
import { UsbredirWire } from '../support/usbredir-wire.js';

/** A source the test drives by hand: `arrive` is a remote device connecting. */
class HandSource extends EventEmitter<DeviceSourceEvents> implements DeviceSource {
  readonly description = 'usbip://192.0.2.1:3240/1-1';
  started = false;
  closed = false;
  start(): void {
    this.started = true;
  }
  async close(): Promise<void> {
    this.closed = true;
  }
  arrive(device: UsbDevice): void {
    this.emit('device', device);
  }
}

/** The device goes away the way a remote one does: pending transfers end, then `disconnect`. */
function unplug(device: UsbDevice): Promise<void> {
  device.emit('disconnect');
  return device.close();
}

test('USB/IP: a remote slot is listed only while its device is here, and keeps its busid', async () => {
  const registry = new DeviceRegistry();
  registry.add(createKeyboard());
  const slots = new DeviceSlots(registry);
  const source = new HandSource();
  const slot = slots.add(source);
  assert.equal(slot.busid, '1-2');
  assert.equal(slot.device, undefined);
  slots.start();
  assert.ok(source.started);
  const server = new UsbipServer(registry, { host: '127.0.0.1', port: 0 });
  await server.listen();
  const where = server.address;
  const client = new UsbipClient({ timeoutMs: 2000 });
  try {
    assert.deepEqual(
      (await client.listDevices(where)).map((d) => d.busid),
      ['1-1'],
    );
    await assert.rejects(client.importDevice(where, '1-2'), /no such device/);

    const first = createKeyboard();
    source.arrive(first);
    assert.equal(slot.device, first);
    assert.deepEqual(
      (await client.listDevices(where)).map((d) => d.busid),
      ['1-1', '1-2'],
    );
    const imported = await client.importDevice(where, '1-2');
    const gone = new Promise<void>((resolve) => imported.once('disconnect', resolve));
    await unplug(first);
    await gone;
    assert.equal(slot.device, undefined);
    await until(() => slot.owner === undefined, 'the slot released');
    assert.deepEqual(
      (await client.listDevices(where)).map((d) => d.busid),
      ['1-1'],
    );

    const second = createKeyboard();
    source.arrive(second);
    const again = await client.importDevice(where, '1-2');
    const t = await getDescriptor(again, 1, 0, 18);
    assert.equal(t.status, TransferStatus.Ok);
    assert.equal(slot.device, second);
    await again.close();
  } finally {
    await server.close();
    await slots.close();
    await registry.closeAll();
  }
  assert.ok(source.closed);
});

test('usbredir: a guest is held until the remote device arrives, and keeps its connection while it is away', async () => {
  const registry = new DeviceRegistry();
  const slots = new DeviceSlots(registry);
  const source = new HandSource();
  const slot = slots.add(source);
  slots.start();
  const listener = new UsbredirListener(registry, slot, { host: '127.0.0.1', port: 0 });
  await listener.listen();
  const wire = await UsbredirWire.connect(listener.address!.port);
  const count = (type: number) => wire.packets.filter((p) => p.type === type).length;
  try {
    wire.send([{ type: T.Hello, id: 0n, version: 'wire guest', caps: [...wire.neg.ourCaps] }]);
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(wire.packets.length, 0, 'no hello while there is no device');
    assert.equal(wire.closed, false);
    source.arrive(createKeyboard());
    await until(() => count(T.DeviceConnect) === 1, 'device_connect');
    const owner = slot.owner;
    assert.match(owner ?? '', /^usbredir /);
    await unplug(slot.device!);
    await until(() => count(T.DeviceDisconnect) === 1, 'device_disconnect');
    wire.send([{ type: T.DeviceDisconnectAck, id: 0n }]);
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(wire.closed, false, 'the connection stays open while the device is away');
    assert.equal(slot.owner, owner, 'and the guest keeps its claim');

    const packetsBefore = wire.packets.length;
    source.arrive(createMouse());
    await until(() => count(T.DeviceConnect) === 2, 'a second device_connect on the same connection');
    const again = wire.packets.slice(packetsBefore);
    assert.deepEqual(
      again.map((p) => p.type),
      [T.InterfaceInfo, T.EpInfo, T.DeviceConnect],
      'fresh interface and endpoint info before the new device_connect',
    );
    const connect = again[2] as { productId: number };
    assert.equal(connect.productId, 3, 'the new device is the mouse');
  } finally {
    wire.socket.destroy();
    await until(() => slot.owner === undefined, 'the claim released when the connection closes');
    await listener.close();
    await slots.close();
    await registry.closeAll();
  }
});

test('a source that yields a second device while the first is here gets a second slot', async () => {
  const registry = new DeviceRegistry();
  const slots = new DeviceSlots(registry);
  const source = new HandSource();
  slots.add(source);
  slots.start();
  source.arrive(createKeyboard());
  source.arrive(createKeyboard());
  assert.deepEqual(
    registry.present().map((e) => [e.busid, e.origin]),
    [
      ['1-1', source.description],
      ['1-2', source.description],
    ],
  );
  await slots.close();
  await registry.closeAll();
});

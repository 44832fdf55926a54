// Regressions for what `npm run fuzz` found (test/fuzz/). Each test replays the essence of a
// saved failing input.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import net from 'node:net';
import { after, before, test } from 'node:test';
import { DeviceRegistry } from '../../src/server/registry.js';
import { UsbipServer } from '../../src/server/usbip/index.js';
import { UsbredirHostSession } from '../../src/server/usbredir/session.js';
import { createLogger, setLogSink } from '../../src/util/log.js';
import { ParkingDevice } from '../support/parking-device.js';
import { inSubmit, UsbipWire, until } from '../support/usbip-wire.js';
import { bulkIn, UsbredirWire } from '../support/usbredir-wire.js';

const rejections: unknown[] = [];
const onRejection = (err: unknown) => rejections.push(err);
before(() => {
  setLogSink('silent');
  process.on('unhandledRejection', onRejection);
});
after(() => {
  process.off('unhandledRejection', onRejection);
});

/** Bytes that end a connection: usbredir packet type 0x01000000; USB/IP CMD_SUBMIT for devid 0. */
const GARBAGE = Buffer.from([0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, ...Buffer.alloc(36)]);

/** One transfer over the byte cap is parked: bad bytes behind it wait, and end the connection once it completes. */
async function garbageBehindTheCap(wire: { socket: net.Socket; closed: boolean }, device: ParkingDevice) {
  await until(() => device.parked === 1, 'bulk IN parked');
  wire.socket.write(GARBAGE);
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(wire.closed, false, 'held: not parsed yet');
  device.complete(device.parkedTransfers()[0]!);
  await until(() => wire.closed, 'connection closed for the protocol error');
}

// server-usbredir seed 2 input 1940: a request over the byte cap holds the parser; the bytes
// behind it were parsed when the transfer completed, and their protocol error escaped the
// session's promise chain as an unhandled rejection, which ends the whole server process.
test('usbredir: a bad packet parsed after the in-flight cap lifts closes only that connection', async () => {
  const device = new ParkingDevice();
  device.configuration = 1;
  let session: UsbredirHostSession | undefined;
  const server = net.createServer((socket) => {
    session = new UsbredirHostSession(socket, {
      device,
      peer: 'test',
      logger: createLogger('host'),
      maxBytesInFlight: 1024,
    });
    session.start();
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const wire = await UsbredirWire.connect((server.address() as net.AddressInfo).port);
  await wire.attach();
  wire.send([bulkIn(1n, 4096)]);
  await garbageBehindTheCap(wire, device);
  await session!.done;
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(rejections, []);
  server.close();
});

test('USB/IP: a bad PDU parsed after the in-flight cap lifts closes only that connection', async () => {
  const registry = new DeviceRegistry();
  const device = new ParkingDevice();
  device.configuration = 1;
  registry.add(device);
  const server = new UsbipServer(registry, { host: '127.0.0.1', port: 0 }, { maxBytesInFlight: 1024 });
  const address = await server.listen();
  const wire = await UsbipWire.import(address);
  wire.send(inSubmit(1, 1, 4096));
  await garbageBehindTheCap(wire, device);
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(rejections, []);
  await server.close();
});

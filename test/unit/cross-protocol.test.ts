import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, test } from 'node:test';
import { UsbipClient } from '../../src/client/usbip/index.js';
import { encodePacket } from '../../src/protocol/usbredir/codec.js';
import { PacketType as T } from '../../src/protocol/usbredir/constants.js';
import { capsFrom, Negotiation } from '../../src/protocol/usbredir/negotiation.js';
import type { Packet } from '../../src/protocol/usbredir/packets.js';
import { UsbredirParser } from '../../src/protocol/usbredir/parser.js';
import { setLogSink } from '../../src/util/log.js';
import { oneDiskBothProtocols } from '../support/one-disk-both-protocols.js';

setLogSink('silent');

/** Connects as a usbredir guest and reports whether the device was offered or the connection refused. */
function usbredirGuest(port: number): Promise<{ outcome: 'connected' | 'closed'; socket: net.Socket }> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    const neg = new Negotiation('guest', capsFrom([1, 2, 3, 4, 5, 6, 7]));
    const parser = new UsbredirParser(neg, (p: Packet) => {
      if (p.type === T.DeviceConnect) resolve({ outcome: 'connected', socket });
    });
    socket.on('data', (c: Buffer) => parser.push(c));
    socket.on('close', () => resolve({ outcome: 'closed', socket }));
    socket.on('error', () => {});
    socket.once('connect', () => {
      for (const part of encodePacket({ type: T.Hello, id: 0n, version: 'cross test', caps: [...neg.ourCaps] }, neg)) {
        socket.write(part);
      }
    });
  });
}

const served = oneDiskBothProtocols();
const { entry } = served;

async function until(cond: () => boolean): Promise<void> {
  const deadline = Date.now() + 5000;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 10));
  }
}

test('a device imported over USB/IP is busy for usbredir, and free again after detach', async () => {
  const client = new UsbipClient();
  const dev = await client.importDevice({ host: '127.0.0.1', port: served.usbipPort }, '1-1');
  assert.match(entry.owner ?? '', /usbip/);
  const refused = await usbredirGuest(served.usbredirPort);
  assert.equal(refused.outcome, 'closed');
  await dev.close();
  await until(() => entry.owner === undefined);
  const accepted = await usbredirGuest(served.usbredirPort);
  assert.equal(accepted.outcome, 'connected');
  accepted.socket.destroy();
  await until(() => entry.owner === undefined);
});

test('a device used over usbredir is busy for USB/IP import', async () => {
  const guest = await usbredirGuest(served.usbredirPort);
  assert.equal(guest.outcome, 'connected');
  const client = new UsbipClient();
  await assert.rejects(client.importDevice({ host: '127.0.0.1', port: served.usbipPort }, '1-1'), /busy/i);
  guest.socket.destroy();
  await until(() => entry.owner === undefined);
  const dev = await client.importDevice({ host: '127.0.0.1', port: served.usbipPort }, '1-1');
  await dev.close();
});

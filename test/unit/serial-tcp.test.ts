import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import { test } from 'node:test';
import { ACM_DATA_IN, ACM_DATA_OUT, ACM_NOTIFY } from '../../src/devices/serial/acm-function.js';
import { TcpHostEnd } from '../../src/devices/serial/host-end.js';
import { createSerialDevice } from '../../src/devices/serial/index.js';
import { Transfer } from '../../src/usb/transfer.js';
import { setLogSink } from '../../src/util/log.js';
import { bulkIn, bulkOut, setConfiguration } from '../support/drive.js';

setLogSink('silent');

function client(port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = connect(port, '127.0.0.1', () => resolve(s));
    s.once('error', reject);
  });
}

function readAll(s: Socket): Promise<string> {
  return new Promise((resolve) => {
    let text = '';
    s.on('data', (d) => (text += d));
    s.on('close', () => resolve(text));
  });
}

async function serialOnTcp() {
  let end: TcpHostEnd | undefined;
  const dev = await createSerialDevice(
    (log) => {
      end = new TcpHostEnd('127.0.0.1', 0, log);
      return end;
    },
    { index: 0 },
  );
  await setConfiguration(dev, 1);
  const intr = () => {
    const t = new Transfer({ type: 'interrupt', endpoint: ACM_NOTIFY, length: 16 }) as Transfer & {
      done: Promise<void>;
    };
    t.done = dev.submit(t);
    return t;
  };
  return { dev, end: end!, intr };
}

test('tcp host end: connect → DCD|DSR, a second client is refused with a message, disconnect → SERIAL_STATE 0', async () => {
  const { dev, end, intr } = await serialOnTcp();
  assert.match(dev.name, /^serial tcp:127\.0\.0\.1:\d+$/);
  const up = intr();
  const a = await client(end.port);
  await up.done;
  assert.equal(up.data[8], 0x03);
  const b = await client(end.port);
  assert.match(await readAll(b), /already has a client/);
  assert.equal(end.connected, true, 'the first client keeps the port');
  const down = intr();
  a.destroy();
  await down.done;
  assert.equal(down.data[8], 0x00);
  // The port is free again for the next client.
  const again = intr();
  const c = await client(end.port);
  await again.done;
  assert.equal(again.data[8], 0x03);
  c.destroy();
  await dev.close();
});

test('tcp host end: bytes both ways between the socket and the bulk endpoints', async () => {
  const { dev, end } = await serialOnTcp();
  const s = await client(end.port);
  const received: Buffer[] = [];
  s.on('data', (d: Buffer) => received.push(d));
  const payload = Buffer.from(Array.from({ length: 3000 }, (_, i) => i & 0xff));
  await bulkOut(dev, ACM_DATA_OUT, payload.subarray(0, 1000));
  await bulkOut(dev, ACM_DATA_OUT, payload.subarray(1000));
  while (Buffer.concat(received).length < payload.length) await new Promise((r) => setTimeout(r, 5));
  assert.deepEqual(Buffer.concat(received), payload);
  s.write('from the host end');
  const t = bulkIn(dev, ACM_DATA_IN, 512);
  await t.done;
  assert.equal(t.data.toString(), 'from the host end');
  s.destroy();
  await dev.close();
});

test("tcp host end: a client that stops reading blocks the guest's OUT transfers; reading again lets all through", async () => {
  const { dev, end } = await serialOnTcp();
  const s = await client(end.port);
  s.pause();
  const chunk = 64 * 1024;
  const pending: Promise<Transfer>[] = [];
  let completed = 0;
  let blocked = false;
  // Kernel socket buffers on loopback hold a few MB: keep writing until a transfer stays queued.
  for (let i = 0; i < 512 && !blocked; i++) {
    const p = bulkOut(dev, ACM_DATA_OUT, Buffer.alloc(chunk, i & 0xff)).then((t) => {
      completed++;
      return t;
    });
    pending.push(p);
    const settled = await Promise.race([p.then(() => true), new Promise((r) => setTimeout(() => r(false), 100))]);
    blocked = !settled;
  }
  assert.ok(blocked, 'an OUT transfer stayed queued while the client did not read');
  const stuckAt = completed;
  await new Promise((r) => setTimeout(r, 200));
  assert.equal(completed, stuckAt, 'no progress while the client does not read');
  let got = 0;
  let ordered = true;
  s.on('data', (d: Buffer) => {
    for (let k = 0; k < d.length; k++) if (d[k] !== (Math.floor((got + k) / chunk) & 0xff)) ordered = false;
    got += d.length;
  });
  s.resume();
  await Promise.all(pending);
  const total = pending.length * chunk;
  while (got < total) await new Promise((r) => setTimeout(r, 5));
  assert.equal(got, total);
  assert.ok(ordered, 'every byte in order');
  s.destroy();
  await dev.close();
});

test('tcp host end: a port in use is one clear error', async () => {
  const { dev, end } = await serialOnTcp();
  await assert.rejects(
    createSerialDevice((log) => new TcpHostEnd('127.0.0.1', end.port, log), { index: 1 }),
    /cannot listen on tcp:127\.0\.0\.1:\d+: address already in use/,
  );
  await dev.close();
});

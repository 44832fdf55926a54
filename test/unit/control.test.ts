import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { lstatSync, mkdtempSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { UsbipClient } from '../../src/client/usbip/index.js';
import { createKeyboard, createMouse } from '../../src/devices/hid/index.js';
import { createDemoDisk } from '../../src/devices/mass-storage/index.js';
import {
  ControlAddressError,
  ControlInUseError,
  ControlServer,
  checkControlAddress,
  defaultControlPath,
  MAX_BODY_BYTES,
} from '../../src/server/control/index.js';
import { DeviceRegistry } from '../../src/server/registry.js';
import { UsbipServer } from '../../src/server/usbip/index.js';
import { setConfiguration } from '../support/drive.js';

const dir = mkdtempSync(join(tmpdir(), 'usbwire-control-'));
const registry = new DeviceRegistry();
const kb = createKeyboard();
registry.add(kb);
registry.add(createMouse());
registry.add(createDemoDisk(1, 2));
const sock = join(dir, 'c.sock');
const server = new ControlServer(registry, { kind: 'unix', path: sock });
await server.listen();
after(async () => {
  await server.close();
  await registry.closeAll();
});

interface Res {
  status: number;
  body: unknown;
}

function call(method: string, path: string, body?: string | Buffer, socketPath = sock): Promise<Res> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath, method, path }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(Buffer.concat(chunks).toString()) }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

test('GET /devices lists busid, name, owner and actions', async () => {
  registry.list()[0]!.owner = 'usbip 10.0.2.15:1234';
  const r = await call('GET', '/devices');
  registry.list()[0]!.owner = undefined;
  assert.equal(r.status, 200);
  assert.deepEqual(r.body, [
    {
      busid: '1-1',
      name: 'virtual keyboard',
      origin: null,
      connected: true,
      owner: 'usbip 10.0.2.15:1234',
      actions: ['type', 'key', 'leds'],
    },
    {
      busid: '1-2',
      name: 'virtual mouse',
      origin: null,
      connected: true,
      owner: null,
      actions: ['move', 'wheel', 'click', 'button'],
    },
    { busid: '1-3', name: 'demo disk (1 MiB in memory)', origin: null, connected: true, owner: null, actions: [] },
  ]);
  assert.deepEqual((await call('GET', '/devices/1-2')).body, (r.body as unknown[])[1]);
  assert.deepEqual((await call('GET', '/')).body, { service: 'usbwire', pid: process.pid });
});

test('actions run with their JSON arguments and return JSON results', async () => {
  assert.equal((await call('POST', '/devices/1-1/actions/type', '{"text":"a"}')).status, 503, 'not configured yet');
  await setConfiguration(kb, 1);
  const r = await call('POST', '/devices/1-1/actions/type', JSON.stringify({ text: 'Hi!' }));
  assert.deepEqual(r, { status: 200, body: { reports: 6 } });
  assert.equal(kb.input.fn.queued, 6);
  const leds = await call('POST', '/devices/1-1/actions/leds');
  assert.equal(leds.status, 200);
  assert.equal((leds.body as { capsLock: boolean }).capsLock, false);
});

test('unknown busid, unknown action, device without actions → 404 with a reason', async () => {
  const a = await call('POST', '/devices/9-9/actions/type', '{}');
  assert.equal(a.status, 404);
  assert.match((a.body as { error: string }).error, /no exported device 9-9 \(exported: 1-1, 1-2, 1-3\)/);
  const b = await call('POST', '/devices/1-1/actions/move', '{}');
  assert.equal(b.status, 404);
  assert.match((b.body as { error: string }).error, /has no action "move" \(it has: type, key, leds\)/);
  const c = await call('POST', '/devices/1-3/actions/type', '{}');
  assert.match((c.body as { error: string }).error, /has none/);
  const proto = await call('POST', '/devices/1-1/actions/__proto__', '{}');
  assert.equal(proto.status, 404);
  assert.equal((await call('GET', '/nothing')).status, 404);
  assert.equal((await call('GET', '/devices/1-1/actions/type/more')).status, 404);
});

test('garbage: bad JSON, non-object bodies, bad arguments → 400; wrong method → 405; server keeps going', async () => {
  for (const body of ['{', 'nul', '\u0000\u00ff', '"text"', '[1]', 'null', '42']) {
    const r = await call('POST', '/devices/1-1/actions/type', body);
    assert.equal(r.status, 400, body);
    assert.equal(typeof (r.body as { error: string }).error, 'string');
  }
  assert.equal((await call('POST', '/devices/1-1/actions/type', '{"text":5}')).status, 400);
  assert.equal((await call('POST', '/devices/1-1/actions/type', '{"text":"\u00e9"}')).status, 400);
  assert.equal((await call('POST', '/devices/1-1/actions/key', '{"combo":"hyper+x"}')).status, 400);
  assert.equal((await call('POST', '/devices/1-2/actions/move', '{"dx":"1"}')).status, 400);
  assert.equal((await call('GET', '/devices/1-1/actions/type')).status, 405);
  assert.equal((await call('DELETE', '/devices')).status, 405);
  assert.equal((await call('GET', '/devices/%E0%A4%A')).status, 400);
  assert.equal((await call('POST', '/devices/1-1/detach')).status, 409, 'detaching a free device');
  assert.equal((await call('GET', '/devices/1-1/detach')).status, 405);
  // raw garbage on the socket: the connection is dropped, the server stays up
  await new Promise<void>((resolve) => {
    const s = connect(sock, () => s.write('\x00\x01 NOT HTTP\r\n\r\n'));
    s.on('close', () => resolve());
    s.on('error', () => resolve());
    s.resume();
  });
  assert.equal((await call('GET', '/devices')).status, 200);
});

test('a body over 64 KiB → 413, announced or streamed', async () => {
  const big = Buffer.alloc(MAX_BODY_BYTES + 1, 0x20);
  const r = await call('POST', '/devices/1-1/actions/type', big);
  assert.equal(r.status, 413);
  const streamed = await new Promise<number>((resolve, reject) => {
    const req = request(
      {
        socketPath: sock,
        method: 'POST',
        path: '/devices/1-1/actions/type',
        headers: { 'transfer-encoding': 'chunked' },
      },
      (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      },
    );
    req.on('error', reject);
    for (let i = 0; i < 20; i++) req.write(Buffer.alloc(8192, 0x20));
    req.end();
  });
  assert.equal(streamed, 413);
  assert.equal((await call('GET', '/devices')).status, 200);
});

test('a live socket is refused, a stale one replaced, a non-socket file left alone', async () => {
  const again = new ControlServer(registry, { kind: 'unix', path: sock });
  await assert.rejects(again.listen(), ControlInUseError);
  const stalePath = join(dir, 'stale.sock');
  // a killed server leaves its socket file behind
  const listenAndDie = `require('net').createServer().listen(${JSON.stringify(stalePath)}, () => process.kill(process.pid, 'SIGKILL'))`;
  spawnSync(process.execPath, ['-e', listenAndDie]);
  assert.ok(lstatSync(stalePath).isSocket(), 'stale socket file left behind');
  const fresh = new ControlServer(registry, { kind: 'unix', path: stalePath });
  await fresh.listen();
  assert.equal((await call('GET', '/devices', undefined, stalePath)).status, 200);
  await fresh.close();
  const plain = join(dir, 'plain');
  writeFileSync(plain, 'keep me');
  await assert.rejects(new ControlServer(registry, { kind: 'unix', path: plain }).listen(), /not a socket/);
});

test('TCP only on loopback; default path per user', () => {
  assert.throws(() => checkControlAddress({ kind: 'tcp', host: '0.0.0.0', port: 1 }), ControlAddressError);
  assert.throws(() => checkControlAddress({ kind: 'tcp', host: '10.1.2.3', port: 1 }), /unauthenticated/);
  for (const host of ['127.0.0.1', '127.1.2.3', '::1', 'localhost'])
    checkControlAddress({ kind: 'tcp', host, port: 1 });
  const uid = process.getuid?.() ?? 0;
  const p = defaultControlPath({ XDG_RUNTIME_DIR: '/run/user/1000' });
  assert.equal(p, uid === 0 ? '/run/usbwire/control.sock' : '/run/user/1000/usbwire/control.sock');
  if (uid !== 0) assert.equal(defaultControlPath({}), `/tmp/usbwire-${uid}/control.sock`);
});

test('loopback TCP control endpoint works', async () => {
  const tcp = new ControlServer(registry, { kind: 'tcp', host: '127.0.0.1', port: 0 });
  await tcp.listen();
  const port = tcp.port!;
  const status = await new Promise<number>((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path: '/devices' }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('error', reject);
    req.end();
  });
  assert.equal(status, 200);
  await tcp.close();
});

test('POST /devices/BUSID/detach closes the USB/IP client that holds it; the device is free again', async () => {
  const usbip = new UsbipServer(registry, { host: '127.0.0.1', port: 0 });
  const where = await usbip.listen();
  try {
    const client = new UsbipClient();
    const remote = await client.importDevice(where, '1-3');
    assert.match(registry.get('1-3')!.owner ?? '', /^usbip /);
    const gone = new Promise<void>((resolve) => remote.once('disconnect', resolve));
    const r = await call('POST', '/devices/1-3/detach');
    assert.equal(r.status, 200);
    assert.match((r.body as { detached: string }).detached, /^usbip 127\.0\.0\.1:/);
    await gone;
    for (let i = 0; i < 50 && registry.get('1-3')!.owner !== undefined; i++)
      await new Promise((t) => setTimeout(t, 10));
    assert.equal(registry.get('1-3')!.owner, undefined);
    const again = await client.importDevice(where, '1-3');
    await again.close();
  } finally {
    await usbip.close();
  }
});

// TLS on both servers and in our clients: mutual TLS and PSK, peers refused during the
// handshake before any protocol byte, the handshake counted into the opening exchange's time,
// the tunnel (plain in, TLS out) and the bridge's TLS remotes.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import tls from 'node:tls';
import { UsbipClient } from '../../src/client/usbip/index.js';
import { UsbipSource } from '../../src/client/usbip/source.js';
import { UsbredirConnectSource } from '../../src/client/usbredir/source.js';
import {
  createGadgetZero,
  fillPattern,
  GZERO_SOURCE_SINK_CONFIG,
  SS_BULK_IN,
} from '../../src/devices/gadget-zero/index.js';
import { encodeReqDevlist } from '../../src/protocol/usbip/index.js';
import { AccessPolicy } from '../../src/server/access.js';
import { DeviceRegistry } from '../../src/server/registry.js';
import { UsbipServer } from '../../src/server/usbip/index.js';
import { UsbredirConnector, UsbredirListener } from '../../src/server/usbredir/index.js';
import type { ConnectSecurity, ListenSecurity } from '../../src/transport/credentials.js';
import { Tunnel } from '../../src/transport/relay.js';
import { QEMU_TLS_RECORD } from '../../src/transport/secure.js';
import type { UsbDevice } from '../../src/usb/device.js';
import { TransferStatus } from '../../src/usb/status.js';
import type { HostPort } from '../../src/util/host-port.js';
import { setLogSink } from '../../src/util/log.js';
import { bulkIn, setConfiguration } from '../support/drive.js';
import { makePki, makePskFile, type Pki } from '../support/tls-pki.js';

const root = mkdtempSync(join(tmpdir(), 'usbwire-tls-'));
const logs: string[] = [];
let pki: Pki;
let psk: { path: string; keys: Map<string, Buffer> };
const read = (p: string) => readFileSync(p);
let x509Listen: ListenSecurity;
let clientCreds: ConnectSecurity;

before(() => {
  setLogSink((l) => logs.push(l));
  pki = makePki(root);
  psk = makePskFile(join(root, 'psk'), ['alice', 'bob']);
  x509Listen = { kind: 'x509', cert: read(pki.server.cert), key: read(pki.server.key), ca: read(pki.ca) };
  clientCreds = { kind: 'x509', cert: read(pki.client.cert), key: read(pki.client.key), ca: read(pki.ca) };
});

after(() => {
  setLogSink((l) => process.stderr.write(`${l}\n`));
  rmSync(root, { recursive: true, force: true });
});

function logged(re: RegExp): string | undefined {
  return logs.find((l) => re.test(l));
}

async function waitFor<T>(f: () => T | undefined, what: string, ms = 3000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = f();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; logs:\n${logs.join('\n')}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** Gadget zero (pattern 1): bulk IN returns (i % 512) % 63, a data check end to end. */
async function checkBulkIn(dev: UsbDevice): Promise<void> {
  assert.equal((await setConfiguration(dev, GZERO_SOURCE_SINK_CONFIG)).status, TransferStatus.Ok);
  const t = bulkIn(dev, SS_BULK_IN, 64 * 1024);
  await t.done;
  assert.equal(t.status, TransferStatus.Ok);
  assert.equal(t.actualLength, 64 * 1024);
  assert.ok(t.data.subarray(0, t.actualLength).equals(fillPattern(Buffer.alloc(64 * 1024), 1, 512)));
}

async function usbipServer(security: ListenSecurity | undefined, handshakeTimeoutMs?: number) {
  const registry = new DeviceRegistry();
  registry.add(createGadgetZero({ pattern: 1, name: 'gz' }));
  const server = new UsbipServer(
    registry,
    { host: '127.0.0.1', port: 0 },
    {
      security,
      ...(handshakeTimeoutMs ? { handshakeTimeoutMs } : {}),
    },
  );
  return { server, address: await server.listen() };
}

/**
 * A raw client: connect (TLS with `options`, or plain TCP), send `send` once connected, collect
 * every application byte until the server closes. Nothing may arrive from a refused peer.
 */
function probe(address: HostPort, options: tls.ConnectionOptions | 'plain', send: Buffer) {
  return new Promise<{ data: Buffer; secure: boolean; error?: string }>((resolve) => {
    const chunks: Buffer[] = [];
    let secure = false;
    let error: string | undefined;
    const socket =
      options === 'plain'
        ? net.connect(address.port, address.host, () => socket.write(send))
        : tls.connect({ host: address.host, port: address.port, ...options }, () => {
            secure = true;
            socket.write(send);
          });
    socket.on('data', (d: Buffer) => chunks.push(d));
    socket.on('error', (e) => {
      error = e.message;
    });
    socket.on('close', () => resolve({ data: Buffer.concat(chunks), secure, ...(error ? { error } : {}) }));
  });
}

test('USB/IP over mutual TLS: our client lists, imports and reads; the connection names the certificate', async () => {
  logs.length = 0;
  const { server, address } = await usbipServer(x509Listen);
  try {
    const client = new UsbipClient({ security: clientCreds, timeoutMs: 3000 });
    const list = await client.listDevices(address);
    assert.deepEqual(
      list.map((d) => d.busid),
      ['1-1'],
    );
    const dev = await client.importDevice(address, '1-1');
    try {
      await checkBulkIn(dev);
    } finally {
      await dev.close();
    }
    assert.ok(logged(/listening on .*TLS, client certificates required/));
    assert.ok(
      logged(
        /connection from 127\.0\.0\.1:\d+ \(certificate "CN=client1, O=usbwire tests", DNS:client1; TLSv1\.3 TLS_\w+\)/,
      ),
    );
  } finally {
    await server.close();
  }
});

test("no TLS session resumption: a second connection with the first one's ticket does a full handshake", async () => {
  const { server, address } = await usbipServer(x509Listen);
  try {
    const opts = {
      host: address.host,
      port: address.port,
      ca: read(pki.ca),
      cert: read(pki.client.cert),
      key: read(pki.client.key),
    };
    const first = tls.connect(opts);
    const session = await new Promise<Buffer>((resolve, reject) => {
      first.once('session', resolve);
      first.once('error', reject);
    });
    first.destroy();
    const second = tls.connect({ ...opts, session });
    await new Promise((resolve, reject) => {
      second.once('secureConnect', resolve);
      second.once('error', reject);
    });
    assert.equal(second.isSessionReused(), false);
    second.destroy();
  } finally {
    await server.close();
  }
});

test('USB/IP over TLS: a wrong certificate, none, or plain TCP is refused in the handshake, before any protocol byte', async () => {
  logs.length = 0;
  const { server, address } = await usbipServer(x509Listen);
  const devlist = Buffer.concat(encodeReqDevlist());
  const ca = read(pki.ca);
  try {
    const rogue = await probe(
      address,
      { ca, cert: read(pki.rogue.client.cert), key: read(pki.rogue.client.key) },
      devlist,
    );
    assert.equal(rogue.data.length, 0, 'a client with a certificate of another CA got bytes');
    const none = await probe(address, { ca }, devlist);
    assert.equal(none.data.length, 0, 'a client without certificate got bytes');
    const plain = await probe(address, 'plain', devlist);
    assert.equal(plain.data.length, 0, 'a plain TCP client got bytes');
    // Our client with a wrong certificate: the import fails, it learns nothing.
    const wrong = new UsbipClient({
      security: { kind: 'x509', ca, cert: read(pki.rogue.client.cert), key: read(pki.rogue.client.key) },
      timeoutMs: 2000,
    });
    await assert.rejects(wrong.listDevices(address), /closed before the reply|TLS|reset/);
    // And a client that does not trust the server's CA refuses the server.
    const untrusting = new UsbipClient({ security: { kind: 'x509', ca: read(pki.rogue.ca) }, timeoutMs: 2000 });
    await assert.rejects(untrusting.listDevices(address), /TLS to 127\.0\.0\.1:\d+: .*(certificate|issuer)/i);
    await waitFor(
      () => logs.filter((l) => /refused during the TLS handshake/.test(l)).length >= 3 || undefined,
      'refusals',
    );
    assert.ok(logged(/refused during the TLS handshake: client certificate not accepted/));
    assert.ok(logged(/refused during the TLS handshake: not TLS/));
    assert.equal(logged(/device list|connection from/), undefined, 'a refused peer reached the protocol');
  } finally {
    await server.close();
  }
});

test('USB/IP over TLS-PSK: the right key imports; a wrong key or identity is refused with nothing sent', async () => {
  logs.length = 0;
  const { server, address } = await usbipServer({ kind: 'psk', keys: psk.keys });
  try {
    const alice: ConnectSecurity = { kind: 'psk', identity: 'alice', key: psk.keys.get('alice')! };
    const client = new UsbipClient({ security: alice, timeoutMs: 3000 });
    const dev = await client.importDevice(address, '1-1');
    try {
      await checkBulkIn(dev);
    } finally {
      await dev.close();
    }
    assert.ok(logged(/connection from 127\.0\.0\.1:\d+ \(PSK identity "alice"; TLSv1\.3 TLS_\w+\)/));
    const devlist = Buffer.concat(encodeReqDevlist());
    const bobKey = psk.keys.get('bob')!;
    const wrongKey = await probe(
      address,
      { pskCallback: () => ({ identity: 'alice', psk: bobKey }), checkServerIdentity: () => undefined },
      devlist,
    );
    assert.equal(wrongKey.data.length, 0, 'a wrong key got bytes');
    assert.equal(wrongKey.secure, false);
    const unknown = await probe(
      address,
      { pskCallback: () => ({ identity: 'mallory', psk: bobKey }), checkServerIdentity: () => undefined },
      devlist,
    );
    assert.equal(unknown.data.length, 0, 'an unknown identity got bytes');
    const viaCert = await probe(address, { ca: read(pki.ca) }, devlist);
    assert.equal(viaCert.data.length, 0);
    assert.equal(logs.filter((l) => /connection from/.test(l)).length, 1);
  } finally {
    await server.close();
  }
});

test('usbredir listener over TLS: hello only after a verified handshake; a wrong certificate gets no hello', async () => {
  logs.length = 0;
  const registry = new DeviceRegistry();
  const entry = registry.add(createGadgetZero({ name: 'gz' }));
  const listener = new UsbredirListener(registry, entry, { host: '127.0.0.1', port: 0 }, { security: x509Listen });
  await listener.listen();
  const address = { host: '127.0.0.1', port: listener.address!.port };
  try {
    const ca = read(pki.ca);
    const good = tls.connect({ ...address, ca, cert: read(pki.client.cert), key: read(pki.client.key) });
    const hello = await new Promise<Buffer>((resolve, reject) => {
      good.once('data', resolve);
      good.once('error', reject);
    });
    good.destroy();
    assert.equal(hello.readUInt32LE(0), 0, 'usbredir hello (type 0)');
    assert.match(hello.subarray(12, 76).toString('latin1'), /^usbwire/);
    assert.ok(logged(/connection from 127\.0\.0\.1:\d+ \(certificate "CN=client1/));
    const rogue = await probe(
      address,
      { ca, cert: read(pki.rogue.client.cert), key: read(pki.rogue.client.key) },
      Buffer.alloc(0),
    );
    assert.equal(rogue.data.length, 0, 'a guest with a wrong certificate got the hello');
  } finally {
    await listener.close();
  }
});

/** A TLS server standing in for QEMU with server=on and tls-creds endpoint=server: records the hello it gets. */
async function fakeGuest(options: tls.TlsOptions) {
  const got: { peer?: string; bytes: number }[] = [];
  let handshakes = 0;
  const server = tls.createServer({ minVersion: 'TLSv1.3', ...options }, (s) => {
    const rec: { peer?: string; bytes: number } = { bytes: 0 };
    const cert = s.getPeerX509Certificate();
    if (cert) rec.peer = cert.subject;
    got.push(rec);
    s.on('data', (d: Buffer) => {
      rec.bytes += d.length;
    });
    s.on('error', () => {});
  });
  server.on('connection', () => handshakes++);
  server.on('tlsClientError', () => {});
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { server, port: (server.address() as net.AddressInfo).port, got, handshakes: () => handshakes };
}

test('--usbredir-connect over TLS: usbwire presents its certificate and verifies the guest; a guest it does not trust gets nothing', async () => {
  logs.length = 0;
  const registry = new DeviceRegistry();
  const entry = registry.add(createGadgetZero({ name: 'gz' }));
  const guest = await fakeGuest({
    cert: read(pki.server.cert),
    key: read(pki.server.key),
    ca: read(pki.ca),
    requestCert: true,
    rejectUnauthorized: true,
  });
  const connectTo = (port: number) => {
    const c = new UsbredirConnector(
      registry,
      entry,
      { host: '127.0.0.1', port },
      { security: clientCreds, minRetryMs: 50 },
    );
    c.start();
    return c;
  };
  const connector = connectTo(guest.port);
  try {
    const rec = await waitFor(() => guest.got.find((g) => g.bytes > 0), 'the hello at the guest');
    assert.match(rec.peer ?? '', /CN=client1/, 'usbwire presented its certificate');
    assert.ok(logged(/connected to usbredir guest 127\.0\.0\.1:\d+ \(certificate "CN=usbwire server/));
  } finally {
    await connector.close();
    guest.server.close();
  }
  logs.length = 0;
  const impostor = await fakeGuest({ cert: read(pki.rogue.server.cert), key: read(pki.rogue.server.key) });
  const connector2 = connectTo(impostor.port);
  try {
    await new Promise((r) => setTimeout(r, 400));
    assert.ok(impostor.handshakes() >= 2, 'usbwire tried (and retried) the impostor');
    assert.equal(impostor.got.length, 0, 'a handshake with the impostor completed');
    assert.ok(logged(/warn .*TLS to 127\.0\.0\.1:\d+: unable to verify/));
    assert.equal(
      impostor.got.reduce((n, g) => n + g.bytes, 0),
      0,
      'the impostor got protocol bytes',
    );
  } finally {
    await connector2.close();
    impostor.server.close();
  }
});

test('a peer refused again for the same reason is one warning a minute, not one per attempt', async () => {
  logs.length = 0;
  const { server, address } = await usbipServer(x509Listen);
  try {
    const rogue = { ca: read(pki.ca), cert: read(pki.rogue.client.cert), key: read(pki.rogue.client.key) };
    for (let i = 0; i < 5; i++) await probe(address, rogue, Buffer.alloc(0));
    await probe(address, 'plain', Buffer.from('hello'));
    await waitFor(() => logged(/not TLS/), 'the plain refusal');
    assert.equal(logs.filter((l) => /client certificate not accepted/.test(l)).length, 1, logs.join('\n'));
  } finally {
    await server.close();
  }
});

test('the TLS handshake counts into the opening-exchange timeout; a silent TCP peer is dropped', async () => {
  logs.length = 0;
  const { server, address } = await usbipServer(x509Listen, 300);
  try {
    const socket = net.connect(address.port, address.host);
    socket.on('error', () => {});
    const started = performance.now();
    await new Promise((r) => socket.once('close', r));
    const ms = performance.now() - started;
    assert.ok(ms >= 250 && ms < 2000, `closed after ${ms.toFixed(0)} ms`);
    await waitFor(() => logged(/refused during the TLS handshake: handshake timed out/), 'the timeout line');
  } finally {
    await server.close();
  }
});

test('a TLS handshake that took most of the time leaves only the rest for the opening exchange', async () => {
  logs.length = 0;
  const { server, address } = await usbipServer(x509Listen, 600);
  try {
    const raw = net.connect(address.port, address.host);
    raw.on('error', () => {});
    await new Promise((r) => raw.once('connect', r));
    const started = performance.now();
    await new Promise((r) => setTimeout(r, 350));
    const socket = tls.connect({
      socket: raw,
      ca: read(pki.ca),
      cert: read(pki.client.cert),
      key: read(pki.client.key),
    });
    socket.on('error', () => {});
    await new Promise((r) => socket.once('secureConnect', r));
    await new Promise((r) => socket.once('close', r));
    const ms = performance.now() - started;
    // 600 ms in all from accept, not 350 + 600.
    assert.ok(ms >= 550 && ms < 850, `closed ${ms.toFixed(0)} ms after connect`);
    const left = Number(/no complete request within (\d+) ms/.exec(logs.join('\n'))?.[1]);
    assert.ok(left > 0 && left <= 250, `the opening exchange got ${left} ms of 600 after a handshake begun at 350 ms`);
  } finally {
    await server.close();
  }
});

test('tunnel: plain USB/IP in, TLS out; list (half-close) and import with a data check, one TLS connection each', async () => {
  logs.length = 0;
  const { server, address } = await usbipServer(x509Listen);
  const tunnel = new Tunnel({ listen: { host: '127.0.0.1', port: 0 }, to: address, security: clientCreds });
  const local = await tunnel.listen();
  try {
    const plainClient = new UsbipClient({ timeoutMs: 3000 });
    assert.deepEqual(
      (await plainClient.listDevices(local)).map((d) => d.busid),
      ['1-1'],
    );
    const dev = await plainClient.importDevice(local, '1-1');
    try {
      await checkBulkIn(dev);
    } finally {
      await dev.close();
    }
    assert.equal(logs.filter((l) => /connection from .*certificate "CN=client1/.test(l)).length, 2);
    await waitFor(
      () => logs.filter((l) => /\[tunnel\].*closed \(\d+ bytes out/.test(l)).length >= 2 || undefined,
      'tunnel closes',
    );
  } finally {
    await tunnel.close();
    await server.close();
  }
});

test('tunnel: a server that refuses the tunnel closes the client connection with nothing relayed', async () => {
  logs.length = 0;
  const { server, address } = await usbipServer(x509Listen);
  const tunnel = new Tunnel({
    listen: { host: '127.0.0.1', port: 0 },
    to: address,
    security: { kind: 'x509', ca: read(pki.ca) },
  });
  const local = await tunnel.listen();
  try {
    const r = await probe(local, 'plain', Buffer.concat(encodeReqDevlist()));
    assert.equal(r.data.length, 0);
  } finally {
    await tunnel.close();
    await server.close();
  }
});

test('bridge: a usbip+tls:// source imports over PSK and hands out a working device', async () => {
  logs.length = 0;
  const { server, address } = await usbipServer({ kind: 'psk', keys: psk.keys });
  const source = new UsbipSource({
    address,
    busid: '1-1',
    security: { kind: 'psk', identity: 'bob', key: psk.keys.get('bob')! },
    timeoutMs: 3000,
  });
  assert.match(source.description, /^usbip\+tls:\/\//);
  try {
    const dev = await new Promise<UsbDevice>((resolve) => {
      source.once('device', resolve);
      source.start();
    });
    await checkBulkIn(dev);
    assert.ok(logged(/PSK identity "bob"/));
  } finally {
    await source.close();
    await server.close();
  }
});

test('bridge: a usbredir+tls:// source against a TLS usbredir listener: the device works end to end', async () => {
  logs.length = 0;
  const registry = new DeviceRegistry();
  const entry = registry.add(createGadgetZero({ pattern: 1, name: 'gz' }));
  const listener = new UsbredirListener(registry, entry, { host: '127.0.0.1', port: 0 }, { security: x509Listen });
  await listener.listen();
  const source = new UsbredirConnectSource({
    address: { host: '127.0.0.1', port: listener.address!.port },
    security: clientCreds,
    timeoutMs: 3000,
  });
  try {
    const dev = await new Promise<UsbDevice>((resolve) => {
      source.once('device', resolve);
      source.start();
    });
    await checkBulkIn(dev);
  } finally {
    await source.close();
    await listener.close();
  }
});

/** A TCP relay to `target` that measures the TLS records coming back (5-byte headers, length at 3). */
async function recordMeter(target: HostPort) {
  let largest = 0;
  const server = net.createServer((client) => {
    const upstream = net.connect(target.port, target.host);
    let pending = Buffer.alloc(0);
    client.pipe(upstream);
    upstream.on('data', (d: Buffer) => {
      pending = Buffer.concat([pending, d]);
      while (pending.length >= 5 && pending.length >= 5 + pending.readUInt16BE(3)) {
        largest = Math.max(largest, pending.readUInt16BE(3));
        pending = pending.subarray(5 + pending.readUInt16BE(3));
      }
      client.write(d);
    });
    for (const s of [client, upstream]) s.on('error', () => client.destroy()).on('close', () => upstream.destroy());
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as net.AddressInfo).port;
  return { address: { host: '127.0.0.1', port }, largest: () => largest, close: () => server.close() };
}

test('usbredir over TLS sends records of at most 4 KiB (QEMU 7.2 reads no more at once); USB/IP keeps 16 KiB', async () => {
  const registry = new DeviceRegistry();
  const entry = registry.add(createGadgetZero({ pattern: 1, name: 'gz' }));
  const listener = new UsbredirListener(registry, entry, { host: '127.0.0.1', port: 0 }, { security: x509Listen });
  await listener.listen();
  const meter = await recordMeter({ host: '127.0.0.1', port: listener.address!.port });
  const source = new UsbredirConnectSource({ address: meter.address, security: clientCreds, timeoutMs: 3000 });
  try {
    const dev = await new Promise<UsbDevice>((resolve) => {
      source.once('device', resolve);
      source.start();
    });
    await checkBulkIn(dev);
    // TLS 1.3 record: plaintext + content type (1) + AEAD tag (16).
    assert.ok(meter.largest() > 4000 && meter.largest() <= QEMU_TLS_RECORD + 17, `largest record ${meter.largest()}`);
  } finally {
    await source.close();
    await listener.close();
    meter.close();
  }
  const { server, address } = await usbipServer(x509Listen);
  const usbipMeter = await recordMeter(address);
  try {
    const dev = await new UsbipClient({ security: clientCreds, timeoutMs: 3000 }).importDevice(
      usbipMeter.address,
      '1-1',
    );
    await checkBulkIn(dev);
    await dev.close();
    assert.ok(
      usbipMeter.largest() > 16_000,
      `the meter sees large records where they are sent: ${usbipMeter.largest()}`,
    );
  } finally {
    await server.close();
    usbipMeter.close();
  }
});

test('access rules see the TLS identity: cert:NAME and psk:ID decide the device list and imports', async () => {
  logs.length = 0;
  const registry = new DeviceRegistry();
  registry.add(createGadgetZero({ pattern: 1, name: 'gz1' }));
  registry.add(createGadgetZero({ pattern: 1, name: 'gz2' }));
  const access = AccessPolicy.parse([
    { clients: ['cert:client1'], devices: ['1-1'] },
    { clients: ['psk:bob'], devices: ['1-2'] },
  ]);
  const x509 = new UsbipServer(registry, { host: '127.0.0.1', port: 0 }, { security: x509Listen, access });
  const pskServer = new UsbipServer(
    registry,
    { host: '127.0.0.1', port: 0 },
    {
      security: { kind: 'psk', keys: psk.keys },
      access,
    },
  );
  try {
    const certClient = new UsbipClient({ security: clientCreds, timeoutMs: 3000 });
    const x509Address = await x509.listen();
    assert.deepEqual(
      (await certClient.listDevices(x509Address)).map((d) => d.busid),
      ['1-1'],
    );
    await assert.rejects(certClient.importDevice(x509Address, '1-2'), /no such device/);
    const pskAddress = await pskServer.listen();
    const bob = new UsbipClient({
      security: { kind: 'psk', identity: 'bob', key: psk.keys.get('bob')! },
      timeoutMs: 3000,
    });
    assert.deepEqual(
      (await bob.listDevices(pskAddress)).map((d) => d.busid),
      ['1-2'],
    );
    const alice = new UsbipClient({
      security: { kind: 'psk', identity: 'alice', key: psk.keys.get('alice')! },
      timeoutMs: 3000,
    });
    assert.deepEqual(await alice.listDevices(pskAddress), []);
    assert.ok(
      logged(/import of 1-2 refused: cert CN=client1, O=usbwire tests \(127\.0\.0\.1\) may not use it/),
      logs.join('\n'),
    );
  } finally {
    await x509.close();
    await pskServer.close();
  }
});

test('a listener on a non-loopback address warns when anyone can use it: plain TCP, or TLS without --tls-ca', async () => {
  logs.length = 0;
  const listen = async (host: string, security?: ListenSecurity) => {
    const registry = new DeviceRegistry();
    registry.add(createGadgetZero({ name: 'gz' }));
    const server = new UsbipServer(registry, { host, port: 0 }, { security });
    await server.listen();
    await server.close();
  };
  await listen('127.0.0.1');
  await listen('0.0.0.0', x509Listen);
  await listen('0.0.0.0', { kind: 'psk', keys: psk.keys });
  assert.equal(logs.filter((l) => / warn /.test(l)).length, 0, logs.join('\n'));
  await listen('0.0.0.0');
  assert.ok(
    logged(/warn .*0\.0\.0\.0:\d+: listening without TLS on a non-loopback address: anyone who can reach it can/),
  );
  await listen('0.0.0.0', { kind: 'x509', cert: read(pki.server.cert), key: read(pki.server.key) });
  assert.ok(
    logged(/warn .*0\.0\.0\.0:\d+: TLS without --tls-ca: the traffic is encrypted, but any client can connect/),
  );
});

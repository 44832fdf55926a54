import assert from 'node:assert/strict';
import { test } from 'node:test';
import { connectTcp, listenTcp } from '../../src/transport/tcp.js';
import { AddressError, formatHostPort, parseHostPort } from '../../src/util/host-port.js';

test('parseHostPort accepts host:port, [ipv6]:port and a default port', () => {
  assert.deepEqual(parseHostPort('127.0.0.1:3240'), { host: '127.0.0.1', port: 3240 });
  assert.deepEqual(parseHostPort('example.org:1'), { host: 'example.org', port: 1 });
  assert.deepEqual(parseHostPort('[::1]:3240'), { host: '::1', port: 3240 });
  assert.deepEqual(parseHostPort('[fe80::1%eth0]:80'), { host: 'fe80::1%eth0', port: 80 });
  assert.deepEqual(parseHostPort('localhost', 3240), { host: 'localhost', port: 3240 });
  assert.deepEqual(parseHostPort('[::]', 3240), { host: '::', port: 3240 });
  assert.deepEqual(parseHostPort(' 0.0.0.0:0 '), { host: '0.0.0.0', port: 0 });
});

test('parseHostPort rejects bad input with a clear message', () => {
  const bad: [string, RegExp][] = [
    ['', /empty/],
    ['localhost', /missing ":PORT"/],
    [':3240', /missing host/],
    ['host:', /not a number/],
    ['host:abc', /not a number/],
    ['host:65536', /out of range/],
    ['host:-1', /not a number/],
    ['::1:3240', /brackets/],
    ['[::1', /missing "]"/],
    ['[::1]3240', /expected ":PORT"/],
    ['[nothost]:1', /not an IPv6/],
    ['ho st:1', /not a valid host/],
  ];
  for (const [text, message] of bad) {
    assert.throws(
      () => parseHostPort(text),
      (e: unknown) => e instanceof AddressError && message.test(e.message),
      text,
    );
  }
});

test('formatHostPort brackets IPv6', () => {
  assert.equal(formatHostPort({ host: '::1', port: 5 }), '[::1]:5');
  assert.equal(formatHostPort({ host: '10.0.0.1', port: 5 }), '10.0.0.1:5');
});

test('listenTcp/connectTcp: sockets come out with keepalive and nodelay; refused connects explain where', async () => {
  const server = await listenTcp({ host: '127.0.0.1', port: 0 }, (s) => s.end('hi'));
  const { port } = server.address() as { port: number };
  const socket = await connectTcp({ host: '127.0.0.1', port });
  const got = await new Promise<string>((resolve) => socket.once('data', (b) => resolve(b.toString())));
  assert.equal(got, 'hi');
  socket.destroy();
  await new Promise((r) => server.close(r));
  await assert.rejects(connectTcp({ host: '127.0.0.1', port }), new RegExp(`127\\.0\\.0\\.1:${port}`));
});

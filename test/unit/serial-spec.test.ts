import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { test } from 'node:test';
import { deviceClass } from '../../src/devices/catalog.js';
import { DeviceSpecError } from '../../src/devices/classes.js';
import { ACM_DATA_IN, ACM_DATA_OUT, ACM_NOTIFY } from '../../src/devices/serial/acm-function.js';
import { StreamHostEnd } from '../../src/devices/serial/host-end.js';
import { createSerialDevice } from '../../src/devices/serial/index.js';
import { parseSerialSpec } from '../../src/devices/serial/register.js';
import { TransferStatus } from '../../src/usb/status.js';
import { Transfer } from '../../src/usb/transfer.js';
import { setLogSink } from '../../src/util/log.js';
import { bulkIn, bulkOut, setConfiguration } from '../support/drive.js';

setLogSink('silent');

test('--serial: tcp:HOST:PORT, tcp::PORT (loopback), tcp:[IPv6]:PORT, stdio', () => {
  assert.deepEqual(parseSerialSpec('stdio'), { kind: 'stdio' });
  assert.deepEqual(parseSerialSpec('tcp:0.0.0.0:5000'), { kind: 'tcp', host: '0.0.0.0', port: 5000 });
  assert.deepEqual(parseSerialSpec('tcp::5000'), { kind: 'tcp', host: '127.0.0.1', port: 5000 });
  assert.deepEqual(parseSerialSpec('tcp:[::1]:5000'), { kind: 'tcp', host: '::1', port: 5000 });
  assert.deepEqual(parseSerialSpec('tcp:serial-host.lan:7'), { kind: 'tcp', host: 'serial-host.lan', port: 7 });
});

test('--serial: bad specs are one clear DeviceSpecError', () => {
  for (const [spec, message] of [
    [undefined, /tcp:HOST:PORT or stdio/],
    ['', /tcp:HOST:PORT or stdio/],
    ['udp::5000', /tcp:HOST:PORT or stdio/],
    ['stdio2', /tcp:HOST:PORT or stdio/],
    ['tcp:host', /expected tcp:HOST:PORT/],
    ['tcp:::1:5000', /IPv6 addresses in brackets/],
    ['tcp:host:port', /expected tcp:HOST:PORT/],
    ['tcp:host:70000', /out of range/],
  ] as const) {
    assert.throws(
      () => parseSerialSpec(spec),
      (e: unknown) => e instanceof DeviceSpecError && message.test(e.message),
    );
  }
});

test('--serial: stdio and a listening address are exclusive resources; port 0 is not', () => {
  const cls = deviceClass('serial');
  assert.ok(cls);
  const res = (spec: string) => cls.exclusiveResource?.(cls.parse(spec));
  assert.equal(res('stdio'), "the server's stdin/stdout");
  assert.equal(res('tcp::5000'), res('tcp:127.0.0.1:5000'));
  assert.notEqual(res('tcp::5000'), res('tcp::5001'));
  assert.equal(res('tcp::0'), undefined);
});

test('stdio host end: bytes both ways, connected until the input ends', async () => {
  const input = new PassThrough();
  const output = new PassThrough();
  const end = new StreamHostEnd(input, output, 'stdio');
  const events: string[] = [];
  const got: Buffer[] = [];
  end.on('connect', () => events.push('connect'));
  end.on('disconnect', () => events.push('disconnect'));
  end.on('data', (d) => got.push(d));
  await end.open();
  assert.equal(end.connected, true);
  input.write('typed');
  assert.equal(end.write(Buffer.from('printed')), true);
  await new Promise((r) => setImmediate(r));
  assert.equal(Buffer.concat(got).toString(), 'typed');
  assert.equal(output.read().toString(), 'printed');
  input.end();
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(events, ['connect', 'disconnect']);
  assert.equal(end.connected, false);
  assert.equal(end.write(Buffer.from('dropped')), true, 'no reader: discarded, never blocks');
  await end.close();
});

test('stdio-style host end on a device: connected at open, bytes both ways through the endpoints', async () => {
  const input = new PassThrough();
  const output = new PassThrough();
  const dev = await createSerialDevice(new StreamHostEnd(input, output, 'stdio'), { index: 0 });
  assert.equal((await setConfiguration(dev, 1)).status, TransferStatus.Ok);
  assert.equal((dev.actions.status!({}) as { connected: boolean }).connected, true);
  const notify = new Transfer({ type: 'interrupt', endpoint: ACM_NOTIFY, length: 16 });
  await dev.submit(notify);
  assert.equal(notify.data[8], 0x03, 'DCD|DSR');
  input.write('typed on stdin');
  const t = bulkIn(dev, ACM_DATA_IN, 512);
  await t.done;
  assert.equal(t.data.toString(), 'typed on stdin');
  await bulkOut(dev, ACM_DATA_OUT, Buffer.from('printed by the guest'));
  assert.equal(output.read().toString(), 'printed by the guest');
  await dev.close();
});

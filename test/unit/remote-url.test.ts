import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseServeArgs, UsageError } from '../../src/cli/args.js';
import { formatRemoteUrl, parseRemoteUrl, RemoteUrlError } from '../../src/client/remote-url.js';

test('remote URLs of the three kinds parse, with usbip defaulting to port 3240', () => {
  assert.deepEqual(parseRemoteUrl('usbip://10.1.2.3/1-1.4'), {
    kind: 'usbip',
    address: { host: '10.1.2.3', port: 3240 },
    busid: '1-1.4',
  });
  assert.deepEqual(parseRemoteUrl('usbip://[::1]:3241/2-1'), {
    kind: 'usbip',
    address: { host: '::1', port: 3241 },
    busid: '2-1',
  });
  assert.deepEqual(parseRemoteUrl('usbredir://10.1.2.4:4000'), {
    kind: 'usbredir',
    address: { host: '10.1.2.4', port: 4000 },
  });
  assert.deepEqual(parseRemoteUrl('usbredir-listen://0.0.0.0:4001'), {
    kind: 'usbredir-listen',
    address: { host: '0.0.0.0', port: 4001 },
  });
  for (const url of ['usbip://h:1/1-1', 'usbredir://[::1]:4000', 'usbredir-listen://0.0.0.0:4001']) {
    assert.equal(formatRemoteUrl(parseRemoteUrl(url)), url);
  }
});

test('bad remote URLs say what is wrong', () => {
  const cases: [string, RegExp][] = [
    ['10.1.2.3:3240', /expected usbip:\/\//],
    ['http://x:1/1-1', /unknown scheme "http:\/\/"/],
    ['usbip://10.1.2.3:3240', /which device\?/],
    ['usbip://10.1.2.3/abc', /bad bus id "abc"/],
    ['usbredir://10.1.2.4', /missing ":PORT"/],
    ['usbredir://10.1.2.4:0', /port must be 1-65535/],
    ['usbredir://h:4000/1-1', /takes no path/],
    ['usbredir://h:99999', /out of range/],
    ['usbredir-listen://::1:4000', /brackets/],
  ];
  for (const [url, why] of cases)
    assert.throws(
      () => parseRemoteUrl(url),
      (e) => e instanceof RemoteUrlError && why.test(e.message),
      url,
    );
});

test('--remote is repeatable and keeps its place among local devices', () => {
  const opts = parseServeArgs([
    '--keyboard',
    '--remote',
    'usbip://10.1.2.3/1-1',
    '--mouse',
    '--remote',
    'usbredir-listen://127.0.0.1:4001',
  ]);
  assert.ok(opts !== 'help');
  assert.deepEqual(
    opts.exports.map((e) => (e.kind === 'local' ? e.spec.cls.name : e.text)),
    ['keyboard', 'usbip://10.1.2.3/1-1', 'mouse', 'usbredir-listen://127.0.0.1:4001'],
  );
  assert.equal(opts.devices.length, 2);
  assert.throws(
    () => parseServeArgs(['--remote', 'usbip://h']),
    (e) => e instanceof UsageError && /^--remote "usbip:\/\/h": which device/.test(e.message),
  );
});

test('--device takes a port path or VID:PID[:SERIAL] with an optional force, in its place among the others', () => {
  const opts = parseServeArgs(['--keyboard', '--device', '1-1.4', '--device', '046d:0825:ABC,force']);
  assert.ok(opts !== 'help');
  assert.deepEqual(
    opts.exports.map((e) => (e.kind === 'host' ? [e.selector, e.force] : e.kind)),
    [
      'local',
      [{ kind: 'port', path: '1-1.4' }, false],
      [{ kind: 'id', vendorId: 0x046d, productId: 0x0825, serial: 'ABC' }, true],
    ],
  );
  assert.throws(
    () => parseServeArgs(['--device', 'sda']),
    (e) => e instanceof UsageError && /^--device "sda": expected a port path/.test(e.message),
  );
  assert.throws(
    () => parseServeArgs(['--device', '1-1,yes']),
    (e) => e instanceof UsageError && /unknown option "yes" \(known: force, as-uas/.test(e.message),
  );
});

test('storage wrappers on --remote, --device and --disk: as-uas with an optional speed; bad ones named', () => {
  const opts = parseServeArgs([
    '--remote',
    'usbip://10.1.2.3/1-1,as-uas',
    '--device',
    '1-1.4,force,as-uas=super',
    '--remote',
    'usbredir://127.0.0.1:4000,read-ahead',
    '--remote',
    'usbip://10.1.2.3/1-2,read-ahead=pipelined,as-uas=super',
  ]);
  assert.ok(opts !== 'help');
  assert.deepEqual(
    opts.exports.map((e) => (e.kind === 'local' ? e.kind : [e.kind, e.storage])),
    [
      ['remote', { asUas: 'same' }],
      ['host', { asUas: 'super' }],
      ['remote', { readAhead: 'on' }],
      ['remote', { readAhead: 'pipelined', asUas: 'super' }],
    ],
  );
  const first = opts.exports[0]!;
  assert.ok(first.kind === 'remote' && first.remote.kind === 'usbip' && first.remote.busid === '1-1');
  for (const [argv, why] of [
    [['--remote', 'usbip://h/1-1,fast'], /--remote usbip:\/\/h\/1-1,fast: unknown option "fast" \(known: as-uas/],
    [['--device', '1-1,as-uas=full'], /--device 1-1,as-uas=full: as-uas=full: the speed must be high or super/],
    [['--disk', 'x.img,uas,as-uas'], /uas .* and as-uas .* exclude each other/],
    [['--remote', 'usbip://h/1-1,read-ahead=lots'], /read-ahead=lots: expected read-ahead or read-ahead=pipelined/],
  ] as const) {
    assert.throws(
      () => parseServeArgs([...argv]),
      (e) => e instanceof UsageError && why.test(e.message),
      argv.join(' '),
    );
  }
});

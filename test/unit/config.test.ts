import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { parseServeArgs, type ServeOptions, UsageError } from '../../src/cli/args.js';

function withConfig(config: unknown): { dir: string; path: string } {
  const dir = mkdtempSync(join(tmpdir(), 'usbwire-config-'));
  const path = join(dir, 'usbwire.json');
  writeFileSync(path, typeof config === 'string' ? config : JSON.stringify(config, null, 2));
  return { dir, path };
}

function parse(argv: string[]): ServeOptions {
  const o = parseServeArgs(argv);
  assert.notEqual(o, 'help');
  return o as ServeOptions;
}

test('config: flags, devices in bus id order, access and limits; paths relative to the file', () => {
  const { dir, path } = withConfig({
    usbip: ['0.0.0.0:3240', '127.0.0.1:3241'],
    usbredir: '127.0.0.1:4000=1-2',
    'log-level': 'warn',
    devices: [{ disk: 'images/a.img,readonly' }, { keyboard: true }, { remote: 'usbip://10.0.0.5/1-1' }],
    access: [{ clients: ['address:10.0.0.0/8'], devices: ['1-1'] }],
    limits: { maxConnections: 10, peerTimeoutMs: 5000 },
  });
  const o = parse(['--config', path, '--mouse']);
  assert.deepEqual(
    o.usbip.map((e) => `${e.host}:${e.port}`),
    ['0.0.0.0:3240', '127.0.0.1:3241'],
  );
  assert.equal(o.usbredir[0]!.busid, '1-2');
  assert.equal(o.logLevel, 'warn');
  assert.deepEqual(
    o.exports.map((e) => (e.kind === 'local' ? e.spec.cls.name : e.kind)),
    ['disk', 'keyboard', 'remote', 'mouse'],
  );
  const disk = o.exports[0]!;
  assert.ok(disk.kind === 'local');
  assert.equal(disk.spec.text, `${join(dir, 'images/a.img')},readonly`);
  assert.ok(o.access?.allows({ address: '10.2.3.4' }, '1-1'));
  assert.ok(!o.access?.allows({ address: '11.2.3.4' }, '1-1'));
  assert.deepEqual(o.limits, { maxConnections: 10, peerTimeoutMs: 5000 });
});

test('config: a flag on the command line after --config wins', () => {
  const { path } = withConfig({ 'log-level': 'warn' });
  assert.equal(parse(['--config', path, '--log-level', 'debug']).logLevel, 'debug');
  assert.equal(parse(['--log-level', 'debug', `--config=${path}`]).logLevel, 'warn');
});

test('config: bad files get one line naming the file and the problem', () => {
  const cases: [unknown, RegExp][] = [
    ['{\n  "usbip": "0.0.0.0:3240",\n  oops\n}', /not valid JSON at line 3, column 3/],
    [[1, 2], /expected a JSON object/],
    [{ disk: 'a.img' }, /unknown key "disk" \(devices go in "devices"/],
    [{ frobnicate: 1 }, /unknown key "frobnicate"/],
    [{ devices: [{ toaster: 'x' }] }, /devices\[0\]: unknown device "toaster"/],
    [{ devices: [{ disk: 'a', keyboard: true }] }, /devices\[0\]: expected one device/],
    [{ devices: [{ disk: { path: 'a' } }] }, /devices\[0\]: expected a string/],
    [{ limits: { maxConnections: 0 } }, /limits\.maxConnections: expected an integer from 1/],
    [{ limits: { maxSpeed: 1 } }, /unknown limit "maxSpeed"/],
    [{ access: [{ clients: ['who'], devices: ['1-1'] }] }, /access\[0\]\.clients: "who"/],
    [{ usbip: 'nowhere' }, /--usbip/],
  ];
  for (const [config, message] of cases) {
    const { path } = withConfig(config);
    assert.throws(
      () => parse(['--config', path]),
      (e) => e instanceof UsageError && message.test(e.message) && !e.message.includes('\n'),
      String(message),
    );
  }
  assert.throws(
    () => parse(['--config', '/nonexistent/usbwire.json']),
    /cannot read \/nonexistent\/usbwire\.json: ENOENT/,
  );
  assert.throws(() => parse(['--config']), /--config needs a file name/);
  const { path } = withConfig({});
  assert.throws(() => parse(['--config', path, '--config', path]), /--config may be given once/);
});

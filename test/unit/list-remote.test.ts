// `usbwire list -r` prints what `usbip list -r` prints: compared byte for byte with the real
// usbip tool (usbip-utils, no kernel module needed for list -r) against the same usbwire server,
// plus the usb.ids reading rules of usbip's names.c checked on a small database.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { formatDevlist } from '../../src/cli/list.js';
import { UsbipClient } from '../../src/client/usbip/index.js';
import { createGadgetZero } from '../../src/devices/gadget-zero/index.js';
import { createKeyboard } from '../../src/devices/hid/index.js';
import { MemoryBackend } from '../../src/devices/mass-storage/backend/index.js';
import { createBotDisk } from '../../src/devices/mass-storage/index.js';
import { DeviceRegistry } from '../../src/server/registry.js';
import { UsbipServer } from '../../src/server/usbip/index.js';
import type { HostPort } from '../../src/util/host-port.js';
import { setLogSink } from '../../src/util/log.js';
import { className, productName, UsbIds } from '../../src/util/usb-ids.js';

const BIN = fileURLToPath(new URL('../../../bin/usbwire.js', import.meta.url));
const USBIP = ['/usr/sbin/usbip', '/usr/bin/usbip', '/sbin/usbip'].find((p) => existsSync(p));

let server: UsbipServer;
let address: HostPort;

before(async () => {
  setLogSink('silent');
  const registry = new DeviceRegistry();
  registry.add(createBotDisk(new MemoryBackend(1 << 20), { name: 'disk' }));
  registry.add(createKeyboard());
  registry.add(createGadgetZero());
  server = new UsbipServer(registry, { host: '127.0.0.1', port: 0 });
  address = await server.listen();
});

after(async () => {
  await server.close();
  setLogSink((l) => process.stderr.write(`${l}\n`));
});

function run(file: string, args: string[]): Promise<{ code: number; stdout: Buffer; stderr: string }> {
  return new Promise((resolve) => {
    execFile(file, args, { encoding: 'buffer', timeout: 10_000 }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : 1) : 0;
      resolve({ code, stdout, stderr: stderr.toString() });
    });
  });
}

test('usbwire list -r prints byte for byte what usbip list -r prints', async (t) => {
  const ours = await run(process.execPath, [BIN, 'list', '-r', `127.0.0.1:${address.port}`]);
  assert.equal(ours.code, 0, ours.stderr);
  const text = ours.stdout.toString('latin1');
  assert.match(text, /^Exportable USB devices\n======================\n - 127\.0\.0\.1\n/);
  assert.match(text, /\n {8}1-1: .* \(1209:0001\)\n {11}: \/sys\/devices\/.*\n/);
  assert.match(text, /\n {11}: {2}0 - .* \(08\/06\/50\)\n/);
  assert.match(text, /\n {8}1-3: .* \(0525:a4a0\)\n/);
  if (UsbIds.load().vendor(0x0525)) {
    assert.match(text, / {11}: {2}0 - Mass Storage \/ SCSI \/ Bulk-Only \(08\/06\/50\)\n/);
    assert.match(text, / {8}1-3: Netchip Technology, Inc\. : Linux-USB "Gadget Zero" \(0525:a4a0\)\n/);
  }
  if (!USBIP) {
    t.skip('usbip (usbip-utils) is not installed: byte comparison skipped');
    return;
  }
  const theirs = await run(USBIP, ['--tcp-port', String(address.port), 'list', '-r', '127.0.0.1']);
  assert.equal(theirs.code, 0, `usbip failed: ${theirs.stderr}`);
  assert.equal(text, theirs.stdout.toString('latin1'));
  assert.ok(ours.stdout.equals(theirs.stdout));
  // --tcp-port is taken the way usbip takes it.
  const viaFlag = await run(process.execPath, [BIN, 'list', '--tcp-port', String(address.port), '-r', '127.0.0.1']);
  assert.ok(viaFlag.stdout.equals(theirs.stdout));
});

test('an empty server: nothing on stdout, an info line on stderr (as usbip)', async () => {
  const empty = new UsbipServer(new DeviceRegistry(), { host: '127.0.0.1', port: 0 });
  const a = await empty.listen();
  try {
    const ours = await run(process.execPath, [BIN, 'list', '-r', `127.0.0.1:${a.port}`]);
    assert.equal(ours.code, 0);
    assert.equal(ours.stdout.length, 0);
    assert.match(ours.stderr, /no exportable devices found on 127\.0\.0\.1/);
    if (USBIP) {
      const theirs = await run(USBIP, ['--tcp-port', String(a.port), 'list', '-r', '127.0.0.1']);
      assert.equal(theirs.stdout.length, 0);
    }
  } finally {
    await empty.close();
  }
});

const SAMPLE = [
  '# comment',
  '1234  First Vendor',
  '\t0001  A product',
  '\t0001  Duplicate loses',
  '1234  Duplicate vendor loses',
  'abcd  Other\r',
  'C 03  Human Interface Device',
  '\t01  Boot Interface Subclass',
  '\t\t01  Keyboard',
  'AT 0100  USB Undefined',
  'C ff  Vendor Specific Class',
  'HUT 01  Generic Desktop Controls',
  '\t001  Pointer',
  'L 0409  English',
  '\t01  US',
  '',
].join('\n');

test('usb.ids is read as usbip names.c reads it', () => {
  const ids = UsbIds.parse(SAMPLE);
  assert.equal(ids.vendor(0x1234), 'First Vendor');
  assert.equal(ids.product(0x1234, 1), 'A product');
  assert.equal(ids.vendor(0xabcd), 'Other');
  assert.equal(ids.class(3), 'Human Interface Device');
  assert.equal(ids.subclass(3, 1), 'Boot Interface Subclass');
  assert.equal(ids.protocol(3, 1, 1), 'Keyboard');
  assert.equal(ids.class(0xff), 'Vendor Specific Class');
  assert.equal(ids.subclass(0xff, 1), undefined, 'HUT entries are not subclasses');
  assert.equal(productName(ids, 0x1234, 1), 'First Vendor : A product (1234:0001)');
  assert.equal(productName(ids, 0x1234, 2), 'First Vendor : unknown product (1234:0002)');
  assert.equal(productName(ids, 0x9999, 2), 'unknown vendor : unknown product (9999:0002)');
  assert.equal(className(ids, 0, 0, 0), '(Defined at Interface level) (00/00/00)');
  assert.equal(className(ids, 3, 1, 1), 'Human Interface Device / Boot Interface Subclass / Keyboard (03/01/01)');
  assert.equal(
    className(ids, 3, 1, 2),
    'Human Interface Device / Boot Interface Subclass / unknown protocol (03/01/02)',
  );
  assert.equal(className(ids, 8, 6, 0x50), 'unknown class / unknown subclass / unknown protocol (08/06/50)');
});

test('names longer than usbip buffers are cut at 99 bytes; busids right-aligned to 11', async () => {
  const ids = UsbIds.parse(`1234  ${'V'.repeat(80)}\n\t0001  ${'P'.repeat(80)}\n`);
  const [disk] = await new UsbipClient({ timeoutMs: 3000 }).listDevices(address);
  const device = { ...disk!, idVendor: 0x1234, idProduct: 1, path: '/sys/x' };
  const lines = formatDevlist('h', [device], ids).split('\n');
  assert.equal(lines[3], `        1-1: ${`${'V'.repeat(80)} : ${'P'.repeat(80)}`.slice(0, 99)}`);
  assert.equal(lines[5], '           : (Defined at Interface level) (00/00/00)');
  assert.equal(lines[6], '           :  0 - unknown class / unknown subclass / unknown protocol (08/06/50)');
  assert.equal(lines[7], '');
});

// Several devices of different classes from one `usbwire serve` (one with an optional flag value): bus ids in the order given,
// the startup lines name each, and each device is imported on its own while the others are in use.
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { UsbipClient } from '../../src/client/usbip/index.js';
import { parseConfiguration } from '../../src/usb/descriptors.js';
import type { UsbDevice } from '../../src/usb/device.js';
import { bulkIn, setConfiguration } from '../support/drive.js';

const BIN = fileURLToPath(new URL('../../../bin/usbwire.js', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'usbwire-many-'));
after(() => rmSync(dir, { recursive: true, force: true }));

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}

/** Start serve; resolves with its stdout once every device has its usbip line. */
async function startServe(args: string[], devices: number): Promise<{ proc: ChildProcess; stdout: string }> {
  const proc = spawn(process.execPath, [BIN, 'serve', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  proc.stderr!.on('data', (d) => (stderr += d));
  await new Promise<void>((resolve, reject) => {
    proc.stdout!.on('data', (d) => {
      stdout += d;
      if ((stdout.match(/^usbip: /gm) ?? []).length >= devices) resolve();
    });
    proc.once('exit', (code) => reject(new Error(`serve exited ${code}: ${stderr}`)));
  });
  return { proc, stdout };
}

test('disk, keyboard, mouse and serial port from one serve: bus ids in order, each imported on its own', async () => {
  const img = join(dir, 'disk.img');
  writeFileSync(img, Buffer.alloc(1 << 20));
  const port = await freePort();
  const serialPort = await freePort();
  const { proc, stdout } = await startServe(
    [
      '--usbip',
      `127.0.0.1:${port}`,
      '--control',
      'none',
      '--disk',
      img,
      '--keyboard',
      '--mouse',
      '--serial',
      `tcp:127.0.0.1:${serialPort}`,
      '--gadget-zero',
      'pattern=1',
    ],
    5,
  );
  const imported: UsbDevice[] = [];
  try {
    assert.match(stdout, /1-1 \(disk .*disk\.img\)/);
    assert.match(stdout, /1-2 \([^)]*keyboard/i);
    assert.match(stdout, /1-3 \([^)]*mouse/i);
    assert.match(stdout, /1-4 \([^)]*serial/i);
    assert.match(stdout, /1-5 \(gadget zero/);
    const client = new UsbipClient();
    const list = await client.listDevices({ host: '127.0.0.1', port });
    assert.deepEqual(
      list.map((d) => d.busid),
      ['1-1', '1-2', '1-3', '1-4', '1-5'],
    );
    const ids = list.map((d) => `${d.idVendor.toString(16)}:${d.idProduct.toString(16)}`);
    assert.equal(new Set(ids).size, ids.length, `one VID:PID per device class: ${ids.join(' ')}`);
    const firstInterface = list.map((d) => d.interfaces[0]);
    assert.deepEqual(firstInterface[0], { interfaceClass: 0x08, interfaceSubClass: 0x06, interfaceProtocol: 0x50 });
    assert.deepEqual(firstInterface[1], { interfaceClass: 0x03, interfaceSubClass: 0x01, interfaceProtocol: 0x01 });
    assert.deepEqual(firstInterface[2], { interfaceClass: 0x03, interfaceSubClass: 0x01, interfaceProtocol: 0x02 });
    assert.equal(firstInterface[3]?.interfaceClass, 0x02);
    assert.equal(ids[4], '525:a4a0');
    // Import them one at a time, keeping the earlier ones: each is its own device.
    for (const entry of list) {
      const dev = await client.importDevice({ host: '127.0.0.1', port }, entry.busid);
      imported.push(dev);
      const config = parseConfiguration(dev.descriptors.configurations[0]!);
      assert.equal(config.interfaces.length, entry.bNumInterfaces, entry.busid);
    }
    // gadget zero's source with pattern=1 (the flag's optional value): (i % 512) % 63 per packet
    const gz = imported[4]!;
    await setConfiguration(gz, 3);
    const bulk = bulkIn(gz, 0x81, 1024);
    await bulk.done;
    assert.equal(bulk.actualLength, 1024);
    assert.ok(
      bulk.data.every((b, i) => b === (i % 512) % 63),
      'mod63 pattern',
    );
    const busy = await client.importDevice({ host: '127.0.0.1', port }, '1-2').then(
      () => 'imported',
      (err: Error) => err.message,
    );
    assert.match(busy, /busy|in use/i, 'a device in use is not imported twice');
  } finally {
    await Promise.allSettled(imported.map((d) => d.close()));
    proc.kill('SIGTERM');
    await new Promise((r) => proc.once('exit', r));
  }
});

// The bridge from the command line, usbwire to usbwire on loopback: server A exports two disks, one
// over USB/IP and one over usbredir; server B imports both (--remote) and re-exports them over
// USB/IP. Data read through B is the image's, data written through B lands in the image, and when
// A goes away and comes back, B's busids go and come back with it.
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { UsbipClient } from '../../src/client/usbip/index.js';
import { BotHost } from '../support/bot-host.js';

const BIN = fileURLToPath(new URL('../../../bin/usbwire.js', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'usbwire-bridge-'));
const procs = new Set<ChildProcess>();
after(() => {
  for (const p of procs) p.kill('SIGKILL');
  rmSync(dir, { recursive: true, force: true });
});

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}

function serve(args: string[]): { proc: ChildProcess; output: () => string; ready: Promise<void> } {
  const proc = spawn(process.execPath, [BIN, 'serve', '--control', 'none', ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  procs.add(proc);
  proc.once('exit', () => procs.delete(proc));
  let out = '';
  proc.stderr!.on('data', (d) => (out += d));
  const ready = new Promise<void>((resolve, reject) => {
    proc.stdout!.on('data', (d) => {
      out += d;
      if (/listening/.test(out)) resolve();
    });
    proc.once('exit', (code) => reject(new Error(`serve exited ${code}: ${out}`)));
  });
  return { proc, output: () => out, ready };
}

async function stop(proc: ChildProcess): Promise<void> {
  if (proc.exitCode !== null) return;
  const gone = new Promise((r) => proc.once('exit', r));
  proc.kill('SIGTERM');
  await gone;
}

async function until(cond: () => Promise<boolean>, what: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

const client = new UsbipClient({ timeoutMs: 3000 });
const listed = async (port: number) =>
  (await client.listDevices({ host: '127.0.0.1', port }).catch(() => [])).map((d) => d.busid);

test("usbwire B re-exports usbwire A's disks imported over USB/IP and usbredir: data both ways, and they come back after A restarts", {
  timeout: 60_000,
}, async () => {
  const images = [join(dir, 'one.img'), join(dir, 'two.img')];
  for (const img of images) writeFileSync(img, randomBytes(2 << 20));
  const [aUsbip, aRedir, bUsbip] = [await freePort(), await freePort(), await freePort()];
  const aArgs = [
    '--usbip',
    `127.0.0.1:${aUsbip}`,
    '--usbredir',
    `127.0.0.1:${aRedir}=1-2`,
    '--disk',
    images[0]!,
    '--disk',
    images[1]!,
  ];
  let a = serve(aArgs);
  await a.ready;
  const b = serve([
    '--usbip',
    `127.0.0.1:${bUsbip}`,
    '--remote',
    `usbip://127.0.0.1:${aUsbip}/1-1`,
    '--remote',
    `usbredir://127.0.0.1:${aRedir}`,
  ]);
  await b.ready;
  await until(async () => (await listed(bUsbip)).length === 2, 'B lists both remote disks', 10_000).catch(() => {});
  try {
    assert.deepEqual(await listed(bUsbip), ['1-1', '1-2'], b.output());
    for (const [i, busid] of ['1-1', '1-2'].entries()) {
      const dev = await client.importDevice({ host: '127.0.0.1', port: bUsbip }, busid);
      const disk = await BotHost.open(dev);
      const head = await disk.read(0, 128);
      assert.ok(
        head.equals(readFileSync(images[i]!).subarray(0, 64 << 10)),
        `${busid}: first 64 KiB read through the bridge`,
      );
      const pattern = randomBytes(24 << 10);
      await disk.write(1000, pattern);
      await dev.close();
      const image = readFileSync(images[i]!);
      assert.ok(
        image.subarray(1000 * 512, 1000 * 512 + pattern.length).equals(pattern),
        `${busid}: write landed in A's image`,
      );
    }

    await stop(a.proc);
    await until(async () => (await listed(bUsbip)).length === 0, 'B hides the devices while A is away', 10_000);
    a = serve(aArgs);
    await a.ready;
    await until(async () => (await listed(bUsbip)).length === 2, 'the devices back under their busids', 15_000);
    assert.deepEqual(await listed(bUsbip), ['1-1', '1-2']);
    const again = await client.importDevice({ host: '127.0.0.1', port: bUsbip }, '1-2');
    const disk = await BotHost.open(again);
    assert.ok((await disk.read(1000, 48)).equals(readFileSync(images[1]!).subarray(1000 * 512, 1048 * 512)));
    await again.close();
  } finally {
    await stop(b.proc);
    await stop(a.proc);
  }
});

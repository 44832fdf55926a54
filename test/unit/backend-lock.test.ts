import assert from 'node:assert/strict';
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { after, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { FileBackend } from '../../src/devices/mass-storage/backend/index.js';
import { setLogSink } from '../../src/util/log.js';
import { until } from '../support/usbip-wire.js';

const BACKEND = resolve(dirname(fileURLToPath(import.meta.url)), '../../src/devices/mass-storage/backend/index.js');
const dir = mkdtempSync(join(tmpdir(), 'usbwire-lock-'));
const children: ChildProcess[] = [];

after(() => {
  for (const c of children) c.kill('SIGKILL');
});

function image(name: string): string {
  const path = join(dir, name);
  writeFileSync(path, Buffer.alloc(1 << 20));
  return path;
}

/** Another usbwire process exporting `path`; resolves once it holds the image. */
async function otherUsbwire(path: string, readOnly: boolean): Promise<ChildProcess> {
  const code = `const { FileBackend } = await import(${JSON.stringify(BACKEND)});
    await FileBackend.open(${JSON.stringify(path)}, { readOnly: ${readOnly} });
    console.log('open'); setInterval(() => {}, 1000);`;
  const child = spawn(process.execPath, ['--input-type=module', '-e', code], { stdio: ['ignore', 'pipe', 'inherit'] });
  children.push(child);
  await new Promise<void>((resolve, reject) => {
    child.stdout!.once('data', () => resolve());
    child.once('exit', (c) => reject(new Error(`holder exited with ${c}`)));
  });
  return child;
}

async function stop(child: ChildProcess): Promise<void> {
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill();
  await exited;
}

test('a writable export elsewhere: both writable and read-only exports are refused, naming the holder', async () => {
  const img = image('rw.img');
  const holder = await otherUsbwire(img, false);
  await assert.rejects(
    FileBackend.open(img),
    new RegExp(`${img} is in use by pid ${holder.pid} \\(.*node.*\\): refusing to export it writable$`),
  );
  await assert.rejects(FileBackend.open(img, { readOnly: true }), /in use by pid \d+.*refusing to export it read-only/);
  await stop(holder);
  // The lock goes with the process that held it.
  const mine = await FileBackend.open(img);
  await mine.close();
});

test('read-only exports share an image; a writer is refused while they run', async () => {
  const img = image('ro.img');
  const reader = await otherUsbwire(img, true);
  const mine = await FileBackend.open(img, { readOnly: true });
  await assert.rejects(FileBackend.open(join(dir, 'ro.img')), /in use by pid \d+.*refusing to export it writable/);
  await mine.close();
  await stop(reader);
});

test('closing a backend releases its lock for other processes', async () => {
  const img = image('close.img');
  const mine = await FileBackend.open(img);
  await mine.close();
  const other = await otherUsbwire(img, false);
  await stop(other);
});

test('one process may export an image writable and read-only at once (serve decides that)', async () => {
  const img = image('same.img');
  const rw = await FileBackend.open(img);
  const ro = await FileBackend.open(img, { readOnly: true });
  await ro.close();
  // Still locked for other processes while the writable export runs.
  await assert.rejects(otherUsbwire(img, true), /holder exited/);
  await rw.close();
});

test('without perl the image is exported unlocked, with a warning', async () => {
  const img = image('noperl.img');
  const logs: string[] = [];
  setLogSink((l) => logs.push(l));
  const path = process.env.PATH;
  process.env.PATH = '/nonexistent';
  try {
    const b = await FileBackend.open(img);
    await b.close();
  } finally {
    process.env.PATH = path;
    setLogSink('silent');
  }
  assert.ok(
    logs.some((l) => l.includes(`${img}: cannot lock the image`) && l.includes('without a lock')),
    logs.join('\n'),
  );
});

function hasQemu(): boolean {
  try {
    execFileSync('qemu-system-x86_64', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** Locks /proc/locks shows on the image's inode. */
function locksOn(path: string): number {
  const ino = String(statSync(path).ino);
  return readFileSync('/proc/locks', 'utf8')
    .split('\n')
    .filter((l) => l.split(/\s+/).some((f) => f.endsWith(`:${ino}`))).length;
}

const QEMU_ARGS = (img: string) => [
  ...['-machine', 'pc', '-S', '-nodefaults', '-display', 'none'],
  // A drive with a device is a writer; with if=none and no device QEMU only takes the read lock.
  ...['-drive', `file=${img},format=raw,if=virtio`],
];

test('QEMU and usbwire refuse each other an image', {
  skip: hasQemu() ? false : 'qemu-system-x86_64 not installed',
}, async () => {
  const img = image('qemu.img');
  const qemu = spawn('qemu-system-x86_64', QEMU_ARGS(img), { stdio: 'ignore' });
  children.push(qemu);
  // It takes the read lock at start-up, the write locks once the device is realized: wait for both.
  await until(() => locksOn(img) >= 2, 'QEMU locking the image', 20_000);
  await assert.rejects(
    FileBackend.open(img),
    /in use by pid \d+ \(qemu-system-x86_64 .*\): refusing to export it writable/,
  );
  await assert.rejects(
    FileBackend.open(img, { readOnly: true }),
    /qemu-system-x86_64.*refusing to export it read-only/,
  );
  await stop(qemu);

  const mine = await FileBackend.open(img);
  const refused = spawn('qemu-system-x86_64', QEMU_ARGS(img), { stdio: ['ignore', 'ignore', 'pipe'] });
  children.push(refused);
  let stderr = '';
  refused.stderr!.on('data', (d) => (stderr += d));
  const code = await new Promise((resolve) => refused.once('exit', resolve));
  assert.notEqual(code, 0);
  assert.match(stderr, /Failed to get "write" lock/);
  await mine.close();
});

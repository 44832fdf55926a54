import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const BIN = fileURLToPath(new URL('../../../bin/usbwire.js', import.meta.url));

function run(args: string[], until?: RegExp): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [BIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d) => {
      stdout += d;
      if (until?.test(stdout)) p.kill('SIGTERM');
    });
    p.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => p.kill('SIGKILL'), 10_000);
    p.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

const dir = mkdtempSync(join(tmpdir(), 'usbwire-cli-'));

test('bad input gives one clear line and a non-zero exit, no stack trace', async () => {
  writeFileSync(join(dir, 'odd.img'), Buffer.alloc(1000));
  writeFileSync(join(dir, 'a.img'), Buffer.alloc(1 << 20));
  const cases: [string[], RegExp][] = [
    [['serve', '--bogus'], /unknown option --bogus/],
    [['serve', '--disk', join(dir, 'missing.img')], /missing\.img.*no such file/],
    [['serve', '--disk', join(dir, 'odd.img')], /not a multiple of 512/],
    [['serve', '--disk', `${join(dir, 'odd.img')},fast`], /unknown option "fast"/],
    [['serve', '--usbip', '127.0.0.1:70000'], /port 70000 out of range/],
    [['serve', '--usbip', 'nonsense'], /HOST:PORT/],
    [['serve', '--usbredir', '127.0.0.1:4000=9-9'], /no exported device 9-9/],
    [['frobnicate'], /unknown command/],
    [['serve', '--serial', 'udp::4000'], /--serial udp::4000: expected tcp:HOST:PORT or stdio/],
    [['serve', '--serial', 'stdio', '--serial', 'stdio'], /stdin\/stdout is already used by --serial stdio/],
    [['serve', '--serial', 'tcp::4000', '--serial', 'tcp:127.0.0.1:4000'], /127\.0\.0\.1:4000 is already used/],
    [
      ['serve', '--disk', join(dir, 'a.img'), '--disk', join(dir, 'a.img')],
      /writable image .*a\.img is already used by --disk/,
    ],
  ];
  for (const [args, message] of cases) {
    const r = await run(args);
    assert.notEqual(r.code, 0, args.join(' '));
    assert.match(r.stderr, message);
    assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace');
  }
});

test('a port in use is reported, not thrown', async () => {
  const blocker = createServer().listen(0, '127.0.0.1');
  await new Promise((r) => blocker.once('listening', r));
  const port = (blocker.address() as { port: number }).port;
  const r = await run(['serve', '--usbip', `127.0.0.1:${port}`]);
  blocker.close();
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /address already in use/);
});

test('serve prints one line per export and exits 0 on SIGTERM', async () => {
  const img = join(dir, 'a.img');
  writeFileSync(img, Buffer.alloc(1 << 20));
  const port = await freePort();
  const r = await run(['serve', '--usbip', `127.0.0.1:${port}`, '--disk', img, '--disk', `${img},readonly`], /1-2/);
  assert.equal(r.code, 0, r.stderr);
  const lines = r.stdout
    .trim()
    .split('\n')
    .filter((l) => !l.startsWith('control:'));
  assert.equal(lines.length, 2);
  assert.match(
    lines[0]!,
    new RegExp(`listening on 127\\.0\\.0\\.1:${port}.*1-1.*usbip --tcp-port ${port} attach -r 127\\.0\\.0\\.1 -b 1-1`),
  );
  assert.match(lines[1]!, /1-2 .*read-only/);
});

test('list -r shows what serve exports; an unreachable server is one clear line', async () => {
  const img = join(dir, 'b.img');
  writeFileSync(img, Buffer.alloc(1 << 20));
  const port = await freePort();
  const server = spawn(process.execPath, [BIN, 'serve', '--usbip', `127.0.0.1:${port}`, '--disk', img], {
    stdio: ['ignore', 'pipe', 'ignore'],
  });
  await new Promise<void>((resolve) => server.stdout.on('data', (d) => String(d).includes('listening') && resolve()));
  const listed = await run(['list', '-r', '127.0.0.1', '--tcp-port', String(port)]);
  server.kill('SIGTERM');
  assert.equal(listed.code, 0, listed.stderr);
  assert.match(listed.stdout, /^ {8}1-1: .*\(1209:0001\)$/m);
  assert.match(listed.stdout, /^ {11}: {2}0 - .*\(08\/06\/50\)$/m);
  const closed = await freePort();
  const refused = await run(['list', '-r', `127.0.0.1:${closed}`]);
  assert.notEqual(refused.code, 0);
  assert.match(refused.stderr, /ECONNREFUSED/);
  assert.doesNotMatch(refused.stderr, /\n\s+at /);
});

test('input commands: no server → one line saying so and how to start one; bad usage → exit 2', async () => {
  const sock = join(dir, 'none.sock');
  const r = await run(['type', '1-1', 'hi', '--control', `unix:${sock}`]);
  assert.equal(r.code, 2);
  assert.match(
    r.stderr,
    /^usbwire: no usbwire server is listening on unix:.*none\.sock; start one with 'usbwire serve/,
  );
  assert.equal(r.stderr.trim().split('\n').length, 1);
  for (const [args, message] of [
    [['pointer', '1-2', 'move', '1'], /DX|DY/],
    [['pointer', '1-2', 'jump'], /unknown pointer action/],
    [['key', '1-1', 'a', '--down', '--up'], /exclude/],
    [['key', '1-1', 'a', '--sideways'], /unknown option --sideways/],
    [['serve', '--keyboard', '--control', '10.0.0.1:5000'], /unauthenticated.*loopback/],
    [['serve', '--keyboard=yes'], /--keyboard/],
    [['detach', '--sideways', '1-1'], /unknown option --sideways/],
  ] as [string[], RegExp][]) {
    const x = await run(args);
    assert.notEqual(x.code, 0, args.join(' '));
    assert.match(x.stderr, message, args.join(' '));
  }
});

test('serve --keyboard --mouse with a control socket: devices, type, pointer, leds through the CLI', async () => {
  const sock = join(dir, 'kbd.sock');
  const port = await freePort();
  const p = spawn(
    process.execPath,
    [BIN, 'serve', '--keyboard', '--mouse', '--usbip', `127.0.0.1:${port}`, '--control', `unix:${sock}`],
    {
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  try {
    await new Promise<void>((resolve, reject) => {
      let out = '';
      p.stdout.on('data', (d) => {
        out += d;
        if (/control: listening on unix:/.test(out)) resolve();
      });
      p.on('exit', () => reject(new Error(`serve exited: ${out}`)));
    });
    const c = ['--control', `unix:${sock}`];
    const devices = await run(['devices', ...c]);
    assert.equal(devices.code, 0, devices.stderr);
    assert.match(devices.stdout, /^1-1 {2}virtual keyboard {2}free {2}actions: type, key, leds$/m);
    assert.match(devices.stdout, /^1-2 {2}virtual mouse {2}free {2}actions: move, wheel, click, button$/m);
    const notAttached = await run(['type', '1-1', 'hi', ...c]);
    assert.match(notAttached.stderr, /not attached/);
    const wrong = await run(['pointer', '1-1', 'move', '-3', '4', ...c]);
    assert.match(wrong.stderr, /has no action "move"/);
    const unknown = await run(['key', '7-7', 'enter', ...c]);
    assert.match(unknown.stderr, /no exported device 7-7/);
    const leds = await run(['leds', '1-1', ...c]);
    assert.equal(leds.stdout.trim(), 'none');
  } finally {
    p.kill('SIGTERM');
  }
});

test('serve --gadget-zero: a flag without a value, repeatable, mixed with disks', async () => {
  const img = join(dir, 'gz.img');
  writeFileSync(img, Buffer.alloc(1 << 20));
  const port = await freePort();
  const r = await run(
    ['serve', '--usbip', `127.0.0.1:${port}`, '--gadget-zero', '--disk', img, '--gadget-zero'],
    /1-3/,
  );
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /1-1 \(gadget zero #1\)/);
  assert.match(r.stdout, /1-2 \(disk /);
  assert.match(r.stdout, /1-3 \(gadget zero #3\)/);
  const bad = await run(['serve', '--gadget-zero=1']);
  assert.notEqual(bad.code, 0);
  assert.doesNotMatch(bad.stderr, /\n\s+at /, 'no stack trace');
  const help = await run(['serve', '--help']);
  assert.match(help.stdout, /--gadget-zero \[pattern=0\|1\|2\]\S*\s+the kernel's g_zero test device/);
  const badOption = await run(['serve', '--gadget-zero', 'pattern=7']);
  assert.equal(badOption.code, 2);
  assert.match(badOption.stderr, /--gadget-zero pattern=7: unknown option "pattern=7"/);
});

test('serve --serial stdio: stdout is the serial line, so the server speaks on stderr only', async () => {
  const port = await freePort();
  const sock = join(dir, 'stdio.sock');
  const p = spawn(
    process.execPath,
    [BIN, 'serve', '--usbip', `127.0.0.1:${port}`, '--serial', 'stdio', '--control', `unix:${sock}`],
    { stdio: ['pipe', 'pipe', 'pipe'] },
  );
  let stdout = '';
  let stderr = '';
  p.stdout.on('data', (d) => (stdout += d));
  const code = await new Promise<number | null>((resolve) => {
    p.stderr.on('data', (d) => {
      stderr += d;
      if (/control: listening/.test(stderr) && !p.killed) p.kill('SIGTERM');
    });
    p.on('close', resolve);
  });
  assert.equal(code, 0, stderr);
  assert.match(stderr, /usbip: listening on 127\.0\.0\.1/);
  assert.equal(stdout, '', 'nothing of the server on the serial line');
});

test('serve --force-stop is accepted and stops on SIGTERM; detach --help documents --force', async () => {
  const port = await freePort();
  const r = await run(
    ['serve', '--force-stop', '--demo-size', '1', '--usbip', `127.0.0.1:${port}`, '--control', 'none'],
    /listening/,
  );
  assert.equal(r.code, 0, r.stderr);
  const help = await run(['detach', '--help']);
  assert.match(help.stdout, /usage: usbwire detach \[--force\] BUSID/);
  assert.match(help.stdout, /--force {8}detach anyway: the guest first sees its medium removed/);
});

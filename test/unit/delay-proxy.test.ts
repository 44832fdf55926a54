// The delay proxy: data integrity, one-way delay by timestamp (pipelining survives), rate cap,
// back-pressure, half-close, errors, flags, and our USB/IP client reading a disk through it.
// Timing assertions are one-sided or generous: the machine may be loaded.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import net from 'node:net';
import { PassThrough } from 'node:stream';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { UsageError } from '../../src/cli/args.js';
import { parseDelayProxyArgs, parseDuration, parseRate } from '../../src/cli/delay-proxy.js';
import { RemoteUsbipDevice } from '../../src/client/usbip/index.js';
import { MemoryBackend } from '../../src/devices/mass-storage/backend/index.js';
import { createBotDisk } from '../../src/devices/mass-storage/index.js';
import { DeviceRegistry } from '../../src/server/registry.js';
import { UsbipServer } from '../../src/server/usbip/index.js';
import { type Clock, DelayedDirection, type LinkOptions } from '../../src/transport/delay-pipe.js';
import { DelayProxy } from '../../src/transport/delay-proxy.js';
import type { HostPort } from '../../src/util/host-port.js';
import { setLogSink } from '../../src/util/log.js';
import { BotHost } from '../support/bot-host.js';

const logLines: string[] = [];
before(() => setLogSink((l) => logLines.push(l)));
after(() => setLogSink((l) => process.stderr.write(`${l}\n`)));

class FakeClock implements Clock {
  t = 0;
  #timers: { at: number; fn: () => void }[] = [];
  now(): number {
    return this.t;
  }
  after(ms: number, fn: () => void): () => void {
    const timer = { at: this.t + ms, fn };
    this.#timers.push(timer);
    return () => this.#timers.splice(this.#timers.indexOf(timer) >>> 0, 1);
  }
  advance(to: number): void {
    for (;;) {
      this.#timers.sort((a, b) => a.at - b.at);
      const next = this.#timers[0];
      if (!next || next.at > to) break;
      this.#timers.shift();
      this.t = next.at;
      next.fn();
    }
    this.t = to;
  }
}

const tick = () => new Promise<void>((resolve) => setImmediate(resolve));

/** A DelayedDirection between two PassThroughs on a fake clock, recording what left and when. */
async function fakeLink(link: LinkOptions) {
  const clock = new FakeClock();
  const from = new PassThrough();
  const to = new PassThrough();
  new DelayedDirection(from, to, link, clock);
  const out: { at: number; text: string }[] = [];
  let ended = -1;
  to.on('data', (c: Buffer) => out.push({ at: clock.t, text: c.toString() }));
  to.on('end', () => (ended = clock.t));
  const send = async (text: string) => {
    from.write(text);
    await tick();
  };
  const advance = async (t: number) => {
    clock.advance(t);
    await tick();
  };
  return { clock, from, out, send, advance, ended: () => ended };
}

test('fake clock: each chunk leaves delay after it was read, not after the previous one', async () => {
  const l = await fakeLink({ delayMs: 10 });
  await l.send('a');
  await l.advance(1);
  await l.send('b');
  await l.advance(3);
  await l.send('c');
  l.from.end();
  await l.advance(9.5);
  assert.deepEqual(l.out, []);
  await l.advance(13);
  assert.deepEqual(l.out, [
    { at: 10, text: 'a' },
    { at: 11, text: 'b' },
    { at: 13, text: 'c' },
  ]);
  assert.equal(l.ended(), 13, 'the end follows the last chunk');
});

test('fake clock: a rate cap serializes chunks one after the other, then adds the delay', async () => {
  const l = await fakeLink({ delayMs: 5, bytesPerSecond: 1000 });
  await l.send('x'.repeat(100));
  await l.send('y'.repeat(100));
  await l.advance(1000);
  assert.deepEqual(
    l.out.map((o) => [o.at, o.text[0], o.text.length]),
    [
      [105, 'x', 100],
      [205, 'y', 100],
    ],
  );
});

/** Echo server: sends back what it reads, ends when the client ended. */
async function listen(onSocket: (s: net.Socket) => void): Promise<{ server: net.Server; address: HostPort }> {
  const server = net.createServer({ allowHalfOpen: true }, onSocket);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, address: { host: '127.0.0.1', port: (server.address() as net.AddressInfo).port } };
}

async function withProxy(
  target: HostPort,
  links: { up: LinkOptions; down: LinkOptions },
  body: (at: HostPort) => Promise<void>,
): Promise<void> {
  const proxy = new DelayProxy({ listen: { host: '127.0.0.1', port: 0 }, to: target, ...links });
  const at = await proxy.listen();
  try {
    await body(at);
  } finally {
    await proxy.close();
  }
}

const rtt = (ms: number) => ({ up: { delayMs: ms / 2 }, down: { delayMs: ms / 2 } });

function connect(at: HostPort): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ ...at, allowHalfOpen: true }, () => resolve(s));
    s.once('error', reject);
  });
}

/** Read until `n` bytes arrived (or the end); resolves with them and the time taken from `since`. */
function readBytes(s: net.Socket, n: number, since = performance.now()): Promise<{ data: Buffer; ms: number }> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let got = 0;
    const finish = () => {
      s.off('data', onData);
      s.off('end', finish);
      resolve({ data: Buffer.concat(chunks), ms: performance.now() - since });
    };
    const onData = (c: Buffer) => {
      chunks.push(c);
      got += c.length;
      if (got >= n) finish();
    };
    s.on('data', onData);
    s.once('end', finish);
  });
}

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

let echo: { server: net.Server; address: HostPort };
before(async () => {
  echo = await listen((s) => {
    s.pipe(s);
  });
});
after(() => new Promise<void>((resolve) => echo.server.close(() => resolve())));

test('integrity: 4 MiB of random bytes through and back, sha256 equal, end passed on both ways', async () => {
  await withProxy(echo.address, rtt(4), async (at) => {
    const s = await connect(at);
    const sent = randomBytes(4 * 1024 * 1024);
    const back = readBytes(s, Number.POSITIVE_INFINITY);
    s.end(sent);
    const { data } = await back;
    assert.equal(data.length, sent.length);
    assert.equal(sha256(data), sha256(sent));
    s.destroy();
  });
  await waitFor(() => logLines.some((l) => /closed after [\d.]+ s, 4194304 bytes up, 4194304 bytes down/.test(l)));
});

test('delay: a round trip through --rtt 40ms takes at least 40 ms and not wildly more', async () => {
  await withProxy(echo.address, rtt(40), async (at) => {
    const s = await connect(at);
    const times: number[] = [];
    for (let i = 0; i < 5; i++) {
      const since = performance.now();
      const back = readBytes(s, 1, since);
      s.write('x');
      times.push((await back).ms);
    }
    s.destroy();
    for (const ms of times) assert.ok(ms >= 40, `round trip ${ms.toFixed(1)} ms < 40`);
    assert.ok(Math.min(...times) < 200, `round trips ${times.map((t) => t.toFixed(1))} ms`);
  });
});

test('delay: asymmetric one-way delays add up', async () => {
  await withProxy(echo.address, { up: { delayMs: 30 }, down: { delayMs: 0 } }, async (at) => {
    const s = await connect(at);
    const back = readBytes(s, 1);
    s.write('x');
    const { ms } = await back;
    s.destroy();
    assert.ok(ms >= 30 && ms < 200, `${ms.toFixed(1)} ms`);
  });
});

test('pipelining: 50 requests in flight at RTT 50 ms finish in about one RTT, not 50', async () => {
  await withProxy(echo.address, rtt(50), async (at) => {
    const s = await connect(at);
    const since = performance.now();
    const back = readBytes(s, 50 * 100, since);
    for (let i = 0; i < 50; i++) {
      s.write(Buffer.alloc(100, i));
      await tick();
    }
    const { data, ms } = await back;
    s.destroy();
    for (let i = 0; i < 50; i++) assert.equal(data[i * 100], i, 'order kept');
    assert.ok(ms >= 50, `${ms.toFixed(1)} ms`);
    assert.ok(ms < 500, `50 requests took ${ms.toFixed(1)} ms: pipelining lost (50 × RTT = 2500 ms)`);
  });
});

test('rate cap: 1 MiB at 8 mbit takes about a second', async () => {
  let done!: (ms: number) => void;
  const received = new Promise<number>((resolve) => (done = resolve));
  const sink = await listen((s) => {
    let got = 0;
    s.on('data', (c: Buffer) => {
      got += c.length;
      if (got === 1024 * 1024) done(performance.now());
    });
  });
  try {
    const link = { delayMs: 0, bytesPerSecond: parseRate('8mbit', '--rate') };
    await withProxy(sink.address, { up: link, down: link }, async (at) => {
      const s = await connect(at);
      const since = performance.now();
      s.write(randomBytes(1024 * 1024));
      const ms = (await received) - since;
      s.destroy();
      // 1 MiB = 8.39 Mbit: 1.05 s at 8 Mbit/s.
      assert.ok(ms >= 1000, `${ms.toFixed(0)} ms`);
      assert.ok(ms < 4000, `${ms.toFixed(0)} ms`);
    });
  } finally {
    sink.server.close();
  }
});

test('back-pressure: a server that does not read stops the client; nothing is lost when it reads', async () => {
  let serverSide!: net.Socket;
  const accepted = new Promise<void>((resolve) => {
    void listen((s) => {
      serverSide = s;
      s.pause();
      resolve();
    }).then((l) => (stall = l));
  });
  let stall!: { server: net.Server; address: HostPort };
  await waitFor(() => stall !== undefined);
  try {
    await withProxy(stall.address, rtt(2), async (at) => {
      const s = await connect(at);
      await accepted;
      const total = 64 * 1024 * 1024;
      const sent = randomBytes(total);
      s.write(sent);
      await new Promise((resolve) => setTimeout(resolve, 1000));
      const left = s.writableLength;
      assert.ok(left > total - 40 * 1024 * 1024, `only ${left} bytes still held by the client: no back-pressure`);
      const got = readBytes(serverSide, total);
      serverSide.resume();
      const { data } = await got;
      assert.equal(sha256(data), sha256(sent));
      s.destroy();
    });
  } finally {
    stall.server.close();
  }
});

test('half-close: the client ends, the server still answers, then ends; both ends are passed on', async () => {
  const half = await listen((s) => {
    const chunks: Buffer[] = [];
    s.on('data', (c: Buffer) => chunks.push(c));
    s.on('end', () => s.end(`got ${Buffer.concat(chunks).toString()}`));
  });
  try {
    await withProxy(half.address, rtt(10), async (at) => {
      const s = await connect(at);
      const back = readBytes(s, Number.POSITIVE_INFINITY);
      s.end('hello');
      const { data, ms } = await back;
      assert.equal(data.toString(), 'got hello');
      assert.ok(ms >= 10, `${ms.toFixed(1)} ms`);
      await new Promise((resolve) => s.once('close', resolve));
    });
  } finally {
    half.server.close();
  }
});

test('errors: a reset on one side closes the other; a server that refuses closes the client', async () => {
  let serverClosed!: () => void;
  const closed = new Promise<void>((resolve) => (serverClosed = resolve));
  const held = await listen((s) => {
    s.on('error', () => {});
    s.on('close', serverClosed);
  });
  try {
    await withProxy(held.address, rtt(10), async (at) => {
      const s = await connect(at);
      s.write('x');
      await new Promise((resolve) => setTimeout(resolve, 50));
      s.resetAndDestroy();
      await closed;
    });
  } finally {
    held.server.close();
  }
  const refused = await listen(() => {});
  const gone = refused.address;
  await new Promise<void>((resolve) => refused.server.close(() => resolve()));
  await withProxy(gone, rtt(0), async (at) => {
    const s = await connect(at);
    s.on('error', () => {});
    s.resume();
    await new Promise((resolve) => s.once('close', resolve));
  });
});

test('USB/IP through the proxy at RTT 20 ms: a disk read is right and pays its three round trips', async () => {
  const BLOCKS = 2048;
  const backend = new MemoryBackend(BLOCKS * 512);
  const image = randomBytes(BLOCKS * 512);
  await backend.write(0, image);
  const registry = new DeviceRegistry();
  registry.add(createBotDisk(backend, { name: 'disk' }));
  const server = new UsbipServer(registry, { host: '127.0.0.1', port: 0 });
  const address = await server.listen();
  try {
    await withProxy(address, rtt(20), async (at) => {
      const dev = await RemoteUsbipDevice.import(at, '1-1', { timeoutMs: 5000 });
      try {
        const host = await BotHost.open(dev);
        const since = performance.now();
        const data = await host.read(100, 64);
        const ms = performance.now() - since;
        assert.equal(sha256(data), sha256(image.subarray(100 * 512, 164 * 512)));
        // CBW, data and CSW: one round trip each.
        assert.ok(ms >= 60, `READ(10) took ${ms.toFixed(1)} ms, expected ≥ 3 × 20 ms`);
        assert.ok(ms < 1000, `READ(10) took ${ms.toFixed(1)} ms`);
      } finally {
        await dev.close();
      }
    });
  } finally {
    await server.close();
  }
});

test('flags: values, units, overrides and one-line errors', () => {
  const a = parseDelayProxyArgs(['--listen', ':3250', '--to', '127.0.0.1:3240', '--rtt', '10ms', '--rate', '100mbit']);
  assert.deepEqual(a?.up, { delayMs: 5, bytesPerSecond: 12_500_000 });
  assert.deepEqual(a?.down, { delayMs: 5, bytesPerSecond: 12_500_000 });
  assert.deepEqual(a?.listen, { host: '127.0.0.1', port: 3250 });
  const b = parseDelayProxyArgs([
    '--listen',
    ':1',
    '--to',
    ':2',
    '--rtt',
    '10',
    '--down-delay',
    '1s',
    '--up-rate',
    '1M',
  ]);
  assert.deepEqual(b?.up, { delayMs: 5, bytesPerSecond: 1024 * 1024 });
  assert.deepEqual(b?.down, { delayMs: 1000, bytesPerSecond: undefined });
  assert.equal(parseDelayProxyArgs(['--help']), undefined);
  assert.equal(parseDuration('500us', '--rtt'), 0.5);
  assert.equal(parseRate('1gbit', '--rate'), 125_000_000);
  assert.equal(parseRate('512k', '--rate'), 512 * 1024);
  const bad: [string[], RegExp][] = [
    [['--to', ':2'], /needs --listen/],
    [['--listen', ':1'], /needs --to/],
    [['--listen', ':1', '--to', ':2', '--rtt', '10parsecs'], /--rtt 10parsecs: expected a time/],
    [['--listen', ':1', '--to', ':2', '--rtt=-5ms'], /--rtt -5ms: expected a time/],
    [['--listen', ':1', '--to', ':2', '--up-delay', '2min'], /--up-delay 2min/],
    [['--listen', ':1', '--to', ':2', '--rtt', '61s'], /at most 60s/],
    [['--listen', ':1', '--to', ':2', '--rate', 'fast'], /--rate fast: expected a rate/],
    [['--listen', ':1', '--to', ':2', '--rate', '0mbit'], /--rate 0mbit: must be at least/],
    [['--listen', ':1', '--to', ':2', '--down-rate', '5furlongs'], /--down-rate 5furlongs/],
    [['--listen', 'nope', '--to', ':2'], /--listen/],
    [['--listen', ':1', '--to', ':2', '--jitter', '1ms'], /Unknown option '--jitter'/],
  ];
  for (const [argv, message] of bad)
    assert.throws(
      () => parseDelayProxyArgs(argv),
      (e) => e instanceof UsageError && message.test(e.message),
      argv.join(' '),
    );
});

test('CLI: usbwire delay-proxy with a bad value exits 2 with one line', async () => {
  const bin = fileURLToPath(new URL('../../../bin/usbwire.js', import.meta.url));
  const p = spawn(process.execPath, [bin, 'delay-proxy', '--listen', ':1', '--to', ':2', '--rtt', 'soon'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  p.stderr.on('data', (d) => (stderr += d));
  const code = await new Promise((resolve) => p.on('close', resolve));
  assert.equal(code, 2);
  assert.equal(stderr, 'usbwire: --rtt soon: expected a time such as 10ms, 1.5ms or 0.2s\n');
});

async function waitFor(cond: () => boolean, ms = 5000): Promise<void> {
  const until = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > until) throw new Error('timed out waiting');
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

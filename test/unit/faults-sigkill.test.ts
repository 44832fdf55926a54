// usbwire SIGKILLed during writes, without the rig: the real `usbwire serve` process exports an
// image, a client writes through it (BOT WRITE(10), small writes done on the event loop and
// large ones in the thread pool) and keeps the list of writes whose CSW said "passed"; the server
// is killed in the middle. Every acknowledged write is in the image, a new server takes the image
// at once (the lock went with the killed process) and serves it again. A second server on an
// image in use is refused at startup, naming the holder.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { UsbipClient } from '../../src/client/usbip/index.js';
import { setLogSink } from '../../src/util/log.js';
import { BotHost } from '../support/bot-host.js';
import { prng } from '../support/prng.js';
import { until } from '../support/usbip-wire.js';
import { startServe } from './faults-serve.js';

setLogSink('silent');

const SIZE = 16 * 1024 * 1024;
const dir = mkdtempSync(join(tmpdir(), 'usbwire-sigkill-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const serve = (img: string) => startServe(['--disk', img, '--control', 'none']);

interface Done {
  lba: number;
  data: Buffer;
}

test('faults: usbwire SIGKILLed during writes: every acknowledged write is in the image; a restarted usbwire serves it at once', {
  timeout: 60_000,
}, async (t) => {
  const img = join(dir, 'kill.img');
  writeFileSync(img, Buffer.alloc(SIZE));
  const srv = await serve(img);
  const dev = await new UsbipClient().importDevice({ host: '127.0.0.1', port: srv.port }, '1-1');
  const bot = await BotHost.open(dev);
  const random = prng(9);
  const done: Done[] = [];
  let failure: unknown;
  // Sequential writes, no overlap: 4 KiB to 1 MiB (above 128 KiB the server writes off the event loop).
  const writer = (async () => {
    let lba = 0;
    for (let i = 0; ; i++) {
      const blocks = [8, 256, 2048, 64, 512, 1][i % 6]!;
      if ((lba + blocks) * 512 > SIZE) lba = 0;
      const data = Buffer.alloc(blocks * 512);
      for (let j = 0; j < data.length; j += 4) data.writeUInt32LE((random() * 2 ** 32) >>> 0, j);
      try {
        await bot.write(lba, data);
      } catch (err) {
        failure = err;
        return;
      }
      done.push({ lba, data });
      lba += blocks;
    }
  })();
  await until(() => done.length >= 60, '60 acknowledged writes', 30_000);
  srv.proc.kill('SIGKILL');
  await writer;
  assert.ok(failure, 'the write in flight at the kill failed');
  assert.equal(await srv.exited, null, 'killed by the signal');

  // Later writes may overwrite earlier ones (the writer wraps): the last one per block counts.
  const image = readFileSync(img);
  const want = new Map<number, Buffer>();
  for (const w of done)
    for (let b = 0; b * 512 < w.data.length; b++) want.set(w.lba + b, w.data.subarray(b * 512, b * 512 + 512));
  for (const [lba, block] of want) {
    assert.ok(
      image.subarray(lba * 512, lba * 512 + 512).equals(block),
      `acknowledged block ${lba} is not in the image`,
    );
  }

  const t0 = Date.now();
  const again = await serve(img);
  assert.equal(again.proc.exitCode, null, `restarted usbwire refused the image:\n${again.output()}`);
  const restartMs = Date.now() - t0;
  const dev2 = await new UsbipClient().importDevice({ host: '127.0.0.1', port: again.port }, '1-1');
  const bot2 = await BotHost.open(dev2);
  const last = done[done.length - 1]!;
  assert.ok((await bot2.read(last.lba, last.data.length / 512)).equals(last.data), 'read back through the new server');
  await dev2.close();
  t.diagnostic(
    `${done.length} writes acknowledged before the SIGKILL (${want.size} blocks checked in the image); restarted and listening in ${restartMs} ms`,
  );
  again.proc.kill('SIGTERM');
  await again.exited;
});

test('faults: a second usbwire on an image in use is refused at startup, naming the holder', async () => {
  const img = join(dir, 'busy.img');
  writeFileSync(img, Buffer.alloc(1 << 20));
  const holder = await serve(img);
  const refused = await serve(img);
  assert.equal(await refused.exited, 2, refused.output());
  assert.match(
    refused.output(),
    new RegExp(
      `${img} is in use by pid ${holder.proc.pid} \\(.*usbwire\\.js serve .*\\): refusing to export it writable`,
    ),
  );
  holder.proc.kill('SIGKILL');
  await holder.exited;
  const next = await serve(img);
  assert.equal(next.proc.exitCode, null, `the lock went with the killed holder:\n${next.output()}`);
  next.proc.kill('SIGTERM');
  await next.exited;
});

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { FileBackend } from '../../src/devices/mass-storage/backend/index.js';
import { WRITE_FAILURE_WINDOW_MS } from '../../src/devices/mass-storage/backend/write-failures.js';
import { createLogger, setLogSink } from '../../src/util/log.js';

const dir = mkdtempSync(join(tmpdir(), 'usbwire-full-'));
const mnt = join(dir, 'tiny');
let mounted = false;

before(() => {
  mkdirSync(mnt);
  try {
    // 64 KiB of space under a 1 MiB image: writes past 16 pages fail with ENOSPC.
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', mnt], { stdio: 'ignore' });
    mounted = true;
  } catch {
    mounted = false;
  }
});

after(() => {
  // Lazy: the image lock's helper process may still be exiting.
  if (mounted) execFileSync('umount', ['-l', mnt]);
  rmSync(dir, { recursive: true, force: true });
});

test('the summary window defaults to 5 s', () => {
  assert.equal(WRITE_FAILURE_WINDOW_MS, 5000);
});

test('host write failures are logged once per burst with path, offset and errno', async (t) => {
  if (!mounted) {
    t.skip('cannot mount a small tmpfs here (needs root)');
    return;
  }
  const img = join(mnt, 'disk.img');
  writeFileSync(img, '');
  truncateSync(img, 1 << 20);
  const lines: string[] = [];
  setLogSink((l) => lines.push(l));
  const windowMs = 200;
  const b = await FileBackend.open(img, { logger: createLogger('test'), writeFailureWindowMs: windowMs });
  let failures = 0;
  let firstFailure = -1;
  for (let i = 0; i < 40; i++) {
    try {
      await b.write(i * 4096, Buffer.alloc(4096, 1));
    } catch (err) {
      assert.equal((err as NodeJS.ErrnoException).code, 'ENOSPC');
      if (failures++ === 0) firstFailure = i * 4096;
    }
  }
  assert.ok(failures > 1, `${failures} failures`);
  const errors = () => lines.filter((l) => l.includes(' error '));
  assert.equal(errors().length, 1, errors().join('\n'));
  assert.match(errors()[0]!, new RegExp(`write to ${img} at offset ${firstFailure} \\(4096 bytes\\) failed: ENOSPC`));

  await new Promise((r) => setTimeout(r, windowMs + 100));
  assert.equal(errors().length, 2);
  assert.match(
    errors()[1]!,
    new RegExp(`${failures - 1} more writes to ${img} failed within ${windowMs} ms \\(last: ENOSPC`),
  );

  // A later burst starts with its own first line.
  await assert.rejects(b.write(39 * 4096, Buffer.alloc(4096, 2)));
  assert.equal(errors().length, 3);
  assert.match(errors()[2]!, /write to .* at offset 159744 .*failed: ENOSPC/);
  setLogSink('silent');
  await b.close();
});

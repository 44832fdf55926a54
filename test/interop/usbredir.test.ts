// usbredir interop: QEMU's own usb-redir device (the usbredir "guest" side, usbredirparser
// 0.13) against `usbwire serve --usbredir` (QEMU connects out) and `--usbredir-connect`
// (QEMU listens). The guest kernel sees a USB mass storage disk on qemu-xhci or usb-ehci.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import {
  assertPatternsInImage,
  assertUnchangedOutside,
  guestPatternWrites,
  MiB,
  type PatternWrite,
  patternFiles,
  prepareImage,
  runDiskScenario,
} from './disk-checks.js';
import {
  freePort,
  interopFile,
  readAt,
  readKV,
  sha256File,
  sleep,
  startGuest,
  startUsbwire,
  type UsbwireServer,
} from './rig.js';

const file = interopFile('usbredir');
const { skip, work, servers } = file;

type Hc = 'xhci' | 'ehci';

function usbArgs(hc: Hc, chardev: string): string[] {
  return [
    '-device',
    hc === 'xhci' ? 'qemu-xhci,id=usbc' : 'usb-ehci,id=usbc',
    '-chardev',
    chardev,
    '-device',
    'usb-redir,chardev=ur0,bus=usbc.0',
  ];
}
const connectOut = (port: number) => `socket,id=ur0,host=127.0.0.1,port=${port},reconnect=1,nodelay=on`;
const listenIn = (port: number) => `socket,id=ur0,host=127.0.0.1,port=${port},server=on,wait=off,nodelay=on`;
const modulesFor = (hc: Hc) => [hc === 'xhci' ? 'xhci_pci' : 'ehci_pci', 'usb_storage', 'sd_mod', 'ext4'];

function server(args: string[], readyPattern?: RegExp): UsbwireServer {
  const s = startUsbwire(args, readyPattern ? { readyPattern } : {});
  servers.push(s);
  return s;
}

async function guarded<T>(srvs: () => (UsbwireServer | undefined)[], fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    file.failed = true;
    for (const s of srvs()) if (s) process.stderr.write(`--- usbwire output ---\n${s.output()}\n`);
    throw e;
  }
}

for (const hc of ['xhci', 'ehci'] as const) {
  test(`usbredir (${hc}, QEMU connects): whole-disk checksum, direct pattern writes, ext4 round trip`, {
    skip,
    timeout: 420_000,
  }, async () => {
    const img = join(work, `disk-${hc}.img`);
    const port = await freePort();
    let srv: UsbwireServer | undefined;
    await guarded(
      () => [srv],
      async () => {
        const res = await runDiskScenario({
          img,
          seed: `usbredir-${hc}`,
          size: 64 * MiB,
          modules: modulesFor(hc),
          attach: '',
          boot: { qemuArgs: usbArgs(hc, connectOut(port)), timeoutMs: 360_000 },
          beforeBoot: async () => {
            srv = server(['--usbredir', `127.0.0.1:${port}`, '--disk', img]);
            await srv.ready;
          },
        });
        res.cleanup();
      },
    );
  });
}

test('usbredir: QEMU listens (server=on), usbwire --usbredir-connect', { skip, timeout: 420_000 }, async () => {
  const img = join(work, 'disk-connect.img');
  const port = await freePort();
  let srv: UsbwireServer | undefined;
  await guarded(
    () => [srv],
    async () => {
      const res = await runDiskScenario({
        img,
        seed: 'usbredir-connect',
        size: 64 * MiB,
        modules: modulesFor('xhci'),
        attach: '',
        boot: { qemuArgs: usbArgs('xhci', listenIn(port)), timeoutMs: 360_000 },
        // usbwire retries until QEMU's listener answers, so it may start before QEMU.
        beforeBoot: async () => {
          srv = server(['--usbredir-connect', `127.0.0.1:${port}`, '--disk', img], /connect|listening/i);
          await srv.ready;
        },
      });
      res.cleanup();
    },
  );
});

test('usbredir: usbwire restarted while QEMU runs → QEMU reconnects, data before and after intact', {
  skip,
  timeout: 420_000,
}, async () => {
  const img = join(work, 'disk-restart.img');
  const seed = 'usbredir-restart';
  const size = 64 * MiB;
  const port = await freePort();
  const wa: PatternWrite[] = [{ name: 'before', offset: 1 * MiB, length: 64 * 1024 }];
  const wb: PatternWrite[] = [{ name: 'after', offset: 9 * MiB + 512, length: 130 * 1024 }];
  prepareImage({ img, seed, size });
  let srv1: UsbwireServer | undefined;
  let srv2: UsbwireServer | undefined;
  await guarded(
    () => [srv1, srv2],
    async () => {
      srv1 = server(['--usbredir', `127.0.0.1:${port}`, '--disk', img]);
      await srv1.ready;
      const g = startGuest({
        modules: modulesFor('xhci'),
        qemuArgs: usbArgs('xhci', connectOut(port)),
        timeoutMs: 300_000,
        files: { ...patternFiles(wa, 'r'), ...patternFiles(wb, 'r') },
        script: `
D=$(rig_wait_disk 60) || fail "disk did not appear"
${guestPatternWrites(wa, 'r')}
sync
rig_stage a
rig_wait_disk_gone $D 60 || fail "disk $D did not go away when usbwire stopped"
rig_stage gone
D=$(rig_wait_disk 90) || fail "disk did not come back after usbwire restarted"
log "disk back as $D"
got=$(dd if=/dev/$D bs=65536 count=1 skip=${wa[0]!.offset} iflag=direct,skip_bytes 2>/dev/null | sha256sum | cut -d' ' -f1)
[ "$got" = "$(rig_sha256 /mnt/host/pat-r-before.bin)" ] || fail "data written before the restart differs after it"
${guestPatternWrites(wb, 'r')}
sync
log "guest done"
`,
      });
      try {
        await g.waitStage('a', 240_000);
        await srv1.stop();
        await g.waitStage('gone', 90_000);
        srv2 = server(['--usbredir', `127.0.0.1:${port}`, '--disk', img]);
        await srv2.ready;
      } catch (e) {
        g.kill();
        const res = await g.done;
        throw new Error(`${(e as Error).message}\n${res.describe()}`);
      }
      const res = await g.done;
      assert.equal(res.rc, 0, res.describe());
      await assertPatternsInImage(img, wa, 'r');
      await assertPatternsInImage(img, wb, 'r');
      assertUnchangedOutside(img, seed, size, [...wa, ...wb]);
      res.cleanup();
    },
  );
});

test('usbredir: QEMU killed during writes → the server frees the device for the next QEMU', {
  skip,
  timeout: 420_000,
}, async () => {
  const img = join(work, 'disk-kill.img');
  const size = 64 * MiB;
  const port = await freePort();
  prepareImage({ img, seed: 'usbredir-kill', size });
  let srv: UsbwireServer | undefined;
  await guarded(
    () => [srv],
    async () => {
      srv = server(['--usbredir', `127.0.0.1:${port}`, '--disk', img]);
      await srv.ready;
      const g1 = startGuest({
        modules: modulesFor('xhci'),
        qemuArgs: usbArgs('xhci', connectOut(port)),
        timeoutMs: 240_000,
        script: `
D=$(rig_wait_disk 60) || fail "disk did not appear"
rig_stage writing
# Write over the disk again and again until QEMU is killed (a pass can take under a second).
while :; do
  dd if=/dev/zero of=/dev/$D bs=64k count=1024 oflag=direct 2>/tmp/dd.err || { cat /tmp/dd.err; fail "dd failed"; }
done
`,
      });
      try {
        await g1.waitStage('writing', 180_000);
      } catch (e) {
        g1.kill();
        const res = await g1.done;
        throw new Error(`${(e as Error).message}\n${res.describe()}`);
      }
      await sleep(1500);
      g1.kill();
      const r1 = await g1.done;
      assert.equal(r1.rc, null, `first guest was killed\n${r1.describe()}`);
      await sleep(500);
      assert.equal(srv.proc.exitCode, null, `usbwire exited after QEMU was killed:\n${srv.output()}`);

      const g2 = startGuest({
        modules: modulesFor('xhci'),
        qemuArgs: usbArgs('xhci', connectOut(port)),
        timeoutMs: 240_000,
        script: `
D=$(rig_wait_disk 60) || fail "disk did not appear for the second QEMU"
rig_result bytes $(rig_disk_bytes $D)
rig_result sha_full $(rig_sha256 /dev/$D)
`,
      });
      const r2 = await g2.done;
      assert.equal(r2.rc, 0, r2.describe());
      const kv = readKV(r2.shareDir);
      assert.equal(Number(kv.bytes), size);
      // The first guest wrote zeros from LBA 0 up to where it was killed.
      const headZero = Buffer.alloc(64 * 1024);
      assert.ok((await readAt(img, 0, headZero.length)).equals(headZero), 'the first guest wrote zeros at the start');
      assert.equal(kv.sha_full, sha256File(img), 'second guest reads the image as it is on the host');
      r1.cleanup();
      r2.cleanup();
    },
  );
});

// Try disconnect with the kernel's own sd driver, one guest boot: an ext4 on a usbwire disk,
// attached over USB/IP (vhci-hcd) and mounted in the guest.
//   1. `usbwire detach 1-1` while mounted is refused (exit 1, the message names the hold); the
//      guest keeps its disk and writes on.
//   2. after `umount`, `usbwire detach 1-1` is accepted; the host image passes e2fsck -fn and
//      debugfs reads both files back.
//   3. attached and mounted again, a writer does O_DIRECT writes + fsync and logs each one that
//      completed; `usbwire detach --force 1-1` in the middle: the guest's sd reports the medium
//      removed (dmesg) before the device leaves, new I/O fails, and every logged write is in
//      the image.
//   4. the same over QEMU's usb-redir (qemu-xhci, a second disk 1-2): refused while mounted,
//      forced while writing = medium removal, every logged write in the image; QEMU reconnects
//      and the guest gets the disk back with its files.
//   5. SIGTERM while mounted: usbwire says who holds what and keeps serving; after `umount` it
//      stops by itself (exit 0). A second server: two SIGTERMs while mounted force the stop,
//      the guest sees the medium removed, and the writes it was told are done are in the image.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { KiB, MiB } from './disk-checks.js';
import { GuestShell } from './guest-shell.js';
import {
  freePort,
  interopFile,
  makeZeroImage,
  patternBytes,
  repoRoot,
  sha256,
  sleep,
  startGuest,
  startUsbwire,
  type UsbwireServer,
  usbRedirArgs,
} from './rig.js';

const file = interopFile('safe-detach');
const { skip, work, servers } = file;

const SIZE = 32 * MiB;
const FILE_A = patternBytes('safe-detach-a', 0, 512 * KiB + 123);
const FILE_B = patternBytes('safe-detach-b', 0, 256 * KiB + 7);
const REC = 4096;
const RECORDS = 512;
const RECS = patternBytes('safe-detach-records', 0, REC * RECORDS);
const RECS2 = patternBytes('safe-detach-records-2', 0, REC * RECORDS);
const RECS3 = patternBytes('safe-detach-records-3', 0, REC * RECORDS);
/** The qemu-xhci of the usb-redir disk: PCI slot and its sysfs name. */
const REDIR_HC = '0x0a';
const REDIR_HC_PATH = '0000:00:0a.0';

const U = 'usbip --tcp-port 3240';
const H = '10.0.2.100';

/** Guest: attach 1-1, wait for its disk, mount it on /mnt/d (mkfs first if asked); prints the disk. */
function attachAndMount(mkfs: boolean): string {
  return `
${U} attach -r ${H} -b 1-1 || fail "usbip attach 1-1"
D=$(rig_wait_disk_via vhci_hcd 60) || fail "the disk of 1-1 did not appear"
echo $D > /tmp/disk
${mkfs ? 'mkfs.ext4 -q -F /dev/$D || fail "mkfs.ext4"' : ''}
mkdir -p /mnt/d
mount -t ext4 /dev/$D /mnt/d || fail "mount /dev/$D"
echo $D`;
}

/**
 * Guest: a writer in the background: record i of RECS-file at block i of MNT/log.bin, O_DIRECT +
 * fsync, logged once done. DISK_FILE names the disk (the remount checkpoints the journal, so
 * debugfs finds log.bin on the host whatever happens next).
 */
function startWriter(recs: string, tag: string, mnt = '/mnt/d', diskFile = '/tmp/disk'): string {
  return `
dd if=/dev/zero of=${mnt}/log.bin bs=${REC} count=${RECORDS} conv=fsync 2>/dev/null || fail "log.bin"
umount ${mnt} && mount -t ext4 /dev/$(cat ${diskFile}) ${mnt} || fail "remount"
rm -f $RIG_SHARE/acked-${tag}.txt $RIG_SHARE/writer-${tag}.txt
(
  i=0
  while [ $i -lt ${RECORDS} ]; do
    if dd if=$RIG_SHARE/${recs} of=${mnt}/log.bin bs=${REC} count=1 skip=$i seek=$i conv=notrunc,fsync oflag=direct 2>/tmp/dd-${tag}.err; then
      echo $i >> $RIG_SHARE/acked-${tag}.txt
    else
      echo "failed at $i: $(tr '\\n' ' ' < /tmp/dd-${tag}.err)" > $RIG_SHARE/writer-${tag}.txt
      exit 0
    fi
    i=$((i + 1))
  done
  echo "wrote all ${RECORDS}" > $RIG_SHARE/writer-${tag}.txt
) > /dev/null 2>&1 &
echo started`;
}

/** The guest's sd reported the medium removal (UNIT ATTENTION, MEDIUM NOT PRESENT), before the USB device left. */
function assertRemovalBeforeDisconnect(dmesg: string): void {
  const removal = dmesg.search(/Unit Attention[^\n]*\n[^\n]*Add\. Sense: Medium not present/);
  const gone = dmesg.search(/USB disconnect/);
  assert.ok(removal >= 0, `the guest's sd reported the medium removal:\n${dmesg.slice(-4000)}`);
  assert.ok(gone < 0 || removal < gone, `medium removal reported before the device left:\n${dmesg.slice(-4000)}`);
}

function acked(shareDir: string, tag: string): number[] {
  const p = join(shareDir, `acked-${tag}.txt`);
  if (!existsSync(p)) return [];
  return readFileSync(p, 'utf8')
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map(Number);
}

async function waitFor(what: string, ms: number, ok: () => boolean): Promise<void> {
  const deadline = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > deadline) throw new Error(`timeout waiting for ${what}`);
    await sleep(100);
  }
}

/** A file of the image's ext4, after replaying its journal on a copy (the fs was mounted when forced). */
function fileFromImage(img: string, name: string, replay: boolean): { data: Buffer; fsck: string } {
  let target = img;
  let fsck = '';
  if (replay) {
    target = `${img}.replayed`;
    copyFileSync(img, target);
    const r = spawnSync('e2fsck', ['-fy', target], { encoding: 'utf8' });
    fsck = `e2fsck -fy exit ${r.status}: ${r.stdout}${r.stderr}`;
    assert.ok(r.status === 0 || r.status === 1, fsck);
  }
  const r = spawnSync('debugfs', ['-R', `cat /${name}`, target], { maxBuffer: 64 * MiB });
  assert.equal(r.status, 0, `debugfs cat /${name}: ${r.stderr?.toString()}`);
  return { data: r.stdout as Buffer, fsck };
}

/** Every record the guest was told is written is in log.bin of the image. */
function assertAckedInImage(img: string, recs: Buffer, done: number[]): string {
  const { data, fsck } = fileFromImage(img, 'log.bin', true);
  assert.equal(data.length, REC * RECORDS, 'log.bin size');
  for (const i of done) {
    assert.ok(
      data.subarray(i * REC, (i + 1) * REC).equals(recs.subarray(i * REC, (i + 1) * REC)),
      `record ${i} was acknowledged to the guest but is not in the image`,
    );
  }
  return fsck;
}

test('safe detach: refused while mounted, accepted after umount, forced = medium removal; SIGTERM the same (one guest)', {
  skip,
  timeout: 420_000,
}, async (t) => {
  const img = join(work, 'disk.img');
  const img2 = join(work, 'disk2.img');
  makeZeroImage(img, SIZE);
  makeZeroImage(img2, SIZE);
  const sock = join(work, 'c.sock');
  const port = await freePort();
  const redirPort = await freePort();
  const serve = (): UsbwireServer => {
    const args = ['--usbip', `127.0.0.1:${port}`, '--usbredir', `127.0.0.1:${redirPort}=1-2`];
    const s = startUsbwire([...args, '--disk', img, '--disk', img2, '--control', `unix:${sock}`], {
      readyPattern: /^control: listening/,
    });
    servers.push(s);
    return s;
  };
  const cli = (...args: string[]) => {
    const r = spawnSync(process.execPath, [join(repoRoot, 'bin', 'usbwire.js'), ...args, '--control', `unix:${sock}`], {
      encoding: 'utf8',
      timeout: 60_000,
    });
    return { status: r.status, out: `${r.stdout}${r.stderr}` };
  };
  let srv = serve();
  await srv.ready;
  const g = startGuest({
    script: 'rig_command_loop\nlog "guest done"',
    files: { 'a.bin': FILE_A, 'b.bin': FILE_B, 'recs.bin': RECS, 'recs2.bin': RECS2, 'recs3.bin': RECS3 },
    modules: ['vhci_hcd', 'xhci_pci', 'usb_storage', 'sd_mod', 'ext4'],
    guestfwd: [{ guestPort: 3240, hostPort: port }],
    qemuArgs: usbRedirArgs([redirPort], { pciAddr: REDIR_HC }),
    timeoutMs: 360_000,
  });
  const sh = new GuestShell(g);
  const step = async (name: string, fn: () => Promise<void>) => {
    try {
      await t.test(name, fn);
    } catch (e) {
      file.failed = true;
      process.stderr.write(`--- usbwire output ---\n${srv.output()}\n`);
      throw e;
    }
  };
  try {
    await step('detach refused while the ext4 is mounted; the guest keeps its disk', async () => {
      await sh.ok(`${attachAndMount(true)}\ncp $RIG_SHARE/a.bin /mnt/d/a.bin && sync || fail "write a.bin"`, 180_000);
      const r = cli('detach', '1-1');
      assert.equal(r.status, 1, r.out);
      assert.match(
        r.out,
        /1-1 \(disk .*\) is held by usbip [\d.]+:\d+: the host has locked the medium since \S+ \(SCSI PREVENT ALLOW MEDIUM REMOVAL, prevent=1/,
      );
      assert.match(r.out, /not detached: unmount it in the guest first, or detach --force/);
      const logged = /warn\s+\[detach\] detach of 1-1 \(disk .*\) is held by usbip [\d.]+:\d+: .*refused/;
      await waitFor('the refusal in the log', 5000, () => logged.test(srv.output()));
      const out = await sh.ok(
        `D=$(cat /tmp/disk); [ -e /sys/block/$D ] || fail "the disk left"
cp $RIG_SHARE/b.bin /mnt/d/b.bin && sync || fail "write b.bin after the refusal"
echo 3 > /proc/sys/vm/drop_caches
sha256sum /mnt/d/a.bin /mnt/d/b.bin`,
      );
      assert.match(out, new RegExp(`${sha256(FILE_A)}\\s+/mnt/d/a.bin`));
      assert.match(out, new RegExp(`${sha256(FILE_B)}\\s+/mnt/d/b.bin`));
    });

    await step('after umount the detach is accepted and nothing is lost (e2fsck -fn, debugfs)', async () => {
      await sh.ok('umount /mnt/d || fail "umount"');
      const started = Date.now();
      const r = cli('detach', '1-1');
      assert.equal(r.status, 0, r.out);
      assert.match(r.out, /1-1: detached from usbip [\d.]+:\d+ \(writes in flight finished and flushed\)/);
      t.diagnostic(`detach after umount answered in ${Date.now() - started} ms`);
      await sh.ok('rig_wait_disk_gone $(cat /tmp/disk) 30 || fail "the disk is still there"');
      const fsck = spawnSync('e2fsck', ['-fn', img], { encoding: 'utf8' });
      assert.equal(fsck.status, 0, `e2fsck -fn: ${fsck.stdout}${fsck.stderr}`);
      assert.equal(sha256(fileFromImage(img, 'a.bin', false).data), sha256(FILE_A), 'a.bin in the image');
      assert.equal(sha256(fileFromImage(img, 'b.bin', false).data), sha256(FILE_B), 'b.bin in the image');
    });

    await step(
      'forced while mounted and writing: medium removal first, every acknowledged write in the image',
      async () => {
        await sh.ok(`${attachAndMount(false)}\n${startWriter('recs.bin', 'force')}`, 180_000);
        await waitFor('the guest writer to log 5 writes', 60_000, () => acked(g.shareDir, 'force').length >= 5);
        await sh.ok('dmesg -c > /dev/null');
        const r = cli('detach', '--force', '1-1');
        assert.equal(r.status, 0, r.out);
        assert.match(r.out, /1-1: detached from usbip .*\(writes in flight finished and flushed\)/);
        assert.match(r.out, /forced while the host has locked the medium .*; the host was told its medium was removed/);
        await waitFor('the writer to stop', 60_000, () => existsSync(join(g.shareDir, 'writer-force.txt')));
        const writer = readFileSync(join(g.shareDir, 'writer-force.txt'), 'utf8');
        assert.match(writer, /^failed at \d+/, 'the writer got an error for new I/O');
        const out = await sh.ok(
          'rig_wait_disk_gone $(cat /tmp/disk) 30 || fail "the disk is still there"; umount -l /mnt/d; dmesg',
        );
        t.diagnostic(`writer: ${writer.trim()}; acknowledged ${acked(g.shareDir, 'force').length} writes`);
        assertRemovalBeforeDisconnect(out);
        const fsck = assertAckedInImage(img, RECS, acked(g.shareDir, 'force'));
        t.diagnostic(fsck.split('\n')[0] ?? '');
      },
    );

    await step(
      'usb-redir: refused while mounted, forced while writing = medium removal; QEMU gets the disk back',
      async () => {
        await sh.ok(
          `R=$(rig_wait_disk_via ${REDIR_HC_PATH} 60) || fail "no usb-redir disk"
echo $R > /tmp/rdisk
mkfs.ext4 -q -F /dev/$R || fail "mkfs.ext4"
mkdir -p /mnt/r && mount -t ext4 /dev/$R /mnt/r || fail "mount /dev/$R"
cp $RIG_SHARE/a.bin /mnt/r/a.bin && sync || fail "write a.bin"
${startWriter('recs3.bin', 'redir', '/mnt/r', '/tmp/rdisk')}`,
          180_000,
        );
        const refused = cli('detach', '1-2');
        assert.equal(refused.status, 1, refused.out);
        assert.match(refused.out, /1-2 \(disk .*\) is held by usbredir [\d.]+:\d+: the host has locked the medium/);
        await waitFor('the guest writer to log 5 writes', 60_000, () => acked(g.shareDir, 'redir').length >= 5);
        await sh.ok('dmesg -c > /dev/null');
        const r = cli('detach', '--force', '1-2');
        assert.equal(r.status, 0, r.out);
        assert.match(r.out, /1-2: detached from usbredir .*\(writes in flight finished and flushed\)/);
        assert.match(r.out, /the host was told its medium was removed/);
        await waitFor('the writer to stop', 60_000, () => existsSync(join(g.shareDir, 'writer-redir.txt')));
        const writer = readFileSync(join(g.shareDir, 'writer-redir.txt'), 'utf8');
        assert.match(writer, /^failed at \d+/, 'the writer got an error for new I/O');
        const out = await sh.ok('rig_wait_disk_gone $(cat /tmp/rdisk) 30 || fail "the disk is still there"; dmesg');
        assertRemovalBeforeDisconnect(out);
        assertAckedInImage(img2, RECS3, acked(g.shareDir, 'redir'));
        t.diagnostic(
          `usb-redir: ${writer.trim()}; acknowledged ${acked(g.shareDir, 'redir').length} writes, all in the image`,
        );
        // QEMU reconnects (reconnect=1) and takes the device again: medium back, files there.
        const back = await sh.ok(
          `umount -l /mnt/r
R=$(rig_wait_disk_via ${REDIR_HC_PATH} 60) || fail "the usb-redir disk did not come back"
mount -t ext4 /dev/$R /mnt/r || fail "mount /dev/$R again"
sha256sum /mnt/r/a.bin
umount /mnt/r || fail "umount"`,
          120_000,
        );
        assert.match(back, new RegExp(`${sha256(FILE_A)}\\s+/mnt/r/a.bin`));
      },
    );

    await step('SIGTERM while mounted waits for umount; a second server is forced by a second SIGTERM', async () => {
      await sh.ok(attachAndMount(false), 180_000);
      srv.proc.kill('SIGTERM');
      await waitFor('the refusal in the log', 10_000, () => /SIGTERM: not stopping yet: 1-1/.test(srv.output()));
      await sleep(1500);
      assert.equal(srv.proc.exitCode, null, 'still serving while the disk is mounted');
      assert.match(srv.output(), /SIGTERM: not stopping yet: 1-1 \(disk .*\) is held by usbip [\d.]+:\d+: .*PREVENT/);
      await sh.ok('ls /mnt/d/a.bin && umount /mnt/d || fail "umount"');
      const exit = await Promise.race([srv.exited, sleep(20_000).then(() => 'timeout' as const)]);
      assert.deepEqual(exit, { code: 0, signal: null }, srv.output());
      assert.match(srv.output(), /no device is held any more: stopping/);
      await sh.ok('rig_wait_disk_gone $(cat /tmp/disk) 30 || fail "the disk is still there"');

      srv = serve();
      await srv.ready;
      await sh.ok(`${attachAndMount(false)}\n${startWriter('recs2.bin', 'term')}`, 180_000);
      await waitFor('the guest writer to log 5 writes', 60_000, () => acked(g.shareDir, 'term').length >= 5);
      await sh.ok('dmesg -c > /dev/null');
      srv.proc.kill('SIGTERM');
      await waitFor('the refusal in the log', 10_000, () => /SIGTERM: not stopping yet/.test(srv.output()));
      srv.proc.kill('SIGTERM');
      const forced = await Promise.race([srv.exited, sleep(30_000).then(() => 'timeout' as const)]);
      assert.deepEqual(forced, { code: 0, signal: null }, srv.output());
      assert.match(srv.output(), /SIGTERM again: stopping now, forcing/);
      await waitFor('the writer to stop', 60_000, () => existsSync(join(g.shareDir, 'writer-term.txt')));
      const out = await sh.ok(
        'rig_wait_disk_gone $(cat /tmp/disk) 30 || fail "the disk is still there"; umount -l /mnt/d; dmesg',
      );
      assertRemovalBeforeDisconnect(out);
      assertAckedInImage(img, RECS2, acked(g.shareDir, 'term'));
      t.diagnostic(`SIGTERM x2: acknowledged ${acked(g.shareDir, 'term').length} writes, all in the image`);
    });
  } finally {
    sh.exit();
    const res = await g.done;
    if (file.failed) process.stderr.write(`${res.describe()}\n`);
    res.cleanup();
  }
});

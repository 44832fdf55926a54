// usbredir interop beyond the basic scenario, in one guest boot: two QEMU usb-redir devices
// on one qemu-xhci, each connecting to its own `--usbredir HOST:PORT=BUSID` listener of one
// usbwire server exporting 1-1 read-only and 1-2 a 3 TiB sparse image.
//   ro:  the read-only disk reads whole (checksum vs the host image), is write-protected in
//        the kernel, a direct write fails, the host image stays byte-identical
//   big: the 3 TiB disk has its full size (READ CAPACITY(16)); reads and direct writes past
//        2 TiB, across 2 TiB and at the last block land at exactly those host offsets
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import {
  assertBigDiskResults,
  assertBigImage,
  assertReadOnlyResults,
  bigDiskFiles,
  bigDiskPlan,
  caseLog,
  guestBigDiskChecks,
  guestReadOnlyChecks,
  MiB,
  prepareBigImage,
  prepareImage,
  type ReadOnlyProbe,
  readOnlyProbeFiles,
  TiB,
} from './disk-checks.js';
import {
  freePort,
  type GuestResult,
  interopFile,
  readKV,
  sha256File,
  startGuest,
  startUsbwire,
  usbRedirArgs,
} from './rig.js';

const file = interopFile('usbredir-more');
const { skip, work, servers } = file;

const TAG = 'rm';
const SIZE_B = 8 * MiB;
const SIZE_C = 3 * TiB;
const SEED_B = 'usbredir-more-b';
const RO: ReadOnlyProbe = { key: 'b', dev: '/dev/$DB', seed: SEED_B, lba: 77, tag: TAG };
const BIG = bigDiskPlan(SIZE_C);

function guestScript(): string {
  return `
D1=$(rig_wait_disk 60) || fail "no disk appeared"
D2=$(rig_wait_disk 60 $D1) || fail "only one disk appeared ($D1)"
for _d in $D1 $D2; do
  log "$_d: $(rig_disk_bytes $_d) bytes"
  if [ "$(rig_disk_bytes $_d)" = ${SIZE_B} ]; then DB=$_d; else DC=$_d; fi
done
[ -n "$DB" ] || fail "no disk of ${SIZE_B} bytes (the read-only one) among $D1 $D2"
[ -n "$DC" ] || fail "both disks have ${SIZE_B} bytes"
echo $DB > /tmp/disk-b
echo $DC > /tmp/disk-c

case_ro() {
  DB=$(cat /tmp/disk-b)
  rig_result b_bytes $(rig_disk_bytes $DB)
  rig_result b_sha $(rig_sha256 /dev/$DB)
  ${guestReadOnlyChecks(RO)}
}

case_big() {
  DC=$(cat /tmp/disk-c)
  ${guestBigDiskChecks(BIG, TAG, 'c', '/dev/$DC')}
}

rig_run_case ro
rig_run_case big
sync
log "guest done"
`;
}

test('usbredir (xhci, two usb-redir devices): read-only disk and 3 TiB sparse disk (one guest)', {
  skip,
  timeout: 420_000,
}, async (t) => {
  const imgB = join(work, 'b.img');
  const imgC = join(work, 'big.img');
  const shaB = prepareImage({ img: imgB, seed: SEED_B, size: SIZE_B });
  prepareBigImage(imgC, BIG, TAG);
  const p1 = await freePort();
  const p2 = await freePort();
  const srv = startUsbwire(
    [
      '--usbredir',
      `127.0.0.1:${p1}=1-1`,
      '--usbredir',
      `127.0.0.1:${p2}=1-2`,
      '--disk',
      `${imgB},readonly`,
      '--disk',
      `${imgC},speed=super`,
    ],
    { readyCount: 2 },
  );
  servers.push(srv);
  let res: GuestResult | undefined;
  try {
    await srv.ready;
    const g = startGuest({
      script: guestScript(),
      files: { ...readOnlyProbeFiles(RO), ...bigDiskFiles(BIG, TAG) },
      modules: ['xhci_pci', 'usb_storage', 'sd_mod'],
      qemuArgs: usbRedirArgs([p1, p2]),
      timeoutMs: 300_000,
    });
    res = await g.done;
    const r = res;
    const kv = readKV(r.shareDir);
    const ctx = (name: string) => `\n--- guest case ${name} ---\n${caseLog(r.log, name)}`;
    const caseOk = (name: string) => assert.equal(kv[`case_${name}`], '0', `guest case ${name} failed${ctx(name)}`);
    const sub = (name: string, fn: () => Promise<void>) =>
      t.test(name, async () => {
        try {
          await fn();
        } catch (e) {
          file.failed = true;
          throw e;
        }
      });

    await sub('read-only disk: whole-disk checksum, write protect, direct write refused, image unchanged', async () => {
      caseOk('ro');
      assert.equal(Number(kv.b_bytes), SIZE_B, 'size of the read-only disk');
      assert.equal(kv.b_sha, shaB, 'sha256 of the read-only disk read by the guest vs the image');
      assertReadOnlyResults(kv, 'b', ctx('ro'));
      assert.equal(sha256File(imgB), shaB, 'the read-only image changed on the host');
      t.diagnostic(`write to read-only: ${kv.b_write_err}`);
    });

    await sub('3 TiB sparse disk: size, reads and writes past 2 TiB and at the end', async () => {
      caseOk('big');
      assertBigDiskResults(kv, 'c', SIZE_C, '5000');
      await assertBigImage(imgC, BIG, TAG);
      t.diagnostic(`guest kernel used READ CAPACITY(16): ${kv.c_rc16_dmesg}`);
    });

    assert.equal(r.rc, 0, r.describe());
    assert.equal(srv.proc.exitCode, null, 'usbwire still running');
    t.diagnostic(`guest run ${(r.durationMs / 1000).toFixed(1)} s`);
  } catch (e) {
    file.failed = true;
    throw e;
  } finally {
    const bad =
      file.failed ||
      !res ||
      res.rc !== 0 ||
      Object.entries(readKV(res.shareDir)).some(([k, v]) => k.startsWith('case_') && v !== '0');
    if (bad) {
      file.failed = true;
      if (res) process.stderr.write(`${res.describe()}\n`);
      process.stderr.write(`--- usbwire output ---\n${srv.output()}\n`);
    } else res?.cleanup();
  }
});

// USB/IP interop beyond the basic scenario, in one guest boot (vhci-hcd + usbip tool against
// `usbwire serve --usbip` with three disks: 1-1 writable, 1-2 read-only, 1-3 a 3 TiB sparse
// image). Each case runs in its own subshell in the guest (rig_run_case), so one failing
// case does not hide the others; the host checks each case as a subtest.
//   two:  both small disks attached, listed, read whole at the same time (checksums vs the
//         host images); the read-only one is write-protected in the kernel, a direct write
//         fails and the host image stays byte-identical; a direct write to the writable one
//         lands in the host image
//   busy: a second attach of 1-1 while attached is refused (server: busy, held by the first
//         importer); usbip list works while devices are attached; detach, attach again, the
//         disk works again (data written before reads back, a new write lands)
//   big:  the 3 TiB disk has its full size (READ CAPACITY(16)); reads and direct writes
//         past 2 TiB, across 2 TiB and at the last block land at exactly those host offsets
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import {
  assertBigDiskResults,
  assertBigImage,
  assertPatternsInImage,
  assertReadOnlyResults,
  assertUnchangedOutside,
  bigDiskFiles,
  bigDiskPlan,
  caseLog,
  guestBigDiskChecks,
  guestConcurrentSha,
  guestPatternWrites,
  guestReadOnlyChecks,
  MiB,
  type PatternWrite,
  patternFiles,
  patternFor,
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
  patternBytes,
  readKV,
  sha256,
  sha256File,
  startGuest,
  startUsbwire,
} from './rig.js';

const file = interopFile('usbip-more');
const { skip, work, servers } = file;

const TAG = 'um';
const SIZE_A = 16 * MiB;
const SIZE_B = 8 * MiB;
const SIZE_C = 3 * TiB;
const SEED_A = 'usbip-more-a';
const SEED_B = 'usbip-more-b';

// Writes to A: a1 before the detach, a2 after the re-attach.
const A1: PatternWrite[] = [{ name: 'a1', offset: 1 * MiB + 512, length: 64 * 1024 }];
const A2: PatternWrite[] = [{ name: 'a2', offset: 7 * MiB + 3 * 512, length: 20 * 1024 }];
/** a region of A nobody writes: read after the re-attach, compared with the original */
const A_PROBE = { offset: 12 * MiB + 512, length: 4096 };
const RO: ReadOnlyProbe = { key: 'b', dev: '/dev/$DB', seed: SEED_B, lba: 100, tag: TAG };
const BIG = bigDiskPlan(SIZE_C);

function guestScript(): string {
  const a1Sum = sha256(patternFor(A1[0]!, TAG));
  const probeSum = sha256(patternBytes(SEED_A, A_PROBE.offset, A_PROBE.length));
  return `
U="usbip --tcp-port 3240"
H=10.0.2.100

# usbip list -r into FILE; every busid given must be listed
list_has() {
  _f=$1
  shift
  $U list -r $H > $_f 2>&1 || { cat $_f; fail "usbip list -r"; }
  cat $_f
  for _b in "$@"; do grep -q " $_b:" $_f || fail "busid $_b not in usbip list -r"; done
}

case_two() {
  list_has /tmp/list1.txt 1-1 1-2 1-3
  EX=$(rig_disks)
  $U attach -r $H -b 1-1 || fail "usbip attach 1-1"
  DA=$(rig_wait_disk 60 $EX) || fail "the disk of 1-1 did not appear"
  echo $DA > /tmp/disk-a
  $U attach -r $H -b 1-2 || fail "usbip attach 1-2"
  DB=$(rig_wait_disk 60 $EX $DA) || fail "the disk of 1-2 did not appear"
  echo $DB > /tmp/disk-b
  log "1-1 is $DA, 1-2 is $DB"
  rig_result a_bytes $(rig_disk_bytes $DA)
  rig_result b_bytes $(rig_disk_bytes $DB)
  [ "$(rig_disk_bytes $DA)" = ${SIZE_A} ] || fail "$DA has $(rig_disk_bytes $DA) bytes, want ${SIZE_A}"
  [ "$(rig_disk_bytes $DB)" = ${SIZE_B} ] || fail "$DB has $(rig_disk_bytes $DB) bytes, want ${SIZE_B}"
  ${guestConcurrentSha([
    { key: 'a', dev: '/dev/$DA' },
    { key: 'b', dev: '/dev/$DB' },
  ])}
  ${guestReadOnlyChecks(RO)}
  ${guestPatternWrites(A1, TAG, '/dev/$DA')}
}

case_busy() {
  DA=$(cat /tmp/disk-a 2>/dev/null)
  [ -n "$DA" ] && [ -e /sys/block/$DA ] || fail "1-1 is not attached (case two failed)"
  if $U attach -r $H -b 1-1 > /tmp/busy.txt 2>&1; then _rc=0; else _rc=$?; fi
  cat /tmp/busy.txt
  rig_result busy_rc $_rc
  rig_result busy_msg "$(tr '\\n' ' ' < /tmp/busy.txt)"
  [ $_rc != 0 ] || fail "a second attach of 1-1 succeeded while it was attached"
  _n=$(usbip port 2>/dev/null | grep -c '/1-1$')
  rig_result busy_ports $_n
  [ "$_n" = 1 ] || fail "usbip port lists 1-1 $_n times after the refused attach"
  [ "$(rig_dd_sha /dev/$DA ${A1[0]!.offset} ${A1[0]!.length})" = ${a1Sum} ] || fail "1-1 does not read a1 back after the refused attach"
  list_has /tmp/list2.txt 1-1 1-2 1-3
  rig_result list_attached yes
  P=$(rig_usbip_port_of 1-1)
  [ -n "$P" ] || fail "usbip port does not show 1-1"
  usbip detach -p $P || fail "usbip detach -p $P"
  rig_wait_disk_gone $DA 30 || fail "disk $DA still there 30 s after detach"
  usbip port 2>&1 | grep -q '/1-1$' && fail "usbip port still lists 1-1 after detach"
  EX=$(rig_disks)
  if $U attach -r $H -b 1-1 > /tmp/reattach.txt 2>&1; then _rc=0; else _rc=$?; fi
  cat /tmp/reattach.txt
  rig_result reattach_rc $_rc
  rig_result reattach_msg "$(tr '\\n' ' ' < /tmp/reattach.txt)"
  if [ $_rc != 0 ]; then
    sleep 2
    $U attach -r $H -b 1-1 || fail "attach of 1-1 after detach failed, also 2 s later"
    rig_result reattach_later ok
  fi
  DA=$(rig_wait_disk 60 $EX) || fail "the disk of 1-1 did not come back after re-attach"
  echo $DA > /tmp/disk-a
  log "1-1 is $DA again"
  [ "$(rig_disk_bytes $DA)" = ${SIZE_A} ] || fail "$DA has $(rig_disk_bytes $DA) bytes after re-attach"
  [ "$(rig_dd_sha /dev/$DA ${A1[0]!.offset} ${A1[0]!.length})" = ${a1Sum} ] || fail "a1 (written before the detach) reads differently after re-attach"
  [ "$(rig_dd_sha /dev/$DA ${A_PROBE.offset} ${A_PROBE.length})" = ${probeSum} ] || fail "original data at ${A_PROBE.offset} reads differently after re-attach"
  ${guestPatternWrites(A2, TAG, '/dev/$DA')}
}

case_big() {
  EX=$(rig_disks)
  $U attach -r $H -b 1-3 || fail "usbip attach 1-3"
  DC=$(rig_wait_disk 60 $EX) || fail "the disk of 1-3 did not appear"
  log "1-3 is $DC"
  ${guestBigDiskChecks(BIG, TAG, 'c', '/dev/$DC')}
}

rig_run_case two
rig_run_case busy
rig_run_case big
sync
log "guest done"
`;
}

test('usbip: two disks (one read-only), busy + re-attach, 3 TiB sparse disk (one guest)', {
  skip,
  timeout: 420_000,
}, async (t) => {
  const imgA = join(work, 'a.img');
  const imgB = join(work, 'b.img');
  const imgC = join(work, 'big.img');
  const shaA = prepareImage({ img: imgA, seed: SEED_A, size: SIZE_A });
  const shaB = prepareImage({ img: imgB, seed: SEED_B, size: SIZE_B });
  prepareBigImage(imgC, BIG, TAG);
  const port = await freePort();
  const srv = startUsbwire([
    '--usbip',
    `127.0.0.1:${port}`,
    '--disk',
    imgA,
    '--disk',
    `${imgB},readonly`,
    '--disk',
    `${imgC},speed=super`,
  ]);
  servers.push(srv);
  let res: GuestResult | undefined;
  try {
    await srv.ready;
    const g = startGuest({
      script: guestScript(),
      files: { ...patternFiles([...A1, ...A2], TAG), ...readOnlyProbeFiles(RO), ...bigDiskFiles(BIG, TAG) },
      modules: ['vhci_hcd', 'usb_storage', 'sd_mod'],
      guestfwd: [{ guestPort: 3240, hostPort: port }],
      timeoutMs: 300_000,
    });
    res = await g.done;
    const r = res;
    const kv = readKV(r.shareDir);
    const log = srv.output();
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

    await sub('two disks at once: list, concurrent whole-disk reads, read-only, writable', async () => {
      caseOk('two');
      assert.equal(Number(kv.a_bytes), SIZE_A, 'size of 1-1');
      assert.equal(Number(kv.b_bytes), SIZE_B, 'size of 1-2');
      assert.equal(kv.a_sha, shaA, 'sha256 of 1-1 read by the guest (concurrently with 1-2) vs the image');
      assert.equal(kv.b_sha, shaB, 'sha256 of 1-2 read by the guest (concurrently with 1-1) vs the image');
      assertReadOnlyResults(kv, 'b', ctx('two'));
      assert.equal(sha256File(imgB), shaB, 'the read-only image changed on the host');
      await assertPatternsInImage(imgA, A1, TAG);
      t.diagnostic(`concurrent read of 16 + 8 MiB: ${kv.conc_read_s} s; write to read-only: ${kv.b_write_err}`);
    });

    await sub('busy while attached, list while attached, detach + re-attach', async () => {
      caseOk('busy');
      assert.notEqual(kv.busy_rc, '0', 'second attach of 1-1 must fail');
      assert.match(kv.busy_msg ?? '', /busy/i, 'usbip attach should report the device busy');
      const imported = [...log.matchAll(/(\S+): imported 1-1 /g)].map((m) => m[1]);
      assert.equal(imported.length, 2, `server log: want two imports of 1-1 (before and after detach)\n${log}`);
      assert.match(log, /import of 1-1 \(.*\) refused: busy, held by usbip /, 'server log: import of 1-1 refused');
      assert.ok(log.includes(`held by usbip ${imported[0]}`), `server log names the first importer ${imported[0]}`);
      assert.match(log, /released 1-1 /, 'server log: 1-1 released after detach');
      assert.equal(
        kv.reattach_rc,
        '0',
        `attach right after detach was refused (${kv.reattach_msg}); ${kv.reattach_later ? 'worked 2 s later' : 'also failed later'}`,
      );
      await assertPatternsInImage(imgA, [...A1, ...A2], TAG);
      assertUnchangedOutside(imgA, SEED_A, SIZE_A, [...A1, ...A2]);
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

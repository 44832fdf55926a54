// The emulated UAS disk (`--disk IMG,uas`) driven by the guest kernel's own drivers, four ways in
// ONE guest boot: one usbwire server exports four disks,
//   1-1 super speed → QEMU usb-redir on qemu-xhci: `uas` binds, bulk streams allocated
//   1-2 high speed  → QEMU usb-redir on qemu-xhci: `uas` binds (READ/WRITE READY flow)
//   1-3 high speed  → usbip attach (vhci-hcd):     `uas` binds
//   1-4 super speed → usbip attach (vhci-hcd):     vhci cannot do streams, the kernel refuses uas
//                                                  and `usb-storage` binds alternate setting 0 (BOT)
// Each disk is found by its serial number; then whole-disk sha256 = image, direct pattern writes
// read back, and `rio` (guest/tools/rio.c): 8 processes at once doing random direct reads and
// writes of their own 1 MiB regions, every byte checked in the guest. The host then checks each
// image: the patterns in place, every rio region as the replay of rio's seed says
// (uas-rio.ts), and nothing else changed. Then, in the same boot:
//   - the super-speed usb-redir disk's driver is unbound and bound again (streams freed and
//     allocated again) and rio runs on it once more;
//   - rio on all four disks at once (32 processes), every region checked on the host again;
//   - an ext4 round trip on each disk (mkfs, a 3 MiB file, remount, e2fsck; debugfs on the host).
//
// USBWIRE_UAS_RIG_BOT=1 runs the same boot against plain BOT disks (control: usb-storage everywhere).
// USBWIRE_RIG_KEEP=1 keeps the work folder: the images, usbwire.log, qemu-stderr.log.
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import {
  assertFsFileInImage,
  assertPatternsInImage,
  assertUnchangedOutside,
  caseLog,
  fsFile,
  guestFsRoundTrip,
  MiB,
  type PatternWrite,
  patternFiles,
  standardWrites,
} from './disk-checks.js';
import {
  freePort,
  type GuestHandle,
  type GuestResult,
  interopFile,
  makePatternImage,
  patternBytes,
  readAt,
  readKV,
  sha256File,
  startGuest,
  startUsbwire,
  type UsbwireServer,
  usbRedirArgs,
} from './rig.js';
import { guestDiskCase, guestRebindCase, guestTogetherCase, UAS_GUEST_HELPERS } from './uas-guest.js';
import { assertRioImage, parseRioOutput, type RioPlan, rioFinal, rioRange } from './uas-rio.js';

const file = interopFile('uas');
const { skip, work, servers } = file;

const BOT_CONTROL = process.env.USBWIRE_UAS_RIG_BOT === '1';
const SIZE = 16 * MiB;
/** rio: 8 processes, 1 MiB each, at 6..14 MiB (clear of the standard pattern writes). */
const RIO = { base: 6 * MiB, region: 1 * MiB, nproc: 8, ops: 300 };
/** USBWIRE_UAS_RIG_TRACE=1: QEMU's xHCI trace events (doorbell kicks, transfers, endpoint states) in qemu-stderr.log. */
const XHCI_TRACE =
  process.env.USBWIRE_UAS_RIG_TRACE === '1'
    ? ['usb_xhci_ep_kick', 'usb_xhci_xfer_start', 'usb_xhci_ep_state', 'usb_xhci_enforced_limit'].flatMap((e) => [
        '-trace',
        e,
      ])
    : [];
/** The qemu-xhci of the usb-redir disks. */
const REDIR_HC = '0x0a';

interface UasCase {
  key: string;
  via: 'usbredir' | 'usbip';
  speed: 'super' | 'high';
  /** the driver the kernel must bind to the UAS disk */
  driver: 'uas' | 'usb-storage';
}

const CASES: UasCase[] = [
  { key: 'redir_ss', via: 'usbredir', speed: 'super', driver: 'uas' },
  { key: 'redir_hs', via: 'usbredir', speed: 'high', driver: 'uas' },
  { key: 'usbip_hs', via: 'usbip', speed: 'high', driver: 'uas' },
  { key: 'usbip_ss', via: 'usbip', speed: 'super', driver: 'usb-storage' },
];

interface Disk {
  c: UasCase;
  busid: string;
  serial: string;
  img: string;
  seed: string;
  sha: string;
  writes: PatternWrite[];
  rio: RioPlan;
  /** the rio regions before the run (for the replay) */
  rioOrig: Buffer;
}

function expectedDriver(c: UasCase): string {
  return BOT_CONTROL ? 'usb-storage' : c.driver;
}

function makeDisks(): Disk[] {
  return CASES.map((c, i) => {
    const img = join(work, `${c.key}.img`);
    const seed = `uas-rig-${c.key}`;
    makePatternImage(img, SIZE, seed);
    const rio: RioPlan = { ...RIO, seed: 0x5a5a0000 + i };
    return {
      c,
      busid: `1-${i + 1}`,
      serial: `USBWIRE${String(i + 1).padStart(5, '0')}`,
      img,
      seed,
      sha: sha256File(img),
      writes: standardWrites(SIZE),
      rio,
      rioOrig: patternBytes(seed, rio.base, rio.nproc * rio.region),
    };
  });
}

interface Phases {
  rebind: { key: string; rio: RioPlan };
  together: { key: string; rio: RioPlan }[];
}

function guestScript(disks: Disk[], p: Phases): string {
  const usbip = disks.filter((d) => d.c.via === 'usbip');
  return `${UAS_GUEST_HELPERS}
${disks.map((d) => guestDiskCase({ key: d.c.key, serial: d.serial, writes: d.writes, rio: d.rio })).join('')}
${guestRebindCase(p.rebind.key, p.rebind.rio)}
${guestTogetherCase(p.together)}
${disks.map((d) => `case_fs_${d.c.key}() {\n  D=$(uas_disk_under "$(cat /tmp/usb-${d.c.key})" 5) || fail "no disk"\n${guestFsRoundTrip(d.c.key)}\n}`).join('\n')}
${usbip.map((d) => `usbip --tcp-port 3240 attach -r 10.0.2.100 -b ${d.busid} || fail "usbip attach ${d.busid}"`).join('\n')}
${disks.map((d) => `rig_run_case ${d.c.key}`).join('\n')}
sync
dmesg > "$RIG_SHARE/dmesg-written.log"
rig_stage written
rig_wait_host verified 120
rig_run_case rebind_${p.rebind.key}
rig_stage rebound
rig_wait_host rebound-checked 120
rig_run_case together
rig_stage together
rig_wait_host together-checked 120
${disks.map((d) => `rig_run_case fs_${d.c.key}`).join('\n')}
log "guest done"
`;
}

/** The checks of one disk after the guest wrote it; failures are collected per disk. */
async function checkDisk(d: Disk, kv: Record<string, string>, share: string, dmesg: string, srvOut: string) {
  const k = d.c.key;
  const got = (name: string) => kv[`${k}_${name}`];
  assert.equal(kv[`case_${k}`], '0', `guest case ${k} failed:\n${caseLog(guestLog(share), k)}`);
  assert.equal(got('driver'), expectedDriver(d.c), `driver bound to the ${k} disk's interface`);
  assert.equal(got('alt'), expectedDriver(d.c) === 'uas' ? '1' : '0', `alternate setting of ${k}`);
  assert.equal(got('speed'), d.c.speed === 'super' ? '5000' : '480', `USB speed of ${k} in the guest (Mb/s)`);
  assert.equal(got('hc'), d.c.via === 'usbip' ? 'vhci' : 'xhci', `host controller of ${k}`);
  const qd = Number(got('qd'));
  if (expectedDriver(d.c) === 'uas' && d.c.speed === 'high') {
    // uas_configure_endpoints: qdepth 32 without streams; the sdev gets qdepth - 2
    assert.equal(qd, 30, `queue_depth of ${k} under uas at high speed`);
  } else if (expectedDriver(d.c) === 'uas') assert.ok(qd > 1, `queue_depth of ${k} under uas is ${got('qd')}`);
  else assert.equal(qd, 1, `queue_depth of ${k} under usb-storage`);
  assert.equal(Number(got('bytes')), SIZE, `size of ${k} in the guest`);
  assert.equal(got('sha'), d.sha, `whole-disk sha256 of ${k} read by the guest vs the image`);
  await assertPatternsInImage(d.img, d.writes, k);
  const rioOut = readFileSync(join(share, `rio-${k}.txt`), 'utf8');
  const { children } = parseRioOutput(rioOut, d.rio);
  await assertRioImage(d.img, d.rio, d.rioOrig, children);
  assertUnchangedOutside(d.img, d.seed, SIZE, [...d.writes, rioRange(d.rio)]);
  const busid = got('busid');
  const noStreams = new RegExp(`usb ${busid}: USB controller \\S+ does not support streams`);
  if (d.c.via === 'usbip' && d.c.speed === 'super' && !BOT_CONTROL) {
    assert.match(dmesg, noStreams, `the kernel refused uas for ${k} (vhci: no streams)`);
  }
  if (d.c.via === 'usbredir') assert.doesNotMatch(dmesg, noStreams, `${k}: xhci said it has no streams`);
  if (d.c.via === 'usbredir' && d.c.speed === 'super' && !BOT_CONTROL) {
    assert.match(srvOut, /\d+ bulk streams on ep [0-9a-f,]+/, `${k}: usbwire granted bulk streams`);
  }
}

test('UAS disk in one guest: usb-redir SuperSpeed + high speed, USB/IP high speed (uas) and SuperSpeed (BOT fallback); data, 8-process random direct I/O, rebind, all disks at once, ext4', {
  skip,
  timeout: 420_000,
}, async (t) => {
  const disks = makeDisks();
  const redirSs = disks[0]!;
  const phases: Phases = {
    rebind: { key: redirSs.c.key, rio: { ...redirSs.rio, seed: 0x5a5a00ff, ops: 150 } },
    together: disks.map((d, i) => ({ key: d.c.key, rio: { ...d.rio, seed: 0x5a5a0100 + i, ops: 150 } })),
  };
  const port = await freePort();
  const redirPorts = [await freePort(), await freePort()];
  const diskOpt = (d: Disk) => `${d.img}${BOT_CONTROL ? '' : ',uas'},speed=${d.c.speed}`;
  const args = ['--usbip', `127.0.0.1:${port}`];
  const redirDisks = disks.filter((d) => d.c.via === 'usbredir');
  redirDisks.forEach((d, i) => {
    args.push('--usbredir', `127.0.0.1:${redirPorts[i]}=${d.busid}`);
  });
  for (const d of disks) args.push('--disk', diskOpt(d));
  const srv: UsbwireServer = startUsbwire(args, { readyCount: 3 });
  servers.push(srv);
  await srv.ready;

  const files: Record<string, Buffer> = {};
  for (const d of disks)
    Object.assign(files, patternFiles(d.writes, d.c.key), { [`fsfile-${d.c.key}.bin`]: fsFile(d.c.key) });
  const started = Date.now();
  const g = startGuest({
    script: guestScript(disks, phases),
    files,
    modules: ['vhci_hcd', 'xhci_pci', 'usb_storage', 'uas', 'sd_mod', 'ext4'],
    guestfwd: [{ guestPort: 3240, hostPort: port }],
    qemuArgs: [...usbRedirArgs(redirPorts, { pciAddr: REDIR_HC }), ...XHCI_TRACE],
    timeoutMs: 360_000,
  });
  const stage = (name: string, ms: number) => waitStageOrFail(g, srv, name, ms);
  const check = async (name: string, fn: () => Promise<void> | void) => {
    await t.test(name, async () => {
      try {
        await fn();
      } catch (e) {
        file.failed = true;
        throw e;
      }
    });
  };

  await stage('written', 300_000);
  const writtenAt = Date.now();
  const kv = readKV(g.shareDir);
  const dmesg = readFileSync(g.path('dmesg-written.log'), 'utf8');
  for (const d of disks) {
    await check(`${d.c.key}: ${d.c.via} at ${d.c.speed} speed, ${expectedDriver(d.c)} bound, data + rio`, () =>
      checkDisk(d, kv, g.shareDir, dmesg, srv.output()),
    );
  }
  // The image as the rebind case reads it whole, before its second rio run.
  const shaWritten = sha256File(redirSs.img);
  g.signal('verified');

  await stage('rebound', 120_000);
  const k = redirSs.c.key;
  await check(`${k}: driver unbound and bound again (streams freed and allocated again), rio again`, async () => {
    const kv2 = readKV(g.shareDir);
    assert.equal(kv2[`case_rebind_${k}`], '0', `rebind case failed:\n${caseLog(guestLog(g.shareDir), `rebind_${k}`)}`);
    assert.equal(kv2[`${k}_rebind_driver`], expectedDriver(redirSs.c));
    assert.equal(kv2[`${k}_rebind_sha`], shaWritten, 'whole disk after the rebind vs the image');
    const out = readFileSync(g.path(`rio2-${k}.txt`), 'utf8');
    const { children } = parseRioOutput(out, phases.rebind.rio);
    await assertRioImage(redirSs.img, phases.rebind.rio, rioFinal(redirSs.rio, redirSs.rioOrig), children);
    assertUnchangedOutside(redirSs.img, redirSs.seed, SIZE, [...redirSs.writes, rioRange(redirSs.rio)]);
    if (!BOT_CONTROL) {
      const allocs = srv.output().match(/\d+ bulk streams on ep [0-9a-f,]+\n/g) ?? [];
      const frees = srv.output().match(/bulk streams on ep [0-9a-f,]+ freed/g) ?? [];
      assert.equal(allocs.length, 2, `streams allocated at probe and again after the rebind:\n${allocs.join('')}`);
      assert.ok(frees.length >= 1, 'streams freed when uas was unbound');
    }
  });
  // Every region as it is now (checked above), the base of the next run's replay.
  const before = await Promise.all(disks.map((d) => readAt(d.img, d.rio.base, d.rio.nproc * d.rio.region)));
  g.signal('rebound-checked');

  await stage('together', 180_000);
  await check('rio on the four disks at once (32 processes), every region checked in the images', async () => {
    const kv3 = readKV(g.shareDir);
    assert.equal(kv3.case_together, '0', `together case failed:\n${caseLog(guestLog(g.shareDir), 'together')}`);
    for (const [i, d] of disks.entries()) {
      const plan = phases.together[i]!.rio;
      const { children } = parseRioOutput(readFileSync(g.path(`rio3-${d.c.key}.txt`), 'utf8'), plan);
      await assertRioImage(d.img, plan, before[i]!, children);
      assertUnchangedOutside(d.img, d.seed, SIZE, [...d.writes, rioRange(d.rio)]);
    }
  });
  g.signal('together-checked');

  const res = await g.done;
  const kvEnd = readKV(res.shareDir);
  for (const d of disks) {
    await check(`${d.c.key}: ext4 round trip in the guest, the file in the image (debugfs)`, () => {
      assert.equal(kvEnd[`case_fs_${d.c.key}`], '0', `ext4 case failed:\n${caseLog(res.log, `fs_${d.c.key}`)}`);
      assertFsFileInImage(d.img, d.c.key);
    });
  }
  await check('guest kernel log: no USB resets, SCSI aborts or I/O errors during the whole run', () => {
    // Unbinding uas fails the SYNCHRONIZE CACHE that sd sends on removal with DID_ERROR
    // (uas_disconnect sets devinfo->resetting first): the kernel's doing, whatever the device.
    const unbound = kvEnd[`${k}_rebind_disk`] ?? '';
    const allowed = new RegExp(`\\[${unbound}\\] Synchronize Cache\\(10\\) failed: Result: hostbyte=DID_ERROR`);
    const bad = trouble(res.dmesg).filter((l) => !allowed.test(l));
    assert.ok(res.dmesg !== '', 'no kernel log from the guest');
    assert.deepEqual(bad, [], `trouble in the guest's kernel log:\n${bad.join('\n')}`);
  });
  writeFileSync(join(work, 'usbwire.log'), srv.output());
  writeFileSync(join(work, 'qemu-stderr.log'), res.qemuStderr);
  t.diagnostic(`usbwire: ${(srv.output().match(/^.*bulk streams.*$/gm) ?? []).join(' | ')}`);
  const times = readKV(res.shareDir, 'times.txt');
  t.diagnostic(
    `guest ${(res.durationMs / 1000).toFixed(1)} s (to "written" ${((writtenAt - started) / 1000).toFixed(1)} s); ` +
      CASES.map(
        (c) =>
          `${c.key}: ${kv[`${c.key}_driver`]} qd=${kv[`${c.key}_qd`]} sha ${times[`${c.key}_sha`]} s rio ${times[`${c.key}_rio`]} s`,
      ).join('; ') +
      `; all four at once ${kvEnd.together_s} s`,
  );
  if (file.failed || res.rc !== 0) {
    file.failed = true;
    process.stderr.write(`${res.describe()}\n--- usbwire output (tail) ---\n${tail(srv.output(), 80)}\n`);
  }
  assert.equal(res.rc, 0, res.describe());
  if (!file.failed) res.cleanup();
  else process.stderr.write(`uas interop: guest share kept in ${res.shareDir}\n`);
});

/** Wait for a guest stage; on a timeout or an early end, kill the guest and fail with its story. */
async function waitStageOrFail(g: GuestHandle, srv: UsbwireServer, name: string, ms: number): Promise<void> {
  try {
    await g.waitStage(name, ms);
  } catch (e) {
    file.failed = true;
    g.kill();
    const res: GuestResult = await g.done;
    throw new Error(
      `${(e as Error).message}\n${res.describe()}\n--- usbwire output (tail) ---\n${tail(srv.output(), 60)}`,
    );
  }
}

/** Kernel log lines of error handling: a USB reset of a device, uas/SCSI aborts, I/O errors. */
function trouble(dmesg: string): string[] {
  const re =
    /reset (?:high-speed|SuperSpeed|full-speed) USB device|uas_eh_|I\/O error|timing out command|Result: hostbyte=|FAILED Result|rejecting I\/O|offlined/;
  return dmesg.split('\n').filter((l) => re.test(l));
}

function guestLog(share: string): string {
  return readFileSync(join(share, 'guest.log'), 'utf8');
}

function tail(s: string, lines: number): string {
  return s.split('\n').slice(-lines).join('\n');
}

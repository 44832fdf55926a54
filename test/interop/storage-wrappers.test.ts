// The storage wrappers through the command line, driven by the guest kernel (one boot):
//   far server  usbwire serve --usbip F --usbredir R3=1-3 --disk a --disk b --disk c,as-uas=super
//   link        a delay proxy (RTT 10 ms) in front of F
//   near server usbwire serve --usbredir R1=1-1 --usbredir R2=1-2
//                 --remote usbip://PROXY/1-1,read-ahead      (a BOT disk across the slow link)
//                 --remote usbip://F/1-2,as-uas=super         (a remote BOT disk shown as UAS)
// QEMU usb-redir on qemu-xhci takes R1, R2 (near) and R3 (far: an emulated BOT disk shown as UAS).
// Each disk: the driver the guest binds (usb-storage / uas with streams), whole-disk sha256 = image,
// direct pattern writes found in the image, `rio` (random direct reads and writes of their own
// regions by several processes at once, replayed on the host), nothing else changed. The read-ahead
// disk is also read sequentially once more after the writes (cached blocks must be the new data)
// and its hit rate, logged when the near server stops, must show the prefetches were used.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { DelayProxy } from '../../src/transport/delay-proxy.js';
import {
  assertPatternsInImage,
  assertUnchangedOutside,
  caseLog,
  MiB,
  type PatternWrite,
  patternFiles,
  standardWrites,
} from './disk-checks.js';
import {
  freePort,
  interopFile,
  makePatternImage,
  patternBytes,
  readKV,
  sha256File,
  startGuest,
  startUsbwire,
  usbRedirArgs,
} from './rig.js';
import { guestDiskCase, UAS_GUEST_HELPERS } from './uas-guest.js';
import { assertRioImage, parseRioOutput, type RioPlan, rioRange } from './uas-rio.js';

const file = interopFile('storage-wrappers');
const { skip, work, servers } = file;
const SIZE = 16 * MiB;
const RTT_MS = 10;

interface Case {
  key: string;
  serial: string;
  driver: 'usb-storage' | 'uas';
  rio: RioPlan;
}

// Far-server disk index i has serial USBWIRE0000(i+1); the near server only re-exports them.
const CASES: Case[] = [
  {
    key: 'read_ahead',
    serial: 'USBWIRE00001',
    driver: 'usb-storage',
    rio: { base: 6 * MiB, region: MiB, nproc: 4, ops: 40, seed: 0x6a6a0001 },
  },
  {
    key: 'as_uas_remote',
    serial: 'USBWIRE00002',
    driver: 'uas',
    rio: { base: 6 * MiB, region: MiB, nproc: 8, ops: 150, seed: 0x6a6a0002 },
  },
  {
    key: 'as_uas_local',
    serial: 'USBWIRE00003',
    driver: 'uas',
    rio: { base: 6 * MiB, region: MiB, nproc: 8, ops: 150, seed: 0x6a6a0003 },
  },
];

test('storage wrappers from the command line: read-ahead across a 10 ms link, BOT disks (remote and local) shown as UAS', {
  skip,
  timeout: 420_000,
}, async (t) => {
  const disks = CASES.map((c, i) => {
    const img = join(work, `${c.key}.img`);
    const seed = `wrappers-${c.key}`;
    makePatternImage(img, SIZE, seed);
    const writes: PatternWrite[] = standardWrites(SIZE);
    return {
      c,
      i,
      img,
      seed,
      writes,
      sha: sha256File(img),
      rioOrig: patternBytes(seed, c.rio.base, c.rio.nproc * c.rio.region),
    };
  });
  const [usbipPort, r1, r2, r3] = [await freePort(), await freePort(), await freePort(), await freePort()];
  const far = startUsbwire(
    [
      '--usbip',
      `127.0.0.1:${usbipPort}`,
      '--usbredir',
      `127.0.0.1:${r3}=1-3`,
      '--disk',
      disks[0]!.img,
      '--disk',
      disks[1]!.img,
      '--disk',
      `${disks[2]!.img},as-uas=super`,
    ],
    { readyCount: 2 },
  );
  servers.push(far);
  await far.ready;
  const half = { delayMs: RTT_MS / 2 };
  const proxy = new DelayProxy({
    listen: { host: '127.0.0.1', port: 0 },
    to: { host: '127.0.0.1', port: usbipPort! },
    up: half,
    down: half,
  });
  const proxyAt = await proxy.listen();
  const near = startUsbwire(
    [
      '--usbredir',
      `127.0.0.1:${r1}=1-1`,
      '--usbredir',
      `127.0.0.1:${r2}=1-2`,
      '--remote',
      `usbip://127.0.0.1:${proxyAt.port}/1-1,read-ahead`,
      '--remote',
      `usbip://127.0.0.1:${usbipPort}/1-2,as-uas=super`,
    ],
    { readyCount: 2 },
  );
  servers.push(near);
  try {
    await near.ready;
    const files: Record<string, Buffer> = {};
    for (const d of disks) Object.assign(files, patternFiles(d.writes, d.c.key));
    const ra = disks[0]!;
    const script = `${UAS_GUEST_HELPERS}
${disks.map((d) => guestDiskCase({ key: d.c.key, serial: d.c.serial, writes: d.writes, rio: d.c.rio })).join('')}
case_reread() {
  D=$(uas_disk_under "$(cat /tmp/usb-${ra.c.key})" 5) || fail "no disk"
  rig_time reread dd if=/dev/$D of=/dev/null bs=1M count=16 iflag=direct
  rig_result reread_sha "$(rig_sha256 /dev/$D)"
}
${disks.map((d) => `rig_run_case ${d.c.key}`).join('\n')}
rig_run_case reread
dmesg > "$RIG_SHARE/dmesg-written.log"
log "guest done"
`;
    const g = startGuest({
      script,
      files,
      modules: ['xhci_pci', 'usb_storage', 'uas', 'sd_mod'],
      qemuArgs: usbRedirArgs([r1!, r2!, r3!]),
      timeoutMs: 360_000,
    });
    const res = await g.done;
    const kv = readKV(res.shareDir);
    const dmesg = res.dmesg;
    for (const d of disks) {
      const k = d.c.key;
      await t.test(
        `${k}: ${d.c.driver} bound; whole disk, direct writes and ${d.c.rio.nproc}-process random I/O in the image`,
        async () => {
          try {
            assert.equal(kv[`case_${k}`], '0', `guest case ${k} failed:\n${caseLog(res.log, k)}\n${res.describe()}`);
            assert.equal(kv[`${k}_driver`], d.c.driver, `driver of ${k}`);
            assert.equal(kv[`${k}_alt`], d.c.driver === 'uas' ? '1' : '0');
            if (d.c.driver === 'uas') {
              assert.equal(kv[`${k}_speed`], '5000');
              assert.ok(Number(kv[`${k}_qd`]) > 1, `queue depth of ${k}: ${kv[`${k}_qd`]}`);
            }
            assert.equal(kv[`${k}_sha`], d.sha, `whole-disk sha256 of ${k} vs the image`);
            await assertPatternsInImage(d.img, d.writes, k);
            const { children } = parseRioOutput(readFileSync(join(res.shareDir, `rio-${k}.txt`), 'utf8'), d.c.rio);
            await assertRioImage(d.img, d.c.rio, d.rioOrig, children);
            assertUnchangedOutside(d.img, d.seed, SIZE, [...d.writes, rioRange(d.c.rio)]);
          } catch (e) {
            file.failed = true;
            throw e;
          }
        },
      );
    }
    await t.test(
      'read-ahead: a sequential read after the writes returns the image as it is now; prefetches were used',
      async () => {
        try {
          assert.equal(kv.case_reread, '0', caseLog(res.log, 'reread'));
          assert.equal(kv.reread_sha, sha256File(ra.img), 'the disk read again through read-ahead vs the image');
          await near.stop();
          const m = /read-ahead hit rate ([\d.]+)% \((\d+) hits, (\d+) misses/.exec(near.output());
          assert.ok(m, `no hit rate in the near server's log:\n${near.output().slice(-2000)}`);
          assert.ok(
            Number(m[2]) > 0 && Number(m[1]) >= 50,
            `read-ahead hit rate ${m[1]}% (${m[2]} hits, ${m[3]} misses)`,
          );
          assert.match(far.output(), /presented as UAS at super speed/);
          assert.match(near.output(), /\d+ bulk streams on ep/);
          assert.match(far.output(), /\d+ bulk streams on ep/);
          assert.doesNotMatch(
            dmesg,
            /uas_eh_|reset SuperSpeed USB device|I\/O error/,
            'no resets or I/O errors in the guest',
          );
          const times = readKV(res.shareDir, 'times.txt');
          t.diagnostic(
            `RTT ${RTT_MS} ms; ${m[0]}; re-read 16 MiB in ${times.reread} s; ` +
              CASES.map((c) => `${c.key}: sha ${times[`${c.key}_sha`]} s rio ${times[`${c.key}_rio`]} s`).join('; '),
          );
        } catch (e) {
          file.failed = true;
          throw e;
        }
      },
    );
    if (file.failed)
      process.stderr.write(
        `${res.describe()}\n--- near ---\n${near.output().slice(-3000)}\n--- far ---\n${far.output().slice(-3000)}\n`,
      );
    else res.cleanup();
  } finally {
    await proxy.close();
  }
});

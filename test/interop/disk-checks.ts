// Shared data checks for the interop tests: the same guest-side disk exercise runs over
// USB/IP (vhci-hcd) and usbredir (QEMU usb-redir on xHCI/EHCI), and the host checks the
// image file itself afterwards.
//
// Scenario (one guest run):
//   1. the disk appears (attach commands given by the caller) → $D
//   2. sha256 of the whole disk (before any write) == sha256 of the original image
//   3. direct writes of known patterns: LBA 0, the last LBA, 12 KiB at 116 KiB (crosses the
//      120 KiB usb-storage transfer boundary), 257.5 KiB at 5 MiB + 1.5 KiB (split into
//      several SCSI commands); each read back with iflag=direct and compared
//   4. stage "patterns": the host checks the image: patterns exactly in place and every
//      other byte equal to the original pattern; then signals "verified"
//   5. mkfs.ext4, mount, write a 3 MiB file, sync, umount, drop caches, mount, compare,
//      umount, e2fsck -fn
//   6. detach commands given by the caller
// After the run the host extracts the file from the image with debugfs and compares it.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { closeSync, ftruncateSync, openSync, rmSync, statSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import type { GuestShell } from './guest-shell.js';
import {
  type BootOptions,
  firstDiffOutside,
  type GuestHandle,
  type GuestResult,
  makePatternImage,
  patternBytes,
  readAt,
  readKV,
  sha256,
  sha256File,
  startGuest,
} from './rig.js';

export const MiB = 1 << 20;
export const KiB = 1 << 10;

export interface PatternWrite {
  name: string;
  offset: number;
  length: number;
}

export function standardWrites(size: number): PatternWrite[] {
  return [
    { name: 'lba0', offset: 0, length: 512 },
    { name: 'last', offset: size - 512, length: 512 },
    { name: 'x120k', offset: 116 * KiB, length: 12 * KiB },
    { name: 'big', offset: 5 * MiB + 1536, length: 256 * KiB + 1536 },
  ];
}

export function patternFor(w: PatternWrite, tag: string): Buffer {
  return patternBytes(`write:${tag}:${w.name}`, 0, w.length);
}

/** Guest commands: write each pattern from the share with one direct write, read it back. */
export function guestPatternWrites(writes: PatternWrite[], tag: string, dev = '/dev/$D'): string {
  const lines: string[] = [];
  for (const w of writes) {
    const sum = sha256(patternFor(w, tag));
    lines.push(
      `dd if=/mnt/host/pat-${tag}-${w.name}.bin of=${dev} bs=${w.length} count=1 seek=${w.offset} oflag=direct,seek_bytes conv=notrunc 2>/tmp/dd.err || { cat /tmp/dd.err; fail "direct write ${w.name} (${w.length} bytes at ${w.offset})"; }`,
      `got=$(dd if=${dev} bs=${w.length} count=1 skip=${w.offset} iflag=direct,skip_bytes 2>/dev/null | sha256sum | cut -d' ' -f1)`,
      `[ "$got" = ${sum} ] || fail "read-back of ${w.name} (${w.length} bytes at ${w.offset}) differs: $got"`,
      `log "pattern ${w.name} written and read back (${w.length} bytes at ${w.offset})"`,
    );
  }
  return lines.join('\n');
}

export function patternFiles(writes: PatternWrite[], tag: string): Record<string, Buffer> {
  const files: Record<string, Buffer> = {};
  for (const w of writes) files[`pat-${tag}-${w.name}.bin`] = patternFor(w, tag);
  return files;
}

/** Host side: each pattern is exactly in the image. */
export async function assertPatternsInImage(img: string, writes: PatternWrite[], tag: string): Promise<void> {
  for (const w of writes) {
    const got = await readAt(img, w.offset, w.length);
    const want = patternFor(w, tag);
    if (!got.equals(want)) {
      let i = 0;
      while (i < want.length && got[i] === want[i]) i++;
      assert.fail(
        `pattern ${w.name} (${w.length} bytes at ${w.offset}) not in the image: first difference at image offset ${w.offset + i}`,
      );
    }
  }
}

/** Host side: every byte outside `writes` still equals the original pattern image. */
export function assertUnchangedOutside(img: string, seed: string, size: number, writes: PatternWrite[]): void {
  const at = firstDiffOutside(img, seed, size, writes);
  assert.equal(at, -1, `image changed outside the written ranges, first at offset ${at} (LBA ${Math.floor(at / 512)})`);
}

export const FS_FILE_SIZE = 3 * MiB + 12345;

export function fsFile(tag: string): Buffer {
  return patternBytes(`fsfile:${tag}`, 0, FS_FILE_SIZE);
}

/** Guest commands: ext4 round trip on /dev/$D. */
export function guestFsRoundTrip(tag: string, dev = '/dev/$D'): string {
  const sum = sha256(fsFile(tag));
  return `
log "mkfs.ext4"
mkfs.ext4 -q -F -L usbwire ${dev} || fail "mkfs.ext4"
mkdir -p /mnt/d
mount -t ext4 ${dev} /mnt/d || fail "mount after mkfs"
cp /mnt/host/fsfile-${tag}.bin /mnt/d/file.bin || fail "cp to the filesystem"
sync
umount /mnt/d || fail "umount"
echo 3 > /proc/sys/vm/drop_caches
mount -t ext4 ${dev} /mnt/d || fail "second mount"
got=$(rig_sha256 /mnt/d/file.bin)
[ "$got" = ${sum} ] || fail "file read back after remount differs: $got"
umount /mnt/d || fail "second umount"
e2fsck -fn ${dev} > /tmp/fsck.txt 2>&1 || { cat /tmp/fsck.txt; fail "e2fsck found problems"; }
log "filesystem round trip ok"
`;
}

/** Host side: the file is in the image's ext4 (read with debugfs, no mount needed). */
export function assertFsFileInImage(img: string, tag: string): void {
  const r = spawnSync('debugfs', ['-R', 'cat /file.bin', img], { maxBuffer: 64 * MiB });
  assert.equal(r.status, 0, `debugfs failed: ${r.stderr?.toString()}`);
  const got = r.stdout as Buffer;
  assert.equal(got.length, FS_FILE_SIZE, 'file size in the image (debugfs)');
  assert.equal(sha256(got), sha256(fsFile(tag)), 'file content in the image (debugfs)');
}

export interface DiskScenario {
  /** raw image exported by the server (created here with the pattern of `seed`) */
  img: string;
  seed: string;
  size: number;
  /** guest commands run first (e.g. usbip list + attach); the disk must appear afterwards */
  attach: string;
  /** guest commands run at the end (e.g. usbip detach) */
  detach?: string;
  /** modules to load at boot (one modprobe) */
  modules: string[];
  boot: Omit<BootOptions, 'script' | 'files' | 'modules'>;
  tag?: string;
  /** default true */
  filesystem?: boolean;
  /** runs after the image exists, before the guest boots (start the server here) */
  beforeBoot?: () => Promise<void>;
}

/** Create the image for a scenario. */
export function prepareImage(s: Pick<DiskScenario, 'img' | 'seed' | 'size'>): string {
  makePatternImage(s.img, s.size, s.seed);
  return sha256File(s.img);
}

/**
 * Run the full disk scenario in one guest and check everything on both sides. Returns the
 * guest result (rc 0 asserted) for extra checks by the caller.
 */
export async function runDiskScenario(s: DiskScenario): Promise<GuestResult> {
  const tag = s.tag ?? 'a';
  const writes = standardWrites(s.size);
  const origSha = prepareImage(s);
  await s.beforeBoot?.();
  const fsOn = s.filesystem !== false;
  const script = `
${s.attach}
D=$(rig_wait_disk 60) || fail "the exported disk did not appear"
${guestReadAndPatterns(writes, tag)}
rig_stage patterns
rig_wait_host verified 120
${fsOn ? guestFsRoundTrip(tag) : ''}
${s.detach ?? ''}
log "guest done"
`;
  const files = scenarioFiles(writes, tag);
  const g: GuestHandle = startGuest({ ...s.boot, script, files, modules: s.modules });
  try {
    await g.waitStage('patterns', 240_000);
  } catch (e) {
    const res = await g.done;
    assert.fail(`${(e as Error).message}\n${res.describe()}`);
  }
  try {
    await assertPatternsAlone(s, writes, tag);
  } catch (e) {
    g.kill();
    const res = await g.done;
    throw new Error(`${(e as Error).message}\n${res.describe()}`);
  }
  g.signal('verified');
  const res = await g.done;
  assert.equal(res.rc, 0, res.describe());
  assertReadResults(readKV(res.shareDir), s.size, origSha);
  if (fsOn) assertFsFileInImage(s.img, tag);
  return res;
}

/**
 * Guest commands on /dev/$D: size and whole-disk sha256 as results (bytes, sha_full), the direct
 * pattern writes read back, then everything flushed and the page cache dropped.
 */
export function guestReadAndPatterns(writes: PatternWrite[], tag: string): string {
  return `log "disk $D, $(rig_disk_bytes $D) bytes"
rig_result disk $D
rig_result bytes $(rig_disk_bytes $D)
rig_time sha_full sh -c "sha256sum /dev/$D | cut -d' ' -f1 > /tmp/sha_full" || fail "reading the whole disk"
rig_result sha_full $(cat /tmp/sha_full)
${guestPatternWrites(writes, tag)}
sync
echo 3 > /proc/sys/vm/drop_caches`;
}

/** Share files the scenario's guest commands read: the patterns and the filesystem file. */
export function scenarioFiles(writes: PatternWrite[], tag: string): Record<string, Buffer> {
  return { ...patternFiles(writes, tag), [`fsfile-${tag}.bin`]: fsFile(tag) };
}

/** Host side of guestReadAndPatterns' results: the size and whole-disk sha256 the guest saw. */
export function assertReadResults(kv: Record<string, string>, size: number, sha: string): void {
  assert.equal(Number(kv.bytes), size, 'disk size seen by the guest');
  assert.equal(kv.sha_full, sha, 'sha256 of the whole disk read by the guest vs the image');
}

/** Host side: the patterns are in the image and every other byte is still the seed's pattern. */
export async function assertPatternsAlone(
  s: Pick<DiskScenario, 'img' | 'seed' | 'size'>,
  writes: PatternWrite[],
  tag: string,
): Promise<void> {
  await assertPatternsInImage(s.img, writes, tag);
  assertUnchangedOutside(s.img, s.seed, s.size, writes);
}

export function timesOf(res: GuestResult): Record<string, number> {
  const kv = readKV(res.shareDir, 'times.txt');
  const out: Record<string, number> = {};
  for (const [k, v] of Object.entries(kv)) out[k] = Number(v);
  return out;
}

export function shareFile(res: GuestResult, name: string): string {
  return join(res.shareDir, name);
}

// ---------------------------------------------------------------------------------------
// Shared pieces of the "more" scenarios (usbip-more, usbredir-more): a read-only disk and a
// big sparse disk (> 2 TiB: READ CAPACITY(16), READ/WRITE(16)). Guest snippets record
// results with a key prefix; the host checks them with the matching assert* helper.

export const TiB = 2 ** 40;
/** 2 TiB: the first byte whose LBA (512-byte blocks) needs more than 32 bits. */
export const TWO_TIB = 2 * TiB;

/** Text between the guest.log markers of rig_run_case NAME (for assertion messages). */
export function caseLog(log: string, name: string): string {
  const start = log.indexOf(`=== case ${name}`);
  if (start < 0) return `(case ${name} did not start)`;
  const end = log.indexOf(`=== end ${name} `, start);
  const stop = end < 0 ? log.length : log.indexOf('\n', end) + 1 || log.length;
  return log.slice(start, stop);
}

/**
 * Guest commands: whole-disk sha256 of several disks read at the same time (one background
 * sha256sum per disk); records KEY_sha for each and conc_read_s.
 */
export function guestConcurrentSha(disks: { key: string; dev: string }[]): string {
  const lines = ['_t0=$(rig-now)'];
  for (const d of disks) lines.push(`sha256sum ${d.dev} > /tmp/sha-${d.key} 2>&1 & _p_${d.key}=$!`);
  for (const d of disks) lines.push(`wait $_p_${d.key} || { cat /tmp/sha-${d.key}; fail "reading all of ${d.dev}"; }`);
  lines.push('_t1=$(rig-now)');
  for (const d of disks) lines.push(`rig_result ${d.key}_sha $(cut -d' ' -f1 /tmp/sha-${d.key})`);
  lines.push(`rig_result conc_read_s $(awk -v a="$_t0" -v b="$_t1" 'BEGIN { printf "%.2f", b - a }')`);
  return lines.join('\n');
}

export interface ReadOnlyProbe {
  /** result key prefix */
  key: string;
  /** device, e.g. /dev/$DB */
  dev: string;
  /** seed of the pattern image behind the disk */
  seed: string;
  /** LBA the write attempt targets */
  lba: number;
  tag: string;
}

export function readOnlyProbeFiles(p: ReadOnlyProbe): Record<string, Buffer> {
  return { [`ro-${p.tag}.bin`]: patternBytes(`ro-probe:${p.tag}`, 0, 512) };
}

/**
 * Guest commands for a write-protected disk: /sys/block/X/ro is 1, the kernel logged
 * "Write Protect is on", a direct write fails, the block still reads as the original.
 * Records KEY_ro, KEY_wp_dmesg, KEY_write_rc, KEY_write_err.
 */
export function guestReadOnlyChecks(p: ReadOnlyProbe): string {
  const orig = sha256(patternBytes(p.seed, p.lba * 512, 512));
  const name = p.dev.replace('/dev/', '');
  return `
_ro=$(cat /sys/block/${name}/ro)
rig_result ${p.key}_ro "$_ro"
if dmesg | grep -q "\\[${name}\\] Write Protect is on"; then rig_result ${p.key}_wp_dmesg yes; else rig_result ${p.key}_wp_dmesg no; fi
if dd if=/mnt/host/ro-${p.tag}.bin of=${p.dev} bs=512 count=1 seek=${p.lba} oflag=direct conv=notrunc 2>/tmp/ro.err; then _wrc=0; else _wrc=$?; fi
cat /tmp/ro.err
rig_result ${p.key}_write_rc $_wrc
rig_result ${p.key}_write_err "$(tr '\\n' ' ' < /tmp/ro.err)"
_got=$(dd if=${p.dev} bs=512 count=1 skip=${p.lba} iflag=direct 2>/dev/null | sha256sum | cut -d' ' -f1)
[ "$_ro" = 1 ] || fail "/sys/block/${name}/ro is '$_ro' on the read-only disk"
[ "$_wrc" != 0 ] || fail "a direct write to the read-only disk ${p.dev} succeeded"
[ "$_got" = ${orig} ] || fail "LBA ${p.lba} of the read-only disk reads differently after the write attempt: $_got"
log "read-only disk ${p.dev}: ro=1, direct write refused ($(cat /tmp/ro.err | head -n 1))"
`;
}

/** Host side of guestReadOnlyChecks. */
export function assertReadOnlyResults(kv: Record<string, string>, key: string, where: string): void {
  assert.equal(kv[`${key}_ro`], '1', `/sys/block/X/ro of the read-only disk${where}`);
  assert.equal(kv[`${key}_wp_dmesg`], 'yes', `kernel log "Write Protect is on" for the read-only disk${where}`);
  assert.notEqual(kv[`${key}_write_rc`], '0', `direct write to the read-only disk must fail${where}`);
  assert.ok(kv[`${key}_write_rc`] !== undefined, `no write attempt recorded${where}`);
}

export interface BigDiskPlan {
  size: number;
  /** written by the host before the guest boots; the guest reads it */
  pre: PatternWrite;
  /** written by the guest with one direct dd each (bs=length, seek_bytes) */
  writes: PatternWrite[];
  /** the last block, written by the guest with bs=512 seek=LBA (no seek_bytes) */
  last: PatternWrite;
}

export function bigDiskPlan(size: number): BigDiskPlan {
  const plan: BigDiskPlan = {
    size,
    pre: { name: 'pre', offset: TWO_TIB + TiB / 2 + 1536, length: 4 * KiB },
    writes: [
      // crosses LBA 2^32 (2 TiB): half below, half above
      { name: 'cross2t', offset: TWO_TIB - 4 * KiB, length: 8 * KiB },
      { name: 'past2t', offset: TWO_TIB + 64 * KiB + 5 * 512, length: 4 * KiB + 512 },
      { name: 'nearend', offset: size - 512 - 4 * KiB - 64 * KiB, length: 64 * KiB },
    ],
    last: { name: 'last', offset: size - 512, length: 512 },
  };
  // assertBigImage checks 512 zero bytes on both sides of each range: keep them apart.
  const all = [plan.pre, ...plan.writes, plan.last].sort((a, b) => a.offset - b.offset);
  for (let i = 1; i < all.length; i++) {
    const prev = all[i - 1]!;
    if (prev.offset + prev.length + 512 > all[i]!.offset)
      throw new Error(`big-disk plan: ${prev.name} too close to ${all[i]!.name}`);
  }
  return plan;
}

/** Sparse image of plan.size bytes (ftruncate) with the `pre` pattern written by the host. */
export function prepareBigImage(path: string, plan: BigDiskPlan, tag: string): void {
  const fd = openSync(path, 'w');
  try {
    ftruncateSync(fd, plan.size);
    const b = patternFor(plan.pre, tag);
    writeSync(fd, b, 0, b.length, plan.pre.offset);
  } finally {
    closeSync(fd);
  }
}

export function bigDiskFiles(plan: BigDiskPlan, tag: string): Record<string, Buffer> {
  return patternFiles([...plan.writes, plan.last], tag);
}

/**
 * Guest commands on a big disk (expected plan.size): size seen (sysfs and blockdev
 * --getsize64), the host's pattern past 2 TiB reads back, the last block reads as zeros,
 * then direct writes (past 2 TiB, across 2 TiB, near the end, the last block) read back.
 * Records KEY_bytes, KEY_getsize64, KEY_usb_speed (Mb/s, from sysfs), KEY_rc16_dmesg.
 */
export function guestBigDiskChecks(plan: BigDiskPlan, tag: string, key: string, dev: string): string {
  const name = dev.replace('/dev/', '');
  const preSum = sha256(patternFor(plan.pre, tag));
  const lastLba = plan.last.offset / 512;
  const lastSum = sha256(patternFor(plan.last, tag));
  return `
rig_result ${key}_bytes $(rig_disk_bytes ${name})
rig_result ${key}_getsize64 $(blockdev --getsize64 ${dev})
rig_result ${key}_usb_speed $(cat $(readlink -f /sys/block/${name}/device)/../../../../speed 2>/dev/null || echo unknown)
if dmesg | grep -q "\\[${name}\\] Very big device. Trying to use READ CAPACITY(16)"; then rig_result ${key}_rc16_dmesg yes; else rig_result ${key}_rc16_dmesg no; fi
[ "$(rig_disk_bytes ${name})" = ${plan.size} ] || fail "big disk ${dev} has $(rig_disk_bytes ${name}) bytes, want ${plan.size}"
_got=$(dd if=${dev} bs=512 count=${plan.pre.length / 512} skip=${plan.pre.offset / 512} iflag=direct 2>/dev/null | sha256sum | cut -d' ' -f1)
[ "$_got" = ${preSum} ] || fail "the host's pattern at ${plan.pre.offset} (past 2 TiB) reads differently: $_got"
log "big disk: host pattern at ${plan.pre.offset} read back"
_got=$(dd if=${dev} bs=512 count=1 skip=${lastLba} iflag=direct 2>/dev/null | sha256sum | cut -d' ' -f1)
[ "$_got" = ${sha256(Buffer.alloc(512))} ] || fail "the last block (LBA ${lastLba}) of the sparse image does not read as zeros: $_got"
${guestPatternWrites(plan.writes, tag, dev)}
dd if=/mnt/host/pat-${tag}-last.bin of=${dev} bs=512 count=1 seek=${lastLba} oflag=direct conv=notrunc 2>/tmp/dd.err || { cat /tmp/dd.err; fail "direct write of the last block (LBA ${lastLba})"; }
_got=$(dd if=${dev} bs=512 count=1 skip=${lastLba} iflag=direct 2>/dev/null | sha256sum | cut -d' ' -f1)
[ "$_got" = ${lastSum} ] || fail "read-back of the last block (LBA ${lastLba}) differs: $_got"
log "big disk: last block written and read back"
`;
}

/**
 * Host side: the big image kept its size and stayed sparse; every guest pattern is at its
 * offset, the 512 bytes around each are still zero, and nothing landed where a 32-bit LBA
 * truncation would have put it (offset − 2 TiB). Reads only those ranges.
 */
export async function assertBigImage(path: string, plan: BigDiskPlan, tag: string): Promise<void> {
  const st = statSync(path);
  assert.equal(st.size, plan.size, 'big image size on the host');
  assert.ok(st.blocks * 512 <= 16 * MiB, `big image no longer sparse: ${st.blocks * 512} bytes allocated`);
  const all = [plan.pre, ...plan.writes, plan.last];
  await assertPatternsInImage(path, all, tag);
  const zero = Buffer.alloc(512);
  for (const w of all) {
    if (w.offset >= 512) {
      assert.ok(
        (await readAt(path, w.offset - 512, 512)).equals(zero),
        `bytes before ${w.name} (${w.offset}) not zero`,
      );
    }
    if (w.offset + w.length < plan.size) {
      assert.ok(
        (await readAt(path, w.offset + w.length, 512)).equals(zero),
        `bytes after ${w.name} (${w.offset}+${w.length}) not zero`,
      );
    }
    if (w !== plan.pre && w.offset >= TWO_TIB) {
      const alias = w.offset - TWO_TIB;
      assert.ok(
        (await readAt(path, alias, w.length)).equals(Buffer.alloc(w.length)),
        `data at ${alias} (where ${w.name} would land with a 32-bit LBA) is not zero`,
      );
    }
  }
}

/** Guest side of the big disk, as recorded by guestBigDiskChecks: its size and USB speed. */
export function assertBigDiskResults(
  kv: Record<string, string>,
  key: string,
  size: number,
  usbSpeedMbps: string,
): void {
  assert.equal(Number(kv[`${key}_bytes`]), size, 'size of the big disk in the guest (sysfs)');
  assert.equal(Number(kv[`${key}_getsize64`]), size, 'blockdev --getsize64 of the big disk');
  assert.equal(kv[`${key}_usb_speed`], usbSpeedMbps, 'USB speed of the big disk in the guest (Mb/s)');
}

// ---------------------------------------------------------------------------------------
// The scenario in a guest that is already running a command loop (guest-shell.ts): the disk
// comes and goes while the guest stays up (the bridge tests run several paths in one boot).

export interface InGuestChecks {
  img: string;
  size: number;
  /** sha256 of the image as the guest should read it (before the writes) */
  sha: string;
  /** seed of a pristine pattern image: then every byte outside the writes is checked too */
  seed?: string;
  tag: string;
  /** guest commands that set D to the disk's name (e.g. D=$(rig_wait_disk_via vhci_hcd)) */
  findDisk: string;
  writes?: PatternWrite[];
  /** default true */
  filesystem?: boolean;
}

/** The disk scenario (read, direct writes, ext4 round trip) through `sh`; checks both sides. Returns the disk name. */
export async function runDiskChecksInGuest(sh: GuestShell, g: GuestHandle, c: InGuestChecks): Promise<string> {
  const writes = c.writes ?? standardWrites(c.size);
  for (const [name, data] of Object.entries(scenarioFiles(writes, c.tag))) writeFileSync(g.path(name), data);
  const disk = `/tmp/disk-${c.tag}`;
  rmSync(g.path('results.txt'), { force: true });
  await sh.ok(`${c.findDisk}\necho $D > ${disk}\n${guestReadAndPatterns(writes, c.tag)}`, 300_000);
  assertReadResults(readKV(g.shareDir), c.size, c.sha);
  if (c.seed) await assertPatternsAlone({ img: c.img, seed: c.seed, size: c.size }, writes, c.tag);
  else await assertPatternsInImage(c.img, writes, c.tag);
  if (c.filesystem !== false) {
    await sh.ok(`D=$(cat ${disk})\n${guestFsRoundTrip(c.tag)}`, 300_000);
    assertFsFileInImage(c.img, c.tag);
  }
  return readKV(g.shareDir).disk ?? '';
}

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
import { join } from 'node:path';
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
log "disk $D, $(rig_disk_bytes $D) bytes"
rig_result disk $D
rig_result bytes $(rig_disk_bytes $D)
rig_time sha_full sh -c "sha256sum /dev/$D | cut -d' ' -f1 > /tmp/sha_full" || fail "reading the whole disk"
rig_result sha_full $(cat /tmp/sha_full)
${guestPatternWrites(writes, tag)}
sync
echo 3 > /proc/sys/vm/drop_caches
rig_stage patterns
rig_wait_host verified 120
${fsOn ? guestFsRoundTrip(tag) : ''}
${s.detach ?? ''}
log "guest done"
`;
  const files: Record<string, Buffer> = { ...patternFiles(writes, tag), [`fsfile-${tag}.bin`]: fsFile(tag) };
  const g: GuestHandle = startGuest({ ...s.boot, script, files, modules: s.modules });
  try {
    await g.waitStage('patterns', 240_000);
  } catch (e) {
    const res = await g.done;
    assert.fail(`${(e as Error).message}\n${res.describe()}`);
  }
  try {
    await assertPatternsInImage(s.img, writes, tag);
    assertUnchangedOutside(s.img, s.seed, s.size, writes);
  } catch (e) {
    g.kill();
    const res = await g.done;
    throw new Error(`${(e as Error).message}\n${res.describe()}`);
  }
  g.signal('verified');
  const res = await g.done;
  assert.equal(res.rc, 0, res.describe());
  const kv = readKV(res.shareDir);
  assert.equal(Number(kv.bytes), s.size, 'disk size seen by the guest');
  assert.equal(kv.sha_full, origSha, 'sha256 of the whole disk read by the guest vs the image');
  if (fsOn) assertFsFileInImage(s.img, tag);
  return res;
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

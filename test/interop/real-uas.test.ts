// USB 3 bulk streams with a real UAS disk: QEMU's usb-uas + scsi-hd (SuperSpeed, 16 streams on
// the status / data-in / data-out pipes) on the guest's qemu-xhci, bound by the guest's uas driver.
// usbwire inside the guest takes it through libusb (the uas driver detached, its streams freed)
// and exports it over usbredir; an initiator on the other end allocates the streams and drives
// SCSI with one stream per tag, several in flight. The disk image is a file on the host, so the
// data written through the streams is checked there after the run.
import assert from 'node:assert/strict';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import {
  assertPatternsInImage,
  assertUnchangedOutside,
  MiB,
  type PatternWrite,
  patternFiles,
  standardWrites,
} from './disk-checks.js';
import { bootRealGuest, GUEST_NODE, guestNodeShare, realDeviceSkip } from './real-guest-node.js';
import { fromRoot, makePatternImage, readAt, readKV, sha256File } from './rig.js';
import { EXPORTER_HELPERS, runTwoGuests } from './two-guests.js';

const SIZE = 16 * MiB;
const TAG = 'uas';
const SEED = 'real-uas';
const WRITES = standardWrites(SIZE);
const UAS_ID = '46f4:0003';

/** QEMU args for guest A's disk: usb-uas with one scsi-hd on the guest's xHCI. */
export function uasQemuArgs(img: string): string[] {
  return [
    '-device',
    'qemu-xhci,id=xhci',
    '-drive',
    `if=none,id=d0,file=${img},format=raw,cache=writethrough`,
    '-device',
    'usb-uas,id=uas,bus=xhci.0',
    '-device',
    'scsi-hd,bus=uas.0,scsi-id=0,lun=0,drive=d0',
  ];
}

/** Guest shell: uas bound to the disk, then usbwire exporting it over usbredir on port 4000. */
const GUEST_SERVE_UAS = `
D=$(rig_wait_disk 60) || fail "no usb-uas disk on the xHCI"
ls /sys/bus/usb/drivers/uas | grep -q ':' && rig_result host_uas yes
# Baseline: the same disk read by the guest's own uas driver.
t0=$(rig_now)
rig_sha256 /dev/$D > /dev/null
t1=$(rig_now)
rig_result native_read_ms $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%d", (b - a) * 1000 }')
real_serve_usbredir ${UAS_ID} "$RIG_SHARE/serve.log"
LOG="$RIG_SHARE/serve.log"
`;

/** Guest shell after the export: usbwire stops, and the guest's uas driver gets its disk back. */
const GUEST_UAS_BACK = `
stop_serve "$LOG" && rig_result closed yes
n=0
until ls /sys/bus/usb/drivers/uas | grep -q ':'; do n=$((n + 1)); [ $n -gt 300 ] && break; sleep 0.1; done
ls /sys/bus/usb/drivers/uas | grep -q ':' && rig_result uas_back yes
rig_wait_disk 30 > /dev/null && rig_result disk_back yes
dmesg | grep -i -E "uas|stream" | tail -20 > "$RIG_SHARE/dmesg-uas.log"
`;

function prepare(name: string): { share: string; img: string; sha: string } {
  const share = guestNodeShare(name);
  cpSync(
    fromRoot('dist', 'test', 'interop', 'real-uas-client.js'),
    join(share, 'app', 'dist', 'test', 'interop', 'real-uas-client.js'),
  );
  for (const [file, data] of Object.entries(patternFiles(WRITES, TAG))) writeFileSync(join(share, file), data);
  const img = join(share, 'disk.img');
  makePatternImage(img, SIZE, SEED);
  return { share, img, sha: sha256File(img) };
}

test('usb-uas streams through libusb and usbredir in one guest: our usbredir client as the UAS initiator', {
  skip: realDeviceSkip(),
  timeout: 420_000,
}, async () => {
  const { share, img, sha } = prepare('real-uas');
  const res = await bootRealGuest(share, {
    modules: ['xhci_pci', 'usb_storage', 'uas', 'sd_mod'],
    timeoutMs: 360_000,
    qemuArgs: uasQemuArgs(img),
    script: `${GUEST_NODE}
${GUEST_SERVE_UAS}
$NODE "$RIG_SHARE/app/dist/test/interop/real-uas-client.js" 4000 "$RIG_SHARE" '${JSON.stringify(WRITES)}' ${TAG} > "$RIG_SHARE/client.log" 2>&1 || log "uas client failed"
${GUEST_UAS_BACK}
rig_result done yes
`,
  });
  const kv = readKV(share);
  const why = `${kv.client_error ?? ''}\n${res.describe()}`;
  assert.equal(kv.host_uas, 'yes', `the guest's uas driver did not bind QEMU's usb-uas\n${why}`);
  assert.equal(kv.speed, 'super', why);
  assert.equal(kv.max_streams, '16', `ep_info max_streams of the data-in pipe\n${why}`);
  assert.equal(kv.set_interface, 'ok', why);
  assert.equal(kv.streams, '16', `alloc_bulk_streams through libusb_alloc_streams\n${why}`);
  assert.equal(kv.inquiry, 'QEMU,QEMU,QEMU', `INQUIRY on three streams at once\n${why}`);
  assert.equal(kv.capacity, `${SIZE / 512} 512`, why);
  assert.equal(kv.disk_sha, sha, `whole disk read over 8 streams in flight vs the image\n${why}`);
  for (const w of WRITES) assert.equal(kv[`readback_${w.name}`], 'ok', `pattern ${w.name} read back\n${why}`);
  assert.equal(kv.beyond_grant, 'invalid', 'a stream id beyond the grant is refused');
  assert.equal(kv.freed, 'ok', why);
  assert.equal(kv.client_done, 'yes', why);
  assert.equal(kv.closed, 'yes', `usbwire did not close on SIGTERM\n${why}`);
  assert.equal(kv.uas_back, 'yes', `uas did not get the disk back (streams left allocated?)\n${why}`);
  assert.equal(kv.done, 'yes', why);
  await assertPatternsInImage(img, WRITES, TAG);
  assertUnchangedOutside(img, SEED, SIZE, WRITES);
  console.log(
    `# whole-disk read, ${SIZE / MiB} MiB over usbredir streams: ${kv.read_ms} ms (the guest's own uas: ${kv.native_read_ms} ms)`,
  );
  res.cleanup();
});

/**
 * Guest B: the disk comes over usb-redir; whole-disk sha256, then random blocks written with
 * direct I/O at known offsets (kept in B's share for the host to compare) and read back.
 */
function importerScript(writes: PatternWrite[]): string {
  const lines = writes.map(
    (w) => `head -c ${w.length} /dev/urandom > "$RIG_SHARE/w-${w.name}.bin"
dd if="$RIG_SHARE/w-${w.name}.bin" of=/dev/$D bs=${w.length} count=1 seek=${w.offset} oflag=direct,seek_bytes conv=notrunc 2>/tmp/dd.err || { cat /tmp/dd.err; fail "direct write ${w.name}"; }
got=$(dd if=/dev/$D bs=${w.length} count=1 skip=${w.offset} iflag=direct,skip_bytes 2>/dev/null | sha256sum | cut -d' ' -f1)
[ "$got" = "$(rig_sha256 "$RIG_SHARE/w-${w.name}.bin")" ] && rig_result readback_${w.name} ok`,
  );
  return `
D=$(rig_wait_disk 180) || fail "no disk came over usb-redir"
bound() { for _i in /sys/bus/usb/drivers/$1/*:*; do [ -e "$_i" ] && return 0; done; return 1; }
bound uas && rig_result uas_bound yes
bound usb-storage && rig_result usb_storage_bound yes
rig_result size $(cat /sys/block/$D/size)
t0=$(rig_now)
rig_result disk_sha $(rig_sha256 /dev/$D)
t1=$(rig_now)
rig_result read_ms $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%d", (b - a) * 1000 }')
# Four direct readers at once: several commands (tags, so streams) in flight together.
for i in 0 1 2 3; do
  dd if=/dev/$D of=/tmp/part$i bs=65536 skip=$((i * ${SIZE / 4 / 65536})) count=${SIZE / 4 / 65536} iflag=direct 2>/dev/null &
done
wait
rig_result parallel_sha $(cat /tmp/part0 /tmp/part1 /tmp/part2 /tmp/part3 | sha256sum | cut -d' ' -f1)
rm -f /tmp/part?
${lines.join('\n')}
sync
# uas unbound (it frees its streams) and bound again (allocates them again): QEMU disconnects a
# redirected device on any failed bulk_streams_status, so this is a free/alloc round trip.
IF=$(ls /sys/bus/usb/drivers/uas | grep ':' | head -1)
echo -n "$IF" > /sys/bus/usb/drivers/uas/unbind
n=0
while [ -e /sys/block/$D ]; do n=$((n + 1)); [ $n -gt 100 ] && break; sleep 0.1; done
echo -n "$IF" > /sys/bus/usb/drivers/uas/bind || fail "uas bind"
D=$(rig_wait_disk 60) || fail "no disk after binding uas again"
rig_result rebound yes
rig_result disk_sha2 $(rig_sha256 /dev/$D)
dmesg | grep -i -E "uas|usb 1-|stream|xhci" | tail -30 > "$RIG_SHARE/dmesg-b.log"
rig_result done yes
`;
}

test('usb-uas over usbredir to a second QEMU: the importer binds uas (streams), disk data checked on the host image', {
  skip: realDeviceSkip(),
  timeout: 600_000,
}, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'usbwire-real-uas2-'));
  const img = join(dir, 'disk.img');
  makePatternImage(img, SIZE, SEED);
  const sha = sha256File(img);
  const run = await runTwoGuests({
    name: 'real-uas2',
    exporter: {
      modules: ['xhci_pci', 'usb_storage', 'uas', 'sd_mod'],
      qemuArgs: uasQemuArgs(img),
      script: `${EXPORTER_HELPERS}
${GUEST_SERVE_UAS}
exporter_ready
exporter_wait_b
rig_result a_streams "$(grep -o '[0-9]* bulk streams on ep [0-9a-f,]*' "$LOG" | head -1)"
rig_result a_allocs $(grep -c -E '[0-9]+ bulk streams on ep' "$LOG")
rig_result a_frees $(grep -c 'bulk streams on ep .* freed' "$LOG")
${GUEST_UAS_BACK}
rig_result done yes
`,
    },
    importer: { modules: ['usb_storage', 'uas', 'sd_mod'], script: importerScript(WRITES) },
    timeoutMs: 540_000,
  });
  const { aKV, bKV } = run;
  const why = run.describe();
  assert.equal(aKV.host_uas, 'yes', `guest A's uas did not bind QEMU's usb-uas\n${why}`);
  assert.equal(bKV.uas_bound, 'yes', `guest B did not bind uas to the redirected disk\n${why}`);
  assert.equal(bKV.usb_storage_bound, undefined, 'guest B bound usb-storage (BOT), not uas');
  assert.match(
    aKV.a_streams ?? '',
    /^\d+ bulk streams on ep 04,82,83$/,
    `no streams allocated through usbwire\n${why}`,
  );
  assert.equal(bKV.size, String(SIZE / 512), why);
  assert.equal(bKV.disk_sha, sha, `whole disk read by guest B over uas streams vs the image\n${why}`);
  assert.equal(bKV.parallel_sha, sha, `four direct readers at once in guest B vs the image\n${why}`);
  for (const w of WRITES) {
    assert.equal(bKV[`readback_${w.name}`], 'ok', `guest B read back ${w.name}\n${why}`);
    const written = readFileSync(join(run.b!.shareDir, `w-${w.name}.bin`));
    assert.ok((await readAt(img, w.offset, w.length)).equals(written), `${w.name} from guest B is in the image`);
  }
  assertUnchangedOutside(img, SEED, SIZE, WRITES);
  assert.equal(bKV.rebound, 'yes', `uas unbound and bound again in guest B\n${why}`);
  assert.equal(bKV.disk_sha2, sha256File(img), `whole disk after the rebind vs the image\n${why}`);
  assert.equal(aKV.a_allocs, '2', `streams allocated at probe and again after the rebind\n${why}`);
  assert.ok(Number(aKV.a_frees) >= 1, `streams freed when uas was unbound\n${why}`);
  assert.equal(bKV.done, 'yes', why);
  assert.equal(aKV.closed, 'yes', `usbwire did not close on SIGTERM\n${why}`);
  assert.equal(aKV.uas_back, 'yes', `guest A's uas did not get the disk back\n${why}`);
  assert.equal(aKV.done, 'yes', why);
  console.log(
    `# guest A: ${aKV.a_streams} (${aKV.a_allocs} allocs, ${aKV.a_frees} frees); guest B read ${SIZE / MiB} MiB through uas in ${bKV.read_ms} ms (guest A's own uas: ${aKV.native_read_ms} ms)`,
  );
  console.log(`# guest A ready after ${run.readySecs?.toFixed(0)} s, whole run ${run.totalSecs.toFixed(0)} s`);
  run.cleanup();
  rmSync(dir, { recursive: true, force: true });
});

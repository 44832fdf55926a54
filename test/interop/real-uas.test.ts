// USB 3 bulk streams with a real UAS disk: QEMU's usb-uas + scsi-hd (SuperSpeed, 16 streams on
// the status / data-in / data-out pipes) on the guest's qemu-xhci, bound by the guest's uas driver.
// usbwire inside the guest takes it through libusb (the uas driver detached, its streams freed)
// and exports it over usbredir; an initiator on the other end allocates the streams and drives
// SCSI with one stream per tag, several in flight. The disk image is a file on the host, so the
// data written through the streams is checked there after the run.
import assert from 'node:assert/strict';
import { cpSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { assertPatternsInImage, assertUnchangedOutside, MiB, patternFiles, standardWrites } from './disk-checks.js';
import { bootRealGuest, GUEST_NODE, guestNodeShare, realDeviceSkip } from './real-guest-node.js';
import { fromRoot, makePatternImage, readKV, sha256File } from './rig.js';

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

/** Guest shell: uas bound to the disk, then usbwire exporting it over usbredir on 127.0.0.1:PORT. */
export function guestServeUas(port: number): string {
  return `${GUEST_NODE}
D=$(rig_wait_disk 60) || fail "no usb-uas disk on the xHCI"
ls /sys/bus/usb/drivers/uas | grep -q ':' && rig_result host_uas yes
LOG="$RIG_SHARE/serve.log"
$NODE "$RIG_SHARE/app/bin/usbwire.js" serve --usbredir 127.0.0.1:${port} --control none --device ${UAS_ID} > "$LOG" 2>&1 &
SERVE=$!
n=0
until grep -q "host device ${UAS_ID}: exporting" "$LOG"; do
  n=$((n + 1)); [ $n -gt 600 ] && fail "usbwire did not export the uas disk"
  kill -0 $SERVE 2>/dev/null || fail "usbwire exited"
  sleep 0.1
done
`;
}

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
    script: `${guestServeUas(4000)}
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
  console.log(`# whole-disk read, ${SIZE / MiB} MiB over usbredir streams: ${kv.read_ms} ms`);
  res.cleanup();
});

// "Try disconnect" with a real disk: QEMU's usb-storage on the guest's xHCI is a real USB disk to
// the guest. While the guest has it mounted, `usbwire serve --device 46f4:0001` (inside the guest)
// refuses to take it and says what holds it, and the USB/IP device list stays empty. Once it is
// unmounted, usbwire exports it; the guest attaches it over vhci-hcd and the copy reads the same
// bytes (whole-disk sha256 = the host's image) and the file written before the export.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import { bootRealGuest, GUEST_NODE, guestNodeShare, realDeviceSkip } from './real-guest-node.js';
import { makePatternImage, readKV, sha256File } from './rig.js';

const SCRIPT = `${GUEST_NODE}
D=$(rig_wait_disk 60) || fail "no usb-storage disk on the xHCI"
mkfs.ext4 -q -F /dev/$D || fail "mkfs.ext4"
mkdir -p /mnt/d /mnt/e
mount -t ext4 /dev/$D /mnt/d || fail "mount"
echo "written before the export" > /mnt/d/note.txt
sync
LOG="$RIG_SHARE/serve.log"
$NODE "$RIG_SHARE/app/bin/usbwire.js" serve --usbip 127.0.0.1:3240 --control none --device 46f4:0001 > "$LOG" 2>&1 &
SERVE=$!
n=0
until grep -q "not exporting" "$LOG"; do n=$((n + 1)); [ $n -gt 600 ] && fail "usbwire neither refused nor exported"; sleep 0.1; done
grep -q "/dev/$D is mounted on /mnt/d" "$LOG" && rig_result refused_mounted yes
usbip --tcp-port 3240 list -r 127.0.0.1 2>&1 | grep -q 46f4 || rig_result not_listed yes
[ -e /sys/block/$D ] && rig_result host_kept_disk yes
umount /mnt/d || fail "umount"
n=0
until grep -q "host device 46f4:0001: exporting" "$LOG"; do n=$((n + 1)); [ $n -gt 100 ] && fail "not exported after umount"; sleep 0.1; done
rig_result exported_after_umount yes
# The host's own disk went with its usb-storage driver; the copy may get the same sd name.
n=0
while [ -e /sys/block/$D ] && readlink -f /sys/block/$D | grep -vq vhci; do n=$((n + 1)); [ $n -gt 100 ] && break; sleep 0.1; done
usbip --tcp-port 3240 attach -r 127.0.0.1 -b 1-1 || fail "usbip attach"
vhci_disk() {
  for _b in /sys/block/sd*; do
    readlink -f $_b | grep -q vhci && [ "$(cat $_b/size)" -gt 0 ] && { echo \${_b##*/}; return 0; }
  done
  return 1
}
n=0
until E=$(vhci_disk); do n=$((n + 1)); [ $n -gt 600 ] && fail "no vhci copy of the disk"; sleep 0.1; done
rig_result copy_sha $(sha256sum /dev/$E | cut -d' ' -f1)
mount -t ext4 -o ro /dev/$E /mnt/e || fail "mount the vhci copy"
rig_result copy_note "$(cat /mnt/e/note.txt)"
umount /mnt/e
usbip detach -p 0
sleep 1
stop_serve "$LOG" && rig_result closed yes
rig_result done yes
`;

test('try disconnect with a real disk: refused while mounted, exported once unmounted, data intact over USB/IP', {
  skip: realDeviceSkip(),
  timeout: 300_000,
}, async () => {
  const share = guestNodeShare('real-storage');
  const img = join(share, 'disk.img');
  makePatternImage(img, 32 << 20, 'real-storage');
  const res = await bootRealGuest(share, {
    modules: ['vhci_hcd', 'xhci_pci', 'usb_storage', 'sd_mod', 'ext4'],
    timeoutMs: 240_000,
    qemuArgs: [
      '-device',
      'qemu-xhci,id=xhci',
      '-drive',
      `if=none,id=d0,file=${img},format=raw,cache=writethrough`,
      '-device',
      'usb-storage,drive=d0,bus=xhci.0',
    ],
    script: SCRIPT,
  });
  const kv = readKV(share);
  assert.equal(kv.refused_mounted, 'yes', `usbwire did not refuse the mounted disk with the reason\n${res.describe()}`);
  assert.equal(kv.not_listed, 'yes', 'the refused disk was listed over USB/IP');
  assert.equal(kv.host_kept_disk, 'yes', 'the host lost its disk although usbwire refused it');
  assert.equal(kv.exported_after_umount, 'yes', res.describe());
  assert.equal(kv.copy_note, 'written before the export', res.describe());
  assert.equal(kv.copy_sha, sha256File(img), 'whole disk through usbwire (libusb) + USB/IP vs the image');
  assert.equal(kv.closed, 'yes', `usbwire did not close on SIGTERM\n${res.describe()}`);
  assert.equal(kv.done, 'yes', res.describe());
  res.cleanup();
});

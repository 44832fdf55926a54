// Real devices in one guest, driven from the host: QEMU's usb-storage and usb-kbd on the guest's
// xHCI are real USB devices to the guest, usbwire runs inside it (libusb) and exports them over
// USB/IP to the same guest's vhci-hcd. The host plugs and unplugs them through QEMU's QMP monitor
// and types on the keyboard. In order:
//  1. the disk exported by VID:PID; the full disk checks on the vhci copy (whole-disk sha256,
//     direct writes at known offsets found in the host's image file and nothing else changed,
//     ext4 made, written, remounted, fsck'd, its file read from the image with debugfs); then
//     SIGTERM: usbwire closes and the guest's usb-storage has the disk back;
//  2. try disconnect: the disk mounted in the guest is refused (the mount named, not listed),
//     exported by port path once unmounted; the copy reads the image's sha256 and the files;
//  3. bad input from a USB/IP client: a configuration, endpoint, interface the disk lacks →
//     statuses and log lines, the export survives;
//  4. the disk unplugged (device_del) while the copy is being read: usbwire notices, the client
//     sees the detach, the reader ends with an error, usbwire runs on; plugged again → exported
//     under the same busid, the copy reads the image's sha256;
//  5. hotplug: a keyboard plugged after usbwire started (VID:PID) is exported; keys typed on the
//     host arrive as evdev events on the vhci copy; unplugged → detach seen; plugged again →
//     exported under the same busid, keys again; SIGTERM while the keyboard is attached and the disk copy is
//     being read → both copies gone, usbhid and usb-storage bound again to the guest's own devices;
//  6. the disk presented as UAS (--device 46f4:0001,as-uas=high: vhci-hcd has no streams): the guest's uas drives the vhci copy
//     (queue depth > 1); whole-disk sha256 and direct writes found in the image; SIGTERM gives it back.
import assert from 'node:assert/strict';
import { cpSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { type TestContext, test } from 'node:test';
import { runDiskChecksInGuest } from './disk-checks.js';
import { GuestShell } from './guest-shell.js';
import * as ev from './hid-events.js';
import { guestNodeShare, realDeviceSkip } from './real-guest-node.js';
import { GUEST_PRELUDE } from './real-hotplug-guest.js';
import { Qmp, qmpArgs, startRealGuest } from './real-hotplug-qmp.js';
import { fromRoot, type GuestHandle, makePatternImage, sha256File, sleep } from './rig.js';

const SIZE = 32 << 20;
const SEED = 'real-storage';
const STORAGE = { driver: 'usb-storage', drive: 'd0', bus: 'xhci.0', port: '1', id: 'stor' };
const KEYBOARD = { driver: 'usb-kbd', bus: 'xhci.0', port: '2', id: 'kbd' };

const FIND_VHCI_COPY = 'D=$(rig_wait_disk_via vhci_hcd 60) || fail "no vhci copy of the disk"';

/** Guest commands: detach the vhci copy of 1-1, stop usbwire (SIGTERM), the guest's usb-storage takes the disk back. */
function giveBack(serveLog: string): string {
  return `
S=$(cat /tmp/S)
E=$(rig_wait_disk_via vhci_hcd 5)
detach 1-1
rig_wait_disk_gone $E 30 || fail "the vhci copy stayed after detach"
stop_bg $RIG_SHARE/${serveLog} && echo closed=yes
bound usb-storage $S:1.0 && echo reattached=yes`;
}

/** "key=value" lines of a guest command's output. */
function kv(out: string): Record<string, string> {
  const r: Record<string, string> = {};
  for (const line of out.split('\n')) {
    const m = /^(\w+)=(.*)$/.exec(line);
    if (m) r[m[1]!] = m[2]!;
  }
  return r;
}

/** Type `text` (lower-case letters) on the QEMU keyboard; wait until the guest has every key event. */
async function typeAndRead(qmp: Qmp, g: GuestHandle, file: string, text: string): Promise<ev.EvdevEvent[]> {
  await qmp.tap([...text]);
  const want = text.length * 2;
  const deadline = Date.now() + 60_000;
  let events: ev.EvdevEvent[] = [];
  while (Date.now() < deadline) {
    events = ev.parseEvents(readFileSync(g.path(file), 'utf8'));
    if (events.filter((e) => e.type === 'KEY' && e.value !== 2).length >= want) break;
    await sleep(200);
  }
  await sleep(500); // anything extra would show up now
  return ev.parseEvents(readFileSync(g.path(file), 'utf8'));
}

test('real devices in one guest: disk checks, try disconnect, bad input, unplug mid-transfer, hotplug, keyboard', {
  skip: realDeviceSkip(),
  timeout: 900_000,
}, async (t) => {
  const share = guestNodeShare('real-storage');
  cpSync(
    fromRoot('dist', 'test', 'interop', 'real-hotplug-client.js'),
    join(share, 'app', 'dist', 'test', 'interop', 'real-hotplug-client.js'),
  );
  const img = join(share, 'disk.img');
  makePatternImage(img, SIZE, SEED);
  const origSha = sha256File(img);
  const qmpSock = qmpArgs(share);
  const g = startRealGuest(share, {
    modules: ['vhci_hcd', 'xhci_pci', 'usb_storage', 'uas', 'sd_mod', 'ext4', 'usbhid', 'hid_generic', 'evdev'],
    timeoutMs: 840_000,
    qemuArgs: [
      '-device',
      'qemu-xhci,id=xhci',
      '-blockdev',
      `driver=file,filename=${img},node-name=f0`,
      '-blockdev',
      'driver=raw,file=f0,node-name=d0',
      '-device',
      Object.entries(STORAGE)
        .map(([k, v]) => (k === 'driver' ? v : `${k}=${v}`))
        .join(','),
      ...qmpSock.args,
    ],
    script: `${GUEST_PRELUDE}\nrig_command_loop\nrig_dmesg end\n`,
  });
  const started = Date.now();
  const sh = new GuestShell(g);
  let qmp: Qmp | undefined;
  let failed = false;
  const phase = async (name: string, fn: (t: TestContext) => Promise<void>) => {
    const t0 = Date.now();
    await t.test(name, async (st) => {
      if (failed) return st.skip('an earlier phase failed');
      try {
        await fn(st);
      } catch (err) {
        failed = true;
        throw err;
      } finally {
        st.diagnostic(`${((Date.now() - t0) / 1000).toFixed(1)} s`);
      }
    });
  };
  try {
    qmp = await Qmp.connect(qmpSock.path);
    const q = qmp;
    let S = '';

    await phase(
      '1. disk exported by VID:PID: the full disk checks on the vhci copy, then SIGTERM gives it back',
      async () => {
        const r = kv(
          await sh.ok(
            `
S=$(rig_wait_usb 46f4 0001 "" 60) || fail "no usb-storage on the xHCI"
echo $S > /tmp/S
D=$(rig_wait_disk_via "/$S:1.0/" 60) || fail "no disk on the guest's own usb-storage"
serve_bg $RIG_SHARE/serve1.log 46f4:0001
wait_log $RIG_SHARE/serve1.log "host device 46f4:0001: exporting" || fail "not exported"
rig_wait_disk_gone $D 20 || fail "the guest's own disk is still there while exported"
attach 1-1 || fail "usbip attach 1-1"
echo S=$S`,
            180_000,
          ),
        );
        S = r.S!;
        assert.match(S, /^\d+-\d+$/);
        await runDiskChecksInGuest(sh, g, {
          img,
          size: SIZE,
          sha: origSha,
          seed: SEED,
          tag: 'real',
          findDisk: FIND_VHCI_COPY,
        });
        const end = kv(
          await sh.ok(
            `${giveBack('serve1.log')}
D=$(rig_wait_disk_via "/$S:1.0/" 60) && echo host_disk=$D`,
            120_000,
          ),
        );
        assert.equal(end.closed, 'yes', 'usbwire did not close on SIGTERM');
        assert.equal(end.reattached, 'yes', "the guest's usb-storage was not bound to the disk again after SIGTERM");
        assert.match(end.host_disk ?? '', /^sd[a-z]+$/, 'the disk did not come back to the guest');
      },
    );

    await phase('2. try disconnect: refused while mounted, exported by port path once unmounted', async () => {
      const r = kv(
        await sh.ok(
          `
S=$(cat /tmp/S)
D=$(rig_wait_disk_via "/$S:1.0/" 60) || fail "no disk"
mount -t ext4 /dev/$D /mnt/d || fail "mount the guest's own disk"
echo "written before the export" > /mnt/d/note.txt
sync
serve_bg $RIG_SHARE/serve2.log $S 0627:0001
wait_log $RIG_SHARE/serve2.log "not exporting" || fail "usbwire neither refused nor exported"
grep -q "/dev/$D is mounted on /mnt/d" $RIG_SHARE/serve2.log && echo refused_mounted=yes
usbip list -r 127.0.0.1 2>&1 | grep -q 46f4 || echo not_listed=yes
[ -e /sys/block/$D ] && echo host_kept_disk=yes
umount /mnt/d || fail "umount"
wait_log $RIG_SHARE/serve2.log "host device $S: exporting" 1 20 && echo exported_after_umount=yes
attach 1-1 || fail "usbip attach 1-1"
E=$(rig_wait_disk_via vhci_hcd 60) || fail "no vhci copy"
echo copy_sha=$(rig_sha256 /dev/$E)
mount -t ext4 -o ro /dev/$E /mnt/e || fail "mount the vhci copy"
echo copy_note=$(cat /mnt/e/note.txt)
echo copy_file_sha=$(rig_sha256 /mnt/e/file.bin)
umount /mnt/e
detach 1-1
rig_wait_disk_gone $E 30 || fail "the vhci copy stayed after detach"`,
          180_000,
        ),
      );
      assert.equal(r.refused_mounted, 'yes', `usbwire did not refuse the mounted disk naming the mount\n${r}`);
      assert.equal(r.not_listed, 'yes', 'the refused disk was listed over USB/IP');
      assert.equal(r.host_kept_disk, 'yes', 'the guest lost its disk although usbwire refused it');
      assert.equal(r.exported_after_umount, 'yes');
      assert.equal(r.copy_sha, sha256File(img), 'whole disk through usbwire (libusb) + USB/IP vs the image');
      assert.equal(r.copy_note, 'written before the export');
      assert.equal(r.copy_file_sha, sha256File(join(share, 'fsfile-real.bin')), 'the file the checks put on the ext4');
    });

    await phase('3. bad input from a USB/IP client: statuses, log lines, the export survives', async () => {
      const out = await sh.ok(
        `$NODE $RIG_SHARE/app/dist/test/interop/real-hotplug-client.js 127.0.0.1:3240 1-1 || fail "client"
serve_alive && echo alive=yes`,
        120_000,
      );
      const line = out.split('\n').find((l) => l.startsWith('{'));
      assert.ok(line, out);
      const got = JSON.parse(line) as Record<string, string>;
      assert.equal(got.set_config_7, 'stall', 'SET_CONFIGURATION 7 on a device that has only 1');
      assert.equal(got.get_config_data, '01', 'the configuration is still 1');
      assert.equal(got.bulk_in_0x85, 'invalid', 'bulk IN on an endpoint the disk lacks');
      assert.equal(got.class_iface_4, 'stall', 'class request to interface 4, which the disk lacks');
      assert.equal(got.clear_halt_0x86, 'stall', 'CLEAR_FEATURE(HALT) of an endpoint the disk lacks');
      assert.equal(got.max_lun, 'ok', 'GET_MAX_LUN to the disk interface after the bad requests');
      assert.equal(got.max_lun_data, '00');
      assert.equal(got.device_descriptor, 'ok');
      assert.match(got.device_descriptor_data ?? '', /^1201[0-9a-f]{12}f4460100/, 'device descriptor 46f4:0001');
      assert.equal(kv(out).alive, 'yes', 'usbwire exited on bad input');
      const log = readFileSync(join(share, 'serve2.log'), 'utf8');
      assert.match(log, /the client asked for configuration 7; the device has 1: answered with a stall/);
      assert.match(log, /request 0xfe for interface 4, which configuration 1 lacks/);
      assert.match(log, /CLEAR_FEATURE\(ENDPOINT_HALT\) for endpoint 0x86, which the active configuration lacks/);
    });

    await phase(
      '4. disk unplugged while the copy is read: clean end; plugged again: exported under the same busid',
      async () => {
        await sh.ok(
          `
attach 1-1 || fail "usbip attach 1-1"
E=$(rig_wait_disk_via vhci_hcd 60) || fail "no vhci copy"
read_loop /dev/$E
rig_nap 1`,
          120_000,
        );
        await q.deviceDel('stor');
        const r = kv(
          await sh.ok(
            `
S=$(cat /tmp/S)
gone_from_vhci 1-1 30 && echo detached=yes
rig_wait_file /tmp/dd.end 30 && echo reader_ended=yes
echo reader_error=$(tail -n 1 /tmp/dd.err)
wait_log $RIG_SHARE/serve2.log "$S 46f4:0001: device went away\\|host device $S: $S .*unplugged" 1 20 && echo noticed=yes
serve_alive && echo alive=yes`,
            120_000,
          ),
        );
        assert.equal(r.detached, 'yes', 'the USB/IP client did not see the detach');
        assert.equal(r.reader_ended, 'yes', 'the reader of the copy did not end');
        assert.notEqual(r.reader_error ?? '', '', 'the reader ended without an error');
        assert.equal(r.noticed, 'yes', 'usbwire did not log the unplug');
        assert.equal(r.alive, 'yes', 'usbwire exited when the disk went away mid-transfer');

        await q.deviceAdd(STORAGE);
        const back = kv(
          await sh.ok(
            `
S=$(cat /tmp/S)
[ "$(rig_wait_usb 46f4 0001 "" 30)" = $S ] && echo same_port=yes
wait_log $RIG_SHARE/serve2.log "host device $S: exporting" 2 60 && echo reexported=yes
attach 1-1 || fail "usbip attach 1-1 after the replug"
E=$(rig_wait_disk_via vhci_hcd 60) || fail "no vhci copy after the replug"
echo copy_sha=$(rig_sha256 /dev/$E)
detach 1-1
rig_wait_disk_gone $E 30 || fail "the vhci copy stayed after detach"`,
            180_000,
          ),
        );
        assert.equal(back.same_port, 'yes', 'the disk came back on another port');
        assert.equal(back.reexported, 'yes', 'the replugged disk was not exported again');
        assert.equal(back.copy_sha, sha256File(img), 'the replugged disk read through busid 1-1 vs the image');
      },
    );

    await phase(
      '5. keyboard plugged after usbwire started: exported, keys arrive; unplug, replug, keys again; SIGTERM gives both back',
      async () => {
        const log = () => readFileSync(join(share, 'serve2.log'), 'utf8');
        assert.match(log(), /host device 0627:0001: nothing plugged; exported when it appears/);
        await q.deviceAdd(KEYBOARD);
        const r = kv(
          await sh.ok(
            `
K=$(rig_wait_usb 0627 0001 "" 30) || fail "no usb-kbd"
echo $K > /tmp/K
wait_log $RIG_SHARE/serve2.log "host device 0627:0001: exporting" 1 60 || fail "keyboard not exported"
read_keys $RIG_SHARE/keys-1.txt`,
            180_000,
          ),
        );
        assert.match(r.ev ?? '', /QEMU USB Keyboard/, 'the vhci copy is a keyboard');
        const first = await typeAndRead(q, g, 'keys-1.txt', 'usbwire');
        assert.deepEqual(ev.keyStates(first), new ev.ExpectedKeys().type('usbwire').states, 'keys on the copy');
        assert.equal(ev.typedText(first), 'usbwire');

        await q.deviceDel('kbd');
        const gone = kv(
          await sh.ok('gone_from_vhci 1-2 30 && echo detached=yes\nserve_alive && echo alive=yes', 60_000),
        );
        assert.equal(gone.detached, 'yes', 'the USB/IP client did not see the keyboard go');
        assert.equal(gone.alive, 'yes');
        await q.deviceAdd(KEYBOARD);
        await sh.ok(
          `
wait_log $RIG_SHARE/serve2.log "host device 0627:0001: exporting" 2 60 || fail "replugged keyboard not exported"
read_keys $RIG_SHARE/keys-2.txt`,
          180_000,
        );
        const second = await typeAndRead(q, g, 'keys-2.txt', 'again');
        assert.deepEqual(ev.keyStates(second), new ev.ExpectedKeys().type('again').states, 'keys after the replug');

        const end = kv(
          await sh.ok(
            `
S=$(cat /tmp/S); K=$(cat /tmp/K)
attach 1-1 || fail "usbip attach 1-1"
E=$(rig_wait_disk_via vhci_hcd 60) || fail "no vhci copy"
read_loop /dev/$E
rig_nap 1
stop_bg $RIG_SHARE/serve2.log && echo closed=yes
rig_wait_file /tmp/dd.end 30 && echo reader_ended=yes
gone_from_vhci 1-1 30 && gone_from_vhci 1-2 30 && echo detached=yes
bound usbhid $K:1.0 && echo kbd_reattached=yes
bound usb-storage $S:1.0 && echo storage_reattached=yes
rig_wait_disk_via "/$S:1.0/" 60 > /dev/null && echo host_disk=yes`,
            120_000,
          ),
        );
        assert.equal(
          end.closed,
          'yes',
          'usbwire did not close on SIGTERM with the keyboard attached and the disk being read',
        );
        assert.equal(end.reader_ended, 'yes', 'the reader of the disk copy did not end');
        assert.equal(end.detached, 'yes', 'the vhci copies stayed after usbwire stopped');
        assert.equal(end.kbd_reattached, 'yes', "the guest's usbhid was not bound to the keyboard again");
        assert.equal(end.storage_reattached, 'yes', "the guest's usb-storage was not bound to the disk again");
        assert.equal(end.host_disk, 'yes');
      },
    );

    await phase(
      '6. the same disk presented as UAS (--device 46f4:0001,as-uas=high: vhci-hcd has no streams): the copy is driven by uas',
      async () => {
        const sha = sha256File(img);
        const r = kv(
          await sh.ok(
            `
S=$(cat /tmp/S)
serve_bg $RIG_SHARE/serve6.log 46f4:0001,as-uas=high
wait_log $RIG_SHARE/serve6.log "host device 46f4:0001: exporting" || fail "not exported"
attach 1-1 || fail "usbip attach 1-1"
E=$(rig_wait_disk_via vhci_hcd 60) || fail "no vhci copy"
for i in /sys/bus/usb/drivers/uas/*:1.0; do [ -e "$i" ] && echo uas_bound=yes; done
echo queue_depth=$(cat /sys/block/$E/device/queue_depth)`,
            180_000,
          ),
        );
        assert.equal(r.uas_bound, 'yes', 'the guest did not bind uas to the BOT disk presented as UAS');
        assert.ok(Number(r.queue_depth) > 1, `queue depth ${r.queue_depth}`);
        await runDiskChecksInGuest(sh, g, {
          img,
          size: SIZE,
          sha,
          tag: 'asuas',
          filesystem: false,
          findDisk: FIND_VHCI_COPY,
        });
        const end = kv(await sh.ok(giveBack('serve6.log'), 120_000));
        assert.equal(end.closed, 'yes');
        assert.equal(end.reattached, 'yes', "the guest's usb-storage did not get the disk back");
      },
    );
  } finally {
    qmp?.close();
    sh.exit();
    const res = await g.done;
    t.diagnostic(`guest run ${((Date.now() - started) / 1000).toFixed(1)} s`);
    if (failed || res.rc !== 0) t.diagnostic(res.describe());
    else res.cleanup();
  }
});

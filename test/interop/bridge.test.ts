// The bridge against servers nobody here wrote, in ONE guest boot driven step by step from the
// host (guest-shell.ts). QEMU gives the guest two emulated usb-storage disks (46f4:0001, serials
// usbwire-a and usbwire-b) on their own qemu-xhci, plus a usb-redir device on a second qemu-xhci.
//
//   1. disk A → usbip-host + usbipd (guest :3240, host reaches it through hostfwd): the host's
//      usbip tool and UsbipClient list it, UsbipClient imports it, READ(10) matches the image.
//   2. direction A: usbwire serve --usbredir P --remote usbip://127.0.0.1:HP/BUSID → the same
//      guest's usb-redir → disk checks (whole-disk sha256, direct writes found in the image, ext4).
//   3. disk A unplugged (its hub port disabled: usbredirect opens the first 46f4:0001), disk B
//      authorised; usbredirect --as and --to: a raw usbredir guest-side probe gets hello,
//      interface_info, ep_info, device_connect.
//   4. direction B: usbredirect --as → usbwire serve --usbip P --remote usbredir://127.0.0.1:HP →
//      guest vhci-hcd (usbip attach) → disk checks.
//   5. direction B with usbredirect --to → usbwire --remote usbredir-listen:// → vhci-hcd → reads
//      and direct writes.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { Speed as RedirSpeed } from '../../src/protocol/usbredir/constants.js';
import { parseDeviceDescriptor } from '../../src/usb/descriptors.js';
import { TransferStatus } from '../../src/usb/status.js';
import { setConfiguration } from '../support/drive.js';
import {
  acceptOne,
  botRead10,
  connectTo,
  emulatedStorageArgs,
  guestStartUsbredirect,
  guestUsbipExport,
  guestUsbipUnexport,
  hostUsbipList,
  importWithClient,
  listWithClient,
  QEMU_STORAGE,
  usbredirGreeting,
} from './bridge-peers.js';
import { type InGuestChecks, KiB, MiB, prepareImage, runDiskChecksInGuest } from './disk-checks.js';
import { GuestShell } from './guest-shell.js';
import {
  freePort,
  interopFile,
  readAt,
  repoRoot,
  sha256File,
  sleep,
  startGuest,
  startUsbwire,
  type UsbwireServer,
  usbRedirArgs,
} from './rig.js';

const file = interopFile('bridge');
const { skip, work, servers } = file;

const SIZE = 32 * MiB;
const GUEST_USBIPD = 3240;
const GUEST_REDIR_AS = 4000;
const GUEST_REDIR_TO = 4001;
const REDIR_HC = '0x0b';
const REDIR_HC_PATH = '0000:00:0b.0';

function server(args: string[]): UsbwireServer {
  const s = startUsbwire(args, { readyPattern: /listening/i });
  servers.push(s);
  return s;
}

test('bridge: kernel usbipd and Debian usbredirect in one guest, both directions', {
  skip,
  timeout: 1_500_000,
}, async (t) => {
  const imgA = join(work, 'a.img');
  const imgB = join(work, 'b.img');
  const shaA = prepareImage({ img: imgA, seed: 'bridge-a', size: SIZE });
  prepareImage({ img: imgB, seed: 'bridge-b', size: SIZE });
  const hpUsbipd = await freePort();
  const hpRedirAs = await freePort();
  const hpRedirTo = await freePort();
  const pUsbredir = await freePort();
  const pUsbip = await freePort();
  const g = startGuest({
    modules: ['xhci_pci', 'usbip_host', 'vhci_hcd'],
    hostfwd: [
      { hostPort: hpUsbipd, guestPort: GUEST_USBIPD },
      { hostPort: hpRedirAs, guestPort: GUEST_REDIR_AS },
    ],
    guestfwd: [
      { guestPort: GUEST_REDIR_TO, hostPort: hpRedirTo },
      { guestPort: 3240, hostPort: pUsbip },
    ],
    qemuArgs: [
      ...emulatedStorageArgs([
        { id: 'da', img: imgA, serial: 'usbwire-a' },
        { id: 'db', img: imgB, serial: 'usbwire-b' },
      ]),
      ...usbRedirArgs([pUsbredir], { pciAddr: REDIR_HC }),
    ],
    timeoutMs: 1_400_000,
    // Disk B stays unauthorised (no driver) until step 3; usb-storage is loaded only when needed.
    script: `
rig_wait_usb ${QEMU_STORAGE.vid} ${QEMU_STORAGE.pid} usbwire-a > /dev/null || fail "disk A not found"
B=$(rig_wait_usb ${QEMU_STORAGE.vid} ${QEMU_STORAGE.pid} usbwire-b) || fail "disk B not found"
echo 0 > /sys/bus/usb/devices/$B/authorized
rig_command_loop
log "guest done"
`,
  });
  const sh = new GuestShell(g);
  let busidA = '';
  // A failed step stops its server, so the next step starts from a quiet guest.
  const failed = async (e: unknown, srv?: UsbwireServer) => {
    file.failed = true;
    if (srv) {
      await srv.stop();
      process.stderr.write(`--- usbwire output ---\n${srv.output()}\n`);
    }
    throw e;
  };

  try {
    await t.test(
      'usbip-host + usbipd: usbip list -r = usbwire list -r, UsbipClient list/import, READ(10) = image bytes',
      async (t2) => {
        const started = Date.now();
        const out = await sh.ok(guestUsbipExport('usbwire-a'), 120_000);
        busidA = out.trim().split('\n').pop()!;
        const list = hostUsbipList(hpUsbipd);
        assert.equal(list.status, 0, list.text);
        assert.ok(list.text.includes(`${busidA}:`), `usbip list -r shows ${busidA}:\n${list.text}`);
        assert.ok(list.text.includes(`(${QEMU_STORAGE.vid}:${QEMU_STORAGE.pid})`), list.text);
        const ours = spawnSync(
          process.execPath,
          [join(repoRoot, 'bin', 'usbwire.js'), 'list', '-r', '127.0.0.1', '--tcp-port', String(hpUsbipd)],
          { encoding: 'utf8', timeout: 30_000 },
        );
        assert.equal(ours.status, 0, `${ours.stdout}${ours.stderr}`);
        assert.equal(ours.stdout, list.stdout, 'usbwire list -r prints what usbip list -r prints (kernel usbipd)');
        const entries = await listWithClient(hpUsbipd);
        const e = entries.find((d) => d.busid === busidA);
        assert.ok(e, `UsbipClient.listDevices has ${busidA}: ${entries.map((d) => d.busid)}`);
        assert.equal(e.idVendor, 0x46f4);
        assert.equal(e.idProduct, 0x0001);
        const dev = await importWithClient(hpUsbipd, busidA);
        try {
          const desc = parseDeviceDescriptor(dev.descriptors.device);
          assert.equal(desc.vendorId, 0x46f4);
          assert.equal(desc.productId, 0x0001);
          // usbip-host unconfigures the device it binds (vhci-hcd's enumeration configures it).
          assert.equal(dev.configuration, 0, 'a device fresh from usbip-host is unconfigured');
          assert.equal((await setConfiguration(dev, 1)).status, TransferStatus.Ok, 'SET_CONFIGURATION 1');
          assert.equal(dev.configuration, 1, 'the client tracks SET_CONFIGURATION');
          for (const [lba, blocks] of [
            [0, 8],
            [SIZE / 512 - 8, 8],
            [4096 + 3, 128],
          ] as const) {
            const got = await botRead10(dev, lba, blocks);
            const want = await readAt(imgA, lba * 512, blocks * 512);
            assert.ok(got.equals(want), `READ(10) of ${blocks} blocks at LBA ${lba} differs from the image`);
          }
        } finally {
          await dev.close();
        }
        t2.diagnostic(`${((Date.now() - started) / 1000).toFixed(1)} s`);
      },
    );

    await t.test(
      'direction A: usbipd → usbwire --remote usbip:// → QEMU usb-redir: disk checks; connection dropped → re-import, disk back',
      async () => {
        assert.ok(busidA, 'the first step exported disk A');
        const srv = server([
          '--usbredir',
          `127.0.0.1:${pUsbredir}`,
          '--remote',
          `usbip://127.0.0.1:${hpUsbipd}/${busidA}`,
        ]);
        try {
          await srv.ready;
          await sh.ok('modprobe -a usb_storage sd_mod ext4 || fail modprobe');
          await runDiskChecksInGuest(sh, g, {
            img: imgA,
            size: SIZE,
            sha: shaA,
            seed: 'bridge-a',
            tag: 'a',
            findDisk: `D=$(rig_wait_disk_via ${REDIR_HC_PATH} 120) || fail "no disk through usb-redir"`,
          });
          // usbip-host drops the connection (as if the server went away): usbwire's device
          // disconnects, the disk leaves the guest; usbwire imports again and the disk comes back
          // to the same QEMU connection.
          await sh.ok(`echo -1 > /sys/bus/usb/devices/${busidA}/usbip_sockfd || fail "usbip_sockfd"
rig_wait_disk_gone $(cat /tmp/disk-a) 30 || fail "disk still there after usbip-host dropped the connection"`);
          const back = await sh.ok(`D=$(rig_wait_disk_via ${REDIR_HC_PATH} 60) || fail "the disk did not come back"
echo $D > /tmp/disk-a
rig_time sha_back sh -c "sha256sum /dev/$D | cut -d' ' -f1"
rig_time dd16k_x500 dd if=/dev/$D of=/dev/null bs=16k count=500 iflag=direct 2>/dev/null`);
          assert.equal(back.trim().split('\n').pop(), sha256File(imgA), 'whole disk after the re-import vs the image');
          assert.match(srv.output(), /disconnected/, 'usbwire logged the disconnect');
          // QEMU kept its connection: device_disconnect, then the re-imported disk as a new
          // device_connect on the same connection (one hello from QEMU in the whole step).
          assert.match(srv.output(), /went away; the connection stays open for its return/);
          assert.equal((srv.output().match(/guest "qemu usb-redir guest/g) ?? []).length, 1, srv.output());
          await srv.stop();
          await sh.ok(`rig_wait_disk_gone $(cat /tmp/disk-a) 30 || fail "disk still there after usbwire stopped"`);
        } catch (e) {
          await failed(e, srv);
        }
      },
    );

    await t.test('usbredirect --as and --to: hello, interface_info, ep_info, device_connect', async () => {
      // From here on disk B is the only 46f4:0001 in the guest, with no kernel driver on it.
      await sh.ok(`kill $(pidof usbipd) 2>/dev/null
${guestUsbipUnexport(busidA)}
rig_usb_unplug ${busidA}
rmmod usb_storage 2>/dev/null
echo 1 > /sys/bus/usb/devices/$(rig_usb_busid ${QEMU_STORAGE.vid} ${QEMU_STORAGE.pid} usbwire-b)/authorized`);
      await sh.ok(guestStartUsbredirect('usbwire-b', `--as 0.0.0.0:${GUEST_REDIR_AS}`, '/tmp/ur-as.log'));
      const s1 = await connectTo(hpRedirAs);
      try {
        checkGreeting(await usbredirGreeting(s1));
      } finally {
        s1.destroy();
      }
      await sh.ok(waitExited('/tmp/ur-as.log'));
      const listener = acceptOne(hpRedirTo);
      try {
        await sh.ok(guestStartUsbredirect('usbwire-b', `--to 10.0.2.100:${GUEST_REDIR_TO}`, '/tmp/ur-to.log'));
        const s2 = await listener.socket;
        try {
          checkGreeting(await usbredirGreeting(s2));
        } finally {
          s2.destroy();
        }
      } finally {
        listener.close();
      }
      await sh.ok(waitExited('/tmp/ur-to.log'));
    });

    /**
     * usbredirect on disk B → usbwire --usbip with `remote` → the guest's vhci-hcd → disk checks.
     * usbredirect --as listens, so it starts first; with --to usbwire must already listen.
     */
    const directionB = async (o: {
      remote: string;
      target: string;
      tag: string;
      checks: Partial<InGuestChecks>;
      reconnect?: boolean;
    }) => {
      const log = `/tmp/ur-${o.tag}.log`;
      const takeB = async () => {
        // usb-storage would take disk B whenever it is free: out while usbredirect starts.
        await sh.ok('rmmod usb_storage 2>/dev/null; true');
        await sh.ok(guestStartUsbredirect('usbwire-b', o.target, log));
        await sh.ok('modprobe -a usb_storage sd_mod ext4 || fail modprobe');
      };
      if (o.target.startsWith('--as')) await takeB();
      const srv = server(['--usbip', `127.0.0.1:${pUsbip}`, '--remote', o.remote]);
      try {
        await srv.ready;
        // The usbip line on stdout comes first; usbredirect --to needs the usbredir-listen socket.
        if (o.remote.startsWith('usbredir-listen:')) await outputMatches(srv, /listening for usbredir hosts/);
        if (!o.target.startsWith('--as')) await takeB();
        await sh.ok(guestUsbipAttach(), 120_000);
        await runDiskChecksInGuest(sh, g, {
          img: imgB,
          size: SIZE,
          sha: sha256File(imgB),
          tag: o.tag,
          findDisk: 'D=$(rig_wait_disk_via vhci_hcd 120) || fail "no disk through vhci-hcd"',
          ...o.checks,
        });
        if (o.reconnect) {
          // usbredirect goes away: usbwire's device disconnects and vhci-hcd loses the disk; a new
          // usbredirect comes up, usbwire connects again, the guest attaches the same busid again.
          await sh.ok(`kill $(cat ${log}.pid)
rig_wait_disk_gone $(cat /tmp/disk-${o.tag}) 30 || fail "vhci disk still there after usbredirect went away"`);
          await sh.ok(waitExited(log));
          await sh.ok(guestStartUsbredirect('usbwire-b', o.target, log));
          await sh.ok(guestUsbipAttach(), 120_000);
          const back = await sh.ok(`D=$(rig_wait_disk_via vhci_hcd 60) || fail "the disk did not come back"
echo $D > /tmp/disk-${o.tag}
rig_time sha_back sh -c "sha256sum /dev/$D | cut -d' ' -f1"
rig_time dd16k_x500 dd if=/dev/$D of=/dev/null bs=16k count=500 iflag=direct 2>/dev/null`);
          assert.equal(back.trim().split('\n').pop(), sha256File(imgB), 'whole disk after usbredirect came back');
        }
        await sh.ok(guestUsbipDetach(o.tag));
        await srv.stop();
        await sh.ok(waitExited(log));
      } catch (e) {
        await failed(e, srv);
      }
    };

    await t.test(
      'direction B: usbredirect --as → usbwire --remote usbredir:// → vhci-hcd: disk checks; usbredirect restarted → disk back',
      () =>
        directionB({
          remote: `usbredir://127.0.0.1:${hpRedirAs}`,
          target: `--as 0.0.0.0:${GUEST_REDIR_AS}`,
          tag: 'b',
          checks: { seed: 'bridge-b' },
          reconnect: true,
        }),
    );

    await t.test(
      'direction B: usbredirect --to → usbwire --remote usbredir-listen:// → vhci-hcd: reads, direct writes',
      () =>
        directionB({
          remote: `usbredir-listen://127.0.0.1:${hpRedirTo}`,
          target: `--to 10.0.2.100:${GUEST_REDIR_TO}`,
          tag: 'c',
          checks: {
            filesystem: false,
            writes: [
              { name: 'c0', offset: 1 * MiB, length: 64 * KiB },
              { name: 'c1', offset: 7 * MiB + 512, length: 130 * KiB },
            ],
          },
        }),
    );
  } finally {
    for (const [i, s] of servers.entries()) writeFileSync(join(work, `usbwire-${i + 1}.log`), s.output());
    sh.exit();
    const res = await g.done;
    // whole-disk reads (32 MiB) and 16 KiB × 500 direct reads in step order: A, A after
    // re-import, B, B after restart, B --to
    t.diagnostic(
      `guest read times (s): ${readFileSync(join(res.shareDir, 'times.txt'), 'utf8').trim().replace(/\n/g, ', ')}`,
    );
    if (res.rc !== 0) {
      file.failed = true;
      assert.fail(`guest did not end cleanly\n${res.describe()}`);
    }
    res.cleanup();
  }
});

/** Wait until the server's output (stdout and stderr: log lines go to stderr) matches. */
async function outputMatches(srv: UsbwireServer, re: RegExp, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!re.test(srv.output())) {
    if (Date.now() > deadline) throw new Error(`usbwire output never matched ${re}:\n${srv.output()}`);
    await sleep(50);
  }
}

function checkGreeting(gr: Awaited<ReturnType<typeof usbredirGreeting>>): void {
  assert.match(gr.hello.version, /usbredir/, `usbredirect's hello version: ${gr.hello.version}`);
  assert.equal(gr.connect.vendorId, 0x46f4);
  assert.equal(gr.connect.productId, 0x0001);
  assert.equal(gr.connect.speed, RedirSpeed.Super, 'QEMU usb-storage on qemu-xhci is SuperSpeed');
  const storage = gr.interfaces.interfaces.find((i) => i.interfaceClass === 8 && i.interfaceProtocol === 0x50);
  assert.ok(storage, `a bulk-only mass storage interface: ${JSON.stringify(gr.interfaces.interfaces)}`);
  const bulk = gr.endpoints.endpoints.filter((e) => e.type === 2);
  assert.equal(bulk.length, 2, 'two bulk endpoints in ep_info');
  assert.ok(
    bulk.every((e) => e.maxPacketSize === 1024),
    'ep_info max packet size 1024 (SuperSpeed bulk, needs the cap both sides have)',
  );
}

/** Guest commands: wait until the usbredirect that logs to LOG is gone (it exits with its connection). */
function waitExited(log: string): string {
  return `_pid=$(cat ${log}.pid)
_n=0
while kill -0 $_pid 2>/dev/null; do
  _n=$((_n + 1))
  [ $_n -gt 100 ] && { cat ${log}; fail "usbredirect still running 10 s after its connection ended"; }
  rig_nap 0.1
done
cat ${log}`;
}

/** Guest commands: usbip list -r through the relay, attach the one device listed. */
/** Guest commands: usbip list -r through the relay until usbwire lists a device (up to 30 s), attach it. */
function guestUsbipAttach(): string {
  return `_n=0
until usbip --tcp-port 3240 list -r 10.0.2.100 > /tmp/list.txt 2>&1 && BID=$(awk '/^ +[0-9]+-[0-9.]+: / { sub(":", "", $1); print $1; exit }' /tmp/list.txt) && [ -n "$BID" ]; do
  _n=$((_n + 1))
  [ $_n -gt 30 ] && { cat /tmp/list.txt; fail "usbwire lists no device after 30 s"; }
  rig_nap 1
done
cat /tmp/list.txt
echo $BID > /tmp/bridge-busid
usbip --tcp-port 3240 attach -r 10.0.2.100 -b $BID || { dmesg | tail -20; fail "usbip attach -b $BID"; }`;
}

function guestUsbipDetach(tag: string): string {
  return `P=$(rig_usbip_port_of $(cat /tmp/bridge-busid))
[ -n "$P" ] || fail "usbip port does not show the bridged device"
usbip detach -p $P || fail "usbip detach -p $P"
rig_wait_disk_gone $(cat /tmp/disk-${tag}) 30 || fail "disk still there after detach"`;
}

// USB/IP interop: the Linux kernel client (vhci-hcd + usbip tool) in a QEMU guest against
// `usbwire serve --usbip` on this host's loopback (guest 10.0.2.100:3240 → relay → host).
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import { MiB, runDiskScenario } from './disk-checks.js';
import { freePort, interopFile, readKV, startUsbwire, type UsbwireServer } from './rig.js';

const file = interopFile('usbip');
const { skip, work, servers } = file;

test('usbip: list, attach, whole-disk checksum, direct pattern writes, ext4 round trip, detach', {
  skip,
  timeout: 420_000,
}, async (t) => {
  const img = join(work, 'disk.img');
  const port = await freePort();
  const size = 64 * MiB;
  let srv: UsbwireServer | undefined;
  try {
    const res = await runDiskScenario({
      img,
      seed: 'usbip-disk',
      size,
      modules: ['vhci_hcd', 'usb_storage', 'sd_mod', 'ext4'],
      boot: {
        guestfwd: [{ guestPort: 3240, hostPort: port }],
        timeoutMs: 360_000,
      },
      attach: `
usbip --tcp-port 3240 list -r 10.0.2.100 > /tmp/list.txt 2>&1 || { cat /tmp/list.txt; fail "usbip list -r"; }
cat /tmp/list.txt
grep -q ' 1-1:' /tmp/list.txt || fail "busid 1-1 not in the list"
rig_result listed yes
usbip --tcp-port 3240 attach -r 10.0.2.100 -b 1-1 || { rig_dmesg attach; fail "usbip attach"; }
rig_result attached yes
`,
      detach: `
usbip port > /tmp/port.txt 2>&1
cat /tmp/port.txt
P=$(rig_usbip_port_of 1-1)
[ -n "$P" ] || fail "usbip port does not show 1-1"
rig_result port $P
usbip detach -p $P || fail "usbip detach -p $P"
rig_wait_disk_gone $D 30 || fail "disk $D still there 30 s after detach"
usbip port 2>&1 | grep -q '1-1' && fail "usbip port still lists 1-1 after detach"
rig_result detached yes
`,
      beforeBoot: async () => {
        srv = startUsbwire(['--usbip', `127.0.0.1:${port}`, '--disk', img]);
        servers.push(srv);
        await srv.ready;
      },
    });
    const kv = readKV(res.shareDir);
    assert.equal(kv.detached, 'yes');
    t.diagnostic(`guest run ${(res.durationMs / 1000).toFixed(1)} s`);
    res.cleanup();
  } catch (e) {
    file.failed = true;
    if (srv) process.stderr.write(`--- usbwire output ---\n${srv.output()}\n`);
    throw e;
  }
});

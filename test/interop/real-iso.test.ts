// Isochronous OUT end to end with a real device: QEMU's usb-audio on the guest's xHCI → usbwire
// in the guest (LibusbDevice) → USB/IP on 127.0.0.1 → vhci-hcd → an iso client on the vhci copy
// (real-iso-client.ts). QEMU records the device's traffic (usb-audio's pcap=): every packet the
// client sent must be in it byte for byte.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { bootRealGuest, GUEST_NODE, guestNodeShare, realDeviceSkip } from './real-guest-node.js';
import { isoMarker } from './real-iso-client.js';
import { readKV } from './rig.js';

const TRANSFERS = 20;
const PACKETS = 8;

const SCRIPT = `${GUEST_NODE}
# find_audio vhci|host: busid of QEMU's usb-audio (vendor 46f4) behind vhci-hcd or the xHCI
find_audio() {
  for _d in /sys/bus/usb/devices/*; do
    [ "$(cat $_d/idVendor 2>/dev/null)" = 46f4 ] || continue
    case "$(readlink -f $_d)" in *vhci*) _k=vhci ;; *) _k=host ;; esac
    [ "$_k" = "$1" ] && { echo \${_d##*/}; return 0; }
  done
  return 1
}
wait_audio() {
  _n=0
  until find_audio $1; do _n=$((_n + 1)); [ $_n -gt 300 ] && return 1; sleep 0.1; done
}
AUD=$(wait_audio host) || fail "no usb-audio on the xHCI"
log "usb-audio at $AUD"
real_serve $AUD "$RIG_SHARE/serve.log"
usbip --tcp-port 3240 attach -r 127.0.0.1 -b 1-1 || fail "usbip attach"
COPY=$(wait_audio vhci) || fail "no vhci copy of usb-audio"
log "vhci copy at $COPY"
$NODE "$RIG_SHARE/app/dist/test/interop/real-iso-client.js" $COPY ${TRANSFERS} ${PACKETS} > "$RIG_SHARE/iso.json" 2> "$RIG_SHARE/iso.err"
rig_result client_rc $?
usbip detach -p 0
sleep 1
stop_serve "$RIG_SHARE/serve.log" && rig_result closed yes
rig_result done yes
`;

test('isochronous OUT through usbwire (libusb) to QEMU usb-audio, checked in QEMU pcap', {
  skip: realDeviceSkip(),
  timeout: 300_000,
}, async (t) => {
  const share = guestNodeShare('real-iso');
  const pcap = join(share, 'audio.pcap');
  const res = await bootRealGuest(share, {
    modules: ['vhci_hcd', 'xhci_pci'],
    timeoutMs: 240_000,
    qemuArgs: [
      '-device',
      'qemu-xhci,id=xhci',
      '-audiodev',
      'none,id=snd0',
      '-device',
      `usb-audio,audiodev=snd0,bus=xhci.0,pcap=${pcap}`,
    ],
    script: SCRIPT,
  });
  const kv = readKV(share);
  assert.equal(
    kv.client_rc,
    '0',
    `iso client failed: ${readFileSync(join(share, 'iso.err'), 'utf8')}\n${res.describe()}`,
  );
  const got = JSON.parse(readFileSync(join(share, 'iso.json'), 'utf8')) as {
    size: number;
    ok: number;
    bytes: number;
    ms: number;
  };
  t.diagnostic(`iso client: ${JSON.stringify(got)}`);
  assert.equal(got.ok, TRANSFERS, 'every iso transfer and packet completed whole');
  assert.equal(got.bytes, TRANSFERS * PACKETS * got.size);
  const capture = readFileSync(pcap);
  let missing = 0;
  for (let n = 0; n < TRANSFERS; n++) {
    for (let p = 0; p < PACKETS; p++) if (capture.indexOf(isoMarker(n, p, got.size)) < 0) missing++;
  }
  assert.equal(missing, 0, `${missing} of ${TRANSFERS * PACKETS} packets not found intact in QEMU's capture`);
  assert.equal(kv.closed, 'yes', `usbwire did not close on SIGTERM\n${res.describe()}`);
  assert.equal(kv.done, 'yes', res.describe());
  res.cleanup();
});

// A real device through libusb, end to end in one guest: a configfs SourceSink gadget on
// dummy_hcd → usbwire in the guest (LibusbDevice) → USB/IP on the guest's 127.0.0.1 → the same
// guest's vhci-hcd → the kernel's usbtest + testusb against the vhci copy. At the end usbwire
// gets SIGTERM and the gadget's own usbtest binding must come back (kernel driver re-attached).
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type TestContext, test } from 'node:test';
import { GUEST_HELPERS } from './gadget-zero-plan.js';
import { bootRealGuest, GUEST_NODE, guestNodeSkip, prepareGadgetModules, prepareGuestNode } from './real-guest-node.js';
import { interopGate, readKV } from './rig.js';

/** testusb arguments that suit SourceSink (real-devices.md); unlink cases (11, 12, 24) last. */
const CASES: [number, string][] = [
  [0, ''],
  [1, '-c 20 -s 4096'],
  [2, '-c 20 -s 4096'],
  [3, '-c 20 -s 4096 -v 421'],
  [4, '-c 20 -s 4096'],
  [5, '-c 10 -s 4096 -g 8'],
  [6, '-c 10 -s 4096 -g 8'],
  [7, '-c 10 -s 4096 -g 8 -v 579'],
  [8, '-c 10 -s 4096 -g 8'],
  [9, '-c 10 -s 512'],
  [10, '-c 10 -s 512 -g 16'],
  [13, '-c 10'],
  [14, '-c 20 -s 1024 -v 512'],
  [17, '-c 20 -s 4096'],
  [18, '-c 20 -s 4096'],
  [19, '-c 20 -s 4096'],
  [20, '-c 20 -s 4096'],
  [21, '-c 20 -s 1024 -v 512'],
  [27, '-c 10 -s 65536 -g 8'],
  [28, '-c 10 -s 65536 -g 8'],
  [29, '-c 10'],
  [11, '-c 20 -s 4096'],
  [12, '-c 20 -s 4096'],
  [24, '-c 10 -s 4096 -g 8'],
];

/**
 * USBWIRE_REAL_COMPARE=1: larger runs timed for usbwire and then for the kernel's usbip-host on
 * the same gadget in the same boot, with the guest's busy CPU time (jiffies, /proc/stat) for each.
 * usbip-host is left out of the unlink cases (GPF in stub_rx_loop on test 11, kernel 6.1).
 */
const COMPARE = process.env.USBWIRE_REAL_COMPARE === '1';
const COMPARE_CASES: [number, string][] = [
  [1, '-c 500 -s 4096'],
  [2, '-c 500 -s 4096'],
  [9, '-c 100 -s 512'],
  [10, '-c 100 -s 512 -g 16'],
  [27, '-c 80 -s 65536 -g 8'],
  [28, '-c 80 -s 65536 -g 8'],
];
const UNLINK = [11, 12, 24];

const COMPARE_HELPERS = `
busy() { read _c u n s i w q sq _r < /proc/stat; echo $((u + n + s + q + sq)); }
cmp_case() { _b0=$(busy); run_case "$@"; _b1=$(busy); rig_result $1_cpu$3 $((_b1 - _b0)); }
`;

function comparePhase(proto: string, cases: [number, string][]): string {
  return cases.map(([n, a]) => `cmp_case ${proto} $1 ${n} ${a}`).join('\n');
}

function kernelPhase(): string {
  return `
modprobe usbip-host || fail "usbip-host"
usbipd -D || fail "usbipd"
sleep 1
usbip bind -b $GADGET || fail "usbip bind $GADGET"
usbip attach -r 127.0.0.1 -b $GADGET || fail "usbip attach (usbip-host)"
R=$(gz_wait usbip) || { rig_dmesg; fail "usbip-host copy did not enumerate"; }
set -- $R
${CASES.filter(([n]) => !UNLINK.includes(n))
  .map(([n, a]) => `run_case kernel $1 ${n} ${a}`)
  .join('\n')}
${comparePhase('kcmp', COMPARE_CASES)}
usbip detach -p 0
sleep 1
usbip unbind -b $GADGET
killall usbipd
# usbwire's own emulated gadget zero, same server, same vhci: what is left is the libusb side.
$NODE "$RIG_SHARE/app/bin/usbwire.js" serve --usbip 127.0.0.1:3240 --gadget-zero > "$RIG_SHARE/emulated.log" 2>&1 &
EMU=$!
n=0
until grep -q "listening" "$RIG_SHARE/emulated.log"; do
  n=$((n + 1)); [ $n -gt 600 ] && fail "usbwire --gadget-zero did not start"
  sleep 0.1
done
usbip --tcp-port 3240 attach -r 127.0.0.1 -b 1-1 || fail "usbip attach (emulated)"
R=$(gz_wait usbip) || fail "emulated gadget zero did not enumerate"
set -- $R
${comparePhase('ecmp', COMPARE_CASES)}
usbip detach -p 0
kill -TERM $EMU
wait $EMU
`;
}

/**
 * The gadget unplugged while exported and attached: usbwire notices (libusb drops the device's
 * fd), the USB/IP client sees the detach, usbwire keeps running. Then "claim a port": the gadget
 * comes back on the same port as another product (a firmware upload's re-enumeration); usbwire,
 * exporting the port path, exports it under the same busid and the client attaches it again.
 */
const UNPLUG_PHASE = `
real_serve $GADGET "$RIG_SHARE/serve2.log"
usbip --tcp-port 3240 attach -r 127.0.0.1 -b 1-1 || fail "usbip attach (unplug phase)"
gz_wait usbip > /dev/null || fail "vhci copy did not enumerate (unplug phase)"
echo "" > $G/UDC
n=0
while [ -n "$(rig_usbip_port_of 1-1)" ]; do n=$((n + 1)); [ $n -gt 100 ] && break; sleep 0.1; done
[ -z "$(rig_usbip_port_of 1-1)" ] && rig_result unplug_detached yes
grep -q "device went away\\|unplugged" "$RIG_SHARE/serve2.log" && rig_result unplug_noticed yes
kill -0 $SERVE 2>/dev/null && rig_result unplug_alive yes
echo 0xa4a1 > $G/idProduct
echo dummy_udc.0 > $G/UDC || fail "bind dummy_udc.0 again"
n=0
until grep -q "exporting $GADGET (0525:a4a1" "$RIG_SHARE/serve2.log"; do n=$((n + 1)); [ $n -gt 300 ] && break; sleep 0.1; done
grep -q "exporting $GADGET (0525:a4a1" "$RIG_SHARE/serve2.log" && rig_result port_reexported yes
n=0
until usbip --tcp-port 3240 attach -r 127.0.0.1 -b 1-1 2>/dev/null; do n=$((n + 1)); [ $n -gt 50 ] && break; sleep 0.2; done
vhci_a4a1() {
  for d in /sys/bus/usb/devices/*; do
    [ "$(cat $d/idProduct 2>/dev/null)" = a4a1 ] || continue
    case "$(readlink -f $d)" in *vhci*) return 0 ;; esac
  done
  return 1
}
n=0
until vhci_a4a1; do n=$((n + 1)); [ $n -gt 150 ] && break; sleep 0.1; done
vhci_a4a1 && rig_result port_reattached_pid a4a1
usbip detach -p 0 2>/dev/null
sleep 1
stop_serve "$RIG_SHARE/serve2.log" && rig_result unplug_closed yes
`;

type Speed = 'high' | 'super';
/** USBWIRE_REAL_SPEED=high or super runs only that one. */
const SPEEDS = (process.env.USBWIRE_REAL_SPEED?.split(',') ?? ['high', 'super']) as Speed[];

function guestScript(speed: Speed): string {
  const hcd = speed === 'super' ? 'is_super_speed=1' : 'is_high_speed=1';
  return `${GUEST_HELPERS}
${GUEST_NODE}
${COMPARE_HELPERS}
guest_gadget_modules ${hcd}
mount -t configfs none /sys/kernel/config 2>/dev/null
G=/sys/kernel/config/usb_gadget/ss
mkdir $G || fail "configfs gadget"
echo 0x0525 > $G/idVendor
echo 0xa4a0 > $G/idProduct
mkdir $G/strings/0x409 && echo usbwire-real > $G/strings/0x409/serialnumber
mkdir $G/functions/SourceSink.0 || fail "SourceSink function"
# gadget zero's SourceSink configuration is number 3 (gz_wait looks for interface :3.0)
mkdir $G/configs/c.3
ln -s $G/functions/SourceSink.0 $G/configs/c.3/
echo dummy_udc.0 > $G/UDC || fail "bind dummy_udc.0"
R=$(gz_wait usbredir) || { rig_dmesg; fail "gadget did not enumerate with usbtest bound"; }
set -- $R
GADGET=$2
log "gadget $R speed $(cat /sys/bus/usb/devices/$GADGET/speed)"
rig_result gadget_speed $(cat /sys/bus/usb/devices/$GADGET/speed)
read t0 _x < /proc/uptime
real_serve 0525:a4a0 "$RIG_SHARE/serve.log"
read t1 _x < /proc/uptime
log "usbwire ready after $t0 -> $t1"
[ -e /sys/bus/usb/drivers/usbtest/$GADGET:3.0 ] && fail "usbtest still bound to the gadget after detach"
usbip --tcp-port 3240 attach -r 127.0.0.1 -b 1-1 || fail "usbip attach"
R=$(gz_wait usbip) || { rig_dmesg; fail "vhci copy did not enumerate with usbtest bound"; }
set -- $R
rig_result usbip_speed $(cat /sys/bus/usb/devices/$2/speed)
RUN_CASE_LIMIT=60
${CASES.map(([n, a]) => `run_case usbip $1 ${n} ${a}`).join('\n')}
${COMPARE ? comparePhase('wcmp', COMPARE_CASES) : ''}
usbip detach -p 0
sleep 1
stop_serve "$RIG_SHARE/serve.log" && rig_result closed yes
n=0
until [ -e /sys/bus/usb/drivers/usbtest/$GADGET:3.0 ]; do n=$((n + 1)); [ $n -gt 50 ] && break; sleep 0.1; done
[ -e /sys/bus/usb/drivers/usbtest/$GADGET:3.0 ] && rig_result reattached yes
${COMPARE ? kernelPhase() : ''}
${UNPLUG_PHASE}
rig_dmesg end
rig_result done yes
`;
}

const gate = interopGate();
const skip = gate.skip || guestNodeSkip();

for (const speed of SPEEDS) {
  test(
    `real device through libusb (SourceSink gadget, ${speed} speed): usbtest over USB/IP in one guest`,
    {
      skip,
      timeout: 600_000,
    },
    (t) => runSpeed(t, speed),
  );
}

async function runSpeed(t: TestContext, speed: Speed): Promise<void> {
  const share = mkdtempSync(join(tmpdir(), 'usbwire-real-'));
  prepareGuestNode(share);
  prepareGadgetModules(share);
  const res = await bootRealGuest(share, {
    modules: ['vhci_hcd', 'usbtest'],
    timeoutMs: 540_000,
    script: guestScript(speed),
  });
  const kv = readKV(share);
  if (kv.done !== 'yes') t.diagnostic(res.describe());
  t.diagnostic(
    `guest run ${(res.durationMs / 1000).toFixed(1)} s, gadget ${kv.gadget_speed}, vhci copy ${kv.usbip_speed}`,
  );
  for (const [n, args] of CASES) {
    const got = kv[`usbip_t${n}`] ?? 'missing';
    await t.test(`test ${n} (${args}): ${got}`, () => {
      assert.match(got, /^pass [0-9.]+$/, `test ${n}: ${got}`);
    });
  }
  if (COMPARE) reportComparison(t, kv);
  assert.equal(kv.usbip_speed, speed === 'super' ? '5000' : '480', res.describe());
  assert.equal(kv.closed, 'yes', `usbwire did not close on SIGTERM\n${res.describe()}`);
  assert.equal(kv.reattached, 'yes', `kernel driver not re-attached\n${res.describe()}`);
  assert.equal(kv.unplug_noticed, 'yes', `usbwire did not notice the unplug\n${res.describe()}`);
  assert.equal(kv.unplug_detached, 'yes', `the USB/IP client did not see the detach\n${res.describe()}`);
  assert.equal(kv.unplug_alive, 'yes', `usbwire exited on unplug\n${res.describe()}`);
  assert.equal(kv.port_reexported, 'yes', `the port's new device (0525:a4a1) was not exported\n${res.describe()}`);
  assert.equal(kv.port_reattached_pid, 'a4a1', `the client did not attach the port's new device\n${res.describe()}`);
  assert.equal(kv.unplug_closed, 'yes', `usbwire did not stop after the unplug\n${res.describe()}`);
  assert.equal(kv.done, 'yes', res.describe());
  res.cleanup();
}

/** usbwire vs usbip-host: usbtest's time and the guest's busy jiffies per case (diagnostics only). */
function reportComparison(t: TestContext, kv: Record<string, string>): void {
  const secs = (v: string | undefined) => (v?.startsWith('pass ') ? Number(v.slice(5)) : Number.NaN);
  for (const [n] of CASES) {
    if (!UNLINK.includes(n)) t.diagnostic(`usbip-host test ${n}: ${kv[`kernel_t${n}`] ?? 'missing'}`);
  }
  for (const [n, args] of COMPARE_CASES) {
    const w = secs(kv[`wcmp_t${n}`]);
    const k = secs(kv[`kcmp_t${n}`]);
    t.diagnostic(
      `test ${n} (${args}): usbwire ${w.toFixed(3)} s (cpu ${kv[`wcmp_cpu${n}`]} jiffies), ` +
        `usbip-host ${k.toFixed(3)} s (cpu ${kv[`kcmp_cpu${n}`]} jiffies), usbwire/kernel time ${(w / k).toFixed(2)}; ` +
        `usbwire's emulated gadget zero ${secs(kv[`ecmp_t${n}`]).toFixed(3)} s (cpu ${kv[`ecmp_cpu${n}`]} jiffies)`,
    );
  }
}

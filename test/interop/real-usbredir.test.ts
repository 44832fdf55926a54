// A real device over usbredir to a second QEMU: the configfs SourceSink gadget on dummy_hcd in
// guest A, exported by usbwire inside guest A (LibusbDevice) over usbredir; guest B's QEMU
// usb-redir (qemu-xhci) connects to it through the host (two-guests.ts), and the kernel's usbtest
// + testusb in guest B run against it. Then "claim a port" over usbredir: the gadget in guest A
// re-enumerates on the same port as another product (0525:a4a1) and back, and guest B sees each
// one on the SAME usbredir connection (device_disconnect + device_connect, one hello in usbwire's
// log); the last case (24, known to hang on QEMU's xHCI) runs on the device that came back.
import assert from 'node:assert/strict';
import { type TestContext, test } from 'node:test';
import { CASES as EMULATED_CASES, GUEST_HELPERS } from './gadget-zero-plan.js';
import { realDeviceSkip } from './real-guest-node.js';
import { EXPORTER_HELPERS, runTwoGuests } from './two-guests.js';

interface RealCase {
  num: number;
  /** testusb arguments that suit SourceSink (shared/rig/real-devices.md) */
  args: string;
  /** known failure, asserted as a todo (same text as the emulated gadget zero's) */
  blocked?: string;
}

const blocked24 = EMULATED_CASES.find((c) => c.num === 24)?.blocked?.usbredir;

/** Everything that applies to SourceSink on dummy_hcd (no iso: 15/16/22/23; no interrupt: 25/26). */
const MAIN: RealCase[] = [
  { num: 0, args: '' },
  { num: 1, args: '-c 20 -s 4096' },
  { num: 2, args: '-c 20 -s 4096' },
  { num: 3, args: '-c 20 -s 4096 -v 421' },
  { num: 4, args: '-c 20 -s 4096' },
  { num: 5, args: '-c 10 -s 4096 -g 8' },
  { num: 6, args: '-c 10 -s 4096 -g 8' },
  { num: 7, args: '-c 10 -s 4096 -g 8 -v 579' },
  { num: 8, args: '-c 10 -s 4096 -g 8' },
  { num: 9, args: '-c 10 -s 512' },
  { num: 10, args: '-c 10 -s 512 -g 16' },
  { num: 13, args: '-c 10' },
  { num: 14, args: '-c 20 -s 1024 -v 512' },
  { num: 17, args: '-c 20 -s 4096' },
  { num: 18, args: '-c 20 -s 4096' },
  { num: 19, args: '-c 20 -s 4096' },
  { num: 20, args: '-c 20 -s 4096' },
  { num: 21, args: '-c 20 -s 1024 -v 512' },
  { num: 27, args: '-c 10 -s 65536 -g 8' },
  { num: 28, args: '-c 10 -s 65536 -g 8' },
  { num: 29, args: '-c 10' },
  // unlink cases: a hang there must not cost the others
  { num: 11, args: '-c 20 -s 4096' },
  { num: 12, args: '-c 20 -s 4096' },
];
/** After the replug: a hang here (QEMU's xHCI) costs nothing else. */
const LAST: RealCase[] = [{ num: 24, args: '-c 10 -s 4096 -g 8', ...(blocked24 ? { blocked: blocked24 } : {}) }];

type Speed = 'high' | 'super';
/** USBWIRE_REAL_SPEED=high or super runs only that one. */
const SPEEDS = (process.env.USBWIRE_REAL_SPEED?.split(',') ?? ['high', 'super']) as Speed[];

const runCases = (list: RealCase[]) => list.map((c) => `run_case redir $1 ${c.num} ${c.args}`).join('\n');

/** Guest A: the gadget, usbwire exporting its port over usbredir, the PID changes B asks for. */
function exporterScript(speed: Speed): string {
  return `${EXPORTER_HELPERS}
# wait_step NAME: until the host relays guest B's step NAME; false when B has finished instead
wait_step() {
  until [ -e "$RIG_SHARE/host-$1" ]; do [ -e "$RIG_SHARE/host-b-done" ] && return 1; rig_nap 0.2; done
}
# morph PID N: the gadget leaves the port and comes back as 0525:PID; usbwire's N-th export of it
morph() {
  echo "" > $G/UDC
  echo 0x$1 > $G/idProduct
  echo dummy_udc.0 > $G/UDC || fail "bind dummy_udc.0 again"
  _n=0
  until [ "$(grep -c "exporting $GADGET (0525:$1" "$RIG_SHARE/serve.log")" -ge $2 ]; do
    _n=$((_n + 1)); [ $_n -gt 300 ] && return 1; sleep 0.1
  done
}
guest_gadget_modules ${speed === 'super' ? 'is_super_speed=1' : 'is_high_speed=1'}
source_sink_gadget a4a0
GADGET=$(rig_wait_usb 0525 a4a0 "" 30) || { rig_dmesg; fail "gadget did not enumerate"; }
rig_result gadget_speed $(cat /sys/bus/usb/devices/$GADGET/speed)
read t0 _x < /proc/uptime
real_serve_usbredir $GADGET "$RIG_SHARE/serve.log"
read t1 _x < /proc/uptime
log "usbwire exporting $GADGET over usbredir after $t0 -> $t1"
exporter_ready
if wait_step replug; then
  morph a4a1 1 && rig_result reexported_a4a1 yes
  if wait_step replug-back; then morph a4a0 2 && rig_result reexported_a4a0 yes; fi
fi
exporter_wait_b
rig_result hellos $(grep -c 'caps 0x' "$RIG_SHARE/serve.log")
rig_result kept_open $(grep -c 'went away; the connection stays open' "$RIG_SHARE/serve.log")
stop_serve "$RIG_SHARE/serve.log" && rig_result closed yes
rig_dmesg end
rig_result done yes
`;
}

/** Guest B: usbtest against the usb-redir copy, then watch the port change product and back. */
function importerScript(): string {
  return `${GUEST_HELPERS}
R=$(gz_wait usbredir) || { rig_dmesg; fail "no gadget over usb-redir with usbtest bound"; }
set -- $R
rig_result redir_speed $(cat /sys/bus/usb/devices/$2/speed)
RUN_CASE_LIMIT=60
${runCases(MAIN)}
rig_dmesg cases
rig_stage replug
if B=$(rig_wait_usb 0525 a4a1 "" 60); then
  rig_result replug_pid $(cat /sys/bus/usb/devices/$B/idProduct)
  rig_result replug_a4a0_left $(rig_usb_count 0525 a4a0)
fi
rig_stage replug-back
R=$(gz_wait usbredir) || { rig_dmesg; fail "the gadget did not come back as 0525:a4a0 with usbtest bound"; }
set -- $R
rig_result back yes
RUN_CASE_LIMIT=30
${runCases(LAST)}
rig_dmesg end
rig_result done yes
`;
}

for (const speed of SPEEDS) {
  test(
    `real device over usbredir to a second QEMU (SourceSink gadget, ${speed} speed): usbtest, claim a port`,
    { skip: realDeviceSkip(), timeout: 600_000 },
    (t) => runSpeed(t, speed),
  );
}

async function runSpeed(t: TestContext, speed: Speed): Promise<void> {
  const run = await runTwoGuests({
    name: `real-usbredir-${speed}`,
    exporter: { gadget: true, script: exporterScript(speed) },
    importer: { modules: ['usbtest'], script: importerScript() },
    links: [
      { from: 'b', stage: 'replug', signal: 'replug' },
      { from: 'b', stage: 'replug-back', signal: 'replug-back' },
    ],
    timeoutMs: 540_000,
  });
  const { aKV: a, bKV: b } = run;
  t.diagnostic(
    `guest A ready after ${run.readySecs?.toFixed(1)} s, guest A ${(run.a.durationMs / 1000).toFixed(1)} s, ` +
      `guest B ${run.b ? (run.b.durationMs / 1000).toFixed(1) : '-'} s, total ${run.totalSecs.toFixed(1)} s; ` +
      `gadget ${a.gadget_speed}, usb-redir copy ${b.redir_speed}`,
  );
  if (a.done !== 'yes' || b.done !== 'yes') t.diagnostic(run.describe());
  for (const c of [...MAIN, ...LAST]) {
    const got = b[`redir_t${c.num}`] ?? 'missing';
    await t.test(`test ${c.num} (${c.args}): ${got}`, c.blocked ? { todo: c.blocked } : {}, () => {
      assert.match(got, /^pass [0-9.]+$/, `test ${c.num}: ${got}`);
    });
  }
  const why = () => run.describe();
  assert.equal(b.redir_speed, speed === 'super' ? '5000' : '480', why());
  assert.equal(a.reexported_a4a1, 'yes', `usbwire did not export the port's new device (0525:a4a1)\n${why()}`);
  assert.equal(b.replug_pid, 'a4a1', `guest B did not see the port's new device\n${why()}`);
  assert.equal(b.replug_a4a0_left, '0', `guest B still has the old device\n${why()}`);
  assert.equal(a.reexported_a4a0, 'yes', `usbwire did not export the port's device again (0525:a4a0)\n${why()}`);
  assert.equal(b.back, 'yes', why());
  assert.equal(a.hellos, '1', `not one usbredir connection for the whole run\n${why()}`);
  assert.equal(a.kept_open, '2', `usbwire did not keep the connection over both replugs\n${why()}`);
  assert.equal(a.closed, 'yes', `usbwire did not close on SIGTERM\n${why()}`);
  assert.equal(b.done, 'yes', why());
  assert.equal(a.done, 'yes', why());
  run.cleanup();
}

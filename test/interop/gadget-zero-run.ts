// One guest runs the kernel's usbtest suite (usbtest.ko + testusb) against two gadget zeros: one
// attached with `usbip attach` (vhci-hcd, busid 1-1 of the server on the guest's port 3240), the
// other by QEMU's usb-redir on qemu-xhci. The guest records per protocol and test number
// pass/fail/skip and the duration usbtest measured; the host asserts them one by one (see
// gadget-zero-plan.ts). Who serves the two devices is up to the caller: usbwire directly, or
// usbwire re-exporting another usbwire's devices (the bridge).
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { CASES, GUEST_HELPERS, guestRunCases, type Protocol } from './gadget-zero-plan.js';
import {
  type GuestResult,
  type InteropFile,
  readKV,
  sleep,
  startGuest,
  type UsbwireServer,
  usbRedirArgs,
  waitForFile,
} from './rig.js';

export const PROTOCOLS = (process.env.USBWIRE_GZ_PROTOCOLS?.split(',') ?? ['usbip', 'usbredir']) as Protocol[];
export const GZ_DEBUG = !!process.env.USBWIRE_GZ_DEBUG;

// USBWIRE_GZ_ONLY=24,29 runs only those cases (for chasing one failure).
const only = process.env.USBWIRE_GZ_ONLY?.split(',').map(Number);
const cases = only ? CASES.filter((c) => only.includes(c.num)) : CASES;

/** The unlink cases (a hang there must not cost the others): the ones expected to pass, or the known-blocked ones. */
function riskyPhase(blocked: boolean): string {
  const last = cases.filter((c) => c.last);
  const runs = PROTOCOLS.map((p) => {
    const list = last.filter((c) => !!c.blocked?.[p] === blocked);
    return list.length ? `D=$(cat /tmp/dev-${p})\n${guestRunCases(p, '$D', list)}` : '';
  });
  return ['RUN_CASE_LIMIT=30', ...runs].filter(Boolean).join('\n');
}

function guestScript(): string {
  const phase = (list: typeof CASES) =>
    PROTOCOLS.map((p) => `D=$(cat /tmp/dev-${p})\n${guestRunCases(p, '$D', list)}`).join('\n');
  return `${GUEST_HELPERS}
${PROTOCOLS.includes('usbip') ? 'usbip --tcp-port 3240 attach -r 10.0.2.100 -b 1-1 || fail "usbip attach 1-1"' : ''}
for p in ${PROTOCOLS.join(' ')}; do
  R=$(gz_wait $p) || { rig_dmesg wait; fail "$p: no gadget zero with usbtest bound"; }
  set -- $R
  echo $1 > /tmp/dev-$p
  echo $2 > /tmp/port-$p
  rig_result \${p}_dev $1
  rig_result \${p}_speed $(cat /sys/bus/usb/devices/$2/speed)
done
${phase(cases.filter((c) => !c.alt1 && !c.last))}
${riskyPhase(false)}
rig_dmesg alt0
# usbtest picks its alternate setting when it binds (module parameter alt): bind again with alt=1
# to reach the iso endpoints. A device whose usbtest is stuck cannot be unbound: skip it. What
# needs alt 0 runs before: the guest froze now and then while going back from alt 1 to alt 0
# (before preempt=full and the non-blocking relay; the order costs nothing, so it stays).
echo 1 > /sys/module/usbtest/parameters/alt || fail "usbtest has no writable alt parameter"
for p in ${PROTOCOLS.join(' ')}; do
  [ -e /tmp/hung-$p ] && continue
  I=$(cat /tmp/port-$p):3.0
  echo $I > /sys/bus/usb/drivers/usbtest/unbind || fail "unbind $I"
  echo $I > /sys/bus/usb/drivers/usbtest/bind || fail "bind $I"
  [ "$(cat /sys/bus/usb/devices/$I/bAlternateSetting)" -eq 1 ] || fail "$p: usbtest did not select alt 1"
done
${phase(cases.filter((c) => c.alt1))}
rig_dmesg alt1
# Known-blocked cases last (see gadget-zero-plan.ts): their hang costs nothing else. usbtest runs
# them at alt 1, whose bulk pair is the same as alt 0's.
${riskyPhase(true)}
rig_dmesg end
rig_result done yes
`;
}

/** Where the guest finds its two gadget zeros: usbip busid 1-1 on this host port, usbredir on this one. */
export interface GadgetZeroServers {
  usbipPort: number;
  usbredirPort: number;
  /** Everything started, to show when something fails (the caller adds each to file.servers as it starts it). */
  servers: UsbwireServer[];
}

/** Boot the guest against `servers`, then assert every usbtest case per protocol. */
export async function runUsbtestGuest(t: TestContext, file: InteropFile, start: () => Promise<GadgetZeroServers>) {
  let started: GadgetZeroServers | undefined;
  let res: GuestResult | undefined;
  try {
    started = await start();
    const g = startGuest({
      modules: ['vhci_hcd', 'xhci_pci', 'usbtest'],
      guestfwd: [{ guestPort: 3240, hostPort: started.usbipPort }],
      qemuArgs: [
        ...usbRedirArgs([started.usbredirPort], { deviceOptions: GZ_DEBUG ? ',debug=4' : '' }),
        ...(GZ_DEBUG ? ['-trace', 'usb_xhci_*'] : []),
      ],
      timeoutMs: 300_000,
      // usbtest's unlink1() retries usb_unlink_urb() in a loop that never sleeps while the URB
      // is being given back ("unlink retry"); on one vCPU with voluntary preemption that loop
      // starves the vhci-hcd rx thread that would complete it, and the guest livelocks. Full
      // preemption lets the rx thread run; a quieter console keeps the retries cheap.
      append: 'preempt=full loglevel=3',
      script: guestScript(),
    });
    // A usbtest stuck in an uninterruptible wait keeps the guest from powering off (device_shutdown
    // waits for the device lock): once guest.sh has finished, give it a few seconds, then stop QEMU.
    const finished = waitForFile(g.path('guest.rc'), 300_000, g.done)
      .then(() => sleep(10_000))
      .then(g.kill, () => {});
    res = await g.done;
    void finished;
    writeFileSync(join(res.shareDir, 'qemu-stderr.log'), res.qemuStderr);
    const kv = readKV(res.shareDir);
    for (const [i, s] of started.servers.entries()) writeFileSync(join(res.shareDir, `usbwire-${i}.log`), s.output());
    t.diagnostic(`guest run ${(res.durationMs / 1000).toFixed(1)} s`);
    for (const p of PROTOCOLS) t.diagnostic(`${p}: ${kv[`${p}_dev`]} speed ${kv[`${p}_speed`]}`);
    for (const p of PROTOCOLS) {
      for (const c of cases) {
        const got = kv[`${p}_t${c.num}`] ?? 'missing';
        const name = `${p} test ${c.num}${c.args ? ` (${c.args})` : ''}: ${got}`;
        const blocked = c.blocked?.[p];
        await t.test(name, blocked ? { todo: blocked } : {}, () => {
          if (c.expect === 'pass') assert.match(got, /^pass [0-9.]+$/, `${p} test ${c.num}\n${res!.describe()}`);
          else assert.equal(got, 'skip', `${p} test ${c.num} should be skipped: ${c.expect.skip}`);
        });
      }
      assert.equal(kv[`${p}_speed`], '480', `${p}: gadget zero should be a high-speed device`);
    }
    const rc = readFileSync(join(res.shareDir, 'guest.rc'), 'utf8').trim();
    assert.equal(rc, '0', res.describe());
    assert.equal(kv.done, 'yes', res.describe());
    res.cleanup();
  } catch (e) {
    file.failed = true;
    for (const s of started?.servers ?? file.servers) {
      process.stderr.write(`--- usbwire output (tail) ---\n${s.output().slice(-8000)}\n`);
    }
    throw e;
  }
}

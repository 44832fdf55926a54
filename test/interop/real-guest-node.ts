// Node, the built project and libusb on a guest share, so usbwire runs inside the guest against
// the guest's own USB devices. The guest's initramfs has glibc and libudev; node needs
// libstdc++/libgcc_s too, so everything runs through the host's ld.so from the share.
import { spawnSync } from 'node:child_process';
import { copyFileSync, cpSync, existsSync, mkdirSync, mkdtempSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  type BootOptions,
  fromRoot,
  type GuestResult,
  interopGate,
  rigDir,
  rigInfo,
  sleep,
  startGuest,
  waitForFile,
} from './rig.js';

const HOST_LIBS = [
  '/lib64/ld-linux-x86-64.so.2',
  '/lib/x86_64-linux-gnu/libc.so.6',
  '/lib/x86_64-linux-gnu/libm.so.6',
  '/lib/x86_64-linux-gnu/libdl.so.2',
  '/lib/x86_64-linux-gnu/libpthread.so.0',
  '/lib/x86_64-linux-gnu/libstdc++.so.6',
  '/lib/x86_64-linux-gnu/libgcc_s.so.1',
  '/lib/x86_64-linux-gnu/libudev.so.1',
  '/lib/x86_64-linux-gnu/libusb-1.0.so.0',
];

/** Why the guest cannot run Node here (missing host files), or false. */
export function guestNodeSkip(): string | false {
  for (const f of HOST_LIBS) if (!existsSync(f)) return `${f} missing on this host (libusb-1.0-0 installed?)`;
  if (!existsSync(fromRoot('node_modules', '@koromix', 'koffi-linux-x64'))) return 'koffi prebuilt missing';
  return false;
}

/** Why a real-device rig test cannot run here, or false. */
export function realDeviceSkip(): string | false {
  return interopGate().skip || guestNodeSkip();
}

/** A fresh share folder with node, its libraries and the built project on it. */
export function guestNodeShare(name: string): string {
  const share = mkdtempSync(join(tmpdir(), `usbwire-${name}-`));
  prepareGuestNode(share);
  return share;
}

/** A stripped node binary, cached in the rig folder (stripping 100 MB each run costs seconds). */
function strippedNode(): string {
  const dir = join(rigDir(), 'guest-node');
  const out = join(dir, `node-${process.version}`);
  if (existsSync(out) && statSync(out).size > 0) return out;
  mkdirSync(dir, { recursive: true });
  const r = spawnSync('strip', ['-o', out, process.execPath]);
  if (r.status !== 0) copyFileSync(process.execPath, out);
  return out;
}

/** Fill `share` with node/, lib/ and app/ (dist + koffi); the guest runs `$RIG_SHARE/run-node SCRIPT ARGS`. */
export function prepareGuestNode(share: string): void {
  mkdirSync(join(share, 'lib'), { recursive: true });
  for (const f of HOST_LIBS) copyFileSync(f, join(share, 'lib', f.split('/').pop()!));
  copyFileSync(strippedNode(), join(share, 'node'));
  const app = join(share, 'app');
  mkdirSync(app, { recursive: true });
  copyFileSync(fromRoot('package.json'), join(app, 'package.json'));
  cpSync(fromRoot('dist', 'src'), join(app, 'dist', 'src'), { recursive: true });
  cpSync(fromRoot('bin'), join(app, 'bin'), { recursive: true });
  for (const script of ['real-iso-client.js']) {
    cpSync(fromRoot('dist', 'test', 'interop', script), join(app, 'dist', 'test', 'interop', script));
  }
  cpSync(fromRoot('node_modules', 'koffi'), join(app, 'node_modules', 'koffi'), { recursive: true });
  cpSync(
    fromRoot('node_modules', '@koromix', 'koffi-linux-x64', 'package.json'),
    join(app, 'node_modules', '@koromix', 'koffi-linux-x64', 'package.json'),
  );
  cpSync(
    fromRoot('node_modules', '@koromix', 'koffi-linux-x64', 'index.js'),
    join(app, 'node_modules', '@koromix', 'koffi-linux-x64', 'index.js'),
  );
  cpSync(
    fromRoot('node_modules', '@koromix', 'koffi-linux-x64', 'linux_x64'),
    join(app, 'node_modules', '@koromix', 'koffi-linux-x64', 'linux_x64'),
    { recursive: true },
  );
}

/** Gadget modules the rig's initramfs lacks, in load order (usbcore is there already). */
const GADGET_MODULES = [
  'fs/configfs/configfs.ko',
  'drivers/usb/gadget/udc/udc-core.ko',
  'drivers/usb/gadget/libcomposite.ko',
  'drivers/usb/gadget/function/usb_f_ss_lb.ko',
  'drivers/usb/gadget/udc/dummy_hcd.ko',
];

/** Copy the gadget modules from the rig's unpacked kernel package to `share`/ko. */
export function prepareGadgetModules(share: string): void {
  const info = rigInfo();
  if (!info) throw new Error('rig not set up');
  const base = join(rigDir(), info.kernelVersion, 'root', 'lib', 'modules', info.kernelVersion, 'kernel');
  mkdirSync(join(share, 'ko'), { recursive: true });
  for (const m of GADGET_MODULES) copyFileSync(join(base, m), join(share, 'ko', m.split('/').pop()!));
}

/**
 * Guest shell: `guest_gadget_modules DUMMY_HCD_PARAMS` loads them; `$NODE ARGS...` runs node from
 * the share (a plain command, not a function, so that `$NODE ... &` gives node's own pid in $!).
 */
export const GUEST_NODE = `
guest_gadget_modules() {
  for m in ${GADGET_MODULES.map((m) => m.split('/').pop()).join(' ')}; do
    case $m in dummy_hcd.ko) insmod "$RIG_SHARE/ko/$m" "$@" ;; *) insmod "$RIG_SHARE/ko/$m" ;; esac || fail "insmod $m"
  done
}
NODE="$RIG_SHARE/lib/ld-linux-x86-64.so.2 --library-path $RIG_SHARE/lib $RIG_SHARE/node"
# real_serve SELECTOR LOG: usbwire serve --device SELECTOR exports that real device over USB/IP on
# 127.0.0.1:3240 (busid 1-1); SERVE=its pid
real_serve() {
  $NODE "$RIG_SHARE/app/bin/usbwire.js" serve --usbip 127.0.0.1:3240 --control none --device "$1" > "$2" 2>&1 &
  SERVE=$!
  _n=0
  until grep -q "host device .*: exporting" "$2"; do
    _n=$((_n + 1)); [ $_n -gt 600 ] && fail "usbwire did not start ($2)"
    kill -0 $SERVE 2>/dev/null || fail "usbwire exited ($2)"
    sleep 0.1
  done
}
# real_serve_usbredir SELECTOR LOG [PORT=4000]: the same over usbredir, listening on 0.0.0.0:PORT
# (guest B's QEMU reaches it through a hostfwd, two-guests.ts); returns once the device is exported.
# SERVE_ARGS: more serve options (e.g. --log-level debug)
real_serve_usbredir() {
  $NODE "$RIG_SHARE/app/bin/usbwire.js" serve --usbredir 0.0.0.0:\${3:-4000} --control none --device "$1" $SERVE_ARGS > "$2" 2>&1 &
  SERVE=$!
  _n=0
  until grep -q "host device .*: exporting" "$2" 2>/dev/null && grep -q "listening for usbredir" "$2"; do
    _n=$((_n + 1)); [ $_n -gt 600 ] && fail "usbwire did not start ($2)"
    kill -0 $SERVE 2>/dev/null || fail "usbwire exited ($2)"
    sleep 0.1
  done
}
# source_sink_gadget PID: configfs gadget 0525:PID with SourceSink (gadget zero's configuration 3)
# bound to dummy_udc.0; G=its configfs folder (echo "" > $G/UDC unplugs it)
source_sink_gadget() {
  mount -t configfs none /sys/kernel/config 2>/dev/null
  G=/sys/kernel/config/usb_gadget/ss
  mkdir $G || fail "configfs gadget"
  echo 0x0525 > $G/idVendor
  echo 0x$1 > $G/idProduct
  mkdir $G/strings/0x409 && echo usbwire-real > $G/strings/0x409/serialnumber
  mkdir $G/functions/SourceSink.0 || fail "SourceSink function"
  mkdir $G/configs/c.3
  ln -s $G/functions/SourceSink.0 $G/configs/c.3/
  echo dummy_udc.0 > $G/UDC || fail "bind dummy_udc.0"
}
# stop_serve LOG: SIGTERM, wait up to 10 s; true when usbwire said it closed everything
stop_serve() {
  kill -TERM $SERVE
  _n=0
  while kill -0 $SERVE 2>/dev/null; do _n=$((_n + 1)); [ $_n -gt 100 ] && break; sleep 0.1; done
  grep -q "all devices closed and flushed" "$1"
}
`;

/** QEMU settings of a guest that runs usbwire (node needs the memory; see gadget-zero-run.ts for preempt=full). */
export const REAL_GUEST = { memoryMiB: 1024, append: 'preempt=full loglevel=3' } as const;

/**
 * Boot a guest on `share` (already prepared) with usbwire's usual real-device settings; a guest
 * whose shutdown hangs behind a stuck driver is stopped 10 s after guest.sh has finished.
 */
export function bootRealGuest(
  share: string,
  opts: Pick<BootOptions, 'modules' | 'qemuArgs' | 'script'> & { timeoutMs: number },
): Promise<GuestResult> {
  writeFileSync(join(share, 'results.txt'), '');
  const g = startGuest({ shareDir: share, net: false, ...REAL_GUEST, ...opts });
  waitForFile(g.path('guest.rc'), opts.timeoutMs, g.done)
    .then(() => sleep(10_000))
    .then(g.kill, () => {});
  return g.done;
}

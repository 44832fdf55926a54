// What the gadget-zero interop test runs: every usbtest case (drivers/usb/misc/usbtest.c,
// Debian linux-source 6.1) with testusb arguments shaped like tools/usb/hcd-tests.sh but with
// iteration counts small enough for a TCG guest, and what is expected of each.

export type Protocol = 'usbip' | 'usbredir';

export interface UsbtestCase {
  num: number;
  /** testusb arguments besides -D and -t. */
  args: string;
  /** Loaded with `modprobe usbtest alt=1` (the iso alternate setting). */
  alt1?: boolean;
  /** Expected usbtest answer: pass, or skip (EOPNOTSUPP) with the source line that makes it so. */
  expect: 'pass' | { skip: string };
  /** Run after everything else, both protocols at once: a hang there stops nothing else. */
  last?: boolean;
  /** Known failure per protocol, with the proposed fix: asserted as a todo until it lands. */
  blocked?: Partial<Record<Protocol, string>>;
}

const bulk = '-s 2048 -c 50';
const sg = '-s 2048 -g 8 -c 10';
const iso = '-s 32768 -g 8 -v 0 -c 4';
const NO_INTERRUPT_EP =
  "g_zero has no interrupt endpoints: get_endpoints() finds no int pipe, and usbtest.c (6.1) case 25/26 is `if (dev->out_int_pipe == 0) break;` / `if (dev->in_int_pipe == 0) break;` with retval = -EOPNOTSUPP (usbtest_do_ioctl's initial value)";

export const CASES: UsbtestCase[] = [
  { num: 0, args: '', expect: 'pass' },
  { num: 1, args: bulk, expect: 'pass' },
  { num: 2, args: bulk, expect: 'pass' },
  { num: 3, args: `${bulk} -v 421`, expect: 'pass' },
  { num: 4, args: bulk, expect: 'pass' },
  { num: 5, args: sg, expect: 'pass' },
  { num: 6, args: sg, expect: 'pass' },
  { num: 7, args: `${sg} -v 579`, expect: 'pass' },
  { num: 8, args: sg, expect: 'pass' },
  { num: 9, args: '-c 10', expect: 'pass' },
  { num: 10, args: '-c 10 -g 16', expect: 'pass' },
  { num: 11, args: '-s 2048 -c 20', expect: 'pass', last: true },
  { num: 12, args: '-s 2048 -c 20', expect: 'pass', last: true },
  { num: 13, args: '-c 10', expect: 'pass' },
  { num: 14, args: '-c 100 -s 256 -v 1', expect: 'pass' },
  { num: 15, args: iso, alt1: true, expect: 'pass' },
  { num: 16, args: iso, alt1: true, expect: 'pass' },
  { num: 17, args: '-s 2048 -c 20', expect: 'pass' },
  { num: 18, args: '-s 2048 -c 20', expect: 'pass' },
  { num: 19, args: '-s 2048 -c 20', expect: 'pass' },
  { num: 20, args: '-s 2048 -c 20', expect: 'pass' },
  { num: 21, args: '-c 100 -s 256 -v 1', expect: 'pass' },
  { num: 22, args: iso, alt1: true, expect: 'pass' },
  { num: 23, args: iso, alt1: true, expect: 'pass' },
  {
    num: 24,
    args: '-s 2048 -g 8 -c 10',
    expect: 'pass',
    last: true,
    blocked: {
      usbredir:
        "QEMU's xHCI (hw/usb/hcd-xhci.c xhci_stop_ep: 'FIXME: endpoint stopped w/ xfers running, data might be lost') cancels every in-flight packet of the endpoint when the guest stops it to unlink two URBs, and never restarts the others: usbtest waits forever for them",
    },
  },
  { num: 25, args: '-s 64 -c 10', expect: { skip: NO_INTERRUPT_EP } },
  { num: 26, args: '-s 64 -c 10', expect: { skip: NO_INTERRUPT_EP } },
  { num: 27, args: '-s 16384 -g 8 -c 10', expect: 'pass' },
  { num: 28, args: '-s 16384 -g 8 -c 10', expect: 'pass' },
  { num: 29, args: '-c 10', expect: 'pass' },
];

/**
 * Guest shell: run every case against DEV (a /dev/bus/usb path) and record, per case,
 * "<proto>_t<N> pass <secs>", "... fail <errno> <text>" or "... skip" (testusb prints nothing
 * for EOPNOTSUPP) in results.txt, with testusb's output in the log.
 */
export function guestRunCases(proto: Protocol, dev: string, cases: UsbtestCase[]): string {
  return cases.map((c) => `run_case ${proto} ${dev} ${c.num} ${c.args}`).join('\n');
}

export const GUEST_HELPERS = `
# gz_dev KIND: /dev/bus/usb/BBB/DDD of the gadget zero behind vhci-hcd (usbip) or xHCI (usbredir)
gz_dev() {
  for _d in /sys/bus/usb/devices/*; do
    [ "$(cat $_d/idVendor 2>/dev/null)" = 0525 ] || continue
    [ "$(cat $_d/idProduct 2>/dev/null)" = a4a0 ] || continue
    case "$(readlink -f $_d)" in *vhci*) _k=usbip ;; *) _k=usbredir ;; esac
    [ "$_k" = "$1" ] || continue
    printf '/dev/bus/usb/%03d/%03d %s\\n' $(cat $_d/busnum) $(cat $_d/devnum) \${_d##*/}
    return 0
  done
  return 1
}

# gz_wait KIND: wait (30 s) until the device is there with usbtest bound to its interface 0
gz_wait() {
  _n=0
  while [ $_n -le 300 ]; do
    _r=$(gz_dev $1)
    if [ -n "$_r" ] && [ -e "/sys/bus/usb/drivers/usbtest/\${_r#* }:3.0" ]; then echo $_r; return 0; fi
    _n=$((_n + 1))
    sleep 0.1
  done
  return 1
}

# run_case PROTO DEV N ARGS...: one testusb run, its verdict in results.txt. usbtest waits for
# some URBs without a timeout (unlink_queued): a run still going after 60 s is recorded as
# hung (limit: RUN_CASE_LIMIT seconds, default 60), the kernel log saved, and the
# device's remaining cases are not run (they would queue behind usbtest's per-device mutex).
run_case() {
  _p=$1; _dev=$2; _n=$3
  shift 3
  if [ -e /tmp/hung-$_p ]; then rig_result \${_p}_t$_n "fail not-run-after-hang"; return; fi
  testusb -D $_dev -t $_n "$@" > /tmp/out-$_p-$_n 2>/dev/null &
  _pid=$!
  read _t0 _x < /proc/uptime
  _t0=\${_t0%.*}
  while kill -0 $_pid 2>/dev/null; do
    read _t _x < /proc/uptime
    [ $((\${_t%.*} - _t0)) -ge \${RUN_CASE_LIMIT:-60} ] && break
    sleep 0.2
  done
  if kill -0 $_pid 2>/dev/null; then
    : > /tmp/hung-$_p
    echo "[$_p] testusb -t $_n $*: still running after \${RUN_CASE_LIMIT:-60} s"
    rig_dmesg hang-$_p-$_n
    rig_result \${_p}_t$_n "fail hung"
    return
  fi
  _out=$(cat /tmp/out-$_p-$_n)
  echo "[$_p] testusb -t $_n $*: \${_out:-<nothing: EOPNOTSUPP>}"
  case "$_out" in
    *" test $_n, "*secs*) rig_result \${_p}_t$_n "pass $(echo "$_out" | sed -n 's/.* test [0-9]*, *\\([0-9.]*\\) secs.*/\\1/p')" ;;
    *" test $_n --> "*) rig_result \${_p}_t$_n "fail $(echo "$_out" | sed -n 's/.* --> \\(.*\\)/\\1/p' | tr ' ' _)" ;;
    "") rig_result \${_p}_t$_n skip ;;
    *) rig_result \${_p}_t$_n "fail unparsed" ;;
  esac
}
`;

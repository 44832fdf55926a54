// Guest shell pieces of the real-device boot (real-storage.test.ts): usbwire servers in the
// background (their pid in /tmp), waiting on their logs, the vhci copies of a disk and a
// keyboard, and whether a kernel driver is bound to a device's interface again.
import { GUEST_NODE } from './real-guest-node.js';

export const GUEST_PRELUDE = `${GUEST_NODE}
# serve_bg LOG SELECTOR...: usbwire serve --usbip 127.0.0.1:3240 --device SELECTOR... in the background
serve_bg() {
  _log=$1; shift
  _a=""; for _d in "$@"; do _a="$_a --device $_d"; done
  $NODE "$RIG_SHARE/app/bin/usbwire.js" serve --usbip 127.0.0.1:3240 --control none $_a > "$_log" 2>&1 &
  echo $! > /tmp/serve.pid
}
serve_alive() { kill -0 $(cat /tmp/serve.pid) 2>/dev/null; }
# stop_bg LOG: SIGTERM, wait up to 15 s; true when usbwire said it closed everything
stop_bg() {
  _p=$(cat /tmp/serve.pid); kill -TERM $_p
  _n=0
  while kill -0 $_p 2>/dev/null; do
    _n=$((_n + 1))
    [ $_n -gt 150 ] && { echo "usbwire still running 15 s after SIGTERM: $(grep State /proc/$_p/status)"; ls -l /proc/$_p/fd; return 1; }
    rig_nap 0.1
  done
  echo "stop_s=$((_n / 10))"
  grep -q "all devices closed and flushed" "$1"
}
# wait_log LOG PATTERN [COUNT=1] [TIMEOUT_S=60]: until PATTERN is in LOG COUNT times
wait_log() {
  _n=0
  until [ "$(grep -c "$2" "$1" 2>/dev/null)" -ge "\${3:-1}" ]; do
    _n=$((_n + 1)); [ $_n -gt $((\${4:-60} * 10)) ] && { log "not in $1: $2"; return 1; }
    rig_nap 0.1
  done
}
# attach BUSID: usbip attach, retried while usbwire is still taking the device
attach() {
  _n=0
  until usbip attach -r 127.0.0.1 -b $1 2>/tmp/attach.err; do
    _n=$((_n + 1)); [ $_n -gt 20 ] && { cat /tmp/attach.err; return 1; }
    rig_nap 0.5
  done
}
# detach BUSID: usbip detach of the vhci port attached to BUSID
detach() { _p=$(rig_usbip_port_of $1); [ -n "$_p" ] && usbip detach -p $_p > /dev/null; }
# gone_from_vhci BUSID [TIMEOUT_S=30]: until no vhci port is attached to BUSID
gone_from_vhci() {
  _n=0; while [ -n "$(rig_usbip_port_of $1)" ]; do _n=$((_n + 1)); [ $_n -gt $((\${2:-30} * 10)) ] && return 1; rig_nap 0.1; done
}
# bound DRIVER INTERFACE [TIMEOUT_S=10]: until the kernel driver is bound to the interface (e.g. 2-1:1.0)
bound() {
  _n=0; until [ -e /sys/bus/usb/drivers/$1/$2 ]; do _n=$((_n + 1)); [ $_n -gt $((\${3:-10} * 10)) ] && return 1; rig_nap 0.1; done
}
# kbd_ev: the event device of a keyboard on vhci-hcd
kbd_ev() {
  for _e in /sys/class/input/event*; do
    case "$(cat $_e/device/phys 2>/dev/null)" in *vhci*) ;; *) continue ;; esac
    case "$(cat $_e/device/name 2>/dev/null)" in *Keyboard*) echo /dev/input/\${_e##*/}; return 0 ;; esac
  done
  return 1
}
# read_keys FILE: attach 1-2, find the copy's event device, record its events into FILE
read_keys() {
  attach 1-2 || fail "usbip attach 1-2 (keyboard)"
  _n=0; until EV=$(kbd_ev); do _n=$((_n + 1)); [ $_n -gt 600 ] && fail "no event device for the keyboard's vhci copy"; rig_nap 0.1; done
  evdev-read read $EV 120000 > "$1" 2>&1 &
  _n=0; until grep -q READY "$1" 2>/dev/null; do _n=$((_n + 1)); [ $_n -gt 100 ] && fail "evdev-read did not start"; rig_nap 0.1; done
  echo "ev=$EV $(evdev-read name $EV)"
}
# read_loop DEV: read DEV again and again (O_DIRECT, 1 MiB) in the background until a read fails;
# then /tmp/dd.end exists and /tmp/dd.err has dd's error
read_loop() {
  rm -f /tmp/dd.end
  (while dd if=$1 of=/dev/null bs=1M iflag=direct 2>/tmp/dd.err; do :; done; echo ended > /tmp/dd.end) > /dev/null 2>&1 &
}
mkdir -p /mnt/d /mnt/e
`;

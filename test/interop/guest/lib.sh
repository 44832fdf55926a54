# Shell helpers for interop guest scripts (busybox sh). rig.ts copies this file into the
# share as /mnt/host/lib.sh and sources it at the top of every guest.sh.
#
# Conventions: the script's stdout/stderr go to /mnt/host/guest.log; a non-zero exit fails
# the guest run. The host signals the guest with files host-NAME in the share, the guest
# signals the host with files stage-NAME (see rig_stage / rig_wait_host).

RIG_SHARE="${RIG_SHARE:-/mnt/host}"

# Seconds since boot with ns precision (busybox date has no %N).
rig_now() { rig-now; }

log() { echo "[$(cut -d' ' -f1 /proc/uptime)] $*"; }

fail() {
  log "FAIL: $*"
  exit 1
}

# Load modules with one modprobe call (each exec costs 50-90 ms under TCG).
rig_mods() { modprobe -a "$@" || fail "modprobe $*"; }

# rig_wait_file PATH [TIMEOUT_S=30]: wait until PATH exists.
rig_wait_file() {
  _p="$1"
  _t="${2:-30}"
  _n=0
  while [ ! -e "$_p" ]; do
    _n=$((_n + 1))
    [ "$_n" -gt $((_t * 10)) ] && return 1
    sleep 0.1
  done
  return 0
}

# Names of the current sd* disks, space separated.
rig_disks() {
  _d=""
  for _b in /sys/block/sd*; do
    [ -e "$_b" ] && _d="$_d ${_b##*/}"
  done
  echo $_d
}

# rig_wait_disk [TIMEOUT_S=30] [EXCLUDE...]: wait for an sd* disk that is not in EXCLUDE and
# whose size is known (non-zero); print its name (e.g. sda). Fails the script on timeout.
rig_wait_disk() {
  _t="${1:-30}"
  [ $# -gt 0 ] && shift
  _n=0
  while :; do
    for _b in /sys/block/sd*; do
      [ -e "$_b" ] || continue
      _name="${_b##*/}"
      _skip=0
      for _x in "$@"; do [ "$_x" = "$_name" ] && _skip=1; done
      [ "$_skip" = 1 ] && continue
      if [ "$(cat "$_b/size" 2>/dev/null || echo 0)" -gt 0 ] && [ -b "/dev/$_name" ]; then
        echo "$_name"
        return 0
      fi
    done
    _n=$((_n + 1))
    if [ "$_n" -gt $((_t * 10)) ]; then
      log "no disk after ${_t}s (have: $(rig_disks))" >&2
      return 1
    fi
    sleep 0.1
  done
}

# rig_wait_disk_gone NAME [TIMEOUT_S=30]
rig_wait_disk_gone() {
  _n=0
  while [ -e "/sys/block/$1" ]; do
    _n=$((_n + 1))
    [ "$_n" -gt $((${2:-30} * 10)) ] && return 1
    sleep 0.1
  done
  return 0
}

# Size of a block device in bytes.
rig_disk_bytes() { echo $(($(cat "/sys/block/$1/size") * 512)); }

# rig_stage NAME: tell the host the guest reached NAME (host polls for stage-NAME).
rig_stage() {
  log "stage $1"
  : > "$RIG_SHARE/stage-$1"
  sync
}

# rig_wait_host NAME [TIMEOUT_S=60]: wait until the host creates host-NAME in the share.
rig_wait_host() {
  rig_wait_file "$RIG_SHARE/host-$1" "${2:-60}" || fail "host did not signal $1 within ${2:-60}s"
  log "host signalled $1"
}

# rig_time LABEL CMD...: run CMD, append "LABEL SECONDS" to $RIG_SHARE/times.txt.
rig_time() {
  _label="$1"
  shift
  _a="$(rig-now)"
  "$@"
  _rc=$?
  _b="$(rig-now)"
  echo "$_label $(awk -v a="$_a" -v b="$_b" 'BEGIN { printf "%.6f", b - a }')" >> "$RIG_SHARE/times.txt"
  return $_rc
}

# rig_result KEY VALUE: append "KEY VALUE" to $RIG_SHARE/results.txt (read by the host).
rig_result() { echo "$1 $2" >> "$RIG_SHARE/results.txt"; }

# rig_sha256 FILE_OR_DEV: print the hex sha256.
rig_sha256() { sha256sum "$1" | cut -d' ' -f1; }

# rig_dmesg [NAME]: copy the kernel log into the share (dmesg-NAME.log).
rig_dmesg() { dmesg > "$RIG_SHARE/dmesg-${1:-now}.log" 2>&1; }

# rig_usbip_port_of BUSID: the vhci port number (for usbip detach -p) attached to BUSID.
# usbip port prints "Port 00: <Port in Use> ..." then a line "... -> usbip://HOST:PORT/BUSID".
rig_usbip_port_of() {
  usbip port 2>/dev/null | awk -v b="$1" '
    /^Port [0-9]+:/ { p = $2; sub(":", "", p); p = p + 0 }
    index($0, "/" b) && /usbip:\/\// { print p; exit }'
}

# rig_dd_sha DEV OFFSET LENGTH: sha256 of LENGTH bytes at byte OFFSET, read with O_DIRECT.
rig_dd_sha() {
  dd if="$1" bs="$3" count=1 skip="$2" iflag=direct,skip_bytes 2>/dev/null | sha256sum | cut -d' ' -f1
}

# rig_run_case NAME: run the shell function case_NAME in a subshell, so that a fail inside it
# ends only that case; records "case_NAME RC" in results.txt. Log lines "=== case NAME" and
# "=== end NAME rc=RC" frame its output in guest.log.
rig_run_case() {
  log "=== case $1"
  ("case_$1")
  _rc=$?
  rig_result "case_$1" "$_rc"
  log "=== end $1 rc=$_rc"
  return 0
}

# rig_nap SECONDS: sleep without an exec (read -t on a FIFO nobody writes). Polling loops that
# run while the host works through the guest's kernel use it: each `sleep` exec costs the
# emulated CPU 50-90 ms.
rig_nap() {
  if [ -z "$RIG_NAP_FD" ]; then
    [ -p "/tmp/rig-nap.$$" ] || mkfifo "/tmp/rig-nap.$$"
    exec 8<> "/tmp/rig-nap.$$"
    RIG_NAP_FD=8
  fi
  read -r -t "$1" _rig_nap <&8
  return 0
}

# rig_command_loop: run the commands the host sends (guest-shell.ts): each cmd-N.sh in the share
# runs in a subshell (lib.sh functions available) with its output in cmd-N.out and its exit
# status in cmd-N.rc; cmd-N.exit ends the loop. Background servers a command starts keep running.
rig_command_loop() {
  _n=1
  while :; do
    while [ ! -e "$RIG_SHARE/cmd-$_n.sh" ]; do
      [ -e "$RIG_SHARE/cmd-$_n.exit" ] && return 0
      rig_nap 0.05
    done
    log "command $_n"
    (. "$RIG_SHARE/cmd-$_n.sh") > "$RIG_SHARE/cmd-$_n.out" 2>&1 < /dev/null
    echo $? > "$RIG_SHARE/cmd-$_n.rc.tmp"
    mv "$RIG_SHARE/cmd-$_n.rc.tmp" "$RIG_SHARE/cmd-$_n.rc"
    _n=$((_n + 1))
  done
}

# rig_usb_busid VID PID [SERIAL]: busid (e.g. 2-1) of the USB device with these ids (and
# serial number), empty when there is none.
rig_usb_busid() {
  for _d in /sys/bus/usb/devices/*; do
    [ -f "$_d/idVendor" ] || continue
    [ "$(cat "$_d/idVendor")" = "$1" ] && [ "$(cat "$_d/idProduct")" = "$2" ] || continue
    [ -z "$3" ] || [ "$(cat "$_d/serial" 2>/dev/null)" = "$3" ] || continue
    echo "${_d##*/}"
    return 0
  done
}

# rig_wait_usb VID PID [SERIAL] [TIMEOUT_S=20]: wait for that device (enumeration runs on after
# /init starts); print its busid.
rig_wait_usb() {
  _n=0
  until _bid="$(rig_usb_busid "$1" "$2" "$3")" && [ -n "$_bid" ]; do
    _n=$((_n + 1))
    [ "$_n" -gt $((${4:-20} * 10)) ] && return 1
    rig_nap 0.1
  done
  echo "$_bid"
}

# rig_usb_count VID PID: how many USB devices have these ids.
rig_usb_count() {
  _c=0
  for _d in /sys/bus/usb/devices/*; do
    [ -f "$_d/idVendor" ] && [ "$(cat "$_d/idVendor")" = "$1" ] && [ "$(cat "$_d/idProduct")" = "$2" ] && _c=$((_c + 1))
  done
  echo $_c
}

# rig_usb_unplug BUSID: power off the device's hub port (sysfs `disable`); the kernel removes the
# device whatever driver has it. Fails if it is still there after 10 s.
rig_usb_unplug() {
  _port="$(readlink -f "/sys/bus/usb/devices/$1/port")"
  [ -e "$_port/disable" ] || fail "no port/disable for USB device $1"
  echo 1 > "$_port/disable" || fail "cannot disable the port of $1"
  _n=0
  while [ -e "/sys/bus/usb/devices/$1" ]; do
    _n=$((_n + 1))
    [ "$_n" -gt 200 ] && fail "USB device $1 still there 10 s after its port was disabled"
    rig_nap 0.05
  done
}

# rig_wait_disk_via PATTERN [TIMEOUT_S=60]: wait for an sd* disk of known size whose sysfs path
# contains PATTERN (e.g. "vhci_hcd", or a controller's PCI address); print its name.
rig_wait_disk_via() {
  _n=0
  while :; do
    for _b in /sys/block/sd*; do
      [ -e "$_b" ] || continue
      case "$(readlink -f "$_b")" in *"$1"*) ;; *) continue ;; esac
      if [ "$(cat "$_b/size" 2>/dev/null || echo 0)" -gt 0 ] && [ -b "/dev/${_b##*/}" ]; then
        echo "${_b##*/}"
        return 0
      fi
    done
    _n=$((_n + 1))
    if [ "$_n" -gt $((${2:-60} * 10)) ]; then
      log "no disk under $1 after ${2:-60}s (have: $(rig_disks))" >&2
      return 1
    fi
    rig_nap 0.1
  done
}

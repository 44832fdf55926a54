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

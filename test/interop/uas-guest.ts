// Guest side of the UAS interop (uas.test.ts): shell snippets that find each exported disk by
// its USB serial number, record how the kernel drives it (driver, alternate setting, speed,
// controller, queue depth), and run the data checks on it: whole-disk sha256, direct pattern
// writes read back (disk-checks.ts), and `rio` (8 processes of random direct I/O, uas-rio.ts).
import { guestPatternWrites, type PatternWrite } from './disk-checks.js';
import { guestRio, type RioPlan } from './uas-rio.js';

/**
 * Shell functions for the guest script:
 *   uas_usb_dev SERIAL [TIMEOUT_S]: sysfs path (/sys/bus/usb/devices/X) of the USB device with
 *     that serial number, once there
 *   uas_disk_under USBPATH [TIMEOUT_S]: the sd* disk (of known size) below that USB device
 *   uas_describe KEY USBPATH DISK: rig_result KEY_busid/_speed/_hc/_driver/_alt/_qd/_disk
 */
export const UAS_GUEST_HELPERS = `
# uas_poll TIMEOUT_S FUNC ARGS...: run FUNC until it prints something; print that
uas_poll() {
  _t=$1
  shift
  _n=0
  until _r="$("$@")" && [ -n "$_r" ]; do
    _n=$((_n + 1))
    [ "$_n" -gt $((_t * 10)) ] && return 1
    rig_nap 0.1
  done
  echo "$_r"
}
uas_usb_dev_now() {
  for _d in /sys/bus/usb/devices/*; do
    [ "$(cat "$_d/serial" 2>/dev/null)" = "$1" ] && { echo "$_d"; return 0; }
  done
}
uas_usb_dev() { uas_poll "\${2:-60}" uas_usb_dev_now "$1"; }
uas_disk_under_now() {
  _u="$(readlink -f "$1")/"
  for _b in /sys/block/sd*; do
    [ -e "$_b" ] || continue
    case "$(readlink -f "$_b")" in "$_u"*) ;; *) continue ;; esac
    if [ "$(cat "$_b/size" 2>/dev/null || echo 0)" -gt 0 ] && [ -b "/dev/\${_b##*/}" ]; then
      echo "\${_b##*/}"
      return 0
    fi
  done
}
uas_disk_under() { uas_poll "\${2:-60}" uas_disk_under_now "$1"; }
uas_describe() {
  _busid="\${2##*/}"
  _if="$2/$_busid:1.0"
  rig_result $1_busid "$_busid"
  rig_result $1_speed "$(cat "$2/speed")"
  case "$(readlink -f "$2")" in *vhci_hcd*) rig_result $1_hc vhci ;; *) rig_result $1_hc xhci ;; esac
  _drv="$(readlink "$_if/driver")"
  rig_result $1_driver "\${_drv##*/}"
  rig_result $1_alt "$(cat "$_if/bAlternateSetting" | tr -d ' ')"
  rig_result $1_qd "$(cat "/sys/block/$3/device/queue_depth")"
  rig_result $1_disk "$3"
  rig_result $1_bytes "$(rig_disk_bytes "$3")"
}
`;

export interface GuestDiskCase {
  /** result key prefix, pattern tag and rig_run_case name */
  key: string;
  serial: string;
  writes: PatternWrite[];
  rio: RioPlan;
}

/**
 * Shell function case_KEY: the disk of SERIAL is found and described, read whole (KEY_sha),
 * written with the direct patterns (read back), then rio runs on it (output in rio-KEY.txt,
 * time in times.txt as KEY_rio).
 */
export function guestDiskCase(c: GuestDiskCase): string {
  return `
case_${c.key}() {
  P=$(uas_usb_dev ${c.serial} 90) || fail "no USB device with serial ${c.serial}"
  D=$(uas_disk_under "$P" 60) || fail "no disk under $P"
  echo "$P" > /tmp/usb-${c.key}
  uas_describe ${c.key} "$P" "$D"
  log "${c.key}: $P, disk $D, driver $(readlink "$P/\${P##*/}:1.0/driver")"
  rig_time ${c.key}_sha sh -c "sha256sum /dev/$D | cut -d' ' -f1 > /tmp/sha-${c.key}" || fail "reading all of /dev/$D"
  rig_result ${c.key}_sha "$(cat /tmp/sha-${c.key})"
${guestPatternWrites(c.writes, c.key, '/dev/$D')}
  rig_time ${c.key}_rio ${guestRio(c.rio, '/dev/$D', `$RIG_SHARE/rio-${c.key}.txt`)} || { cat "$RIG_SHARE/rio-${c.key}.txt"; fail "rio on /dev/$D"; }
  log "${c.key}: $(tail -n 1 "$RIG_SHARE/rio-${c.key}.txt")"
}
`;
}

/**
 * Shell function case_rebind_KEY (after case_KEY): the interface's driver is unbound (uas frees
 * its streams), bound again (allocates them again), the disk comes back: whole-disk sha256
 * (KEY_rebind_sha) and a second rio run (rio2-KEY.txt) over the same regions.
 */
export function guestRebindCase(key: string, rio: RioPlan): string {
  return `
case_rebind_${key}() {
  P=$(cat /tmp/usb-${key})
  IF="\${P##*/}:1.0"
  DRV="$(readlink "$P/$IF/driver")"
  DRV="\${DRV##*/}"
  D=$(uas_disk_under "$P" 5) || fail "no disk under $P before the rebind"
  rig_result ${key}_rebind_disk "$D"
  echo -n "$IF" > /sys/bus/usb/drivers/$DRV/unbind || fail "unbind $IF from $DRV"
  rig_wait_disk_gone $D 30 || fail "disk $D still there after unbinding $DRV"
  echo -n "$IF" > /sys/bus/usb/drivers/$DRV/bind || fail "bind $IF to $DRV again"
  D=$(uas_disk_under "$P" 60) || fail "no disk after binding $DRV again"
  rig_result ${key}_rebind_driver "$DRV"
  rig_result ${key}_rebind_sha "$(rig_sha256 /dev/$D)"
  rig_time ${key}_rio2 ${guestRio(rio, '/dev/$D', `$RIG_SHARE/rio2-${key}.txt`)} || { cat "$RIG_SHARE/rio2-${key}.txt"; fail "rio after the rebind"; }
  log "${key} after rebinding $DRV: $(tail -n 1 "$RIG_SHARE/rio2-${key}.txt")"
}
`;
}

/**
 * Shell function case_together: rio on every disk at once (8 processes each), each with its own
 * plan; outputs in rio3-KEY.txt, the whole run's time as together_rio.
 */
export function guestTogetherCase(disks: { key: string; rio: RioPlan }[]): string {
  const start = disks.map(
    (d) => `  D=$(uas_disk_under "$(cat /tmp/usb-${d.key})" 5) || fail "no disk for ${d.key}"
  ${guestRio(d.rio, '/dev/$D', `$RIG_SHARE/rio3-${d.key}.txt`)} &
  _pid_${d.key}=$!`,
  );
  const wait = disks.map((d) => `  wait $_pid_${d.key} || _bad="$_bad ${d.key}"`);
  return `
case_together() {
  _t0=$(rig-now)
${start.join('\n')}
  _bad=""
${wait.join('\n')}
  rig_result together_s "$(awk -v a="$_t0" -v b="$(rig-now)" 'BEGIN { printf "%.2f", b - a }')"
  [ -z "$_bad" ] || { for _k in $_bad; do cat "$RIG_SHARE/rio3-$_k.txt"; done; fail "rio failed on:$_bad"; }
  log "rio on ${disks.length} disks at once: ok"
}
`;
}

#!/usr/bin/env bash
# usbwire interop rig: everything needed to boot a Debian kernel under QEMU (TCG) whose
# real USB clients (vhci-hcd + usbip, usb-storage behind QEMU's usb-redir) talk to a
# usbwire server on this host's loopback. See /work/shared/rig/README.md for the facts
# this follows, and test/interop/rig.ts for the harness that uses the result.
#
# Idempotent: everything is cached in ${USBWIRE_RIG_DIR:-/var/cache/usbwire-rig}, keyed by
# kernel version; a re-run with nothing to do takes well under a second.
#
# Environment:
#   USBWIRE_RIG_DIR       cache folder (default /var/cache/usbwire-rig)
#   USBWIRE_RIG_KPKG      kernel package to use (default: what linux-image-amd64 depends on,
#                         remembered in $RIG_DIR/kernel-package after the first run)
#   USBWIRE_RIG_REFRESH=1 ask apt again which kernel package linux-image-amd64 wants
#
# Output: $RIG_DIR/rig.json (read by rig.ts), containing the paths of the PVH vmlinux,
# the initramfs, the guestfwd relay and qemu-system-x86_64.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
RIG_DIR="${USBWIRE_RIG_DIR:-/var/cache/usbwire-rig}"
export DEBIAN_FRONTEND=noninteractive

log() { echo "rig-setup: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }
# Sources besides the fixed ones whose change must rebuild the rig (rig.ts hashes the same list).
rig_extra_sources() { ls "$HERE"/guest/tools/*.c "$HERE"/setup.d/*.sh 2>/dev/null | LC_ALL=C sort; }

[ "$(id -u)" = 0 ] || die "must run as root (apt-get, dpkg -x, depmod)"
mkdir -p "$RIG_DIR"
exec 9>"$RIG_DIR/.lock"
flock 9

# --- 1. Debian packages ---------------------------------------------------------------
PKGS=(qemu-system-x86 busybox-static usbip cpio kmod usbutils gcc libc6-dev usbredirect
  e2fsprogs xz-utils util-linux)
PKGS+=(iproute2) # network namespaces and veth links (vanished-peer, netns tests)
PKGS+=(libusb-1.0-0) # usbwire's real-device export (koffi → libusb-1.0.so.0), also copied to the guest share
missing=()
for p in "${PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done
APT_UPDATED=0
apt_update_once() {
  if [ "$APT_UPDATED" = 0 ]; then
    log "apt-get update"
    apt-get update -qq >&2
    APT_UPDATED=1
  fi
}
if [ "${#missing[@]}" -gt 0 ]; then
  log "installing: ${missing[*]}"
  if ! apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2; then
    apt_update_once
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
  fi
fi

PYTHON=""
for py in python3 /usr/bin/python3; do
  if command -v "$py" >/dev/null 2>&1 && "$py" -c 'import lzma' 2>/dev/null; then
    PYTHON="$(command -v "$py")"
    break
  fi
done

# --- 2. Which kernel ------------------------------------------------------------------
KPKG="${USBWIRE_RIG_KPKG:-}"
if [ -z "$KPKG" ] && [ "${USBWIRE_RIG_REFRESH:-0}" != 1 ] && [ -s "$RIG_DIR/kernel-package" ]; then
  KPKG="$(cat "$RIG_DIR/kernel-package")"
fi
find_kpkg() {
  apt-cache depends linux-image-amd64 2>/dev/null |
    awk '/Depends: linux-image-[0-9]/ { print $2; exit }'
}
if [ -z "$KPKG" ]; then
  KPKG="$(find_kpkg || true)"
  if [ -z "$KPKG" ]; then
    apt_update_once
    KPKG="$(find_kpkg || true)"
  fi
  [ -n "$KPKG" ] || die "cannot find the versioned package of linux-image-amd64"
fi
KVER="${KPKG#linux-image-}"
echo "$KPKG" > "$RIG_DIR/kernel-package"
KDIR="$RIG_DIR/$KVER"
ROOT="$KDIR/root"
mkdir -p "$KDIR"

# --- 3. Kernel package: download, extract, depmod -------------------------------------
if [ ! -e "$ROOT/.done" ]; then
  log "downloading $KPKG"
  rm -rf "$KDIR/dl" "$ROOT"
  mkdir -p "$KDIR/dl"
  chown _apt "$KDIR/dl" 2>/dev/null || true
  if ! (cd "$KDIR/dl" && apt-get download -qq "$KPKG" >&2); then
    apt_update_once
    (cd "$KDIR/dl" && apt-get download -qq "$KPKG" >&2)
  fi
  log "extracting $(ls "$KDIR"/dl/*.deb)"
  dpkg -x "$KDIR"/dl/*.deb "$ROOT"
  if [ ! -d "$ROOT/lib/modules/$KVER" ] && [ -d "$ROOT/usr/lib/modules/$KVER" ]; then
    mkdir -p "$ROOT/lib/modules"
    ln -s "../../usr/lib/modules/$KVER" "$ROOT/lib/modules/$KVER"
  fi
  [ -d "$ROOT/lib/modules/$KVER/kernel" ] || die "no modules in $KPKG"
  depmod -b "$ROOT" "$KVER"
  rm -rf "$KDIR/dl"
  touch "$ROOT/.done"
fi
BZIMAGE="$ROOT/boot/vmlinuz-$KVER"
[ -f "$BZIMAGE" ] || die "no $BZIMAGE"

# --- 4. ELF vmlinux for PVH boot (the bzImage payload is xz) ---------------------------
VMLINUX="$KDIR/vmlinux"
if [ ! -s "$VMLINUX" ]; then
  log "extracting ELF vmlinux from $BZIMAGE"
  if [ -n "$PYTHON" ]; then
    "$PYTHON" - "$BZIMAGE" "$VMLINUX.tmp" <<'PY'
import lzma, sys
data = open(sys.argv[1], "rb").read()
magic = b"\xfd7zXZ\x00"
pos = data.find(magic)
while pos >= 0:
    try:
        d = lzma.LZMADecompressor(format=lzma.FORMAT_XZ)
        out = d.decompress(data[pos:])
        if out[:4] == b"\x7fELF":
            open(sys.argv[2], "wb").write(out)
            sys.exit(0)
    except lzma.LZMAError:
        pass
    pos = data.find(magic, pos + 1)
sys.exit("no xz-compressed ELF payload found")
PY
  else
    # Fallback without python's lzma: xz after the magic; xz complains about trailing data.
    off="$(grep -obUaP '\xfd7zXZ\x00' "$BZIMAGE" | head -1 | cut -d: -f1)"
    [ -n "$off" ] || die "no xz magic in $BZIMAGE"
    tail -c "+$((off + 1))" "$BZIMAGE" | xz -dc > "$VMLINUX.tmp" 2>/dev/null || true
  fi
  [ "$(head -c 4 "$VMLINUX.tmp" | od -An -tx1 | tr -d ' ')" = 7f454c46 ] || die "vmlinux is not ELF"
  mv "$VMLINUX.tmp" "$VMLINUX"
fi

# --- 5. Host helpers: the guestfwd relay and rig-now (guest clock helper) ---------------
BIN="$RIG_DIR/bin"
mkdir -p "$BIN"
build_c() { # SRC OUT [GCC FLAGS...]
  local src="$1" out="$2" sum
  shift 2
  sum="$(sha256sum "$src" | cut -d' ' -f1) $*"
  if [ ! -x "$out" ] || [ "$(cat "$out.sha256" 2>/dev/null)" != "$sum" ]; then
    log "compiling $(basename "$src") $*"
    gcc -O2 -Wall -Wextra "$@" -o "$out.tmp" "$src"
    mv "$out.tmp" "$out"
    echo "$sum" > "$out.sha256"
  fi
}
RELAY="$BIN/usbwire-relay"
build_c "$HERE/relay.c" "$RELAY"
build_c "$HERE/rig-now.c" "$BIN/rig-now"

# Guest tools: every guest/tools/*.c is built static and goes into the initramfs's /bin.
# Extra steps (fetching and building a tool from elsewhere) live in setup.d/*.sh, which add
# the binaries they build to GUEST_TOOLS.
GUEST_TOOLS=()
build_static() { # SRC OUT
  build_c "$1" "$2" -static
  GUEST_TOOLS+=("$2")
}
mkdir -p "$BIN/guest"
for src in "$HERE"/guest/tools/*.c; do
  [ -e "$src" ] || continue
  build_static "$src" "$BIN/guest/$(basename "$src" .c)"
done
for step in "$HERE"/setup.d/*.sh; do
  [ -e "$step" ] || continue
  # shellcheck source=/dev/null
  . "$step"
done

# --- 6. Initramfs ----------------------------------------------------------------------
# Modules whose closure goes in; BOOT_MODULES are loaded by /init (the others on demand).
MODULES=(vhci-hcd usbip-core usbip-host xhci-pci xhci-hcd ehci-pci ehci-hcd usb-storage uas
  sd_mod usbtest usbmon cdc-acm usbhid hid-generic evdev ext4 vfat nls_cp437 nls_utf8 nls_iso8859-1 crc32c_generic 9p
  9pnet_virtio virtio_net virtio_pci)
BOOT_MODULES=(virtio_pci 9pnet_virtio 9p virtio_net)
# usbipd + usbip-host and usbredirect (usbredir 0.13's usbredirhost) are the real servers the
# bridge tests import from; usbredirect finds devices with libusb over devtmpfs' /dev/bus/usb.
GUEST_BINS=(/usr/sbin/usbip /usr/sbin/usbipd /usr/bin/usbredirect /usr/bin/lsusb /usr/sbin/mke2fs /usr/sbin/e2fsck)

INITRD="$KDIR/initramfs.cpio"
STAMP="$(
  {
    cat "$HERE/setup.sh" "$HERE/guest/init.sh" "$HERE/rig-now.c"
    for t in "${GUEST_TOOLS[@]}"; do sha256sum "$t"; done
    echo "${MODULES[*]} / ${BOOT_MODULES[*]}"
    dpkg-query -W busybox-static usbip usbredirect usbutils e2fsprogs libc6 2>/dev/null
  } | sha256sum | cut -d' ' -f1
)"
if [ ! -s "$INITRD" ] || [ "$(cat "$INITRD.stamp" 2>/dev/null)" != "$STAMP" ]; then
  log "building initramfs for $KVER"
  T="$KDIR/initramfs.tree"
  rm -rf "$T"
  mkdir -p "$T"/{bin,lib/x86_64-linux-gnu,lib64,etc,proc,sys,dev,run,tmp,root,mnt/host,usr/share/misc,usr/share/hwdata,var}
  ln -s bin "$T/sbin"
  mkdir -p "$T/usr"
  ln -s ../bin "$T/usr/bin"
  ln -s ../bin "$T/usr/sbin"
  ln -s ../run "$T/var/run"
  # busybox + every applet
  cp /bin/busybox "$T/bin/busybox"
  for a in $(/bin/busybox --list); do
    [ "$a" = busybox ] || ln -sf busybox "$T/bin/$a"
  done
  # dynamically linked tools + the libraries ldd lists
  for b in "${GUEST_BINS[@]}" "$BIN/rig-now" "${GUEST_TOOLS[@]}"; do
    [ -x "$b" ] || die "missing $b"
    rm -f "$T/bin/$(basename "$b")"
    cp -L "$b" "$T/bin/"
    for lib in $(ldd "$b" 2>/dev/null | awk '/=> \// { print $3 } /^[ \t]*\// { print $1 }'); do
      mkdir -p "$T$(dirname "$lib")"
      [ -e "$T$lib" ] || cp -L "$lib" "$T$lib"
    done
  done
  ln -sf mke2fs "$T/bin/mkfs.ext4"
  ln -sf mke2fs "$T/bin/mkfs.ext2"
  [ -f /etc/mke2fs.conf ] && cp /etc/mke2fs.conf "$T/etc/"
  cp /usr/share/misc/usb.ids "$T/usr/share/misc/usb.ids"
  ln -s ../misc/usb.ids "$T/usr/share/hwdata/usb.ids"
  echo 'root:x:0:0:root:/root:/bin/sh' > "$T/etc/passwd"
  echo 'root:x:0:' > "$T/etc/group"
  # module closure
  MD="$T/lib/modules/$KVER"
  mkdir -p "$MD"
  for m in "${MODULES[@]}"; do
    modprobe -S "$KVER" -d "$ROOT" --show-depends "$m" 2>/dev/null |
      awk '$1 == "insmod" { print $2 }'
  done | sort -u | while read -r ko; do
    rel="${ko#"$ROOT"/lib/modules/"$KVER"/}"
    rel="${rel#"$ROOT"/usr/lib/modules/"$KVER"/}"
    mkdir -p "$MD/$(dirname "$rel")"
    cp "$ko" "$MD/$rel"
  done
  for f in modules.builtin modules.builtin.modinfo modules.order; do
    [ -f "$ROOT/lib/modules/$KVER/$f" ] && cp "$ROOT/lib/modules/$KVER/$f" "$MD/"
  done
  depmod -b "$T" "$KVER"
  printf '%s\n' "${BOOT_MODULES[@]}" > "$T/etc/rig-modules.boot"
  echo "$KVER" > "$T/etc/rig-kernel"
  install -m 0755 "$HERE/guest/init.sh" "$T/init"
  (cd "$T" && find . -print0 | LC_ALL=C sort -z | cpio --null -o -H newc --quiet) |
    cat > "$INITRD.tmp"
  mv "$INITRD.tmp" "$INITRD"
  echo "$STAMP" > "$INITRD.stamp"
  log "initramfs: $(du -h "$INITRD" | cut -f1), $(find "$MD" -name '*.ko*' | wc -l) modules"
  rm -rf "$T"
fi

# --- 7. Result ------------------------------------------------------------------------
QEMU="$(command -v qemu-system-x86_64)" || die "no qemu-system-x86_64"
SRC_HASH="$(cat "$HERE/setup.sh" "$HERE/guest/init.sh" "$HERE/rig-now.c" "$HERE/relay.c" \
  $(rig_extra_sources) | sha256sum | cut -d' ' -f1)"
cat > "$RIG_DIR/rig.json.tmp" <<EOF
{
  "kernelVersion": "$KVER",
  "kernelPackage": "$KPKG",
  "vmlinux": "$VMLINUX",
  "initrd": "$INITRD",
  "relay": "$RELAY",
  "qemu": "$QEMU",
  "sourcesHash": "$SRC_HASH"
}
EOF
mv "$RIG_DIR/rig.json.tmp" "$RIG_DIR/rig.json"
log "ready: $RIG_DIR/rig.json (kernel $KVER)"

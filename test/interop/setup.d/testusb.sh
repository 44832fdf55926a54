# shellcheck shell=bash
# setup.d step (sourced by setup.sh): the kernel's own `testusb` (tools/usb/testusb.c), the
# userspace side of usbtest.ko, built static into the guest. No Debian package ships it: the
# source comes from Debian's linux-source-6.1 (one ~140 MB download, then only testusb.c is
# kept under $RIG_DIR, so re-runs cost nothing).
TESTUSB_SRC="$RIG_DIR/src/testusb.c"
if [ ! -s "$TESTUSB_SRC" ]; then
  _tu_dl="$RIG_DIR/dl-linux-source"
  rm -rf "$_tu_dl"
  mkdir -p "$_tu_dl" "$RIG_DIR/src"
  chown _apt "$_tu_dl" 2>/dev/null || true
  log "downloading linux-source-6.1 for tools/usb/testusb.c"
  if ! (cd "$_tu_dl" && apt-get download -qq linux-source-6.1 >&2); then
    apt_update_once
    (cd "$_tu_dl" && apt-get download -qq linux-source-6.1 >&2)
  fi
  _tu_deb="$(ls "$_tu_dl"/linux-source-6.1_*.deb | head -1)"
  [ -n "$_tu_deb" ] || die "apt-get download linux-source-6.1 gave no .deb"
  # The .deb holds /usr/src/linux-source-6.1.tar.xz; take testusb.c out of it without
  # unpacking the whole tree.
  dpkg-deb --fsys-tarfile "$_tu_deb" |
    tar -xO --wildcards '*/linux-source-6.1.tar.xz' |
    tar -xJO --wildcards '*/tools/usb/testusb.c' > "$TESTUSB_SRC.tmp"
  [ -s "$TESTUSB_SRC.tmp" ] || die "no tools/usb/testusb.c in $_tu_deb"
  mv "$TESTUSB_SRC.tmp" "$TESTUSB_SRC"
  rm -rf "$_tu_dl"
fi
# testusb.c uses pthreads and <linux/usbdevice_fs.h> only.
build_c "$TESTUSB_SRC" "$BIN/guest/testusb" -static -pthread -Wno-unused-parameter -Wno-sign-compare
GUEST_TOOLS+=("$BIN/guest/testusb")

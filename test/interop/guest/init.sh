#!/bin/sh
# /init of the usbwire interop initramfs (busybox sh). Built into the initramfs by
# test/interop/setup.sh. Runs /mnt/host/guest.sh from the 9p share with its output in
# /mnt/host/guest.log, writes its exit status to /mnt/host/guest.rc and powers off.
# The serial console is slow under TCG: only short progress lines go there.
export PATH=/sbin:/bin:/usr/sbin:/usr/bin
export HOME=/root
umask 022

mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev 2>/dev/null
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts 2>/dev/null
mount -t tmpfs tmpfs /run
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /dev/shm
mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null

say() { echo "rig-init: $*" > /dev/console; }
mark() { read -r up _ < /proc/uptime; echo "$up $*" >> /run/rig-boot-times; }
mark init

die() {
  say "FATAL: $*"
  poweroff -f
  sleep 5
  echo o > /proc/sysrq-trigger
}

# Kernel command line options (rig.*) ---------------------------------------------------
RIG_NET=1
RIG_IP=10.0.2.15/24
RIG_MODULES=""
for opt in $(cat /proc/cmdline); do
  case "$opt" in
    rig.net=*) RIG_NET="${opt#rig.net=}" ;;
    rig.ip=*) RIG_IP="${opt#rig.ip=}" ;;
    rig.modules=*) RIG_MODULES="$(echo "${opt#rig.modules=}" | tr , ' ')" ;;
  esac
done

# Modules: the list given at build time plus rig.modules=a,b,c from the command line. One
# modprobe call: every exec costs 50-90 ms under TCG.
# shellcheck disable=SC2046
modprobe -a $(cat /etc/rig-modules.boot) $RIG_MODULES 2>/dev/null || say "modprobe failed: $(cat /etc/rig-modules.boot) $RIG_MODULES"

mark modules
# 9p share ------------------------------------------------------------------------------
mkdir -p /mnt/host
i=0
until mount -t 9p -o trans=virtio,version=9p2000.L host0 /mnt/host 2>/dev/null; do
  i=$((i + 1))
  [ $i -ge 50 ] && die "cannot mount the 9p share host0"
  sleep 0.1
done

# Network: QEMU user net 10.0.2.15/24 via 10.0.2.2, or rig.ip=ADDR/24 on a tap -------------
ip link set lo up
if [ "$RIG_NET" = 1 ] && [ -e /sys/class/net/eth0 ]; then
  ip link set eth0 up
  ip addr add "$RIG_IP" dev eth0
  [ "$RIG_IP" = 10.0.2.15/24 ] && ip route add default via 10.0.2.2 dev eth0 2>/dev/null
fi

mark network
cp /run/rig-boot-times /mnt/host/boot-times.log 2>/dev/null
# Run the test --------------------------------------------------------------------------
echo "rig-init: running guest.sh" > /dev/console
cd /mnt/host
rc=127
if [ -f /mnt/host/guest.sh ]; then
  RIG_SHARE=/mnt/host sh /mnt/host/guest.sh > /mnt/host/guest.log 2>&1 < /dev/null
  rc=$?
fi
dmesg > /mnt/host/dmesg.log 2>/dev/null
echo "$rc" > /mnt/host/guest.rc
cd /
sync
umount /mnt/host 2>/dev/null
echo "rig-init: done rc=$rc" > /dev/console
poweroff -f
sleep 5
echo o > /proc/sysrq-trigger

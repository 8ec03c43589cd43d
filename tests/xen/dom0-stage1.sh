#!/bin/busybox sh
# /init of dom0's own small initramfs (built by build-image.sh in place of Debian's, which
# takes about 7 s longer under TCG): load the virtio disk and ext4 modules (listed in
# /modules.list, dependencies first), mount /dev/vda and switch to the real root's init
# (init= on the kernel command line, default /sbin/xt-init).
export PATH=/bin
busybox mkdir -p /proc /sys /dev /newroot
busybox mount -t proc proc /proc
busybox mount -t sysfs sys /sys
busybox mount -t devtmpfs dev /dev
INIT=/sbin/xt-init ROOT=/dev/vda
for w in $(busybox cat /proc/cmdline); do
  case $w in init=*) INIT=${w#init=} ;; root=/dev/*) ROOT=${w#root=} ;; esac
done
for m in $(busybox cat /modules.list); do busybox insmod "$m" 2>/dev/null; done
i=0; while [ ! -b "$ROOT" ] && [ $i -lt 200 ]; do busybox sleep 0.1; i=$((i + 1)); done
if ! busybox mount -t ext4 -o rw "$ROOT" /newroot; then
  echo "XT-DOM0 stage1: cannot mount $ROOT; shell on the console"
  exec busybox sh
fi
busybox umount /proc /sys
busybox mount --move /dev /newroot/dev
exec busybox switch_root /newroot "$INIT"

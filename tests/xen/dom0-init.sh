#!/bin/bash
# PID 1 of the test dom0 (installed as /sbin/xt-init by build-image.sh; boot.sh boots the dom0
# kernel with init=/sbin/xt-init). No systemd: under TCG every second counts.
#  1. mounts the pseudo file systems, loads the Xen backend modules
#  2. starts xenstored, xen-init-dom0, xenconsoled (guest consoles -> /var/log/xen/console/guest-<name>.log)
#  3. mounts the host share (virtio-9p, tag "xt") at /mnt/share and runs /mnt/share/run.sh
#     (bounded by xt_run_timeout), its output on the console and in /mnt/share/out/run.log
#  4. copies the logs (guest consoles, xl dmesg, xl list, dom0 dmesg) into /mnt/share/out/,
#     writes run.sh's exit status to /mnt/share/out/run-exit and prints "RUN-EXIT <n>"
#  5. destroys all domUs and powers off (QEMU exits)
# Kernel command line knobs: xt_run_timeout=SECONDS (default 900), xt_hold=1 (don't power off:
# root shell on hvc0 instead, for boot.sh --hold).
export PATH=/usr/lib/xen-4.17/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root TERM=${TERM:-vt100}
up() { cut -d' ' -f1 /proc/uptime; }
mark() { echo "XT-DOM0 [t=$(up)] $*"; }
mountpoint -q /proc || mount -t proc proc /proc
mountpoint -q /sys  || mount -t sysfs sys /sys
mountpoint -q /dev  || mount -t devtmpfs dev /dev
mountpoint -q /run  || mount -t tmpfs tmpfs /run
mountpoint -q /tmp  || mount -t tmpfs tmpfs /tmp
mkdir -p /dev/pts /dev/shm && mount -t devpts devpts /dev/pts 2>/dev/null
mount -o remount,rw /
hostname dom0
xt_run_timeout=900; xt_hold=0
for w in $(cat /proc/cmdline); do case $w in xt_*=*) eval "$w";; esac; done
mark "init-start kernel=$(uname -r)"

for m in xenfs xen-evtchn xen-gntdev xen-gntalloc xen-privcmd xen-netback xen-blkback bridge 9pnet_virtio 9p; do
  modprobe $m || echo "XT-DOM0 modprobe $m failed"
done
mountpoint -q /proc/xen || mount -t xenfs xenfs /proc/xen
mark "modules-loaded caps=$(cat /proc/xen/capabilities)"

mkdir -p /run/xen /run/xenstored /var/run/xen /var/log/xen/console /var/lib/xen
rm -f /var/log/xen/console/*          # stale guest logs would fool marker waits
XENSTORED_ROOTDIR=/run/xenstored xenstored --pid-file /run/xenstore.pid
for i in $(seq 1 30); do xenstore-read -s / >/dev/null 2>&1 && break; sleep 1; done
xen-init-dom0 >/dev/null
xenconsoled --pid-file=/run/xenconsoled.pid --log=all --log-dir=/var/log/xen/console --timestamp=all
ip link set lo up
mark "toolstack-up"
xl info | grep -E '^(xen_version|xen_caps|virt_caps|nr_cpus|total_memory|free_memory|xen_commandline)' | sed 's/^/XT-DOM0 xl-info /'
mark "dom0-ready"

rc=125
mkdir -p /mnt/share
if mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 xt /mnt/share 2>/dev/null; then
  mark "share mounted at /mnt/share"
  OUT=/mnt/share/out; mkdir -p $OUT/console
  if [ -f /mnt/share/run.sh ]; then
    mark "run-start timeout=${xt_run_timeout}s"
    export XT_SHARE=/mnt/share XT_OUT=$OUT
    # timeout puts run.sh in its own process group and kills the whole group when time is up
    ( cd /mnt/share && timeout -k 5 "$xt_run_timeout" bash /mnt/share/run.sh ) 2>&1 | tee $OUT/run.log
    rc=${PIPESTATUS[0]}
    [ "$rc" = 124 ] && mark "run.sh TIMED OUT after ${xt_run_timeout}s"
    mark "run-end rc=$rc"
  else
    mark "no /mnt/share/run.sh"
  fi
  xl list -v > $OUT/xl-list.txt 2>&1
  xl dmesg > $OUT/xl-dmesg.txt 2>&1
  dmesg > $OUT/dom0-dmesg.txt 2>&1
  cp /var/log/xen/console/*.log $OUT/console/ 2>/dev/null
  echo "$rc" > $OUT/run-exit
else
  mark "no share (boot.sh exports one with -virtfs ... mount_tag=xt)"
fi
echo "RUN-EXIT $rc"

if [ "$xt_hold" = 1 ]; then
  mark "hold: root shell on hvc0 (QEMU: Ctrl-a x quits)"
  while true; do setsid -c /bin/bash -l </dev/hvc0 >/dev/hvc0 2>&1 || sleep 5; done
fi
for d in $(xl list | awk 'NR>2{print $1}'); do xl destroy "$d" 2>/dev/null; done
sync; umount /mnt/share 2>/dev/null
mark "powering off"
echo o > /proc/sysrq-trigger
sleep 60

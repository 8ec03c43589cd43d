#!/bin/bash
# The one command: boot KERNEL (a PVH ELF, e.g. our vmlinuz) as a domU under real Xen (in QEMU
# TCG, see boot.sh) and report what it printed.
#
# usage: run-guest.sh KERNEL [options]
#   KERNEL            host path of the guest kernel; "@linux" = the Debian kernel from the cache
#                     (uncompressed vmlinux ELF, booted as PVH)
#   --name N          domain name (default: guest)
#   --memory MiB      (default 32; 256 for @linux)   --vcpus N   (default 1)
#   --cmdline '...'   guest command line (xl `cmdline`; for @linux "console=hvc0" is prepended)
#   --ramdisk FILE    initramfs; "@busybox" = the cached busybox initramfs (domU-init.sh),
#                     the default for @linux
#   --expect 'text'   fixed string to wait for in the guest's console log
#                     (/var/log/xen/console/guest-N.log) or its `xl dmesg` lines ("(dN) ...",
#                     i.e. port 0xe9 / console_io output). Without it: wait for a clean poweroff.
#   --timeout S       how long to wait for it after `xl create` (default 60)
#   --retries N       re-create the guest up to N times if it triple-faults before the marker
#                     (default 0; the Debian kernel hits a QEMU TCG issue about once in 40 boots)
#   --cfg 'key = val' extra xl config line (repeatable), e.g. --cfg 'vif = [ "bridge=xenbr0" ]'
#   --pre 'cmd'       bash run in dom0 before `xl create` (dom0-lib.sh loaded), e.g.
#                     --pre 'xt_bridge xenbr0 10.99.0.1/24'; its failure is a FAIL
#   --out DIR         run directory (= the share; default $XEN_TCG_CACHE/runs/N-<date>)
#   --boot-timeout S  wall-clock limit for the whole QEMU run
#                     (default: (--timeout + 30) * (--retries + 1) + 270)
#   --echo MODE       marks (default) | all (whole serial console) | none
#   --no-build        don't call build-image.sh first (it is fast when up to date)
# Output: the dom0 side streams run.sh's output (xl create, the wait, xl list, xl dmesg tail,
# the guest console, xenstore-ls of /local/domain/<id>) and ends with
#   RESULT guest-boot OK|FAIL (...)
# Files in the run directory: serial.log (whole console, timestamped), out/run.log,
# out/console/guest-N.log, out/xl-dmesg.txt, out/xl-list.txt, out/dom0-dmesg.txt, out/results.txt.
# Exit status: 0 OK, 1 FAIL, 124 QEMU timeout, 125 harness error.
set -euo pipefail
. "$(dirname "$0")/common.sh"

KERNEL= NAME=guest MEMORY= VCPUS=1 CMDLINE= RAMDISK= EXPECT= TIMEOUT=60 OUT= BOOT_TIMEOUT=
ECHO=marks BUILD=1 CFG_EXTRA=() PRE= RETRIES=0
while [ $# -gt 0 ]; do
  case $1 in
    --name) NAME=$2; shift 2 ;;
    --memory) MEMORY=$2; shift 2 ;;
    --vcpus) VCPUS=$2; shift 2 ;;
    --cmdline) CMDLINE=$2; shift 2 ;;
    --ramdisk) RAMDISK=$2; shift 2 ;;
    --expect) EXPECT=$2; shift 2 ;;
    --timeout) TIMEOUT=$2; shift 2 ;;
    --cfg) CFG_EXTRA+=("$2"); shift 2 ;;
    --pre) PRE=$2; shift 2 ;;
    --retries) RETRIES=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --boot-timeout) BOOT_TIMEOUT=$2; shift 2 ;;
    --echo) ECHO=$2; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    -*) xt_die "unknown option $1 (see --help)" ;;
    *) [ -z "$KERNEL" ] || xt_die "one KERNEL only"; KERNEL=$1; shift ;;
  esac
done
[ -n "$KERNEL" ] || xt_die "usage: run-guest.sh KERNEL [options] (see --help)"
[[ $NAME =~ ^[A-Za-z0-9_.-]+$ ]] || xt_die "bad --name '$NAME'"
if [ "$KERNEL" = @linux ]; then
  MEMORY=${MEMORY:-256}; RAMDISK=${RAMDISK:-@busybox}
  [[ " $CMDLINE " == *" console="* ]] || CMDLINE="console=hvc0${CMDLINE:+ $CMDLINE}"
fi
MEMORY=${MEMORY:-32}
for v in MEMORY VCPUS TIMEOUT RETRIES; do [[ ${!v} =~ ^[0-9]+$ ]] || xt_die "--${v,,} must be a number"; done
BOOT_TIMEOUT=${BOOT_TIMEOUT:-$(( (TIMEOUT + 30) * (RETRIES + 1) + 270 ))}

[ $BUILD = 0 ] || "$XT_DIR/build-image.sh"
CACHED_FILES=()   # copies of cache files: removed from the run dir afterwards (they are big)
[ "$KERNEL" = @linux ] && KERNEL=$XT_DOMU_KERNEL && CACHED_FILES+=("$(basename "$KERNEL")")
[ "$RAMDISK" = @busybox ] && RAMDISK=$XT_DOMU_INITRD && CACHED_FILES+=("$(basename "$RAMDISK")")
[ -f "$KERNEL" ] || xt_die "kernel $KERNEL not found"
[ -z "$RAMDISK" ] || [ -f "$RAMDISK" ] || xt_die "ramdisk $RAMDISK not found"

# the run directory = the share dom0 sees at /mnt/share
if [ -z "$OUT" ]; then
  mkdir -p "$XT_CACHE/runs"
  # keep the 20 newest runs
  { ls -1dt "$XT_CACHE"/runs/*/ 2>/dev/null || true; } | tail -n +20 | xargs -r rm -rf
  OUT=$XT_CACHE/runs/$NAME-$(date +%Y%m%d-%H%M%S)
fi
mkdir -p "$OUT"; OUT=$(cd "$OUT" && pwd)
rm -rf "$OUT/out" "$OUT/files"; mkdir -p "$OUT/files"
# guest files go to files/; run.sh copies them into dom0's RAM first (see xt_stage)
KBASE=$(basename "$KERNEL")
cp "$KERNEL" "$OUT/files/$KBASE"
if [ -n "$RAMDISK" ]; then
  RBASE=$(basename "$RAMDISK")
  [ "$RBASE" != "$KBASE" ] || xt_die "kernel and ramdisk have the same file name"
  cp "$RAMDISK" "$OUT/files/$RBASE"
fi
cp "$XT_DIR/dom0-lib.sh" "$OUT/dom0-lib.sh"

xl_str() { # an xl config string literal
  case $1 in
    *'"'*) [[ $1 != *"'"* ]] || xt_die "value has both quote kinds: $1"; printf "'%s'" "$1" ;;
    *) printf '"%s"' "$1" ;;
  esac
}
{
  echo "# generated by tests/xen/run-guest.sh"
  echo "name = $(xl_str "$NAME")"
  echo 'type = "pvh"'
  echo "kernel = $(xl_str "/tmp/xt/$KBASE")"
  [ -z "$RAMDISK" ] || echo "ramdisk = $(xl_str "/tmp/xt/$RBASE")"
  [ -z "$CMDLINE" ] || echo "cmdline = $(xl_str "$CMDLINE")"
  echo "memory = $MEMORY"
  echo "vcpus = $VCPUS"
  echo '# QEMU TCG: without it the first RDTSCP hangs the vCPU (TCG has no NRIP-save)'
  echo 'tsc_mode = "native"'
  echo 'on_poweroff = "preserve"'
  echo 'on_reboot = "preserve"'
  echo 'on_crash = "preserve"'
  for l in "${CFG_EXTRA[@]}"; do echo "$l"; done
} > "$OUT/guest.cfg"

{
  echo "# generated by tests/xen/run-guest.sh"
  printf 'NAME=%q\nEXPECT=%q\nGUEST_TIMEOUT=%q\nPRE=%q\nRETRIES=%q\n' "$NAME" "$EXPECT" "$TIMEOUT" "$PRE" "$RETRIES"
} > "$OUT/params.sh"
cat > "$OUT/run.sh" <<'EOF'
#!/bin/bash
# generated by tests/xen/run-guest.sh; runs in dom0 with cwd /mnt/share
. /mnt/share/dom0-lib.sh
. /mnt/share/params.sh
echo "---- guest.cfg"; cat /mnt/share/guest.cfg
xt_stage /mnt/share/files/*
if [ -n "$PRE" ]; then
  xt_mark "pre: $PRE"
  eval "$PRE" || { xt_result guest-boot FAIL "--pre command failed"; exit 1; }
fi
xt_guest_boot_test "$NAME" /mnt/share/guest.cfg "$EXPECT" "$GUEST_TIMEOUT" "$RETRIES"
EOF
chmod +x "$OUT/run.sh"

xt_log "run dir $OUT: kernel $KBASE${RAMDISK:+, ramdisk $(basename "$RAMDISK")}, expect '${EXPECT:-<clean poweroff>}' within ${TIMEOUT}s"
rc=0
# boot.sh in the background + wait: on INT/TERM we stop it, and it stops its QEMU
"$XT_DIR/boot.sh" --timeout "$BOOT_TIMEOUT" --run-timeout $(( (TIMEOUT + 30) * (RETRIES + 1) + 120 )) --echo "$ECHO" "$OUT" &
BOOT_PID=$!
trap 'kill -TERM $BOOT_PID 2>/dev/null; wait $BOOT_PID; exit 130' INT TERM
wait $BOOT_PID || rc=$?
trap - INT TERM
for f in "${CACHED_FILES[@]}"; do rm -f "$OUT/files/$f"; done
result=$(grep -h '^RESULT guest-boot' "$OUT/out/results.txt" 2>/dev/null | tail -1 || true)
echo "== run-guest $NAME: ${result:-RESULT guest-boot FAIL (no result: harness exit $rc)}"
echo "== files: $OUT/{serial.log,out/run.log,out/console/guest-$NAME.log,out/xl-dmesg.txt}"
exit $rc

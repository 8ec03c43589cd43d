#!/bin/bash
# Boot real Xen 4.17 + the Debian PV dom0 (built by build-image.sh) under qemu-system-x86_64
# with TCG, export SHARE_DIR to dom0 over virtio-9p, and let dom0 run SHARE_DIR/run.sh.
#
# usage: boot.sh [options] SHARE_DIR
#   --timeout S       wall-clock limit for QEMU (default 900); QEMU is killed after it
#   --run-timeout S   limit for run.sh inside dom0 (default: --timeout minus 90)
#   --log FILE        timestamped serial log (default SHARE_DIR/serial.log)
#   --echo MODE       what to show on stdout: marks (default: harness lines + run.sh output),
#                     all (whole serial console), none
#   --hold            interactive: console on this terminal, no timeout, root shell in dom0
#                     after run.sh (QEMU: Ctrl-a x quits)
# env: XT_CPU (max) XT_MACHINE (q35) XT_SMP (2) XT_MEM (MiB, 4096) XT_DOM0_MEM (1536M)
#      XT_ACCEL (tcg,thread=multi)
#      XT_XEN_EXTRA (appended to Xen's command line) XT_DOM0_EXTRA (to dom0 Linux's)
#
# In dom0, run.sh runs with cwd SHARE_DIR (/mnt/share) and env XT_SHARE=/mnt/share,
# XT_OUT=/mnt/share/out; dom0 copies the guest console logs, `xl dmesg`, `xl list` and its own
# dmesg into SHARE_DIR/out/ and writes run.sh's exit status to SHARE_DIR/out/run-exit.
#
# Exit status: run.sh's exit status; 124 if QEMU hit --timeout before run.sh finished;
# 125 for harness errors (no image, QEMU failed, dom0 never reached run.sh).
# The image is used with snapshot=on (stays pristine); the outer VM has no NIC (-nic none),
# so nothing the guests send can leave QEMU.
set -uo pipefail
. "$(dirname "$0")/common.sh"

TIMEOUT=900 RUN_TIMEOUT= LOG= ECHO=marks HOLD=0 SHARE=
while [ $# -gt 0 ]; do
  case $1 in
    --timeout) TIMEOUT=$2; shift 2 ;;
    --run-timeout) RUN_TIMEOUT=$2; shift 2 ;;
    --log) LOG=$2; shift 2 ;;
    --echo) ECHO=$2; shift 2 ;;
    --hold) HOLD=1; shift ;;
    -h|--help) sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    -*) xt_die "unknown option $1 (see --help)" ;;
    *) [ -z "$SHARE" ] || xt_die "one SHARE_DIR only"; SHARE=$1; shift ;;
  esac
done
[ -n "$SHARE" ] || xt_die "usage: boot.sh [options] SHARE_DIR (see --help)"
[ -d "$SHARE" ] || xt_die "share dir $SHARE does not exist"
SHARE=$(cd "$SHARE" && pwd)
[ -f "$SHARE/run.sh" ] || xt_log "warning: $SHARE/run.sh missing: dom0 will only boot"
for f in "$XT_XEN" "$XT_DOM0_KERNEL" "$XT_DOM0_INITRD" "$XT_DOM0_IMG" "$XT_QEMU_ENV"; do
  [ -s "$f" ] || xt_die "$f missing: run tests/xen/build-image.sh first"
done
. "$XT_QEMU_ENV"
[ -n "$RUN_TIMEOUT" ] || RUN_TIMEOUT=$(( TIMEOUT > 180 ? TIMEOUT - 90 : TIMEOUT / 2 ))
LOG=${LOG:-$SHARE/serial.log}
rm -rf "$SHARE/out" && mkdir -p "$SHARE/out"

# Xen: smap=0 is required under QEMU TCG (else the PV dom0 dies at its first bounce frame);
# -cpu max (AMD-like, with SVM+NPT: Debian's Xen has no shadow paging, so HVM/PVH needs HAP).
# spec-ctrl=eager-fpu: on this (AMD-looking) CPU Xen defaults to lazy FPU switching, and under
# host CPU load we saw dom0 processes segfault or hang and a Linux domU triple-fault; with
# eager FPU switching none of that showed up again (see README.md, "Reliability").
XEN_ARGS="console=com1 com1=115200,8n1 loglvl=all guest_loglvl=all smap=0 spec-ctrl=eager-fpu dom0_mem=${XT_DOM0_MEM:-1536M},max:${XT_DOM0_MEM:-1536M} dom0_max_vcpus=${XT_SMP:-2} ${XT_XEN_EXTRA:-}"
DOM0_ARGS="console=hvc0 root=/dev/vda rw fsck.mode=skip init=/sbin/xt-init xt_run_timeout=$RUN_TIMEOUT xt_hold=$HOLD ${XT_DOM0_EXTRA:-}"
PIDFILE=$(mktemp -u /tmp/xt-qemu.XXXXXX.pid)
[ -z "${XT_QEMU_MODULE_DIR:-}" ] || export QEMU_MODULE_DIR=$XT_QEMU_MODULE_DIR
QEMU_CMD=("$XT_QEMU")
for d in ${XT_QEMU_DATADIRS:-}; do QEMU_CMD+=(-L "$d"); done
QEMU_CMD+=(
  -accel "${XT_ACCEL:-tcg,thread=multi}" -machine "${XT_MACHINE:-q35}" -cpu "${XT_CPU:-max}"
  -smp "${XT_SMP:-2}" -m "${XT_MEM:-4096}"
  -nographic -no-reboot -nic none -pidfile "$PIDFILE"
  -drive "file=$XT_DOM0_IMG,format=raw,if=virtio,cache=unsafe,snapshot=on"
  -virtfs "local,path=$SHARE,mount_tag=xt,security_model=none"
  -kernel "$XT_XEN" -append "$XEN_ARGS"
  -initrd "$XT_DOM0_KERNEL $DOM0_ARGS,$XT_DOM0_INITRD")

if [ $HOLD = 1 ]; then
  xt_log "interactive boot (Ctrl-a x quits QEMU)"
  exec "${QEMU_CMD[@]}"
fi

# Never leave a QEMU behind: kill the one we started (by its pid file) on any exit.
cleanup() {
  local pid
  pid=$(cat "$PIDFILE" 2>/dev/null) || true
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    xt_log "stopping QEMU pid $pid"; kill "$pid" 2>/dev/null; sleep 1; kill -9 "$pid" 2>/dev/null
  fi
  rm -f "$PIDFILE"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

xt_log "booting Xen+dom0 (share $SHARE, timeout ${TIMEOUT}s, run.sh limit ${RUN_TIMEOUT}s, log $LOG)"
echo "BOOT qemu start: $(basename "$XT_QEMU") -cpu ${XT_CPU:-max} -smp ${XT_SMP:-2} -m ${XT_MEM:-4096}" >&2
T0=$(date +%s.%N)
# In the background + `wait`, so that a signal to this script runs the cleanup at once.
STATUSFILE=$SHARE/out/.qemu-status
( timeout -k 10 "$TIMEOUT" "${QEMU_CMD[@]}" < /dev/null 2>&1; echo $? > "$STATUSFILE" ) |
  python3 "$XT_DIR/serial-log.py" "$LOG" --echo "$ECHO" &
wait $!
st=("$(cat "$STATUSFILE" 2>/dev/null || echo '?')"); rm -f "$STATUSFILE"
ELAPSED=$(awk -v a="$(date +%s.%N)" -v b="$T0" 'BEGIN{printf "%.1f", a-b}')

if [ -s "$SHARE/out/run-exit" ]; then
  rc=$(cat "$SHARE/out/run-exit")
elif grep -q '^\[[ 0-9.]*\] RUN-EXIT [0-9]' "$LOG"; then
  rc=$(grep -o 'RUN-EXIT [0-9]*' "$LOG" | tail -1 | cut -d' ' -f2)
elif [ "${st[0]}" = 124 ] || [ "${st[0]}" = 137 ]; then
  xt_log "QEMU hit the ${TIMEOUT}s timeout before run.sh finished (log: $LOG)"; rc=124
else
  xt_log "no RUN-EXIT from dom0 (QEMU status ${st[0]}; log: $LOG)"; rc=125
fi
# dom0 milestones, for timing
ready=$(grep -m1 'XT-DOM0 .*dom0-ready' "$LOG" | sed 's/^\[ *\([0-9.]*\)\].*/\1/')
echo "BOOT done: qemu status ${st[0]}, run.sh exit $rc, wall ${ELAPSED}s, dom0-ready at ${ready:-?}s, log $LOG" >&2
exit "$rc"

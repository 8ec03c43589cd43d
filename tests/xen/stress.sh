#!/bin/bash
# Reliability check of the emulated Xen host: in ONE boot, create N Linux PVH domUs one after
# the other (each powers itself off), and count clean poweroffs, reboots (Xen turns a guest
# triple fault into a reboot), other outcomes, and crashed dom0 processes.
# usage: stress.sh [N (default 10)] [per-guest timeout S (default 90)]
# Prints "stress: N passed, N failed"; exit 0 only if every guest powered off cleanly and no
# dom0 process crashed. Takes about 15 s per guest plus the boot (more under host load).
set -uo pipefail
. "$(dirname "$0")/common.sh"
N=${1:-10} T=${2:-90}
"$XT_DIR/build-image.sh" || exit 125
OUT=$XT_CACHE/runs/stress-$(date +%Y%m%d-%H%M%S)
mkdir -p "$OUT"
cp "$XT_DIR/dom0-lib.sh" "$OUT/"
cat > "$OUT/run.sh" <<EOF
. /mnt/share/dom0-lib.sh
N=$N T=$T
EOF
cat >> "$OUT/run.sh" <<'EOF'
ok=0 bad=0
for i in $(seq 1 $N); do
  cat > /tmp/s.cfg <<EOC
name = "s$i"
type = "pvh"
kernel = "/var/lib/xt/domU-vmlinux"
ramdisk = "/var/lib/xt/domU-initrd.gz"
cmdline = "console=hvc0 xt_poweroff=1"
memory = 256
tsc_mode = "native"
on_poweroff = "preserve"
on_reboot = "preserve"
on_crash = "preserve"
EOC
  xl create -q /tmp/s.cfg >/dev/null 2>&1
  xt_wait_guest "s$i" '' "$T" >/dev/null
  r=$(xt_shutdown_reason "s$i")
  if [ "$XT_WAIT/$r" = shutdown/0 ]; then ok=$((ok + 1)); xt_mark "s$i poweroff after ${XT_WAIT_SECS}s"
  else bad=$((bad + 1)); xt_result "stress-s$i" FAIL "wait=$XT_WAIT reason=${r:-?} after ${XT_WAIT_SECS}s"; fi
  xl destroy "s$i" 2>/dev/null
done
tf=$(xl dmesg | grep -c 'Triple fault')
crashes=$(dmesg | grep -c -E 'segfault|general protection|traps:')
[ "$crashes" = 0 ] || { bad=$((bad + 1)); dmesg | grep -E 'segfault|general protection|traps:'; xt_result stress-dom0 FAIL "$crashes dom0 process crashes"; }
echo "STRESS $ok of $N clean poweroffs, $tf triple faults, $crashes dom0 process crashes"
[ "$bad" = 0 ]
EOF
rc=0
"$XT_DIR/boot.sh" --timeout $(( N * (T + 20) + 200 )) --run-timeout $(( N * (T + 20) + 60 )) "$OUT" || rc=$?
line=$(grep -h '^\[ *[0-9.]*\] STRESS ' "$OUT/serial.log" | tail -1)
echo "== ${line:-no STRESS line (exit $rc)}"
good=$(echo "$line" | sed -n 's/.*STRESS \([0-9]*\) of.*/\1/p')
echo "stress: ${good:-0} passed, $(( N - ${good:-0} )) failed"
exit $rc

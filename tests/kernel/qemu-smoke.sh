#!/usr/bin/env bash
# Boot the PVH kernel under QEMU (TCG, no Xen) and check that it prints its
# banner and version on the debug port, reports that it found no Xen, and
# stops by itself through QEMU's exit device, within a time bound.
set -euo pipefail
kernel=${1:?usage: qemu-smoke.sh VMLINUZ VERSION}
version=${2:?usage: qemu-smoke.sh VMLINUZ VERSION}
out=$(mktemp)
trap 'rm -f "$out"' EXIT
set +e
timeout 60 qemu-system-x86_64 -machine pc -accel tcg -cpu max -m 64 \
  -nographic -no-reboot -nic none -serial none -monitor none \
  -kernel "$kernel" -debugcon "file:$out" \
  -device isa-debug-exit,iobase=0xf4,iosize=0x04
rc=$?
set -e
echo "--- debug port output ---"
cat "$out"
echo "--- qemu exit status $rc ---"
fail=0
grep -q "^mirage-firewall (rust) $version: PVH entry" "$out" || { echo "FAIL: no banner with version $version"; fail=1; }
grep -q "no Xen hypervisor found" "$out" || { echo "FAIL: did not report the missing Xen"; fail=1; }
# The exit device turns the kernel's code 0 into status 1; 124 is a timeout.
[ "$rc" -eq 1 ] || { echo "FAIL: expected QEMU exit status 1 (clean stop), got $rc"; fail=1; }
[ "$fail" -eq 0 ] && echo "RESULT qemu-pvh-smoke OK"
exit "$fail"

#!/usr/bin/env bash
# Boot the PVH kernel under QEMU (TCG, no Xen), four times:
#
# 1. plain: it must print its banner and version and its page-table layout
#    on the debug port, report that it found no Xen, and stop by itself
#    through QEMU's exit device (status 1);
# 2. each self-test (xen::pvh::selftest), chosen on the command line:
#      selftest=wx     writes to .text        -> #PF, error 0x3 (present, write)
#      selftest=nx     calls code in .data    -> #PF, error 0x11 (present, fetch)
#      selftest=guard  overflows the stack    -> #PF, error 0x2 (not present, write)
#    each must end in the exception handler's report of a page fault
#    (vector 14) whose CR2 is the address the test names and lies in the
#    region the layout line gives (text, data, guard page), and QEMU must
#    exit with status 5 (the handler's exit code); a test whose access did
#    not fault prints "selftest FAILED" and exits with status 7.
#
# Each boot has a time bound; prints every boot's output and one RESULT line.
set -euo pipefail
kernel=${1:?usage: qemu-smoke.sh VMLINUZ VERSION}
version=${2:?usage: qemu-smoke.sh VMLINUZ VERSION}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
fail=0
bad() { echo "FAIL ($1): $2"; fail=1; }

# boot NAME CMDLINE: output in $dir/NAME.out, QEMU status in $rc.
boot() {
  local out=$dir/$1.out
  : >"$out"
  set +e
  timeout 60 qemu-system-x86_64 -machine pc -accel tcg -cpu max -m 64 \
    -nographic -no-reboot -nic none -serial none -monitor none \
    -kernel "$kernel" -append "$2" -debugcon "file:$out" \
    -device isa-debug-exit,iobase=0xf4,iosize=0x04
  rc=$?
  set -e
  echo "--- $1 (command line '$2'): debug port output ---"
  cat "$out"
  echo "--- $1: qemu exit status $rc ---"
}

# region OUT NAME: "START END" of "NAME 0x..-0x.." in the layout line.
region() {
  grep -m1 '^paging: ' "$1" | grep -o " $2 0x[0-9a-f]*-0x[0-9a-f]*" | sed 's/.* \(0x[0-9a-f]*\)-\(0x[0-9a-f]*\)/\1 \2/'
}

boot plain ""
out=$dir/plain.out
grep -q "^mirage-firewall (rust) $version: PVH entry" "$out" || bad plain "no banner with version $version"
grep -q '^paging: .* text 0x[0-9a-f]*-0x[0-9a-f]* RX, .* guard 0x[0-9a-f]*-0x[0-9a-f]* unmapped' "$out" ||
  bad plain "no page-table layout line"
grep -q "no Xen hypervisor found" "$out" || bad plain "did not report the missing Xen"
grep -q "selftest" "$out" && bad plain "ran a self-test without being asked"
# The exit device turns the kernel's code 0 into status 1; 124 is a timeout.
[ "$rc" -eq 1 ] || bad plain "expected QEMU exit status 1 (clean stop), got $rc"

# selftest TEST REGION ERROR: boot with selftest=TEST and check the report.
selftest() {
  local t=$1 name=$2 error=$3 out=$dir/$1.out
  boot "$t" "selftest=$t"
  local r start end report cr2 target
  r=$(region "$out" "$name")
  if [ -z "$r" ]; then bad "$t" "no $name region in the layout line"; return; fi
  read -r start end <<<"$r"
  grep -q "^selftest=$t: .*must fault" "$out" || bad "$t" "the self-test did not start"
  grep -q "^selftest FAILED" "$out" && bad "$t" "$(grep -m1 '^selftest FAILED' "$out")"
  report=$(grep -m1 '^EXCEPTION: ' "$out" || true)
  if [ -z "$report" ]; then bad "$t" "no exception report"; return; fi
  case $report in
    "EXCEPTION: vector 14 (#PF page fault), error $error, "*) ;;
    *) bad "$t" "expected a page fault (vector 14) with error code $error, got: $report" ;;
  esac
  cr2=$(sed -n 's/.*, cr2 \(0x[0-9a-f]*\),.*/\1/p' <<<"$report")
  if [ -z "$cr2" ]; then bad "$t" "no CR2 in the report"; return; fi
  if ((cr2 < start || cr2 >= end)); then
    bad "$t" "CR2 $cr2 outside $name $start-$end"
  fi
  # wx and nx name their target address; the overflow may fault anywhere
  # in the guard page.
  target=$(grep -m1 "^selftest=$t: " "$out" | sed -n 's/.* at \(0x[0-9a-f]*\) .*/\1/p')
  if [ -n "$target" ] && ((cr2 != target)); then
    bad "$t" "CR2 $cr2 is not the target $target"
  fi
  [ "$rc" -eq 5 ] || bad "$t" "expected QEMU exit status 5 (exception handler), got $rc"
}

selftest wx text 0x3
selftest nx data 0x11
selftest guard guard 0x2

[ "$fail" -eq 0 ] && echo "RESULT qemu-pvh-smoke OK (plain boot, selftest=wx, selftest=nx, selftest=guard)"
exit "$fail"

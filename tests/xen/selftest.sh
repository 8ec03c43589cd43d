#!/bin/bash
# Self-test of the real-Xen harness, without our firewall kernel: each check is one real boot
# of Xen + dom0 under QEMU TCG (about 1 minute each on 2 cores, plus the image build the
# first time).
#   linux-ok        Debian bzImage as a PVH domU + busybox initramfs; waits for the marker its
#                   init prints on the console -> RESULT guest-boot OK (exit 0)
#                   (--retries 2: see README.md, "Reliability", for the occasional triple fault)
#   linux-timeout   the same guest, waiting for a marker it never prints, 20 s
#                   -> RESULT guest-boot FAIL (exit 1): the harness must report the failure
#   pvh-hello       a freestanding PVH ELF (pvh-hello.S, ELF64 + PHYS32_ENTRY note, no Linux)
#                   that writes to port 0xe9: the marker is found in `xl dmesg` ("(dN) ...")
#   pvh-poweroff    the same ELF with no --expect: OK only for a clean poweroff (reason 0)
#   linux-vif       the Linux domU with a vif on a dom0 bridge (netback in dom0, netfront in
#                   the guest): it pings dom0, the marker is "XT-DOMU ... ping-ok 10.99.0.1".
#                   The addresses exist only inside QEMU (-nic none).
# usage: selftest.sh [CHECK...]   (default: all five). Ends with "N passed, N failed".
set -uo pipefail
. "$(dirname "$0")/common.sh"

"$XT_DIR/build-image.sh" || exit 125
CHECKS=("$@"); [ ${#CHECKS[@]} -gt 0 ] || CHECKS=(linux-ok linux-timeout pvh-hello pvh-poweroff linux-vif)

HELLO=$XT_CACHE/pvh-hello.elf
build_hello() {
  local t; t=$(mktemp -d)
  gcc -c -o "$t/pvh-hello.o" "$XT_DIR/pvh-hello.S" &&
    ld -m elf_x86_64 -T "$XT_DIR/pvh-hello.ld" -z noexecstack --no-warn-rwx-segments \
       --build-id=none -o "$HELLO" "$t/pvh-hello.o"
  local rc=$?; rm -rf "$t"; return $rc
}

pass=0 fail=0 summary=()
check() { # NAME WANTED_EXIT WANTED_RESULT_REGEX CMD...  (the regex is matched against the
  #          RESULT line in the run's out/results.txt; "" = any)
  local name=$1 want=$2 re=$3 rc=0 t0=$SECONDS result; shift 3
  echo "=== selftest $name: $*"
  "$@" || rc=$?
  result=$(cat "$(ls -1dt "$XT_CACHE/runs/$name"-*/ 2>/dev/null | head -1)out/results.txt" 2>/dev/null)
  if [ "$rc" = "$want" ] && { [ -z "$re" ] || echo "$result" | grep -qE "$re"; }; then
    summary+=("PASS $name (exit $rc as expected, $((SECONDS - t0)) s)"); pass=$((pass + 1))
  else
    summary+=("FAIL $name (exit $rc, expected $want${re:+ and a result matching '$re'}, $((SECONDS - t0)) s)"); fail=$((fail + 1))
  fi
  echo "=== ${summary[-1]}"
}

RG=("$XT_DIR/run-guest.sh" --no-build)
for c in "${CHECKS[@]}"; do
  case $c in
    linux-ok)
      check linux-ok 0 'guest-boot OK' "${RG[@]}" @linux --ramdisk @busybox --memory 256 --name linux-ok --retries 2 \
        --cmdline 'console=hvc0 xt_say=hello-from-linux-pvh xt_poweroff=1' \
        --expect 'XT-DOMU say hello-from-linux-pvh' --timeout 120 ;;
    linux-timeout)
      check linux-timeout 1 'guest-boot FAIL \(wait=timeout' "${RG[@]}" @linux --ramdisk @busybox --memory 256 --name linux-timeout --retries 2 \
        --cmdline 'console=hvc0' --expect 'THIS-MARKER-IS-NEVER-PRINTED' --timeout 20 ;;
    pvh-hello)
      build_hello || { summary+=("FAIL pvh-hello (build)"); fail=$((fail + 1)); continue; }
      check pvh-hello 0 'in xl-dmesg' "${RG[@]}" "$HELLO" --name pvh-hello --cmdline 'hello=world' \
        --expect 'pvh-hello: cmdline=hello=world' --timeout 30 ;;
    pvh-poweroff)
      build_hello || { summary+=("FAIL pvh-poweroff (build)"); fail=$((fail + 1)); continue; }
      check pvh-poweroff 0 'state=shutdown reason=0' "${RG[@]}" "$HELLO" --name pvh-poweroff --timeout 30 ;;
    linux-vif)
      check linux-vif 0 'guest-boot OK' "${RG[@]}" @linux --name linux-vif --retries 2 --pre 'xt_bridge xenbr0 10.99.0.1/24' \
        --cfg 'vif = [ "bridge=xenbr0,mac=00:16:3e:00:00:02" ]' \
        --cmdline 'xt_ip=10.99.0.2/24 xt_ping=10.99.0.1' --expect 'ping-ok 10.99.0.1' --timeout 120 ;;
    *) echo "unknown check $c"; fail=$((fail + 1)) ;;
  esac
done
echo "=== selftest summary"
printf '  %s\n' "${summary[@]}"
echo "selftest: $pass passed, $fail failed"
[ "$fail" = 0 ]

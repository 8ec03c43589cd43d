#!/bin/bash
# Host-side test of scenario-lib.sh's decisions, with xl, xenstore and xl create replaced by
# stubs (no Xen, no root, a few seconds): when is client1 re-created after a triple fault, and
# when does a probe wait fail. Run by `make xen-lib-check` (part of `make test`).
# Prints "scenario-lib: N passed, N failed"; exits 1 if any case failed.
set -uo pipefail
XT_DIR=$(cd "$(dirname "$0")" && pwd)
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
export XT_OUT=$T/out XT_SHARE=$T/share
. "$XT_DIR/dom0-lib.sh"
Q=$T/q FW=3
. "$XT_DIR/scenario-lib.sh"

# ------------------------------------------------------------------ stubs
xt_console_log() { echo "$T/guest-$1.log"; }
xt_dump_guest() { echo "dump $1"; }
sleep() { command sleep 0.05; }
xenstore-read() { echo 4; }
xl() {
  echo "xl $*" >> "$T/xl.calls"
  case "$1" in
    domid) [ "$2" = client1 ] && [ -n "$FAKE_ID" ] && echo "$FAKE_ID" ;;
    dmesg) cat "$T/dmesg" ;;
  esac
  return 0
}
# xl create of a new client1: a new domid whose console shows a whole first round
xt_create() {
  echo "create $1" >> "$T/xl.calls"
  [ "$FAKE_CREATE_FAIL" = 1 ] && return 1
  FAKE_ID=$((FAKE_ID + 1))
  printf '[t] XT-DOMU round-start 1\r\n[t] XT-DOMU ping-ok 198.51.100.1 round=1\r\n[t] XT-DOMU round-end 1\r\n' >> "$(xt_console_log client1)"
}
# a client1 that finished rounds 1..3 and is in round 4 (so "the next round" is 5)
setup() {
  rm -f "$T"/guest-* "$T/xl.calls" "$XT_OUT/results.txt"; : > "$T/dmesg"
  FAKE_ID=4 FAKE_CREATE_FAIL=0 C1_RECREATED=0 C1_RECOVERED= CL=4
  CLIENT_LOG=$(xt_console_log client1)
  local r; for r in 1 2 3; do printf '[t] XT-DOMU round-start %s\r\n[t] XT-DOMU round-end %s\r\n' $r $r >> "$CLIENT_LOG"; done
  printf '[t] XT-DOMU round-start 4\r\n' >> "$CLIENT_LOG"
}
triple_fault() { # DOMID: Xen's report, as `xl dmesg` shows it
  printf '(XEN) d%sv0 Triple fault - invoking HVM shutdown action 1\n(XEN) *** Dumping Dom%s vcpu#0 state: ***\n(XEN) RIP:    0010:[<ffffffff8107505b>]\n(XEN) rcx: 000000000000080b\n' "$1" "$1" >> "$T/dmesg"
}

PASS=0 NFAIL=0
expect() { # NAME CONDITION-STATUS DETAIL
  if [ "$2" = 0 ]; then PASS=$((PASS + 1)); echo "ok   $1"
  else NFAIL=$((NFAIL + 1)); echo "FAIL $1: $3"; fi
}
info_lines() { cat "$XT_OUT/results.txt" 2>/dev/null | grep -c 'RESULT client1-triple-fault INFO'; }

# 1. a triple fault Xen logged for client1's domain: re-created, its first round counts
setup; triple_fault 4
next_round 1 >/dev/null; rc=$?
[ $rc = 0 ] && [ "$NR" = 1 ] && [ "$CL" = 5 ] && grep -q 'xl destroy client1' "$T/xl.calls" &&
  [ -f "$CLIENT_LOG.triple-fault" ] && [ "$(info_lines)" = 1 ] &&
  grep -q 'ffffffff8107505b' "$XT_OUT/results.txt" && [[ $CHECK_DETAIL == *"re-created as dom5"* ]]
expect "triple fault: client1 re-created, round 1 of dom5 counted, INFO with the RIP" $? \
  "rc=$rc NR=$NR CL=$CL detail='$CHECK_DETAIL' calls=$(tr '\n' ';' < "$T/xl.calls")"

# 2. the next wait after the recovery uses the new console (round 2 of the new instance)
printf '[t] XT-DOMU round-start 2\r\n[t] XT-DOMU round-end 2\r\n' >> "$CLIENT_LOG"
next_round 1 >/dev/null; rc=$?
# round 2 had already ended, so "the next round" is 3, which never comes: fails, no second try
[ $rc = 1 ] && [ "$NR" = 3 ] && [ "$(info_lines)" = 1 ] && [ "$(grep -c 'create ' "$T/xl.calls")" = 1 ]
expect "after recovery: waits follow the new instance, no second re-creation" $? "rc=$rc NR=$NR"

# 3. a second triple fault in the same run fails the wait
triple_fault 5
next_round 1 >/dev/null; rc=$?
[ $rc = 1 ] && [ "$(info_lines)" = 1 ] && [[ $CHECK_DETAIL == *"round-end 3"* ]]
expect "second triple fault: the wait fails" $? "rc=$rc detail='$CHECK_DETAIL'"

# 4. a client that stops answering without a triple fault is never re-created
setup
next_round 1 >/dev/null; rc=$?
[ $rc = 1 ] && [ "$(info_lines)" = 0 ] && ! grep -q 'destroy' "$T/xl.calls" &&
  [[ $CHECK_DETAIL == "no line matching 'round-end 5\$'"* ]]
expect "silent client, no triple fault: the wait fails, nothing re-created" $? "rc=$rc detail='$CHECK_DETAIL'"

# 5. another domain's triple fault does not count for client1 (dom4)
setup; triple_fault 14
next_round 1 >/dev/null; rc=$?
[ $rc = 1 ] && [ "$(info_lines)" = 0 ] && ! grep -q 'destroy' "$T/xl.calls"
expect "a triple fault of dom14 is not client1's" $? "rc=$rc calls=$(tr '\n' ';' < "$T/xl.calls" 2>/dev/null)"

# 6. re-creation fails: the wait fails and says so
setup; triple_fault 4; FAKE_CREATE_FAIL=1
next_round 1 >/dev/null; rc=$?
[ $rc = 1 ] && [[ $CHECK_DETAIL == *"re-creating it failed"* ]]
expect "re-creation fails: the wait fails with the reason" $? "rc=$rc detail='$CHECK_DETAIL'"

# 7. the normal case: the round in progress ends, the next one runs and ends; xl untouched
setup
( command sleep 0.3; printf '[t] XT-DOMU round-end 4\r\n[t] XT-DOMU round-start 5\r\n[t] XT-DOMU round-end 5\r\n' >> "$CLIENT_LOG" ) &
next_round 2 >/dev/null; rc=$?; wait
[ $rc = 0 ] && [ "$NR" = 5 ] && [ ! -f "$T/xl.calls" ]
expect "round ends: OK without touching xl" $? "rc=$rc NR=$NR"

echo "scenario-lib: $PASS passed, $NFAIL failed"
[ $NFAIL = 0 ]

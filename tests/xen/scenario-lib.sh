# Helpers of the firewall scenario's dom0 side (scenario-run.sh sources it after dom0-lib.sh
# and params.sh): results, waits on xenstore and logs, client1's probe rounds, Linux domU
# creation with the TCG triple-fault handling. Kept apart so that scenario-lib-test.sh can run
# them on the host against stubs of xl and xenstore (no Xen needed).
ok() { xt_result "$1" OK "${@:2}"; }
fail() { xt_result "$1" FAIL "${@:2}"; FAILED=1; }
FAILED=0
# check NAME CMD...: OK if CMD succeeds
check() { local n=$1; shift; if "$@"; then ok "$n" "$CHECK_DETAIL"; else fail "$n" "$CHECK_DETAIL"; fi; }
# xs_wait PATH VALUE TIMEOUT: poll a xenstore key until it reads VALUE; sets CHECK_DETAIL
xs_wait() {
  local t0 v; t0=$(xt_now)
  while :; do
    v=$(xenstore-read "$1" 2>/dev/null)
    [ "$v" = "$2" ] && { CHECK_DETAIL="$1 = $v after $(xt_since "$t0")s"; return 0; }
    if awk -v a="$(xt_now)" -v b="$t0" -v t="$3" 'BEGIN{exit !(a-b>=t)}'; then
      CHECK_DETAIL="$1 = '${v:-<missing>}' after $3s, wanted $2"; return 1
    fi
    sleep 0.5
  done
}
# log_wait FILE ERE TIMEOUT: poll a log until a line matches; sets CHECK_DETAIL, LOG_LINE
log_wait() {
  local t0; t0=$(xt_now)
  while :; do
    # console logs end their lines in \r\n
    LOG_LINE=$(tr -d '\r' 2>/dev/null < "$1" | grep -E -m1 -- "$2")
    [ -n "$LOG_LINE" ] && { CHECK_DETAIL="after $(xt_since "$t0")s: $(echo "$LOG_LINE" | sed 's/^\[[^]]*\] //' | cut -c1-160)"; return 0; }
    if awk -v a="$(xt_now)" -v b="$t0" -v t="$3" 'BEGIN{exit !(a-b>=t)}'; then
      CHECK_DETAIL="no line matching '$2' in $(basename "$1") after $3s"; return 1
    fi
    sleep 0.5
  done
}
# guest_alive NAME: not crashed, shut down or gone
guest_alive() { case $(xt_state "$1") in crashed|shutdown|gone|dying) return 1 ;; esac; }
qdb() { echo "$*" > $Q/qdb.ctl; }
# the client's markers of probe round K (its console log)
round_line() { tr -d '\r' 2>/dev/null < "$CLIENT_LOG" | grep -E -- "$2.* round=$1\$" | tail -1 | sed 's/^\[[^]]*\] //'; }
last_round() { tr -d '\r' 2>/dev/null < "$CLIENT_LOG" | grep -oE 'round-start [0-9]+' | tail -1 | awk '{print $2}'; }

# How long a Linux client domU may take from `xl create` to its netfront Connected: about 5 s
# on a quiet host, 31 s and once more than 60 s with the host's two cores overloaded (load 8).
# Waits return as soon as the state is reached, so a generous bound costs nothing when it passes.
LINUX_BOOT_S=120
# next_round [TIMEOUT]: wait for client1's next round (one that starts after now) to end; sets
# NR. If client1 died of a Linux triple fault meanwhile (QEMU TCG, README.md "Reliability"),
# it is re-created once (client1_recover) and its new instance's first round counts instead.
next_round() {
  NR=$(( $(last_round) + 1 ))
  log_wait "$CLIENT_LOG" "round-end $NR\$" "${1:-60}" && return 0
  client1_recover || return 1
  NR=1; log_wait "$CLIENT_LOG" "round-end 1\$" 120 || return 1
  CHECK_DETAIL="$CHECK_DETAIL; $C1_RECOVERED"
}
# client1_recover: only when Xen logged a triple fault for client1 (never for a client that
# just stopped answering): report it as an INFO line with the vCPU state Xen dumped, destroy
# it, and create it again (once per run; a second triple fault fails the check). Keeps
# CHECK_DETAIL of the failed wait when it does not recover.
C1_RECREATED=0 C1_RECOVERED=
client1_recover() {
  local why=$CHECK_DETAIL id rip
  id=$(xt_domid client1)
  if [ "$C1_RECREATED" != 0 ] || ! xt_triple_faulted client1; then CHECK_DETAIL=$why; return 1; fi
  C1_RECREATED=1
  rip=$(xl dmesg | grep -E -A6 "(^| )d${id}v[0-9]+ Triple fault" | grep -oE 'RIP: *[0-9a-f:]+\[<[0-9a-f]+>\]|rcx: [0-9a-f]+' | tr '\n' ' ')
  xt_result client1-triple-fault INFO "Linux client1 (dom$id) triple-faulted under TCG (${rip% }), not the firewall: Xen's triple-fault report is for the client's vCPU; re-creating it"
  xt_dump_guest client1 40 > "$XT_OUT/client1-triple-fault-dump.txt" 2>&1
  xl destroy client1; mv "$CLIENT_LOG" "$CLIENT_LOG.triple-fault" 2>/dev/null
  if create_linux client1 /mnt/share/client1.cfg && xs_wait "/local/domain/$FW/backend/vif/$LIN_ID/0/state" 4 $LINUX_BOOT_S; then
    C1_RECOVERED="client1 re-created as dom$LIN_ID after a Linux triple fault (TCG)"; CL=$LIN_ID; return 0
  fi
  CHECK_DETAIL="$why; client1 triple-faulted and re-creating it failed: $CHECK_DETAIL"; return 1
}
# create_linux NAME CFG: xl create a Linux domU, re-created up to twice if it triple-faulted in
# early boot (QEMU TCG, about once in 30 boots: README.md); sets LIN_ID and LIN_TRIES
create_linux() {
  local name=$1 cfg=$2 log; log=$(xt_console_log "$1"); LIN_TRIES=0
  while :; do
    xt_create "$cfg" || return 1
    sleep 3
    if [ $LIN_TRIES -lt 2 ] && xt_triple_faulted "$name"; then
      LIN_TRIES=$((LIN_TRIES + 1)); xt_mark "$name triple-faulted; retry $LIN_TRIES"; xl destroy "$name"
      mv "$log" "$log.try$LIN_TRIES" 2>/dev/null; continue
    fi
    LIN_ID=$(xt_domid "$name"); return 0
  done
}
retries() { [ "$LIN_TRIES" = 0 ] || echo ", after $LIN_TRIES triple-fault retries"; }
# to_mbit RATE UNIT: iperf3's figure in Mbit/s
to_mbit() { awk -v r="$1" -v u="$2" 'BEGIN{f=1; if(u~/^G/)f=1000; if(u~/^K/)f=0.001; printf "%.1f", r*f}'; }


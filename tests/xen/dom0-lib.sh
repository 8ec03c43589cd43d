# Shell library for the run.sh scripts that dom0 runs (bash). run-guest.sh copies it into the
# share; the image also has it at /usr/local/lib/xt/dom0-lib.sh. Usage in run.sh:
#   . /mnt/share/dom0-lib.sh
#   xt_create /mnt/share/guest.cfg
#   xt_wait_guest NAME 'marker text' 60; echo "$XT_WAIT"
#   xt_dump_guest NAME
#   xt_result guest-boot OK "details"
export PATH=/usr/lib/xen-4.17/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
XT_SHARE=${XT_SHARE:-/mnt/share}
XT_OUT=${XT_OUT:-$XT_SHARE/out}
XT_CONSOLE_DIR=/var/log/xen/console
mkdir -p "$XT_OUT" 2>/dev/null

xt_now() { cut -d' ' -f1 /proc/uptime; }
xt_since() { awk -v a="$(xt_now)" -v b="$1" 'BEGIN{printf "%.1f", a-b}'; }
xt_mark() { echo "XT [t=$(xt_now)] $*"; }
# xt_result CHECK OK|FAIL [detail...]: the line the host side looks for; also in out/results.txt
xt_result() {
  local check=$1 status=$2; shift 2
  echo "RESULT $check $status${*:+ ($*)}" | tee -a "$XT_OUT/results.txt"
}
xt_domid() { xl domid "$1" 2>/dev/null; }
# xt_state NAME: running|blocked|idle|paused|shutdown|crashed|dying|gone (from `xl list` flags)
xt_state() {
  local f; f=$(xl list "$1" 2>/dev/null | awk 'NR==2{print $5}')
  case "$f" in
    "") echo gone ;; *c*) echo crashed ;; *s*) echo shutdown ;; *d*) echo dying ;;
    *p*) echo paused ;; *r*) echo running ;; *b*) echo blocked ;; *) echo idle ;;
  esac
}
# xt_shutdown_reason NAME: Xen's shutdown code of a preserved domain (0 poweroff, 1 reboot,
# 2 suspend, 3 crash, 4 watchdog, 5 soft_reset), "-" while it runs
xt_shutdown_reason() {
  xl list -v "$1" 2>/dev/null | awk 'NR==1{for(i=1;i<=NF;i++) if($i=="Reason-Code") c=i} NR==2&&c{print $c}'
}
xt_console_log() { echo "$XT_CONSOLE_DIR/guest-$1.log"; }
# xt_guest_dmesg NAME: the guest's lines in Xen's console ring (what it wrote to port 0xe9 or
# with HYPERVISOR_console_io; Xen prints them as "(d<id>) text" with guest_loglvl=all)
xt_guest_dmesg() {
  local id; id=$(xt_domid "$1") || return 0
  [ -n "$id" ] && xl dmesg 2>/dev/null | grep -F "(d$id) "
}

# xt_stage FILE...: copy files (kernels, ramdisks) from the share into dom0's RAM (/tmp/xt/)
# before `xl create`: libxc reads a kernel from the 9p share very slowly (a 66 MB vmlinux:
# xl create 9 s from /mnt/share, against 0.8 s to copy it and 2 s to create from /tmp).
xt_stage() {
  local t0; t0=$(xt_now); mkdir -p /tmp/xt
  cp "$@" /tmp/xt/ && xt_mark "staged $(du -shc "$@" | tail -1 | cut -f1) into /tmp/xt in $(xt_since "$t0")s"
}

# xt_create CFG: `xl create`, timed. Sets XT_CREATE_SECS. Status of xl create.
xt_create() {
  local t0 rc; t0=$(xt_now)
  xt_mark "xl create $1"
  xl create "$1"; rc=$?
  XT_CREATE_SECS=$(xt_since "$t0")
  if [ $rc = 0 ]; then xt_mark "xl create OK in ${XT_CREATE_SECS}s"; else xt_mark "xl create FAILED rc=$rc after ${XT_CREATE_SECS}s"; fi
  return $rc
}

# xt_wait_guest NAME MARKER TIMEOUT_S: poll (0.5 s) the guest's console log and its `xl dmesg`
# lines for the fixed string MARKER (empty MARKER: wait for shutdown only). Stops at the marker,
# when the guest shuts down, crashes or vanishes, or at the timeout. Sets
#   XT_WAIT=marker|shutdown|crashed|gone|timeout   XT_WAIT_SECS=seconds waited
#   XT_WAIT_WHERE=console|xl-dmesg (where the marker was found)
# and returns 0 only for "marker" (or, with an empty MARKER, for "shutdown").
xt_wait_guest() {
  local name=$1 marker=$2 timeout=$3 t0 st log
  t0=$(xt_now); log=$(xt_console_log "$name"); XT_WAIT=timeout; XT_WAIT_WHERE=
  while :; do
    if [ -n "$marker" ]; then
      if grep -qF -- "$marker" "$log" 2>/dev/null; then XT_WAIT=marker; XT_WAIT_WHERE=console; break; fi
      if xt_guest_dmesg "$name" | grep -qF -- "$marker"; then XT_WAIT=marker; XT_WAIT_WHERE=xl-dmesg; break; fi
    fi
    st=$(xt_state "$name")
    case $st in
      shutdown|crashed|gone)
        # the last words may land just after the state change: look once more
        sleep 0.5
        if [ -n "$marker" ] && { grep -qF -- "$marker" "$log" 2>/dev/null || xt_guest_dmesg "$name" | grep -qF -- "$marker"; }; then
          XT_WAIT=marker; XT_WAIT_WHERE=$(grep -qF -- "$marker" "$log" 2>/dev/null && echo console || echo xl-dmesg)
        else XT_WAIT=$st; fi
        break ;;
    esac
    if awk -v a="$(xt_now)" -v b="$t0" -v t="$timeout" 'BEGIN{exit !(a-b>=t)}'; then XT_WAIT=timeout; break; fi
    sleep 0.5
  done
  XT_WAIT_SECS=$(xt_since "$t0")
  xt_mark "wait $name: $XT_WAIT after ${XT_WAIT_SECS}s${XT_WAIT_WHERE:+ (in $XT_WAIT_WHERE)} state=$(xt_state "$name")"
  [ "$XT_WAIT" = marker ] || { [ -z "$marker" ] && [ "$XT_WAIT" = shutdown ]; }
}

# xt_dump_guest NAME [LINES]: everything worth seeing about a guest, delimited for grepping
xt_dump_guest() {
  local name=$1 n=${2:-200} id
  id=$(xt_domid "$name")
  echo "---- xl list -v"; xl list -v
  echo "---- xl dmesg (last 40 lines)"; xl dmesg | tail -n 40
  echo "---- xl dmesg lines of $name (d${id:-?})"; xt_guest_dmesg "$name" | tail -n "$n"
  echo "---- console of $name ($(xt_console_log "$name"), last $n lines)"
  tail -n "$n" "$(xt_console_log "$name")" 2>/dev/null || echo "(no console log)"
  if [ -n "$id" ]; then
    echo "---- xenstore-ls -fp /local/domain/$id"; xenstore-ls -fp "/local/domain/$id" 2>&1 | head -n 300
    echo "---- backends in dom0 for d$id"
    for k in vif vbd console; do xenstore-ls -fp "/local/domain/0/backend/$k/$id" 2>/dev/null; done | head -n 100
  fi
  echo "---- end of dump"
}

# xt_bridge NAME [CIDR]: a Linux bridge in dom0 (what `bridge=NAME` in a vif spec plugs into)
xt_bridge() {
  ip link add "$1" type bridge && ip link set "$1" up || return 1
  [ -z "${2:-}" ] || ip addr add "$2" dev "$1"
  xt_mark "bridge $1 up ${2:-}"
}

# xt_triple_faulted NAME: did Xen log a triple fault for this domain? (Xen then applies
# on_reboot, so the guest shows up as shut down with reason 1.) Under QEMU TCG the Debian
# kernel triple-faults now and then in early boot (see README.md, "Reliability").
xt_triple_faulted() {
  local id; id=$(xt_domid "$1") && [ -n "$id" ] && xl dmesg | grep -qE "(^| )d${id}v[0-9]+ Triple fault"
}

# xt_guest_boot_test NAME CFG MARKER TIMEOUT_S [RETRIES]: the guest-boot check run-guest.sh uses.
# OK when the marker shows (console or xl dmesg) and the guest has not crashed; with an empty
# MARKER, OK when the guest shuts down cleanly (reason poweroff) within the timeout.
# RETRIES (default 0): if the guest triple-faulted before the marker, destroy it and create it
# again, up to RETRIES times (each retry is marked "XT ... retry").
xt_guest_boot_test() {
  local name=$1 cfg=$2 marker=$3 timeout=$4 retries=${5:-0} try=0 ok why st reason
  while :; do
    ok=0
    if ! xt_create "$cfg"; then
      xt_dump_guest "$name"; xt_result guest-boot FAIL "xl create failed"; return 1
    fi
    xt_wait_guest "$name" "$marker" "$timeout" && ok=1
    if [ $ok = 0 ] && [ "$try" -lt "$retries" ] && xt_triple_faulted "$name"; then
      try=$((try + 1))
      xt_mark "retry $try/$retries: $name triple-faulted before the marker; creating it again. Console tail:"
      tail -n 5 "$(xt_console_log "$name")" 2>/dev/null
      xl destroy "$name"; mv "$(xt_console_log "$name")" "$(xt_console_log "$name").try$try" 2>/dev/null
      continue
    fi
    break
  done
  st=$(xt_state "$name"); reason=$(xt_shutdown_reason "$name")
  sleep 0.5   # let the console catch up before the dump
  xt_dump_guest "$name"
  why="wait=$XT_WAIT after ${XT_WAIT_SECS}s${XT_WAIT_WHERE:+ in $XT_WAIT_WHERE}, state=$st reason=${reason:--}, xl-create=${XT_CREATE_SECS}s"
  [ "$try" = 0 ] || why="$why, after $try triple-fault retries"
  xt_triple_faulted "$name" && { ok=0; why="guest TRIPLE-FAULTED; $why"; }
  [ "$st" = crashed ] && { ok=0; why="guest CRASHED; $why"; }
  [ -z "$marker" ] && [ "$st" = shutdown ] && [ "$reason" != 0 ] && { ok=0; why="shutdown reason is not poweroff; $why"; }
  echo "TIMING xl-create=${XT_CREATE_SECS}s until-${XT_WAIT}=${XT_WAIT_SECS}s"
  if [ $ok = 1 ]; then xt_result guest-boot OK "$why"; else xt_result guest-boot FAIL "$why"; fi
  [ $ok = 1 ]
}

#!/usr/bin/env bash
# Real-peer tests of hostfw: Linux network stacks in network namespaces on
# both sides of the firewall (see lib.sh for the topology). Root only.
# Bounded in time (every step has a timeout), cleans up its namespaces on
# exit, prints RESULT lines and exits non-zero if any check failed.
#
#   HOSTFW=target/release/hostfw tests/hostfw/run.sh
set -uo pipefail
cd "$(dirname "$0")/../.."
HOSTFW=${HOSTFW:-$PWD/target/release/hostfw}
HOSTFW=$(realpath "$HOSTFW")
PEERS=$PWD/tests/hostfw/peers.py
[ "$(id -u)" -eq 0 ] || { echo "hostfw-test: needs root (network namespaces, TAP devices)" >&2; exit 1; }
[ -x "$HOSTFW" ] || { echo "hostfw-test: no $HOSTFW (make hostfw-test builds it)" >&2; exit 1; }
for t in ip iperf3 dnsmasq tcpdump ping python3; do
  command -v $t >/dev/null || { echo "hostfw-test: $t is missing (make deps)" >&2; exit 1; }
done
. tests/hostfw/lib.sh

PASS=0 FAIL=0
result() { # result NAME ok|fail DETAIL
  LAST_RESULT=$2
  if [ "$2" = ok ]; then PASS=$((PASS + 1)); echo "RESULT PASS $1: $3"
  else FAIL=$((FAIL + 1)); echo "RESULT FAIL $1: $3"; fi
}
# expect NAME CMD...: the command must succeed; its last output line is the detail.
expect() {
  local name=$1; shift
  local out; out=$("$@" 2>&1); local rc=$?
  if [ $rc -eq 0 ]; then result "$name" ok "$(tail -n1 <<< "$out")"
  else result "$name" fail "exit $rc: $(tail -n3 <<< "$out" | tr '\n' ' ')"; fi
}
# expect_out NAME REGEX CMD...: the output must match REGEX (exit status ignored).
expect_out() {
  local name=$1 re=$2; shift 2
  local out; out=$("$@" 2>&1)
  if grep -Eq "$re" <<< "$out"; then result "$name" ok "$(grep -Em1 "$re" <<< "$out")"
  else result "$name" fail "no /$re/ in: $(tail -n3 <<< "$out" | tr '\n' ' ')"; fi
}

cleanup() {
  cleanup_common
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log "namespaces $P-*, work dir $WORK"
make_namespaces
start_hostfw || { echo "RESULT FAIL start: hostfw did not start"; exit 1; }

# Servers in the "internet".
nsx "$NET" python3 "$PEERS" serve $SRV > "$WORK/peers.log" 2>&1 & BG_PIDS+=($!)
for port in 5201 5202 5203; do
  nsx "$NET" iperf3 -s -B $SRV -p $port > "$WORK/iperf3-s-$port.log" 2>&1 & BG_PIDS+=($!)
done
nsx "$NET" dnsmasq --no-daemon --conf-file=/dev/null --no-resolv --no-hosts \
  --listen-address=$DNS --bind-interfaces --user=root --pid-file="$WORK/dnsmasq.pid" \
  --address=/test.example/$SRV > "$WORK/dnsmasq.log" 2>&1 & BG_PIDS+=($!)
nsx "$NET" tcpdump -n -U -i up0 -w "$WORK/uplink.pcap" > "$WORK/tcpdump.log" 2>&1 & TCPDUMP=$!
BG_PIDS+=($TCPDUMP)
sleep 1
# The first packet may go while hostfw still resolves its gateway (as on
# Qubes, it is dropped, not queued): warm up.
timeout 5 ip netns exec "$C1" ping -c3 -i0.3 -W1 $SRV > /dev/null 2>&1 || true

log "allowed traffic"
expect ping-allowed timeout 10 ip netns exec "$C1" ping -c3 -i0.3 -W2 $SRV
expect tcp-echo timeout 20 ip netns exec "$C1" python3 "$PEERS" tcp-echo $SRV 7777
expect udp-echo timeout 30 ip netns exec "$C1" python3 "$PEERS" udp-echo $SRV 7778
expect_out dns-specialtarget "^OK dns test.example $SRV" timeout 10 ip netns exec "$C1" python3 "$PEERS" dns $DNS test.example
expect_out iperf3-tcp "receiver" timeout 20 ip netns exec "$C1" iperf3 -c $SRV -p 5201 -t 3 -f m
expect_out iperf3-tcp-reverse "receiver" timeout 20 ip netns exec "$C1" iperf3 -c $SRV -p 5201 -t 2 -R -f m
expect_out iperf3-udp " 0/|\(0%\)|\([0-9.e-]+%\)" timeout 20 ip netns exec "$C1" iperf3 -c $SRV -p 5201 -u -b 50M -t 2 -f m
expect_out ttl-exceeded "From 10\.137\.0\.1 .*Time to live exceeded" timeout 10 ip netns exec "$C1" ping -c1 -t1 -W2 $SRV
expect_out ttl-2-reaches "bytes from $SRV" timeout 10 ip netns exec "$C1" ping -c1 -t2 -W2 $SRV
expect tcp-echo-c2 timeout 20 ip netns exec "$C2" python3 "$PEERS" tcp-echo $SRV 7777

log "denied traffic (ICMP administratively prohibited from the firewall)"
expect_out deny-tcp-port "EHOSTUNREACH" timeout 10 ip netns exec "$C1" python3 "$PEERS" tcp-connect $SRV 8080
expect_out deny-tcp-host "EHOSTUNREACH" timeout 10 ip netns exec "$C1" python3 "$PEERS" tcp-connect $SRV2 7777
expect_out deny-ping-c2 "From 10\.137\.0\.1 .*Packet filtered" timeout 10 ip netns exec "$C2" ping -c1 -W2 $SRV
expect_out deny-dns-c2 "^FAIL dns" timeout 10 ip netns exec "$C2" python3 "$PEERS" dns $DNS test.example
expect_out deny-iperf3-c2 "unable to (connect|send)|No route to host" timeout 10 ip netns exec "$C2" iperf3 -c $SRV -p 5201 -t 1
nsx "$NET" ip route add 10.137.0.0/24 via 10.138.0.5
expect_out no-inbound "TimeoutError" timeout 10 ip netns exec "$NET" python3 "$PEERS" tcp-connect $C1_IP 22
expect_out no-client-to-client "100% packet loss" timeout 10 ip netns exec "$C1" ping -c1 -W1 $C2_IP

log "the capture on the uplink shows only the NAT address"
sleep 0.5
kill -TERM $TCPDUMP 2>/dev/null; wait $TCPDUMP 2>/dev/null
src_nat=$(tcpdump -n -r "$WORK/uplink.pcap" 'ip src 10.138.0.5 and tcp port 7777' 2>/dev/null | wc -l)
src_client=$(tcpdump -n -r "$WORK/uplink.pcap" 'src net 10.137.0.0/24' 2>/dev/null | wc -l)
if [ "$src_nat" -gt 0 ] && [ "$src_client" -eq 0 ]; then
  result nat-capture ok "$src_nat packets from 10.138.0.5 to the echo server, none from 10.137.0.0/24 on the uplink"
else
  result nat-capture fail "from 10.138.0.5: $src_nat, from clients: $src_client"
fi
tcpdump -n -r "$WORK/uplink.pcap" 'tcp port 7777' 2>/dev/null | head -n2 | sed 's/^/    /'

log "rule edit while iperf3 runs: 5201 stays allowed, 5202 is cut"
# For a diagnosis if the new-flow check fails (it failed once in CI, unexplained): the SYNs and
# ICMP errors on both sides of the firewall, and the sockets of C1.
nsx "$C1" tcpdump -n -U -i c1 -w "$WORK/edit-c1.pcap" 'icmp or (tcp[tcpflags] & tcp-syn != 0)' > /dev/null 2>&1 & BG_PIDS+=($!); DIAG_C1=$!
nsx "$NET" tcpdump -n -U -i up0 -w "$WORK/edit-up.pcap" 'icmp or (tcp[tcpflags] & tcp-syn != 0)' > /dev/null 2>&1 & BG_PIDS+=($!); DIAG_UP=$!
sleep 0.5
nsx "$C1" iperf3 -c $SRV -p 5201 -t 8 -i 1 -f m --forceflush > "$WORK/keep.log" 2>&1 & KEEP=$!
nsx "$C1" iperf3 -c $SRV -p 5202 -t 8 -i 1 -f m --forceflush > "$WORK/cut.log" 2>&1 & CUT=$!
BG_PIDS+=($KEEP $CUT)
sleep 3
C1_RULES=${C1_RULES/dstports=5201-5202/dstports=5201-5201}
write_config
sleep 1.5
expect_out reload-logged "client c1 .*rules loaded \([0-9]+ flows kept, [1-9][0-9]* cut\)" cat "$WORK/hostfw.log"
nsx "$C1" ss -tnp > "$WORK/edit-ss-before.txt" 2>&1
expect_out new-flow-denied-after-edit "EHOSTUNREACH" timeout 10 ip netns exec "$C1" python3 "$PEERS" tcp-connect $SRV 5202
if [ "$LAST_RESULT" = fail ]; then
  sleep 0.5; kill $DIAG_C1 $DIAG_UP 2>/dev/null
  echo "    diagnosis: C1 sockets before the connect:"; sed 's/^/      /' "$WORK/edit-ss-before.txt"
  echo "    SYNs and ICMP on c1 (client side):"; tcpdump -n -tt -r "$WORK/edit-c1.pcap" 2>/dev/null | tail -n 20 | sed 's/^/      /'
  echo "    SYNs and ICMP on up0 (uplink side):"; tcpdump -n -tt -r "$WORK/edit-up.pcap" 2>/dev/null | tail -n 20 | sed 's/^/      /'
  echo "    hostfw log:"; tail -n 15 "$WORK/hostfw.log" | sed 's/^/      /'
fi
kill $DIAG_C1 $DIAG_UP 2>/dev/null
( sleep 14; kill $KEEP $CUT 2>/dev/null ) & BG_PIDS+=($!)
wait $KEEP; keep_rc=$?
wait $CUT; cut_rc=$?
# The kept flow moved data after the edit (its 6-7 s interval) and ended cleanly.
# The rate of the last 1 s interval iperf3 reported (after the edit; the
# interval bounds drift a little on a loaded machine, so not matched exactly).
last_rate() { grep -E '^\[ *[0-9]+\] +[0-9.]+-[0-9.]+ +sec' "$1" | grep -vE 'sender|receiver' | tail -n1 \
  | awk '{for (i = 2; i <= NF; i++) if ($i ~ /bits\/sec/) print $(i - 1)}'; }
keep_late=$(last_rate "$WORK/keep.log")
cut_late=$(last_rate "$WORK/cut.log")
if [ $keep_rc -eq 0 ] && awk "BEGIN{exit !(${keep_late:-0} > 1)}"; then
  result reload-keeps-allowed ok "iperf3 :5201 ran to the end, ${keep_late} Mbit/s in its last second"
else
  result reload-keeps-allowed fail "iperf3 :5201 exit $keep_rc, last second: ${keep_late:-none} Mbit/s; log: $(tail -n4 "$WORK/keep.log" | tr "\n" " ")"
fi
if [ "${cut_late:-}" = "0.00" ]; then
  result reload-cuts-denied ok "iperf3 :5202 exit $cut_rc, last second: ${cut_late:-no report} Mbit/s"
else
  result reload-cuts-denied fail "iperf3 :5202 still ran: exit $cut_rc, last second ${cut_late} Mbit/s"
fi

log "SIGHUP reload restores the rule"
C1_RULES=${C1_RULES/dstports=5201-5201/dstports=5201-5202}
write_config
kill -HUP $HOSTFW_PID
sleep 1
expect tcp-5202-after-restore timeout 10 ip netns exec "$C1" python3 "$PEERS" tcp-connect $SRV 5202

log "a bad rule line blocks that client (fail closed) and names file:line"
C2_GOOD=$C2_RULES
C2_RULES="$C2_RULES
/qubes-firewall/$C2_IP/0001 action=accept proto=sctp"
write_config
cp "$CONF" "$WORK/badrule.conf"
sleep 1.5
expect_out bad-rule-logged "hostfw.conf:[0-9]+: .*blocked" cat "$WORK/hostfw.log"
expect_out bad-rule-fails-closed "EHOSTUNREACH" timeout 10 ip netns exec "$C2" python3 "$PEERS" tcp-connect $SRV 7777

C2_RULES=$C2_GOOD
write_config

log "hostfw still healthy"
expect ping-at-end timeout 10 ip netns exec "$C1" ping -c2 -i0.3 -W2 $SRV
if kill -0 $HOSTFW_PID 2>/dev/null; then
  kill $HOSTFW_PID; wait $HOSTFW_PID; rc=$?; HOSTFW_PID=
  if [ $rc -eq 0 ]; then result clean-exit ok "SIGTERM, exit 0"; else result clean-exit fail "exit $rc"; fi
else
  result clean-exit fail "hostfw died"; HOSTFW_PID=
fi
grep -E "stopping:" "$WORK/hostfw.log" | sed 's/^/    /'

log "startup errors are clear"
expect_out err-missing-device "no such device" ip netns exec "$FW" "$HOSTFW" --attach "$CONF"
printf '/qubes-ip 10.138.0.5\n/qubes-gatway 10.138.0.1\n' > "$WORK/bad.conf"
expect_out err-bad-line "bad.conf:2: unknown key /qubes-gatway" "$HOSTFW" --check "$WORK/bad.conf"
expect_out err-bad-rule "badrule.conf:[0-9]+: .*(proto|sctp)" "$HOSTFW" --check "$WORK/badrule.conf"
if id nobody >/dev/null 2>&1 && command -v setpriv >/dev/null; then
  chmod o+rx "$WORK"; chmod o+r "$CONF"
  expect_out err-no-permission "no permission" ip netns exec "$FW" setpriv --reuid=nobody --regid=nogroup --clear-groups --inh-caps=-all "$HOSTFW" "$CONF"
fi

echo "hostfw-test: $PASS passed, $FAIL failed"
[ $FAIL -eq 0 ]

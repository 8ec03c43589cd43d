# Shared by tests/hostfw/run.sh and bench.sh: the namespaces, the config
# file and hostfw itself. Source it; set HOSTFW (the binary) first.
#
#   ns FW   hostfw runs here and creates its TAPs: up0 (uplink), c1, c2
#   ns NET  "sys-net and the internet": up0 (10.138.0.1/24), on its loopback
#           the servers 198.51.100.10, .20 and the DNS address 10.139.1.1
#   ns C1   client 10.137.0.2/32 on c1, default via 10.137.0.1 onlink
#   ns C2   client 10.137.0.3/32 on c2, the same
#
# Each TAP is opened by hostfw in FW, then moved into its peer namespace
# (the descriptor stays with hostfw).

P=${HFW_PREFIX:-hfw$$}
FW=$P-fw NET=$P-net C1=$P-c1 C2=$P-c2
WORK=$(mktemp -d /tmp/hostfw-test.XXXXXX)
CONF=$WORK/hostfw.conf
HOSTFW_PID=
BG_PIDS=()

C1_IP=10.137.0.2 C2_IP=10.137.0.3
C1_MAC=00:16:3e:5e:6c:00 C2_MAC=00:16:3e:5e:6c:01
SRV=198.51.100.10 SRV2=198.51.100.20 DNS=10.139.1.1

log() { printf '%s %s\n' "$(date +%T)" "$*" >&2; }
nsx() { local ns=$1; shift; ip netns exec "$ns" "$@"; }

cleanup_common() {
  set +e
  for p in "${BG_PIDS[@]}"; do kill "$p" 2>/dev/null; done
  if [ -n "$HOSTFW_PID" ]; then kill "$HOSTFW_PID" 2>/dev/null; wait "$HOSTFW_PID" 2>/dev/null; fi
  for ns in "$C1" "$C2" "$NET" "$FW" ${EXTRA_NS:-}; do
    if ip netns list | grep -qw "$ns"; then
      for p in $(ip netns pids "$ns" 2>/dev/null); do kill "$p" 2>/dev/null; done
    fi
  done
  sleep 0.3
  for ns in "$C1" "$C2" "$NET" "$FW" ${EXTRA_NS:-}; do
    if ip netns list | grep -qw "$ns"; then
      for p in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$p" 2>/dev/null; done
      ip netns del "$ns" 2>/dev/null
    fi
  done
  [ -n "${KEEP_WORK:-}" ] || rm -rf "$WORK"
}

# Rules of client 1 and 2 (QubesDB lines); edit_rules rewrites them.
C1_RULES="/qubes-firewall/$C1_IP/policy drop
/qubes-firewall/$C1_IP/0000 action=accept specialtarget=dns
/qubes-firewall/$C1_IP/0001 action=accept proto=icmp
/qubes-firewall/$C1_IP/0002 action=accept dst4=$SRV/32 proto=tcp dstports=5201-5202
/qubes-firewall/$C1_IP/0003 action=accept dst4=$SRV/32 proto=tcp dstports=7777-7777
/qubes-firewall/$C1_IP/0004 action=accept dst4=$SRV/32 proto=udp dstports=7778-7778
/qubes-firewall/$C1_IP/0005 action=accept dst4=$SRV/32 proto=tcp dstports=5203-5203
/qubes-firewall/$C1_IP/0006 action=accept dst4=$SRV/32 proto=udp dstports=5201-5201"
C2_RULES="/qubes-firewall/$C2_IP/policy drop
/qubes-firewall/$C2_IP/0000 action=accept dst4=$SRV/32 proto=tcp dstports=7777-7777"

write_config() {
  local tmp=$CONF.tmp
  cat > "$tmp" <<CONF
# hostfw test configuration: QubesDB keys of the firewall VM
/qubes-ip 10.138.0.5
/qubes-gateway 10.138.0.1
/qubes-primary-dns $DNS
/qubes-netvm-gateway 10.137.0.1
/qubes-netvm-primary-dns $DNS
/hostfw/uplink/tap up0
/hostfw/uplink/mac 00:16:3e:5e:6c:05
/hostfw/client/c1/tap c1
/hostfw/client/c1/ip $C1_IP
/hostfw/client/c1/mac $C1_MAC
/hostfw/client/c2/tap c2
/hostfw/client/c2/ip $C2_IP
/hostfw/client/c2/mac $C2_MAC
$C1_RULES
/qubes-firewall/$C1_IP
$C2_RULES
/qubes-firewall/$C2_IP
CONF
  mv "$tmp" "$CONF"   # atomic: hostfw never reads half a file
}

make_namespaces() {
  for ns in "$FW" "$NET" "$C1" "$C2"; do
    ip netns add "$ns"
    nsx "$ns" ip link set lo up
    nsx "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
  done
  # The servers' addresses live on NET's loopback (no dummy module needed).
  nsx "$NET" ip addr add $SRV/32 dev lo
  nsx "$NET" ip addr add $SRV2/32 dev lo
  nsx "$NET" ip addr add $DNS/32 dev lo
}

# Start hostfw in FW, wait for its TAPs, move them to their namespaces and
# configure them the way Qubes configures a client and sys-net.
start_hostfw() {
  write_config
  rm -f "$WORK/ready"
  ip netns exec "$FW" "$HOSTFW" --ready-file "$WORK/ready" --stats 5 "$@" "$CONF" \
    > "$WORK/hostfw.log" 2>&1 &
  HOSTFW_PID=$!
  for _ in $(seq 50); do
    [ -f "$WORK/ready" ] && break
    kill -0 "$HOSTFW_PID" 2>/dev/null || { cat "$WORK/hostfw.log" >&2; return 1; }
    sleep 0.1
  done
  [ -f "$WORK/ready" ] || { log "hostfw did not get ready"; cat "$WORK/hostfw.log" >&2; return 1; }
  nsx "$FW" ip link set up0 netns "$NET"
  nsx "$FW" ip link set c1 netns "$C1"
  nsx "$FW" ip link set c2 netns "$C2"
  nsx "$NET" ip addr add 10.138.0.1/24 dev up0
  nsx "$NET" ip link set up0 up
  local ns tap ip mac
  for spec in "$C1 c1 $C1_IP $C1_MAC" "$C2 c2 $C2_IP $C2_MAC"; do
    read -r ns tap ip mac <<< "$spec"
    nsx "$ns" ip link set "$tap" address "$mac"
    nsx "$ns" ip addr add "$ip/32" dev "$tap"
    nsx "$ns" ip link set "$tap" up
    nsx "$ns" ip route add 10.137.0.1 dev "$tap" scope link
    nsx "$ns" ip route add default via 10.137.0.1 dev "$tap" onlink
  done
}

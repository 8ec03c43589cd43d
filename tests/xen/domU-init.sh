#!/bin/busybox sh
# PID 1 of the small Linux PVH domU (busybox initramfs built by build-image.sh).
# Used as the "client AppVM" of the scenarios. Everything is configured on the kernel command
# line (xl cfg `cmdline`/`extra`); every knob is optional:
#   xt_ip=10.137.0.10/24   address of eth0          xt_gw=10.137.0.1   default route
#   xt_dns=10.139.1.1      /etc/resolv.conf         xt_dhcp=1          udhcpc on eth0 instead
#   xt_role=client|backend backend: load netback, bridge every vif* into br0 (xt_brip=CIDR)
#   xt_fwd=1               IPv4 forwarding on
#   xt_ping=A[,B...]       ping each address, print XT-DOMU ping-ok A / ping-FAIL A
#   xt_dnsq=NAME[,NAME...] look each name up (nslookup, the resolv.conf server):
#                          XT-DOMU dns-ok NAME ADDR... / dns-FAIL NAME
#   xt_pingx=A[,B...]      the same, one ping with a 2 s wait (for addresses expected to fail)
#   xt_tcp=IP:PORT[,...]   send one line "xt-<round>" to a TCP echo server that answers one line
#                          and closes: XT-DOMU tcp-ok IP:PORT <reply> / tcp-FAIL IP:PORT <reply>
#   xt_tcpx=IP:PORT[,...]  the same with short timeouts (for connections expected to fail)
#   xt_iperf=IP            in the first round only: iperf3 to IP for 3 s each way (-c, -c -R):
#                          XT-DOMU iperf-ok up|down <rate> <unit> / iperf-FAIL up|down <error>
#   xt_rounds=N xt_every=S run the probes (ping, dns, tcp) N times (default 1), a round every
#                          S seconds (default 5); with N > 1 every probe marker ends in round=K,
#                          and each round is framed by XT-DOMU round-start K / round-end K
#   xt_role=router         a Linux driver domain that routes: load netback, ip_forward=1; each
#                          vif* gets xt_rtip (a /32: the clients' gateway) and a host route to
#                          xt_rtclient (the client behind it); no bridge
#   xt_icmpmon=1           tcpdump on eth0 prints every ICMP error the VM receives as
#                          XT-DOMU icmp-err <tcpdump line> (e.g. "... admin prohibited filter")
#   xt_echo=PORT           a TCP echo server (busybox nc -e cat) on PORT
#   xt_poweroff=1          power off (clean shutdown) after init-done
#   xt_say=WORD            print "XT-DOMU say WORD" (a marker a test can wait for)
# Markers on hvc0 (end up in dom0's /var/log/xen/console/guest-<name>.log):
#   XT-DOMU init-start, XT-DOMU eth0-up <addr>, XT-DOMU ping-ok|ping-FAIL <addr>, XT-DOMU init-done
/bin/busybox --install -s /bin
export PATH=/bin:/sbin:/usr/bin
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
mkdir -p /dev/pts && mount -t devpts devpts /dev/pts
up() { cut -d' ' -f1 /proc/uptime; }
mark() { echo "XT-DOMU [t=$(up)] $*"; }
for w in $(cat /proc/cmdline); do case $w in xt_*=*) eval "$w";; esac; done
mark "init-start role=${xt_role:-client} kernel=$(uname -r)"
[ -n "${xt_say:-}" ] && echo "XT-DOMU say $xt_say"

insmod /lib/modules/xen-netfront.ko 2>/dev/null
if [ "${xt_role:-client}" = backend ] || [ "${xt_role:-client}" = router ]; then
  for m in llc stp bridge xen-netback; do insmod /lib/modules/$m.ko; done
fi
ip link set lo up
if [ -e /sys/bus/xen/devices/vif-0 ]; then   # a vif was configured: wait for netfront
  i=0; while [ ! -e /sys/class/net/eth0 ] && [ $i -lt 30 ]; do sleep 1; i=$((i+1)); done
fi
if [ -e /sys/class/net/eth0 ]; then
  ip link set eth0 up
  if [ "${xt_dhcp:-0}" = 1 ]; then
    cat > /etc/udhcpc.sh <<'EOS'
#!/bin/sh
case "$1" in bound|renew)
  ip addr flush dev "$interface"; ip addr add "$ip/${mask:-24}" dev "$interface"
  for r in $router; do ip route add default via "$r"; break; done
  : > /etc/resolv.conf; for d in $dns; do echo "nameserver $d" >> /etc/resolv.conf; done ;;
esac
EOS
    chmod +x /etc/udhcpc.sh
    if udhcpc -i eth0 -n -q -t 10 -s /etc/udhcpc.sh >/dev/null 2>&1; then
      mark "dhcp-ok $(ip -o -4 addr show eth0 | awk '{print $4}')"; else mark "dhcp-FAIL"; fi
  fi
  [ -n "${xt_ip:-}" ] && ip addr add "$xt_ip" dev eth0
  mark "eth0-up $(ip -o -4 addr show eth0 | awk '{print $4}') mac=$(cat /sys/class/net/eth0/address)"
else
  mark "no-eth0"
fi
if [ "${xt_role:-client}" = backend ]; then
  ip link add br0 type bridge; ip link set br0 up; [ -n "${xt_brip:-}" ] && ip addr add "$xt_brip" dev br0
  mark "br0-up ${xt_brip:-}"
  ( while true; do for v in /sys/class/net/vif*; do [ -e "$v" ] || continue; n=${v##*/}
      if [ ! -e /sys/class/net/$n/brport ]; then ip link set "$n" master br0 && ip link set "$n" up && mark "bridged $n"; fi
    done; sleep 1; done ) &
fi
if [ "${xt_role:-client}" = router ]; then
  echo 1 > /proc/sys/net/ipv4/ip_forward
  ( while true; do for v in /sys/class/net/vif*; do [ -e "$v" ] || continue; n=${v##*/}
      if [ ! -e /run/rt-$n ]; then ip link set "$n" up && ip addr add "$xt_rtip/32" dev "$n" &&
        ip route add "$xt_rtclient/32" dev "$n" && : > /run/rt-$n && mark "routed $n $xt_rtclient"; fi
    done; sleep 1; done ) &
  mark "router-up gw $xt_rtip for $xt_rtclient"
fi
if [ "${xt_icmpmon:-0}" = 1 ]; then
  echo 'root:x:0:0:root:/:/bin/sh' > /etc/passwd; echo 'root:x:0:' > /etc/group
  ( tcpdump -i eth0 -n -l -Z root 'icmp and icmp[0] != 0 and icmp[0] != 8' 2>/dev/null |
      while read -r l; do mark "icmp-err $l"; done ) &
  sleep 1
fi
if [ -n "${xt_echo:-}" ]; then
  ( while true; do nc -l -p "$xt_echo" -e /bin/cat; done ) >/dev/null 2>&1 &
  mark "echo-server :$xt_echo"
fi
if [ -n "${xt_gw:-}" ]; then
  # an address with no prefix (Qubes: /32) needs the gateway's host route first
  ip route get "$xt_gw" >/dev/null 2>&1 || ip route add "$xt_gw" dev eth0
  ip route add default via "$xt_gw" && mark "default-route via $xt_gw"
fi
[ -n "${xt_dns:-}" ] && echo "nameserver $xt_dns" > /etc/resolv.conf
[ "${xt_fwd:-0}" = 1 ] && echo 1 > /proc/sys/net/ipv4/ip_forward && mark "ip_forward=1"
probes() { # ROUND-SUFFIX
  local a r t
  for a in $(echo "${xt_ping:-}" | tr ',' ' '); do
    if ping -c 3 -W 2 "$a" >/dev/null 2>&1; then mark "ping-ok $a$1"; else mark "ping-FAIL $a$1"; fi
  done
  for a in $(echo "${xt_pingx:-}" | tr ',' ' '); do   # expected to fail: one try, short
    if ping -c 1 -W 2 "$a" >/dev/null 2>&1; then mark "ping-ok $a$1"; else mark "ping-FAIL $a$1"; fi
  done
  for a in $(echo "${xt_dnsq:-}" | tr ',' ' '); do
    # busybox nslookup: the server's own lines come first, then "Name:" and "Address: ..."
    r=$(timeout 10 nslookup "$a" 2>&1 | awk '/^Name:/{n=1} n && /^Address/{print $NF}' | tr '\n' ' ')
    if [ -n "$r" ]; then mark "dns-ok $a ${r% }$1"; else mark "dns-FAIL $a$1"; fi
  done
  for a in $(echo "${xt_tcp:-}" | tr ',' ' '); do
    t="xt-${round:-1}"
    r=$(echo "$t" | timeout 10 nc -w 5 "${a%:*}" "${a##*:}" 2>&1 | head -n 1)
    case $r in *"$t"*) mark "tcp-ok $a $r$1" ;; *) mark "tcp-FAIL $a ${r:-(no reply)}$1" ;; esac
  done
  for a in $(echo "${xt_tcpx:-}" | tr ',' ' '); do    # expected to fail: short timeouts
    t="xt-${round:-1}"
    r=$(echo "$t" | timeout 4 nc -w 2 "${a%:*}" "${a##*:}" 2>&1 | head -n 1)
    case $r in *"$t"*) mark "tcp-ok $a $r$1" ;; *) mark "tcp-FAIL $a ${r:-(no reply)}$1" ;; esac
  done
  if [ -n "${xt_iperf:-}" ] && [ "${round:-1}" = 1 ]; then
    for d in up down; do
      f=; [ $d = down ] && f=-R
      r=$(timeout 30 iperf3 -c "$xt_iperf" -t 3 $f 2>&1)
      t=$(echo "$r" | awk '/receiver/{print $(NF-2), $(NF-1)}' | tail -1)
      if [ -n "$t" ]; then mark "iperf-ok $d $t$1"
      else mark "iperf-FAIL $d $(echo "$r" | tail -1 | cut -c1-100)$1"; fi
    done
  fi
}
if [ "${xt_rounds:-1}" -gt 1 ]; then
  round=1
  while [ "$round" -le "$xt_rounds" ]; do
    t0=$(date +%s); mark "round-start $round"; probes " round=$round"; mark "round-end $round"
    round=$((round + 1)); left=$(( ${xt_every:-5} - ($(date +%s) - t0) ))
    [ "$round" -gt "$xt_rounds" ] || [ "$left" -le 0 ] || sleep "$left"
  done
else
  probes ""
fi
mark "init-done uptime=$(up)"
if [ "${xt_poweroff:-0}" = 1 ]; then mark "poweroff"; sync; poweroff -f; fi
# stay alive (answer pings, run servers); a shell on the console for `xl console`
while true; do setsid sh -c 'exec sh </dev/hvc0 >/dev/hvc0 2>&1' || sleep 5; done

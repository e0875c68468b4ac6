#!/usr/bin/env bash
# The namespace lab the replies in this directory were recorded in, and a
# recipe for integration tests of sipedge behind a real miniupnpd.
#
#   lab.sh up      namespaces, addresses, stund, miniupnpd's chains, miniupnpd
#   lab.sh rules   the DNAT rules miniupnpd holds (one line per mapping)
#   lab.sh reboot  a router reboot: miniupnpd restarted with its rules flushed
#   lab.sh down    stops what `up` started and removes the namespaces
#
# pmx-lan (10.77.0.10) --- lan0 10.77.0.1 [pmx-gw: miniupnpd] wan0 203.0.113.2 --- pmx-inet (203.0.113.1, .3: stund)
#
# Needs root and Debian's miniupnpd-iptables (2.3.1) and stun-server. That
# miniupnpd build uses libiptc, i.e. the *legacy* iptables tables, so its
# chains are made and listed with iptables-legacy even where `iptables` is
# the nft variant.
set -euo pipefail
DIR=${PMX_DIR:-/tmp/pmx-lab}
NS_GW=pmx-gw NS_LAN=pmx-lan NS_INET=pmx-inet
ipt() { ip netns exec $NS_GW iptables-legacy -w "$@"; }

up() {
  mkdir -p "$DIR"
  for ns in $NS_GW $NS_LAN $NS_INET; do ip netns add $ns; ip -n $ns link set lo up; done
  ip link add pmx-g0 type veth peer name pmx-l0
  ip link set pmx-g0 netns $NS_GW; ip link set pmx-l0 netns $NS_LAN
  ip -n $NS_GW link set pmx-g0 name lan0; ip -n $NS_LAN link set pmx-l0 name eth0
  ip link add pmx-g1 type veth peer name pmx-i0
  ip link set pmx-g1 netns $NS_GW; ip link set pmx-i0 netns $NS_INET
  ip -n $NS_GW link set pmx-g1 name wan0; ip -n $NS_INET link set pmx-i0 name eth0
  ip -n $NS_GW addr add 10.77.0.1/24 dev lan0
  ip -n $NS_GW addr add 203.0.113.2/24 dev wan0
  ip -n $NS_LAN addr add 10.77.0.10/24 dev eth0
  ip -n $NS_INET addr add 203.0.113.1/24 dev eth0
  ip -n $NS_INET addr add 203.0.113.3/24 dev eth0
  for l in "$NS_GW lan0" "$NS_GW wan0" "$NS_LAN eth0" "$NS_INET eth0"; do set -- $l; ip -n $1 link set $2 up; done
  ip -n $NS_GW route add default via 203.0.113.1
  ip -n $NS_LAN route add default via 10.77.0.1
  ip netns exec $NS_GW sysctl -qw net.ipv4.ip_forward=1

  # miniupnpd's chains (what /etc/miniupnpd/iptables_init.sh makes).
  ipt -t nat -N MINIUPNPD; ipt -t nat -I PREROUTING -i wan0 -j MINIUPNPD
  ipt -t nat -N MINIUPNPD-POSTROUTING; ipt -t nat -I POSTROUTING -o wan0 -j MINIUPNPD-POSTROUTING
  ipt -t mangle -N MINIUPNPD; ipt -t mangle -I PREROUTING -i wan0 -j MINIUPNPD
  ipt -t filter -N MINIUPNPD; ipt -t filter -I FORWARD -i wan0 ! -o wan0 -j MINIUPNPD

  # miniupnpd refuses to map when its WAN address is private or reserved,
  # and its list of reserved blocks includes 203.0.113.0/24. With a STUN
  # check that finds no filtering (all four RFC 3489 CHANGE-REQUEST probes
  # answered: a two-address stund) it maps anyway, with the STUN address.
  ip netns exec $NS_INET stund -h 203.0.113.1 -a 203.0.113.3 -p 3478 -o 3479 >"$DIR/stund.log" 2>&1 &
  echo $! >"$DIR/stund.pid"
  cat >"$DIR/miniupnpd.conf" <<EOF
ext_ifname=wan0
listening_ip=lan0
http_port=5000
enable_natpmp=yes
enable_upnp=yes
secure_mode=yes
system_uptime=no
min_lifetime=120
max_lifetime=86400
uuid=3d3cec3a-8cf0-11e0-98ee-001a6bd2d07b
friendly_name=pmx lab router
ext_perform_stun=yes
ext_stun_host=203.0.113.1
ext_stun_port=3478
allow 1024-65535 10.77.0.0/24 1024-65535
deny 0-65535 0.0.0.0/0 0-65535
EOF
  sleep 0.3
  start_miniupnpd
}

start_miniupnpd() {
  ip netns exec $NS_GW miniupnpd -f "$DIR/miniupnpd.conf" -d -P "$DIR/miniupnpd.pid" >>"$DIR/miniupnpd.log" 2>&1 &
  echo $! >"$DIR/miniupnpd.bgpid"
  for _ in $(seq 50); do
    grep -q "Listening for NAT-PMP/PCP" "$DIR/miniupnpd.log" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "miniupnpd did not start:"; tail -20 "$DIR/miniupnpd.log"; return 1
}

stop_miniupnpd() {
  [ -f "$DIR/miniupnpd.bgpid" ] && kill "$(cat "$DIR/miniupnpd.bgpid")" 2>/dev/null || true
  sleep 0.3
}

case "${1:-}" in
  up) up ;;
  rules) ipt -t nat -S MINIUPNPD | grep DNAT || true ;;
  reboot)
    stop_miniupnpd
    ipt -t nat -F MINIUPNPD; ipt -t nat -F MINIUPNPD-POSTROUTING; ipt -t filter -F MINIUPNPD
    : >"$DIR/miniupnpd.log.reboot"
    start_miniupnpd ;;
  down)
    stop_miniupnpd
    [ -f "$DIR/stund.pid" ] && kill "$(cat "$DIR/stund.pid")" 2>/dev/null || true
    for ns in $NS_GW $NS_LAN $NS_INET; do ip netns del $ns 2>/dev/null || true; done ;;
  *) echo "usage: $0 up|rules|reboot|down" >&2; exit 2 ;;
esac

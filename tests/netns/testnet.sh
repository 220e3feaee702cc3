#!/bin/sh
# A test network on one machine: hosts in network namespaces, each joined by
# a veth pair to one bridge. Nothing leaves the machine: the bridge lives in
# a namespace of its own, and the addresses are the documentation ranges
# (192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24).
#
#   testnet.sh up NET HOST...          build NET: a bridge and one host per name
#   testnet.sh addr NET HOST CIDR...   add addresses to HOST's eth0
#   testnet.sh vip NET HOST ADDR...    hold ADDR/32 on HOST's lo without
#                                      answering ARP for it (a DSR backend)
#   testnet.sh exec NET HOST CMD...    run CMD in HOST's namespace
#   testnet.sh ns NET HOST             print the namespace's name
#   testnet.sh hosts NET               list NET's hosts
#   testnet.sh down NET                delete NET (every namespace NET-*)
#   testnet.sh run NET HOST... -- CMD  up, run CMD (with $TESTNET set to NET),
#                                      then down, also on failure or signal
#   testnet.sh check                   exit 0 when this machine can build one
#
# Each host's namespace is NET-HOST, with lo and eth0 up, and its eth0 is
# attached to br0 in NET-sw. NET and HOST are short names ([A-Za-z0-9_],
# NET-HOST at most 15 characters would be ideal but only HOST must fit an
# interface name). Needs root (or CAP_SYS_ADMIN and CAP_NET_ADMIN) and iproute2.
# tests/common/netns.rs drives it for the integration tests.
set -eu

prog=${0##*/}

die() {
    echo "$prog: $*" >&2
    exit 1
}

valid_name() {
    case $1 in
        '' | *[!A-Za-z0-9_]*) return 1 ;;
    esac
    return 0
}

need_net() {
    [ $# -ge 1 ] || die "missing network name"
    valid_name "$1" || die "bad network name '$1' (letters, digits and _ only)"
}

need_host() {
    [ $# -ge 2 ] || die "missing host name"
    valid_name "$2" || die "bad host name '$2' (letters, digits and _ only)"
    [ ${#2} -le 15 ] || die "host name '$2' is longer than an interface name (15)"
    ip netns list | awk '{print $1}' | grep -qx "$1-$2" || die "no host '$2' in network '$1'"
}

check() {
    [ "$(id -u)" -eq 0 ] || die "needs root (ip netns)"
    command -v ip >/dev/null 2>&1 || die "needs ip (iproute2)"
}

up() {
    need_net "$@"
    net=$1
    shift
    [ $# -ge 1 ] || die "up: no hosts"
    for host in "$@"; do
        valid_name "$host" || die "bad host name '$host' (letters, digits and _ only)"
        [ ${#host} -le 15 ] || die "host name '$host' is longer than an interface name (15)"
        [ "$host" != sw ] || die "'sw' is the bridge's namespace, not a host name"
    done
    if ip netns list | awk '{print $1}' | grep -q "^$net-"; then
        die "network '$net' exists; '$prog down $net' first"
    fi
    ip netns add "$net-sw"
    ip -n "$net-sw" link set dev lo up
    ip -n "$net-sw" link add br0 type bridge
    # No spanning tree delay: ports forward as soon as they are up.
    ip -n "$net-sw" link set dev br0 type bridge forward_delay 0 stp_state 0
    ip -n "$net-sw" link set dev br0 up
    for host in "$@"; do
        ns=$net-$host
        ip netns add "$ns"
        ip -n "$ns" link set dev lo up
        # Made in the host's namespace and its peer moved to the bridge's,
        # so no interface is ever in the caller's namespace.
        ip -n "$ns" link add eth0 type veth peer name "$host" netns "$net-sw"
        ip -n "$net-sw" link set dev "$host" master br0 up
        ip -n "$ns" link set dev eth0 up
        # Addresses are usable at once (no IPv6 duplicate detection wait).
        ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.accept_dad=0 \
            net.ipv6.conf.eth0.accept_dad=0 >/dev/null 2>&1 || true
    done
}

down() {
    need_net "$@"
    for ns in $(ip netns list | awk '{print $1}' | grep "^$1-" || true); do
        ip netns del "$ns" 2>/dev/null || true
    done
}

addr() {
    need_host "$@"
    ns=$1-$2
    shift 2
    [ $# -ge 1 ] || die "addr: no address"
    for cidr in "$@"; do
        ip -n "$ns" addr add "$cidr" dev eth0
    done
}

vip() {
    need_host "$@"
    ns=$1-$2
    shift 2
    [ $# -ge 1 ] || die "vip: no address"
    # Answer ARP only for addresses of the interface asked on (not lo's),
    # and announce only eth0's own address: the VIP's ARP belongs to the
    # balancer.
    ip netns exec "$ns" sysctl -qw net.ipv4.conf.all.arp_ignore=1 \
        net.ipv4.conf.all.arp_announce=2 net.ipv4.conf.eth0.arp_ignore=1 \
        net.ipv4.conf.eth0.arp_announce=2
    for a in "$@"; do
        ip -n "$ns" addr add "$a/32" dev lo
    done
}

run() {
    need_net "$@"
    net=$1
    shift
    hosts=
    while [ $# -gt 0 ] && [ "$1" != -- ]; do
        hosts="$hosts $1"
        shift
    done
    [ $# -gt 0 ] || die "run: missing '--' before the command"
    shift
    [ $# -ge 1 ] || die "run: no command"
    trap 'down "$net"' EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    # shellcheck disable=SC2086 # host names are checked words
    up "$net" $hosts
    TESTNET=$net "$@"
}

[ $# -ge 1 ] || die "usage: $prog up|addr|vip|exec|ns|hosts|down|run|check ..."
cmd=$1
shift
case $cmd in
    check) check ;;
    up)
        need_net "$@"
        check
        up "$@"
        ;;
    down) check && down "$@" ;;
    addr) check && addr "$@" ;;
    vip) check && vip "$@" ;;
    exec)
        check
        need_host "$@"
        ns=$1-$2
        shift 2
        [ $# -ge 1 ] || die "exec: no command"
        exec ip netns exec "$ns" "$@"
        ;;
    ns)
        need_host "$@"
        echo "$1-$2"
        ;;
    hosts)
        need_net "$@"
        ip netns list | awk '{print $1}' | sed -n "s/^$1-//p" | grep -vx sw || true
        ;;
    run) check && run "$@" ;;
    *) die "unknown command '$cmd'" ;;
esac

#!/bin/sh
# ECMP in front of several pen instances: run on the router (or client
# host) in front of them. Connections to VIP are spread over the next hops
# (the pen hosts) by a hash of source and destination address and port
# (fib_multipath_hash_policy=1), so one connection always takes one path
# while a client's connections spread over all of them. With the same
# servers and `hash consistent`, every instance sends a client to the same
# server. README.md, "Running several instances", explains the recipe.
#
#   ecmp-route.sh VIP NEXTHOP NEXTHOP...   add (or replace) the route
#   ecmp-route.sh -d VIP                   delete it
#
# Each pen host holds VIP on lo (ip addr add VIP/32 dev lo) and pen
# listens on it (pen ... VIP:80 server...). NEXTHOPs are the pen hosts'
# addresses on a network this host shares with them. For IPv6, give IPv6
# addresses (ip -6, net.ipv6.fib_multipath_hash_policy).
set -eu

prog=${0##*/}

die() {
    echo "$prog: $*" >&2
    exit 1
}

[ $# -ge 1 ] || die "usage: $prog VIP NEXTHOP NEXTHOP... | $prog -d VIP"
if [ "$1" = -d ]; then
    [ $# -eq 2 ] || die "usage: $prog -d VIP"
    case $2 in
        *:*) exec ip -6 route del "$2/128" ;;
        *) exec ip route del "$2/32" ;;
    esac
fi
[ $# -ge 3 ] || die "give the VIP and at least two next hops"

vip=$1
shift
case $vip in
    *:*) family=-6 proto=ipv6 len=128 ;;
    *) family=-4 proto=ipv4 len=32 ;;
esac

# Layer 4 hash: the ports count, not only the addresses (the default, 0,
# would send all connections of a client address down one path).
sysctl -qw "net.$proto.fib_multipath_hash_policy=1"

hops=
for hop in "$@"; do
    case $hop in
        '' | *[!0-9A-Fa-f.:]*) die "bad next hop '$hop'" ;;
    esac
    hops="$hops nexthop via $hop"
done
# shellcheck disable=SC2086 # $hops is words checked above
ip "$family" route replace "$vip/$len" $hops

#!/bin/sh
# keepalived's check of a pen (vrrp_script in keepalived.conf): healthy
# while pen's control port answers `pid` with a number within a time
# limit, so a pen that died or hangs fails the check, not only a dead host.
#
#   check_pen.sh [CONTROL [PENCTL [SECONDS]]]
#
# CONTROL is penctl's target, HOST:PORT or a Unix socket path (default
# 127.0.0.1:10080); PENCTL the penctl program (default: penctl on PATH);
# SECONDS the time limit (default 2). Exit 0 healthy, 1 not.
set -u
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export PATH

control=${1:-127.0.0.1:10080}
penctl=${2:-penctl}
limit=${3:-2}

# penctl itself waits up to 10 s to connect and 30 s for the reply.
reply=$(timeout "$limit" "$penctl" "$control" pid 2>/dev/null) || exit 1
case $reply in
    '' | *[!0-9]*) exit 1 ;;
esac
exit 0

#!/bin/sh
# Direct server return's forwarding rate and CPU cost for small UDP
# packets, in the namespaced test network (tests/netns/testnet.sh): a
# client floods VIP:53 with 32-byte datagrams from 64 ports for DURATION
# seconds; pen (-U -r, DSR on lb's eth0) passes them to two backends.
#
#   bench/dsr.sh [PEN...]    default: target/release/pen /usr/bin/pen
#
# Reported per pen: frames offered (the client's eth0 tx), frames that
# reached the balancer (lb's eth0 rx), frames forwarded (handed by pen to
# lb's eth0), frames delivered (the backends' eth0 rx), frames per second forwarded, and the balancer's CPU
# (user + system, from /proc) per million frames forwarded. The client's
# transmit checksum offload is switched off, so frames are complete on the
# wire as from a real card (pen 0.34.1 forwards offloaded ones broken).
# Needs root, iproute2 and python3.
set -eu

here=$(dirname "$0")
testnet="$here/../tests/netns/testnet.sh"
net=pdb$$
duration=${DURATION:-5}
[ $# -gt 0 ] || set -- "$here/../target/release/pen" /usr/bin/pen

sh "$testnet" check
sh "$testnet" up "$net" client lb be1 be2
trap 'sh "$testnet" down "$net"' EXIT
trap 'exit 1' INT TERM
sh "$testnet" addr "$net" client 192.0.2.10/24
sh "$testnet" addr "$net" lb 192.0.2.2/24
sh "$testnet" addr "$net" be1 192.0.2.21/24
sh "$testnet" addr "$net" be2 192.0.2.22/24
sh "$testnet" vip "$net" be1 192.0.2.100
sh "$testnet" vip "$net" be2 192.0.2.100
on() { host=$1; shift; sh "$testnet" exec "$net" "$host" "$@"; }
on lb sysctl -qw net.ipv4.ip_forward=0

# ETHTOOL_STXCSUM and ETHTOOL_STSO off on the client's eth0.
on client python3 -c '
import socket, fcntl, struct, array
s = socket.socket()
for cmd in (0x17, 0x1f):
    buf = array.array("B", struct.pack("II", cmd, 0))
    fcntl.ioctl(s.fileno(), 0x8946, struct.pack("16sP", b"eth0", buf.buffer_info()[0]))
'

counter() { on "$1" cat "/sys/class/net/eth0/statistics/$2"; }
# Frames pen handed to lb's eth0: sent, or dropped by veth when the
# bridge's backlog was full (the machine's load, not pen).
handed() { echo $(($(counter lb tx_packets) + $(counter lb tx_dropped))); }
delivered() { echo $(($(counter be1 rx_packets) + $(counter be2 rx_packets))); }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

flood='
import socket, sys, time
duration = float(sys.argv[1])
socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(64)]
payload = b"q" * 32
end = time.time() + duration
while time.time() < end:
    for s in socks:
        try:
            s.sendto(payload, ("192.0.2.100", 53))
        except OSError:
            pass
'

hz=$(getconf CLK_TCK)
printf '%-28s %9s %9s %9s %9s %9s %12s\n' pen offered lb-rx forwarded delivered frames/s cpu-s/Mframe
for pen in "$@"; do
    # sh and ip exec, so $! is pen's PID.
    sh "$testnet" exec "$net" lb "$pen" -f -r -U -o "dsr_if eth0" \
        192.0.2.100:53 192.0.2.21 192.0.2.22 >/dev/null 2>&1 &
    pid=$!
    # Let pen learn the backends' addresses (it asks at once).
    on client python3 -c "$flood" 0.5
    c0=$(counter client tx_packets)
    r0=$(counter lb rx_packets)
    f0=$(handed)
    d0=$(delivered)
    t0=$(cpu_ticks "$pid")
    on client python3 -c "$flood" "$duration"
    c1=$(counter client tx_packets)
    r1=$(counter lb rx_packets)
    # Until pen has worked through the frames still queued for it: all
    # forwarded, or no progress for a second (the machine may be busy).
    f1=$(handed)
    still=0
    for _ in $(seq 100); do
        [ $((f1 - f0)) -lt $((r1 - r0)) ] && [ $still -lt 5 ] || break
        sleep 0.2
        f=$(handed)
        if [ "$f" = "$f1" ]; then still=$((still + 1)); else still=0; fi
        f1=$f
    done
    d1=$(delivered)
    t1=$(cpu_ticks "$pid")
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    awk -v p="$pen" -v c=$((c1 - c0)) -v r=$((r1 - r0)) -v f=$((f1 - f0)) -v b=$((d1 - d0)) -v t=$((t1 - t0)) \
        -v hz="$hz" -v d="$duration" 'BEGIN {
        cpu = f > 0 ? (t / hz) / (f / 1e6) : 0
        printf "%-28s %9d %9d %9d %9d %9d %12.2f\n", p, c, r, f, b, f / d, cpu }'
done

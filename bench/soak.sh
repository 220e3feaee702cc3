#!/bin/bash
# Chaos soak of pen: flapping backends, hostile clients, control commands and
# signals racing the traffic, every completed exchange sha256-checked, and
# the balancer back to idle at the end. See bench/README.md, "Chaos soak".
#
#   bench/soak.sh --minutes N [--clients C] [--seed S] [--warmup SECONDS] [--keep]
#
# Environment: OURS, the binary under test [target/release/pen, built with
# `cargo build --release` if missing]. Runs `nice`d when NICE is set (e.g.
# NICE=10). The work is done by bench/soak.py (Python 3 standard library);
# the only process it starts is the balancer, stopped by its PID on exit and
# on Ctrl-C.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
ours=${OURS:-$root/target/release/pen}

case " $* " in
*" --minutes"*) ;;
*" -h "* | *" --help "*) exec python3 "$here/soak.py" --help ;;
*)
	echo "usage: $0 --minutes N [--clients C] [--seed S] [--warmup SECONDS] [--keep]" >&2
	exit 2
	;;
esac

if [ ! -x "$ours" ]; then
	if [ -n "${OURS:-}" ]; then
		echo "soak: $ours is not an executable" >&2
		exit 2
	fi
	echo "soak: building $ours" >&2
	(cd "$root" && cargo build --release --quiet)
fi

# Room for the clients, the backends and the balancer's pairs.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || ulimit -n 65536 2>/dev/null || true

if [ -n "${NICE:-}" ]; then
	exec nice -n "$NICE" python3 "$here/soak.py" --pen "$ours" "$@"
fi
exec python3 "$here/soak.py" --pen "$ours" "$@"

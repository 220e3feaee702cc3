#!/usr/bin/env bash
# Benchmark of pen (this repository) against Debian's pen 0.34.1, HAProxy in
# tcp mode and no balancer at all. See bench/README.md for what is measured.
#
# Needs: apt-get install pen haproxy nginx-light wrk (plus curl, python3,
# taskset). Runs everything on 127.0.0.1 with free ports; every process it
# starts is stopped by PID on exit. Run on demand only, never from CI.
set -euo pipefail

usage() {
    cat <<'EOF'
usage: bench/run.sh [options]
  -r, --rounds N       rounds (contenders interleaved in each round) [3]
  -d, --duration S     seconds per wrk run for (a) and (b) [10]
  -q, --quick          smoke run: 1 round, 3 s runs, 3 bulk transfers
  -w, --workloads LIST comma-separated subset of a,b,c,d,n,s,z
                       [a,b,c,d,n,s,z]; n: keep-alive (wrk -c10) with a
                       CPU-bound process pinned to the balancer's core;
                       also p: per-request context switches (perf stat) and
                       syscalls (strace -c -f) of each balancer under (a), (b)
  -c, --contenders LIST comma-separated subset of ours,pen,haproxy,direct
                       [ours,pen,haproxy,direct]
  -o, --out FILE       raw results (TSV) [/tmp/pen-bench-DATE.tsv]; the
                       summary goes to stdout and to FILE with .txt
Environment: OURS (our pen binary) [target/release/pen], PEN [/usr/bin/pen],
  HAPROXY [haproxy], NGINX [nginx], BULK_FETCHES [10], IDLE_CONNS [2000],
  STARTUP_REPS [5], BALANCER_CPU [0], LOAD_CPU [1].
EOF
}

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(dirname "$HERE")
HELPER="$HERE/helper.py"

ROUNDS=3
DURATION=10
BULK_FETCHES=${BULK_FETCHES:-10}
IDLE_CONNS=${IDLE_CONNS:-2000}
STARTUP_REPS=${STARTUP_REPS:-5}
WORKLOADS=a,b,c,d,n,s,z
CONTENDERS=ours,pen,haproxy,direct
OUT=/tmp/pen-bench-$(date +%Y%m%d-%H%M%S).tsv
OURS=${OURS:-$REPO/target/release/pen}
PEN=${PEN:-/usr/bin/pen}
HAPROXY=${HAPROXY:-haproxy}
NGINX=${NGINX:-nginx}
# Two cores: the balancer gets one, the load generator and backends the other.
BALANCER_CPU=${BALANCER_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}

while [ $# -gt 0 ]; do
    case "$1" in
        -r|--rounds) ROUNDS=$2; shift 2 ;;
        -d|--duration) DURATION=$2; shift 2 ;;
        -q|--quick) ROUNDS=1; DURATION=3; BULK_FETCHES=3; shift ;;
        -w|--workloads) WORKLOADS=$2; shift 2 ;;
        -c|--contenders) CONTENDERS=$2; shift 2 ;;
        -o|--out) OUT=$2; shift 2 ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; exit 2 ;;
    esac
done

for tool in "$PEN" "$HAPROXY" "$NGINX" wrk curl python3 taskset; do
    command -v "$tool" >/dev/null || {
        echo "bench: $tool not found (apt-get install pen haproxy nginx-light wrk curl)" >&2
        exit 1
    }
done
if [ ! -x "$OURS" ]; then
    echo "bench: building $OURS" >&2
    (cd "$REPO" && cargo build --release --bin pen)
fi

# 2,000 idle pairs need ~4,000 descriptors in the balancer and in the client.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt $((2 * IDLE_CONNS + 200)) ]; then
    echo "bench: ulimit -n $(ulimit -n) is too small for $IDLE_CONNS idle pairs" >&2
    exit 1
fi

WORK=$(mktemp -d /tmp/pen-bench-work.XXXXXX)
PIDS=()

cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Stops one process started by this script (signal $2, default TERM) and
# forgets it.
stop() {
    local pid=$1 sig=${2:-TERM} keep=() p i state
    kill -"$sig" "$pid" 2>/dev/null || true
    # Bounded wait for it to exit (a zombie counts as exited), then KILL.
    for ((i = 0; i < 50; i++)); do
        state=$(awk '{ print $3 }' "/proc/$pid/stat" 2>/dev/null || echo gone)
        case $state in Z|X|gone) break ;; esac
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    for p in "${PIDS[@]}"; do
        [ "$p" = "$pid" ] || keep+=("$p")
    done
    PIDS=("${keep[@]}")
}

record() { # round workload contender metric value
    printf '%s\t%s\t%s\t%s\t%s\n' "$@" >>"$OUT"
}
note() {
    printf '#\t%s\n' "$*" >>"$OUT"
    echo "$*" >&2
}

# utime+stime of a whole process (all its threads, live and exited), in ticks.
cpu_ticks() {
    local stat
    stat=$(cat "/proc/$1/stat")
    stat=${stat##*) }
    # After "pid (comm) ", utime and stime are fields 12 and 13.
    awk '{ print $12 + $13 }' <<<"$stat"
}
HZ=$(getconf CLK_TCK)

# ------------------------------------------------------------ backends

read -r B1 B2 <<<"$(python3 "$HELPER" freeports 2)"
mkdir -p "$WORK/www"
# 100 MB body (sparse: served from the page cache, no disk involved).
truncate -s 100000000 "$WORK/www/big"
BIG_BYTES=100000000

start_nginx() { # name port
    local name=$1 port=$2
    mkdir -p "$WORK/$name"
    cat >"$WORK/$name/nginx.conf" <<EOF
worker_processes 1;
daemon off;
master_process off;
pid $WORK/$name/nginx.pid;
error_log $WORK/$name/error.log warn;
worker_rlimit_nofile 16384;
events { worker_connections 8192; }
http {
    access_log off;
    client_body_temp_path $WORK/$name/body;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 100000000;
    keepalive_timeout 600s;
    client_header_timeout 600s;
    default_type application/octet-stream;
    server {
        listen 127.0.0.1:$port backlog=4096;
        root $WORK/www;
        location = /small { return 200 "small response from a benchmark backend\n"; }
    }
}
EOF
    taskset -c "$LOAD_CPU" "$NGINX" -p "$WORK/$name" -c "$WORK/$name/nginx.conf" \
        >"$WORK/$name/stdout.log" 2>&1 &
    PIDS+=($!)
    python3 "$HELPER" wait-port "$port" 10 || {
        echo "bench: nginx $name did not start:" >&2
        cat "$WORK/$name/error.log" "$WORK/$name/stdout.log" >&2 || true
        exit 1
    }
}
start_nginx nginx1 "$B1"
start_nginx nginx2 "$B2"

# ------------------------------------------------------------ contenders

# Sets CMD to the command line of contender $1 listening on port $2.
contender_cmd() {
    local name=$1 port=$2
    case "$name" in
        ours|pen)
            local bin=$OURS
            [ "$name" = pen ] && bin=$PEN
            # -x: pen's default of 500 connection slots is too small for (d).
            # -r: plain round robin, like HAProxy's (every client here is
            # 127.0.0.1, so client tracking would pin them to one backend).
            CMD=(taskset -c "$BALANCER_CPU" "$bin" -f -r -x 4000 -c 4000
                127.0.0.1:"$port" 127.0.0.1:"$B1" 127.0.0.1:"$B2")
            ;;
        haproxy)
            cat >"$WORK/haproxy-$port.cfg" <<EOF
global
    maxconn 8000
    nbthread 1
defaults
    mode tcp
    maxconn 4000
    timeout connect 5s
    timeout client 10m
    timeout server 10m
listen bench
    bind 127.0.0.1:$port
    balance roundrobin
    server b1 127.0.0.1:$B1
    server b2 127.0.0.1:$B2
EOF
            CMD=(taskset -c "$BALANCER_CPU" "$HAPROXY" -db -f "$WORK/haproxy-$port.cfg")
            ;;
        *) echo "bench: unknown contender $name" >&2; exit 2 ;;
    esac
}

# Starts contender $1; sets TARGET_PORT and BALANCER_PID (empty for direct).
start_contender() {
    local name=$1
    if [ "$name" = direct ]; then
        TARGET_PORT=$B1
        BALANCER_PID=
        return
    fi
    TARGET_PORT=$(python3 "$HELPER" freeports 1)
    contender_cmd "$name" "$TARGET_PORT"
    "${CMD[@]}" >"$WORK/$name.log" 2>&1 &
    BALANCER_PID=$!
    PIDS+=("$BALANCER_PID")
    python3 "$HELPER" wait-port "$TARGET_PORT" 10 || {
        echo "bench: $name did not start:" >&2
        cat "$WORK/$name.log" >&2
        exit 1
    }
}
stop_contender() {
    [ -z "$BALANCER_PID" ] || stop "$BALANCER_PID"
}

# ------------------------------------------------------------ workloads

to_ms() { # wrk latency like 812.00us, 1.23ms, 1.02s
    awk -v v="$1" 'BEGIN {
        if (v ~ /us$/) { sub(/us$/, "", v); print v / 1000 }
        else if (v ~ /ms$/) { sub(/ms$/, "", v); print v + 0 }
        else if (v ~ /s$/) { sub(/s$/, "", v); print v * 1000 }
        else print "nan" }'
}

# (a) and (b): wrk, with the balancer's CPU time over the measured run.
run_wrk() { # round workload contender extra-wrk-args...
    local round=$1 workload=$2 name=$3
    shift 3
    start_contender "$name"
    local url=http://127.0.0.1:$TARGET_PORT/small
    # Warm-up (not measured): threads, caches, TIME_WAIT state.
    taskset -c "$LOAD_CPU" wrk -t2 -c50 -d1s "$@" "$url" >/dev/null 2>&1 || true
    local c0=0 c1=0
    [ -z "$BALANCER_PID" ] || c0=$(cpu_ticks "$BALANCER_PID")
    local out
    out=$(taskset -c "$LOAD_CPU" wrk -t2 -c"${WRK_CONNS:-50}" -d"${DURATION}s" --latency "$@" "$url" 2>&1)
    [ -z "$BALANCER_PID" ] || c1=$(cpu_ticks "$BALANCER_PID")
    stop_contender
    echo "$out" >"$WORK/wrk-$round-$workload-$name.log"
    local rps requests p99 errors
    rps=$(awk '/^Requests\/sec:/ { print $2 }' <<<"$out")
    requests=$(awk '/requests in/ { print $1 }' <<<"$out")
    p99=$(awk '$1 == "99%" { print $2 }' <<<"$out")
    errors=$(awk '/Socket errors:/ { gsub(/,/, ""); s += $4 + $6 + $8 + $10 }
                  /Non-2xx/ { s += $5 } END { print s + 0 }' <<<"$out")
    record "$round" "$workload" "$name" rps "${rps:-nan}"
    record "$round" "$workload" "$name" p99_ms "$(to_ms "${p99:-x}")"
    record "$round" "$workload" "$name" errors "$errors"
    if [ -n "$BALANCER_PID" ] && [ -n "$requests" ] && [ "$requests" -gt 0 ]; then
        record "$round" "$workload" "$name" cpu_per_100k \
            "$(awk -v t=$((c1 - c0)) -v hz="$HZ" -v n="$requests" 'BEGIN { printf "%.4f", t / hz / n * 100000 }')"
    fi
    echo "  $workload $name: ${rps:-?} req/s, p99 ${p99:-?}, errors $errors" >&2
}

# (n): keep-alive at a lower concurrency while a CPU-bound process shares
# the balancer's core, as on a busy host. A balancer that yields the CPU
# or spins instead of sleeping shows here as requests/s and p99 collapse.
run_neighbour() { # round contender
    local round=$1 name=$2 hog
    taskset -c "$BALANCER_CPU" sh -c 'while :; do :; done' &
    hog=$!
    PIDS+=("$hog")
    WRK_CONNS=10 run_wrk "$round" n "$name"
    stop "$hog" KILL
}

# (c): fetch the 100 MB body BULK_FETCHES times over one connection.
run_bulk() { # round contender
    local round=$1 name=$2
    start_contender "$name"
    local urls=() i
    for ((i = 0; i < BULK_FETCHES; i++)); do
        urls+=(-o /dev/null "http://127.0.0.1:$TARGET_PORT/big")
    done
    local c0=0 c1=0 t0 t1 bytes
    [ -z "$BALANCER_PID" ] || c0=$(cpu_ticks "$BALANCER_PID")
    t0=$(date +%s%N)
    bytes=$(taskset -c "$LOAD_CPU" curl -s -w '%{size_download}\n' "${urls[@]}" |
        awk '{ s += $1 } END { print s + 0 }')
    t1=$(date +%s%N)
    [ -z "$BALANCER_PID" ] || c1=$(cpu_ticks "$BALANCER_PID")
    stop_contender
    if [ "$bytes" -ne $((BULK_FETCHES * BIG_BYTES)) ]; then
        echo "  c $name: short transfer ($bytes bytes)" >&2
        record "$round" c "$name" mbps nan
        return
    fi
    local mbps
    mbps=$(awk -v b="$bytes" -v ns=$((t1 - t0)) 'BEGIN { printf "%.1f", b / 1e6 / (ns / 1e9) }')
    record "$round" c "$name" mbps "$mbps"
    if [ -n "$BALANCER_PID" ]; then
        record "$round" c "$name" cpu_per_gb \
            "$(awk -v t=$((c1 - c0)) -v hz="$HZ" -v b="$bytes" 'BEGIN { printf "%.4f", t / hz / (b / 1e9) }')"
    fi
    echo "  c $name: $mbps MB/s" >&2
}

# (d): IDLE_CONNS idle pairs through a fresh balancer.
run_idle() { # round contender
    local round=$1 name=$2
    [ "$name" = direct ] && return
    start_contender "$name"
    local out key value
    out=$(taskset -c "$LOAD_CPU" python3 "$HELPER" idle "$TARGET_PORT" "$BALANCER_PID" "$IDLE_CONNS")
    stop_contender
    while read -r key value; do
        record "$round" d "$name" "$key" "$value"
    done <<<"$out"
    echo "  d $name: $(tr '\n' ' ' <<<"$out")" >&2
}

# Profile (workload p, on request): under (a) and (b), count the balancer's
# context switches with perf stat and its syscalls with strace -c -f, each
# over its own wrk run, per relayed request. strace slows the balancer a lot;
# the counts per request stay meaningful, the rates do not.
run_profile() { # round contender
    local round=$1 name=$2 w extra out reqs_perf reqs_strace tracer
    [ "$name" = direct ] && return
    for w in a b; do
        extra=()
        [ $w = b ] && extra=(-H 'Connection: close')
        start_contender "$name"
        local url=http://127.0.0.1:$TARGET_PORT/small
        taskset -c "$LOAD_CPU" wrk -t2 -c50 -d1s "${extra[@]}" "$url" >/dev/null 2>&1 || true
        local base=$WORK/profile-$round-$w-$name
        if command -v perf >/dev/null; then
            perf stat -e task-clock,context-switches,cpu-migrations -p "$BALANCER_PID" \
                -o "$base.perf" &
            tracer=$!
            PIDS+=("$tracer")
            sleep 0.2
            out=$(taskset -c "$LOAD_CPU" wrk -t2 -c50 -d"${DURATION}s" "${extra[@]}" "$url" 2>&1)
            stop "$tracer" INT
            reqs_perf=$(awk '/requests in/ { print $1 }' <<<"$out")
        fi
        if command -v strace >/dev/null; then
            strace -c -f -p "$BALANCER_PID" -o "$base.strace" 2>/dev/null &
            tracer=$!
            PIDS+=("$tracer")
            sleep 0.5
            out=$(taskset -c "$LOAD_CPU" wrk -t2 -c50 -d"${DURATION}s" "${extra[@]}" "$url" 2>&1)
            stop "$tracer" INT
            reqs_strace=$(awk '/requests in/ { print $1 }' <<<"$out")
        fi
        stop_contender
        python3 "$HELPER" profile "$round" "$w" "$name" "$base" "${reqs_perf:-0}" "${reqs_strace:-0}" \
            | tee -a "${OUT%.tsv}-profile.txt" >&2
    done
}

# Start-up: exec to the first relayed reply, STARTUP_REPS times.
run_startup() { # round contender
    local round=$1 name=$2 i port ms
    [ "$name" = direct ] && return
    for ((i = 0; i < STARTUP_REPS; i++)); do
        port=$(python3 "$HELPER" freeports 1)
        contender_cmd "$name" "$port"
        ms=$(taskset -c "$LOAD_CPU" python3 "$HELPER" startup "$port" -- "${CMD[@]}" || true)
        record "$round" s "$name" startup_ms "${ms:-nan}"
    done
    echo "  s $name: last ${ms:-?} ms" >&2
}

run_size() { # contender
    local name=$1 bin
    case "$name" in
        ours) bin=$OURS ;;
        pen) bin=$(command -v "$PEN") ;;
        haproxy) bin=$(command -v "$HAPROXY") ;;
        *) return ;;
    esac
    strip -o "$WORK/stripped" "$bin" 2>/dev/null || cp "$bin" "$WORK/stripped"
    record 0 z "$name" stripped_bytes "$(stat -c %s "$WORK/stripped")"
}

# ------------------------------------------------------------ main

IFS=, read -r -a CONTENDER_LIST <<<"$CONTENDERS"
: >"$OUT"
rm -f "${OUT%.tsv}-profile.txt"
note "pen benchmark $(date -u +%Y-%m-%dT%H:%M:%SZ): rounds $ROUNDS, wrk runs ${DURATION} s, bulk ${BULK_FETCHES} x 100 MB, idle pairs $IDLE_CONNS"
note "machine: $(nproc) cores, $(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo), kernel $(uname -r)"
note "pinning: balancer on CPU $BALANCER_CPU; wrk, curl, python and both nginx on CPU $LOAD_CPU"
note "ours: $OURS ($(cd "$REPO" && git describe --always --dirty 2>/dev/null || echo unknown)); pen: $(dpkg-query -W -f='${Version}' pen 2>/dev/null || echo ?); haproxy: $("$HAPROXY" -v 2>/dev/null | awk 'NR == 1 { print $3 }')"
note "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"

case ",$WORKLOADS," in *,z,*)
    for name in "${CONTENDER_LIST[@]}"; do run_size "$name"; done ;;
esac

for ((round = 1; round <= ROUNDS; round++)); do
    # Rotate the order each round so no contender always runs first.
    n=${#CONTENDER_LIST[@]}
    order=()
    for ((i = 0; i < n; i++)); do
        order+=("${CONTENDER_LIST[$(((i + round - 1) % n))]}")
    done
    echo "round $round/$ROUNDS: ${order[*]} (load $(cut -d' ' -f1-3 /proc/loadavg))" >&2
    for w in a b c d n s p; do
        case ",$WORKLOADS," in *,$w,*) ;; *) continue ;; esac
        for name in "${order[@]}"; do
            case $w in
                a) run_wrk "$round" a "$name" ;;
                b) run_wrk "$round" b "$name" -H 'Connection: close' ;;
                c) run_bulk "$round" "$name" ;;
                d) run_idle "$round" "$name" ;;
                n) run_neighbour "$round" "$name" ;;
                s) run_startup "$round" "$name" ;;
                p) run_profile "$round" "$name" ;;
            esac
        done
    done
done
note "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"

python3 "$HELPER" summary "$OUT" | tee "${OUT%.tsv}.txt"
if [ -s "${OUT%.tsv}-profile.txt" ]; then
    echo
    echo "Profile (per relayed request; perf and strace runs are separate):"
    cat "${OUT%.tsv}-profile.txt"
fi
echo >&2
echo "raw results: $OUT; summary: ${OUT%.tsv}.txt" >&2

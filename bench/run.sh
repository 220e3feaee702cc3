#!/usr/bin/env bash
# Benchmark of pen (this repository) against Debian's pen 0.34.1, HAProxy in
# tcp mode and no balancer at all. See bench/README.md for what is measured.
#
# Needs: apt-get install pen haproxy nginx-light wrk curl openssl
# libnginx-mod-stream redis-server redis-tools (plus python3, taskset; see
# bench/README.md for which workload needs what). Runs everything on
# 127.0.0.1 with free ports; every process it starts is stopped by PID on
# exit. Run on demand only, never from CI.
set -euo pipefail

usage() {
    cat <<'EOF'
usage: bench/run.sh [options]
  -r, --rounds N       rounds (contenders interleaved in each round) [3]
  -d, --duration S     seconds per measured run (wrk, s_time, the UDP and
                       open-loop generators) [10]
  -q, --quick          smoke run: 1 round, 3 s runs, 3 bulk transfers, no
                       10,000 idle pairs
  -w, --workloads LIST comma-separated subset of a,b,c,d,n,s,z,t,u,o,k
                       [a,b,c,d,n,s,z]; n: keep-alive (wrk -c10) with a
                       CPU-bound process pinned to the balancer's core;
                       t: TLS (handshakes, keep-alive, bulk); u: UDP;
                       o: open-loop latency at fixed rates; k: redis;
                       also p: per-request context switches (perf stat) and
                       syscalls (strace -c -f) of each balancer under (a), (b)
  -c, --contenders LIST comma-separated subset of ours,pen,haproxy,nginx,direct
                       [ours,pen,haproxy,direct, plus nginx when u is run];
                       each workload runs those that apply to it (no
                       HAProxy in u, no direct in d, s, t, p)
  -o, --out FILE       raw results (TSV) [/tmp/pen-bench-DATE.tsv]; the
                       summary goes to stdout and to FILE with .txt
Environment: OURS (our pen binary) [target/release/pen], OURS_TLS (ours
  built with --features tls) [target/tls/release/pen], PEN [/usr/bin/pen],
  HAPROXY [haproxy], NGINX [nginx], NGINX_STREAM_MODULE, BULK_FETCHES [10],
  IDLE_CONNS [2000], IDLE_CONNS_LARGE [10000, or 0 with -q; 0: none],
  STARTUP_REPS [5], BALANCER_CPU [0], LOAD_CPU [1], TLS_KEYS [ec,rsa],
  TLS_CLIENTS [16], UDP_SOCKETS [100], UDP_WINDOW [1], UDP_RATES [50],
  OPEN_RATES [25,50,75], OPEN_CONNS [50], REDIS_REQUESTS [20000 x duration],
  REDIS_PIPELINED_REQUESTS [150000 x duration].
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
CONTENDERS=
OUT=/tmp/pen-bench-$(date +%Y%m%d-%H%M%S).tsv
OURS=${OURS:-$REPO/target/release/pen}
OURS_TLS=${OURS_TLS:-$REPO/target/tls/release/pen}
TLS_KEYS=${TLS_KEYS:-ec,rsa}
TLS_CLIENTS=${TLS_CLIENTS:-16}
UDP_SOCKETS=${UDP_SOCKETS:-100}
UDP_WINDOW=${UDP_WINDOW:-1}
UDP_RATES=${UDP_RATES:-50}
OPEN_RATES=${OPEN_RATES:-25,50,75}
OPEN_CONNS=${OPEN_CONNS:-50}
NGINX_STREAM_MODULE=${NGINX_STREAM_MODULE:-/usr/lib/nginx/modules/ngx_stream_module.so}
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
        -q|--quick) ROUNDS=1; DURATION=3; BULK_FETCHES=3; QUICK=1; shift ;;
        -w|--workloads) WORKLOADS=$2; shift 2 ;;
        -c|--contenders) CONTENDERS=$2; shift 2 ;;
        -o|--out) OUT=$2; shift 2 ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; exit 2 ;;
    esac
done

# 10,000 idle pairs (d@10000) take a while: not in a quick run unless asked.
if [ -n "${QUICK:-}" ]; then
    IDLE_CONNS_LARGE=${IDLE_CONNS_LARGE:-0}
else
    IDLE_CONNS_LARGE=${IDLE_CONNS_LARGE:-10000}
fi

wants() { # workload letter: is it in -w?
    case ",$WORKLOADS," in *,$1,*) return 0 ;; *) return 1 ;; esac
}

NEED=("$PEN" "$NGINX" wrk curl python3 taskset)
case ",$CONTENDERS," in ,,|*,haproxy,*) NEED+=("$HAPROXY") ;; esac
wants t && NEED+=(openssl)
wants k && NEED+=(redis-server redis-benchmark)
for tool in "${NEED[@]}"; do
    command -v "$tool" >/dev/null || {
        echo "bench: $tool not found (apt-get install pen haproxy nginx-light wrk curl" \
            "openssl libnginx-mod-stream redis-server redis-tools)" >&2
        exit 1
    }
done
if [ ! -x "$OURS" ]; then
    echo "bench: building $OURS" >&2
    (cd "$REPO" && cargo build --release --bin pen)
fi
if wants t && [ ! -x "$OURS_TLS" ]; then
    echo "bench: building $OURS_TLS (--features tls)" >&2
    (cd "$REPO" && cargo build --release --bin pen --features tls \
        --target-dir "$(dirname "$(dirname "$OURS_TLS")")")
fi

# 2,000 idle pairs need ~4,000 descriptors in the balancer and in the client,
# 10,000 need ~20,000 (root may raise the hard limit).
want_fds=$((2 * IDLE_CONNS_LARGE + 1000))
if [ "$(ulimit -Hn)" != unlimited ] && [ "$(ulimit -Hn)" -lt "$want_fds" ]; then
    ulimit -Hn "$want_fds" 2>/dev/null || true
fi
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt $((2 * IDLE_CONNS + 200)) ]; then
    echo "bench: ulimit -n $(ulimit -n) is too small for $IDLE_CONNS idle pairs" >&2
    exit 1
fi
IDLE_NOTE=
if wants d && [ "$IDLE_CONNS_LARGE" -gt 0 ] && [ "$(ulimit -n)" != unlimited ] &&
    [ "$(ulimit -n)" -lt $((2 * IDLE_CONNS_LARGE + 200)) ]; then
    # Without CAP_SYS_RESOURCE the hard limit stays: as many pairs as fit.
    fits=$((($(ulimit -n) - 200) / 2 / 100 * 100))
    IDLE_NOTE="ulimit -n $(ulimit -n) is too small for $IDLE_CONNS_LARGE idle pairs; $fits instead"
    IDLE_CONNS_LARGE=$fits
    [ "$IDLE_CONNS_LARGE" -gt "$IDLE_CONNS" ] || IDLE_CONNS_LARGE=0
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

# What the contenders forward to and how; each workload sets these.
BACKENDS=(127.0.0.1:"$B1" 127.0.0.1:"$B2")
DIRECT_PORT=$B1     # where `direct` sends the load
LISTEN_MODE=tcp     # tcp, udp or tls
SCHEME=http         # of the URLs that wrk and curl fetch
SLOTS=4000          # connection slots (-x, maxconn)
TLS_CERT=           # tls: certificate, key, and both in one file (HAProxy)
TLS_KEY=
TLS_PEM=

# Does contender $1 take part in workload $2?
applies() {
    local name=$1 w=$2
    case $name in
        haproxy) [ "$w" != u ] ;;
        nginx) [ -r "$NGINX_STREAM_MODULE" ] ;;
        direct) case $w in d|s|p|t) return 1 ;; esac ;;
        *) return 0 ;;
    esac
}

# Sets CMD to the command line of contender $1 listening on port $2.
contender_cmd() {
    local name=$1 port=$2 backend i=0
    # Sockets for SLOTS pairs, and HAProxy's global maxconn (it wants two
    # descriptors for each, and refuses to start without them), within
    # ulimit -n: 9,900 pairs with the usual 20,000.
    local sockets=$((2 * SLOTS)) global_maxconn=$((2 * SLOTS)) fd_limit
    fd_limit=$(ulimit -n)
    if [ "$fd_limit" != unlimited ]; then
        [ "$sockets" -le $((fd_limit - 100)) ] || sockets=$((fd_limit - 100))
        [ "$global_maxconn" -le $(((fd_limit - 100) / 2)) ] || global_maxconn=$(((fd_limit - 100) / 2))
    fi
    case "$name" in
        ours|pen)
            local bin=$OURS extra=()
            [ "$name" = pen ] && bin=$PEN
            case $LISTEN_MODE in
                udp) extra=(-U) ;;
                tls)
                    extra=(-E "$TLS_CERT" -K "$TLS_KEY")
                    [ "$name" = ours ] && bin=$OURS_TLS
                    ;;
            esac
            # -x: pen's default of 500 connection slots is too small for (d).
            # -r: plain round robin, like HAProxy's (every client here is
            # 127.0.0.1, so client tracking would pin them to one backend).
            CMD=(taskset -c "$BALANCER_CPU" "$bin" -f -r -x "$SLOTS" -c 4000 "${extra[@]}"
                127.0.0.1:"$port" "${BACKENDS[@]}")
            ;;
        haproxy)
            local bind="bind 127.0.0.1:$port"
            [ "$LISTEN_MODE" = tls ] && bind="$bind ssl crt $TLS_PEM"
            {
                cat <<EOF
global
    maxconn $global_maxconn
    nbthread 1
defaults
    mode tcp
    maxconn $SLOTS
    timeout connect 5s
    timeout client 10m
    timeout server 10m
listen bench
    $bind
    balance roundrobin
EOF
                for backend in "${BACKENDS[@]}"; do
                    i=$((i + 1))
                    echo "    server b$i $backend"
                done
            } >"$WORK/haproxy-$port.cfg"
            CMD=(taskset -c "$BALANCER_CPU" "$HAPROXY" -db -f "$WORK/haproxy-$port.cfg")
            ;;
        nginx)
            # nginx's stream module (libnginx-mod-stream), one process like
            # the backends. TLS 1.3 is not in nginx 1.22's default protocols.
            local dir=$WORK/nginx-stream-$port listen="listen 127.0.0.1:$port" tls=
            mkdir -p "$dir"
            case $LISTEN_MODE in
                udp) listen="$listen udp" ;;
                tls)
                    listen="$listen ssl backlog=4096"
                    tls="ssl_certificate $TLS_CERT; ssl_certificate_key $TLS_KEY; ssl_protocols TLSv1.2 TLSv1.3;"
                    ;;
                *) listen="$listen backlog=4096" ;;
            esac
            {
                cat <<EOF
load_module $NGINX_STREAM_MODULE;
worker_processes 1;
daemon off;
master_process off;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
worker_rlimit_nofile $((sockets + 50));
events { worker_connections $sockets; }
stream {
    upstream backends {
EOF
                for backend in "${BACKENDS[@]}"; do
                    echo "        server $backend;"
                done
                cat <<EOF
    }
    server {
        $listen;
        $tls
        proxy_pass backends;
        proxy_timeout 10m;
    }
}
EOF
            } >"$dir/nginx.conf"
            CMD=(taskset -c "$BALANCER_CPU" "$NGINX" -p "$dir" -c "$dir/nginx.conf")
            ;;
        *) echo "bench: unknown contender $name" >&2; exit 2 ;;
    esac
}

# Starts contender $1; sets TARGET_PORT and BALANCER_PID (empty for direct).
start_contender() {
    local name=$1 wait=wait-port
    if [ "$name" = direct ]; then
        TARGET_PORT=$DIRECT_PORT
        BALANCER_PID=
        return
    fi
    TARGET_PORT=$(python3 "$HELPER" freeports 1)
    contender_cmd "$name" "$TARGET_PORT"
    "${CMD[@]}" >"$WORK/$name.log" 2>&1 &
    BALANCER_PID=$!
    PIDS+=("$BALANCER_PID")
    [ "$LISTEN_MODE" = udp ] && wait="wait-udp"
    python3 "$HELPER" "$wait" "$TARGET_PORT" 10 || {
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
    local url=$SCHEME://127.0.0.1:$TARGET_PORT/small
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
run_bulk() { # round contender [workload]
    local round=$1 name=$2 w=${3:-c}
    start_contender "$name"
    local urls=() i
    for ((i = 0; i < BULK_FETCHES; i++)); do
        urls+=(-o /dev/null "$SCHEME://127.0.0.1:$TARGET_PORT/big")
    done
    local c0=0 c1=0 t0 t1 bytes
    [ -z "$BALANCER_PID" ] || c0=$(cpu_ticks "$BALANCER_PID")
    t0=$(date +%s%N)
    bytes=$(taskset -c "$LOAD_CPU" curl -s -k -w '%{size_download}\n' "${urls[@]}" |
        awk '{ s += $1 } END { print s + 0 }')
    t1=$(date +%s%N)
    [ -z "$BALANCER_PID" ] || c1=$(cpu_ticks "$BALANCER_PID")
    stop_contender
    if [ "$bytes" -ne $((BULK_FETCHES * BIG_BYTES)) ]; then
        echo "  $w $name: short transfer ($bytes bytes)" >&2
        record "$round" "$w" "$name" mbps nan
        return
    fi
    local mbps
    mbps=$(awk -v b="$bytes" -v ns=$((t1 - t0)) 'BEGIN { printf "%.1f", b / 1e6 / (ns / 1e9) }')
    record "$round" "$w" "$name" mbps "$mbps"
    if [ -n "$BALANCER_PID" ]; then
        record "$round" "$w" "$name" cpu_per_gb \
            "$(awk -v t=$((c1 - c0)) -v hz="$HZ" -v b="$bytes" 'BEGIN { printf "%.4f", t / hz / (b / 1e9) }')"
    fi
    echo "  $w $name: $mbps MB/s" >&2
}

# (d): IDLE_CONNS idle pairs through a fresh balancer (workload d), then
# IDLE_CONNS_LARGE (workload d@N) with as many connection slots.
run_idle() { # round contender
    local round=$1 name=$2 n w out key value
    for n in "$IDLE_CONNS" "$IDLE_CONNS_LARGE"; do
        [ "$n" -gt 0 ] || continue
        w=d
        [ "$n" = "$IDLE_CONNS" ] || w=d@$n
        [ "$n" -lt 4000 ] || SLOTS=$((n + 50))
        start_contender "$name"
        SLOTS=4000
        out=$(taskset -c "$LOAD_CPU" python3 "$HELPER" idle "$TARGET_PORT" "$BALANCER_PID" "$n")
        stop_contender
        while read -r key value; do
            record "$round" "$w" "$name" "$key" "$value"
        done <<<"$out"
        echo "  $w $name: $(tr '\n' ' ' <<<"$out")" >&2
    done
}

# Records the "key value" lines of helper output $4 for round $1, workload
# $2, contender $3, and echoes them on one line.
record_lines() {
    local round=$1 w=$2 name=$3 out=$4 key value
    while read -r key value; do
        [ -n "$key" ] && record "$round" "$w" "$name" "$key" "$value"
    done <<<"$out"
    echo "  $w $name: $(tr '\n' ' ' <<<"$out")" >&2
}

per_100k() { # ticks count: CPU seconds per 100,000 units of work
    awk -v t="$1" -v hz="$HZ" -v n="$2" 'BEGIN { if (n > 0) printf "%.4f", t / hz / n * 100000; else print "nan" }'
}

# (t) TLS termination, for each key type in TLS_KEYS: the certificate and
# key are made once per run with openssl.
make_tls_keys() {
    local key
    IFS=, read -r -a TLS_KEY_LIST <<<"$TLS_KEYS"
    for key in "${TLS_KEY_LIST[@]}"; do
        case $key in
            ec) set -- -newkey ec -pkeyopt ec_paramgen_curve:P-256 ;;
            rsa) set -- -newkey rsa:2048 ;;
            *) echo "bench: TLS_KEYS: unknown key type $key (ec, rsa)" >&2; exit 2 ;;
        esac
        openssl req -x509 "$@" -nodes -subj /CN=bench -days 30 \
            -keyout "$WORK/$key.key" -out "$WORK/$key.crt" 2>/dev/null
        cat "$WORK/$key.crt" "$WORK/$key.key" >"$WORK/$key.pem"
    done
}
use_tls_key() {
    TLS_CERT=$WORK/$1.crt
    TLS_KEY=$WORK/$1.key
    TLS_PEM=$WORK/$1.pem
}

# Handshakes: TLS_CLIENTS `openssl s_time` processes, each one connection
# at a time (TLS handshake, GET /small over HTTP/1.0, the server closes),
# for DURATION seconds. -new: a full handshake every time; -reuse: each
# offers its last session (s_time prints r for every resumed one).
run_tls_handshakes() { # round contender workload new|reuse
    local round=$1 name=$2 w=$3 how=$4 i pids=() c0=0 c1=0 t0 t1 total resumed
    start_contender "$name"
    for ((i = 0; i < TLS_CLIENTS; i++)); do
        taskset -c "$LOAD_CPU" openssl s_time -connect 127.0.0.1:"$TARGET_PORT" -"$how" \
            -www /small -time 1 >/dev/null 2>&1 &
        pids+=($!)
    done
    wait "${pids[@]}" 2>/dev/null || true
    pids=()
    [ -z "$BALANCER_PID" ] || c0=$(cpu_ticks "$BALANCER_PID")
    t0=$(date +%s%N)
    for ((i = 0; i < TLS_CLIENTS; i++)); do
        taskset -c "$LOAD_CPU" openssl s_time -connect 127.0.0.1:"$TARGET_PORT" -"$how" \
            -www /small -time "$DURATION" >"$WORK/stime-$i.out" 2>&1 &
        pids+=($!)
    done
    wait "${pids[@]}" 2>/dev/null || true
    t1=$(date +%s%N)
    [ -z "$BALANCER_PID" ] || c1=$(cpu_ticks "$BALANCER_PID")
    stop_contender
    total=$(cat "$WORK"/stime-*.out | awk '/connections in .* real seconds/ { s += $1 } END { print s + 0 }')
    # The progress characters: r resumed, * (or t, 3) a new session.
    resumed=$(cat "$WORK"/stime-*.out | { grep -E '^[*rt3]+$' || true; } | tr -cd r | wc -c)
    rm -f "$WORK"/stime-*.out
    record "$round" "$w" "$name" rps "$(awk -v n="$total" -v ns=$((t1 - t0)) 'BEGIN { printf "%.1f", n / (ns / 1e9) }')"
    record "$round" "$w" "$name" resumed_pct "$(awk -v r="$resumed" -v n="$total" 'BEGIN { printf "%.1f", n ? 100 * r / n : 0 }')"
    [ -z "$BALANCER_PID" ] || record "$round" "$w" "$name" cpu_per_100k "$(per_100k $((c1 - c0)) "$total")"
    echo "  $w $name: $total handshakes ($resumed resumed)" >&2
}

# (t): full handshakes for every key type; resumed handshakes, keep-alive
# (wrk over TLS) and bulk (curl over TLS) with the first key type only,
# since the certificate's key is used only in a full handshake.
run_tls() { # round contender
    local round=$1 name=$2 key first=
    LISTEN_MODE=tls
    SCHEME=https
    for key in "${TLS_KEY_LIST[@]}"; do
        use_tls_key "$key"
        run_tls_handshakes "$round" "$name" tf@"$key" new
        [ -z "$first" ] || continue
        first=$key
        run_tls_handshakes "$round" "$name" tr@"$key" reuse
        run_wrk "$round" tk@"$key" "$name"
        run_bulk "$round" "$name" tc@"$key"
    done
    LISTEN_MODE=tcp
    SCHEME=http
}

# (u) UDP: two UDP answering servers (bench/helper.py udpecho) play the
# backends; helper.py udpload is the client.
start_udp_backends() {
    local port
    read -r U1 U2 <<<"$(python3 "$HELPER" freeports 2)"
    for port in "$U1" "$U2"; do
        taskset -c "$LOAD_CPU" python3 "$HELPER" udpecho "$port" >"$WORK/udpecho-$port.log" 2>&1 &
        PIDS+=($!)
        python3 "$HELPER" wait-udp "$port" 10 || {
            echo "bench: UDP backend on $port did not start" >&2
            cat "$WORK/udpecho-$port.log" >&2
            exit 1
        }
    done
}
# One UDP run through contender $2 (rate $4 queries/s, 0: closed loop).
udp_once() { # round contender workload rate
    local round=$1 name=$2 w=$3 rate=$4 out
    LISTEN_MODE=udp
    BACKENDS=(127.0.0.1:"$U1" 127.0.0.1:"$U2")
    DIRECT_PORT=$U1
    start_contender "$name"
    out=$(taskset -c "$LOAD_CPU" python3 "$HELPER" udpload "$TARGET_PORT" "${BALANCER_PID:-0}" \
        "$UDP_SOCKETS" "$UDP_WINDOW" "$DURATION" "$rate")
    stop_contender
    LISTEN_MODE=tcp
    BACKENDS=(127.0.0.1:"$B1" 127.0.0.1:"$B2")
    DIRECT_PORT=$B1
    [ "$round" = 0 ] || record_lines "$round" "$w" "$name" "$out"
    UDP_QPS=$(awk '$1 == "qps" { printf "%.0f", $2 }' <<<"$out")
}
# (u): saturation (closed loop), then fixed rates (UDP_RATES per cent of
# pen's closed-loop rate, measured once before the rounds), where the round
# trip times are not just the closed loop's own queueing.
run_udp() { # round contender
    local round=$1 name=$2 pct
    udp_once "$round" "$name" u 0
    IFS=, read -r -a pcts <<<"$UDP_RATES"
    for pct in "${pcts[@]}"; do
        udp_once "$round" "$name" "u@$pct" $((UDP_PEN_QPS * pct / 100))
    done
}
measure_pen_udp() {
    udp_once 0 pen u 0
    UDP_PEN_QPS=${UDP_QPS:-0}
    if [ "$UDP_PEN_QPS" -le 0 ]; then
        echo "bench: pen's UDP saturation run failed" >&2
        exit 1
    fi
    record 0 u pen saturated_qps "$UDP_PEN_QPS"
    note "UDP: pen saturated at $UDP_PEN_QPS queries/s (closed loop)"
}

# (o) open loop: pen's saturated rates, measured once before the rounds with
# wrk as in (a) and (b), set the fixed rates (OPEN_RATES per cent of them).
measure_pen_saturation() {
    local mode extra out rps
    for mode in ka new; do
        extra=()
        [ $mode = new ] && extra=(-H 'Connection: close')
        start_contender pen
        local url=http://127.0.0.1:$TARGET_PORT/small
        taskset -c "$LOAD_CPU" wrk -t2 -c50 -d1s "${extra[@]}" "$url" >/dev/null 2>&1 || true
        out=$(taskset -c "$LOAD_CPU" wrk -t2 -c50 -d"${DURATION}s" "${extra[@]}" "$url" 2>&1)
        stop_contender
        rps=$(awk '/^Requests\/sec:/ { printf "%.0f", $2 }' <<<"$out")
        if [ -z "$rps" ] || [ "$rps" -le 0 ]; then
            echo "bench: pen's saturation run failed: $out" >&2
            exit 1
        fi
        record 0 o pen "saturated_${mode}_rps" "$rps"
        note "open loop: pen saturated at $rps requests/s ($mode)"
        if [ $mode = ka ]; then SATURATED_KA=$rps; else SATURATED_NEW=$rps; fi
    done
}
run_openloop() { # round contender
    local round=$1 name=$2 mode pct rate out
    IFS=, read -r -a rates <<<"$OPEN_RATES"
    for mode in ka new; do
        for pct in "${rates[@]}"; do
            if [ $mode = ka ]; then rate=$SATURATED_KA; else rate=$SATURATED_NEW; fi
            rate=$((rate * pct / 100))
            start_contender "$name"
            out=$(taskset -c "$LOAD_CPU" python3 "$HELPER" openloop "$TARGET_PORT" "${BALANCER_PID:-0}" \
                "$mode" "$rate" "$DURATION" "$OPEN_CONNS")
            stop_contender
            record_lines "$round" "o@$mode$pct" "$name" "target_rate $rate
$out"
        done
    done
}

# (k) redis: redis-benchmark (SET and GET, 50 connections) through the
# balancer to one redis-server, without and with 16 commands pipelined.
start_redis() {
    REDIS_PORT=$(python3 "$HELPER" freeports 1)
    mkdir -p "$WORK/redis"
    taskset -c "$LOAD_CPU" redis-server --port "$REDIS_PORT" --bind 127.0.0.1 \
        --save '' --appendonly no --protected-mode no --dir "$WORK/redis" \
        --logfile "$WORK/redis/redis.log" --daemonize no &
    PIDS+=($!)
    python3 "$HELPER" wait-port "$REDIS_PORT" 10 || {
        echo "bench: redis-server did not start:" >&2
        cat "$WORK/redis/redis.log" >&2
        exit 1
    }
}
run_redis() { # round contender
    local round=$1 name=$2 pipeline n w out c0=0 c1=0 t0 t1 ops
    BACKENDS=(127.0.0.1:"$REDIS_PORT")
    DIRECT_PORT=$REDIS_PORT
    for pipeline in 1 16; do
        n=${REDIS_REQUESTS:-$((20000 * DURATION))}
        w=k
        if [ "$pipeline" -gt 1 ]; then
            n=${REDIS_PIPELINED_REQUESTS:-$((150000 * DURATION))}
            w=k@P$pipeline
        fi
        start_contender "$name"
        [ -z "$BALANCER_PID" ] || c0=$(cpu_ticks "$BALANCER_PID")
        t0=$(date +%s%N)
        out=$(taskset -c "$LOAD_CPU" redis-benchmark -h 127.0.0.1 -p "$TARGET_PORT" -c 50 \
            -n "$n" -P "$pipeline" -t set,get --csv 2>&1) || true
        t1=$(date +%s%N)
        [ -z "$BALANCER_PID" ] || c1=$(cpu_ticks "$BALANCER_PID")
        stop_contender
        echo "$out" >"$WORK/redis-$round-$w-$name.log"
        # --csv: "test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms",
        # "p95_latency_ms","p99_latency_ms","max_latency_ms"
        ops=$(awk -F'"' '$2 == "SET" || $2 == "GET" { k++ } END { print k + 0 }' <<<"$out")
        if [ "$ops" != 2 ]; then
            echo "  $w $name: redis-benchmark failed: $out" >&2
            record "$round" "$w" "$name" ops_rps nan
            continue
        fi
        record "$round" "$w" "$name" ops_rps "$(awk -F'"' '$2 == "SET" || $2 == "GET" { t += 1 / $4 } END { printf "%.1f", 2 / t }' <<<"$out")"
        record "$round" "$w" "$name" p99_ms "$(awk -F'"' '$2 == "GET" { print $14 }' <<<"$out")"
        [ -z "$BALANCER_PID" ] || record "$round" "$w" "$name" cpu_per_100k "$(per_100k $((c1 - c0)) $((2 * n)))"
        echo "  $w $name: $(awk -F'"' '$2 == "SET" || $2 == "GET" { printf "%s %s/s ", $2, $4 }' <<<"$out")" >&2
    done
    BACKENDS=(127.0.0.1:"$B1" 127.0.0.1:"$B2")
    DIRECT_PORT=$B1
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

IFS=, read -r -a CONTENDER_LIST <<<"${CONTENDERS:-ours,pen,haproxy,direct}"
if [ -z "$CONTENDERS" ] && wants u; then
    CONTENDER_LIST+=(nginx)
fi
: >"$OUT"
rm -f "${OUT%.tsv}-profile.txt"
note "pen benchmark $(date -u +%Y-%m-%dT%H:%M:%SZ): rounds $ROUNDS, wrk runs ${DURATION} s, bulk ${BULK_FETCHES} x 100 MB, idle pairs $IDLE_CONNS and ${IDLE_CONNS_LARGE}"
note "machine: $(nproc) cores, $(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo), kernel $(uname -r)"
note "pinning: balancer on CPU $BALANCER_CPU; wrk, curl, python and both nginx on CPU $LOAD_CPU"
note "ours: $OURS ($(cd "$REPO" && git describe --always --dirty 2>/dev/null || echo unknown)); pen: $(dpkg-query -W -f='${Version}' pen 2>/dev/null || echo ?); haproxy: $("$HAPROXY" -v 2>/dev/null | awk 'NR == 1 { print $3 }')"
[ -z "$IDLE_NOTE" ] || note "$IDLE_NOTE"
wants t && note "ours with TLS: $OURS_TLS; TLS keys: $TLS_KEYS; $(openssl version)"
wants k && note "$(redis-server --version | cut -d' ' -f1-3)"
case " ${CONTENDER_LIST[*]} " in *" nginx "*)
    [ -r "$NGINX_STREAM_MODULE" ] || note "nginx: no stream module at $NGINX_STREAM_MODULE (apt-get install libnginx-mod-stream); left out" ;;
esac
wants t && make_tls_keys
wants u && start_udp_backends && measure_pen_udp
wants k && start_redis
wants o && measure_pen_saturation
note "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"

if wants z; then
    for name in "${CONTENDER_LIST[@]}"; do run_size "$name"; done
fi

for ((round = 1; round <= ROUNDS; round++)); do
    # Rotate the order each round so no contender always runs first.
    n=${#CONTENDER_LIST[@]}
    order=()
    for ((i = 0; i < n; i++)); do
        order+=("${CONTENDER_LIST[$(((i + round - 1) % n))]}")
    done
    echo "round $round/$ROUNDS: ${order[*]} (load $(cut -d' ' -f1-3 /proc/loadavg))" >&2
    for w in a b c d n s t u o k p; do
        wants $w || continue
        for name in "${order[@]}"; do
            applies "$name" $w || continue
            case $w in
                a) run_wrk "$round" a "$name" ;;
                b) run_wrk "$round" b "$name" -H 'Connection: close' ;;
                c) run_bulk "$round" "$name" ;;
                d) run_idle "$round" "$name" ;;
                n) run_neighbour "$round" "$name" ;;
                s) run_startup "$round" "$name" ;;
                p) run_profile "$round" "$name" ;;
                t) run_tls "$round" "$name" ;;
                u) run_udp "$round" "$name" ;;
                o) run_openloop "$round" "$name" ;;
                k) run_redis "$round" "$name" ;;
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

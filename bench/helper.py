#!/usr/bin/env python3
"""Helpers for bench/run.sh (Python 3 standard library only).

Subcommands:
  freeports N                 print N free TCP ports on 127.0.0.1
  wait-port PORT SECONDS      wait until 127.0.0.1:PORT accepts (exit 1 on timeout)
  idle PORT PID N             hold N idle connections through the balancer PID,
                              report its RSS/threads/fds, then check each one
                              still passes a request
  startup PORT -- CMD...      start CMD, time until the first relayed HTTP
                              reply through 127.0.0.1:PORT, stop CMD
  summary RESULTS.tsv         print the tables of a run
  profile ROUND W NAME BASE REQS_PERF REQS_STRACE
                              per-request figures from BASE.perf (perf stat)
                              and BASE.strace (strace -c -f)

Every wait is bounded in time; the only process started here (startup) is
stopped by its own PID in a finally block.
"""

import os
import resource
import select
import socket
import statistics
import subprocess
import sys
import time

REQUEST = b"GET /small HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n"


def free_port_list(n):
    socks, ports = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


def free_ports(n):
    print(" ".join(map(str, free_port_list(n))))


def wait_port(port, seconds):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return 0
        except OSError:
            time.sleep(0.01)
    return 1


def proc_status(pid):
    """VmRSS (KiB), Threads and open descriptors of a process."""
    fields = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            fields[key] = value.strip()
    rss = int(fields["VmRSS"].split()[0])
    threads = int(fields["Threads"])
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    return rss, threads, fds


def raise_nofile(want):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))


def idle(port, pid, n):
    """Holds n connections open through the balancer, measures it, then
    checks that every connection still relays a request."""
    raise_nofile(2 * n + 100)
    # Let the balancer settle (threads started by the start-up probe).
    time.sleep(0.5)
    rss0, threads0, fds0 = proc_status(pid)
    conns = []
    failed_connect = 0
    for _ in range(n):
        try:
            conns.append(socket.create_connection(("127.0.0.1", port), timeout=5))
        except OSError:
            failed_connect += 1
    # Wait (bounded) until the balancer holds both sockets of every pair,
    # i.e. it has accepted each client and connected it to a backend.
    want = fds0 + 2 * len(conns)
    deadline = time.monotonic() + 20
    fds = fds0
    while time.monotonic() < deadline:
        fds = len(os.listdir(f"/proc/{pid}/fd"))
        if fds >= want:
            break
        time.sleep(0.05)
    time.sleep(1.0)  # let RSS settle after the last pair started
    rss, threads, fds = proc_status(pid)
    # Now every held connection must still pass a request.
    ok = 0
    for s in conns:
        try:
            s.settimeout(10)
            s.sendall(REQUEST)
        except OSError:
            pass
    for s in conns:
        try:
            data = b""
            while b"\r\n" not in data and len(data) < 4096:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
            if data.startswith(b"HTTP/1.1 200"):
                ok += 1
        except OSError:
            pass
        s.close()
    held = len(conns)
    print(f"rss_base_kib {rss0}")
    print(f"threads_base {threads0}")
    print(f"fds_base {fds0}")
    print(f"rss_kib {rss}")
    print(f"threads {threads}")
    print(f"fds {fds}")
    print(f"fds_per_pair {(fds - fds0) / held if held else 0.0:.2f}")
    print(f"held {held}")
    print(f"connect_failed {failed_connect}")
    print(f"ok {ok}")
    per_pair = (rss - rss0) / held if held else 0.0
    print(f"growth_per_pair_kib {per_pair:.2f}")
    print(f"growth_per_conn_kib {per_pair / 2:.2f}")


def first_reply(port):
    """One attempt at a relayed request; True on an HTTP 200 reply."""
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=2)
    except OSError:
        return False
    try:
        s.sendall(REQUEST)
        data = b""
        while len(data) < 12:
            r, _, _ = select.select([s], [], [], 2)
            if not r:
                return False
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
        return data.startswith(b"HTTP/1.1 200")
    except OSError:
        return False
    finally:
        s.close()


def startup(port, cmd):
    """Milliseconds from exec of cmd to the first relayed reply."""
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = t0 + 10
        while time.monotonic() < deadline:
            if first_reply(port):
                print(f"{(time.monotonic() - t0) * 1000:.2f}")
                return 0
            if proc.poll() is not None:
                break
            time.sleep(0.0005)
        print("nan")
        return 1
    finally:
        stop(proc)


def stop(proc):
    """Stops a process started here, by its PID, bounded in time."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


# ---------------------------------------------------------------- summary

# (workload, metric, label, better): better is "high", "low" or "" (info).
METRICS = [
    ("a", "rps", "requests/s", "high"),
    ("a", "p99_ms", "p99 latency ms", "low"),
    ("a", "cpu_per_100k", "CPU s / 100k req", "low"),
    ("a", "errors", "wrk errors", "low"),
    ("b", "rps", "connections/s", "high"),
    ("b", "p99_ms", "p99 latency ms", "low"),
    ("b", "cpu_per_100k", "CPU s / 100k conn", "low"),
    ("b", "errors", "wrk errors", "low"),
    ("c", "mbps", "MB/s", "high"),
    ("c", "cpu_per_gb", "CPU s / GB", "low"),
    ("d", "rss_kib", "RSS KiB, pairs held", "low"),
    ("d", "rss_base_kib", "RSS KiB at start", "low"),
    ("d", "growth_per_pair_kib", "growth KiB / pair", "low"),
    ("d", "growth_per_conn_kib", "growth KiB / socket", "low"),
    ("d", "threads", "threads, pairs held", "low"),
    ("d", "fds_per_pair", "descriptors / pair", "low"),
    ("d", "ok", "replies OK after", "high"),
    ("n", "rps", "requests/s", "high"),
    ("n", "p99_ms", "p99 latency ms", "low"),
    ("n", "errors", "wrk errors", "low"),
    ("s", "startup_ms", "start-up ms", "low"),
    ("z", "stripped_bytes", "stripped bytes", "low"),
]

TITLES = {
    "a": "(a) HTTP keep-alive, small responses (wrk -t2 -c50)",
    "b": "(b) new connection per request (wrk -t2 -c50, Connection: close)",
    "c": "(c) bulk: 100 MB bodies (curl, one connection)",
    "d": "(d) idle client connections held through the balancer",
    "n": "(n) keep-alive beside a CPU-bound process on the balancer's core (wrk -t2 -c10)",
    "s": "start-up: exec to first relayed reply",
    "z": "binary size (stripped)",
}

# Targets for ours, as (workload, metric, relation to pen's median, factor).
TARGETS = [
    ("a", "cpu_per_100k", "<=", 1.0, "CPU per 100k keep-alive requests <= 1.0x pen"),
    ("a", "rps", ">=", 1.0, "keep-alive req/s no worse than pen"),
    ("a", "p99_ms", "<=", 1.0, "keep-alive p99 no worse than pen"),
    ("b", "cpu_per_100k", "<=", 1.0, "CPU per 100k new connections <= 1.0x pen"),
    ("b", "rps", ">=", 1.0, "conn/s >= pen"),
    ("c", "cpu_per_gb", "<=", 0.5, "CPU per GB bulk <= 0.5x pen"),
    ("c", "mbps", ">=", 1.3, "bulk MB/s >= 1.3x pen"),
    ("d", "rss_kib", "<=", 2.0, "RSS holding idle pairs <= 2x pen"),
    ("s", "startup_ms", "<=", 1.0, "start-up to first reply <= pen"),
]
ABSOLUTE_TARGETS = [
    ("d", "growth_per_pair_kib", 12.0, "growth per idle pair <= 12 KiB"),
    ("z", "stripped_bytes", 1024 * 1024, "stripped release binary <= 1 MiB"),
]


def fmt(v):
    if v is None:
        return "-"
    if abs(v) >= 1000:
        return f"{v:.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    if abs(v) >= 0.1:
        return f"{v:.3f}"
    return f"{v:.4f}"


def summary(path):
    data = {}  # (workload, contender, metric) -> [values]
    contenders = []
    notes = []
    with open(path) as f:
        for line in f:
            parts = line.rstrip("\n").split("\t")
            if parts[0] == "#":
                notes.append(parts[1] if len(parts) > 1 else "")
                continue
            if len(parts) != 5:
                continue
            _round, workload, contender, metric, value = parts
            try:
                v = float(value)
            except ValueError:
                continue
            if v != v:  # nan: a failed measurement
                continue
            data.setdefault((workload, contender, metric), []).append(v)
            if contender not in contenders:
                contenders.append(contender)
    order = [c for c in ("ours", "pen", "haproxy", "direct") if c in contenders]
    order += [c for c in contenders if c not in order]
    for n in notes:
        print(n)
    medians = {}
    last_workload = None
    for workload, metric, label, _better in METRICS:
        rows = [(c, data.get((workload, c, metric))) for c in order]
        rows = [(c, v) for c, v in rows if v]
        if not rows:
            continue
        if workload != last_workload:
            print()
            print(TITLES[workload])
            print(f"  {'metric':<22} {'contender':<9} {'median':>10} {'min - max':>23} {'x pen':>7} {'n':>3}")
            last_workload = workload
        pen = data.get((workload, "pen", metric))
        pen_median = statistics.median(pen) if pen else None
        first = True
        for c, values in rows:
            m = statistics.median(values)
            medians[(workload, c, metric)] = m
            ratio = f"{m / pen_median:.2f}" if pen_median else "-"
            spread = f"{fmt(min(values))} - {fmt(max(values))}"
            name = label if first else ""
            print(f"  {name:<22} {c:<9} {fmt(m):>10} {spread:>23} {ratio:>7} {len(values):>3}")
            first = False
    print()
    print("Targets for ours (medians):")
    for workload, metric, rel, factor, text in TARGETS:
        ours = medians.get((workload, "ours", metric))
        pen = medians.get((workload, "pen", metric))
        if ours is None or not pen:
            print(f"  {'n/a':<4} {text}")
            continue
        ratio = ours / pen
        ok = ratio <= factor if rel == "<=" else ratio >= factor
        verdict = "PASS" if ok else "FAIL"
        print(f"  {verdict:<4} {text}: ours {fmt(ours)}, pen {fmt(pen)}, ratio {ratio:.2f}")
    for workload, metric, limit, text in ABSOLUTE_TARGETS:
        ours = medians.get((workload, "ours", metric))
        if ours is None:
            print(f"  {'n/a':<4} {text}")
            continue
        verdict = "PASS" if ours <= limit else "FAIL"
        print(f"  {verdict:<4} {text}: ours {fmt(ours)}")


def profile(rnd, workload, name, base, reqs_perf, reqs_strace):
    """One line of per-request context switches and syscalls."""
    parts = [f"({workload}) {name:<8} round {rnd}:"]
    try:
        with open(base + ".perf") as f:
            counts = {}
            for line in f:
                fields = line.split()
                if len(fields) >= 2 and fields[1] in ("context-switches", "cpu-migrations"):
                    counts[fields[1]] = float(fields[0].replace(",", ""))
                elif len(fields) >= 3 and fields[2] == "task-clock":
                    counts["task-clock"] = float(fields[0].replace(",", ""))
        if reqs_perf > 0:
            cs = counts.get("context-switches", 0) / reqs_perf
            mig = counts.get("cpu-migrations", 0) / reqs_perf
            us = counts.get("task-clock", 0) * 1000 / reqs_perf
            parts.append(f"{cs:.2f} ctx switches/req, {mig:.3f} migrations/req, "
                         f"{us:.1f} us CPU/req ({reqs_perf} req);")
    except OSError:
        parts.append("no perf figures;")
    try:
        calls = {}
        with open(base + ".strace") as f:
            for line in f:
                fields = line.split()
                # % time, seconds, usecs/call, calls, [errors], syscall
                if len(fields) >= 5 and fields[0][0].isdigit() and fields[3].isdigit():
                    errors = fields[4] if len(fields) == 6 else "0"
                    calls[fields[-1]] = (int(fields[3]), int(errors) if errors.isdigit() else 0)
        total = calls.pop("total", (sum(c for c, _ in calls.values()), 0))[0]
        if reqs_strace > 0:
            top = sorted(calls.items(), key=lambda kv: -kv[1][0])[:8]
            detail = ", ".join(
                f"{n} {c / reqs_strace:.2f}" + (f" ({e / reqs_strace:.2f} err)" if e else "")
                for n, (c, e) in top)
            parts.append(f"{total / reqs_strace:.2f} syscalls/req ({reqs_strace} req under strace): {detail}")
    except OSError:
        parts.append("no strace figures")
    print(" ".join(parts))


def main(argv):
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    cmd = argv[1]
    if cmd == "freeports":
        free_ports(int(argv[2]))
        return 0
    if cmd == "wait-port":
        return wait_port(int(argv[2]), float(argv[3]))
    if cmd == "idle":
        idle(int(argv[2]), int(argv[3]), int(argv[4]))
        return 0
    if cmd == "startup" and len(argv) > 4 and argv[3] == "--":
        return startup(int(argv[2]), argv[4:])
    if cmd == "profile":
        profile(argv[2], argv[3], argv[4], argv[5], int(argv[6]), int(argv[7]))
        return 0
    if cmd == "summary":
        summary(argv[2])
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))

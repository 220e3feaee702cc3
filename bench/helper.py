#!/usr/bin/env python3
"""Helpers for bench/run.sh (Python 3 standard library only).

Subcommands:
  freeports N                 print N free TCP ports on 127.0.0.1
  wait-port PORT SECONDS      wait until 127.0.0.1:PORT accepts (exit 1 on timeout)
  wait-udp PORT SECONDS       wait until a datagram to 127.0.0.1:PORT is answered
  idle PORT PID N             hold N idle connections through the balancer PID,
                              report its RSS/threads/fds and the machine's
                              KernelStack growth, then check each one still
                              passes a request
  startup PORT -- CMD...      start CMD, time until the first relayed HTTP
                              reply through 127.0.0.1:PORT, stop CMD
  summary RESULTS.tsv         print the tables of a run
  profile ROUND W NAME BASE REQS_PERF REQS_STRACE
                              per-request figures from BASE.perf (perf stat)
                              and BASE.strace (strace -c -f)
  udpecho PORT                UDP server: answers every datagram with 200
                              bytes that start with the query's first 16
  udpload PORT PID SOCKETS WINDOW SECONDS [RATE]
                              UDP load from SOCKETS client sockets (ports),
                              60-byte queries: closed loop with WINDOW in
                              flight on each, or open loop at RATE queries/s;
                              queries/s, loss, round-trip times and the CPU
                              of PID (0: none) over the measured part
  openloop PORT PID MODE RATE SECONDS CONNS
                              open-loop HTTP load at RATE requests/s on /small
                              (MODE ka: over CONNS keep-alive connections,
                              pipelining when a reply is late; MODE new: a new
                              connection per request); latency percentiles
                              from each request's scheduled time, and the CPU
                              % of PID (0: none)

Every wait is bounded in time; the only process started here (startup) is
stopped by its own PID in a finally block.
"""

import errno
import os
import resource
import select
import socket
import statistics
import subprocess
import sys
import time
from collections import deque

REQUEST = b"GET /small HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n"


def free_port_list(n):
    """n ports free for both TCP and UDP on 127.0.0.1."""
    socks, ports = [], []
    for _ in range(100 * n):
        if len(ports) == n:
            break
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        port = s.getsockname()[1]
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            u.bind(("127.0.0.1", port))
        except OSError:
            continue
        finally:
            u.close()
        ports.append(port)
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


def wait_udp(port, seconds):
    """Waits until a datagram to 127.0.0.1:PORT is answered."""
    deadline = time.monotonic() + seconds
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect(("127.0.0.1", port))
        s.settimeout(0.05)
        while time.monotonic() < deadline:
            try:
                s.send(bytes(UDP_QUERY_BYTES))
                s.recv(2048)
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
    kstack0 = kernel_stack_kib()
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
    kstack = kernel_stack_kib()
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
    # KernelStack is the whole machine's: other processes starting or ending
    # threads meanwhile show up here too (a few KiB against 16 KiB a thread).
    kstack_per_pair = (kstack - kstack0) / held if held else 0.0
    print(f"kstack_growth_kib {kstack - kstack0}")
    print(f"kstack_per_pair_kib {kstack_per_pair:.2f}")
    print(f"memory_per_pair_kib {per_pair + kstack_per_pair:.2f}")


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


# ---------------------------------------------------------------- load


def cpu_ticks(pid):
    """utime+stime of a whole process in clock ticks (0 for pid 0)."""
    if not pid:
        return 0
    with open(f"/proc/{pid}/stat") as f:
        stat = f.read()
    # After "pid (comm) ", utime and stime are fields 12 and 13.
    fields = stat.rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


HZ = os.sysconf("SC_CLK_TCK")


def kernel_stack_kib():
    """KernelStack of the whole machine, from /proc/meminfo (KiB)."""
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("KernelStack:"):
                return int(line.split()[1])
    return 0


def own_cpu():
    """CPU seconds (user + system) of this process so far."""
    t = os.times()
    return t.user + t.system


def percentile(sorted_values, q):
    """Nearest-rank percentile of an already sorted list (None if empty)."""
    if not sorted_values:
        return None
    rank = max(1, -(-int(q * 1000) * len(sorted_values) // 1000))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def print_ms(key, seconds):
    print(f"{key} {seconds * 1000:.4f}" if seconds is not None else f"{key} nan")


UDP_QUERY_BYTES = 60
UDP_ANSWER_BYTES = 200
UDP_BUFFER = 4 << 20


def big_buffers(s):
    """Large socket buffers, so that the load side is not where datagrams
    are dropped (the kernel caps them at net.core.[rw]mem_max)."""
    for opt in (socket.SO_RCVBUF, socket.SO_SNDBUF):
        try:
            s.setsockopt(socket.SOL_SOCKET, opt, UDP_BUFFER)
        except OSError:
            pass


def udp_echo(port):
    """Answers each datagram with 200 bytes starting with its first 16 (the
    generator's sequence number and send time); runs until killed."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    big_buffers(s)
    s.bind(("127.0.0.1", port))
    buf = bytearray(2048)
    answer = bytearray(UDP_ANSWER_BYTES)
    while True:
        n, addr = s.recvfrom_into(buf)
        answer[:16] = buf[:16] if n >= 16 else bytes(16)
        s.sendto(answer, addr)


def udp_load(port, pid, nsockets, window, seconds, rate=0.0):
    """DNS-like load from `nsockets` client sockets (ports). Closed loop
    (rate 0): every socket keeps `window` queries in flight and sends the
    next one when an answer arrives. Open loop (rate > 0): query k goes out
    at k / rate seconds on socket k mod nsockets, whatever the answers do,
    and its round trip counts from that time. A query with no answer after
    one second is lost (in the closed loop it is then replaced). The first
    second is a warm-up; the figures cover the next `seconds`."""
    lost_after = 1.0
    raise_nofile(nsockets + 100)
    ep = select.epoll()
    socks = {}
    pad = bytes(UDP_QUERY_BYTES - 16)
    for _ in range(nsockets):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        big_buffers(s)
        s.bind(("127.0.0.1", 0))
        s.connect(("127.0.0.1", port))
        s.setblocking(False)
        socks[s.fileno()] = s
        ep.register(s.fileno(), select.EPOLLIN)
    fds = list(socks)
    seq = 0
    inflight = {}  # seq -> (fd, send time ns, measured)
    rtts, lags = [], []
    sent = received = received_measured = lost = 0
    measuring = False

    def send(fd, at_ns):
        nonlocal seq, sent
        seq += 1
        inflight[seq] = (fd, at_ns, measuring)
        sent += 1
        try:
            socks[fd].send(seq.to_bytes(8, "little") + at_ns.to_bytes(8, "little") + pad)
        except OSError:
            pass  # counted as lost when it times out

    start = time.monotonic()
    start_ns = time.monotonic_ns()
    measure_from = start + 1.0
    end = measure_from + seconds
    c0 = t0 = None
    k = 0
    if not rate:
        for fd in fds:
            for _ in range(window):
                send(fd, time.monotonic_ns())
    next_sweep = start + lost_after
    epfd = [ep.fileno()]
    while True:
        now = time.monotonic()
        if not measuring and now >= measure_from:
            measuring = True
            c0, t0, g0 = cpu_ticks(pid), now, own_cpu()
        if now >= end:
            break
        wait = 0.05
        if rate:
            due = start + k / rate
            while due <= now:
                if measuring:
                    lags.append(now - due)
                send(fds[k % nsockets], start_ns + int(k / rate * 1e9))
                k += 1
                due = start + k / rate
            wait = min(wait, due - now)
        r, _, _ = select.select(epfd, [], [], wait)
        events = ep.poll(0) if r else []
        for fd, _ev in events:
            try:
                data = socks[fd].recv(2048)
            except OSError:
                continue
            entry = inflight.pop(int.from_bytes(data[:8], "little"), None)
            if entry is None:
                continue  # answer to a query already counted as lost
            received += 1
            if entry[2]:
                received_measured += 1
                rtts.append(time.monotonic_ns() - entry[1])
            if not rate:
                send(fd, time.monotonic_ns())
        if now >= next_sweep:
            limit = time.monotonic_ns() - int(lost_after * 1e9)
            for old in [q for q, (_fd, t, _m) in inflight.items() if t < limit]:
                fd = inflight.pop(old)[0]
                lost += 1
                if not rate:
                    send(fd, time.monotonic_ns())
            next_sweep = now + 0.2
    c1, t1, g1 = cpu_ticks(pid), time.monotonic(), own_cpu()
    # Drain: answers still on their way are not lost.
    deadline = time.monotonic() + lost_after
    while inflight and time.monotonic() < deadline:
        for fd, _ev in ep.poll(0.05):
            try:
                data = socks[fd].recv(2048)
            except OSError:
                continue
            entry = inflight.pop(int.from_bytes(data[:8], "little"), None)
            if entry is not None:
                received += 1
                if entry[2]:
                    received_measured += 1  # answered, but after the window
    lost += len(inflight)
    for s in socks.values():
        s.close()
    rtts.sort()
    lags.sort()
    elapsed = t1 - t0
    print(f"qps {received_measured / elapsed:.1f}")
    print(f"sent {sent}")
    print(f"lost {lost}")
    print(f"loss_pct {100.0 * lost / sent if sent else 0.0:.4f}")
    print_ms("p50_ms", percentile(rtts, 0.50) / 1e9 if rtts else None)
    print_ms("p99_ms", percentile(rtts, 0.99) / 1e9 if rtts else None)
    print_ms("p999_ms", percentile(rtts, 0.999) / 1e9 if rtts else None)
    if rate:
        print_ms("lag_p99_ms", percentile(lags, 0.99))
    print(f"generator_cpu_pct {(g1 - g0) / elapsed * 100:.1f}")
    if pid and received_measured:
        print(f"cpu_per_100k {(c1 - c0) / HZ / received_measured * 100000:.4f}")
        print(f"cpu_pct {(c1 - c0) / HZ / elapsed * 100:.2f}")


HTTP_KEEPALIVE = b"GET /small HTTP/1.1\r\nHost: bench\r\n\r\n"


def response_length(port):
    """Bytes of one keep-alive reply to HTTP_KEEPALIVE (all are the same)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(HTTP_KEEPALIVE)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = s.recv(4096)
            if not chunk:
                raise OSError("connection closed before the reply's headers")
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n"):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        return len(head) + 4 + length


def open_loop(port, pid, mode, rate, seconds, nconns):
    """Sends requests at fixed times (k / rate), whatever the replies do, and
    times each reply from its request's scheduled time, so that a slow
    balancer's queueing shows in the latency instead of slowing the load
    (closed-loop wrk waits for a reply before it sends the next request).
    A one-second warm-up at the same rate is not measured. Sleeps between
    sends with select() on the epoll descriptor (microsecond timeout);
    `lag` tells how late the generator itself sent (if its p99 is near the
    latency figures, the generator was the bottleneck)."""
    raise_nofile(65536)
    ep = select.epoll()
    interval = 1.0 / rate
    latencies = []
    lags = []
    errors = 0
    completed_measured = 0
    if mode == "ka":
        length = response_length(port)
        conns = {}  # fd -> [socket, deque of scheduled times, pending bytes]
        order = []
        for _ in range(nconns):
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            s.setblocking(False)
            conns[s.fileno()] = [s, deque(), 0]
            order.append(s.fileno())
            ep.register(s.fileno(), select.EPOLLIN)
    else:
        conns = {}  # fd -> [socket, scheduled time, measured?, sent?]
    start = time.monotonic() + 0.01
    measure_from = start + 1.0
    end = measure_from + seconds
    k = 0
    c0 = c1 = None
    t_end = None
    epfd = [ep.fileno()]
    while True:
        now = time.monotonic()
        if c0 is None and now >= measure_from:
            c0, g0 = cpu_ticks(pid), own_cpu()
        due = start + k * interval
        while due <= now and due < end:
            measured = due >= measure_from
            if measured:
                lags.append(now - due)
            if mode == "ka":
                fd = order[k % nconns]
                c = conns[fd]
                try:
                    c[0].send(HTTP_KEEPALIVE)
                    c[1].append((due, measured))
                except OSError:
                    errors += measured
            else:
                s = socket.socket()
                s.setblocking(False)
                err = s.connect_ex(("127.0.0.1", port))
                if err not in (0, errno.EINPROGRESS):
                    errors += measured
                    s.close()
                else:
                    entry = [s, due, measured, False]
                    try:
                        s.send(REQUEST)
                        entry[3] = True
                        ep.register(s.fileno(), select.EPOLLIN)
                    except BlockingIOError:
                        ep.register(s.fileno(), select.EPOLLOUT)
                    except OSError:
                        errors += measured
                        s.close()
                        entry = None
                    if entry:
                        conns[s.fileno()] = entry
            k += 1
            due = start + k * interval
        if due >= end:
            if c1 is None:
                c1, t_end, g1 = cpu_ticks(pid), now, own_cpu()
            outstanding = (sum(len(c[1]) for c in conns.values()) if mode == "ka"
                           else len(conns))
            if not outstanding or now > end + 2.0:
                break
            wait = 0.05
        else:
            wait = due - now
        r, _, _ = select.select(epfd, [], [], wait)
        if not r:
            continue
        for fd, ev in ep.poll(0):
            c = conns.get(fd)
            if c is None:
                continue
            if mode == "ka":
                try:
                    data = c[0].recv(65536)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                if not data:
                    errors += sum(1 for _due, m in c[1] if m)
                    c[1].clear()
                    ep.unregister(fd)
                    continue
                c[2] += len(data)
                t = time.monotonic()
                while c[2] >= length and c[1]:
                    c[2] -= length
                    due_at, measured = c[1].popleft()
                    if measured:
                        latencies.append(t - due_at)
                        completed_measured += 1
                continue
            s, due_at, measured, sent = c
            if not sent:
                try:
                    s.send(REQUEST)
                    c[3] = True
                    ep.modify(fd, select.EPOLLIN)
                except BlockingIOError:
                    pass
                except OSError:
                    errors += measured
                    ep.unregister(fd)
                    del conns[fd]
                    s.close()
                continue
            try:
                data = s.recv(65536)
            except BlockingIOError:
                continue
            except OSError:
                data = None
            if data:
                continue  # the reply ends with the server's close
            ep.unregister(fd)
            del conns[fd]
            s.close()
            if data is None:
                errors += measured
            elif measured:
                latencies.append(time.monotonic() - due_at)
                completed_measured += 1
    if mode == "ka":
        unanswered = sum(1 for c in conns.values() for _d, m in c[1] if m)
        for c in conns.values():
            c[0].close()
    else:
        unanswered = sum(1 for c in conns.values() if c[2])
        for c in conns.values():
            c[0].close()
    elapsed = t_end - measure_from
    latencies.sort()
    lags.sort()
    print(f"rate {completed_measured / elapsed:.1f}")
    print(f"errors {errors + unanswered}")
    print_ms("p50_ms", percentile(latencies, 0.50))
    print_ms("p99_ms", percentile(latencies, 0.99))
    print_ms("p999_ms", percentile(latencies, 0.999))
    print_ms("lag_p99_ms", percentile(lags, 0.99))
    print(f"generator_cpu_pct {(g1 - g0) / elapsed * 100:.1f}")
    if pid:
        print(f"cpu_pct {(c1 - c0) / HZ / elapsed * 100:.2f}")


# ---------------------------------------------------------------- summary

# Workload ids are a letter (or two) and optionally @ and a parameter
# (d@10000: idle pairs at 10,000; tf@ec: full TLS handshakes with the ECDSA
# key; o@ka50: open loop, keep-alive, 50 % of pen's rate). METRICS and TITLES
# are keyed by the part before @.
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
    ("d", "kstack_per_pair_kib", "KernelStack KiB / pair", "low"),
    ("d", "memory_per_pair_kib", "RSS+kstack KiB / pair", "low"),
    ("d", "threads", "threads, pairs held", "low"),
    ("d", "fds_per_pair", "descriptors / pair", "low"),
    ("d", "ok", "replies OK after", "high"),
    ("n", "rps", "requests/s", "high"),
    ("n", "p99_ms", "p99 latency ms", "low"),
    ("n", "errors", "wrk errors", "low"),
    ("s", "startup_ms", "start-up ms", "low"),
    ("z", "stripped_bytes", "stripped bytes", "low"),
    ("tf", "rps", "handshakes/s", "high"),
    ("tf", "cpu_per_100k", "CPU s / 100k hs", "low"),
    ("tf", "resumed_pct", "% resumed", ""),
    ("tr", "rps", "handshakes/s", "high"),
    ("tr", "cpu_per_100k", "CPU s / 100k hs", "low"),
    ("tr", "resumed_pct", "% resumed", "high"),
    ("tk", "rps", "requests/s", "high"),
    ("tk", "p99_ms", "p99 latency ms", "low"),
    ("tk", "cpu_per_100k", "CPU s / 100k req", "low"),
    ("tk", "errors", "wrk errors", "low"),
    ("tc", "mbps", "MB/s", "high"),
    ("tc", "cpu_per_gb", "CPU s / GB", "low"),
    ("u", "qps", "queries/s", "high"),
    ("u", "loss_pct", "loss %", "low"),
    ("u", "lost", "queries lost", "low"),
    ("u", "p50_ms", "p50 round trip ms", "low"),
    ("u", "p99_ms", "p99 round trip ms", "low"),
    ("u", "cpu_per_100k", "CPU s / 100k queries", "low"),
    ("u", "cpu_pct", "CPU %", "low"),
    ("u", "p999_ms", "p99.9 round trip ms", "low"),
    ("u", "lag_p99_ms", "generator lag p99 ms", "low"),
    ("u", "generator_cpu_pct", "generator CPU %", ""),
    ("u", "saturated_qps", "pen saturated, queries/s", ""),
    ("o", "saturated_ka_rps", "pen saturated, ka req/s", ""),
    ("o", "saturated_new_rps", "pen saturated, new conn/s", ""),
    ("o", "target_rate", "target requests/s", ""),
    ("o", "rate", "achieved requests/s", "high"),
    ("o", "p50_ms", "p50 latency ms", "low"),
    ("o", "p99_ms", "p99 latency ms", "low"),
    ("o", "p999_ms", "p99.9 latency ms", "low"),
    ("o", "cpu_pct", "balancer CPU %", "low"),
    ("o", "errors", "errors", "low"),
    ("o", "lag_p99_ms", "generator lag p99 ms", "low"),
    ("o", "generator_cpu_pct", "generator CPU %", ""),
    ("k", "ops_rps", "operations/s", "high"),
    ("k", "p99_ms", "GET p99 ms", "low"),
    ("k", "cpu_per_100k", "CPU s / 100k ops", "low"),
]

TITLES = {
    "a": "(a) HTTP keep-alive, small responses (wrk -t2 -c50)",
    "b": "(b) new connection per request (wrk -t2 -c50, Connection: close)",
    "c": "(c) bulk: 100 MB bodies (curl, one connection)",
    "d": "(d) idle client connections held through the balancer",
    "n": "(n) keep-alive beside a CPU-bound process on the balancer's core (wrk -t2 -c10)",
    "s": "start-up: exec to first relayed reply",
    "z": "binary size (stripped)",
    "tf": "(t) TLS full handshakes, {} key (openssl s_time -new, GET /small per connection)",
    "tr": "(t) TLS resumed handshakes, {} key (openssl s_time -reuse)",
    "tk": "(t) TLS keep-alive, small responses, {} key (wrk -t2 -c50 over TLS)",
    "tc": "(t) TLS bulk: 100 MB bodies, {} key (curl, one connection)",
    "u": "(u) UDP, 60-byte queries, 200-byte answers: {}",
    "o": "(o) open loop at a fixed rate: {}",
    "k": "(k) redis-benchmark SET+GET, 50 connections{}",
}


def split_workload(workload):
    base, _, param = workload.partition("@")
    return base, param


def title(workload):
    base, param = split_workload(workload)
    text = TITLES[base]
    if base == "d" and param:
        return f"{text}: {param} pairs"
    if base == "o":
        if not param:
            return text.format("pen's saturated rates (wrk, once per run)")
        mode = "keep-alive" if param.startswith("ka") else "new connection per request"
        return text.format(f"{mode}, {param.lstrip('kanew')} % of pen's saturated rate")
    if base == "u":
        return text.format(f"open loop at {param} % of pen's closed-loop rate" if param
                           else "closed loop, saturation")
    if base == "k":
        return text.format(f", -P {param[1:]}" if param else ", no pipelining")
    return text.format(param) if "{}" in text else text


# Targets for ours, as (workload, metric, relation to pen's median, factor);
# a workload given by its base applies to each of its parameters.
TARGETS = [
    ("a", "cpu_per_100k", "<=", 1.3, "CPU per 100k keep-alive requests <= 1.3x pen"),
    ("a", "rps", ">=", 1.0, "keep-alive req/s no worse than pen"),
    ("a", "p99_ms", "<=", 1.0, "keep-alive p99 no worse than pen"),
    ("b", "cpu_per_100k", "<=", 1.0, "CPU per 100k new connections <= 1.0x pen"),
    ("b", "rps", ">=", 1.0, "conn/s >= pen"),
    ("c", "cpu_per_gb", "<=", 0.5, "CPU per GB bulk <= 0.5x pen"),
    ("c", "mbps", ">=", 1.3, "bulk MB/s >= 1.3x pen"),
    ("d", "rss_kib", "<=", 2.0, "RSS holding idle pairs <= 2x pen"),
    ("s", "startup_ms", "<=", 1.0, "start-up to first reply <= pen"),
    ("tf", "rps", ">=", 1.0, "TLS full handshakes/s >= pen"),
    ("tf", "cpu_per_100k", "<=", 1.0, "CPU per TLS full handshake <= 1.0x pen"),
    ("tk", "cpu_per_100k", "<=", 1.3, "CPU per TLS keep-alive request <= 1.3x pen"),
    ("tc", "mbps", ">=", 1.2, "TLS bulk MB/s >= 1.2x pen"),
    ("u", "cpu_per_100k", "<=", 1.0, "CPU per 100k UDP queries <= 1.0x pen"),
]
ABSOLUTE_TARGETS = [
    ("d", "growth_per_pair_kib", 12.0, "growth per idle pair <= 12 KiB"),
    ("z", "stripped_bytes", 1024 * 1024, "stripped release binary <= 1 MiB"),
    ("u", "lost", 0, "no UDP query lost"),
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
    workloads = []
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
            if workload not in workloads and split_workload(workload)[0] in TITLES:
                workloads.append(workload)
    order = [c for c in ("ours", "pen", "haproxy", "nginx", "direct") if c in contenders]
    order += [c for c in contenders if c not in order]
    bases = list(TITLES)
    seen = {w: i for i, w in enumerate(workloads)}
    workloads.sort(key=lambda w: (bases.index(split_workload(w)[0]), seen[w]))
    for n in notes:
        print(n)
    medians = {}
    for workload in workloads:
        base = split_workload(workload)[0]
        printed_title = False
        for mbase, metric, label, _better in METRICS:
            if mbase != base:
                continue
            rows = [(c, data.get((workload, c, metric))) for c in order]
            rows = [(c, v) for c, v in rows if v]
            if not rows:
                continue
            if not printed_title:
                print()
                print(title(workload))
                print(f"  {'metric':<26} {'contender':<9} {'median':>10} {'min - max':>23} {'x pen':>7} {'n':>3}")
                printed_title = True
            pen = data.get((workload, "pen", metric))
            pen_median = statistics.median(pen) if pen else None
            first = True
            for c, values in rows:
                m = statistics.median(values)
                medians[(workload, c, metric)] = m
                ratio = f"{m / pen_median:.2f}" if pen_median else "-"
                spread = f"{fmt(min(values))} - {fmt(max(values))}"
                name = label if first else ""
                print(f"  {name:<26} {c:<9} {fmt(m):>10} {spread:>23} {ratio:>7} {len(values):>3}")
                first = False
    print()
    print("Targets for ours (medians):")
    for base, metric, rel, factor, text in TARGETS:
        matching = [w for w in workloads if split_workload(w)[0] == base]
        if base == "d":
            matching = [w for w in matching if w == "d"]
        for workload in matching:
            label = f"{text} [{workload}]" if "@" in workload else text
            ours = medians.get((workload, "ours", metric))
            pen = medians.get((workload, "pen", metric))
            if ours is None or not pen:
                print(f"  {'n/a':<4} {label}")
                continue
            ratio = ours / pen
            ok = ratio <= factor if rel == "<=" else ratio >= factor
            verdict = "PASS" if ok else "FAIL"
            print(f"  {verdict:<4} {label}: ours {fmt(ours)}, pen {fmt(pen)}, ratio {ratio:.2f}")
    for workload, metric, limit, text in ABSOLUTE_TARGETS:
        if workload not in workloads:
            continue
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
    if cmd == "wait-udp":
        return wait_udp(int(argv[2]), float(argv[3]))
    if cmd == "idle":
        idle(int(argv[2]), int(argv[3]), int(argv[4]))
        return 0
    if cmd == "startup" and len(argv) > 4 and argv[3] == "--":
        return startup(int(argv[2]), argv[4:])
    if cmd == "profile":
        profile(argv[2], argv[3], argv[4], argv[5], int(argv[6]), int(argv[7]))
        return 0
    if cmd == "udpecho":
        udp_echo(int(argv[2]))
        return 0
    if cmd == "udpload":
        udp_load(int(argv[2]), int(argv[3]), int(argv[4]), int(argv[5]), float(argv[6]),
                 float(argv[7]) if len(argv) > 7 else 0.0)
        return 0
    if cmd == "openloop":
        open_loop(int(argv[2]), int(argv[3]), argv[4], float(argv[5]), float(argv[6]),
                  int(argv[7]))
        return 0
    if cmd == "summary":
        summary(argv[2])
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))

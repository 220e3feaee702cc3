#!/usr/bin/env python3
"""The chaos soak behind bench/soak.sh (Python 3 standard library only).

  soak.py --minutes N --pen BINARY [--clients C] [--seed S] [--warmup SECONDS]

Starts BINARY (our pen) on 127.0.0.1 in front of three backends served from
this process, and for N minutes:

* clients run exchanges: a header line naming the exchange, then an upload
  and a download generated from the exchange's number, in both directions at
  once. Some clients half-close after their upload, some read slowly; others
  reset the connection half-way, send random bytes, or close at once;
* each backend flaps between up, refusing (listener closed) and black-holing
  (listening, never accepting);
* a controller races the traffic with server changes, blacklists, `write`,
  SIGHUP (re-reading the -F file), `close N` and read-only queries;
* SIGUSR1 every second.

Every byte received, completed or not, is compared with what the sender
generated, and every completed exchange is checked by sha256 in both
directions: the backend sends the last byte of its download only once the
whole upload has arrived intact, so a completed download proves both.

Checks: the balancer never dies; no exchange is corrupt; once traffic stops,
descriptors and threads return to their values at start, the connection
table is empty, and RSS at the end is within 10 % of its value after the
warm-up (measured idle, the same way). Prints a summary; exit status 1 when a
check fails, 2 on a usage or set-up error.

Every loop is bounded in count or time; the balancer is the only process
started, and it is stopped by its PID (also on Ctrl-C and SIGTERM).
"""

import argparse
import collections
import hashlib
import os
import random
import re
import select
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

import helper

HOST = "127.0.0.1"
BACKENDS = 3
CONN_MAX = 256
HEADER = re.compile(rb"^SOAK (\d+) (\d+) (\d+)\n")
# Upper bound of one exchange's duration beyond its size-dependent part.
EXCHANGE_SECONDS = 6.0


def payload(exchange, direction, size):
    """The bytes of one direction of an exchange, from its number alone."""
    return random.Random(exchange * 2 + direction).randbytes(size)


class Counters:
    """Thread-safe named counters."""

    def __init__(self):
        self.lock = threading.Lock()
        self.c = collections.Counter()

    def add(self, key, n=1):
        with self.lock:
            self.c[key] += n

    def get(self, key):
        with self.lock:
            return self.c[key]

    def snapshot(self):
        with self.lock:
            return dict(self.c)


COUNT = Counters()
# Clients and chaos stop on STOP; the backends only at the very end, so that
# connections queued while black-holing are still served and closed.
STOP = threading.Event()
BACKEND_STOP = threading.Event()
PROBLEMS = []
PROBLEMS_LOCK = threading.Lock()


def problem(text):
    with PROBLEMS_LOCK:
        if len(PROBLEMS) < 50:
            PROBLEMS.append(f"{time.strftime('%H:%M:%S')} {text}")


def pump(sock, out, want, deadline, slow=False, half_close=False, expected=None, stop=STOP):
    """Sends `out` and receives up to `want` bytes at once, until both are
    done, the peer closes, an error, or the deadline. Compares every byte
    received with `expected` (same length as want). Returns
    (sent, received_bytes, ended) where ended is 'eof', 'full', 'error' or
    'timeout'. Receiving stops at `want` bytes."""
    sock.setblocking(False)
    sent = 0
    got = bytearray()
    shut = False
    ended = "full"
    while True:
        if sent >= len(out) and half_close and not shut:
            try:
                sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass
            shut = True
        if len(got) >= want and sent >= len(out):
            break
        now = time.monotonic()
        if now >= deadline or stop.is_set():
            ended = "timeout"
            break
        rl = [sock] if len(got) < want else []
        wl = [sock] if sent < len(out) else []
        try:
            r, w, _ = select.select(rl, wl, [], min(0.5, deadline - now))
        except (OSError, ValueError):
            ended = "error"
            break
        if w:
            try:
                sent += sock.send(out[sent : sent + 65536])
            except BlockingIOError:
                pass
            except OSError:
                ended = "error"
                break
        if r:
            try:
                chunk = sock.recv(1024 if slow else 262144)
            except BlockingIOError:
                continue
            except OSError:
                ended = "error"
                break
            if not chunk:
                ended = "eof"
                break
            if expected is not None:
                at = len(got)
                if chunk != expected[at : at + len(chunk)]:
                    got += chunk
                    return sent, got, "corrupt"
            got += chunk
            if slow:
                time.sleep(random.uniform(0.0005, 0.003))
    return sent, got, ended


# ---------------------------------------------------------------- backends


class Backend:
    """One flapping backend: up, refusing or black-holing."""

    def __init__(self, index, port):
        self.index = index
        self.port = port
        self.state = "up"
        self.listener = None
        self.lock = threading.Lock()

    def open(self):
        """Listens on the port again; bounded retries (the port may be held
        by a closing connection for a moment)."""
        for _ in range(50):
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((HOST, self.port))
                s.listen(64)
            except OSError:
                s.close()
                time.sleep(0.02)
                continue
            s.setblocking(False)
            with self.lock:
                self.listener = s
            return True
        COUNT.add("backend_rebind_failed")
        return False

    def close(self):
        with self.lock:
            s, self.listener = self.listener, None
        if s is not None:
            s.close()

    def set_state(self, state):
        if state == self.state:
            return
        if state == "refusing":
            self.close()
        elif self.listener is None and not self.open():
            return
        self.state = state
        COUNT.add(f"backend_{state}")

    def accept_loop(self):
        while not BACKEND_STOP.is_set():
            with self.lock:
                s = self.listener if self.state == "up" else None
            if s is None:
                time.sleep(0.05)
                continue
            try:
                r, _, _ = select.select([s], [], [], 0.1)
                if not r:
                    continue
                conn, _ = s.accept()
            except OSError:
                continue
            if threading.active_count() > 600:
                conn.close()
                COUNT.add("backend_overloaded")
                continue
            threading.Thread(target=serve, args=(conn,), daemon=True).start()


def read_header(sock, deadline):
    buf = b""
    sock.settimeout(0.5)
    while b"\n" not in buf and len(buf) < 80 and time.monotonic() < deadline and not BACKEND_STOP.is_set():
        try:
            chunk = sock.recv(80 - len(buf))
        except socket.timeout:
            continue
        except OSError:
            return None, buf
        if not chunk:
            break
        buf += chunk
    m = HEADER.match(buf)
    return m, buf


def serve(conn):
    """The backend's side of one exchange."""
    with conn:
        deadline = time.monotonic() + EXCHANGE_SECONDS
        m, buf = read_header(conn, deadline)
        if m is None:
            COUNT.add("backend_bad_header")
            return
        exchange, up, down = (int(g) for g in m.groups())
        header_len = m.end()
        # Longer than the client's own deadline: the client gives up first.
        deadline += 10 + (up + down) / 50_000
        expected_up = payload(exchange, 0, up)
        early = bytes(buf[header_len:])
        if early != expected_up[: len(early)]:
            COUNT.add("corrupt_up")
            problem(f"exchange {exchange}: upload corrupt in its first bytes")
            return
        down_bytes = payload(exchange, 1, down)
        # All but the last byte of the download go while the upload arrives.
        sent, got, ended = pump(
            conn,
            down_bytes[:-1] if down else b"",
            up - len(early),
            deadline,
            expected=expected_up[len(early) :],
            stop=BACKEND_STOP,
        )
        if ended == "corrupt":
            COUNT.add("corrupt_up")
            problem(f"exchange {exchange}: upload corrupt at byte {len(early) + len(got) - 1}")
            return
        got = early + bytes(got)
        if len(got) < up or sent < max(down - 1, 0):
            COUNT.add("backend_cut")
            return
        if hashlib.sha256(got).digest() != hashlib.sha256(expected_up).digest():
            COUNT.add("corrupt_up")
            problem(f"exchange {exchange}: upload sha256 differs")
            return
        if down:
            try:
                conn.setblocking(True)
                conn.settimeout(2)
                conn.sendall(down_bytes[-1:])
            except OSError:
                COUNT.add("backend_cut")
                return
        COUNT.add("backend_complete")


def flapper(backends, rng):
    """Moves backends between states; backend 0 stays up most of the time."""
    while not STOP.wait(rng.uniform(0.5, 3.0)):
        b = rng.choice(backends)
        if b.state != "up":
            b.set_state("up")
        elif b.index != 0 or rng.random() < 0.3:
            b.set_state(rng.choice(["refusing", "blackhole"]))


# ---------------------------------------------------------------- clients


def sizes(rng):
    r = rng.random()
    if r < 0.2:
        return rng.randint(0, 100), rng.randint(0, 100)
    if r < 0.7:
        return rng.randint(0, 16384), rng.randint(0, 65536)
    if r < 0.95:
        return rng.randint(1000, 300_000), rng.randint(1000, 300_000)
    return rng.randint(0, 2_000_000), rng.randint(0, 2_000_000)


def connect(port, timeout=5.0):
    s = socket.socket()
    s.settimeout(timeout)
    try:
        s.connect((HOST, port))
    except OSError:
        s.close()
        COUNT.add("connect_failed")
        return None
    return s


def client(port, number, seed):
    rng = random.Random(seed)
    sequence = 0
    while not STOP.is_set():
        sequence += 1
        exchange = number * 10_000_000 + sequence
        kind = rng.choices(
            ["normal", "half_close", "slow", "reset", "random", "abort"],
            weights=[30, 30, 10, 10, 10, 10],
        )[0]
        s = connect(port)
        if s is None:
            STOP.wait(0.05)
            continue
        with s:
            if kind in ("normal", "half_close", "slow"):
                run_exchange(s, exchange, kind, rng)
            elif kind == "reset":
                up, down = sizes(rng)
                head = b"SOAK %d %d %d\n" % (exchange, up + 1, down)
                data = head + payload(exchange, 0, up + 1)
                cut = rng.randint(0, len(data) - 1)
                pump(s, data[:cut], rng.randint(0, down), time.monotonic() + 2)
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                COUNT.add("client_reset")
            elif kind == "random":
                junk = random.Random(exchange).randbytes(rng.randint(1, 8192))
                pump(s, junk, 1 << 20, time.monotonic() + 2, half_close=rng.random() < 0.5)
                COUNT.add("client_random")
            else:
                COUNT.add("client_abort")


def run_exchange(s, exchange, kind, rng):
    up, down = sizes(rng)
    if kind == "slow":
        up, down = min(up, 65536), min(down, 65536)
    head = b"SOAK %d %d %d\n" % (exchange, up, down)
    out = head + payload(exchange, 0, up)
    expected = payload(exchange, 1, down)
    deadline = time.monotonic() + EXCHANGE_SECONDS + (up + down) / 200_000
    if kind == "slow":
        deadline += down / 100_000
    _, got, ended = pump(
        s,
        out,
        down,
        deadline,
        slow=kind == "slow",
        half_close=kind == "half_close",
        expected=expected,
    )
    if ended == "corrupt":
        COUNT.add("corrupt_down")
        problem(f"exchange {exchange}: download corrupt at byte {len(got) - 1}")
        return
    if len(got) < down or (down == 0 and not confirm_empty(s, deadline)):
        if ended == "timeout":
            COUNT.add("cut_timeout")
        else:
            COUNT.add("cut_empty" if not got else "cut")
            if not got:
                # Refused (every server blacklisted or down): don't spin.
                STOP.wait(0.02)
        return
    if hashlib.sha256(bytes(got)).digest() != hashlib.sha256(expected).digest():
        COUNT.add("corrupt_down")
        problem(f"exchange {exchange}: download sha256 differs")
        return
    # Nothing may follow the download.
    try:
        s.setblocking(True)
        s.settimeout(max(0.1, min(2.0, deadline - time.monotonic())))
        if kind != "half_close":
            s.shutdown(socket.SHUT_WR)
        extra = s.recv(1)
    except OSError:
        extra = b""
    if extra:
        COUNT.add("corrupt_down")
        problem(f"exchange {exchange}: bytes after the download")
        return
    COUNT.add("complete")
    COUNT.add(f"complete_{kind}")
    COUNT.add("bytes", len(out) + down)


def confirm_empty(s, deadline):
    """An exchange with an empty download is complete only when the backend
    got the upload: it then closes, and we see the close as end of file."""
    try:
        s.setblocking(True)
        s.settimeout(max(0.1, deadline - time.monotonic()))
        s.shutdown(socket.SHUT_WR)
        return s.recv(1) == b""
    except OSError:
        return False


# ---------------------------------------------------------------- control


def ctl(port, line, timeout=10.0):
    """One control command; the reply, or None on error/time-out."""
    try:
        with socket.create_connection((HOST, port), timeout=timeout) as s:
            s.sendall(line.encode() + b"\n")
            reply = b""
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                chunk = s.recv(65536)
                if not chunk:
                    return reply.decode(errors="replace")
                reply += chunk
    except OSError:
        return None
    return None


def controller(ctl_port, pid, backends, work, rng):
    ports = [b.port for b in backends]
    while not STOP.wait(rng.uniform(0.05, 0.4)):
        r = rng.random()
        if r < 0.25:
            n = rng.randrange(BACKENDS)
            cmd = f"server {n} address {HOST} port {rng.choice(ports)}"
        elif r < 0.45:
            cmd = f"server {rng.randrange(BACKENDS)} blacklist {rng.randint(0, 3)}"
        elif r < 0.55:
            cmd = f"write {work}/written.cfg"
        elif r < 0.65:
            try:
                os.kill(pid, signal.SIGHUP)
                COUNT.add("ctl_hup")
            except OSError:
                pass
            continue
        elif r < 0.85:
            cmd = f"close {rng.randrange(CONN_MAX)}"
        else:
            cmd = rng.choice(["servers", "status", "metrics", "recent", "mode", f"connection {rng.randrange(CONN_MAX)}"])
        reply = ctl(ctl_port, cmd)
        name = cmd.split()[0] if not cmd.startswith("server ") else "server_" + cmd.split()[2]
        COUNT.add("ctl_" + name)
        if reply is None:
            COUNT.add("ctl_failed")
            problem(f"control command {cmd!r} got no reply")
        elif reply.startswith("error"):
            COUNT.add("ctlerr_" + name)


def usr1(pid):
    while not STOP.wait(1.0):
        try:
            os.kill(pid, signal.SIGUSR1)
            COUNT.add("usr1")
        except OSError:
            return


# ---------------------------------------------------------------- the balancer


def proc_figures(pid):
    """(RSS KiB, threads, descriptors) of pid."""
    return helper.proc_status(pid)


def rss_parts(pid):
    """(RssAnon, RssFile) in KiB: heap and stacks, and pages of the binary
    and libraries."""
    parts = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("RssAnon", "RssFile"):
                parts[key] = int(value.split()[0])
    return parts.get("RssAnon", 0), parts.get("RssFile", 0)


def metric(text, name):
    if text is None:
        return None
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


def idle_state(ctl_port, pid):
    """(rss, threads, fds, open connections in `servers`, pen_pairs)."""
    servers = ctl(ctl_port, "servers") or ""
    conns = sum(int(m) for m in re.findall(r" conn (\d+) ", servers))
    pairs = metric(ctl(ctl_port, "metrics"), "pen_pairs")
    rss, threads, fds = proc_figures(pid)
    return rss, threads, fds, conns, pairs


def wait_idle(ctl_port, pid, base, seconds):
    """Waits (bounded) until threads and descriptors are back to `base`
    and no connection is open; the last state seen."""
    deadline = time.monotonic() + seconds
    state = idle_state(ctl_port, pid)
    while time.monotonic() < deadline:
        # Our own control connection's thread may still be ending: look
        # at /proc a moment after the queries.
        time.sleep(0.3)
        rss, threads, fds = proc_figures(pid)
        state = (rss, threads, fds) + state[3:]
        if (threads, fds) == base and state[3] == 0 and state[4] in (0, None):
            break
        time.sleep(0.7)
        state = idle_state(ctl_port, pid)
    return state


def surge(port, pid, pairs, threads_wanted):
    """Opens `pairs` connections through the balancer and holds them until
    it runs `threads_wanted` threads (bounded: 10 s), then closes them; the
    highest thread count seen. glibc keeps one stack per thread of the
    highest thread count seen (8 KiB resident each), so RSS at idle follows
    the peak number of pairs: this puts a peak above the run's own into the
    baseline."""
    held = []
    most = 0
    deadline = time.monotonic() + 10
    try:
        while len(held) < pairs and time.monotonic() < deadline:
            s = connect(port, timeout=2)
            if s is not None:
                held.append(s)
            if len(held) % 16 == 0:
                time.sleep(0.02)
        while time.monotonic() < deadline:
            most = max(most, proc_figures(pid)[1])
            if most >= threads_wanted:
                break
            time.sleep(0.05)
        return most
    finally:
        for s in held:
            s.close()


def start_pen(args, work, listen, ctl_port, backends):
    cfg = os.path.join(work, "pen.cfg")
    with open(cfg, "w") as f:
        for b in backends:
            f.write(f"server {b.index} address {HOST} port {b.port}\n")
    log = open(os.path.join(work, "pen.stderr"), "wb")
    cmd = [
        args.pen, "-f", "-r", "-u", "root",
        "-x", str(CONN_MAX), "-t", "2", "-b", "2",
        "-C", f"{HOST}:{ctl_port}", "-F", cfg,
        f"{HOST}:{listen}",
    ]
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    log.close()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"soak: {args.pen} exited at start ({proc.returncode}); see {work}/pen.stderr")
        if ctl(ctl_port, "pid", timeout=1) is not None:
            return proc, cmd
        time.sleep(0.05)
    raise SystemExit("soak: the balancer did not answer on its control port within 10 s")


def phase(seconds, port, backends, ctl_port, pid, work, args, rng, chaos=True):
    """Runs traffic (and chaos) for `seconds`; returns False if pen died."""
    STOP.clear()
    threads = [
        threading.Thread(target=client, args=(port, i, rng.random()), daemon=True)
        for i in range(args.clients)
    ]
    if chaos:
        threads += [
            threading.Thread(target=flapper, args=(backends, random.Random(rng.random())), daemon=True),
            threading.Thread(target=controller, args=(ctl_port, pid, backends, work, random.Random(rng.random())), daemon=True),
            threading.Thread(target=usr1, args=(pid,), daemon=True),
        ]
    for t in threads:
        t.start()
    return threads


def main():
    ap = argparse.ArgumentParser(description="chaos soak of pen")
    ap.add_argument("--minutes", type=float, required=True)
    ap.add_argument("--pen", required=True)
    ap.add_argument("--clients", type=int, default=24)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--warmup", type=float, default=None, help="seconds (default: 10 %% of the run, 20 to 120)")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    ap.add_argument("--surge", type=int, default=None,
                    help="pair threads held at once at the end of the warm-up [6 x clients]")
    args = ap.parse_args()
    if args.minutes <= 0 or args.clients < 1:
        ap.error("--minutes and --clients must be positive")
    if args.surge is None:
        args.surge = 6 * args.clients
    if not 0 <= args.surge < CONN_MAX - 16:
        ap.error(f"--surge must be below {CONN_MAX - 16}")
    seed = args.seed if args.seed is not None else random.randrange(1 << 31)
    rng = random.Random(seed)
    total = args.minutes * 60
    warmup = args.warmup if args.warmup is not None else min(120, max(20, total / 10))

    work = tempfile.mkdtemp(prefix="pen-soak.")
    listen, ctl_port, *ports = helper.free_port_list(2 + BACKENDS)
    backends = [Backend(i, p) for i, p in enumerate(ports)]
    for b in backends:
        if not b.open():
            raise SystemExit(f"soak: can't listen on {HOST}:{b.port}")
    proc = None
    interrupted = []

    def on_signal(signum, _frame):
        interrupted.append(signum)
        STOP.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    t0 = time.monotonic()
    failures = []
    for b in backends:
        threading.Thread(target=b.accept_loop, daemon=True).start()
    try:
        proc, cmd = start_pen(args, work, listen, ctl_port, backends)
        time.sleep(1.0)
        base_rss, base_threads, base_fds = proc_figures(proc.pid)
        base = (base_threads, base_fds)
        print(f"soak: seed {seed}, {args.minutes:g} min, {args.clients} clients, warm-up {warmup:.0f} s", flush=True)
        print(f"soak: {' '.join(cmd)}", flush=True)
        print(f"soak: at start: RSS {base_rss} KiB, {base_threads} threads, {base_fds} descriptors", flush=True)

        def run_for(seconds, label):
            threads = phase(seconds, listen, backends, ctl_port, proc.pid, work, args, rng)
            end = time.monotonic() + seconds
            last = time.monotonic()
            peak = (0, 0, 0)
            while time.monotonic() < end and not interrupted:
                time.sleep(1)
                if proc.poll() is not None:
                    break
                try:
                    f = proc_figures(proc.pid)
                    peak = tuple(max(a, b) for a, b in zip(peak, f))
                except OSError:
                    pass
                if time.monotonic() - last >= 60:
                    last = time.monotonic()
                    c = COUNT.snapshot()
                    print(
                        f"soak: {label} {time.monotonic() - t0:5.0f} s: {c.get('complete', 0)} complete, "
                        f"{c.get('corrupt_up', 0) + c.get('corrupt_down', 0)} corrupt, "
                        f"RSS {f[0]} KiB, {f[1]} threads, {f[2]} fds",
                        flush=True,
                    )
            STOP.set()
            for t in threads:
                t.join(timeout=EXCHANGE_SECONDS + 15)
            for b in backends:
                b.set_state("up")
            return peak

        peak1 = run_for(warmup, "warm-up")
        if proc.poll() is None and not interrupted:
            most = surge(listen, proc.pid, args.surge, base_threads + args.surge)
            print(f"soak: surge: {args.surge} pairs held, {most} threads at once", flush=True)
            # Quiet, with every backend up: the thread pool's idle expiry
            # (5 s) and the idle state after warm-up.
            warm = wait_idle(ctl_port, proc.pid, base, 30)
            anon, file = rss_parts(proc.pid)
            print(f"soak: after warm-up, idle: RSS {warm[0]} KiB (anon {anon}, file {file}), {warm[1]} threads,"
                  f" {warm[2]} descriptors, {warm[3]} connections", flush=True)
            peak2 = run_for(total - warmup, "soak")
            peak = tuple(max(a, b) for a, b in zip(peak1, peak2))
        if proc.poll() is not None:
            failures.append(f"the balancer died (exit status {proc.returncode}); see {work}/pen.stderr")
        elif not interrupted:
            end = wait_idle(ctl_port, proc.pid, base, 60)
            rss, threads, fds, conns, pairs = end
            anon, file = rss_parts(proc.pid)
            print(f"soak: at the end, idle: RSS {rss} KiB (anon {anon}, file {file}), {threads} threads, {fds} descriptors,"
                  f" {conns} connections, pen_pairs {pairs}", flush=True)
            if threads != base_threads:
                failures.append(f"threads {threads} at the end, {base_threads} at start")
            if fds != base_fds:
                failures.append(f"descriptors {fds} at the end, {base_fds} at start")
            if conns != 0 or pairs not in (0, None):
                failures.append(f"connection table not empty: {conns} connections, pen_pairs {pairs}")
            if abs(rss - warm[0]) > warm[0] * 0.10:
                failures.append(f"RSS {rss} KiB at the end, {warm[0]} KiB after warm-up (more than 10 % apart)")
    finally:
        STOP.set()
        BACKEND_STOP.set()
        if proc is not None:
            helper.stop(proc)
        for b in backends:
            b.close()

    c = COUNT.snapshot()
    corrupt = c.get("corrupt_up", 0) + c.get("corrupt_down", 0)
    if corrupt:
        failures.append(f"{corrupt} corrupt exchanges")
    if c.get("ctl_failed", 0):
        failures.append(f"{c['ctl_failed']} control commands got no reply")
    elapsed = time.monotonic() - t0
    print()
    print(f"soak summary ({elapsed / 60:.1f} min, seed {seed})")
    print(f"  exchanges complete and sha256-checked both ways: {c.get('complete', 0)}"
          f" (normal {c.get('complete_normal', 0)}, half-close {c.get('complete_half_close', 0)},"
          f" slow reader {c.get('complete_slow', 0)}); {c.get('bytes', 0) / 1e9:.2f} GB")
    print(f"  corrupt: {corrupt} (upload {c.get('corrupt_up', 0)}, download {c.get('corrupt_down', 0)})")
    print(f"  cut short (backend flapping, close N, blacklists): {c.get('cut_empty', 0)} closed before any"
          f" byte came back, {c.get('cut', 0)} closed part-way, {c.get('cut_timeout', 0)} timed out;"
          f" connects failed: {c.get('connect_failed', 0)}")
    print(f"  hostile clients: {c.get('client_reset', 0)} resets, {c.get('client_random', 0)} random bytes,"
          f" {c.get('client_abort', 0)} closed at once")
    print(f"  backends: {c.get('backend_refusing', 0)} times refusing, {c.get('backend_blackhole', 0)} times black-holing,"
          f" {c.get('backend_bad_header', 0)} bad headers seen")
    ctl_counts = ", ".join(f"{k[4:]} {v}" for k, v in sorted(c.items()) if k.startswith("ctl_"))
    print(f"  control: {ctl_counts}")
    err_counts = ", ".join(f"{k[7:]} {v}" for k, v in sorted(c.items()) if k.startswith("ctlerr_"))
    print(f"  control commands answered with an error (expected: close or connection of an unused slot): {err_counts or 'none'}")
    print(f"  SIGUSR1 sent: {c.get('usr1', 0)}")
    if 'peak' in locals():
        print(f"  peak: RSS {peak[0]} KiB, {peak[1]} threads, {peak[2]} descriptors")
    for p in PROBLEMS:
        print(f"  ! {p}")
    if interrupted:
        print("soak: interrupted")
        return 130
    if failures:
        for f in failures:
            print(f"FAIL: {f}")
        print(f"soak: work directory kept: {work}")
        return 1
    print("soak: PASS")
    if not args.keep:
        for name in os.listdir(work):
            os.unlink(os.path.join(work, name))
        os.rmdir(work)
    else:
        print(f"soak: work directory: {work}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

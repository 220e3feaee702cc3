#!/usr/bin/env python3
"""Scale figures: as many concurrent pairs as the descriptor limit allows
(Python 3 standard library only).

  scale.py [--nofile N] [--pairs P] NAME=BINARY...

For each balancer in turn, started as
  prlimit --nofile=N:N BINARY -f -r -x SLOTS 127.0.0.1:PORT 127.0.0.1:BACKEND
(SLOTS = P + 10), opens P client connections through it (P defaults to what
N descriptors allow: (N - 20) / 2) to a backend served from this script,
which holds every connection open, checks that a sample of the pairs relays
a byte each way, and reports:

  establish s   from the first connect until the balancer holds every pair
  RSS MB        the balancer's VmRSS with every pair open
  KStack MB     the growth of KernelStack in /proc/meminfo (machine-wide)
  maps          lines of /proc/PID/maps with every pair open
  threads       the balancer's threads with every pair open
  teardown CPU  the balancer's utime+stime from closing every client until it
                is back to idle (descriptors and threads as before the run)
  per pair      teardown CPU / P, and the part spent until every pair's
                descriptors were closed (the rest: idle pair threads exiting)
  RSS after MB  VmRSS once back to idle (and before the run, for comparison)

Every wait is bounded in time; each balancer is stopped by its PID.
"""

import argparse
import multiprocessing
import os
import resource
import selectors
import socket
import subprocess
import sys
import time

import helper

HOST = "127.0.0.1"


def status(pid):
    """VmRSS (KiB) and threads."""
    return helper.proc_status(pid)[:2]


def fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def maps(pid):
    with open(f"/proc/{pid}/maps") as f:
        return sum(1 for _ in f)


def cpu_seconds(pid):
    return helper.cpu_ticks(pid) / helper.HZ


def read_int(path):
    try:
        with open(path) as f:
            return int(f.read().split()[0])
    except OSError:
        return None


class HoldingBackend:
    """Accepts every connection and keeps it open; echoes what it reads.
    Runs in a child process of its own, so that this one and it each hold
    one socket per pair (a descriptor limit of 20,000 then still allows
    9,990 pairs)."""

    def __init__(self):
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind((HOST, 0))
        self.listener.listen(4096)
        self.port = self.listener.getsockname()[1]
        self.accepted = multiprocessing.Value("i", 0)
        self.stop = multiprocessing.Event()
        self.process = multiprocessing.Process(target=self.run, daemon=True)
        self.process.start()
        self.listener.close()

    def count(self):
        return self.accepted.value

    def run(self):
        self.listener.setblocking(False)
        sel = selectors.DefaultSelector()
        sel.register(self.listener, selectors.EVENT_READ)
        conns = 0
        while not self.stop.is_set():
            for key, _ in sel.select(0.2):
                s = key.fileobj
                if s is self.listener:
                    for _ in range(256):
                        try:
                            c, _ = self.listener.accept()
                        except OSError:
                            break
                        c.setblocking(False)
                        sel.register(c, selectors.EVENT_READ)
                        conns += 1
                    self.accepted.value = conns
                    continue
                try:
                    data = s.recv(4096)
                except OSError:
                    data = b""
                if data:
                    try:
                        s.send(data)
                    except OSError:
                        pass
                    continue
                sel.unregister(s)
                s.close()
                conns -= 1
                self.accepted.value = conns

    def close(self):
        self.stop.set()
        self.process.join(timeout=10)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(timeout=10)


def wait_for(cond, seconds, step=0.05):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(step)
    return cond()


def free_port():
    s = socket.socket()
    s.bind((HOST, 0))
    port = s.getsockname()[1]
    s.close()
    return port


def measure(name, binary, nofile, pairs, perf=None):
    backend = HoldingBackend()
    port = free_port()
    cmd = ["prlimit", f"--nofile={nofile}:{nofile}", binary, "-f", "-r", "-x", str(pairs + 10),
           f"{HOST}:{port}", f"{HOST}:{backend.port}"]
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    clients = []
    row = {"name": name}
    try:
        if not wait_for(lambda: probe(port), 10):
            raise SystemExit(f"scale: {name} does not listen on {port}")
        # The probe's pair is gone once the backend has closed it too.
        wait_for(lambda: backend.count() == 0, 10)
        time.sleep(1.0)
        pid = proc.pid
        base_fds = fds(pid)
        base_rss, base_threads = status(pid)
        kstack0 = helper.kernel_stack_kib()
        t0 = time.monotonic()
        failed = 0
        # At most 512 connects ahead of the backend, so no listen queue
        # overflows (a dropped SYN costs a 1 s retransmission).
        deadline = t0 + 300
        while len(clients) + failed < pairs and time.monotonic() < deadline:
            if len(clients) - backend.count() > 512:
                time.sleep(0.001)
                continue
            s = socket.socket()
            s.setblocking(False)
            try:
                s.connect_ex((HOST, port))
            except OSError:
                s.close()
                failed += 1
                continue
            clients.append(s)
        established = wait_for(lambda: backend.count() >= len(clients) and fds(pid) >= base_fds + 2 * len(clients), 120, 0.01)
        row["establish"] = time.monotonic() - t0
        if not established:
            print(f"scale: {name}: only {backend.count()} of {len(clients)} pairs reached the backend", file=sys.stderr)
        time.sleep(2.0)  # let the last pairs' threads settle
        row["pairs"] = backend.count()
        row["rss"], row["threads"] = status(pid)
        row["kstack"] = helper.kernel_stack_kib() - kstack0
        row["maps"] = maps(pid)
        row["fds"] = fds(pid)
        row["rss0"] = base_rss
        row["relayed"] = check_sample(clients, 200)
        recorder = None
        if perf:
            # System-wide: attached by -p, perf misses most of the samples
            # of threads that exit. `perf report --pid PID` picks ours out.
            print(f"scale: {name} is PID {pid}", file=sys.stderr)
            recorder = subprocess.Popen(["perf", "record", "-q", "-g"] + (["-a"] if os.environ.get("PERF_ALL") else ["-p", str(pid)]) + ["-o", f"{perf}.{name}"],
                                        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
            time.sleep(1.0)
        cpu0 = cpu_seconds(pid)
        t1 = time.monotonic()
        for s in clients:
            s.close()
        clients = []
        closed = wait_for(lambda: fds(pid) <= base_fds, 120, 0.02)
        row["closed_cpu"] = cpu_seconds(pid) - cpu0
        idle = closed and wait_for(lambda: status(pid)[1] <= base_threads, 120, 0.02)
        row["teardown_wall"] = time.monotonic() - t1
        row["teardown_cpu"] = cpu_seconds(pid) - cpu0
        if recorder is not None:
            recorder.send_signal(2)
            recorder.wait(timeout=60)
        row["idle"] = idle
        time.sleep(1.0)
        row["rss_after"] = status(pid)[0]
        row["maps_after"] = maps(pid)
        return row
    finally:
        for s in clients:
            s.close()
        helper.stop(proc)
        backend.close()


def probe(port):
    try:
        socket.create_connection((HOST, port), timeout=1).close()
        return True
    except OSError:
        return False


def check_sample(clients, n):
    """How many of n pairs spread over the set relay a byte there and back."""
    ok = 0
    step = max(1, len(clients) // n)
    for s in clients[::step][:n]:
        try:
            s.setblocking(True)
            s.settimeout(5)
            s.sendall(b"x")
            if s.recv(1) == b"x":
                ok += 1
        except OSError:
            pass
    return f"{ok}/{min(n, len(clients[::step]))}"


def main():
    # Both processes raise their descriptor limit; the backend is forked.
    multiprocessing.set_start_method("fork")
    ap = argparse.ArgumentParser(description="concurrent pairs at the descriptor limit")
    ap.add_argument("--nofile", type=int, default=20000, help="the balancers' descriptor limit [20000]")
    ap.add_argument("--pairs", type=int, default=None, help="pairs to open [(nofile - 20) / 2]")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--perf", metavar="FILE", help="record the teardown with perf record -g into FILE.NAME")
    ap.add_argument("contenders", nargs="+", metavar="NAME=BINARY")
    args = ap.parse_args()
    pairs = args.pairs or (args.nofile - 20) // 2
    want = pairs + 200
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < want:
        try:
            # Raising the hard limit needs root (CAP_SYS_RESOURCE).
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, max(want, hard)))
        except (ValueError, OSError):
            raise SystemExit(f"scale: need {want} descriptors here, the hard limit is {hard}")
    print(f"# {pairs} pairs, balancer nofile {args.nofile}; vm.max_map_count "
          f"{read_int('/proc/sys/vm/max_map_count')}, kernel.pid_max {read_int('/proc/sys/kernel/pid_max')}, "
          f"kernel.threads-max {read_int('/proc/sys/kernel/threads-max')}; load {os.getloadavg()[0]:.2f}")
    head = ("name", "pairs", "establish s", "RSS MB", "KStack MB", "maps", "threads",
            "relayed", "teardown CPU s", "per pair µs", "of which closing µs", "teardown wall s", "RSS before/after MB")
    print("\t".join(head))
    for _ in range(args.rounds):
        for spec in args.contenders:
            name, _, binary = spec.partition("=")
            r = measure(name, binary, args.nofile, pairs, args.perf)
            print("\t".join(str(x) for x in (
                r["name"], r["pairs"], f"{r['establish']:.2f}", f"{r['rss'] / 1024:.1f}",
                f"{r['kstack'] / 1024:.1f}", r["maps"], r["threads"], r["relayed"],
                f"{r['teardown_cpu']:.2f}", f"{r['teardown_cpu'] / max(1, r['pairs']) * 1e6:.0f}",
                f"{r['closed_cpu'] / max(1, r['pairs']) * 1e6:.0f}",
                f"{r['teardown_wall']:.1f}" + ("" if r["idle"] else " (not idle)"),
                f"{r['rss0'] / 1024:.1f}/{r['rss_after'] / 1024:.1f}",
            )), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

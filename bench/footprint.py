#!/usr/bin/env python3
"""Footprint figures for README's packaging table (Python 3 standard library).

  footprint.py size DESTDIR...
      installed size of each tree, counted as dpkg counts Installed-Size:
      every regular file and symbolic link rounded up to whole KiB, 1 KiB for
      anything else (directories excluded, since distros own most of them)
  footprint.py start [-n REPS] NAME=BINARY...
      for each balancer: RSS (KiB) once it listens, RSS after its first
      relayed reply, and the median milliseconds from exec to that first
      relayed reply, over REPS starts (default 20). Each runs as
      `BINARY -f 127.0.0.1:PORT 127.0.0.1:BACKEND` in front of a backend
      served from this script.

Every wait is bounded in time; each balancer started here is stopped by its
own PID.
"""

import os
import socket
import statistics
import subprocess
import sys
import threading
import time

import helper

REPLY = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"


def installed_kib(root):
    """dpkg's Installed-Size rule over the files under root."""
    total = 0
    for dirpath, dirnames, filenames in os.walk(root):
        for name in filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
            st = os.lstat(os.path.join(dirpath, name))
            total += max(1, -(-st.st_size // 1024)) if st.st_size else 1
    return total


def serve_backend(listener):
    """Answers every connection with REPLY (after reading the request)."""
    while True:
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        with conn:
            conn.settimeout(2)
            try:
                conn.recv(4096)
                conn.sendall(REPLY)
            except OSError:
                pass


def rss_kib(pid):
    return helper.proc_status(pid)[0]


def listening(port):
    """Whether something listens on TCP 127.0.0.1:port (from /proc/net/tcp)."""
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            if fields[1].endswith(f":{port:04X}") and fields[3] == "0A":
                return True
    return False


def one_start(binary, backend_port):
    """(RSS after the first reply, ms to the first reply) of one start."""
    (port,) = helper.free_port_list(1)
    cmd = [binary, "-f", f"127.0.0.1:{port}", f"127.0.0.1:{backend_port}"]
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = t0 + 10
        first_ms = None
        while time.monotonic() < deadline and proc.poll() is None:
            if helper.first_reply(port):
                first_ms = (time.monotonic() - t0) * 1000
                break
            time.sleep(0.0005)
        if first_ms is None:
            raise SystemExit(f"{binary}: no relayed reply within 10 s")
        return rss_kib(proc.pid), first_ms
    finally:
        helper.stop(proc)


def rss_at_listen(binary, backend_port):
    """RSS (KiB) of a balancer that listens but has relayed nothing."""
    (port,) = helper.free_port_list(1)
    cmd = [binary, "-f", f"127.0.0.1:{port}", f"127.0.0.1:{backend_port}"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while not listening(port):
            if time.monotonic() > deadline or proc.poll() is not None:
                raise SystemExit(f"{binary}: not listening within 10 s")
            time.sleep(0.001)
        return rss_kib(proc.pid)
    finally:
        helper.stop(proc)



def main(argv):
    if len(argv) >= 3 and argv[1] == "size":
        for root in argv[2:]:
            print(f"{root}\t{installed_kib(root)} KiB")
        return 0
    if len(argv) >= 3 and argv[1] == "start":
        args = argv[2:]
        reps = 20
        if args[:1] == ["-n"] and len(args) > 2:
            reps, args = int(args[1]), args[2:]
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(128)
        threading.Thread(target=serve_backend, args=(listener,), daemon=True).start()
        backend_port = listener.getsockname()[1]
        print("name\tRSS listening KiB\tRSS after first reply KiB\tms to first reply (median)")
        for spec in args:
            name, _, binary = spec.partition("=")
            starts = [one_start(binary, backend_port) for _ in range(reps)]
            rss = rss_at_listen(binary, backend_port)
            after = statistics.median(s[0] for s in starts)
            ms = statistics.median(s[1] for s in starts)
            print(f"{name}\t{rss}\t{after:.0f}\t{ms:.2f}")
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))

//! pen at the limits of its host: out of descriptors (RLIMIT_NOFILE lowered
//! on the running process with prlimit(1)) and out of threads. It must not
//! spin, must keep serving the pairs it has, must blame no server for its
//! own shortage, and must say each cause at most about once a second.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use common::*;

/// Sets pen's descriptor limit to `n` (the soft limit: raising a hard
/// limit again needs a capability a container may lack).
fn limit_descriptors(pen: &Pen, n: usize) {
    let out = run(
        "prlimit",
        &[&format!("--pid={}", pen.pid()), &format!("--nofile={n}:")],
    );
    assert!(out.status.success(), "prlimit: {out:?}");
}

/// The lowest descriptor number pen has free: with the limit there, pen
/// can open nothing (descriptors it has above the limit stay open).
fn lowest_free_fd(pen: &Pen) -> usize {
    let open: Vec<usize> = std::fs::read_dir(format!("/proc/{}/fd", pen.pid()))
        .expect("read pen's /proc fd directory")
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    (0..).find(|n| !open.contains(n)).expect("a free number")
}

/// CPU time (user + system) pen has used, in clock ticks (1/100 s).
fn cpu_ticks(pen: &Pen) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", pen.pid())).expect("read stat");
    // Fields after the command name, which is in parentheses: state is the
    // first; utime and stime are fields 14 and 15 of the whole line.
    let rest = &stat[stat.rfind(')').expect("a command name") + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime")
}

/// Sends `data` through `stream` while reading the echo back; the echo.
fn echo_through(stream: &TcpStream, data: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut writer = stream.try_clone()?;
    let sent = data.to_vec();
    let sender = thread::spawn(move || writer.write_all(&sent));
    let mut got = Vec::with_capacity(data.len());
    let mut reader = stream;
    let mut buf = vec![0u8; 65536];
    while got.len() < data.len() {
        match reader.read(&mut buf)? {
            0 => break,
            n => got.extend_from_slice(&buf[..n]),
        }
    }
    sender.join().expect("sender thread")?;
    Ok(got)
}

fn connect(port: u16) -> TcpStream {
    let c = TcpStream::connect(local(port)).expect("connect to pen");
    c.set_read_timeout(Some(DEADLINE)).expect("read timeout");
    c
}

fn lines_with(text: &str, needle: &str) -> usize {
    text.lines().filter(|l| l.contains(needle)).count()
}

#[test]
fn at_the_descriptor_limit_pen_waits_keeps_its_pairs_and_blames_no_server() {
    let b = Backend::start("S0", Behaviour::Echo);
    let pen = Pen::serve(&[], &[b.spec()]);
    // A pair opened before the limit, so far carrying only small messages
    // (its splice pipes are made when bulk data first flows).
    let open = connect(pen.port);
    assert_eq!(echo_through(&open, b"hello").unwrap(), b"hello");

    // Not one descriptor to spare: accept fails, clients wait in the queue.
    let full = lowest_free_fd(&pen);
    limit_descriptors(&pen, full);
    let waiting: Vec<TcpStream> = (0..5).map(|_| connect(pen.port)).collect();
    let before = cpu_ticks(&pen);
    let start = Instant::now();
    // The span measured is the scenario under test, not synchronisation.
    thread::sleep(Duration::from_secs(2));
    let used = cpu_ticks(&pen) - before;
    assert!(
        used < 20,
        "pen used {used} ticks of CPU in {:?} at the limit",
        start.elapsed()
    );
    let paused = lines_with(&pen.stderr(), "pausing");
    assert!((1..=4).contains(&paused), "{paused}: {}", pen.stderr());

    // The open pair still carries bulk data, though no pipe can be made.
    let data = random_bytes(17, 200 * 1024);
    let echoed = echo_through(&open, &data).expect("transfer on the open pair");
    assert!(
        echoed == data,
        "{} of {} bytes echoed",
        echoed.len(),
        data.len()
    );

    // One descriptor to spare: each waiting client is accepted, and its
    // server connection fails for want of a descriptor. Not the server's
    // fault: the client is refused, the server is not blacklisted.
    limit_descriptors(&pen, full + 1);
    for mut c in waiting {
        let mut buf = [0u8; 16];
        assert!(
            matches!(c.read(&mut buf), Ok(0) | Err(_)),
            "a waiting client was served with no descriptor for its server"
        );
    }
    let err = pen.stderr();
    assert!(!err.contains("blacklisting"), "{err}");
    assert!(lines_with(&err, "client refused") >= 1, "{err}");

    // Descriptors free again: the next client is served at once.
    limit_descriptors(&pen, 1024);
    let c = connect(pen.port);
    assert_eq!(echo_through(&c, b"again").unwrap(), b"again");
    c.shutdown(Shutdown::Write).unwrap();
}

//! The data path: integrity under concurrency, half-close, Unix and IPv6
//! sockets, the -x cap, and no threads or descriptors left behind.

mod common;
use common::*;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::thread;
use std::time::Duration;

/// An echo backend and a pen (with `extra` options) in front of it.
fn echo_pen(extra: &[&str]) -> (Backend, Pen) {
    let b = Backend::start("E", Behaviour::Echo);
    let pen = Pen::serve(extra, &[b.spec()]);
    (b, pen)
}

/// Sends `data` and reads the echo concurrently; returns what came back.
fn echo_through(mut s: TcpStream, data: &[u8]) -> Vec<u8> {
    let mut writer = s.try_clone().unwrap();
    let out = data.to_vec();
    let w = thread::spawn(move || {
        writer.write_all(&out).unwrap();
        writer.shutdown(Shutdown::Write).unwrap();
    });
    let mut got = Vec::with_capacity(data.len());
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    s.read_to_end(&mut got).unwrap();
    w.join().unwrap();
    got
}

#[test]
fn fifty_clients_push_and_pull_a_megabyte_each_intact() {
    let (_b, pen) = echo_pen(&[]);
    let handles: Vec<_> = (0..50u64)
        .map(|i| {
            let port = pen.port;
            thread::spawn(move || {
                let data = random_bytes(i + 1, 1 << 20);
                let src = format!("127.0.{}.{}", 1 + i / 200, 1 + i % 200);
                let s = connect_from(&src, local(port)).unwrap();
                let got = echo_through(s, &data);
                assert_eq!(got.len(), data.len(), "client {i}: length");
                assert!(got == data, "client {i}: bytes differ");
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
}

#[test]
fn half_close_keeps_the_reply_flowing() {
    // The client sends 100000 bytes and shuts down its write side; every
    // echoed byte must still arrive, then EOF (pen 0.34.1 loses it,
    // doc/pen-0.34.1.md, quirk Q2).
    let (_b, pen) = echo_pen(&[]);
    for round in 0..3u64 {
        let data = random_bytes(100 + round, 100_000);
        let s = connect_from("127.0.0.1", local(pen.port)).unwrap();
        let got = echo_through(s, &data);
        assert!(
            got == data,
            "round {round}: {} of {} bytes",
            got.len(),
            data.len()
        );
    }
}

#[test]
fn server_half_close_passes_eof_to_the_client() {
    // The backend sends its name and closes; the client still sends later
    // and the pair ends cleanly.
    let b = Backend::start("N", Behaviour::Name);
    let pen = Pen::serve(&[], &[b.spec()]);
    let mut s = connect_from("127.0.0.1", local(pen.port)).unwrap();
    let mut got = String::new();
    s.read_to_string(&mut got).unwrap();
    assert_eq!(got, "N");
}

#[test]
fn unix_socket_listener() {
    let b = Backend::start("U", Behaviour::Name);
    let dir = TempDir::new("unix");
    let path = dir.join("pen.sock");
    let pen = Pen::spawn(&[path.to_str().unwrap(), &b.spec()]);
    let mut s = wait_for(DEADLINE, "pen to listen on its Unix socket", || {
        std::os::unix::net::UnixStream::connect(&path).ok()
    });
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    let mut reply = String::new();
    s.read_to_string(&mut reply).unwrap();
    drop(pen);
    assert_eq!(reply, "U");
}

#[test]
fn ipv6_listener_and_backend() {
    if !ipv6_loopback() {
        eprintln!("skipped: ::1 is not available");
        return;
    }
    let l = std::net::TcpListener::bind("[::1]:0").unwrap();
    let bport = l.local_addr().unwrap().port();
    let _b = Backend::start_on(l, "V6", Behaviour::Name);
    let port = free_port();
    // pen's syntax: listen without brackets, backends with brackets.
    let _pen = Pen::start(port, &[&format!("::1:{port}"), &format!("[::1]:{bport}")]);
    let mut s = TcpStream::connect(("::1", port)).unwrap();
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    let mut got = String::new();
    s.read_to_string(&mut got).unwrap();
    assert_eq!(got, "V6");
}

#[test]
fn connection_cap_holds_new_clients_in_the_backlog() {
    // -x 2: a third client's data only arrives when a slot frees.
    let b = Backend::start("H", Behaviour::NameAndHold);
    let pen = Pen::serve(&["-x", "2"], &[b.spec()]);
    let mut held: Vec<TcpStream> = (0..2)
        .map(|_| ask_and_hold("127.0.0.1", pen.port, 1).0)
        .collect();
    let mut third = connect_from("127.0.0.1", local(pen.port)).unwrap();
    third
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut n = [0u8; 1];
    assert!(
        third.read_exact(&mut n).is_err(),
        "third client served beyond -x 2"
    );
    held.pop();
    third
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    third.read_exact(&mut n).unwrap();
    assert_eq!(&n, b"H");
}

#[test]
fn no_thread_or_descriptor_stays_behind() {
    let b = Backend::start("T", Behaviour::Name);
    let pen = Pen::serve(&[], &[b.spec()]);
    let idle_threads = pen.threads();
    let idle_fds = pen.fds();
    for i in 0..2000u32 {
        let src = format!("127.1.{}.{}", i / 250, 1 + i % 250);
        let mut s = connect_from(&src, local(pen.port)).unwrap();
        let mut got = String::new();
        s.read_to_string(&mut got).unwrap();
        assert_eq!(got, "T");
    }
    // Parked pair threads exit after their idle period (5 s).
    poll_until(Duration::from_secs(20), || {
        pen.threads() == idle_threads && pen.fds() == idle_fds
    });
    assert_eq!(pen.threads(), idle_threads, "threads");
    assert_eq!(pen.fds(), idle_fds, "descriptors");
}

#[test]
fn sigterm_exits_cleanly_and_frees_the_port() {
    let b = Backend::start("Q", Behaviour::Name);
    let port = free_port();
    let mut pen = Pen::start(port, &[&format!("127.0.0.1:{port}"), &b.spec()]);
    pen.signal("TERM");
    assert_eq!(pen.wait_exit(DEADLINE), Some(0));
    assert!(!is_listening(port));
    let mut pen = Pen::start(port, &[&format!("127.0.0.1:{port}"), &b.spec()]);
    pen.signal("INT");
    assert_eq!(pen.wait_exit(DEADLINE), Some(0));
}

//! Socket options and timeouts as a backend or client can observe them:
//! source, transparent, idle_timeout, tcp_fastclose, the listen backlog.

mod common;
use common::*;
use std::io::{Read, Write};
use std::net::Shutdown;
use std::time::{Duration, Instant};

#[test]
fn source_binds_upstream_connections() {
    let b = Backend::start("P", Behaviour::Peer);
    let pen = Pen::serve(&["-o", "source 127.0.0.77"], &[b.spec()]);
    assert_eq!(ask("127.0.0.1", pen.port), "127.0.0.77");
    assert_eq!(b.wait_visits(1)[0].peer.to_string(), "127.0.0.77");
}

#[test]
fn transparent_uses_the_client_address() {
    let b = Backend::start("P", Behaviour::Peer);
    let port = free_port();
    let mut pen = Pen::spawn(&["-o", "transparent", &format!("127.0.0.1:{port}"), &b.spec()]);
    // Allowed as root with CAP_NET_ADMIN; otherwise pen refuses to start
    // with a clear message.
    if let Err(code) = pen.wait_ready(|| is_listening(port)) {
        assert_eq!(code, Some(1));
        assert!(pen.stderr().contains("IP_TRANSPARENT"), "{}", pen.stderr());
        return;
    }
    assert_eq!(ask("127.0.0.42", port), "127.0.0.42");
}

#[test]
fn idle_timeout_closes_an_idle_pair() {
    let b = Backend::start("I", Behaviour::NameAndHold);
    let port = free_port();
    let _pen = Pen::start(
        port,
        &[
            "-o",
            "idle_timeout 1",
            &format!("127.0.0.1:{port}"),
            &b.spec(),
        ],
    );
    let (mut s, _) = ask_and_hold("127.0.0.1", port, 1);
    // The client stays idle: the wait is the behaviour under test.
    let start = Instant::now();
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    let mut rest = Vec::new();
    let r = s.read_to_end(&mut rest);
    assert!(r.is_ok() && rest.is_empty(), "{r:?}");
    assert!(
        start.elapsed() < Duration::from_secs(14),
        "pair was not closed"
    );
}

#[test]
fn fastclose_closes_the_other_side() {
    // Server sends its name and closes; the client never closes. With
    // "tcp_fastclose up" the client gets EOF and the pair is gone; the
    // client's later writes fail or are not delivered.
    let b = Backend::start("F", Behaviour::Name);
    let port = free_port();
    let _pen = Pen::start(
        port,
        &[
            "-o",
            "tcp_fastclose up",
            &format!("127.0.0.1:{port}"),
            &b.spec(),
        ],
    );
    let mut s = connect_from("127.0.0.1", local(port)).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    assert_eq!(out, "F");
    // After fast close the whole pair is closed: writing eventually fails
    // (the first write after the close draws a reset, a later one fails).
    let failed = poll_until(DEADLINE, || s.write_all(b"more").is_err());
    assert!(failed, "client side still open after the server's EOF");
}

/// What a client gets after its request and EOF, through pen with `extra`
/// options, from a backend that answers late (after the client's EOF).
fn reply_after_eof(extra: &[&str]) -> String {
    let b = Backend::start("L", Behaviour::LateReply);
    let pen = Pen::serve(extra, &[b.spec()]);
    let mut s = connect_from("127.0.0.1", local(pen.port)).unwrap();
    s.write_all(b"request").unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

#[test]
fn fastclose_down_closes_at_the_client_eof() {
    assert_eq!(reply_after_eof(&[]), "late");
    assert_eq!(reply_after_eof(&["-o", "tcp_fastclose up"]), "late");
    assert_eq!(reply_after_eof(&["-o", "tcp_fastclose down"]), "");
    assert_eq!(reply_after_eof(&["-o", "tcp_fastclose both"]), "");
}

#[test]
fn listen_backlog_follows_q() {
    let Ok(out) = std::process::Command::new("ss").arg("-V").output() else {
        eprintln!("skipped: ss not installed");
        return;
    };
    if !out.status.success() {
        eprintln!("skipped: ss not usable");
        return;
    }
    let b = Backend::start("Q", Behaviour::Name);
    let port = free_port();
    let _pen = Pen::start(port, &["-q", "77", &format!("127.0.0.1:{port}"), &b.spec()]);
    let out = run("ss", &["-ltnH", &format!("sport = :{port}")]);
    let text = String::from_utf8_lossy(&out.stdout);
    let cols: Vec<&str> = text.split_whitespace().collect();
    assert_eq!(cols.get(2), Some(&"77"), "{text}");
}

//! Socket options and timeouts as a backend or client can observe them:
//! source, transparent, idle_timeout, tcp_fastclose, the listen backlog.

mod common;
use common::*;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// A backend that reports each connection's peer address and then echoes.
fn peer_reporting_backend() -> (u16, mpsc::Receiver<String>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for c in l.incoming().take(20) {
            let Ok(mut c) = c else { continue };
            let peer = c.peer_addr().unwrap().ip().to_string();
            let _ = tx.send(peer.clone());
            thread::spawn(move || {
                let _ = c.write_all(peer.as_bytes());
            });
        }
    });
    (port, rx)
}

#[test]
fn source_binds_upstream_connections() {
    let (bport, rx) = peer_reporting_backend();
    let port = free_port();
    let _pen = Pen::start(
        port,
        &[
            "-o",
            "source 127.0.0.77",
            &format!("127.0.0.1:{port}"),
            &format!("127.0.0.1:{bport}"),
        ],
    );
    assert_eq!(ask("127.0.0.1", port), "127.0.0.77");
    assert_eq!(
        rx.recv_timeout(Duration::from_secs(5)).unwrap(),
        "127.0.0.77"
    );
}

#[test]
fn transparent_uses_the_client_address() {
    let (bport, _rx) = peer_reporting_backend();
    let port = free_port();
    let pen = Pen::spawn(&[
        "-o",
        "transparent",
        &format!("127.0.0.1:{port}"),
        &format!("127.0.0.1:{bport}"),
    ]);
    // Allowed as root with CAP_NET_ADMIN; otherwise pen refuses to start
    // with a clear message.
    let mut pen = pen;
    let mut exited = None;
    wait_until("pen to listen or refuse", || {
        exited = pen.wait_exit(Duration::from_millis(10));
        exited.is_some() || is_listening(port)
    });
    if let Some(code) = exited {
        assert_eq!(code, 1);
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
    let mut s = connect_from("127.0.0.1", local(port)).unwrap();
    let mut n = [0u8; 1];
    s.read_exact(&mut n).unwrap();
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
    // After fast close the whole pair is closed: writing eventually fails.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut failed = false;
    while Instant::now() < deadline {
        if s.write_all(b"more").is_err() {
            failed = true;
            break;
        }
        thread::sleep(Duration::from_millis(50));
    }
    assert!(failed, "client side still open after the server's EOF");
}

/// A backend that waits for the client's EOF, then answers "late".
fn late_answering_backend() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    thread::spawn(move || {
        for c in l.incoming().take(10) {
            let Ok(mut c) = c else { continue };
            thread::spawn(move || {
                let mut sink = Vec::new();
                let _ = c.read_to_end(&mut sink);
                thread::sleep(Duration::from_millis(200));
                let _ = c.write_all(b"late");
            });
        }
    });
    port
}

fn reply_after_eof(extra: &[&str]) -> String {
    let bport = late_answering_backend();
    let port = free_port();
    let mut args: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
    args.push(format!("127.0.0.1:{port}"));
    args.push(format!("127.0.0.1:{bport}"));
    let args: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
    let _pen = Pen::start(port, &args);
    let mut s = connect_from("127.0.0.1", local(port)).unwrap();
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
    let out = std::process::Command::new("ss")
        .args(["-ltnH", &format!("sport = :{port}")])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let cols: Vec<&str> = text.split_whitespace().collect();
    assert_eq!(cols.get(2), Some(&"77"), "{text}");
}

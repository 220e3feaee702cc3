//! Graceful drain (SIGQUIT, `drain [SECONDS]`, `drain_timeout`): the
//! listeners close at once, live pairs and UDP sessions run to their end,
//! then pen exits 0 and removes its pid file. TERM keeps pen's immediate
//! exit.

mod common;
use common::*;

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

/// A pen with a control port and a pid file in front of `backends`.
struct Draining {
    pen: Pen,
    cport: u16,
    pid_file: std::path::PathBuf,
    _dir: TempDir,
}

fn start(extra: &[&str], backends: &[String]) -> Draining {
    let dir = TempDir::new("drain");
    let pid_file = dir.join("pen.pid");
    let cport = free_port();
    let c = format!("127.0.0.1:{cport}");
    let mut args = vec!["-u", "root", "-C", &c, "-p", pid_file.to_str().unwrap()];
    args.extend_from_slice(extra);
    let pen = Pen::serve(&args, backends);
    wait_for_port(cport);
    wait_until(DEADLINE, "the pid file", || pid_file.exists());
    Draining {
        pen,
        cport,
        pid_file,
        _dir: dir,
    }
}

/// A client with a live pair: one byte sent and echoed.
fn live_pair(port: u16) -> TcpStream {
    let mut s = connect_from("127.0.0.1", local(port)).expect("connect to pen");
    s.write_all(b"!").expect("send");
    let mut one = [0u8; 1];
    s.read_exact(&mut one).expect("the echo");
    s
}

fn refused(port: u16) -> bool {
    matches!(TcpStream::connect(local(port)),
        Err(e) if e.kind() == ErrorKind::ConnectionRefused)
}

#[test]
fn sigquit_closes_the_listener_and_every_live_pair_completes() {
    let b = Backend::farm(2, Behaviour::Echo);
    let mut d = start(&[], &specs(&b));
    let port = d.pen.port;
    let mut pairs: Vec<TcpStream> = (0..20).map(|_| live_pair(port)).collect();
    let quit = Instant::now();
    d.pen.signal("QUIT");
    wait_until(DEADLINE, "the listener to close", || refused(port));
    let closed = quit.elapsed();
    assert!(closed < Duration::from_millis(100), "took {closed:?}");
    // The control port answers and says so; the pairs run on.
    assert!(ctl(d.cport, "mode").ends_with(" draining\n"));
    let reopen = ctl(d.cport, &format!("listen 127.0.0.1:{}", free_port()));
    assert!(
        reopen.starts_with("error: listen: pen is draining"),
        "{reopen}"
    );
    assert!(ctl(d.cport, "metrics").contains("\npen_draining 1\n"));
    let last = pairs.pop().expect("a pair");
    for (i, mut s) in pairs.into_iter().enumerate() {
        let data = random_bytes(i as u64, 64 * 1024);
        let reader = s.try_clone().expect("clone");
        let echo = std::thread::spawn(move || {
            let mut reader = reader;
            let mut back = Vec::new();
            reader.read_to_end(&mut back).expect("read the echo");
            back
        });
        s.write_all(&data).expect("send");
        s.shutdown(Shutdown::Write).expect("half-close");
        assert_eq!(echo.join().expect("reader"), data, "pair {i}");
    }
    // One pair is left: pen still runs, and answers.
    assert!(ctl(d.cport, "mode").ends_with(" draining\n"));
    assert!(d.pid_file.exists());
    drop(last);
    assert_eq!(d.pen.wait_exit(DEADLINE), Some(0));
    assert!(!d.pid_file.exists(), "pid file left behind");
    assert!(d.pen.stderr().contains("drained"), "{}", d.pen.stderr());
}

#[test]
fn drain_command_exits_at_its_timeout() {
    let b = Backend::start("H", Behaviour::NameAndHold);
    let mut d = start(&["-o", "drain_timeout 60"], &[b.spec()]);
    let (held, name) = ask_and_hold("127.0.0.1", d.pen.port, 1);
    assert_eq!(name, "H");
    let start = Instant::now();
    let reply = ctl(d.cport, "drain 1");
    assert!(reply.starts_with("draining"), "{reply}");
    wait_until(DEADLINE, "the listener to close", || refused(d.pen.port));
    assert_eq!(d.pen.wait_exit(DEADLINE), Some(0));
    assert!(start.elapsed() >= Duration::from_secs(1));
    assert!(!d.pid_file.exists());
    assert!(
        d.pen.stderr().contains("drain timeout"),
        "{}",
        d.pen.stderr()
    );
    drop(held);
}

#[test]
fn drain_timeout_is_a_setting_and_term_still_exits_at_once() {
    let b = Backend::start("H", Behaviour::NameAndHold);
    let mut d = start(&["-o", "drain_timeout 60"], &[b.spec()]);
    assert_eq!(ctl(d.cport, "drain_timeout"), "60\n");
    // write saves it only when changed from 30.
    let dir = TempDir::new("drain-write");
    let out = dir.join("w.cfg");
    ctl(d.cport, &format!("write {}", out.display()));
    let text = std::fs::read_to_string(&out).expect("written");
    assert!(text.contains("\ndrain_timeout 60\n"), "{text}");
    let (_held, _) = ask_and_hold("127.0.0.1", d.pen.port, 1);
    d.pen.signal("QUIT");
    wait_until(DEADLINE, "the listener to close", || refused(d.pen.port));
    d.pen.signal("TERM");
    assert_eq!(d.pen.wait_exit(DEADLINE), Some(0));
    // drain is for the control port: refused in -o.
    let (code, _, err) = run_pen(&["-f", "-o", "drain", "8080", "127.0.0.1:80"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("drain: only on the control port"), "{err}");
}

#[test]
fn udp_drain_keeps_sessions_and_drops_new_clients() {
    let b = UdpBackend::start("U");
    let dir = TempDir::new("udp-drain");
    let pid_file = dir.join("pen.pid");
    let cport = free_port();
    let c = format!("127.0.0.1:{cport}");
    let mut pen = Pen::serve_udp(
        &[
            "-u",
            "root",
            "-C",
            &c,
            "-p",
            pid_file.to_str().unwrap(),
            "-o",
            "idle_timeout 1",
        ],
        &[b.spec()],
    );
    wait_for_port(cport);
    let client = UdpSocket::bind("127.0.0.1:0").expect("bind");
    client
        .set_read_timeout(Some(DEADLINE))
        .expect("read timeout");
    let ask = |s: &UdpSocket| {
        s.send_to(b"hello", local(pen.port)).expect("send");
        let mut buf = [0u8; 64];
        s.recv(&mut buf).map(|n| buf[..n].to_vec())
    };
    assert!(ask(&client).is_ok());
    pen.signal("QUIT");
    wait_until(DEADLINE, "the drain", || {
        ctl(cport, "mode").ends_with(" draining\n")
    });
    // The session goes on; a new client gets nothing and is counted.
    assert!(ask(&client).is_ok());
    let newcomer = UdpSocket::bind("127.0.0.1:0").expect("bind");
    newcomer.send_to(b"hi", local(pen.port)).expect("send");
    wait_until(DEADLINE, "the dropped datagram", || {
        ctl(cport, "metrics").contains("\npen_udp_dropped_datagrams_total 1\n")
    });
    // Idle for a second, the session ends, and so does pen.
    assert_eq!(pen.wait_exit(DEADLINE), Some(0));
    assert!(!pid_file.exists());
}

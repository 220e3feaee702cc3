//! `idlers N` (man/penctl.1): idle upstream connections made before any
//! client arrives, handed to clients, replaced, and dropped.

mod common;
use common::*;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// Clones of a backend's connections, with whether each carried a byte.
type Unused = Arc<Mutex<Vec<(TcpStream, Arc<AtomicBool>)>>>;

/// A backend that numbers its connections in accept order, optionally
/// sends a banner first, and answers each line `L` with `NAME#ID|L`, so a
/// client can tell whether its connection existed before it connected.
struct Numbered {
    port: u16,
    accepted: Arc<AtomicUsize>,
    open: Arc<AtomicUsize>,
    /// Clones of the connections that got no byte yet, to close on demand.
    unused: Unused,
    stop: Arc<AtomicBool>,
}

impl Numbered {
    fn start(name: &str, banner: Option<&'static str>) -> Numbered {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a backend");
        let port = listener.local_addr().expect("address").port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let open = Arc::new(AtomicUsize::new(0));
        let unused: Unused = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (acc, op, un, st) = (
            Arc::clone(&accepted),
            Arc::clone(&open),
            Arc::clone(&unused),
            Arc::clone(&stop),
        );
        let name = name.to_string();
        thread::spawn(move || {
            for c in listener.incoming() {
                if st.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(mut c) = c else { continue };
                let used = Arc::new(AtomicBool::new(false));
                if let Ok(clone) = c.try_clone() {
                    let mut list = un.lock().unwrap();
                    list.retain(|(_, u)| !u.load(Ordering::SeqCst));
                    list.push((clone, Arc::clone(&used)));
                }
                // Counted once `close_unused` can reach it.
                op.fetch_add(1, Ordering::SeqCst);
                let id = acc.fetch_add(1, Ordering::SeqCst);
                let (name, op) = (name.clone(), Arc::clone(&op));
                thread::spawn(move || {
                    let _ = c.set_read_timeout(Some(Duration::from_secs(30)));
                    if let Some(b) = banner {
                        let _ = c.write_all(b.as_bytes());
                    }
                    let mut reader = BufReader::new(c.try_clone().expect("clone"));
                    let mut line = String::new();
                    while matches!(reader.read_line(&mut line), Ok(n) if n > 0) {
                        used.store(true, Ordering::SeqCst);
                        if c.write_all(format!("{name}#{id}|{line}").as_bytes())
                            .is_err()
                        {
                            break;
                        }
                        line.clear();
                    }
                    // The clone kept for `close_unused` would hold it open.
                    let _ = c.shutdown(Shutdown::Both);
                    op.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        Numbered {
            port,
            accepted,
            open,
            unused,
            stop,
        }
    }

    fn spec(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    fn open(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }

    /// Closes every connection that has not carried a byte yet: the idle
    /// ones pen holds. How many.
    fn close_unused(&self) -> usize {
        let mut list = self.unused.lock().unwrap();
        let mut closed = 0;
        // Only the ones pen still holds idle.
        for (c, used) in list.drain(..) {
            if !used.load(Ordering::SeqCst) && c.shutdown(Shutdown::Both).is_ok() {
                closed += 1;
            }
        }
        closed
    }
}

impl Drop for Numbered {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(local(self.port));
    }
}

/// pen in front of `backends` with a control port and `-o` `commands`;
/// (pen, control port).
fn pen(backends: &[&Numbered], commands: &[&str]) -> (Pen, u16) {
    let control = free_port();
    let c = format!("127.0.0.1:{control}");
    let mut args = vec!["-r", "-u", "root", "-C", &c];
    for cmd in commands {
        args.extend(["-o", cmd]);
    }
    let specs: Vec<String> = backends.iter().map(|b| b.spec()).collect();
    (Pen::serve(&args, &specs), control)
}

/// A client's request `line` through pen: (banner read first, backend
/// name, connection id). Panics on a wrong or missing reply.
fn request(port: u16, line: &str, banner_len: usize) -> (String, String, usize) {
    let mut s = TcpStream::connect(local(port)).expect("connect to pen");
    s.set_read_timeout(Some(DEADLINE)).expect("timeout");
    let mut banner = vec![0u8; banner_len];
    s.read_exact(&mut banner).expect("read the banner");
    s.write_all(format!("{line}\n").as_bytes()).expect("send");
    let mut reply = String::new();
    if let Err(e) = BufReader::new(&s).read_line(&mut reply) {
        panic!("no reply to {line:?}: {e}");
    }
    let (head, echoed) = reply
        .split_once('|')
        .unwrap_or_else(|| panic!("bad reply {reply:?} to {line:?}"));
    assert_eq!(echoed, format!("{line}\n"), "reply {reply:?}");
    let (name, id) = head.split_once('#').expect("NAME#ID");
    (
        String::from_utf8_lossy(&banner).into_owned(),
        name.to_string(),
        id.parse().expect("a connection number"),
    )
}

fn wait_idlers(control: u16, reply: &str) {
    wait_until(DEADLINE, reply, || {
        ctl(control, "idlers") == format!("{reply}\n")
    });
}

#[test]
fn idle_connections_exist_before_clients_and_are_handed_over() {
    let s0 = Numbered::start("S0", None);
    let s1 = Numbered::start("S1", None);
    let (pen, control) = pen(&[&s0, &s1], &["idlers 4"]);
    // Spread over both servers before any client came.
    wait_until(DEADLINE, "two idle connections on each server", || {
        s0.accepted() == 2 && s1.accepted() == 2
    });
    wait_idlers(control, "Idlers: 4/4");
    let before = [s0.accepted(), s1.accepted()];
    let (_, name, id) = request(pen.port, "first", 0);
    let index = usize::from(name == "S1");
    assert!(
        id < before[index],
        "connection {id} of {name} was made after the client came ({before:?})"
    );
    // Then replaced in the background.
    wait_until(DEADLINE, "the idle connection replaced", || {
        s0.accepted() + s1.accepted() == 5
    });
    wait_idlers(control, "Idlers: 4/4");
    // `write` keeps the setting.
    let dir = TempDir::new("idlers");
    let file = dir.path().join("pen.cfg");
    assert_eq!(ctl(control, &format!("write {}", file.display())), "");
    let saved = std::fs::read_to_string(&file).expect("written");
    assert!(saved.contains("\nidlers 4\n"), "{saved}");

    // `idlers 0` closes them all.
    assert!(ctl(control, "idlers 0").ends_with("/0\n"));
    wait_idlers(control, "Idlers: 0/0");
    wait_until(DEADLINE, "the servers to see the closes", || {
        s0.open() + s1.open() == 0
    });
    assert_eq!(ctl(control, &format!("write {}", file.display())), "");
    let saved = std::fs::read_to_string(&file).expect("written");
    assert!(!saved.contains("\nidlers"), "{saved}");
}

#[test]
fn closed_idle_connections_are_never_handed_out_and_are_replaced() {
    let s0 = Numbered::start("S0", None);
    let s1 = Numbered::start("S1", None);
    let (pen, control) = pen(&[&s0, &s1], &["idlers 4"]);
    wait_idlers(control, "Idlers: 4/4");
    wait_until(DEADLINE, "4 connections", || {
        s0.accepted() + s1.accepted() == 4
    });
    // Every connection that carried no byte: pen's 4 idle ones, and on a
    // busy machine now and then one more that pen made and closed again
    // (seen twice under load: 5 were still there to close).
    let closed = s0.close_unused() + s1.close_unused();
    assert!(closed >= 4, "{closed} idle connections closed");
    // Clients right away, before the maintainer had a look: every one gets
    // a live connection and its answer.
    for i in 0..20 {
        request(pen.port, &format!("c{i}"), 0);
    }
    wait_idlers(control, "Idlers: 4/4");
    wait_until(DEADLINE, "the closed ones gone", || {
        s0.open() + s1.open() == 4
    });
    let before = s0.accepted() + s1.accepted();
    let (_, _, id) = request(pen.port, "after", 0);
    assert!(id < before);
}

#[test]
fn a_banner_sent_while_idle_reaches_the_client() {
    const BANNER: &str = "220 ready\r\n";
    let s0 = Numbered::start("S0", Some(BANNER));
    let (pen, control) = pen(&[&s0], &["idlers 2"]);
    wait_idlers(control, "Idlers: 2/2");
    // pen's connect completes before the server's accept() returns: wait
    // until the server has numbered both.
    wait_until(DEADLINE, "both idle connections accepted", || {
        s0.accepted() == 2
    });
    let before = s0.accepted();
    for i in 0..5 {
        let (banner, _, id) = request(pen.port, &format!("b{i}"), BANNER.len());
        assert_eq!(banner, BANNER);
        if i == 0 {
            assert!(id < before, "the first client got an idle connection");
        }
    }
}

#[test]
fn blacklisted_and_repointed_servers_lose_their_idle_connections() {
    let s0 = Numbered::start("S0", None);
    let s1 = Numbered::start("S1", None);
    let s2 = Numbered::start("S2", None);
    let (_pen, control) = pen(&[&s0, &s1], &["idlers 4"]);
    wait_until(DEADLINE, "two on each", || s0.open() == 2 && s1.open() == 2);
    ctl(control, "server 1 blacklist 30");
    wait_until(DEADLINE, "all four on S0", || {
        s0.open() == 4 && s1.open() == 0
    });
    wait_idlers(control, "Idlers: 4/4");
    ctl(
        control,
        &format!("server 0 address 127.0.0.1 port {}", s2.port),
    );
    wait_until(DEADLINE, "all four moved to the new address", || {
        s0.open() == 0 && s2.open() == 4
    });
    ctl(control, "server 1 blacklist 0");
    wait_idlers(control, "Idlers: 4/4");
    assert_eq!(s1.open(), 0, "full pools are not rebalanced needlessly");
}

#[test]
fn a_thousand_sequential_clients_with_eight_idlers() {
    let s0 = Numbered::start("S0", None);
    let s1 = Numbered::start("S1", None);
    let (pen, control) = pen(&[&s0, &s1], &["idlers 8"]);
    wait_idlers(control, "Idlers: 8/8");
    let started = Instant::now();
    let mut reused = 0;
    for i in 0..1000 {
        let before = [s0.accepted(), s1.accepted()];
        let (_, name, id) = request(pen.port, &format!("n{i}"), 0);
        if id < before[usize::from(name == "S1")] {
            reused += 1;
        }
    }
    assert!(reused > 0, "no client got an idle connection");
    assert!(started.elapsed() < Duration::from_secs(30));
}

#[test]
fn udp_mode_refuses_idlers() {
    let control = free_port();
    let c = format!("127.0.0.1:{control}");
    let b = UdpBackend::start("U0");
    let _pen = Pen::serve_udp(&["-u", "root", "-C", &c], &specs(&[b]));
    let reply = ctl(control, "idlers 2");
    assert!(reply.starts_with("error: idlers:"), "{reply}");
    assert_eq!(ctl(control, "idlers"), "Idlers: 0/0\n");
}

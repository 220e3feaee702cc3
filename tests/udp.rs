//! UDP mode (`-U`, man/pen.1, UDP MODE): selection per session, replies
//! from the listening address, idle expiry, the session bound, blacklisting
//! on port unreachable with failover, IPv6, `-u`, and a loss-free run of
//! 10,000 datagrams from 100 clients.

mod common;
use common::*;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::thread;
use std::time::Duration;

/// A client socket on `src` connected to `to` (so only datagrams from
/// exactly `to` are received), with a read timeout.
fn client(src: &str, to: SocketAddr) -> UdpSocket {
    let s = UdpSocket::bind((src.parse::<IpAddr>().unwrap(), 0)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.connect(to).unwrap();
    s
}

/// The next datagram as text (None if none came in time).
fn recv_text(s: &UdpSocket) -> Option<String> {
    let mut buf = vec![0u8; 65536];
    let n = s.recv(&mut buf).ok()?;
    Some(String::from_utf8_lossy(&buf[..n]).into_owned())
}

/// Sends `payload`, returns the backend name of the reply (None if lost).
fn ask(s: &UdpSocket, payload: &str) -> Option<String> {
    s.send(payload.as_bytes()).unwrap();
    let reply = recv_text(s)?;
    let (name, rest) = reply.split_once('|')?;
    assert_eq!(rest, payload, "reply carries the request");
    Some(name.to_string())
}

/// Asks once from a fresh socket (a new session) from `src`.
fn ask_new(src: &str, port: u16, payload: &str) -> Option<String> {
    ask(&client(src, local(port)), payload)
}

#[test]
fn tracking_keeps_each_client_address_on_its_server() {
    let b = UdpBackend::farm(3);
    let pen = Pen::serve_udp(&[], &specs(&b));
    let order = ["127.0.0.1", "127.0.0.2", "127.0.0.3"];
    let first: Vec<_> = order
        .iter()
        .map(|ip| ask_new(ip, pen.port, &format!("hello from {ip}")).unwrap())
        .collect();
    assert_eq!(first, ["S1", "S2", "S0"]);
    // New sessions (new client ports) from the same addresses: same servers.
    let again: Vec<_> = order
        .iter()
        .map(|ip| ask_new(ip, pen.port, "again").unwrap())
        .collect();
    assert_eq!(again, first);
    // One session: every datagram reaches the server from one pen port.
    let c = client("127.0.0.1", local(pen.port));
    for i in 0..3 {
        assert_eq!(ask(&c, &format!("same-session {i}")).as_deref(), Some("S1"));
    }
    let src = b[1].sources("same-session");
    assert_eq!(src.len(), 3);
    assert!(src.iter().all(|a| *a == src[0]), "{src:?}");
}

#[test]
fn roundrobin_flag_places_every_new_session() {
    let b = UdpBackend::farm(3);
    let pen = Pen::serve_udp(&["-r"], &specs(&b));
    let got: Vec<_> = (0..4)
        .map(|i| ask_new("127.0.0.1", pen.port, &format!("rr {i}")).unwrap())
        .collect();
    assert_eq!(got, ["S1", "S2", "S0", "S1"]);
    // A session stays on its server.
    let c = client("127.0.0.1", local(pen.port));
    let first = ask(&c, "x").unwrap();
    for _ in 0..3 {
        assert_eq!(ask(&c, "y").unwrap(), first);
    }
}

#[test]
fn replies_keep_datagram_boundaries_multiple_replies_and_big_datagrams() {
    let b = UdpBackend::farm(1);
    let pen = Pen::serve_udp(&[], &specs(&b));
    let c = client("127.0.0.4", local(pen.port));
    c.send(b"multi-reply").unwrap();
    for i in 1..=3 {
        assert_eq!(recv_text(&c).unwrap(), format!("S0|{i}|multi-reply"));
    }
    c.send(b"").unwrap();
    assert_eq!(recv_text(&c).unwrap(), "S0|");
    let big = random_bytes(7, 65000);
    c.send(&big).unwrap();
    let mut buf = vec![0u8; 65536];
    let n = c.recv(&mut buf).unwrap();
    assert_eq!(n, 3 + big.len());
    assert_eq!(&buf[..3], b"S0|");
    assert_eq!(&buf[3..n], &big[..]);
}

#[test]
fn idle_session_is_freed_and_bytes_are_counted_both_ways() {
    let b = UdpBackend::farm(2);
    let pen = Pen::serve_udp(&["-o", "idle_timeout 1"], &specs(&b));
    let c = client("127.0.0.1", local(pen.port));
    assert_eq!(ask(&c, "ping").as_deref(), Some("S1"));
    assert_eq!(ask(&c, "ping").as_deref(), Some("S1"));
    // Both requests (8 bytes) and both replies ("S1|ping", 14 bytes) count,
    // the first datagram included (pen counted neither, doc/pen-0.34.1.md,
    // quirk Q22). The session may already have expired here; the server totals
    // are the same either way (live sessions count in them).
    let r = pen.stats();
    assert_eq!(report_num(&r, "server index=1 ", "sent"), 8, "{r}");
    assert_eq!(report_num(&r, "server index=1 ", "received"), 14, "{r}");
    let r = pen.stats_until(DEADLINE, |r| report_num(r, "pen-stats", "connections") == 0);
    assert_eq!(report_num(&r, "pen-stats", "connections"), 0, "{r}");
    assert_eq!(report_num(&r, "server index=1 ", "conns"), 0, "{r}");
    assert!(!r.contains("connection index="), "{r}");
    assert_eq!(report_num(&r, "server index=1 ", "sent"), 8, "{r}");
    assert_eq!(report_num(&r, "server index=1 ", "received"), 14, "{r}");
    // Client totals are settled when the session ends, as for TCP pairs.
    assert_eq!(report_num(&r, "client index=0 ", "received"), 8, "{r}");
    assert_eq!(report_num(&r, "client index=0 ", "sent"), 14, "{r}");
    // The next datagram opens a new session: same server, new pen port.
    assert_eq!(ask(&c, "ping-after").as_deref(), Some("S1"));
    let old = b[1].sources("ping");
    let new = b[1].sources("ping-after");
    assert_ne!(old[0], new[0]);
}

#[test]
fn sessions_show_in_the_statistics_while_they_live() {
    let b = UdpBackend::farm(2);
    let pen = Pen::serve_udp(&[], &specs(&b));
    let c1 = client("127.0.0.1", local(pen.port));
    let c2 = client("127.0.0.2", local(pen.port));
    assert_eq!(ask(&c1, "a").as_deref(), Some("S1"));
    assert_eq!(ask(&c2, "b").as_deref(), Some("S0"));
    let r = pen.stats();
    assert_eq!(report_num(&r, "pen-stats", "connections"), 2, "{r}");
    assert_eq!(report_num(&r, "server index=0 ", "conns"), 1, "{r}");
    assert_eq!(report_num(&r, "server index=1 ", "conns"), 1, "{r}");
    assert_eq!(
        report_field(&r, "connection index=0 ", "server"),
        "1",
        "{r}"
    );
    assert_eq!(
        report_field(&r, "connection index=0 ", "client_fd"),
        "-1",
        "{r}"
    );
    assert_eq!(report_field(&r, "connection index=0 ", "state"), "2", "{r}");
}

#[test]
fn unreachable_server_is_blacklisted_and_its_clients_fail_over() {
    let mut b0 = UdpBackend::start("S0");
    let b2 = UdpBackend::start("S2");
    let backends = vec![b0.spec(), unreachable_udp_spec(), b2.spec()];
    let pen = Pen::serve_udp(&[], &backends);
    // The first new client is placed on server 1, which is down: the
    // datagram is resent to server 2 and answered from there.
    assert_eq!(
        ask_new("127.0.0.1", pen.port, "to-dead").as_deref(),
        Some("S2")
    );
    let err = pen.stderr();
    assert!(
        err.contains("blacklisting server 1 because of connect failure"),
        "{err}"
    );
    let r = pen.stats();
    assert_eq!(
        report_field(&r, "server index=1 ", "status"),
        "blacklisted",
        "{r}"
    );
    assert_eq!(report_num(&r, "server index=1 ", "conns"), 0, "{r}");
    // The client is now remembered on server 2; new clients skip server 1.
    assert_eq!(ask_new("127.0.0.1", pen.port, "x").as_deref(), Some("S2"));
    assert_eq!(ask_new("127.0.0.2", pen.port, "x").as_deref(), Some("S2"));
    let c3 = client("127.0.0.3", local(pen.port));
    assert_eq!(ask(&c3, "x").as_deref(), Some("S0"));
    // Server 0 goes down under a live session: the session moves on.
    b0.kill();
    assert_eq!(ask(&c3, "after-kill").as_deref(), Some("S2"));
    assert!(pen
        .stderr()
        .contains("blacklisting server 0 because of connect failure"));
    assert_eq!(ask(&c3, "still").as_deref(), Some("S2"));
}

#[test]
fn emergency_server_takes_over_when_the_only_server_is_down() {
    let e = UdpBackend::start("E");
    let pen = Pen::serve_udp(&["-e", &e.spec()], &[unreachable_udp_spec()]);
    assert_eq!(ask_new("127.0.0.1", pen.port, "help").as_deref(), Some("E"));
}

#[test]
fn stubborn_does_not_fail_over() {
    let b = UdpBackend::farm(2);
    let backends = vec![b[0].spec(), unreachable_udp_spec()];
    let pen = Pen::serve_udp(&["-s"], &backends);
    // First new client -> server 1 (down): no answer, no failover.
    let c = client("127.0.0.1", local(pen.port));
    c.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    assert_eq!(ask(&c, "x"), None);
    assert_eq!(b[0].sources("x").len(), 0);
}

#[test]
fn full_session_table_evicts_the_least_recently_used_session() {
    // The table holds conn_max (-x, default 500) sessions.
    let b = UdpBackend::farm(1);
    let pen = Pen::serve_udp(&[], &specs(&b));
    let first = client("127.0.0.1", local(pen.port));
    assert_eq!(ask(&first, "first").as_deref(), Some("S0"));
    let mut others = Vec::new();
    for i in 0..500 {
        let c = client("127.0.0.2", local(pen.port));
        assert_eq!(ask(&c, &format!("other {i}")).as_deref(), Some("S0"));
        others.push(c);
    }
    let r = pen.stats();
    assert_eq!(report_num(&r, "pen-stats", "connections"), 500, "{r}");
    assert_eq!(report_num(&r, "server index=0 ", "conns"), 500, "{r}");
    // The first session was the least recently used: it was evicted, so
    // the client's next datagram comes from a new pen port.
    assert_eq!(ask(&first, "first-again").as_deref(), Some("S0"));
    assert_ne!(b[0].sources("first")[0], b[0].sources("first-again")[0]);
    // That evicted the next-oldest session, the newest one is still there.
    let newest = others.last().unwrap();
    assert_eq!(ask(newest, "other newest").as_deref(), Some("S0"));
    let src = b[0].sources("other ");
    assert_eq!(src[src.len() - 1], src[src.len() - 2]);
}

#[test]
fn ten_thousand_datagrams_from_100_clients_none_lost_or_misdelivered() {
    let b = UdpBackend::farm(2);
    let pen = Pen::serve_udp(&[], &specs(&b));
    let port = pen.port;
    let threads: Vec<_> = (0..10)
        .map(|t| {
            thread::spawn(move || {
                let socks: Vec<(usize, UdpSocket)> = (0..10)
                    .map(|i| {
                        let id = t * 10 + i;
                        (id, client(&format!("127.0.1.{}", id + 1), local(port)))
                    })
                    .collect();
                let mut server_of: HashMap<usize, String> = HashMap::new();
                let (mut lost, mut wrong, mut req_bytes, mut rep_bytes) = (0, 0, 0, 0);
                for seq in 0..100 {
                    for (id, s) in &socks {
                        let p = format!("client {id} datagram {seq}");
                        req_bytes += p.len();
                        s.send(p.as_bytes()).unwrap();
                    }
                    for (id, s) in &socks {
                        let want = format!("client {id} datagram {seq}");
                        match recv_text(s) {
                            None => lost += 1,
                            Some(r) => {
                                rep_bytes += r.len();
                                let (name, rest) = r.split_once('|').unwrap_or(("", ""));
                                let known = server_of.entry(*id).or_insert(name.to_string());
                                if rest != want || known != name {
                                    wrong += 1;
                                }
                            }
                        }
                    }
                }
                (lost, wrong, req_bytes as u64, rep_bytes as u64)
            })
        })
        .collect();
    let (mut lost, mut wrong, mut req, mut rep) = (0, 0, 0, 0);
    for t in threads {
        let (l, w, a, b) = t.join().unwrap();
        lost += l;
        wrong += w;
        req += a;
        rep += b;
    }
    assert_eq!(lost, 0, "datagrams lost");
    assert_eq!(wrong, 0, "datagrams misdelivered");
    let total: usize = b.iter().map(UdpBackend::received).sum();
    assert_eq!(total, 10_000);
    // Tracking spread the 100 client addresses over both servers.
    assert!(b.iter().all(|b| b.received() > 0));
    let r = pen.stats();
    assert_eq!(report_num(&r, "pen-stats", "connections"), 100, "{r}");
    let sent =
        report_num(&r, "server index=0 ", "sent") + report_num(&r, "server index=1 ", "sent");
    let received = report_num(&r, "server index=0 ", "received")
        + report_num(&r, "server index=1 ", "received");
    assert_eq!(sent, req, "{r}");
    assert_eq!(received, rep, "{r}");
}

#[test]
fn ipv6_listener_and_servers() {
    if !ipv6_loopback() {
        eprintln!("skipped: ::1 is not available");
        return;
    }
    let b0 = UdpBackend::start("S0");
    let b1 = UdpBackend::start_on("[::1]:0", "S1");
    let port = free_udp_port("::1");
    let listen = format!("[::1]:{port}");
    let pen = Pen::start_udp(port, &["-r", &listen, &b0.spec(), &b1.spec()]);
    let to: SocketAddr = format!("[::1]:{port}").parse().unwrap();
    let got: Vec<_> = (0..2)
        .map(|i| ask(&client("::1", to), &format!("v6 {i}")).unwrap())
        .collect();
    assert_eq!(got, ["S1", "S0"]);
    let c = client("::1", to);
    assert_eq!(ask(&c, "v6 again").as_deref(), Some("S1"));
    assert_eq!(ask(&c, "v6 again").as_deref(), Some("S1"));
    drop(pen);
}

#[test]
fn wildcard_listener_replies_from_the_address_the_client_wrote_to() {
    let b = UdpBackend::farm(1);
    let port = free_udp_port("0.0.0.0");
    let listen = format!("0.0.0.0:{port}");
    let _pen = Pen::start_udp(port, &[&listen, &b[0].spec()]);
    for to in ["127.0.0.7", "127.0.0.1", "127.3.4.5"] {
        // A connected client only accepts datagrams from `to`:port.
        let c = client("127.0.0.5", format!("{to}:{port}").parse().unwrap());
        assert_eq!(ask(&c, "where").as_deref(), Some("S0"), "to {to}");
    }
}

#[test]
fn dual_stack_wildcard_listener_serves_ipv4_and_ipv6_clients() {
    if !ipv6_loopback() {
        eprintln!("skipped: ::1 is not available");
        return;
    }
    let b = UdpBackend::farm(1);
    let port = free_udp_port("::");
    let listen = format!("[::]:{port}");
    let _pen = Pen::start_udp(port, &[&listen, &b[0].spec()]);
    let c4 = client("127.0.0.5", format!("127.0.0.9:{port}").parse().unwrap());
    assert_eq!(ask(&c4, "v4").as_deref(), Some("S0"));
    let c6 = client("::1", format!("[::1]:{port}").parse().unwrap());
    assert_eq!(ask(&c6, "v6").as_deref(), Some("S0"));
}

#[test]
fn request_log_records_every_datagram() {
    let b = UdpBackend::farm(1);
    let dir = TempDir::new("udplog");
    let log = dir.join("pen.log");
    let log_s = log.to_str().unwrap().to_string();
    let pen = Pen::serve_udp(&["-l", &log_s], &specs(&b));
    let c = client("127.0.0.6", local(pen.port));
    assert!(ask(&c, "first query").is_some());
    assert!(ask(&c, "second query").is_some());
    let text = wait_file_contains(&log, "second query", DEADLINE);
    assert!(text.contains("127.0.0.6 "), "{text}");
    assert!(text.contains(" 127.0.0.1 first query\n"), "{text}");
    assert!(text.contains(" 127.0.0.1 second query\n"), "{text}");
}

#[test]
fn works_after_dropping_privileges() {
    if pen::sys::process::geteuid() != 0 {
        eprintln!("skipped: needs root to test -u");
        return;
    }
    let b = UdpBackend::farm(2);
    // Panics with pen's stderr if pen does not start.
    let pen = Pen::serve_udp(&["-u", "nobody"], &specs(&b));
    let port = pen.port;
    let c = client("127.0.0.1", local(port));
    assert_eq!(ask(&c, "as nobody").as_deref(), Some("S1"));
    assert_eq!(ask(&c, "as nobody").as_deref(), Some("S1"));
    assert_eq!(ask_new("127.0.0.2", port, "x").as_deref(), Some("S0"));
    // The relay thread only starts after the privilege drop.
    let status = std::fs::read_to_string(format!("/proc/{}/status", pen.pid())).unwrap();
    let uid = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    assert!(!uid.split_whitespace().skip(1).any(|u| u == "0"), "{uid}");
}

#[test]
fn sigterm_ends_udp_mode() {
    let b = UdpBackend::farm(1);
    let mut pen = Pen::serve_udp(&[], &specs(&b));
    assert!(ask_new("127.0.0.1", pen.port, "x").is_some());
    pen.signal("TERM");
    assert_eq!(pen.wait_exit(DEADLINE), Some(0));
}

#[test]
fn unix_listener_is_refused_in_udp_mode() {
    let dir = TempDir::new("udpunix");
    let path = dir.join("sock");
    let (code, _, err) = run_pen(&["-f", "-U", path.to_str().unwrap(), "127.0.0.1:9"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("needs an IPv4 or IPv6 listen address"),
        "{err}"
    );
}

//! Server selection as a client sees it: tracking, -r, -h, -W, prio,
//! limits, failover, blacklisting, emergency, stubborn (doc/pen-0.34.1.md,
//! "Server selection").

mod common;
use common::*;
use std::time::Duration;

#[test]
fn default_mode_tracks_clients_and_first_goes_to_server_1() {
    let b = Backend::farm(3, Behaviour::Name);
    let pen = Pen::serve(&[], &specs(&b));
    let order = [
        "127.0.0.1",
        "127.0.0.2",
        "127.0.0.3",
        "127.0.0.1",
        "127.0.0.2",
        "127.0.0.3",
    ];
    let got: Vec<String> = order.iter().map(|ip| ask(ip, pen.port)).collect();
    assert_eq!(got, ["S1", "S2", "S0", "S1", "S2", "S0"]);
}

#[test]
fn roundrobin_ignores_tracking() {
    let b = Backend::farm(3, Behaviour::Name);
    let pen = Pen::serve(&["-r"], &specs(&b));
    let got: Vec<String> = (0..4).map(|_| ask("127.0.0.1", pen.port)).collect();
    assert_eq!(got, ["S1", "S2", "S0", "S1"]);
}

#[test]
fn hash_places_clients_like_pen_on_amd64() {
    // 7 backends: 127.0.0.1 -> 2, 127.0.0.2 -> 3, 127.0.1.0 -> 3, 127.1.0.0 -> 5, 127.9.8.7 -> 4
    let b = Backend::farm(7, Behaviour::Name);
    let pen = Pen::serve(&["-h"], &specs(&b));
    for (ip, want) in [
        ("127.0.0.1", "S2"),
        ("127.0.0.2", "S3"),
        ("127.0.1.0", "S3"),
        ("127.1.0.0", "S5"),
        ("127.9.8.7", "S4"),
    ] {
        assert_eq!(ask(ip, pen.port), want, "client {ip}");
    }
}

#[test]
fn weight_distributes_by_load() {
    let b = Backend::farm(3, Behaviour::NameAndHold);
    let s = specs(&b);
    let backends = vec![
        format!("{}:0:0:1", s[0]),
        format!("{}:0:0:2", s[1]),
        format!("{}:0:0:4", s[2]),
    ];
    let pen = Pen::serve(&["-W", "-r"], &backends);
    let (_held, got): (Vec<_>, Vec<_>) = (0..7)
        .map(|_| ask_and_hold("127.0.0.1", pen.port, 2))
        .unzip();
    assert_eq!(got, ["S0", "S1", "S2", "S2", "S1", "S2", "S2"]);
}

#[test]
fn weight_mode_without_weights_serves_everyone() {
    let b = Backend::farm(2, Behaviour::Name);
    let pen = Pen::serve(&["-W"], &specs(&b));
    assert!(ask("127.0.0.1", pen.port).starts_with('S'));
    assert!(ask("127.0.0.2", pen.port).starts_with('S'));
}

#[test]
fn prio_picks_the_lowest_available_prio() {
    let b = Backend::farm(3, Behaviour::Name);
    let s = specs(&b);
    let backends = vec![
        format!("{}:0:0:0:3", s[0]),
        format!("{}:0:0:0:1", s[1]),
        format!("{}:0:0:0:2", s[2]),
    ];
    let pen = Pen::serve(&["-o", "prio", "-r"], &backends);
    for _ in 0..3 {
        assert_eq!(ask("127.0.0.1", pen.port), "S1");
    }
}

#[test]
fn refused_server_is_blacklisted_and_clients_fail_over() {
    let b = Backend::farm(3, Behaviour::Name);
    let mut s = specs(&b);
    s[1] = format!("127.0.0.1:{}", refused_port());
    let pen = Pen::serve(&["-b", "2"], &s);
    // The first new client would go to server 1: refused -> failover to 2.
    assert_eq!(ask("127.0.0.1", pen.port), "S2");
    // Round robin now skips the blacklisted server 1.
    assert_eq!(ask("127.0.0.2", pen.port), "S2");
    assert!(
        pen.stderr()
            .contains("blacklisting server 1 because of connect failure"),
        "{}",
        pen.stderr()
    );
}

/// The one end-to-end test of `-b`; the second arithmetic is unit-tested
/// with an injected clock (src/state/servers.rs, `clock_tests`).
#[test]
fn blacklisting_expires() {
    let b0 = Backend::start("S0", Behaviour::Name);
    // Server 1's port is closed at first, then opens.
    let port1 = refused_port();
    let pen = Pen::serve(
        &["-r", "-b", "1"],
        &[b0.spec(), format!("127.0.0.1:{port1}")],
    );
    assert_eq!(ask("127.0.0.1", pen.port), "S0"); // 1 refused -> 0
                                                  // pen blacklisted server 1 in this second or an earlier one.
    let failed_by = unix_now();
    let listener = std::net::TcpListener::bind(("127.0.0.1", port1)).unwrap();
    let _b1 = Backend::start_on(listener, "S1", Behaviour::Name);
    assert_eq!(ask("127.0.0.1", pen.port), "S0"); // 1 still blacklisted
                                                  // -b 1: the blacklisting is over one second of pen's clock later.
    wait_unix_time(failed_by + 1);
    let got: Vec<String> = (0..2).map(|_| ask("127.0.0.1", pen.port)).collect();
    assert!(got.contains(&"S1".to_string()), "{got:?}");
}

#[test]
fn connect_timeout_blacklists_and_fails_over() {
    // A listener whose accept queue is full drops further SYNs: connecting
    // to it hangs, like a black-holed host.
    let full =
        pen::sys::socket::bind_inet(&local(0), pen::sys::socket::Kind::Stream, 0, false).unwrap();
    let full_port = match pen::sys::socket::local_addr(std::os::fd::AsFd::as_fd(&full)).unwrap() {
        pen::sys::socket::PeerAddr::Inet(a) => a.port(),
        other => panic!("{other:?}"),
    };
    let mut fillers = Vec::new();
    for _ in 0..3 {
        if let Ok(c) =
            std::net::TcpStream::connect_timeout(&local(full_port), Duration::from_millis(300))
        {
            fillers.push(c);
        }
    }
    let b0 = Backend::start("S0", Behaviour::Name);
    let pen = Pen::serve(&["-t", "1"], &[b0.spec(), format!("127.0.0.1:{full_port}")]);
    assert_eq!(ask("127.0.0.1", pen.port), "S0");
    assert!(
        pen.stderr()
            .contains("blacklisting server 1 because of connect timeout"),
        "{}",
        pen.stderr()
    );
}

#[test]
fn emergency_server_when_all_fail_and_stubborn_never_uses_it() {
    let e = Backend::start("E", Behaviour::Name);
    let dead = vec![
        format!("127.0.0.1:{}", refused_port()),
        format!("127.0.0.1:{}", refused_port()),
    ];
    let pen = Pen::serve(&["-e", &e.spec()], &dead);
    assert_eq!(ask("127.0.0.1", pen.port), "E");
    drop(pen);
    let pen = Pen::serve(&["-s", "-e", &e.spec()], &dead);
    assert_eq!(ask("127.0.0.1", pen.port), "");
}

#[test]
fn stubborn_closes_instead_of_failing_over() {
    let b = Backend::farm(2, Behaviour::Name);
    let s = vec![b[0].spec(), format!("127.0.0.1:{}", refused_port())];
    let pen = Pen::serve(&["-s"], &s);
    assert_eq!(ask("127.0.0.1", pen.port), ""); // initial choice 1 refused
    assert_eq!(ask("127.0.0.2", pen.port), "S0"); // 1 blacklisted: rr skips it
}

#[test]
fn soft_and_hard_limits() {
    // Server 1: maxc 1, hard 2. One client IP holds connections.
    let b = Backend::farm(3, Behaviour::NameAndHold);
    let s = specs(&b);
    let backends = vec![s[0].clone(), format!("{}:1:2", s[1]), s[2].clone()];
    let pen = Pen::serve(&[], &backends);
    let (_held, got): (Vec<_>, Vec<_>) = (0..3)
        .map(|_| ask_and_hold("127.0.0.1", pen.port, 2))
        .unzip();
    assert_eq!(got, ["S1", "S1", "S2"]);
}

/// The one end-to-end test of `-T`; the second arithmetic is unit-tested
/// with an injected clock (src/state/clients.rs, `clock_tests`).
#[test]
fn tracking_time_forgets_clients() {
    let b = Backend::farm(3, Behaviour::Name);
    // -T 2, not 1: the second client must still be remembered even if a
    // loaded machine puts a second between the first two.
    let pen = Pen::serve(&["-T", "2"], &specs(&b));
    assert_eq!(ask("127.0.0.1", pen.port), "S1");
    assert_eq!(ask("127.0.0.1", pen.port), "S1");
    // pen saw the client in this second or an earlier one; with -T 2 it
    // forgets the client once more than two seconds have passed.
    let seen_by = unix_now();
    wait_unix_time(seen_by + 3);
    // Forgotten: placed afresh by round robin (next is 2).
    assert_eq!(ask("127.0.0.1", pen.port), "S2");
}

#[test]
fn client_table_size_recycles_least_recently_used() {
    let b = Backend::farm(3, Behaviour::Name);
    let pen = Pen::serve(&["-c", "2"], &specs(&b));
    assert_eq!(ask("127.0.0.1", pen.port), "S1");
    // .2 comes a second of pen's clock later than .1: .1 is the least
    // recently used by time, not only by its lower slot.
    wait_unix_time(unix_now() + 1);
    assert_eq!(ask("127.0.0.2", pen.port), "S2");
    assert_eq!(ask("127.0.0.3", pen.port), "S0"); // takes .1's slot
    assert_eq!(ask("127.0.0.1", pen.port), "S1"); // new again: next rr
}

/// `hash consistent` on two pens whose server lists are in different
/// orders: every client lands on the same backend through both, before and
/// after one server is taken out of both through the control port, and
/// only that server's clients move.
#[test]
fn consistent_hash_agrees_across_pens_in_any_order() {
    let b = Backend::farm(5, Behaviour::Name);
    let forward = specs(&b);
    let mut shuffled = forward.clone();
    shuffled.rotate_left(2);
    shuffled.swap(0, 4);
    let start = |servers: &[String]| {
        let control = free_port();
        let c = format!("127.0.0.1:{control}");
        let pen = Pen::serve(&["-u", "root", "-C", &c, "-o", "hash consistent"], servers);
        (pen, control)
    };
    let (one, one_ctl) = start(&forward);
    let (two, two_ctl) = start(&shuffled);
    assert_eq!(
        ctl(one_ctl, "mode"),
        "hash consistent no roundrobin no stubborn no weight no prio\n"
    );
    // 200 clients spread over 127/8.
    let clients: Vec<String> = (0..200u32)
        .map(|i| {
            let x = i.wrapping_mul(2_654_435_761);
            format!(
                "127.{}.{}.{}",
                (x >> 8) & 0xff,
                (x >> 16) & 0xff,
                1 + i % 250
            )
        })
        .collect();
    let placement = |port: u16| -> Vec<String> { clients.iter().map(|ip| ask(ip, port)).collect() };
    let before = placement(one.port);
    assert_eq!(before, placement(two.port));
    for s in &b {
        let n = before.iter().filter(|name| **name == s.name).count();
        assert!(n >= 15, "{} got {n} of 200 clients", s.name);
    }
    // Take S3 out of both: its slot differs between the two pens.
    let slot = |list: &[String]| list.iter().position(|s| *s == forward[3]).unwrap();
    for (port, list) in [(one_ctl, &forward), (two_ctl, &shuffled)] {
        assert_eq!(
            ctl(port, &format!("server {} blacklist 3600", slot(list))),
            ""
        );
    }
    let after = placement(one.port);
    assert_eq!(after, placement(two.port));
    for (was, now) in before.iter().zip(&after) {
        assert_ne!(now, "S3");
        assert!(!now.is_empty());
        if was != "S3" {
            assert_eq!(was, now, "a client moved off a server that stayed");
        }
    }
}

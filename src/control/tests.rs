//! Unit tests of the grammar and of the settings commands.

use super::*;
use crate::addr::Host;
use crate::state::Balancer;

fn run(b: &mut Balancer, line: &str) -> String {
    let cmd = parse(line).unwrap().unwrap();
    apply_setting(b, &cmd, 1000).unwrap()
}

/// Random lines of words from the command vocabulary, numbers and
/// junk: parsing must never panic, and settings-only commands must
/// apply without panicking either. (No `address`/`source`: their
/// arguments would be resolved as host names.)
#[test]
fn random_lines_never_panic() {
    let vocab = [
        "server",
        "acl",
        "no",
        "permit",
        "deny",
        "port",
        "max",
        "hard",
        "weight",
        "prio",
        "blacklist",
        "listen",
        "log",
        "write",
        "include",
        "close",
        "connection",
        "tcp_fastclose",
        "idlers",
        "ssl_option",
        "country",
        "-1",
        "0",
        "9",
        "99999999999999999999",
        "127.0.0.1",
        "::1/200",
        "255.255.255.0",
        "\u{0}",
        "\u{fffd}",
        "up",
        "both",
        "mode",
        "hash",
        "timeout",
        "clients_max",
        "conn_max",
        "#",
        "",
    ];
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut b = Balancer::default();
    for _ in 0..20_000 {
        let n = (next() % 7) as usize;
        let line: Vec<&str> = (0..n)
            .map(|_| vocab[(next() % vocab.len() as u64) as usize])
            .collect();
        let line = line.join(" ");
        if let Ok(Some(cmd)) = parse(&line) {
            let _ = apply_setting(&mut b, &cmd, 1000);
        }
    }
}

#[test]
fn framing() {
    assert_eq!(first_line("mode\nservers\n"), "mode");
    assert_eq!(first_line("mode\r\n"), "mode");
    assert_eq!(
        words("  server  1   max 3 "),
        vec!["server", "1", "max", "3"]
    );
    assert_eq!(parse("").unwrap(), None);
    assert_eq!(parse("#comment").unwrap(), None);
    assert_eq!(parse("# comment").unwrap(), None);
}

#[test]
fn mode_flags_and_reply() {
    let mut b = Balancer::default();
    assert_eq!(
        run(&mut b, "mode"),
        "no hash no roundrobin no stubborn no weight no prio\n"
    );
    for f in ["hash", "roundrobin", "stubborn", "weight", "prio"] {
        assert_eq!(run(&mut b, f), "");
    }
    assert_eq!(
        run(&mut b, "mode"),
        "hash roundrobin stubborn weight prio\n"
    );
    run(&mut b, "no hash");
    assert!(!b.settings.hash);
}

#[test]
fn numeric_replies() {
    let mut b = Balancer::default();
    assert_eq!(run(&mut b, "blacklist"), "30\n");
    assert_eq!(run(&mut b, "timeout"), "3\n");
    assert_eq!(run(&mut b, "tracking"), "0\n");
    assert_eq!(run(&mut b, "clients_max"), "2048\n");
    assert_eq!(run(&mut b, "conn_max"), "500\n");
    assert_eq!(run(&mut b, "client_acl"), "0\n");
    assert_eq!(run(&mut b, "idle_timeout"), "Idle timeout: 0 seconds\n");
    assert_eq!(run(&mut b, "idlers"), "Idlers: 0/0\n");
    assert_eq!(run(&mut b, "tarpit_acl"), "tarpit_acl = -1");
    assert_eq!(run(&mut b, "blacklist 7"), "7\n");
    b.running = true;
    assert_eq!(run(&mut b, "clients_max 10"), "2048\n");
    assert_eq!(run(&mut b, "conn_max 600"), "600\n");
}

#[test]
fn tarpit_acl_minus_one_is_the_default_not_an_error() {
    let mut b = Balancer::default();
    assert_eq!(run(&mut b, "tarpit_acl -1"), "tarpit_acl = -1");
    assert!(parse("tarpit_acl 3").is_err());
    assert!(parse("tarpit_acl 0").is_err());
}

#[test]
fn unix_backends_report_port_1() {
    let mut b = Balancer::default();
    run(&mut b, "server 0 address 127.0.0.1 port 8080");
    run(&mut b, "server 0 address /run/app.sock");
    assert_eq!(b.servers.backends[0].port, 1);
    // A port means nothing to a Unix socket; pen keeps reporting 1.
    run(&mut b, "server 0 port 9090");
    assert_eq!(b.servers.backends[0].port, 1);
    assert!(servers_reply(&b).starts_with("0 addr /run/app.sock port 1 conn 0"));
    // An empty slot given a Unix path is usable (pen's port 1).
    run(&mut b, "server 3 address /run/other.sock");
    assert_eq!(b.servers.backends[3].port, 1);
    assert!(b.servers.backends[3].is_configured());
    // Back to an IP address: the port is kept (pen read a garbage port
    // out of the path's first bytes: 12148 for "/t...").
    run(&mut b, "server 0 address 127.0.0.2");
    assert_eq!(b.servers.backends[0].port, 1);
    run(&mut b, "server 0 port 81");
    assert_eq!(b.servers.backends[0].port, 81);
}

#[test]
fn errors() {
    assert_eq!(
        parse("bogus").unwrap_err().reply(),
        "do_cmd: ignoring command starting with 'bogus'\n"
    );
    assert_eq!(
        parse("MODE").unwrap_err().reply(),
        "do_cmd: ignoring command starting with 'MODE'\n"
    );
    assert!(matches!(
        parse("blacklist abc"),
        Err(CommandError::Invalid(_))
    ));
    assert!(matches!(parse("timeout 0"), Err(CommandError::Invalid(_))));
    assert!(matches!(
        parse("client_acl 12"),
        Err(CommandError::Invalid(_))
    ));
    assert!(matches!(parse("idlers 3"), Err(CommandError::Invalid(_))));
    assert!(matches!(parse("dummy"), Err(CommandError::Invalid(_))));
    assert!(matches!(parse("no acl"), Err(CommandError::Invalid(_))));
    assert!(matches!(parse("source"), Err(CommandError::Invalid(_))));
    assert!(matches!(
        parse("server 1 weight"),
        Err(CommandError::Invalid(_))
    ));
    assert!(matches!(
        parse("server 1 colour red"),
        Err(CommandError::Invalid(_))
    ));
    assert!(matches!(parse("server x"), Err(CommandError::Invalid(_))));
}

#[test]
fn server_settings_apply_in_any_order() {
    let mut b = Balancer::default();
    run(
        &mut b,
        "server 2 port 81 address 127.0.0.9 max 3 hard 4 weight 5 prio 6 acl 1",
    );
    assert_eq!(b.servers.len(), 3);
    let s = &b.servers.backends[2];
    assert_eq!(s.host, Host::Ip("127.0.0.9".parse().unwrap()));
    assert_eq!(
        (s.port, s.max_conns, s.hard_limit, s.weight, s.prio, s.acl),
        (81, 3, 4, 5, 6, 1)
    );
    assert!(!b.servers.backends[0].is_configured());
    run(&mut b, "server 2 blacklist 10");
    assert!(b.servers.backends[2].is_blacklisted(1005, 30));
    assert!(!b.servers.backends[2].is_blacklisted(1010, 30));
}

#[test]
fn relay_yield_is_a_flag_that_write_saves_only_when_off() {
    let mut b = Balancer::default();
    assert!(b.settings.relay_yield);
    assert!(!settings::after_pen_list(&b).contains("relay_yield"));
    run(&mut b, "no relay_yield");
    assert!(!b.settings.relay_yield);
    assert!(settings::after_pen_list(&b).ends_with("no relay_yield\n"));
    run(&mut b, "relay_yield");
    assert!(b.settings.relay_yield);
}

#[test]
fn operations_commands_parse() {
    assert_eq!(parse("metrics").unwrap(), Some(Command::Metrics));
    assert_eq!(
        parse("metrics_listen 127.0.0.1:9464").unwrap(),
        Some(Command::MetricsListen(Some("127.0.0.1:9464".into())))
    );
    assert_eq!(
        parse("metrics_listen").unwrap(),
        Some(Command::MetricsListen(None))
    );
    assert_eq!(
        parse("no metrics_listen").unwrap(),
        Some(Command::NoMetricsListen)
    );
    assert_eq!(parse("drain").unwrap(), Some(Command::Drain(None)));
    assert_eq!(parse("drain 5").unwrap(), Some(Command::Drain(Some(5))));
    assert!(parse("drain x")
        .unwrap_err()
        .reply()
        .starts_with("error: drain"));
    assert!(parse("drain -1").is_err());
    let mut b = Balancer::default();
    assert_eq!(run(&mut b, "drain_timeout"), "30\n");
    assert_eq!(run(&mut b, "drain_timeout 5"), "5\n");
    assert_eq!(b.settings.drain_timeout, 5);
}

#[test]
fn a_repointed_slot_counts_afresh_for_the_metrics() {
    let mut b = Balancer::default();
    run(&mut b, "server 0 address 127.0.0.1 port 80");
    b.servers.backends[0].sent = 100;
    b.servers.backends[0].received = 200;
    b.servers.backends[0].metrics.connections = 3;
    // The same address again (a reload): nothing changes.
    run(&mut b, "server 0 address 127.0.0.1 port 80 weight 2");
    assert_eq!(b.servers.backends[0].metrics.connections, 3);
    assert_eq!(b.servers.backends[0].metrics.sent_base, 0);
    // Another port: a new label set from zero.
    run(&mut b, "server 0 port 81");
    let m = &b.servers.backends[0].metrics;
    assert_eq!((m.connections, m.sent_base, m.received_base), (0, 100, 200));
}

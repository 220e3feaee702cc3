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
        "consistent",
        "health",
        "health_check",
        "health_check_send",
        "health_check_expect",
        "health_check_fall",
        "\\",
        "a\\r\\n",
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
fn hash_consistent_in_mode_and_write() {
    let mut b = Balancer::default();
    let hash = settings::Flag::by_name("hash").unwrap().row();
    assert_eq!(run(&mut b, "hash consistent"), "");
    assert!(b.settings.hash && b.settings.consistent_hash);
    assert_eq!(
        run(&mut b, "mode"),
        "hash consistent no roundrobin no stubborn no weight no prio\n"
    );
    assert_eq!(settings::flag_line(hash, &b.settings), "hash consistent\n");
    // Plain `hash` is pen's hash again; `no hash` ends either.
    run(&mut b, "hash");
    assert!(b.settings.hash && !b.settings.consistent_hash);
    assert_eq!(settings::flag_line(hash, &b.settings), "hash\n");
    run(&mut b, "hash consistent");
    run(&mut b, "no hash");
    assert!(!b.settings.hash && !b.settings.consistent_hash);
    assert_eq!(
        run(&mut b, "mode"),
        "no hash no roundrobin no stubborn no weight no prio\n"
    );
    assert_eq!(
        parse("hash consistant").unwrap_err().reply(),
        "error: hash: unknown argument 'consistant' (use 'hash' or 'hash consistent')\n"
    );
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
    assert_eq!(run(&mut b, "idlers 3"), "");
    assert_eq!(b.settings.idlers, 3);
    b.settings.idlers = 0;
    assert_eq!(run(&mut b, "tarpit_acl"), "tarpit_acl = -1");
    assert_eq!(run(&mut b, "blacklist 7"), "7\n");
    b.running = true;
    assert_eq!(run(&mut b, "clients_max 10"), "2048\n");
    assert_eq!(run(&mut b, "conn_max 600"), "600\n");
}

#[test]
fn tarpit_acl_takes_minus_one_to_nine_and_replies_without_newline() {
    let mut b = Balancer::default();
    assert_eq!(run(&mut b, "tarpit_acl 3"), "tarpit_acl = 3");
    assert_eq!(b.settings.tarpit_acl, 3);
    assert_eq!(run(&mut b, "tarpit_acl -1"), "tarpit_acl = -1");
    assert!(parse("tarpit_acl 10").is_err());
    assert!(parse("tarpit_acl -2").is_err());
}

#[test]
fn dsr_ip_is_a_setting_and_dsr_if_parses_names_only() {
    let mut b = Balancer::default();
    assert_eq!(run(&mut b, "dsr_ip"), "");
    assert_eq!(run(&mut b, "dsr_ip 192.0.2.2"), "192.0.2.2\n");
    assert_eq!(b.settings.dsr_ip, Some("192.0.2.2".parse().unwrap()));
    assert!(parse("dsr_ip 2001:db8::1").is_err());
    assert!(parse("dsr_if a/b").is_err());
    assert!(parse("dsr_if averyveryverylongname").is_err());
    assert!(parse("dsr_if eth0").is_ok());
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
    assert!(matches!(parse("idlers -1"), Err(CommandError::Invalid(_))));
    assert!(matches!(
        parse("idlers 10001"),
        Err(CommandError::Invalid(_))
    ));
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
fn server_slots_are_bounded_and_a_bare_server_is_refused() {
    use crate::state::servers::MAX_SERVERS;
    let last = format!("server {} port 80", MAX_SERVERS - 1);
    assert!(parse(&last).is_ok());
    for n in [MAX_SERVERS, 65535, 1 << 20] {
        let Err(e) = parse(&format!("server {n} port 80")) else {
            panic!("server {n} was accepted");
        };
        assert_eq!(
            e.reply(),
            format!(
                "error: server: {n} is out of range (0..{})\n",
                MAX_SERVERS - 1
            )
        );
    }
    // pen made an empty slot, shown as "unknown address family 0".
    let Err(e) = parse("server 3") else {
        panic!("a bare server N was accepted");
    };
    assert!(e.reply().starts_with("error: server 3: nothing to set"));
    assert_eq!(e.reply().lines().count(), 1);
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

#[test]
fn health_check_settings() {
    let mut b = Balancer::default();
    assert_eq!(run(&mut b, "health_check"), "0\n");
    assert_eq!(run(&mut b, "health_check_fall"), "3\n");
    assert_eq!(run(&mut b, "health_check_rise"), "2\n");
    assert_eq!(run(&mut b, "health_check 5"), "5\n");
    assert_eq!(run(&mut b, "health_check_fall 4"), "4\n");
    assert!(parse("health_check_rise 0").is_err());
    assert!(parse("health_check -1").is_err());
    // The text is the rest of the line, with \r, \n and \\ escapes.
    assert_eq!(run(&mut b, "health_check_send"), "");
    assert_eq!(
        run(&mut b, "health_check_send  GET / HTTP/1.0\\r\\n\\r\\n"),
        "GET / HTTP/1.0\\r\\n\\r\\n\n"
    );
    assert_eq!(
        b.settings.health_check_send.as_deref(),
        Some("GET / HTTP/1.0\r\n\r\n")
    );
    run(&mut b, "health_check_expect HTTP/1.? 200 a\\\\b");
    assert_eq!(
        b.settings.health_check_expect.as_deref(),
        Some("HTTP/1.? 200 a\\b")
    );
    assert_eq!(run(&mut b, "health_check_expect"), "HTTP/1.? 200 a\\\\b\n");
    assert_eq!(
        parse("health_check_send a\\tb").unwrap_err().reply(),
        "error: health_check_send: unknown escape '\\t' (use \\r, \\n or \\\\)\n"
    );
    assert!(parse("health_check_expect ends\\").is_err());
    // What `write` saves, read back, gives the same settings.
    let saved = settings::after_pen_list(&b);
    assert!(
        saved.contains("health_check 5\nhealth_check_fall 4\n"),
        "{saved}"
    );
    assert!(!saved.contains("health_check_rise"), "{saved}");
    run(&mut b, "no health_check_send");
    assert_eq!(b.settings.health_check_send, None);
    // Off again: every server counts as up.
    b.servers.ensure_slot(0).health.down = true;
    run(&mut b, "health_check 0");
    assert!(!b.servers.backends[0].health.down);
}

#[test]
fn write_saves_probe_texts_escaped() {
    let mut b = Balancer::default();
    let info = crate::runtime::ProcessInfo::default();
    let plain = config::render(&b, &info, std::path::Path::new("/x"));
    assert!(!plain.contains("health"), "{plain}");
    run(&mut b, "health_check_send PING\\r\\n");
    run(&mut b, "health_check_expect +PONG");
    let text = config::render(&b, &info, std::path::Path::new("/x"));
    assert!(
        text.contains("health_check_send PING\\r\\n\nhealth_check_expect +PONG\n"),
        "{text}"
    );
}

/// fuzz/, target config_file: a slot given an address but no port was
/// written as `port 0`, which reading the file back refused.
#[test]
fn write_output_of_a_slot_without_a_port_reads_back() {
    let mut b = Balancer::default();
    let info = crate::runtime::ProcessInfo::default();
    run(&mut b, "server 1 acl 1 address ::2");
    run(&mut b, "server 2 address 127.0.0.2 port 80");
    let text = config::render(&b, &info, std::path::Path::new("/x"));
    assert!(
        text.contains("server 1 acl 1 address ::2 max 0 hard 0 weight 0 prio 0\n")
            && text.contains("server 2 acl 0 address 127.0.0.2 port 80 max 0"),
        "{text}"
    );
    let mut again = Balancer::default();
    for (_, cmd) in config::parse_text("written", text.as_bytes()).unwrap() {
        apply_setting(&mut again, &cmd, 1000);
    }
    assert_eq!(again.servers.backends[1].port, 0);
    assert_eq!(
        again.servers.backends[1].host,
        Host::Ip("::2".parse().unwrap())
    );
    assert_eq!(again.servers.backends[2].port, 80);
}

#[test]
fn health_reply_lines() {
    let mut b = Balancer::default();
    let s = b.servers.ensure_slot(0);
    s.host = Host::Ip("127.0.0.1".parse().unwrap());
    s.port = 8081;
    assert_eq!(
        queries::health_reply(&b, 100),
        "0 addr 127.0.0.1 port 8081 state unchecked passes 0 fails 0 last none age - downs 0 ups 0\n"
    );
    b.settings.health_check = 2;
    use crate::state::servers::ProbeResult;
    for t in 0..3 {
        b.servers.backends[0]
            .health
            .record(ProbeResult::Mismatch, 90 + t, 3, 2);
    }
    assert_eq!(
        queries::health_reply(&b, 100),
        "0 addr 127.0.0.1 port 8081 state down passes 0 fails 3 last mismatch age 8 downs 1 ups 0\n"
    );
}

#[test]
fn geoip_commands_parse() {
    assert_eq!(
        parse("geoip_db /x/GeoIP.dat"),
        Ok(Some(Command::GeoipDb(Some("/x/GeoIP.dat".into()))))
    );
    assert_eq!(parse("geoip_db"), Ok(Some(Command::GeoipDb(None))));
    assert_eq!(parse("no geoip_db"), Ok(Some(Command::NoGeoipDb)));
    assert_eq!(
        parse("country ::ffff:127.0.0.2"),
        Ok(Some(Command::Country("::ffff:127.0.0.2".parse().unwrap())))
    );
    assert_eq!(
        parse("country").unwrap_err().reply(),
        "error: country: missing address\n"
    );
    assert_eq!(
        parse("country host.example").unwrap_err().reply(),
        "error: country: 'host.example' is not an IP address\n"
    );
    assert_eq!(
        parse("acl 3 deny country").unwrap_err().reply(),
        "error: acl: expected country\n"
    );
    let Ok(Some(Command::Acl(3, e))) = parse("acl 3 deny country cn") else {
        panic!("acl country");
    };
    assert_eq!(e.to_string(), "deny country CN");
}

#[test]
fn servers_lines_gain_frames_only_in_dsr_mode_and_dsr_is_an_error_without_it() {
    let mut b = Balancer::default();
    run(&mut b, "server 0 address 192.0.2.21 port 80");
    let plain = servers_reply(&b);
    assert!(plain.ends_with(" sx 0 rx 0\n"), "{plain}");
    assert!(queries::dsr_reply(&b).is_err());
    b.dsr = Some(Default::default());
    b.servers.backends[0].frames = 7;
    assert_eq!(
        servers_reply(&b),
        plain.replace("rx 0\n", "rx 0 frames 7\n")
    );
    let dsr = queries::dsr_reply(&b).unwrap();
    assert!(dsr.contains("\nforwarded 0\n"), "{dsr}");
    assert!(dsr.contains("\ntarpit off tarpitted 0\n"), "{dsr}");
}

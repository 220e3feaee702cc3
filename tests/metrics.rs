//! Prometheus metrics: the `metrics` command and the `metrics_listen`
//! endpoint (man/penctl.1). Both outputs pass `promtool check metrics`
//! (Debian package `prometheus`; skipped with a note where it is missing),
//! and after known traffic every counter has its exact value.

mod common;
use common::*;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A pen with a control port and a metrics endpoint, in front of
/// `backends`, with `extra` options.
struct Metered {
    pen: Pen,
    cport: u16,
    mport: u16,
}

fn metered(extra: &[&str], backends: &[String]) -> Metered {
    let (cport, mport) = (free_port(), free_port());
    let c = format!("127.0.0.1:{cport}");
    let m = format!("metrics_listen 127.0.0.1:{mport}");
    let mut args = vec!["-u", "root", "-C", &c, "-o", &m];
    args.extend_from_slice(extra);
    let pen = Pen::serve(&args, backends);
    wait_for_port(cport);
    wait_for_port(mport);
    Metered { pen, cport, mport }
}

/// `GET PATH` on the endpoint: (status line, headers, body).
fn http_get(port: u16, path: &str) -> (String, String, String) {
    let mut s = TcpStream::connect(local(port)).expect("connect to the metrics endpoint");
    s.set_read_timeout(Some(DEADLINE)).expect("read timeout");
    write!(s, "GET {path} HTTP/1.1\r\nHost: pen\r\n\r\n").expect("send the request");
    let mut all = String::new();
    s.read_to_string(&mut all).expect("read the response");
    let (head, body) = all.split_once("\r\n\r\n").expect("a response head");
    let (status, headers) = head.split_once("\r\n").unwrap_or((head, ""));
    (status.to_string(), headers.to_string(), body.to_string())
}

/// The body of a successful scrape.
fn scrape(port: u16) -> String {
    let (status, headers, body) = http_get(port, "/metrics");
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(
        headers.contains("Content-Type: text/plain; version=0.0.4\r\n")
            || headers.ends_with("Content-Type: text/plain; version=0.0.4"),
        "{headers}"
    );
    body
}

/// `promtool check metrics` accepts `text` (skipped if promtool is missing).
fn promtool_accepts(text: &str) {
    let child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let Ok(mut child) = child else {
        eprintln!("promtool not installed (Debian: prometheus); format check skipped");
        return;
    };
    let mut stdin = child.stdin.take().expect("promtool stdin");
    stdin.write_all(text.as_bytes()).expect("feed promtool");
    drop(stdin);
    let out = child.wait_with_output().expect("promtool runs");
    assert!(
        out.status.success(),
        "promtool: {}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The value of the sample `series` (name and labels exactly as printed).
fn sample(text: &str, series: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

fn server_series(name: &str, index: usize, address: &str) -> String {
    format!("{name}{{server=\"{index}\",address=\"{address}\"}}")
}

fn refused(text: &str, reason: &str) -> u64 {
    sample(
        text,
        &format!("pen_clients_refused_total{{reason=\"{reason}\"}}"),
    )
    .expect("a refused series")
}

/// Waits until pen holds no pair (every pair settled its bytes).
fn wait_no_pairs(cport: u16) {
    wait_until(DEADLINE, "pairs to end", || {
        sample(&ctl(cport, "metrics"), "pen_pairs") == Some(0)
    });
}

/// One client: sends `data`, half-closes, reads the echo to EOF.
fn echo_exchange(port: u16, data: &[u8]) {
    let mut s = connect_from("127.0.0.1", local(port)).expect("connect to pen");
    s.write_all(data).expect("send");
    s.shutdown(Shutdown::Write).expect("half-close");
    let mut back = Vec::new();
    s.read_to_end(&mut back).expect("read the echo");
    assert_eq!(back, data);
}

/// A client pen closes without a server: connects, sees EOF at once.
fn refused_client(src: &str, port: u16) {
    let mut s = connect_from(src, local(port)).expect("connect to pen");
    let mut buf = [0u8; 16];
    assert_eq!(s.read(&mut buf).expect("EOF"), 0);
}

#[test]
fn both_outputs_pass_promtool_and_other_paths_are_404() {
    let b = Backend::farm(2, Behaviour::Name);
    let m = metered(&[], &specs(&b));
    let text = ctl(m.cport, "metrics");
    assert!(text.contains("# TYPE pen_build_info gauge"), "{text}");
    let features = if cfg!(feature = "tls") { "tls" } else { "" };
    assert!(text.contains(&format!(
        "pen_build_info{{version=\"0.34.1\",features=\"{features}\"}} 1"
    )));
    // Every family has its HELP and TYPE.
    for l in text.lines().filter(|l| !l.starts_with('#')) {
        let name = l.split(['{', ' ']).next().unwrap_or_default();
        assert!(text.contains(&format!("# HELP {name} ")), "{name}");
        assert!(text.contains(&format!("# TYPE {name} ")), "{name}");
    }
    promtool_accepts(&text);
    promtool_accepts(&scrape(m.mport));
    let (status, _, _) = http_get(m.mport, "/");
    assert_eq!(status, "HTTP/1.1 404 Not Found");
    let (status, _, _) = http_get(m.mport, "/metrics/x");
    assert_eq!(status, "HTTP/1.1 404 Not Found");
    assert_eq!(
        ctl(m.cport, "metrics_listen"),
        format!("127.0.0.1:{}\n", m.mport)
    );
}

#[test]
fn counters_have_exact_values_after_known_traffic() {
    let b = Backend::farm(2, Behaviour::Echo);
    let addr = |i: usize| b[i].spec();
    let m = metered(&["-r"], &specs(&b));
    let (port, cport) = (m.pen.port, m.cport);
    // Six clients of 100 bytes each, round robin: three per server.
    let data = random_bytes(16, 100);
    for _ in 0..6 {
        echo_exchange(port, &data);
    }
    wait_no_pairs(cport);
    let text = scrape(m.mport);
    promtool_accepts(&text);
    for i in 0..2 {
        let v = |name| sample(&text, &server_series(name, i, &addr(i)));
        assert_eq!(v("pen_server_connections_total"), Some(3), "{text}");
        assert_eq!(v("pen_server_sent_bytes_total"), Some(300), "{text}");
        assert_eq!(v("pen_server_received_bytes_total"), Some(300), "{text}");
        assert_eq!(v("pen_server_connections"), Some(0), "{text}");
        assert_eq!(v("pen_server_connect_failures_total"), Some(0), "{text}");
        assert_eq!(v("pen_server_blacklisted"), Some(0), "{text}");
    }
    assert_eq!(sample(&text, "pen_clients_accepted_total"), Some(6));

    // acl: client_acl denies 127.0.0.2.
    ctl(cport, "acl 1 deny 127.0.0.2");
    ctl(cport, "client_acl 1");
    refused_client("127.0.0.2", port);
    wait_until(DEADLINE, "the acl refusal", || {
        refused(&ctl(cport, "metrics"), "acl") == 1
    });
    ctl(cport, "client_acl 0");

    // limit: both servers at their max of one.
    ctl(cport, "server 0 max 1");
    ctl(cport, "server 1 max 1");
    let hold = |_| {
        let mut s = connect_from("127.0.0.1", local(port)).expect("connect to pen");
        s.write_all(b"x").expect("send");
        let mut one = [0u8; 1];
        s.read_exact(&mut one).expect("the echo");
        s
    };
    let held: Vec<TcpStream> = (0..2).map(hold).collect();
    let text = ctl(cport, "metrics");
    assert_eq!(sample(&text, "pen_pairs"), Some(2), "{text}");
    refused_client("127.0.0.1", port);
    wait_until(DEADLINE, "the limit refusal", || {
        refused(&ctl(cport, "metrics"), "limit") == 1
    });
    drop(held);
    wait_no_pairs(cport);
    ctl(cport, "server 0 max 0");
    ctl(cport, "server 1 max 0");

    // no_server, after a connect failure: server 0 blacklisted, server 1
    // re-pointed to a closed port (a new label set, counting from zero).
    let dead = format!("127.0.0.1:{}", refused_port());
    let (host, dead_port) = dead.split_once(':').unwrap();
    ctl(cport, &format!("server 1 address {host} port {dead_port}"));
    ctl(cport, "server 0 blacklist 60");
    refused_client("127.0.0.1", port);
    wait_until(DEADLINE, "the no_server refusal", || {
        refused(&ctl(cport, "metrics"), "no_server") == 1
    });
    let text = ctl(cport, "metrics");
    promtool_accepts(&text);
    let v = |name, i, a: &str| sample(&text, &server_series(name, i, a));
    assert_eq!(v("pen_server_connect_failures_total", 1, &dead), Some(1));
    assert_eq!(v("pen_server_connections_total", 1, &dead), Some(0));
    assert_eq!(v("pen_server_sent_bytes_total", 1, &dead), Some(0));
    assert_eq!(v("pen_server_blacklisted", 1, &dead), Some(1));
    assert_eq!(v("pen_server_blacklisted", 0, &addr(0)), Some(1));
    // The old address of slot 1 is gone; slot 0 kept counting.
    assert!(!text.contains(&addr(1)), "{text}");
    assert_eq!(v("pen_server_connections_total", 0, &addr(0)), Some(4));
    assert_eq!(v("pen_server_sent_bytes_total", 0, &addr(0)), Some(301));
    assert_eq!(v("pen_server_received_bytes_total", 0, &addr(0)), Some(301));
    assert_eq!(refused(&text, "acl"), 1);
    assert_eq!(refused(&text, "limit"), 1);
    assert_eq!(refused(&text, "thread"), 0);
    // 6 + acl 1 + 2 held + limit 1 + no_server 1.
    assert_eq!(sample(&text, "pen_clients_accepted_total"), Some(11));
}

#[test]
fn reload_keeps_the_endpoint_and_the_counters_and_write_saves_it() {
    let b = Backend::start("R", Behaviour::Name);
    let mport = free_port();
    let dir = TempDir::new("metrics-reload");
    let cfg = dir.file("pen.cfg", &format!("metrics_listen 127.0.0.1:{mport}\n"));
    let m = metered_with_file(&cfg, &[b.spec()]);
    wait_for_port(mport);
    for _ in 0..3 {
        assert_eq!(ask("127.0.0.1", m.pen.port), "R");
    }
    wait_no_pairs(m.cport);
    // The same file plus a line whose effect shows the reload is done.
    std::fs::write(
        &cfg,
        format!("metrics_listen 127.0.0.1:{mport}\nblacklist 7\n"),
    )
    .expect("rewrite the config file");
    m.pen.signal("HUP");
    wait_until(DEADLINE, "the reload", || {
        ctl(m.cport, "blacklist") == "7\n"
    });
    assert_eq!(
        ctl(m.cport, "metrics_listen"),
        format!("127.0.0.1:{mport}\n")
    );
    let text = scrape(mport);
    assert_eq!(sample(&text, "pen_clients_accepted_total"), Some(3));
    let series = server_series("pen_server_connections_total", 0, &b.spec());
    assert_eq!(sample(&text, &series), Some(3), "{text}");
    assert!(
        !m.pen.stderr().contains("reload failed"),
        "{}",
        m.pen.stderr()
    );
    // write saves it; without it, the line is absent.
    let out = dir.join("written.cfg");
    ctl(m.cport, &format!("write {}", out.display()));
    let written = std::fs::read_to_string(&out).expect("written file");
    assert!(written.contains(&format!("\nmetrics_listen 127.0.0.1:{mport}\n")));
    ctl(m.cport, "no metrics_listen");
    wait_until(DEADLINE, "the endpoint to close", || !is_listening(mport));
    ctl(m.cport, &format!("write {}", out.display()));
    let written = std::fs::read_to_string(&out).expect("written file");
    assert!(!written.contains("metrics_listen"), "{written}");
    // A bad address is an error reply.
    assert!(ctl(m.cport, "metrics_listen nohost..x:1").starts_with("error: "));
}

fn metered_with_file(cfg: &std::path::Path, backends: &[String]) -> Metered {
    let cport = free_port();
    let c = format!("127.0.0.1:{cport}");
    let pen = Pen::serve(
        &["-u", "root", "-C", &c, "-F", cfg.to_str().unwrap()],
        backends,
    );
    wait_for_port(cport);
    Metered {
        pen,
        cport,
        mport: 0,
    }
}

#[test]
fn a_silent_scraper_delays_nothing() {
    let b = Backend::start("S", Behaviour::Name);
    let m = metered(&[], &[b.spec()]);
    // Scrapers that connect and send nothing (each holds only its thread).
    let silent: Vec<TcpStream> = (0..3)
        .map(|_| TcpStream::connect(local(m.mport)).expect("connect"))
        .collect();
    let start = Instant::now();
    for _ in 0..5 {
        assert_eq!(ask("127.0.0.1", m.pen.port), "S");
        promtool_accepts(&scrape(m.mport));
        assert!(ctl(m.cport, "metrics").contains("pen_pairs"));
    }
    let took = start.elapsed();
    assert!(took < Duration::from_secs(3), "took {took:?}");
    drop(silent);
}

#[test]
fn health_checks_show_a_dead_server_down() {
    let live = Backend::start("L", Behaviour::Name);
    let dead = format!("127.0.0.1:{}", refused_port());
    let m = metered(
        &["-o", "health_check 1", "-o", "health_check_fall 1"],
        &[live.spec(), dead.clone()],
    );
    let series = |i, a: &str| server_series("pen_server_health_down", i, a);
    wait_until(DEADLINE, "the dead server to be down", || {
        sample(&ctl(m.cport, "metrics"), &series(1, &dead)) == Some(1)
    });
    let text = scrape(m.mport);
    promtool_accepts(&text);
    assert_eq!(sample(&text, &series(0, &live.spec())), Some(0), "{text}");
}

//! End-to-end tests of penlog, penlogd and mergelogs: the real binaries,
//! files in a private temporary directory, UDP on loopback only (distinct
//! 127.0.0.x addresses play pen and the web servers).

mod common;
use common::*;

use std::fs;
use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The lines a program wrote to stdout.
fn stdout_lines(output: &Output) -> Vec<String> {
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

/// What a program wrote to stderr.
fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Runs `program ARGS` and checks it fails as a usage error: exit 2, two
/// lines on stderr (the problem, naming `expected`; the --help hint).
fn assert_usage_error(program: Program, name: &str, args: &[&str], expected: &str) {
    let out = run(program, args);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{name} {args:?}: {err}");
    assert!(out.stdout.is_empty(), "{name} {args:?} wrote to stdout");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 2, "{name} {args:?}: {err}");
    assert!(lines[0].starts_with(&format!("{name}: ")), "{err}");
    assert!(lines[0].contains(expected), "{name} {args:?}: {err}");
    assert_eq!(
        lines[1],
        format!("Try '{name} --help' for more information.")
    );
}

/// Checks `--help` and `--version` of `program` (called `name`).
fn assert_help_and_version(program: Program, name: &str) {
    let help = run(program, &["--help"]);
    assert_eq!(help.status.code(), Some(0));
    assert!(
        String::from_utf8_lossy(&help.stdout).starts_with("Usage"),
        "{name} --help"
    );
    let version = run(program, &["--version"]);
    assert_eq!(version.status.code(), Some(0));
    assert_eq!(
        String::from_utf8_lossy(&version.stdout),
        format!("{name} (pen) {}\n", env!("CARGO_PKG_VERSION"))
    );
}

// ---------------------------------------------------------------- mergelogs

/// pen's request log (doc/pen-0.34.1.md, "Request log file"): CLIENT UNIXTIME
/// SERVER REQUEST. 1795683600 is 26/Nov/2026:09:00:00 UTC.
const PEN_LOG: &str = "\
10.1.1.1 1795683600 127.0.0.2 GET /x HTTP/1.0
10.1.1.2 1795683601 127.0.0.3 GET /z HTTP/1.0
this is not a pen log line
10.1.1.3 1795683605 127.0.0.2 GET /x HTTP/1.0
10.1.1.4 1795683620 127.0.0.3 POST /form HTTP/1.1
10.1.1.5 1795683630 127.0.0.2 GET /far HTTP/1.0
";

/// `penlogd -f -a ADDR -l LOG PORT`, killed when the guard drops.
fn foreground_penlogd(addr: &str, log: &Path, port: u16) -> ChildGuard {
    ChildGuard::spawn(
        Command::new(PENLOGD)
            .args(["-f", "-a", addr, "-l"])
            .arg(log)
            .arg(port.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null()),
    )
}

#[test]
fn mergelogs_substitutes_clients_oldest_line_first() {
    let dir = TempDir::new("merge");
    let pen = dir.file("pen.log", PEN_LOG);
    // Server .2: not in time order (09:00:04 before 09:00:00), a malformed
    // line, a combined-format line without a match, a request far outside a
    // small jitter window.
    let server2 = dir.file(
        "web2.log",
        "127.0.0.1 - - [26/Nov/2026:09:00:04 +0000] \"GET /x HTTP/1.0\" 200 5\n\
         127.0.0.1 - - [26/Nov/2026:09:00:00 +0000] \"GET /x HTTP/1.0\" 200 5\n\
         garbage without a timestamp\n\
         127.0.0.1 - frank [26/Nov/2026:09:00:09 +0000] \"GET /nomatch HTTP/1.0\" 404 1 \"http://ref/\" \"agent/1.0\"\n\
         127.0.0.1 - - [26/Nov/2026:10:00:30 +0000] \"GET /far HTTP/1.0\" 200 3\n",
    );
    // Server .3: times in another zone (converted to UTC), combined format.
    let server3 = dir.file(
        "web3.log",
        "127.0.0.1 - - [26/Nov/2026:10:00:01 +0100] \"GET /z HTTP/1.0\" 200 5\n\
         127.0.0.1 - bob [26/Nov/2026:03:00:20 -0600] \"POST /form HTTP/1.1\" 302 0 \"-\" \"curl/8\"\n\
         127.0.0.1 - - [31/Nov/2026:09:00:00 +0000] \"GET /bad-date HTTP/1.0\" 200 5\n",
    );
    let out = run(
        MERGELOGS,
        &[
            "-j",
            "60",
            "-p",
            pen.to_str().unwrap(),
            &format!("127.0.0.2:{}", server2.display()),
            &format!("127.0.0.3:{}", server3.display()),
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let expected = [
        "10.1.1.2 - - [26/Nov/2026:09:00:01 +0000] \"GET /z HTTP/1.0\" 200 5",
        "10.1.1.3 - - [26/Nov/2026:09:00:04 +0000] \"GET /x HTTP/1.0\" 200 5",
        "10.1.1.1 - - [26/Nov/2026:09:00:00 +0000] \"GET /x HTTP/1.0\" 200 5",
        "127.0.0.2 - frank [26/Nov/2026:09:00:09 +0000] \"GET /nomatch HTTP/1.0\" 404 1 \"http://ref/\" \"agent/1.0\"",
        "10.1.1.4 - bob [26/Nov/2026:09:00:20 +0000] \"POST /form HTTP/1.1\" 302 0 \"-\" \"curl/8\"",
        "127.0.0.2 - - [26/Nov/2026:10:00:30 +0000] \"GET /far HTTP/1.0\" 200 3",
    ];
    assert_eq!(stdout_lines(&out), expected);
    let err = stderr(&out);
    assert!(err.contains("pen.log:3: skipping malformed line"), "{err}");
    assert!(err.contains("web2.log:3: skipping malformed line"), "{err}");
    assert!(err.contains("web3.log:3: skipping malformed line"), "{err}");
    assert_eq!(err.lines().count(), 3, "{err}");
}

#[test]
fn mergelogs_without_cache_gives_the_same_result() {
    let dir = TempDir::new("nocache");
    let pen = dir.file("pen.log", PEN_LOG);
    let web = dir.file(
        "web.log",
        "127.0.0.1 - - [26/Nov/2026:09:00:04 +0000] \"GET /x HTTP/1.0\" 200 5\n\
         127.0.0.1 - - [26/Nov/2026:09:00:00 +0000] \"GET /x HTTP/1.0\" 200 5\n",
    );
    let server = format!("127.0.0.2:{}", web.display());
    let cached = run(MERGELOGS, &["-p", pen.to_str().unwrap(), &server]);
    let uncached = run(MERGELOGS, &["-c", "-p", pen.to_str().unwrap(), &server]);
    assert_eq!(cached.status.code(), Some(0));
    assert_eq!(uncached.status.code(), Some(0));
    assert_eq!(stdout_lines(&cached), stdout_lines(&uncached));
    assert_eq!(
        stdout_lines(&cached),
        [
            "10.1.1.3 - - [26/Nov/2026:09:00:04 +0000] \"GET /x HTTP/1.0\" 200 5",
            "10.1.1.1 - - [26/Nov/2026:09:00:00 +0000] \"GET /x HTTP/1.0\" 200 5",
        ]
    );
}

#[test]
fn mergelogs_time_offset_shifts_pen_timestamps() {
    let dir = TempDir::new("offset");
    // pen's clock ran an hour ahead: -t 3600 brings it back.
    let pen = dir.file("pen.log", "10.9.9.9 1795687200 127.0.0.2 GET / HTTP/1.1\n");
    let web = dir.file(
        "web.log",
        "127.0.0.1 - - [26/Nov/2026:09:00:00 +0000] \"GET / HTTP/1.1\" 200 5\n",
    );
    let server = format!("127.0.0.2:{}", web.display());
    let shifted = run(
        MERGELOGS,
        &["-t", "3600", "-p", pen.to_str().unwrap(), &server],
    );
    assert!(stdout_lines(&shifted)[0].starts_with("10.9.9.9 "));
    let unshifted = run(MERGELOGS, &["-p", pen.to_str().unwrap(), &server]);
    assert!(stdout_lines(&unshifted)[0].starts_with("127.0.0.2 "));
}

#[test]
fn mergelogs_command_line_errors() {
    assert_usage_error(MERGELOGS, "mergelogs", &[], "-p");
    assert_usage_error(MERGELOGS, "mergelogs", &["-p", "x"], "SERVER:LOGFILE");
    assert_usage_error(
        MERGELOGS,
        "mergelogs",
        &["-p", "x", "nocolon"],
        "bogus server argument 'nocolon'",
    );
    assert_usage_error(MERGELOGS, "mergelogs", &["-r", "x"], "unknown option -r");
    assert_usage_error(MERGELOGS, "mergelogs", &["-a", "x"], "unknown option -a");
    assert_usage_error(MERGELOGS, "mergelogs", &["-p"], "-p needs an argument");
    assert_usage_error(
        MERGELOGS,
        "mergelogs",
        &["-j", "soon", "-p", "x", "a:b"],
        "-j",
    );
    assert_help_and_version(MERGELOGS, "mergelogs");

    let dir = TempDir::new("mergeerr");
    let missing = dir.join("missing.log");
    let out = run(MERGELOGS, &["-p", missing.to_str().unwrap(), "a:b"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains(&format!("cannot open pen log '{}'", missing.display())));
    let pen = dir.file("pen.log", "");
    let out = run(
        MERGELOGS,
        &[
            "-p",
            pen.to_str().unwrap(),
            &format!("127.0.0.2:{}", missing.display()),
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("log file of server 127.0.0.2"),
        "{}",
        stderr(&out)
    );
}

// ------------------------------------------------------------ penlog, penlogd

#[test]
fn penlog_sends_lines_and_splits_long_ones() {
    let receiver = UdpSocket::bind("127.0.0.1:0").unwrap();
    receiver.set_read_timeout(Some(DEADLINE)).unwrap();
    let port = receiver.local_addr().unwrap().port().to_string();
    let long_line = "L".repeat(1500);
    let input = format!("first line\n{long_line}\nlast line without newline");
    let out = run_command(
        Command::new(PENLOG).args(["127.0.0.1", &port, "127.0.0.5"]),
        input.into_bytes(),
        DEADLINE,
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let mut datagrams = Vec::new();
    let mut buf = [0u8; 4096];
    // Bounded: stray datagrams (another test's probe that picked the same
    // port) are skipped, interrupted receives retried.
    for _ in 0..100 {
        if datagrams.len() == 4 {
            break;
        }
        match receiver.recv_from(&mut buf) {
            Ok((len, from)) if from.ip().to_string() == "127.0.0.5" => {
                datagrams.push(buf[..len].to_vec())
            }
            Ok((_, from)) => eprintln!("skipping a datagram from {from}"),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => panic!("receiving datagram {}: {e}", datagrams.len() + 1),
        }
    }
    assert_eq!(datagrams.len(), 4);
    assert_eq!(datagrams[0], b"first line\n");
    assert_eq!(datagrams[1], long_line.as_bytes()[..1023].to_vec());
    assert_eq!(
        datagrams[2],
        format!("{}\n", &long_line[1023..]).into_bytes()
    );
    assert_eq!(datagrams[3], b"last line without newline");
}

#[test]
fn penlog_command_line_errors() {
    assert_usage_error(PENLOG, "penlog", &[], "SERVER and PORT are required");
    assert_usage_error(
        PENLOG,
        "penlog",
        &["127.0.0.1"],
        "SERVER and PORT are required",
    );
    assert_usage_error(
        PENLOG,
        "penlog",
        &["127.0.0.1", "port"],
        "'port' is not a port number",
    );
    assert_usage_error(
        PENLOG,
        "penlog",
        &["127.0.0.1", "0"],
        "is not a port number",
    );
    assert_usage_error(
        PENLOG,
        "penlog",
        &["a", "1", "b", "c"],
        "too many arguments",
    );
    assert_usage_error(PENLOG, "penlog", &["-x", "a", "1"], "unknown option -x");
    assert_help_and_version(PENLOG, "penlog");
    // MY_IP of another family than SERVER: a run-time error.
    let out = run(PENLOG, &["127.0.0.1", "9", "::1"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("no IPv6 address"), "{}", stderr(&out));
}

#[test]
fn penlogd_command_line_errors() {
    assert_usage_error(PENLOGD, "penlogd", &[], "PORT is required");
    assert_usage_error(PENLOGD, "penlogd", &["0"], "'0' is not a port number");
    assert_usage_error(PENLOGD, "penlogd", &["-f", "1", "2"], "too many arguments");
    assert_usage_error(PENLOGD, "penlogd", &["-n", "0", "1"], "-n");
    assert_usage_error(PENLOGD, "penlogd", &["-n", "many", "1"], "-n: 'many'");
    assert_usage_error(PENLOGD, "penlogd", &["-h"], "unknown option -h");
    assert_usage_error(PENLOGD, "penlogd", &["1", "-l"], "-l needs an argument");
    assert_help_and_version(PENLOGD, "penlogd");
}

/// Sends a web line that cannot match anything from `prober` and waits until
/// it shows up in `log`: proves penlogd is up and has handled everything
/// sent before.
fn sync_with_penlogd(prober: &UdpSocket, penlogd: SocketAddr, log: &Path, tag: &str) {
    let line = format!("probe - - [26/Nov/2026:09:00:00 +0000] \"SYNC {tag}\" 0 0\n");
    // Sent again now and then: penlogd may not be listening yet.
    let mut sent: Option<Instant> = None;
    wait_until(DEADLINE, &format!("penlogd to log {tag}"), || {
        if sent.is_none_or(|at| at.elapsed() >= Duration::from_millis(250)) {
            prober.send_to(line.as_bytes(), penlogd).unwrap();
            sent = Some(Instant::now());
        }
        fs::read_to_string(log).unwrap_or_default().contains(&line)
    });
}

/// The log without the probe lines.
fn logged_lines(log: &Path) -> Vec<String> {
    fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.starts_with("probe "))
        .map(str::to_string)
        .collect()
}

/// Runs `penlog SERVER PORT MY_IP` with `input`; it must succeed.
fn penlog(server: &str, port: u16, my_ip: &str, input: &str) {
    let out = run_command(
        Command::new(PENLOG).args([server, &port.to_string(), my_ip]),
        input.as_bytes().to_vec(),
        DEADLINE,
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

#[test]
fn penlog_to_penlogd_substitutes_the_real_client() {
    let dir = TempDir::new("penlogd");
    let log = dir.join("access.log");
    let port = free_udp_port("127.0.0.1");
    let _daemon = foreground_penlogd("127.0.0.1", &log, port);
    let penlogd: SocketAddr = ([127, 0, 0, 1], port).into();
    let pen = UdpSocket::bind("127.0.0.1:0").unwrap();
    let prober = UdpSocket::bind("127.0.0.9:0").unwrap();
    sync_with_penlogd(&prober, penlogd, &log, "start");

    // Playing pen: two requests to web server .2, one to .3, the network
    // format of doc/pen-0.34.1.md, "penlogd datagrams".
    for record in [
        "+ 192.0.2.1 127.0.0.2 GET /x HTTP/1.0\n",
        "+ 192.0.2.2 127.0.0.3 GET /x HTTP/1.0\n",
        "+ 192.0.2.3 127.0.0.2 GET /y HTTP/1.1\n",
        "+ 192.0.2.4 bogus GET /x HTTP/1.0\n",
    ] {
        pen.send_to(record.as_bytes(), penlogd).unwrap();
    }
    sync_with_penlogd(&prober, penlogd, &log, "records");

    penlog(
        "127.0.0.1",
        port,
        "127.0.0.2",
        "127.0.0.1 - - [26/Nov/2026:09:00:00 +0000] \"GET /x HTTP/1.0\" 200 5\n\
         127.0.0.1 - alice [26/Nov/2026:09:00:01 +0000] \"GET /y HTTP/1.1\" 200 7 \"-\" \"agent\"\n\
         127.0.0.1 - - [26/Nov/2026:09:00:02 +0000] \"GET /unknown HTTP/1.0\" 404 0\n\
         a line without quotes\n",
    );
    sync_with_penlogd(&prober, penlogd, &log, "server2");
    penlog(
        "127.0.0.1",
        port,
        "127.0.0.3",
        "127.0.0.1 - - [26/Nov/2026:09:00:03 +0000] \"GET /x HTTP/1.0\" 200 5\n",
    );
    sync_with_penlogd(&prober, penlogd, &log, "server3");
    penlog(
        "127.0.0.1",
        port,
        "127.0.0.4",
        "127.0.0.1 - - [26/Nov/2026:09:00:04 +0000] \"GET /x HTTP/1.0\" 200 5\n",
    );
    sync_with_penlogd(&prober, penlogd, &log, "server4");

    assert_eq!(
        logged_lines(&log),
        [
            "192.0.2.1 - - [26/Nov/2026:09:00:00 +0000] \"GET /x HTTP/1.0\" 200 5",
            "192.0.2.3 - alice [26/Nov/2026:09:00:01 +0000] \"GET /y HTTP/1.1\" 200 7 \"-\" \"agent\"",
            "127.0.0.1 - - [26/Nov/2026:09:00:02 +0000] \"GET /unknown HTTP/1.0\" 404 0",
            "192.0.2.2 - - [26/Nov/2026:09:00:03 +0000] \"GET /x HTTP/1.0\" 200 5",
            "127.0.0.1 - - [26/Nov/2026:09:00:04 +0000] \"GET /x HTTP/1.0\" 200 5",
        ]
    );
}

#[test]
fn penlogd_over_ipv6() {
    let Ok(probe_v6) = UdpSocket::bind("[::1]:0") else {
        eprintln!("no IPv6 loopback; skipped");
        return;
    };
    let port = probe_v6.local_addr().unwrap().port();
    drop(probe_v6);
    let dir = TempDir::new("penlogd6");
    let log = dir.join("access.log");
    let _daemon = foreground_penlogd("::1", &log, port);
    let penlogd = SocketAddr::new("::1".parse().unwrap(), port);
    let pen = UdpSocket::bind("[::1]:0").unwrap();
    let prober = UdpSocket::bind("[::1]:0").unwrap();
    sync_with_penlogd(&prober, penlogd, &log, "start");
    pen.send_to(b"+ 2001:db8::42 ::1 GET /six HTTP/1.1\n", penlogd)
        .unwrap();
    sync_with_penlogd(&prober, penlogd, &log, "record");
    penlog(
        "::1",
        port,
        "::1",
        "::1 - - [26/Nov/2026:09:00:00 +0000] \"GET /six HTTP/1.1\" 200 5\n",
    );
    sync_with_penlogd(&prober, penlogd, &log, "line");
    assert_eq!(
        logged_lines(&log),
        ["2001:db8::42 - - [26/Nov/2026:09:00:00 +0000] \"GET /six HTTP/1.1\" 200 5"]
    );
}

#[test]
fn penlogd_reopens_its_log_on_hup() {
    let dir = TempDir::new("hup");
    let log = dir.join("access.log");
    let rotated = dir.join("access.log.1");
    let port = free_udp_port("127.0.0.1");
    let daemon = foreground_penlogd("127.0.0.1", &log, port);
    let penlogd: SocketAddr = ([127, 0, 0, 1], port).into();
    let prober = UdpSocket::bind("127.0.0.9:0").unwrap();
    sync_with_penlogd(&prober, penlogd, &log, "before");
    fs::rename(&log, &rotated).unwrap();
    send_signal(daemon.pid(), "HUP");
    sync_with_penlogd(&prober, penlogd, &log, "after");
    assert!(fs::read_to_string(&rotated)
        .unwrap()
        .contains("SYNC before"));
    assert!(!fs::read_to_string(&log).unwrap().contains("SYNC before"));
    // TERM: clean exit 0.
    send_signal(daemon.pid(), "TERM");
    let mut daemon = daemon;
    let status = daemon.wait_exit(DEADLINE, "penlogd after SIGTERM");
    assert_eq!(status.code(), Some(0));
}

#[test]
fn penlogd_daemon_mode_writes_and_removes_its_pid_file() {
    let dir = TempDir::new("daemon");
    let log = dir.join("access.log");
    let pid_path = dir.join("penlogd.pid");
    let port = free_udp_port("127.0.0.1");
    // Without -f the command returns once the daemon is ready.
    let out = run(
        PENLOGD,
        &[
            "-a",
            "127.0.0.1",
            "-p",
            pid_path.to_str().unwrap(),
            "-l",
            log.to_str().unwrap(),
            &port.to_string(),
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let pid_text = fs::read_to_string(&pid_path).unwrap();
    assert!(!pid_text.ends_with('\n'), "pid file has a newline");
    let pid: u32 = pid_text.parse().unwrap();
    let _guard = DaemonGuard(pid);
    assert!(process_alive(pid));

    let penlogd: SocketAddr = ([127, 0, 0, 1], port).into();
    let prober = UdpSocket::bind("127.0.0.9:0").unwrap();
    sync_with_penlogd(&prober, penlogd, &log, "daemon");

    send_signal(pid, "TERM");
    wait_until(DEADLINE, "the pid file to disappear", || !pid_path.exists());
    wait_gone(pid);
}

#[test]
fn penlogd_reports_start_up_errors_before_returning() {
    let dir = TempDir::new("daemonerr");
    // Port in use: found before detaching.
    let busy = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port().to_string();
    let pid_path = dir.join("p.pid");
    let out = run(
        PENLOGD,
        &["-a", "127.0.0.1", "-p", pid_path.to_str().unwrap(), &port],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).starts_with("penlogd: cannot listen on UDP 127.0.0.1:"),
        "{}",
        stderr(&out)
    );
    assert!(!pid_path.exists());
    drop(busy);

    // Unwritable pid file: found by the detached process and relayed.
    let bad_pid = dir.join("no-such-dir").join("p.pid");
    let port = free_udp_port("127.0.0.1").to_string();
    let out = run(
        PENLOGD,
        &["-a", "127.0.0.1", "-p", bad_pid.to_str().unwrap(), &port],
    );
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out).lines().next().unwrap_or(""),
        format!(
            "penlogd: cannot write pid file '{}': No such file or directory (os error 2)",
            bad_pid.display()
        )
    );

    // Unknown user: found before detaching.
    let out = run(
        PENLOGD,
        &["-a", "127.0.0.1", "-u", "no-such-user-pen", &port],
    );
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stderr(&out), "penlogd: unknown user 'no-such-user-pen'\n");
}

//! The command line: bad input of every kind gets one clear line on stderr
//! and a non-zero exit (pen 0.34.1 exits 0 on usage errors; we do not).

mod common;
use common::*;

fn fails_with(args: &[&str], needle: &str) {
    let (code, _out, err) = run_pen(args);
    assert_eq!(code, Some(1), "pen {args:?}: stderr {err:?}");
    assert!(
        err.contains(needle),
        "pen {args:?}: stderr {err:?} lacks {needle:?}"
    );
    assert_eq!(
        err.trim_end().lines().count(),
        1,
        "pen {args:?}: more than one line: {err:?}"
    );
}

#[test]
fn usage_errors() {
    fails_with(
        &["-f", "-Y", "8080", "127.0.0.1:80"],
        "invalid option -- 'Y'",
    );
    fails_with(&["-f", "8080", "-b"], "option requires an argument -- 'b'");
    fails_with(&["-f"], "no listen address");
    fails_with(&["-f", "-t", "0", "8080"], "option -t");
    fails_with(&["-f", "-b", "x", "8080"], "option -b");
    fails_with(&["-f", "-x", "-1", "8080"], "option -x");
    fails_with(&["-f", "-c", "lots", "8080"], "option -c");
    fails_with(&["-f", "-N", "8080"], "option -N is not supported");
    fails_with(&["-f", "-i", "svc", "8080"], "option -i is not supported");
    fails_with(&["-f", "--bogus", "8080"], "unrecognized option '--bogus'");
}

#[test]
fn bad_addresses() {
    let p = free_port().to_string();
    fails_with(&["-f", "0", "127.0.0.1:80"], "port 0 out of range");
    fails_with(&["-f", "70000", "127.0.0.1:80"], "out of range");
    fails_with(
        &["-f", "nosuchservice", "127.0.0.1:80"],
        "bad port 'nosuchservice'",
    );
    fails_with(&["-f", "no..such.host:8080"], "unknown or invalid address");
    fails_with(
        &["-f", &p, "no..such.host:80"],
        "unknown or invalid address 'no..such.host'",
    );
    fails_with(&["-f", &p, "127.0.0.1:80:abc"], "bad maxc 'abc'");
    fails_with(&["-f", &p, "127.0.0.1:bogusport"], "bad port 'bogusport'");
    fails_with(&["-f", &p, "::1:80"], "brackets");
    fails_with(&["-f", &p, "127.0.0.1:1:2:3:4:5:6"], "too many fields");
    fails_with(
        &["-f", "-e", "no..such.host", &p, "127.0.0.1:80"],
        "unknown or invalid address",
    );
}

#[test]
fn port_in_use() {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    fails_with(
        &["-f", &format!("127.0.0.1:{port}"), "127.0.0.1:80"],
        "can't listen on",
    );
}

#[test]
fn bad_option_commands() {
    let p = free_port().to_string();
    fails_with(
        &["-f", "-o", "bogus", &p],
        "do_cmd: ignoring command starting with 'bogus'",
    );
    fails_with(&["-f", "-o", "blacklist abc", &p], "not a whole number");
    fails_with(&["-f", "-o", "dummy", &p], "dummy");
    fails_with(&["-f", "-o", "kqueue", &p], "You don't have kqueue");
}

#[test]
fn unknown_user() {
    let p = free_port().to_string();
    fails_with(
        &["-f", "-u", "no-such-user-here", &p, "127.0.0.1:80"],
        "no-such-user-here",
    );
}

#[cfg(not(feature = "tls"))]
#[test]
fn tls_options_without_tls_support() {
    let p = free_port().to_string();
    fails_with(
        &["-f", "-E", "x.pem", &p],
        "built without TLS support; rebuild with `make TLS=1`",
    );
    fails_with(
        &["-f", "-o", "ssl_ciphers ALL", &p],
        "built without TLS support",
    );
}

#[test]
fn help_and_version() {
    let (code, out, _) = run_pen(&["--help"]);
    assert_eq!(code, Some(0));
    assert!(out.starts_with("usage:"));
    assert!(out.contains("-x N      max number of simultaneous connections [500]"));
    assert!(out.contains("-f\tstay in foreground\n"));
    // The default build says that its TLS options need a TLS build.
    let tls_note = out.contains("need a TLS build");
    assert_eq!(tls_note, !cfg!(feature = "tls"), "{out}");
    let (code, out, _) = run_pen(&["--version"]);
    assert_eq!(code, Some(0));
    assert!(out.starts_with("pen 0.34.1"));
    let features = out.lines().nth(1).unwrap_or_default();
    if cfg!(feature = "tls") {
        assert_eq!(features, "features: tls");
    } else {
        assert!(features.starts_with("features: none"), "{out}");
    }
}

#[test]
fn obsolete_options_print_notices_and_run() {
    let b = Backend::start("O", Behaviour::Name);
    let port = free_port();
    let pen = Pen::start(
        port,
        &[
            "-D",
            "-Q",
            "-n",
            "-S",
            "7",
            "-P",
            &format!("127.0.0.1:{port}"),
            &b.spec(),
        ],
    );
    assert_eq!(ask("127.0.0.2", port), "O");
    let err = pen.stderr();
    assert!(err.contains("making the -D option obsolete"), "{err}");
    assert!(err.contains("making the -Q option obsolete"), "{err}");
    assert!(err.contains("making the -n option obsolete"), "{err}");
    assert!(err.contains("making the -S option obsolete"), "{err}");
}

#[test]
fn service_names_resolve() {
    // `pen smtp mailhost:smtp` style: service names as ports. The listen
    // port 0 makes pen exit after printing the -o replies.
    let (code, out, _err) = run_pen(&[
        "-f",
        "-o",
        "server 0 address 127.0.0.1 port smtp",
        "-o",
        "servers",
        "0",
    ]);
    assert_eq!(code, Some(1));
    assert!(out.contains("0 addr 127.0.0.1 port 25 "), "{out}");
}

#[test]
fn no_backends_warns() {
    let port = free_port();
    let pen = Pen::start(port, &[&format!("127.0.0.1:{port}")]);
    let err = pen.wait_stderr("no backend servers", DEADLINE);
    assert!(err.contains("warning: "), "{err}");
    // With a -F file, servers may come from it on a HUP: no warning.
    let dir = TempDir::new("nobackends");
    let cfg = dir.file("pen.cfg", "# no servers yet\n");
    let (port, cport) = (free_port(), free_port());
    let pen = Pen::start(
        port,
        &[
            "-u",
            "root",
            "-C",
            &format!("127.0.0.1:{cport}"),
            "-F",
            cfg.to_str().unwrap(),
            &format!("127.0.0.1:{port}"),
        ],
    );
    // The warning would come before the acceptor runs, so a served control
    // command proves it was not printed.
    wait_for_port(cport);
    assert_eq!(ctl(cport, "servers"), "");
    assert!(!pen.stderr().contains("no backend servers"));
}

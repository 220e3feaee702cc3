//! The scenarios of upstream pen's own test script (tracking, -r,
//! emergency server, abuse server), run against our pen and, when it is
//! installed (`apt-get install pen`), Debian's pen 0.34.1: clients must land
//! on the same backends. Without Debian's pen, ours is checked against the
//! recorded 0.34.1 results.

mod common;
use common::*;

const DEBIAN_PEN: &str = "/usr/bin/pen";

/// Runs `clients` (source addresses, in order) against `binary` with
/// `args` + backends; the names they reached.
fn scenario(
    binary: impl AsRef<std::ffi::OsStr>,
    extra: &[&str],
    backends: &[String],
    clients: &[&str],
) -> Vec<String> {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut args: Vec<&str> = extra.to_vec();
    args.push(&listen);
    args.extend(backends.iter().map(String::as_str));
    let _pen = Pen::start_program(binary, port, &args);
    clients.iter().map(|c| ask(c, port)).collect()
}

/// [`scenario`] with our pen against `recorded` (pen 0.34.1's results),
/// and against Debian's pen when it is installed.
fn compare(extra: &[&str], backends: &[String], clients: &[&str], recorded: &[&str]) {
    let ours = scenario(PEN, extra, backends, clients);
    assert_eq!(
        ours, recorded,
        "ours vs pen 0.34.1's recorded behaviour ({extra:?})"
    );
    if std::path::Path::new(DEBIAN_PEN).exists() {
        let theirs = scenario(DEBIAN_PEN, extra, backends, clients);
        assert_eq!(ours, theirs, "ours vs Debian's pen ({extra:?})");
    } else {
        eprintln!("Debian's pen not installed: compared with recorded results only");
    }
}

/// `n` backends S0.. and their backend arguments.
fn farm(n: usize) -> (Vec<Backend>, Vec<String>) {
    let b = Backend::farm(n, Behaviour::Name);
    let s = specs(&b);
    (b, s)
}

#[test]
fn tracking() {
    let (_b, s) = farm(3);
    let clients = [
        "127.0.0.1",
        "127.0.0.2",
        "127.0.0.3",
        "127.0.0.1",
        "127.0.0.2",
        "127.0.0.3",
    ];
    compare(&[], &s, &clients, &["S1", "S2", "S0", "S1", "S2", "S0"]);
}

#[test]
fn roundrobin() {
    let (_b, s) = farm(3);
    let clients = ["127.0.0.1"; 4];
    compare(&["-r"], &s, &clients, &["S1", "S2", "S0", "S1"]);
}

#[test]
fn emergency_server() {
    // Both regular servers refuse; -P because pen 0.34.1's default epoll
    // loop drops such clients instead of failing over (doc/pen-0.34.1.md,
    // quirk Q1).
    let e = Backend::start("E", Behaviour::Name);
    let dead = vec![
        format!("127.0.0.1:{}", refused_port()),
        format!("127.0.0.1:{}", refused_port()),
    ];
    let spec = e.spec();
    compare(
        &["-P", "-e", &spec],
        &dead,
        &["127.0.0.1", "127.0.0.2"],
        &["E", "E"],
    );
}

#[test]
fn abuse_server() {
    let (_b, s) = farm(2);
    let abuse = Backend::start("ABUSE", Behaviour::Name);
    let spec = abuse.spec();
    compare(
        &[
            "-B",
            &spec,
            "-o",
            "acl 1 permit 127.0.0.1",
            "-o",
            "client_acl 1",
        ],
        &s,
        &["127.0.0.2", "127.0.0.1", "127.0.0.3"],
        &["ABUSE", "S1", "ABUSE"],
    );
}

#[test]
fn hash() {
    let (_b, s) = farm(7);
    let clients = [
        "127.0.0.1",
        "127.0.0.2",
        "127.0.1.0",
        "127.1.0.0",
        "127.9.8.7",
    ];
    compare(&["-h"], &s, &clients, &["S2", "S3", "S3", "S5", "S4"]);
}

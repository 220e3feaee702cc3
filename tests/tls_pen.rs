//! TLS termination through the real `pen` binary (doc/pen-0.34.1.md, "TLS"):
//! `openssl s_client` children talk TLS to pen, pen talks plain TCP to
//! std-only backends. Certificates (CA, server, client, SNI names) and OCSP
//! responses are made at test time with the `openssl` command.
#![cfg(feature = "tls")]

mod common;
use common::pki::*;
use common::*;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::thread;
use std::time::Duration;

// ---------------------------------------------------------------- certificates

/// A temp dir with CA `ca` and server `server` (CN default.test, serial
/// 0x1001).
fn pki(tag: &str) -> TempDir {
    let dir = TempDir::new(tag);
    make_ca(&dir, "ca");
    make_leaf(&dir, "ca", "server", "default.test", 0x1001);
    dir
}

// ---------------------------------------------------------------- s_client

/// `openssl s_client -ign_eof ARGS`: the client keeps reading after its
/// input ended, until pen closes the connection.
fn s_client(dir: &Path, port: u16, args: &[&str], input: Vec<u8>) -> ClientOutput {
    let mut all = vec!["-ign_eof"];
    all.extend_from_slice(args);
    run_s_client(dir, port, &all, input)
}

/// A client that sends nothing and reads what the backend says.
fn ask_tls(dir: &Path, port: u16, args: &[&str]) -> ClientOutput {
    s_client(dir, port, args, Vec::new())
}

/// Whether the client received `name` (the backend's greeting).
fn got(out: &ClientOutput, name: &str) -> bool {
    String::from_utf8_lossy(&out.stdout).contains(name)
}

// ---------------------------------------------------------------- pen

/// Starts pen terminating TLS with `dir`'s server certificate and key,
/// plus `extra` options, in front of `backends`.
fn start_tls_pen(dir: &TempDir, extra: &[&str], backends: &[String]) -> Pen {
    let cert = dir.arg("server.crt");
    let key = dir.arg("server.key");
    let mut args = vec!["-E", cert.as_str(), "-K", key.as_str()];
    args.extend_from_slice(extra);
    Pen::serve(&args, backends)
}

// ---------------------------------------------------------------- tests

#[test]
fn tls13_and_tls12_clients_get_the_backend_bytes() {
    let dir = pki("versions");
    let backend = Backend::start("<web1>", Behaviour::Name);
    let pen = start_tls_pen(&dir, &[], &[backend.spec()]);

    let out = ask_tls(&dir, pen.port, &["-tls1_3", "-CAfile", "ca.crt"]);
    assert!(got(&out, "<web1>"), "{}", out.text());
    assert!(out.text().contains("TLSv1.3"), "{}", out.text());
    assert!(
        out.text().contains("Verify return code: 0 (ok)"),
        "{}",
        out.text()
    );

    let out = ask_tls(&dir, pen.port, &["-tls1_2", "-CAfile", "ca.crt"]);
    assert!(got(&out, "<web1>"), "{}", out.text());
    assert!(out.text().contains("Protocol  : TLSv1.2"), "{}", out.text());
    // doc/pen-0.34.1.md, "TLS": without -G/-A pen says so at every start.
    assert!(
        pen.stderr()
            .contains("SSL: No verify locations, trying default"),
        "{}",
        pen.stderr()
    );
}

#[test]
fn combined_pem_file_is_enough() {
    let dir = pki("combined");
    let mut pem = std::fs::read(dir.join("server.crt")).expect("read cert");
    pem.extend(std::fs::read(dir.join("server.key")).expect("read key"));
    std::fs::write(dir.join("site.pem"), pem).expect("write combined PEM");
    let backend = Backend::start("<web2>", Behaviour::Name);
    let pem = dir.arg("site.pem");
    let pen = Pen::serve(&["-E", &pem], &[backend.spec()]);
    let out = ask_tls(&dir, pen.port, &[]);
    assert!(got(&out, "<web2>"), "{}", out.text());
}

#[test]
fn certificate_without_key_says_so_and_suggests_k() {
    let dir = pki("nokey");
    let cert = dir.arg("server.crt");
    let port = free_port().to_string();
    let (code, _out, err) = run_pen(&["-f", "-E", &cert, &port, "127.0.0.1:80"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains(&format!("there is no private key in {cert}")),
        "{err}"
    );
    assert!(err.contains("-K"), "{err}");
    assert!(!err.contains("decoder"), "{err}");
    // A -K file without a key: named, without the -K hint.
    let (code, _out, err) = run_pen(&["-f", "-E", &cert, "-K", &cert, &port, "127.0.0.1:80"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("there is no private key in"), "{err}");
}

#[test]
fn one_megabyte_each_way_arrives_intact_and_is_counted() {
    const SIZE: usize = 1 << 20;
    let dir = pki("bulk");
    let echo = Backend::start("echo", Behaviour::EchoUpTo(SIZE));
    let pen = start_tls_pen(&dir, &[], &[echo.spec()]);
    let data = random_bytes(42, SIZE);
    let out = s_client(&dir, pen.port, &["-quiet"], data.clone());
    assert_eq!(out.stdout.len(), SIZE, "{}", out.stderr);
    assert!(out.stdout == data, "echoed bytes differ");

    // The counters see the decrypted bytes (doc/pen-0.34.1.md, "TCP relay").
    pen.signal("USR1");
    let stats = pen.wait_stdout(&format!("received={SIZE}"), PATIENCE);
    let server_line = stats
        .lines()
        .find(|l| l.starts_with("server index=0 "))
        .unwrap_or_default()
        .to_string();
    assert!(
        server_line.contains(&format!("sent={SIZE}"))
            && server_line.contains(&format!("received={SIZE}")),
        "{stats}"
    );
}

/// Forwards one connection from a local port to `port`: what the client
/// sends goes on in pieces of `piece` bytes, `gap` apart; what comes back
/// goes on as it comes. The local port.
fn dribbling_forwarder(port: u16, piece: usize, gap: Duration) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let local = listener.local_addr().expect("local address").port();
    thread::spawn(move || -> std::io::Result<()> {
        let (mut client, _) = listener.accept()?;
        let mut upstream = TcpStream::connect(("127.0.0.1", port))?;
        upstream.set_nodelay(true)?;
        let (mut back_from, mut back_to) = (upstream.try_clone()?, client.try_clone()?);
        let back = thread::spawn(move || {
            let _ = std::io::copy(&mut back_from, &mut back_to);
            let _ = back_to.shutdown(Shutdown::Write);
        });
        let mut buf = vec![0u8; piece];
        // Ends at the client's EOF (the test bounds what it sends).
        loop {
            let n = client.read(&mut buf)?;
            if n == 0 {
                break;
            }
            upstream.write_all(&buf[..n])?;
            // Pacing what the test produces, not waiting for a state.
            thread::sleep(gap);
        }
        upstream.shutdown(Shutdown::Write)?;
        let _ = back.join();
        Ok(())
    });
    local
}

/// OpenSSL reads ahead (whole flights and records per read(2)), so it may
/// hold part of a record that poll() cannot see. A client whose bytes
/// arrive three at a time gets its echo intact, and pen sleeps between the
/// pieces instead of retrying the incomplete record.
#[test]
fn records_arriving_in_pieces_are_relayed_without_spinning() {
    const SIZE: usize = 1500;
    let dir = pki("pieces");
    let echo = Backend::start("echo", Behaviour::EchoUpTo(SIZE));
    let pen = start_tls_pen(&dir, &[], &[echo.spec()]);
    let port = dribbling_forwarder(pen.port, 3, Duration::from_millis(2));
    let data = random_bytes(7, SIZE);
    let before = pen.cpu_ticks();
    let out = s_client(&dir, port, &["-quiet"], data.clone());
    let used = pen.cpu_ticks() - before;
    assert!(
        out.stdout == data,
        "echo differs: {} bytes, {}",
        out.stdout.len(),
        out.stderr
    );
    // Some 700 pieces over 1.5 s or more; spinning on each incomplete
    // record would cost about as much CPU time as that.
    assert!(
        used < 40,
        "pen used {used} ticks of CPU for a dribbled exchange"
    );
}

#[test]
fn required_client_certificate_is_checked_against_the_ca_file() {
    let dir = pki("clientcert");
    make_leaf(&dir, "ca", "client", "client.test", 0x2001);
    make_ca(&dir, "otherca");
    make_leaf(&dir, "otherca", "stranger", "stranger.test", 0x3001);
    let backend = Backend::start("<secret>", Behaviour::Name);
    let cert = dir.arg("server.crt");
    let key = dir.arg("server.key");
    let ca = dir.arg("ca.crt");
    let pen = Pen::serve(
        &["-d", "-E", &cert, "-K", &key, "-G", &ca, "-R"],
        &[backend.spec()],
    );
    assert!(!pen.stderr().contains("No verify locations"));

    for tls in ["-tls1_3", "-tls1_2"] {
        let out = ask_tls(&dir, pen.port, &[tls]);
        assert!(
            !got(&out, "<secret>"),
            "{tls} without certificate: {}",
            out.text()
        );

        let out = ask_tls(
            &dir,
            pen.port,
            &[tls, "-cert", "stranger.crt", "-key", "stranger.key"],
        );
        assert!(!got(&out, "<secret>"), "{tls} foreign CA: {}", out.text());

        let out = ask_tls(
            &dir,
            pen.port,
            &[tls, "-cert", "client.crt", "-key", "client.key"],
        );
        assert!(
            got(&out, "<secret>"),
            "{tls} signed by -G CA: {}",
            out.text()
        );
    }
    // Each refusal is a debug line, and pen carries on.
    assert!(
        pen.stderr().contains("TLS handshake with"),
        "{}",
        pen.stderr()
    );
}

#[test]
fn sni_picks_the_certificate_by_name_and_refuses_escapes() {
    let dir = pki("sni");
    let sni = dir.join("sni");
    std::fs::create_dir(&sni).expect("create SNI dir");
    make_leaf(
        &sni,
        "../ca",
        "www.example.test",
        "www.example.test",
        0x4001,
    );
    make_leaf(
        &sni,
        "../ca",
        "mail.example.test",
        "mail.example.test",
        0x4002,
    );
    // A valid certificate just outside the SNI directory: "../x" must not
    // reach it (doc/pen-0.34.1.md, quirk Q28).
    make_leaf(&dir, "ca", "x", "escaped.test", 0x4003);
    let backend = Backend::start("<web>", Behaviour::Name);
    let sni_command = format!("ssl_sni_path {}", sni.display());
    let pen = start_tls_pen(&dir, &["-o", &sni_command], &[backend.spec()]);
    for (name, cn) in [
        ("www.example.test", "www.example.test"),
        ("mail.example.test", "mail.example.test"),
        ("unknown.example.test", "default.test"),
        ("../x", "default.test"),
        ("www.example.test", "www.example.test"),
    ] {
        let out = ask_tls(&dir, pen.port, &["-servername", name]);
        assert_eq!(out.subject(), format!("subject=CN = {cn}"), "{name}");
        assert!(got(&out, "<web>"), "{name}: {}", out.text());
    }
    let out = ask_tls(&dir, pen.port, &["-noservername"]);
    assert_eq!(out.subject(), "subject=CN = default.test");
}

#[test]
fn stalled_handshake_times_out_while_others_are_served() {
    let dir = pki("stall");
    let backend = Backend::start("<busy>", Behaviour::Name);
    let pen = start_tls_pen(
        &dir,
        &[
            "-d",
            "-o",
            // Long enough for a real client's handshake on a loaded machine.
            "ssl_handshake_timeout 3",
        ],
        &[backend.spec()],
    );
    // Half a ClientHello: a TLS record header promising more, then silence.
    let mut stalled = TcpStream::connect(local(pen.port)).expect("connect");
    stalled
        .write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01])
        .expect("write");
    stalled
        .set_read_timeout(Some(PATIENCE))
        .expect("read timeout");
    // Served while the stalled client holds its own thread.
    let out = ask_tls(&dir, pen.port, &[]);
    assert!(got(&out, "<busy>"), "{}", out.text());
    // Then pen gives up on the stalled one and closes it.
    let mut buf = [0u8; 16];
    match stalled.read(&mut buf) {
        Ok(0) => {}
        Ok(n) => panic!("unexpected {n} bytes"),
        Err(e) => assert!(
            e.kind() == std::io::ErrorKind::ConnectionReset,
            "not closed: {e}"
        ),
    }
    let log = pen.stderr();
    assert!(log.contains("TLS handshake timed out"), "{log}");
    // Served again afterwards.
    let out = ask_tls(&dir, pen.port, &[]);
    assert!(got(&out, "<busy>"), "{}", out.text());
}

#[test]
fn ssl_option_no_tlsv1_2_refuses_tls12() {
    let dir = pki("notls12");
    let backend = Backend::start("<modern>", Behaviour::Name);
    let pen = start_tls_pen(&dir, &["-o", "ssl_option no_tlsv1.2"], &[backend.spec()]);
    let out = ask_tls(&dir, pen.port, &["-tls1_2"]);
    assert!(!out.status.success(), "{}", out.text());
    assert!(!got(&out, "<modern>"), "{}", out.text());
    let out = ask_tls(&dir, pen.port, &["-tls1_3"]);
    assert!(got(&out, "<modern>"), "{}", out.text());
}

#[test]
fn minimum_protocol_option() {
    let dir = pki("minproto");
    let backend = Backend::start("<min>", Behaviour::Name);
    let pen = start_tls_pen(&dir, &["-L", "tls1.3", "-Z"], &[backend.spec()]);
    let out = ask_tls(&dir, pen.port, &["-tls1_2"]);
    assert!(!got(&out, "<min>"), "{}", out.text());
    let out = ask_tls(&dir, pen.port, &[]);
    assert!(got(&out, "<min>"), "{}", out.text());
}

#[test]
fn ocsp_stapling_sends_the_file() {
    let dir = pki("ocsp");
    make_ocsp_response(&dir, "ca", 0x1001, "default.test", "server.ocsp");
    let want = file_ocsp_signature(&dir.join("server.ocsp"));
    let backend = Backend::start("<stapled>", Behaviour::Name);
    let ocsp = format!("ssl_ocsp_response {}", dir.join("server.ocsp").display());
    let pen = start_tls_pen(&dir, &["-o", &ocsp], &[backend.spec()]);
    let out = ask_tls(&dir, pen.port, &["-status"]);
    assert!(
        out.text().contains("OCSP Response Status: successful"),
        "{}",
        out.text()
    );
    assert_eq!(ocsp_signature(&out.text()), want);
    assert!(got(&out, "<stapled>"), "{}", out.text());
}

/// Run-time changes through SIGHUP and the `-F` file: `ssl_option` and
/// `ssl_ocsp_response` apply to new connections; a bad `ssl_ciphers` is
/// refused and the running settings stay.
#[test]
fn run_time_changes_apply_to_new_connections() {
    let dir = pki("runtime");
    make_ocsp_response(&dir, "ca", 0x1001, "default.test", "server.ocsp");
    let backend = Backend::start("<live>", Behaviour::Name);
    let config = dir.join("pen.cfg");
    std::fs::write(&config, "# nothing yet\n").expect("write config");
    let config_arg = config.display().to_string();
    let pen = start_tls_pen(&dir, &["-F", &config_arg], &[backend.spec()]);
    let out = ask_tls(&dir, pen.port, &["-tls1_2", "-status"]);
    assert!(got(&out, "<live>"), "{}", out.text());
    assert!(
        out.text().contains("OCSP response: no response sent"),
        "{}",
        out.text()
    );

    std::fs::write(
        &config,
        format!(
            "ssl_option no_tlsv1.2\nssl_ocsp_response {}\n",
            dir.join("server.ocsp").display()
        ),
    )
    .expect("rewrite config");
    pen.signal("HUP");
    wait_until(PATIENCE, "TLS 1.2 to be refused after HUP", || {
        !got(&ask_tls(&dir, pen.port, &["-tls1_2"]), "<live>")
    });
    let out = ask_tls(&dir, pen.port, &["-tls1_3", "-status"]);
    assert!(got(&out, "<live>"), "{}", out.text());
    assert!(
        out.text().contains("OCSP Response Status: successful"),
        "{}",
        out.text()
    );

    std::fs::write(&config, "ssl_ciphers NO-SUCH-CIPHER\n").expect("rewrite config");
    pen.signal("HUP");
    pen.wait_stderr("NO-SUCH-CIPHER", PATIENCE);
    let log = pen.stderr();
    assert!(
        log.contains("the previous TLS settings stay in use"),
        "{log}"
    );
    assert!(got(&ask_tls(&dir, pen.port, &[]), "<live>"));
    assert!(!got(&ask_tls(&dir, pen.port, &["-tls1_2"]), "<live>"));
}

#[test]
fn request_log_sees_decrypted_requests() {
    let dir = pki("reqlog");
    let backend = Backend::start("<logged>", Behaviour::NameAndHold);
    let log = dir.join("requests.log");
    let log_arg = log.display().to_string();
    let pen = start_tls_pen(&dir, &["-l", &log_arg], &[backend.spec()]);
    // The backend holds the connection until the client closes: s_client
    // without -ign_eof closes at the end of its input.
    let mut guard = ChildGuard::spawn(
        Command::new("openssl")
            .args(["s_client", "-quiet", "-connect"])
            .arg(format!("127.0.0.1:{}", pen.port))
            .current_dir(&*dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    let mut stdin = guard.0.stdin.take().expect("stdin");
    stdin
        .write_all(b"GET /over-tls HTTP/1.0\r\n\r\n")
        .expect("write request");
    let text = wait_file_contains(&log, "GET /over-tls HTTP/1.0", PATIENCE);
    assert!(text.contains("127.0.0.1"), "{text}");
    assert!(text.contains("GET /over-tls HTTP/1.0"), "{text}");
    drop(stdin);
}

#[test]
fn certificate_problems_stop_pen_at_start() {
    let dir = pki("starterr");
    make_leaf(&dir, "ca", "other", "other.test", 0x6001);
    std::fs::write(dir.join("garbage.pem"), "not a certificate\n").expect("write garbage");
    let port = free_port().to_string();
    let cert = dir.arg("server.crt");

    let missing = dir.arg("missing.pem");
    let (status, _, err) = run_pen(&["-f", "-E", &missing, &port, "127.0.0.1:9"]);
    assert_eq!(status, Some(1), "{err}");
    assert!(
        err.contains(&format!("can't load certificate {missing}")),
        "{err}"
    );

    let garbage = dir.arg("garbage.pem");
    let (status, _, err) = run_pen(&["-f", "-E", &garbage, &port, "127.0.0.1:9"]);
    assert_eq!(status, Some(1), "{err}");
    assert!(
        err.contains(&format!("can't load certificate {garbage}")),
        "{err}"
    );

    let other_key = dir.arg("other.key");
    let (status, _, err) = run_pen(&["-f", "-E", &cert, "-K", &other_key, &port, "127.0.0.1:9"]);
    assert_eq!(status, Some(1), "{err}");
    assert!(err.contains("does not match"), "{err}");
    assert!(err.contains(&other_key), "{err}");

    let (status, _, err) = run_pen(&[
        "-f",
        "-E",
        &cert,
        "-o",
        "ssl_option no_tlsv1.3",
        &port,
        "127.0.0.1:9",
    ]);
    assert_eq!(status, Some(1), "{err}");
    assert!(err.contains("unknown ssl_option 'no_tlsv1.3'"), "{err}");
}

/// Manual leak check (slow: one `s_client` per connection):
/// `cargo test --release --features tls --test tls_pen -- --ignored --nocapture`.
/// 1,000 TLS connections through pen (default, SNI and OCSP paths, TLS 1.2
/// and 1.3); prints pen's RSS after a warm-up and at the end.
#[test]
#[ignore]
fn thousand_tls_connections_leave_rss_flat() {
    const WARM_UP: usize = 100;
    const TOTAL: usize = 1000;
    let dir = pki("rss");
    make_ocsp_response(&dir, "ca", 0x1001, "default.test", "server.ocsp");
    let sni = dir.join("sni");
    std::fs::create_dir(&sni).expect("create SNI dir");
    make_leaf(
        &sni,
        "../ca",
        "www.example.test",
        "www.example.test",
        0x7001,
    );
    let backend = Backend::start("<rss>", Behaviour::Name);
    let sni_command = format!("ssl_sni_path {}", sni.display());
    let ocsp = format!("ssl_ocsp_response {}", dir.join("server.ocsp").display());
    let pen = start_tls_pen(&dir, &["-o", &sni_command, "-o", &ocsp], &[backend.spec()]);
    let mut warm = 0;
    for i in 0..TOTAL {
        let args: &[&str] = match i % 4 {
            0 => &["-status"],
            1 => &["-servername", "www.example.test", "-status"],
            2 => &["-tls1_2", "-status"],
            _ => &["-servername", "nonexistent.test"],
        };
        let out = ask_tls(&dir, pen.port, args);
        assert!(got(&out, "<rss>"), "{}", out.text());
        if i + 1 == WARM_UP {
            warm = rss_kib(pen.pid());
        }
    }
    let end = rss_kib(pen.pid());
    println!("pen RSS after {WARM_UP} TLS connections: {warm} KiB; after {TOTAL}: {end} KiB");
}

#[test]
fn http_mode_announces_https() {
    let dir = pki("xfp");
    let request = b"GET /secure HTTP/1.1\r\nHost: x\r\n\r\n".to_vec();
    let want = b"GET /secure HTTP/1.1\r\nHost: x\r\nX-Forwarded-Proto: https\r\nX-Forwarded-For: 127.0.0.1\r\n\r\n";
    let echo = Backend::start("echo", Behaviour::EchoUpTo(want.len()));
    let pen = start_tls_pen(&dir, &["-H"], &[echo.spec()]);
    let out = s_client(&dir, pen.port, &["-quiet"], request);
    let got = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        got.contains(std::str::from_utf8(want).unwrap()),
        "{got:?} / {}",
        out.stderr
    );
}

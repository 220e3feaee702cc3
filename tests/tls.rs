//! TLS termination (doc/pen-0.34.1.md, "TLS") exercised in-process: a
//! `TlsAcceptor` behind a loopback listener with an echo loop on the
//! non-blocking `TlsStream` API, driven by `openssl s_client` children.
//! Certificates (CA, server, client, SNI names) and an OCSP response are made
//! at test time with the `openssl` command into a per-test directory.
#![cfg(feature = "tls")]

mod common;
use common::pki::*;
use common::{random_bytes, rss_kib, TempDir};

use pen::tls::{SslOption, TlsAcceptor, TlsError, TlsSettings, TlsStream};
use std::io;
use std::net::{TcpListener, TcpStream};
use std::os::fd::OwnedFd;
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

// ---------------------------------------------------------------- certificates

/// CA `ca` plus server `server` (CN default.test, serial 0x1001).
fn default_pki(dir: &TempDir) {
    make_ca(dir, "ca");
    make_leaf(dir, "ca", "server", "default.test", 0x1001);
}

/// Settings with the server certificate and key of [`default_pki`].
fn settings(dir: &TempDir) -> TlsSettings {
    let mut settings = TlsSettings::new(dir.join("server.crt"));
    settings.key = Some(dir.join("server.key"));
    settings
}

// ---------------------------------------------------------------- echo server

/// What the server saw on one connection.
#[derive(Debug)]
struct Session {
    protocol: &'static str,
    echoed: usize,
}

/// A loopback listener whose thread TLS-accepts `connections` clients and
/// echoes what they send (up to `echo_limit` bytes, then closes).
struct EchoServer {
    port: u16,
    results: mpsc::Receiver<Result<Session, String>>,
}

impl EchoServer {
    fn start(
        acceptor: Arc<TlsAcceptor>,
        connections: usize,
        echo_limit: Option<usize>,
        handshake_time: Duration,
    ) -> EchoServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let port = listener.local_addr().expect("local addr").port();
        let (tx, results) = mpsc::channel();
        thread::spawn(move || {
            for _ in 0..connections {
                let Ok((tcp, _)) = listener.accept() else {
                    return;
                };
                let result = serve(&acceptor, tcp, echo_limit, handshake_time);
                if tx.send(result).is_err() {
                    return;
                }
            }
        });
        EchoServer { port, results }
    }

    fn next(&self) -> Result<Session, String> {
        self.results
            .recv_timeout(PATIENCE)
            .expect("server thread reports a result")
    }
}

fn serve(
    acceptor: &TlsAcceptor,
    tcp: TcpStream,
    echo_limit: Option<usize>,
    handshake_time: Duration,
) -> Result<Session, String> {
    tcp.set_nonblocking(true).map_err(|e| e.to_string())?;
    let fd = OwnedFd::from(tcp);
    let mut stream = acceptor
        .accept(fd, Instant::now() + handshake_time)
        .map_err(|e| match e {
            TlsError::HandshakeTimeout => "timeout".to_string(),
            other => other.to_string(),
        })?;
    let protocol = stream.protocol_version();
    let echoed = echo(&mut stream, echo_limit).map_err(|e| format!("echo: {e}"))?;
    stream.shutdown();
    Ok(Session { protocol, echoed })
}

fn echo(stream: &mut TlsStream, limit: Option<usize>) -> io::Result<usize> {
    let deadline = Instant::now() + PATIENCE;
    let mut buf = vec![0u8; 32 * 1024];
    let mut total = 0;
    while limit.is_none_or(|limit| total < limit) {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                write_all(stream, &buf[..n], deadline)?;
                total += n;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => wait(stream, deadline)?,
            Err(e) => return Err(e),
        }
    }
    Ok(total)
}

fn write_all(stream: &mut TlsStream, mut data: &[u8], deadline: Instant) -> io::Result<()> {
    while !data.is_empty() {
        match stream.write(data) {
            Ok(n) => data = &data[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => wait(stream, deadline)?,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn wait(stream: &TlsStream, deadline: Instant) -> io::Result<()> {
    if stream.wait(stream.want(), deadline)? {
        Ok(())
    } else {
        Err(io::Error::new(io::ErrorKind::TimedOut, "echo timed out"))
    }
}

// ---------------------------------------------------------------- s_client

/// Runs `openssl s_client` in the test's directory.
fn s_client(dir: &TempDir, port: u16, args: &[&str], input: Vec<u8>) -> ClientOutput {
    run_s_client(dir, port, args, input)
}

/// Connects, handshakes and closes at once (stdin is empty).
fn handshake(dir: &TempDir, port: u16, args: &[&str]) -> ClientOutput {
    s_client(dir, port, args, Vec::new())
}

fn acceptor(settings: &TlsSettings) -> Arc<TlsAcceptor> {
    Arc::new(TlsAcceptor::new(settings).expect("TlsAcceptor::new"))
}

const HANDSHAKE_TIME: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------- tests

#[test]
fn tls13_and_tls12_handshakes() {
    let dir = TempDir::new("versions");
    default_pki(&dir);
    let server = EchoServer::start(acceptor(&settings(&dir)), 3, None, HANDSHAKE_TIME);

    let out = handshake(
        &dir,
        server.port,
        &["-tls1_3", "-CAfile", "ca.crt", "-verify_return_error"],
    );
    assert!(out.status.success(), "{}", out.text());
    assert!(out.text().contains("TLSv1.3"), "{}", out.text());
    assert_eq!(server.next().expect("TLS 1.3 session").protocol, "TLSv1.3");

    let out = handshake(
        &dir,
        server.port,
        &["-tls1_2", "-CAfile", "ca.crt", "-verify_return_error"],
    );
    assert!(out.status.success(), "{}", out.text());
    assert_eq!(server.next().expect("TLS 1.2 session").protocol, "TLSv1.2");

    // Default negotiation is TLS 1.3 with pen's P-256 key exchange.
    let out = handshake(&dir, server.port, &[]);
    assert!(out.text().contains("prime256v1"), "{}", out.text());
    assert_eq!(server.next().expect("default session").protocol, "TLSv1.3");
}

#[test]
fn one_megabyte_each_way_arrives_intact() {
    let dir = TempDir::new("bulk");
    default_pki(&dir);
    const SIZE: usize = 1 << 20;
    let server = EchoServer::start(acceptor(&settings(&dir)), 1, Some(SIZE), HANDSHAKE_TIME);
    let data = random_bytes(0x9e37_79b9, SIZE);
    let out = s_client(&dir, server.port, &["-quiet"], data.clone());
    let session = server.next().expect("bulk session");
    assert_eq!(session.echoed, SIZE);
    assert_eq!(out.stdout.len(), SIZE, "{}", out.stderr);
    assert!(out.stdout == data, "echoed bytes differ");
}

#[test]
fn required_client_certificate() {
    let dir = TempDir::new("clientcert");
    default_pki(&dir);
    make_leaf(&dir, "ca", "client", "client.test", 0x2001);
    make_ca(&dir, "otherca");
    make_leaf(&dir, "otherca", "stranger", "stranger.test", 0x3001);
    let mut settings = settings(&dir);
    settings.require_client_cert = true;
    settings.ca_file = Some(dir.join("ca.crt"));
    let acceptor = acceptor(&settings);
    assert!(acceptor.warnings().is_empty(), "{:?}", acceptor.warnings());
    let server = EchoServer::start(acceptor, 3, None, HANDSHAKE_TIME);

    let _ = handshake(&dir, server.port, &[]);
    let err = server.next().expect_err("no client certificate must fail");
    assert!(err.contains("certificate"), "{err}");

    let _ = handshake(
        &dir,
        server.port,
        &["-cert", "stranger.crt", "-key", "stranger.key"],
    );
    let err = server
        .next()
        .expect_err("certificate of another CA must fail");
    assert!(err.contains("certificate verify failed"), "{err}");

    let out = handshake(
        &dir,
        server.port,
        &["-cert", "client.crt", "-key", "client.key"],
    );
    assert!(out.status.success(), "{}", out.text());
    server
        .next()
        .expect("client signed by the -G CA is accepted");
}

#[test]
fn without_require_no_client_certificate_is_asked() {
    let dir = TempDir::new("nocert");
    default_pki(&dir);
    let acceptor = acceptor(&settings(&dir));
    // doc/pen-0.34.1.md, "TLS": neither -G nor -A → default paths, with pen's
    // message.
    assert!(
        acceptor
            .warnings()
            .iter()
            .any(|w| w == "No verify locations, trying default"),
        "{:?}",
        acceptor.warnings()
    );
    let server = EchoServer::start(acceptor, 1, None, HANDSHAKE_TIME);
    let out = handshake(&dir, server.port, &[]);
    assert!(
        !out.text()
            .contains("Acceptable client certificate CA names"),
        "{}",
        out.text()
    );
    server.next().expect("anonymous client accepted");
}

#[test]
fn sni_selects_certificate_by_name_and_rejects_escapes() {
    let dir = TempDir::new("sni");
    default_pki(&dir);
    let sni_dir = dir.join("sni");
    std::fs::create_dir(&sni_dir).expect("create SNI dir");
    make_leaf(
        &sni_dir,
        "../ca",
        "www.example.test",
        "www.example.test",
        0x4001,
    );
    make_leaf(
        &sni_dir,
        "../ca",
        "mail.example.test",
        "mail.example.test",
        0x4002,
    );
    // A valid certificate just outside DIR: a server name "../x" must not reach it.
    make_leaf(&dir, "ca", "x", "escaped.test", 0x4003);
    let mut settings = settings(&dir);
    settings.sni_path = Some(sni_dir.clone());
    let server = EchoServer::start(acceptor(&settings), 7, None, HANDSHAKE_TIME);

    let subject = |out: &ClientOutput| {
        out.text()
            .lines()
            .find(|l| l.starts_with("subject="))
            .map(str::to_string)
            .unwrap_or_default()
    };
    for (name, cn) in [
        ("www.example.test", "www.example.test"),
        ("mail.example.test", "mail.example.test"),
        ("www.example.test", "www.example.test"), // cached
        ("unknown.example.test", "default.test"),
        ("../x", "default.test"),
        ("..", "default.test"),
    ] {
        let out = handshake(&dir, server.port, &["-servername", name]);
        assert!(out.status.success(), "{name}: {}", out.text());
        assert_eq!(subject(&out), format!("subject=CN = {cn}"), "{name}");
        server.next().expect("SNI session");
    }
    let out = handshake(&dir, server.port, &["-noservername"]);
    assert_eq!(subject(&out), "subject=CN = default.test");
    server.next().expect("session without SNI");
}

#[test]
fn half_finished_handshake_times_out() {
    let dir = TempDir::new("timeout");
    default_pki(&dir);
    let server = EchoServer::start(
        acceptor(&settings(&dir)),
        1,
        None,
        Duration::from_millis(300),
    );
    // Connects and sends nothing; kept open until the server gives up.
    let tcp = TcpStream::connect(("127.0.0.1", server.port)).expect("connect");
    assert_eq!(server.next().expect_err("must time out"), "timeout");
    drop(tcp);
}

#[test]
fn ssl_option_no_tlsv1_2_refuses_tls12() {
    let dir = TempDir::new("notls12");
    default_pki(&dir);
    let mut settings = settings(&dir);
    settings.options = vec![SslOption::NoTlsv1_2];
    let server = EchoServer::start(acceptor(&settings), 2, None, HANDSHAKE_TIME);

    let out = handshake(&dir, server.port, &["-tls1_2"]);
    assert!(!out.status.success(), "{}", out.text());
    server.next().expect_err("TLS 1.2 refused");

    let out = handshake(&dir, server.port, &["-tls1_3"]);
    assert!(out.status.success(), "{}", out.text());
    assert_eq!(
        server.next().expect("TLS 1.3 still works").protocol,
        "TLSv1.3"
    );
}

#[test]
fn ocsp_stapling_default_and_sni() {
    let dir = TempDir::new("ocsp");
    default_pki(&dir);
    make_ocsp_response(&dir, "ca", 0x1001, "default.test", "server.ocsp");
    let sni_dir = dir.join("sni");
    std::fs::create_dir(&sni_dir).expect("create SNI dir");
    make_leaf(
        &sni_dir,
        "../ca",
        "www.example.test",
        "www.example.test",
        0x5001,
    );
    make_ocsp_response(
        &sni_dir,
        "../ca",
        0x5001,
        "www.example.test",
        "www.example.test.ocsp",
    );

    let default_signature = file_ocsp_signature(&dir.join("server.ocsp"));
    let sni_signature = file_ocsp_signature(&sni_dir.join("www.example.test.ocsp"));

    let mut settings = settings(&dir);
    settings.sni_path = Some(sni_dir.clone());
    let acceptor = acceptor(&settings);
    let server = EchoServer::start(Arc::clone(&acceptor), 5, None, HANDSHAKE_TIME);

    // No ssl_ocsp_response yet: nothing stapled.
    let out = handshake(&dir, server.port, &["-status"]);
    assert!(
        out.text().contains("OCSP response: no response sent"),
        "{}",
        out.text()
    );
    server.next().expect("session");

    acceptor.reload_ocsp(Some(&dir.join("server.ocsp")));
    let out = handshake(&dir, server.port, &["-status"]);
    assert!(
        out.text().contains("OCSP Response Status: successful"),
        "{}",
        out.text()
    );
    assert_eq!(ocsp_signature(&out.text()), default_signature);
    server.next().expect("session");

    // Without -status the client does not ask, and nothing is printed.
    let out = handshake(&dir, server.port, &[]);
    assert!(!out.text().contains("OCSP"), "{}", out.text());
    server.next().expect("session");

    // SNI context: DIR/NAME.ocsp.
    let out = handshake(
        &dir,
        server.port,
        &["-status", "-servername", "www.example.test"],
    );
    assert!(
        out.text().contains("subject=CN = www.example.test"),
        "{}",
        out.text()
    );
    assert_eq!(ocsp_signature(&out.text()), sni_signature);
    server.next().expect("session");

    acceptor.reload_ocsp(None);
    let out = handshake(&dir, server.port, &["-status"]);
    assert!(
        out.text().contains("OCSP response: no response sent"),
        "{}",
        out.text()
    );
    server.next().expect("session");
}

#[test]
fn key_mismatch_and_bad_key_are_start_up_errors() {
    let dir = TempDir::new("badkey");
    default_pki(&dir);
    make_leaf(&dir, "ca", "other", "other.test", 0x6001);
    let mut settings = settings(&dir);
    settings.key = Some(dir.join("other.key"));
    let err = TlsAcceptor::new(&settings).expect_err("mismatch");
    assert!(matches!(err, TlsError::KeyMismatch { .. }), "{err}");
    assert!(err.to_string().contains("does not match"), "{err}");

    settings.key = Some(dir.join("missing.key"));
    let err = TlsAcceptor::new(&settings).expect_err("missing key");
    assert!(
        err.to_string().starts_with(&format!(
            "can't load private key {}",
            dir.join("missing.key").display()
        )),
        "{err}"
    );

    // -K defaults to the -E file: a combined PEM works on its own.
    let mut combined = std::fs::read(dir.join("server.crt")).expect("read cert");
    combined.extend(std::fs::read(dir.join("server.key")).expect("read key"));
    std::fs::write(dir.join("combined.pem"), combined).expect("write combined PEM");
    TlsAcceptor::new(&TlsSettings::new(dir.join("combined.pem"))).expect("combined PEM");
}

/// Manual leak check (slow: one `s_client` per handshake):
/// `cargo test --release --features tls --test tls -- --ignored --nocapture`.
/// Runs 1,000 handshakes through the default, SNI and OCSP paths and prints
/// the RSS after a warm-up and at the end.
#[test]
#[ignore]
fn thousand_handshakes_do_not_grow_rss() {
    const WARM_UP: usize = 100;
    const TOTAL: usize = 1000;
    let dir = TempDir::new("rss");
    default_pki(&dir);
    make_ocsp_response(&dir, "ca", 0x1001, "default.test", "server.ocsp");
    let sni_dir = dir.join("sni");
    std::fs::create_dir(&sni_dir).expect("create SNI dir");
    make_leaf(
        &sni_dir,
        "../ca",
        "www.example.test",
        "www.example.test",
        0x7001,
    );
    let mut settings = settings(&dir);
    settings.sni_path = Some(sni_dir);
    settings.ocsp_response = Some(dir.join("server.ocsp"));
    let server = EchoServer::start(acceptor(&settings), TOTAL, None, HANDSHAKE_TIME);
    let mut warm_rss = 0;
    for i in 0..TOTAL {
        let args: &[&str] = match i % 4 {
            0 => &["-status"],
            1 => &["-servername", "www.example.test", "-status"],
            2 => &["-tls1_2", "-status"],
            _ => &["-servername", "nonexistent.test"],
        };
        let out = handshake(&dir, server.port, args);
        assert!(out.status.success(), "{}", out.text());
        server.next().expect("session");
        if i + 1 == WARM_UP {
            warm_rss = rss_kib(std::process::id());
        }
    }
    let end_rss = rss_kib(std::process::id());
    println!("RSS after {WARM_UP} handshakes: {warm_rss} KiB; after {TOTAL}: {end_rss} KiB");
}

#[test]
fn min_version_compat_and_ciphers() {
    let dir = TempDir::new("minver");
    default_pki(&dir);
    let mut tls13_only = settings(&dir);
    tls13_only.min_version = pen::tls::parse_protocol("tls1.3").expect("tls1.3");
    tls13_only.compat = true;
    let server = EchoServer::start(acceptor(&tls13_only), 2, None, HANDSHAKE_TIME);
    let out = handshake(&dir, server.port, &["-tls1_2"]);
    assert!(!out.status.success(), "{}", out.text());
    server.next().expect_err("TLS 1.2 below the minimum");
    let out = handshake(&dir, server.port, &[]);
    assert!(out.status.success(), "{}", out.text());
    assert_eq!(server.next().expect("TLS 1.3").protocol, "TLSv1.3");

    // ssl_ciphers picks the TLS 1.2 cipher; a bad list is ignored with a warning.
    let mut settings = settings(&dir);
    settings.ciphers = Some("ECDHE-ECDSA-AES128-GCM-SHA256".to_string());
    let server = EchoServer::start(acceptor(&settings), 1, None, HANDSHAKE_TIME);
    let out = handshake(&dir, server.port, &["-tls1_2"]);
    assert!(
        out.text()
            .contains("Cipher is ECDHE-ECDSA-AES128-GCM-SHA256"),
        "{}",
        out.text()
    );
    server.next().expect("TLS 1.2 with the chosen cipher");
    settings.ciphers = Some("NO-SUCH-CIPHER".to_string());
    let acceptor = TlsAcceptor::new(&settings).expect("bad ssl_ciphers is not fatal");
    assert!(
        acceptor
            .warnings()
            .iter()
            .any(|w| w.starts_with("ssl_ciphers 'NO-SUCH-CIPHER' ignored")),
        "{:?}",
        acceptor.warnings()
    );
}

//! The PROXY protocol through the real binary: the exact bytes a backend
//! sees with `send_proxy v1|v2` for IPv4, IPv6 and Unix-socket clients,
//! nginx from Debian reading them, and `accept_proxy`: who is refused, that
//! a slow client delays nobody, and that the header's address is the
//! client's everywhere.

mod common;
use common::*;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const SIG: &[u8] = b"\x0D\x0A\x0D\x0A\x00\x0D\x0A\x51\x55\x49\x54\x0A";

/// Writes `bytes`, then EOF, and reads to EOF.
fn exchange(mut s: impl Read + Write, bytes: &[u8], shut: impl FnOnce()) -> Vec<u8> {
    // A refused client may find itself closed at any point.
    let _ = s.write_all(bytes);
    shut();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    out
}

/// Sends `bytes` from `src` through pen and half-closes: what came back
/// (the echo backend's copy of what pen sent it), and the client's port.
fn through(port: u16, src: &str, bytes: &[u8]) -> (Vec<u8>, u16) {
    let s = connect_from(src, local(port)).unwrap();
    let cport = s.local_addr().unwrap().port();
    let half = s.try_clone().unwrap();
    let out = exchange(s, bytes, || {
        let _ = half.shutdown(Shutdown::Write);
    });
    (out, cport)
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The v2 header for TCP over IPv4 from `src:sport` to `dst:dport`.
fn v2_tcp4(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16) -> Vec<u8> {
    let mut h = SIG.to_vec();
    h.extend_from_slice(&[0x21, 0x11, 0x00, 0x0C]);
    h.extend_from_slice(&src);
    h.extend_from_slice(&dst);
    h.extend_from_slice(&sport.to_be_bytes());
    h.extend_from_slice(&dport.to_be_bytes());
    h
}

#[test]
fn send_proxy_v1_and_v2_ipv4_exact_bytes() {
    let b = Backend::start("E", Behaviour::Echo);
    let pen = Pen::serve(&["-o", "send_proxy v1"], &[b.spec()]);
    let (got, cport) = through(pen.port, "127.0.0.5", b"hello");
    assert_eq!(
        text(&got),
        format!(
            "PROXY TCP4 127.0.0.5 127.0.0.1 {cport} {}\r\nhello",
            pen.port
        )
    );
    drop(pen);
    let pen = Pen::serve(&["-o", "send_proxy v2"], &[b.spec()]);
    let (got, cport) = through(pen.port, "127.0.0.6", b"hello");
    let mut want = v2_tcp4([127, 0, 0, 6], [127, 0, 0, 1], cport, pen.port);
    want.extend_from_slice(b"hello");
    assert_eq!(got, want);
}

#[test]
fn send_proxy_ipv6_exact_bytes() {
    if !ipv6_loopback() {
        eprintln!("skipped: ::1 is not available");
        return;
    }
    let b = Backend::start("E", Behaviour::Echo);
    for v in ["v1", "v2"] {
        let port = free_port();
        let cmd = format!("send_proxy {v}");
        let _pen = Pen::start(port, &["-o", &cmd, &format!("::1:{port}"), &b.spec()]);
        let s = TcpStream::connect(("::1", port)).unwrap();
        s.set_read_timeout(Some(DEADLINE)).unwrap();
        let cport = s.local_addr().unwrap().port();
        let half = s.try_clone().unwrap();
        let got = exchange(s, b"six", || {
            let _ = half.shutdown(Shutdown::Write);
        });
        let mut want = if v == "v1" {
            format!("PROXY TCP6 ::1 ::1 {cport} {port}\r\n").into_bytes()
        } else {
            let mut h = SIG.to_vec();
            h.extend_from_slice(&[0x21, 0x21, 0x00, 0x24]);
            for _ in 0..2 {
                h.extend_from_slice(&[0; 15]);
                h.push(1);
            }
            h.extend_from_slice(&cport.to_be_bytes());
            h.extend_from_slice(&port.to_be_bytes());
            h
        };
        want.extend_from_slice(b"six");
        assert_eq!(got, want, "{v}");
    }
}

#[test]
fn send_proxy_unix_client_is_unknown_or_local() {
    let b = Backend::start("E", Behaviour::Echo);
    let dir = TempDir::new("pp-unix");
    for (v, header) in [
        ("v1", b"PROXY UNKNOWN\r\n".to_vec()),
        ("v2", [SIG, &[0x20, 0x00, 0x00, 0x00]].concat()),
    ] {
        let path = dir.join(format!("pen-{v}.sock"));
        let cmd = format!("send_proxy {v}");
        let _pen = Pen::spawn(&["-o", &cmd, path.to_str().unwrap(), &b.spec()]);
        let s = wait_for(DEADLINE, "pen to listen on its Unix socket", || {
            UnixStream::connect(&path).ok()
        });
        s.set_read_timeout(Some(DEADLINE)).unwrap();
        let half = s.try_clone().unwrap();
        let got = exchange(s, b"unix", || {
            let _ = half.shutdown(Shutdown::Write);
        });
        assert_eq!(got, [header.as_slice(), b"unix"].concat(), "{v}");
    }
}

/// nginx from Debian on its own config in a temp dir, stopped when dropped.
struct Nginx {
    /// Kills nginx by its PID when dropped.
    _child: ChildGuard,
    port: u16,
    _dir: TempDir,
}

impl Nginx {
    /// Listens with `proxy_protocol` and answers the address it was given.
    fn start() -> Option<Nginx> {
        if !Path::new("/usr/sbin/nginx").exists() {
            return None;
        }
        let dir = TempDir::new("nginx");
        let port = free_port();
        let d = dir.path().display();
        let conf = format!(
            "daemon off;\nmaster_process off;\nworker_processes 1;\npid {d}/nginx.pid;\n\
             error_log {d}/error.log;\nevents {{ worker_connections 64; }}\n\
             http {{\n access_log off;\n client_body_temp_path {d}/body;\n\
             proxy_temp_path {d}/proxy;\n fastcgi_temp_path {d}/fastcgi;\n\
             uwsgi_temp_path {d}/uwsgi;\n scgi_temp_path {d}/scgi;\n\
             server {{\n  listen 127.0.0.1:{port} proxy_protocol;\n\
             location / {{ return 200 \"$proxy_protocol_addr $proxy_protocol_port\"; }}\n }}\n}}\n"
        );
        let conf = dir.file("nginx.conf", &conf);
        let child = ChildGuard::spawn(
            Command::new("/usr/sbin/nginx")
                .arg("-p")
                .arg(dir.path())
                .arg("-e")
                .arg(dir.join("error.log"))
                .arg("-c")
                .arg(&conf),
        );
        wait_for_port(port);
        Some(Nginx {
            _child: child,
            port,
            _dir: dir,
        })
    }
}

#[test]
fn nginx_sees_the_real_client_through_pen() {
    let Some(nginx) = Nginx::start() else {
        eprintln!("skipped: nginx is not installed");
        return;
    };
    for v in ["v1", "v2"] {
        let cmd = format!("send_proxy {v}");
        let pen = Pen::serve(&["-o", &cmd], &[format!("127.0.0.1:{}", nginx.port)]);
        let (got, cport) = through(pen.port, "127.0.0.7", b"GET / HTTP/1.0\r\n\r\n");
        let got = text(&got);
        assert!(got.starts_with("HTTP/1.1 200"), "{v}: {got}");
        assert!(
            got.ends_with(&format!("\r\n\r\n127.0.0.7 {cport}")),
            "{v}: {got}"
        );
    }
}

/// A pen with `accept_proxy` (and `extra`) before one echo backend, with a
/// control port.
fn accepting(extra: &[&str]) -> (Backend, Pen, u16) {
    let b = Backend::start("E", Behaviour::Echo);
    let cport = free_port();
    let c = format!("127.0.0.1:{cport}");
    let mut args = vec!["-u", "root", "-C", &c, "-t", "1"];
    args.extend_from_slice(extra);
    let pen = Pen::serve(&args, &[b.spec()]);
    wait_for_port(cport);
    (b, pen, cport)
}

#[test]
fn accept_proxy_takes_the_header_and_passes_it_on() {
    let (b, pen, cport) = accepting(&["-o", "accept_proxy on", "-o", "send_proxy v1"]);
    // A v2 header in, its addresses out as v1, the data untouched.
    let mut bytes = v2_tcp4([10, 1, 2, 3], [10, 9, 9, 9], 1111, 80);
    bytes.extend_from_slice(b"data");
    let (got, _) = through(pen.port, "127.0.0.2", &bytes);
    assert_eq!(text(&got), "PROXY TCP4 10.1.2.3 10.9.9.9 1111 80\r\ndata");
    // A v1 header arriving byte by byte (within the timeout) is fine too.
    let mut s = connect_from("127.0.0.2", local(pen.port)).unwrap();
    for byte in b"PROXY TCP6 2001:db8::1 2001:db8::2 5 6\r\n" {
        s.write_all(&[*byte]).unwrap();
    }
    let got = exchange(s.try_clone().unwrap(), b"more", || {
        s.shutdown(Shutdown::Write).unwrap()
    });
    assert_eq!(text(&got), "PROXY TCP6 2001:db8::1 2001:db8::2 5 6\r\nmore");
    // The connection table and the client table show the header's address.
    let recent = ctl(cport, "recent");
    assert!(recent.contains("10.1.2.3"), "{recent}");
    assert!(recent.contains("2001:db8::1"), "{recent}");
    assert!(!recent.contains("127.0.0.2"), "{recent}");
    assert_eq!(ctl(cport, "accept_proxy"), "on\nrefused 0\n");
    assert_eq!(ctl(cport, "send_proxy"), "v1\n");
    assert_eq!(b.visits().len(), 2);
}

#[test]
fn accept_proxy_refuses_missing_garbage_and_slow_headers() {
    let (b, pen, cport) = accepting(&["-o", "accept_proxy on"]);
    // No header, and garbage: closed, nothing reaches the server.
    for bad in [
        &b"GET / HTTP/1.0\r\n\r\n"[..],
        b"PROXY TCP4 1.2.3.4 5.6.7.8 99999 1\r\nGET /",
        b"\r\n\r\n\0\r\nQUIT\n\x21\x11\xff\xffGET",
    ] {
        let (got, _) = through(pen.port, "127.0.0.3", bad);
        assert_eq!(got, b"", "{:?}", text(bad));
    }
    // A slow client, one byte every 150 ms, is cut off after the 1 s
    // timeout; meanwhile another client is served at once.
    let mut slow = connect_from("127.0.0.4", local(pen.port)).unwrap();
    let started = Instant::now();
    let writer = {
        let mut w = slow.try_clone().unwrap();
        std::thread::spawn(move || {
            for byte in b"PROXY TCP4 10.0.0.1 10.0.0.2 1000 2000\r\n" {
                if w.write_all(&[*byte]).is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(150));
            }
        })
    };
    let t = Instant::now();
    let (got, _) = through(pen.port, "127.0.0.5", b"PROXY UNKNOWN\r\nquick");
    assert_eq!(got, b"quick");
    // Well before the slow client's 1 s deadline.
    assert!(
        t.elapsed() < Duration::from_millis(800),
        "{:?}",
        t.elapsed()
    );
    let mut rest = Vec::new();
    let _ = slow.read_to_end(&mut rest);
    let took = started.elapsed();
    assert!(rest.is_empty());
    assert!(took >= Duration::from_millis(900), "{took:?}");
    assert!(took < Duration::from_secs(5), "{took:?}");
    writer.join().unwrap();
    wait_until(DEADLINE, "4 refusals counted", || {
        ctl(cport, "accept_proxy") == "on\nrefused 4\n"
    });
    // Only the UNKNOWN client's bytes reached the server.
    assert_eq!(b.visits().len(), 1);
}

#[test]
fn accept_proxy_acl_names_who_may_send_one() {
    let (b, pen, cport) = accepting(&["-o", "acl 3 permit 127.0.0.2", "-o", "accept_proxy on 3"]);
    let header = b"PROXY TCP4 192.0.2.9 192.0.2.1 4000 80\r\nok";
    assert_eq!(through(pen.port, "127.0.0.2", header).0, b"ok");
    assert_eq!(through(pen.port, "127.0.0.3", header).0, b"");
    assert_eq!(ctl(cport, "accept_proxy"), "on 3\nrefused 1\n");
    assert_eq!(b.visits().len(), 1);
}

#[test]
fn client_acl_hash_and_forwarded_for_use_the_header_address() {
    // client_acl denies the address inside the header, not the sender's.
    let (_b, pen, _cport) = accepting(&[
        "-o",
        "acl 1 deny 198.51.100.66",
        "-o",
        "client_acl 1",
        "-o",
        "accept_proxy on",
        "-H",
    ]);
    let req = "GET / HTTP/1.0\r\n\r\n";
    let denied = format!("PROXY TCP4 198.51.100.66 127.0.0.1 1 2\r\n{req}");
    assert_eq!(through(pen.port, "127.0.0.2", denied.as_bytes()).0, b"");
    let allowed = format!("PROXY TCP4 198.51.100.67 127.0.0.1 1 2\r\n{req}");
    let got = text(&through(pen.port, "127.0.0.66", allowed.as_bytes()).0);
    assert!(got.contains("X-Forwarded-For: 198.51.100.67\r\n"), "{got}");

    // -h: clients that claim one address land on one server, whatever
    // their real address; tracking remembers the claimed address.
    let backends = Backend::farm(3, Behaviour::Name);
    let cport = free_port();
    let c = format!("127.0.0.1:{cport}");
    let pen = Pen::serve(
        &["-u", "root", "-C", &c, "-h", "-o", "accept_proxy on"],
        &specs(&backends),
    );
    wait_for_port(cport);
    for claimed in ["203.0.113.1", "203.0.113.2", "203.0.113.3"] {
        let header = format!("PROXY TCP4 {claimed} 127.0.0.1 1 2\r\n");
        let names: Vec<String> = (2..8)
            .map(|i| text(&through(pen.port, &format!("127.0.0.{i}"), header.as_bytes()).0))
            .collect();
        assert!(names.iter().all(|n| n == &names[0]), "{claimed}: {names:?}");
    }
    let recent = ctl(cport, "recent");
    assert!(recent.contains("203.0.113.2"), "{recent}");
}

#[test]
fn commands_are_checked_saved_and_refused_under_udp() {
    let (code, _, err) = run_pen(&["-o", "send_proxy v3", "127.0.0.1:1", "127.0.0.1:2"]);
    assert_ne!(code, Some(0));
    assert!(
        err.contains("send_proxy: 'v3' is not v1, v2 or off"),
        "{err}"
    );
    let (code, _, err) = run_pen(&["-o", "accept_proxy on 12", "127.0.0.1:1", "127.0.0.1:2"]);
    assert_ne!(code, Some(0));
    assert!(err.contains("accept_proxy"), "{err}");
    let (code, _, err) = run_pen(&["-U", "-o", "send_proxy v2", "127.0.0.1:1", "127.0.0.1:2"]);
    assert_ne!(code, Some(0));
    assert!(err.contains("UDP mode"), "{err}");
    let (code, _, err) = run_pen(&["-U", "-o", "accept_proxy on", "127.0.0.1:1", "127.0.0.1:2"]);
    assert_ne!(code, Some(0));
    assert!(err.contains("UDP mode"), "{err}");

    let (_b, _pen, cport) = accepting(&[]);
    assert_eq!(ctl(cport, "send_proxy"), "off\n");
    assert_eq!(ctl(cport, "accept_proxy"), "off\nrefused 0\n");
    let dir = TempDir::new("pp-write");
    let file = dir.join("pen.cfg");
    ctl(cport, &format!("write {}", file.display()));
    let saved = std::fs::read_to_string(&file).unwrap();
    assert!(!saved.contains("proxy"), "{saved}");
    ctl(cport, "send_proxy v2");
    ctl(cport, "accept_proxy on 4");
    ctl(cport, &format!("write {}", file.display()));
    let saved = std::fs::read_to_string(&file).unwrap();
    assert!(
        saved.ends_with("send_proxy v2\naccept_proxy on 4\n"),
        "{saved}"
    );
    ctl(cport, "no accept_proxy");
    assert_eq!(ctl(cport, "accept_proxy"), "off\nrefused 0\n");
    // The written file brings both back through -F.
    let (_b, _pen, cport) = accepting(&["-F", file.to_str().unwrap()]);
    assert_eq!(ctl(cport, "send_proxy"), "v2\n");
    assert_eq!(ctl(cport, "accept_proxy"), "on 4\nrefused 0\n");
}

/// HAProxy from Debian in the foreground on its own config, killed by PID
/// when dropped.
struct Haproxy {
    _child: ChildGuard,
    _dir: TempDir,
}

impl Haproxy {
    fn start(config: &str, ports: &[u16]) -> Option<Haproxy> {
        if !Path::new("/usr/sbin/haproxy").exists() {
            return None;
        }
        let dir = TempDir::new("haproxy");
        let conf = dir.file("haproxy.cfg", config);
        let child = ChildGuard::spawn(
            Command::new("/usr/sbin/haproxy")
                .arg("-db")
                .arg("-f")
                .arg(&conf)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null()),
        );
        for p in ports {
            wait_for_port(*p);
        }
        Some(Haproxy {
            _child: child,
            _dir: dir,
        })
    }
}

#[test]
fn haproxy_receives_from_and_sends_to_pen() {
    let b = Backend::start("E", Behaviour::Echo);
    let (receiver, sender, pen_port) = (free_port(), free_port(), free_port());
    // `receiver` reads pen's headers and answers the source it was told;
    // `sender` hands its clients to pen with a v2 header.
    let config = format!(
        "global\n  maxconn 64\n\
         defaults\n  timeout connect 5s\n  timeout client 10s\n  timeout server 10s\n\
         frontend receiver\n  mode http\n  bind 127.0.0.1:{receiver} accept-proxy\n\
         \x20 http-request return status 200 content-type text/plain lf-string \"%[src] %[src_port]\"\n\
         listen sender\n  mode tcp\n  bind 127.0.0.1:{sender}\n\
         \x20 server pen 127.0.0.1:{pen_port} send-proxy-v2\n"
    );
    let Some(_haproxy) = Haproxy::start(&config, &[receiver, sender]) else {
        eprintln!("skipped: haproxy is not installed");
        return;
    };
    for v in ["v1", "v2"] {
        let cmd = format!("send_proxy {v}");
        let pen = Pen::serve(&["-o", &cmd], &[format!("127.0.0.1:{receiver}")]);
        let (got, cport) = through(pen.port, "127.0.0.9", b"GET / HTTP/1.0\r\n\r\n");
        let got = text(&got);
        assert!(got.starts_with("HTTP/1.1 200"), "{v}: {got}");
        assert!(
            got.ends_with(&format!("\r\n\r\n127.0.0.9 {cport}")),
            "{v}: {got}"
        );
    }
    let _pen = Pen::start(
        pen_port,
        &[
            "-o",
            "accept_proxy on",
            "-o",
            "send_proxy v1",
            &format!("127.0.0.1:{pen_port}"),
            &b.spec(),
        ],
    );
    let (got, cport) = through(sender, "127.0.0.10", b"hello");
    assert_eq!(
        text(&got),
        format!("PROXY TCP4 127.0.0.10 127.0.0.1 {cport} {sender}\r\nhello")
    );
}

#[test]
fn request_log_and_statistics_name_the_header_address() {
    let b = Backend::start("web", Behaviour::Http);
    let dir = TempDir::new("pp-log");
    let log = dir.join("requests.log");
    let pen = Pen::serve(
        &["-l", log.to_str().unwrap(), "-o", "accept_proxy on"],
        &[b.spec()],
    );
    let mut s = connect_from("127.0.0.2", local(pen.port)).unwrap();
    s.write_all(b"PROXY TCP4 192.0.2.44 127.0.0.1 5555 80\r\nGET /viaproxy HTTP/1.0\r\n\r\n")
        .unwrap();
    let mut reply = String::new();
    s.read_to_string(&mut reply).unwrap();
    assert!(reply.contains("200"), "{reply}");
    let logged = wait_file_contains(&log, "GET /viaproxy", DEADLINE);
    assert!(logged.starts_with("192.0.2.44 "), "{logged}");
    let report = pen.stats();
    assert!(report.contains("192.0.2.44"), "{report}");
    assert!(!report.contains("127.0.0.2"), "{report}");
}

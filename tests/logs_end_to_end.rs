//! The log tools together with our own pen: pen -l host:port -> penlogd,
//! with the web server's access lines arriving through penlog; and
//! mergelogs over a request log that pen itself wrote.

mod common;
use common::*;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

const PENLOG: &str = env!("CARGO_BIN_EXE_penlog");
const PENLOGD: &str = env!("CARGO_BIN_EXE_penlogd");
const MERGELOGS: &str = env!("CARGO_BIN_EXE_mergelogs");

struct Kill(Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A tiny web server: answers each request and hands an Apache common log
/// line (remote host = the peer it saw, i.e. pen) to `log`.
fn web_server(log: mpsc::Sender<String>) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    thread::spawn(move || {
        for c in l.incoming().take(20) {
            let Ok(mut c) = c else { continue };
            let log = log.clone();
            thread::spawn(move || {
                let _ = c.set_read_timeout(Some(Duration::from_secs(10)));
                let peer = c.peer_addr().unwrap().ip().to_string();
                let mut r = BufReader::new(c.try_clone().unwrap());
                let mut first = String::new();
                let _ = r.read_line(&mut first);
                let first = first.trim_end().to_string();
                let _ = c.write_all(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok");
                let _ = log.send(format!(
                    "{peer} - - [26/Nov/2026:09:00:00 +0000] \"{first}\" 200 2\n"
                ));
            });
        }
    });
    port
}

#[test]
fn penlogd_names_each_client_with_pen_and_penlog() {
    let dir = temp_dir("e2e");
    let out = dir.join("combined.log");
    let lport = free_udp_port();
    let _penlogd = Kill(
        Command::new(PENLOGD)
            .args([
                "-f",
                "-a",
                "127.0.0.1",
                "-l",
                out.to_str().unwrap(),
                &lport.to_string(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    // The web server's access lines go through penlog, sent from the
    // server's own address (127.0.0.1, as pen knows it).
    let mut penlog = Kill(
        Command::new(PENLOG)
            .args(["127.0.0.1", &lport.to_string(), "127.0.0.1"])
            .stdin(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut penlog_in = penlog.0.stdin.take().unwrap();
    let (tx, rx) = mpsc::channel::<String>();
    let wport = web_server(tx);
    wait_for_udp_port(lport); // pen's records must not reach a closed port
    let port = free_port();
    let _pen = Pen::start(
        port,
        &[
            "-l",
            &format!("127.0.0.1:{lport}"),
            &format!("127.0.0.1:{port}"),
            &format!("127.0.0.1:{wport}"),
        ],
    );
    let clients = ["127.0.0.11", "127.0.0.12", "127.0.0.13"];
    for (i, c) in clients.iter().enumerate() {
        let mut s = connect_from(c, local(port)).unwrap();
        s.write_all(format!("GET /page{i} HTTP/1.0\r\n\r\n").as_bytes())
            .unwrap();
        let mut reply = Vec::new();
        s.read_to_end(&mut reply).unwrap();
        // pen sent its record before it forwarded the request, so the
        // web server's line reaches penlogd's socket after it.
        let line = rx.recv_timeout(Duration::from_secs(10)).unwrap();
        penlog_in.write_all(line.as_bytes()).unwrap();
        penlog_in.flush().unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut text = String::new();
    while Instant::now() < deadline {
        text = std::fs::read_to_string(&out).unwrap_or_default();
        if text.lines().count() >= 3 {
            break;
        }
        thread::sleep(Duration::from_millis(50));
    }
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    for (i, c) in clients.iter().enumerate() {
        assert_eq!(
            lines[i],
            format!("{c} - - [26/Nov/2026:09:00:00 +0000] \"GET /page{i} HTTP/1.0\" 200 2")
        );
    }
    drop(penlog_in);
    let _ = penlog.0.wait();
}

#[test]
fn mergelogs_over_a_log_written_by_pen() {
    let dir = temp_dir("merge");
    let penlog = dir.join("pen.log");
    let (tx, rx) = mpsc::channel::<String>();
    let wport = web_server(tx);
    let port = free_port();
    let _pen = Pen::start(
        port,
        &[
            "-l",
            penlog.to_str().unwrap(),
            &format!("127.0.0.1:{port}"),
            &format!("127.0.0.1:{wport}"),
        ],
    );
    let mut web_lines = Vec::new();
    for (i, c) in ["127.0.0.21", "127.0.0.22"].iter().enumerate() {
        let mut s = connect_from(c, local(port)).unwrap();
        s.write_all(format!("GET /m{i} HTTP/1.0\r\n\r\n").as_bytes())
            .unwrap();
        let mut reply = Vec::new();
        s.read_to_end(&mut reply).unwrap();
        web_lines.push(rx.recv_timeout(Duration::from_secs(10)).unwrap());
    }
    let pen_text = wait_file_contains(&penlog, "/m1", Duration::from_secs(5));
    // Put the web server's lines at the time pen logged them.
    let when = |path: &str| -> i64 {
        pen_text
            .lines()
            .find(|l| l.contains(path))
            .unwrap()
            .split(' ')
            .nth(1)
            .unwrap()
            .parse()
            .unwrap()
    };
    let stamp = |t: i64| {
        let out = Command::new("date")
            .args(["-u", "-d", &format!("@{t}"), "+%d/%b/%Y:%H:%M:%S +0000"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let access = dir.join("access.log");
    let mut text = String::new();
    for (i, l) in web_lines.iter().enumerate() {
        let t = stamp(when(&format!("/m{i}")));
        text.push_str(&l.replace("26/Nov/2026:09:00:00 +0000", &t));
    }
    std::fs::write(&access, &text).unwrap();
    let out = Command::new(MERGELOGS)
        .env("TZ", "UTC")
        .args([
            "-p",
            penlog.to_str().unwrap(),
            &format!("127.0.0.1:{}", access.display()),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let merged = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = merged.lines().collect();
    assert_eq!(lines.len(), 2, "{merged}");
    assert!(lines[0].starts_with("127.0.0.21 - - ["), "{merged}");
    assert!(lines[0].ends_with("\"GET /m0 HTTP/1.0\" 200 2"), "{merged}");
    assert!(lines[1].starts_with("127.0.0.22 - - ["), "{merged}");
}

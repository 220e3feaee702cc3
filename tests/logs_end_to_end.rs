//! The log tools together with our own pen: pen -l host:port -> penlogd,
//! with the web server's access lines arriving through penlog; and
//! mergelogs over a request log that pen itself wrote.

mod common;
use common::*;
use std::io::{Read, Write};
use std::process::{Command, Stdio};

/// The Apache common log line a web server writes for `visit`.
fn access_line(visit: &Visit) -> String {
    format!(
        "{} - - [26/Nov/2026:09:00:00 +0000] \"{}\" 200 2\n",
        visit.peer, visit.request
    )
}

#[test]
fn penlogd_names_each_client_with_pen_and_penlog() {
    let dir = TempDir::new("e2e");
    let out = dir.join("combined.log");
    let lport = free_udp_port("127.0.0.1");
    let _penlogd = ChildGuard::spawn(
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
            .stderr(Stdio::null()),
    );
    // The web server's access lines go through penlog, sent from the
    // server's own address (127.0.0.1, as pen knows it).
    let mut penlog = ChildGuard::spawn(
        Command::new(PENLOG)
            .args(["127.0.0.1", &lport.to_string(), "127.0.0.1"])
            .stdin(Stdio::piped()),
    );
    let mut penlog_in = penlog.0.stdin.take().unwrap();
    let web = Backend::start("web", Behaviour::Http);
    wait_for_udp_port(lport); // pen's records must not reach a closed port
    let port = free_port();
    let _pen = Pen::start(
        port,
        &[
            "-l",
            &format!("127.0.0.1:{lport}"),
            &format!("127.0.0.1:{port}"),
            &web.spec(),
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
        let line = access_line(&web.wait_visits(i + 1)[i]);
        penlog_in.write_all(line.as_bytes()).unwrap();
        penlog_in.flush().unwrap();
    }
    let mut text = String::new();
    poll_until(DEADLINE, || {
        text = std::fs::read_to_string(&out).unwrap_or_default();
        text.lines().count() >= 3
    });
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    for (i, c) in clients.iter().enumerate() {
        assert_eq!(
            lines[i],
            format!("{c} - - [26/Nov/2026:09:00:00 +0000] \"GET /page{i} HTTP/1.0\" 200 2")
        );
    }
    drop(penlog_in);
    penlog.wait_exit(DEADLINE, "penlog");
}

#[test]
fn mergelogs_over_a_log_written_by_pen() {
    let dir = TempDir::new("merge");
    let penlog = dir.join("pen.log");
    let web = Backend::start("web", Behaviour::Http);
    let port = free_port();
    let _pen = Pen::start(
        port,
        &[
            "-l",
            penlog.to_str().unwrap(),
            &format!("127.0.0.1:{port}"),
            &web.spec(),
        ],
    );
    let mut web_lines = Vec::new();
    for (i, c) in ["127.0.0.21", "127.0.0.22"].iter().enumerate() {
        let mut s = connect_from(c, local(port)).unwrap();
        s.write_all(format!("GET /m{i} HTTP/1.0\r\n\r\n").as_bytes())
            .unwrap();
        let mut reply = Vec::new();
        s.read_to_end(&mut reply).unwrap();
        web_lines.push(access_line(&web.wait_visits(i + 1)[i]));
    }
    let pen_text = wait_file_contains(&penlog, "/m1", DEADLINE);
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
        let out = run(
            "date",
            &["-u", "-d", &format!("@{t}"), "+%d/%b/%Y:%H:%M:%S +0000"],
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let access = dir.join("access.log");
    let mut text = String::new();
    for (i, l) in web_lines.iter().enumerate() {
        let t = stamp(when(&format!("/m{i}")));
        text.push_str(&l.replace("26/Nov/2026:09:00:00 +0000", &t));
    }
    std::fs::write(&access, &text).unwrap();
    let out = run_command(
        Command::new(MERGELOGS).env("TZ", "UTC").args([
            "-p",
            penlog.to_str().unwrap(),
            &format!("127.0.0.1:{}", access.display()),
        ]),
        Vec::new(),
        DEADLINE,
    );
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

//! Transactional reloads: a `-F` file re-read on SIGHUP, or an `include`,
//! whose later line fails when it runs (not when it is parsed) changes
//! nothing, and the error names the failing line.

mod common;
use common::*;
use std::net::TcpListener;

struct Running {
    pen: Pen,
    cport: u16,
    cfg: std::path::PathBuf,
    dir: TempDir,
    _backends: Vec<Backend>,
}

fn start(first_config: &str) -> Running {
    let backends: Vec<Backend> = (0..2)
        .map(|i| Backend::start(&format!("S{i}"), Behaviour::Name))
        .collect();
    let dir = TempDir::new("reload");
    let cfg = dir.path().join("pen.cfg");
    let mut text = String::new();
    for (i, b) in backends.iter().enumerate() {
        text.push_str(&format!("server {i} address 127.0.0.1 port {}\n", b.port));
    }
    text.push_str(first_config);
    std::fs::write(&cfg, &text).unwrap();
    let port = free_port();
    let cport = free_port();
    let c = format!("127.0.0.1:{cport}");
    let l = format!("127.0.0.1:{port}");
    let pen = Pen::start(
        port,
        &["-u", "root", "-C", &c, "-F", cfg.to_str().unwrap(), &l],
    );
    wait_for_port(cport);
    Running {
        pen,
        cport,
        cfg,
        dir,
        _backends: backends,
    }
}

#[test]
fn hup_with_a_failing_last_line_changes_nothing() {
    let r = start("timeout 4\n");
    let log = r.dir.join("requests.log");
    assert_eq!(ctl(r.cport, "timeout"), "4\n");
    let servers_before = ctl(r.cport, "servers");
    // Every line parses; the last one fails only when it runs.
    std::fs::write(
        &r.cfg,
        format!(
            "timeout 7\nserver 1 weight 9\nlog {}\nhash\nlog /nonexistent/dir/x\n",
            log.display()
        ),
    )
    .unwrap();
    r.pen.signal("HUP");
    let needle = format!("{}:5:", r.cfg.display());
    wait_until(DEADLINE, "the reload error", || {
        r.pen.stderr().contains(&needle)
    });
    let err = r.pen.stderr();
    assert!(err.contains("running configuration kept"), "{err}");
    assert!(err.contains("/nonexistent/dir/x"), "{err}");
    assert_eq!(ctl(r.cport, "timeout"), "4\n");
    assert_eq!(
        ctl(r.cport, "mode"),
        "no hash no roundrobin no stubborn no weight no prio\n"
    );
    assert_eq!(ctl(r.cport, "log"), "");
    assert_eq!(ctl(r.cport, "servers"), servers_before);

    // The same file with the last line fixed applies as a whole.
    std::fs::write(
        &r.cfg,
        format!(
            "timeout 7\nserver 1 weight 9\nlog {}\nhash\n",
            log.display()
        ),
    )
    .unwrap();
    r.pen.signal("HUP");
    wait_until(DEADLINE, "the fixed reload", || {
        ctl(r.cport, "timeout") == "7\n"
    });
    assert_eq!(
        ctl(r.cport, "mode"),
        "hash no roundrobin no stubborn no weight no prio\n"
    );
    assert_eq!(ctl(r.cport, "log"), format!("{}\n", log.display()));
    assert!(ctl(r.cport, "servers").contains(" weight 9 "));
}

#[test]
fn a_listen_that_cannot_bind_keeps_the_old_listener_and_settings() {
    let r = start("");
    let busy = TcpListener::bind("127.0.0.1:0").unwrap();
    let busy_port = busy.local_addr().unwrap().port();
    let new_port = free_port();
    std::fs::write(
        &r.cfg,
        format!("blacklist 11\nlisten 127.0.0.1:{new_port}\nlisten 127.0.0.1:{busy_port}\n"),
    )
    .unwrap();
    r.pen.signal("HUP");
    let needle = format!("{}:3:", r.cfg.display());
    wait_until(DEADLINE, "the reload error", || {
        r.pen.stderr().contains(&needle)
    });
    assert_eq!(ctl(r.cport, "blacklist"), "30\n");
    // The listener bound by line 2 was closed with the failed batch.
    assert!(!is_listening(new_port));
    assert!(is_listening(r.pen.port));
    assert_eq!(ask("127.0.0.1", r.pen.port).len(), 2);
}

#[test]
fn include_over_the_control_port_is_one_transaction() {
    let r = start("");
    let inc = r.dir.join("inc.cfg");
    let out = r.dir.join("written.cfg");
    std::fs::write(
        &inc,
        format!(
            "tracking 60\nwrite {}\nlog /nonexistent/dir/y\n",
            out.display()
        ),
    )
    .unwrap();
    let reply = ctl(r.cport, &format!("include {}", inc.display()));
    assert!(reply.starts_with("error: "), "{reply}");
    assert!(reply.contains("/nonexistent/dir/y"), "{reply}");
    assert_eq!(ctl(r.cport, "tracking"), "0\n");
    // The `write` of the failed batch left no file behind.
    assert!(!out.exists());
    assert_eq!(
        std::fs::read_dir(r.dir.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().contains("pen-tmp"))
            .count(),
        0
    );
    // Without the failing line, the include applies and `write` saves
    // the state as the batch left it.
    std::fs::write(&inc, format!("tracking 60\nwrite {}\n", out.display())).unwrap();
    // The reply is what the lines reply: `tracking 60` answers its value.
    assert_eq!(ctl(r.cport, &format!("include {}", inc.display())), "60\n");
    assert_eq!(ctl(r.cport, "tracking"), "60\n");
    let saved = std::fs::read_to_string(&out).unwrap();
    assert!(saved.contains("\ntracking 60\n"), "{saved}");
}

#[test]
fn relay_yield_works_on_the_control_port_and_survives_write_and_hup() {
    let r = start("");
    let saved = r.dir.join("saved.cfg");
    assert_eq!(ctl(r.cport, &format!("write {}", saved.display())), "");
    let with_default = std::fs::read_to_string(&saved).unwrap();
    assert!(!with_default.contains("relay_yield"), "{with_default}");
    assert_eq!(ctl(r.cport, "no relay_yield"), "");
    assert_eq!(ctl(r.cport, "write"), "");
    let written = std::fs::read_to_string(&r.cfg).unwrap();
    assert!(written.contains("\nno relay_yield\n"), "{written}");
    // The relay still relays with the setting off.
    assert_eq!(ask("127.0.0.1", r.pen.port).len(), 2);
    // The written file restores it on HUP after a run-time change.
    assert_eq!(ctl(r.cport, "relay_yield"), "");
    r.pen.signal("HUP");
    wait_until(DEADLINE, "the reload", || {
        ctl(r.cport, &format!("write {}", saved.display()));
        std::fs::read_to_string(&saved)
            .unwrap_or_default()
            .contains("no relay_yield")
    });
}

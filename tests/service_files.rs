//! The service files in contrib/: the systemd units pass
//! `systemd-analyze verify` (where systemd is installed) and its command
//! line starts a working pen; the OpenRC script passes `sh -n` and, where
//! installed, shellcheck, as do the shell scripts of the multi-instance
//! recipes (contrib/keepalived, contrib/ecmp).

mod common;
use common::*;

const UNIT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/contrib/systemd/pen.service");
const SOCKET: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/contrib/systemd/pen.socket");
const OPENRC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/contrib/openrc/pen");

fn installed(program: &str) -> bool {
    std::process::Command::new(program)
        .arg("--version")
        .output()
        .is_ok()
}

/// The unit's `KEY=value` line.
fn unit_value(unit: &str, key: &str) -> String {
    unit.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("no {key}= in the unit"))
        .to_string()
}

/// Runs `systemd-analyze verify` on `name` (the service or the socket
/// unit), with both units in a temporary directory and the service's
/// ExecStart pointing at this build (verify wants the program to exist).
fn verify(name: &str) {
    if !installed("systemd-analyze") {
        eprintln!("systemd-analyze not installed; unit verification skipped");
        return;
    }
    let dir = TempDir::new("unit");
    let unit = std::fs::read_to_string(UNIT).expect("read the unit");
    dir.file(
        "pen.service",
        &unit.replace("/usr/local/bin/pen", &PEN.to_string()),
    );
    dir.file(
        "pen.socket",
        &std::fs::read_to_string(SOCKET).expect("read the socket unit"),
    );
    let path = dir.join(name);
    let out = run("systemd-analyze", &["verify", path.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(!err.contains(name), "{err}");
}

#[test]
fn systemd_unit_verifies() {
    let unit = std::fs::read_to_string(UNIT).expect("read the unit");
    assert_eq!(unit_value(&unit, "ExecReload"), "/bin/kill -HUP $MAINPID");
    // Stopping drains (tests/drain.rs).
    assert_eq!(unit_value(&unit, "KillSignal"), "SIGQUIT");
    verify("pen.service");
}

#[test]
fn systemd_socket_unit_verifies() {
    let socket = std::fs::read_to_string(SOCKET).expect("read the socket unit");
    // pen takes any name but `control` and `metrics` for its listener
    // (tests/upgrade.rs).
    assert_eq!(unit_value(&socket, "FileDescriptorName"), "listen");
    assert_eq!(unit_value(&socket, "Service"), "pen.service");
    verify("pen.socket");
}

#[test]
fn systemd_unit_command_line_serves() {
    let unit = std::fs::read_to_string(UNIT).expect("read the unit");
    let b = Backend::start("U", Behaviour::Name);
    let dir = TempDir::new("unit-run");
    let port = free_port();
    let cfg = dir.file(
        "pen.cfg",
        &format!(
            "listen 127.0.0.1:{port}\nserver 0 address 127.0.0.1 port {}\n",
            b.port
        ),
    );
    let ctl_path = dir.join("pen.ctl");
    let exec = unit_value(&unit, "ExecStart")
        .replace("/etc/pen/pen.cfg", cfg.to_str().unwrap())
        .replace("/run/pen/pen.ctl", ctl_path.to_str().unwrap())
        .replace(" $PEN_OPTS", "");
    let words: Vec<&str> = exec.split(' ').collect();
    assert_eq!(words[0], "/usr/local/bin/pen");
    assert_eq!(words[1], "-f");
    // Pen::start adds -f itself; as root the control socket needs -u.
    let mut args = vec!["-u", "root"];
    args.extend_from_slice(&words[2..]);
    let pen = Pen::start(port, &args);
    assert_eq!(ask("127.0.0.1", port), "U");
    let out = run(PENCTL, &[ctl_path.to_str().unwrap(), "servers"]);
    assert!(out.status.success());
    drop(pen);
}

#[test]
fn openrc_script_is_valid_sh() {
    let out = run("sh", &["-n", OPENRC]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let script = std::fs::read_to_string(OPENRC).expect("read the script");
    assert!(script.starts_with("#!/sbin/openrc-run\n"));
    assert!(script.contains("--signal HUP"));
    assert!(script.contains("retry=\"QUIT/"));
    if !installed("shellcheck") {
        eprintln!("shellcheck not installed; lint skipped");
        return;
    }
    let out = run("shellcheck", &[OPENRC]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// The recipes' shell scripts: every `#!/bin/sh` file in these directories.
const SCRIPT_DIRS: [&str; 2] = ["contrib/keepalived", "contrib/ecmp"];

fn recipe_scripts() -> Vec<std::path::PathBuf> {
    let mut scripts = Vec::new();
    for dir in SCRIPT_DIRS {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
        for entry in std::fs::read_dir(&dir).expect("read a contrib directory") {
            let path = entry.expect("a directory entry").path();
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            if text.starts_with("#!/bin/sh\n") {
                scripts.push(path);
            }
        }
    }
    scripts.sort();
    scripts
}

#[test]
fn recipe_scripts_are_valid_sh_and_executable() {
    use std::os::unix::fs::PermissionsExt;
    let scripts = recipe_scripts();
    // check_pen.sh, notify_pen.sh, ecmp-route.sh
    assert!(scripts.len() >= 3, "{scripts:?}");
    for script in &scripts {
        let path = script.to_str().expect("a UTF-8 path");
        let out = run("sh", &["-n", path]);
        assert!(
            out.status.success(),
            "{path}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mode = std::fs::metadata(script)
            .expect("stat a script")
            .permissions()
            .mode();
        assert_eq!(mode & 0o111, 0o111, "{path} is not executable");
    }
    if !installed("shellcheck") {
        eprintln!("shellcheck not installed; lint skipped");
        return;
    }
    let mut args = vec!["--shell=sh"];
    args.extend(scripts.iter().map(|p| p.to_str().expect("a UTF-8 path")));
    let out = run("shellcheck", &args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// The keepalived check: healthy while pen answers `pid`, unhealthy when
/// nothing listens, and when pen hangs (stopped), within its time limit.
#[test]
fn keepalived_check_follows_pen() {
    let check = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/contrib/keepalived/check_pen.sh"
    );
    let b = Backend::start("K", Behaviour::Name);
    let control = free_port();
    let target = format!("127.0.0.1:{control}");
    let penctl = PENCTL.to_string();
    let healthy = || run("sh", &[check, &target, &penctl, "1"]).status.success();
    let pen = Pen::serve(
        &["-u", "root", "-C", &target],
        &specs(std::slice::from_ref(&b)),
    );
    assert!(healthy());
    pen.signal("STOP");
    let started = std::time::Instant::now();
    let hung = healthy();
    pen.signal("CONT");
    assert!(!hung, "a stopped pen passed the check");
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    assert!(healthy());
    drop(pen);
    assert!(!healthy());
}

/// The notify script logs each transition as one line to its log file.
#[test]
fn keepalived_notify_logs_transitions() {
    let notify = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/contrib/keepalived/notify_pen.sh"
    );
    let dir = TempDir::new("notify");
    let log = dir.arg("vrrp.log");
    for state in ["BACKUP", "MASTER", "FAULT"] {
        let out = run("sh", &[notify, &log, "INSTANCE", "pen", state, "150"]);
        assert!(out.status.success());
    }
    let text = std::fs::read_to_string(&log).expect("read the log");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(
        lines[1].contains("vrrp INSTANCE pen is now MASTER (priority 150)"),
        "{text}"
    );
    let out = run("sh", &[notify, "only-one-word"]);
    assert_eq!(out.status.code(), Some(2));
}

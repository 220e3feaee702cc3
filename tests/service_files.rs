//! The service files in contrib/: the systemd units pass
//! `systemd-analyze verify` (where systemd is installed) and its command
//! line starts a working pen; the OpenRC script passes `sh -n` and, where
//! installed, shellcheck.

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

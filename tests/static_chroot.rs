//! The static executable alone in a bare root: nothing from the host but
//! `/etc/services`, `/etc/passwd`, `/etc/hosts` and `/etc/resolv.conf`
//! written by the test. There it must resolve a backend named in that
//! `/etc/hosts` and ports named in that `/etc/services`, drop privileges
//! with `-u` (musl reads `/etc/passwd` itself), log to syslog, balance
//! clients and answer penctl through its own link. Runs only when
//! `PEN_TEST_BINDIR` names a static build (`make check-static` does).

mod common;
use common::*;

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::Command;

/// Whether the ELF file at `path` is statically linked: it has no
/// `PT_INTERP` program header (a dynamic executable names its loader there).
fn is_static_elf(path: &Path) -> bool {
    const PT_INTERP: u32 = 3;
    let Ok(elf) = std::fs::read(path) else {
        return false;
    };
    let u16_at = |at: usize| {
        elf.get(at..at + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
    };
    let u32_at = |at: usize| {
        elf.get(at..at + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    let u64_at = |at: usize| {
        elf.get(at..at + 8)
            .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
    };
    // 64-bit little-endian ELF only; anything else is not what we build.
    if elf.get(..6) != Some(b"\x7fELF\x02\x01") {
        return false;
    }
    let (Some(phoff), Some(phentsize), Some(phnum)) = (u64_at(0x20), u16_at(0x36), u16_at(0x38))
    else {
        return false;
    };
    (0..usize::from(phnum)).all(|i| {
        let at = phoff as usize + i * usize::from(phentsize);
        matches!(u32_at(at), Some(kind) if kind != PT_INTERP)
    })
}

/// `chroot ROOT PROGRAM ARGS...` with the host's chroot(8).
fn chroot_command(root: &Path, program: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new("chroot");
    cmd.arg(root).arg(program).args(args);
    cmd
}

/// The real and effective user ids of process `pid` (from /proc).
fn uids(pid: u32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .map(|ids| {
            ids.split_whitespace()
                .filter_map(|u| u.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn static_binary_serves_from_a_bare_chroot() {
    let pen = PEN.path();
    if std::env::var_os(BINDIR_VAR).is_none() || !is_static_elf(pen) {
        eprintln!(
            "skipping: {BINDIR_VAR} does not name a static build (make check-static runs this test)"
        );
        return;
    }
    let root = TempDir::new("bare-root");
    std::fs::copy(pen, root.join("pen")).expect("copy the static pen");
    std::os::unix::fs::symlink("pen", root.join("penctl")).expect("link penctl");
    let backend = Backend::start("B", Behaviour::Name);
    let backend_port = backend.spec().rsplit(':').next().unwrap().to_string();
    let listen_port = free_port();
    let control_port = free_port();
    std::fs::create_dir(root.join("etc")).expect("make etc/");
    root.file(
        "etc/services",
        &format!("penfront\t{listen_port}/tcp\npenback\t{backend_port}/tcp\n"),
    );
    root.file(
        "etc/passwd",
        "root:x:0:0:root:/:/bin/sh\npenuser:x:4321:4321:pen:/:/bin/false\n",
    );
    root.file(
        "etc/hosts",
        "127.0.0.1\tlocalhost\n127.0.0.1\tbackend.test\n",
    );
    // Never asked: every name the test uses is in etc/hosts.
    root.file("etc/resolv.conf", "nameserver 127.0.0.1\n");
    // The system logger, as pen sees it inside the root.
    std::fs::create_dir(root.join("dev")).expect("make dev/");
    let syslog = UnixDatagram::bind(root.join("dev/log")).expect("bind dev/log");
    syslog
        .set_read_timeout(Some(DEADLINE))
        .expect("set a timeout");

    // A daemon reopens its standard streams on /dev/null. Where device
    // nodes cannot be made, pen runs in the foreground (and the syslog
    // check is left out).
    let daemon = Command::new("mknod")
        .args(["-m", "666"])
        .arg(root.join("dev/null"))
        .args(["c", "1", "3"])
        .status()
        .is_ok_and(|s| s.success());

    // pen writes its pid file after dropping privileges.
    std::fs::create_dir(root.join("run")).expect("make run/");
    std::os::unix::fs::chown(root.join("run"), Some(4321), Some(4321)).expect("chown run/");

    let control = format!("127.0.0.1:{control_port}");
    let mut args = vec![
        "-d",
        "-u",
        "penuser",
        "-p",
        "/run/pen.pid",
        "-C",
        &control,
        "127.0.0.1:penfront",
        "backend.test:penback",
    ];
    let _foreground;
    let _daemon;
    let pid = if daemon {
        let out = run_command(
            &mut chroot_command(root.path(), "/pen", &args),
            Vec::new(),
            DEADLINE,
        );
        assert_eq!(
            out.status.code(),
            Some(0),
            "pen in the bare root: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let pid: u32 = std::fs::read_to_string(root.join("run/pen.pid"))
            .expect("pen wrote its pid file")
            .trim()
            .parse()
            .expect("a pid");
        _daemon = DaemonGuard(pid);
        pid
    } else {
        eprintln!("cannot make dev/null (mknod): running pen in the foreground");
        args.insert(0, "-f");
        _foreground = ChildGuard::spawn(
            chroot_command(root.path(), "/pen", &args)
                .stdin(std::process::Stdio::null())
                .stderr(std::process::Stdio::null()),
        );
        _foreground.pid()
    };
    wait_for_port(listen_port);

    assert_eq!(ask("127.0.0.1", listen_port), "B", "a client is served");
    assert_eq!(
        ask("127.0.0.2", listen_port),
        "B",
        "a second client is served"
    );
    wait_until(DEADLINE, "pen to run as penuser", || {
        let ids = uids(pid);
        !ids.is_empty() && ids.iter().all(|&u| u == 4321)
    });

    // penctl through the link inside the root.
    let out = run_command(
        &mut chroot_command(root.path(), "/penctl", &[&control, "servers"]),
        Vec::new(),
        DEADLINE,
    );
    let servers = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "penctl: {servers}");
    assert!(
        servers.starts_with(&format!("0 addr 127.0.0.1 port {backend_port} ")),
        "{servers}"
    );

    if !daemon {
        return;
    }
    // The debug channel of a daemon is syslog, through the root's dev/log:
    // at -d, pen says there why it quits.
    send_signal(pid, "TERM");
    let mut buf = [0u8; 2048];
    let mut seen = String::new();
    for _ in 0..100 {
        let len = syslog.recv(&mut buf).expect("a syslog message from pen");
        seen = String::from_utf8_lossy(&buf[..len]).into_owned();
        if seen.contains(&format!("pen[{pid}]")) && seen.contains("Quitting") {
            break;
        }
    }
    assert!(
        seen.contains(&format!("pen[{pid}]")) && seen.contains("Quitting"),
        "syslog got {seen:?}"
    );
    wait_gone(pid);
}

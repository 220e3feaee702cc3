//! Zero-downtime binary upgrade (SIGUSR2) and systemd socket activation:
//! the new copy of pen inherits the listener and the control socket
//! (LISTEN_FDS, LISTEN_PID, LISTEN_FDNAMES), and the old one drains only
//! once the new one serves.

mod common;
use common::*;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Copies `from` to `to` with cp(1): a file this multi-threaded test
/// process had open for writing could still be open in a child that
/// another test forks at that moment, and exec would fail with ETXTBSY.
fn copy_executable(from: &Path, to: &Path) {
    let status = Command::new("cp")
        .arg(from)
        .arg(to)
        .status()
        .expect("run cp");
    assert!(status.success(), "cp {} {}", from.display(), to.display());
}

/// A pen started from a copy of the binary in a temporary directory, with
/// a control port and a pid file.
struct Upgradable {
    pen: Pen,
    exe: PathBuf,
    cport: u16,
    pid_file: PathBuf,
    dir: TempDir,
}

fn start_copy(listen: Option<&str>, extra: &[&str], backends: &[String]) -> Upgradable {
    let dir = TempDir::new("upgrade");
    let exe = dir.join("pen");
    copy_executable(PEN.path(), &exe);
    let pid_file = dir.join("pen.pid");
    let cport = free_port();
    let c = format!("127.0.0.1:{cport}");
    let p = pid_file.to_str().expect("a UTF-8 path").to_string();
    let mut args = vec!["-u", "root", "-C", &c, "-p", &p];
    args.extend_from_slice(extra);
    let pen = match listen {
        None => Pen::serve_program(&exe, &args, backends),
        Some(path) => {
            let mut all: Vec<&str> = args.to_vec();
            all.push(path);
            all.extend(backends.iter().map(String::as_str));
            let mut pen = Pen::spawn_program(&exe, &all);
            assert!(pen.wait_ready(|| Path::new(path).exists()).is_ok());
            pen
        }
    };
    wait_for_port(cport);
    wait_until(DEADLINE, "the pid file", || pid_file.exists());
    Upgradable {
        pen,
        exe,
        cport,
        pid_file,
        dir,
    }
}

impl Upgradable {
    /// Puts a new file at the path pen was started from, as a package
    /// upgrade does: written beside it, then renamed over it.
    fn replace_binary(&self, content: &[u8], mode: u32) {
        let content_file = self.dir.join("content");
        std::fs::write(&content_file, content).expect("write the new binary");
        let new = self.dir.join("pen.new");
        copy_executable(&content_file, &new);
        std::fs::set_permissions(&new, std::fs::Permissions::from_mode(mode)).expect("chmod");
        std::fs::rename(&new, &self.exe).expect("rename over the binary");
    }

    fn pid_in_file(&self) -> Option<u32> {
        std::fs::read_to_string(&self.pid_file)
            .ok()
            .and_then(|s| s.trim().parse().ok())
    }

    /// Waits until the pid file names another process; its pid.
    fn wait_new_pid(&self) -> u32 {
        let old = self.pen.pid();
        let mut new = None;
        wait_until(DEADLINE, "the pid file to name the new process", || {
            new = self.pid_in_file().filter(|p| *p != old);
            new.is_some()
        });
        new.expect("a new pid")
    }
}

/// A client with a live pair: one byte sent and echoed.
fn live_pair(connect: impl Fn() -> std::io::Result<Box<dyn ReadWrite>>) -> Box<dyn ReadWrite> {
    let mut s = connect().expect("connect to pen");
    s.write_all(b"!").expect("send");
    let mut one = [0u8; 1];
    s.read_exact(&mut one).expect("the echo");
    s
}

trait ReadWrite: Read + Write + Send {}
impl<T: Read + Write + Send> ReadWrite for T {}

/// Runs a long-lived pair to its end: 64 KiB each way, intact.
fn finish_pair(mut s: Box<dyn ReadWrite>, seed: u64) {
    let data = random_bytes(seed, 64 * 1024);
    let mut back = vec![0u8; data.len()];
    // Echo backends answer as they read: write and read in turns of 4 KiB
    // so that no buffer fills.
    for (chunk, out) in data.chunks(4096).zip(back.chunks_mut(4096)) {
        s.write_all(chunk).expect("send on a long-lived pair");
        s.read_exact(out).expect("read on a long-lived pair");
    }
    assert!(back == data, "a long-lived pair's bytes changed");
}

#[test]
fn sigusr2_replaces_the_binary_without_refusing_a_client() {
    let b = Backend::farm(2, Behaviour::Echo);
    let mport = free_port();
    let metrics = format!("metrics_listen 127.0.0.1:{mport}");
    let mut u = start_copy(None, &["-o", &metrics], &specs(&b));
    wait_for_port(mport);
    let port = u.pen.port;
    let old = u.pen.pid();
    let connect = || -> std::io::Result<Box<dyn ReadWrite>> {
        Ok(Box::new(TcpStream::connect(local(port))?))
    };
    let long_lived: Vec<_> = (0..3).map(|_| live_pair(connect)).collect();

    // Back-to-back clients, each one byte there and back.
    let done = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let loop_ = {
        let (done, stop) = (Arc::clone(&done), Arc::clone(&stop));
        std::thread::spawn(move || {
            let mut failures = Vec::new();
            let until = Instant::now() + Duration::from_secs(30);
            while !stop.load(Ordering::Relaxed) && Instant::now() < until {
                let attempt = (|| -> std::io::Result<()> {
                    let mut s = TcpStream::connect(local(port))?;
                    s.set_read_timeout(Some(DEADLINE))?;
                    s.write_all(b"x")?;
                    let mut one = [0u8; 1];
                    s.read_exact(&mut one)?;
                    Ok(())
                })();
                if let Err(e) = attempt {
                    failures.push(e.to_string());
                }
                done.fetch_add(1, Ordering::Relaxed);
            }
            failures
        })
    };
    wait_until(DEADLINE, "the first clients", || {
        done.load(Ordering::Relaxed) >= 200
    });
    let mut bytes = std::fs::read(PEN.path()).expect("read pen");
    // A different file with the same program: a trailing byte changes
    // nothing an ELF loader reads.
    bytes.push(0);
    u.replace_binary(&bytes, 0o755);
    let at_signal = done.load(Ordering::Relaxed);
    u.pen.signal("USR2");
    let new = u.wait_new_pid();
    let _guard = DaemonGuard(new);
    assert!(process_alive(new));
    // The old process drains: alive while its long-lived pairs are.
    wait_until(DEADLINE, "the old process to drain", || {
        u.pen.stderr().contains("draining this one")
    });
    wait_until(DEADLINE, "2,000 clients during the swap", || {
        done.load(Ordering::Relaxed) >= at_signal + 2000
    });
    assert!(process_alive(old), "the old process left its pairs");
    for (i, s) in long_lived.into_iter().enumerate() {
        finish_pair(s, i as u64);
    }
    assert_eq!(u.pen.wait_exit(DEADLINE), Some(0), "{}", u.pen.stderr());
    stop.store(true, Ordering::Relaxed);
    let failures = loop_.join().expect("the client loop");
    let total = done.load(Ordering::Relaxed);
    assert!(
        failures.is_empty(),
        "{} of {total} clients failed: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    eprintln!(
        "{total} clients, {} after the USR2, none failed",
        total - at_signal
    );
    // The new process serves both sockets, and kept the pid file.
    assert_eq!(u.pid_in_file(), Some(new));
    assert!(ctl(u.cport, "mode").contains("roundrobin"), "control port");
    assert!(
        scrape(mport).contains("\npen_build_info{"),
        "metrics endpoint"
    );
    live_pair(connect);
    send_signal(new, "TERM");
    wait_gone(new);
    assert!(!u.pid_file.exists(), "the new process removes its pid file");
}

/// The metrics endpoint's reply to `GET /metrics`.
fn scrape(port: u16) -> String {
    let mut s = TcpStream::connect(local(port)).expect("connect to the metrics endpoint");
    s.set_read_timeout(Some(DEADLINE)).expect("timeout");
    s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").expect("send");
    let mut reply = String::new();
    s.read_to_string(&mut reply).expect("read");
    reply
}

#[test]
fn a_failing_new_binary_leaves_the_old_process_serving() {
    let b = Backend::farm(1, Behaviour::Echo);
    let u = start_copy(None, &[], &specs(&b));
    let port = u.pen.port;
    let old = u.pen.pid();
    let echo = || {
        let mut s = TcpStream::connect(local(port)).expect("connect");
        s.write_all(b"?").expect("send");
        let mut one = [0u8; 1];
        s.read_exact(&mut one).expect("echo");
    };
    // Not executable.
    u.replace_binary(b"not a program\n", 0o644);
    u.pen.signal("USR2");
    let err = u.pen.wait_stderr("still serving", DEADLINE);
    assert!(err.contains("upgrade: can't start"), "{err}");
    assert!(err.contains("Permission denied"), "{err}");
    echo();
    // A program that exits before it is ready.
    u.replace_binary(b"#!/bin/sh\nexit 3\n", 0o755);
    u.pen.signal("USR2");
    wait_until(DEADLINE, "the second failure", || {
        u.pen.stderr().matches("still serving").count() >= 2
    });
    let err = u.pen.stderr();
    assert!(
        err.contains("ended (exit status 3) before it was ready"),
        "{err}"
    );
    echo();
    assert_eq!(u.pid_in_file(), Some(old));
    assert!(ctl(u.cport, "mode").contains("roundrobin"));
    assert!(!ctl(u.cport, "mode").contains("draining"));
}

#[test]
fn a_unix_socket_listener_survives_the_handover() {
    let b = Backend::farm(1, Behaviour::Echo);
    let dir = TempDir::new("upgrade-unix");
    let sock = dir.join("pen.sock");
    let sock_arg = sock.to_str().expect("UTF-8").to_string();
    let u = start_copy(Some(&sock_arg), &[], &specs(&b));
    let connect = || -> std::io::Result<Box<dyn ReadWrite>> {
        Ok(Box::new(std::os::unix::net::UnixStream::connect(&sock)?))
    };
    live_pair(connect);
    u.pen.signal("USR2");
    let new = u.wait_new_pid();
    let _guard = DaemonGuard(new);
    let mut u = u;
    assert_eq!(u.pen.wait_exit(DEADLINE), Some(0), "{}", u.pen.stderr());
    assert!(sock.exists(), "the old process removed the socket file");
    live_pair(connect);
}

/// Runs `pen -f ARGS` through python3, which first puts `fd3` (Python
/// code making a socket `s`, or None to open /dev/null) at descriptor 3
/// and sets LISTEN_FDS=1 and LISTEN_PID to the pid pen will have.
fn activated(fd3: &str, args: &[&str], dir: &TempDir) -> Option<ChildGuard> {
    if Command::new("python3")
        .arg("-c")
        .arg("pass")
        .status()
        .is_err()
    {
        eprintln!("skipped: python3 is not installed");
        return None;
    }
    let script = format!(
        "import os, socket, sys\n{fd3}\nos.dup2(fd, 3)\nos.set_inheritable(3, True)\n\
         os.environ.update(LISTEN_FDS='1', LISTEN_PID=str(os.getpid()), LISTEN_FDNAMES='listen')\n\
         os.execv(sys.argv[1], sys.argv[1:])\n"
    );
    let err = std::fs::File::create(dir.join("stderr")).expect("stderr file");
    Some(ChildGuard::spawn(
        Command::new("python3")
            .arg("-c")
            .arg(script)
            .arg(PEN.path())
            .arg("-f")
            .args(args)
            .stdin(Stdio::null())
            .stderr(err),
    ))
}

#[test]
fn an_inherited_socket_is_served_without_binding() {
    let b = Backend::farm(1, Behaviour::Echo);
    let dir = TempDir::new("activation");
    let port = free_port();
    // LISTEN names a port nobody listens on: pen must not bind it.
    let unused = free_port();
    let listen = format!("127.0.0.1:{unused}");
    let mut args = vec![listen.as_str()];
    let backends = specs(&b);
    args.extend(backends.iter().map(String::as_str));
    let bind = format!(
        "s = socket.socket()\ns.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
         s.bind(('127.0.0.1', {port}))\ns.listen(16)\nfd = s.fileno()"
    );
    let Some(mut pen) = activated(&bind, &args, &dir) else {
        return;
    };
    let mut echoed = false;
    wait_until(DEADLINE, "pen to serve on the inherited socket", || {
        assert!(
            pen.exited().is_none(),
            "pen exited: {}",
            std::fs::read_to_string(dir.join("stderr")).unwrap_or_default()
        );
        let Ok(mut s) = TcpStream::connect(local(port)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(DEADLINE));
        let mut one = [0u8; 1];
        echoed = s.write_all(b"a").is_ok() && s.read_exact(&mut one).is_ok() && one == *b"a";
        echoed
    });
    assert!(echoed);
    assert!(!is_listening(unused), "pen bound LISTEN too");
}

#[test]
fn an_inherited_descriptor_of_the_wrong_kind_is_one_clear_error() {
    let dir = TempDir::new("activation-bad");
    let cases = [
        (
            "fd = os.open('/dev/null', os.O_RDWR)",
            "inherited descriptor 3 (LISTEN_FDS): not a socket",
        ),
        (
            "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\nfd = s.fileno()",
            "inherited descriptor 3 (LISTEN_FDS, Listen) is not a listening stream socket",
        ),
    ];
    for (fd3, message) in cases {
        let Some(mut pen) = activated(fd3, &["127.0.0.1:1", "127.0.0.1:2"], &dir) else {
            return;
        };
        let status = pen.wait_exit(DEADLINE, "pen");
        let err = std::fs::read_to_string(dir.join("stderr")).expect("stderr");
        assert_eq!(status.code(), Some(1), "{err}");
        assert_eq!(err, format!("pen: {message}\n"));
    }
}
